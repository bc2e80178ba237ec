/**
 * A 404 that says why: a request naming a session the server closed learns
 * the reason (`data.reason`, and a message saying to start a new session),
 * while a made-up, malformed or guessed id, and another principal, get the
 * generic 404. Then `recoveringFetch`: any client that takes a `fetch`
 * recovers from such a 404 with a new session.
 */
import { randomBytes } from 'node:crypto';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { LATEST_PROTOCOL_VERSION } from '@modelcontextprotocol/sdk/types.js';
import { afterEach, describe, expect, it } from 'vitest';
import { type RecoverEvent, recoveringFetch } from '../dist/main/client/index.js';
import type { Served, SessionCreatedEvent } from '../dist/main/index.js';
import { closeLogEntries } from '../dist/shared/layout.js';
import { SessionTable } from '../dist/shared/table.js';
import { post, rawCall, rawInitialize, settled, start, until } from './helpers.js';

let served: Served | undefined;
afterEach(async () => {
  await served?.close();
  served = undefined;
});

const AUTH = new URL('./fixtures/auth.js', import.meta.url);

/** A 404's JSON-RPC error. */
async function notFound(response: { status: number; text: string }) {
  expect(response.status).toBe(404);
  return (JSON.parse(response.text) as { error: { code: number; message: string; data?: { reason?: string } } }).error;
}

async function session(url: string, headers: Record<string, string> = {}): Promise<string> {
  const created = await rawInitialize(url, headers);
  expect(created.status).toBe(200);
  return created.sessionId as string;
}

function call(url: string, id: string, headers: Record<string, string> = {}) {
  return post(
    url,
    { jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name: 'echo', arguments: { text: 'x' } } },
    { 'mcp-session-id': id, 'mcp-protocol-version': LATEST_PROTOCOL_VERSION, ...headers },
  ).then(async (res) => ({ status: res.status, text: await res.text() }));
}

describe('404 reasons', () => {
  it('says evicted, deleted, idle and lifetime to the whole id, on POST, GET and DELETE', async () => {
    served = await start({ maxSessions: 2, manualClock: true, idleTimeoutMs: 1_000, maxLifetimeMs: 60_000 });
    const url = served.url;
    const evicted = await session(url);
    const deleted = await session(url);
    await session(url); // evicts the oldest
    const gone = await fetch(url, {
      method: 'DELETE',
      headers: { 'mcp-session-id': deleted, 'mcp-protocol-version': LATEST_PROTOCOL_VERSION },
    });
    expect(gone.status).toBe(200);
    // The DELETE's answer may reach us before the broker has freed the slot (then the id is unknown, not deleted).
    const s = served;
    await until(() => !s.broker.index.lookup(deleted).ok, 5000, 'the deleted slot to be freed');
    const byEviction = await notFound(await call(url, evicted));
    expect(byEviction).toMatchObject({ code: -32001, data: { reason: 'evicted' } });
    expect(byEviction.message).toMatch(/^Session not found: it was evicted .*Start a new session with initialize$/);
    expect(await notFound(await call(url, deleted))).toMatchObject({ data: { reason: 'deleted' } });
    const stream = await fetch(url, {
      headers: {
        accept: 'text/event-stream',
        'mcp-session-id': evicted,
        'mcp-protocol-version': LATEST_PROTOCOL_VERSION,
      },
    });
    expect(await notFound({ status: stream.status, text: await stream.text() })).toMatchObject({
      data: { reason: 'evicted' },
    });
    const again = await fetch(url, {
      method: 'DELETE',
      headers: { 'mcp-session-id': deleted, 'mcp-protocol-version': LATEST_PROTOCOL_VERSION },
    });
    expect(await notFound({ status: again.status, text: await again.text() })).toMatchObject({
      data: { reason: 'deleted' },
    });

    const idle = await session(url);
    await settled(served, idle);
    served.broker.clock.advance(1_000);
    // Past its deadline, not yet swept: the request path says idle; after the sweep the close log does.
    expect(await notFound(await call(url, idle))).toMatchObject({ data: { reason: 'idle' } });
    await served.broker.sweep();
    expect(await notFound(await call(url, idle))).toMatchObject({ data: { reason: 'idle' } });

    // Kept busy past its lifetime: closed for that, busy or not.
    const old = await session(url);
    for (let t = 0; t < 60_000; t += 500) {
      expect((await call(url, old)).status).toBe(200);
      await settled(served, old);
      served.broker.clock.advance(500);
    }
    const expired = await notFound(await call(url, old));
    expect(expired).toMatchObject({ data: { reason: 'lifetime' } });
    expect(expired.message).toMatch(/maximum lifetime/);
    await served.broker.sweep();
    expect(await notFound(await call(url, old))).toMatchObject({ data: { reason: 'lifetime' } });
  });

  it('keeps the generic 404 for made-up, malformed and guessed ids', async () => {
    served = await start({ maxSessions: 1 });
    const url = served.url;
    const evicted = await session(url);
    await session(url);
    const generic = { code: -32001, message: 'Session not found' };
    const madeUp = randomBytes(24).toString('hex');
    const madeUpError = await notFound(await call(url, madeUp));
    expect(madeUpError).toEqual(generic);
    expect(await notFound(await call(url, 'not-an-id'))).toEqual(generic);
    // The evicted id with one hex digit of its secret changed (slot and generation kept).
    const last = evicted.at(-1) === '0' ? '1' : '0';
    expect(await notFound(await call(url, `${evicted.slice(0, -1)}${last}`))).toEqual(generic);
    expect(await notFound(await call(url, evicted))).toMatchObject({ data: { reason: 'evicted' } });
  });

  it('tells a bound session’s reason only to its principal', async () => {
    served = await start({ maxSessions: 1, authModule: AUTH.href });
    const url = served.url;
    const alice = { authorization: 'Bearer token-alice' };
    const evicted = await session(url, alice);
    await session(url, { authorization: 'Bearer token-bob' });
    expect(await notFound(await call(url, evicted, { authorization: 'Bearer token-mallory' }))).toEqual({
      code: -32001,
      message: 'Session not found',
    });
    expect(await notFound(await call(url, evicted, alice))).toMatchObject({ data: { reason: 'evicted' } });
  });

  it('the close log is bounded and a later close in the same entry replaces an earlier one', () => {
    expect(closeLogEntries(1)).toBe(1024);
    expect(closeLogEntries(1_000)).toBe(4096);
    expect(closeLogEntries(1_000_000)).toBe(131_072);
    const table = SessionTable.create({
      capacity: 2,
      lanes: 1,
      rateMax: 0,
      idleTimeoutMs: 0,
      maxLifetimeMs: 0,
      busyTimeoutMs: 1_000,
      manualClock: true,
      unresponsiveMs: 1_000,
      stallTimeoutMs: 0,
    });
    expect(table.layout.closeEntries).toBe(1024);
    expect(table.views.closes.length).toBe(1024 * 8);
  });
});

describe('recoveringFetch', () => {
  function client(url: string, fetchFn: typeof fetch) {
    const c = new Client({ name: 'recovering', version: '1.0.0' });
    const transport = new StreamableHTTPClientTransport(new URL(url), { fetch: fetchFn });
    return { client: c, transport, connect: () => c.connect(transport) };
  }

  it('lets the SDK client go on after its session is evicted: one new session, the call answered', async () => {
    served = await start({ maxSessions: 1 });
    const created: SessionCreatedEvent[] = [];
    served.broker.on('created', (e) => created.push(e));
    const recovered: RecoverEvent[] = [];
    const a = client(served.url, recoveringFetch({ onRecover: (e) => recovered.push(e) }));
    await a.connect();
    const first = a.transport.sessionId as string;
    await rawInitialize(served.url); // evicts a's session
    expect(await a.client.callTool({ name: 'echo', arguments: { text: 'after' } })).toMatchObject({
      content: [{ text: 'after' }],
    });
    expect(recovered).toHaveLength(1);
    expect(recovered[0]).toMatchObject({ oldSessionId: first, reason: 'evicted' });
    const replacement = recovered[0]?.newSessionId as string;
    expect(replacement).not.toBe(first);
    expect(created.map((e) => e.id)).toContain(replacement);
    // The SDK 1.x transport takes the id from each answer's header, so it now holds the new one
    // (a library that keeps the old id has it rewritten by the wrapper: the next test).
    expect(a.transport.sessionId).toBe(replacement);
    expect(await a.client.listTools()).toMatchObject({ tools: expect.any(Array) });
    expect(recovered).toHaveLength(1);
    // Its DELETE ends the new session.
    await a.transport.terminateSession();
    await until(() => served?.broker.index.lookup(replacement).ok === false, 5_000, 'the new session deleted');
    await a.client.close();
  });

  it('rewrites the old id on every later request of a library that keeps it', async () => {
    served = await start({ maxSessions: 1 });
    const url = served.url;
    const recovered: RecoverEvent[] = [];
    const statuses: number[] = [];
    const spying: typeof fetch = async (input, init) => {
      const response = await fetch(input, init);
      statuses.push(response.status);
      return response;
    };
    const wrapped = recoveringFetch({ fetch: spying, onRecover: (e) => recovered.push(e) });
    // A minimal client that never looks at the id in answers after the first.
    const headers = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };
    const init = await wrapped(url, {
      method: 'POST',
      headers,
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 0,
        method: 'initialize',
        params: {
          protocolVersion: LATEST_PROTOCOL_VERSION,
          capabilities: {},
          clientInfo: { name: 'kept', version: '1' },
        },
      }),
    });
    await init.text();
    const old = init.headers.get('mcp-session-id') as string;
    const sessionHeaders = { ...headers, 'mcp-session-id': old, 'mcp-protocol-version': LATEST_PROTOCOL_VERSION };
    await (
      await wrapped(url, {
        method: 'POST',
        headers: sessionHeaders,
        body: JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }),
      })
    ).text();
    await rawInitialize(url); // evicts it
    for (const id of [1, 2, 3]) {
      const answer = await wrapped(url, {
        method: 'POST',
        headers: sessionHeaders,
        body: JSON.stringify({
          jsonrpc: '2.0',
          id,
          method: 'tools/call',
          params: { name: 'echo', arguments: { text: `${id}` } },
        }),
      });
      expect(answer.status).toBe(200);
      expect(await answer.text()).toContain(`"text":"${id}"`);
    }
    // One recovery (one 404); the later calls went straight to the new session.
    expect(recovered).toHaveLength(1);
    expect(statuses.filter((status) => status === 404)).toHaveLength(1);
    expect(served.broker.index.lookup(recovered[0]?.newSessionId as string).ok).toBe(true);
  });

  it('starts one new session for concurrent requests that all got 404', async () => {
    served = await start({ maxSessions: 1 });
    const recovered: RecoverEvent[] = [];
    const a = client(served.url, recoveringFetch({ onRecover: (e) => recovered.push(e) }));
    await a.connect();
    await rawInitialize(served.url);
    const answers = await Promise.all(
      ['1', '2', '3', '4'].map((text) => a.client.callTool({ name: 'echo', arguments: { text } })),
    );
    expect(answers.map((r) => (r as { content: Array<{ text: string }> }).content[0]?.text)).toEqual([
      '1',
      '2',
      '3',
      '4',
    ]);
    expect(recovered).toHaveLength(1);
    await a.client.close();
  });

  it('waits out Retry-After on a refused initialize only when asked to, within the bound', async () => {
    // Full and evicting nothing: the refusal's Retry-After is when the oldest session can idle out (2 s).
    served = await start({ maxSessions: 1, evict: 'none', idleTimeoutMs: 2_000 });
    const url = served.url;
    const holder = await session(url);
    const refused = client(url, recoveringFetch());
    await expect(refused.connect()).rejects.toThrow(/503|Session limit/);
    // Asked to wait: the holder leaves during the wait, and the retry is admitted.
    const waiting = client(url, recoveringFetch({ maxRetryWaitMs: 10_000 }));
    const connecting = waiting.connect();
    await new Promise((resolve) => setTimeout(resolve, 200));
    const left = await fetch(url, {
      method: 'DELETE',
      headers: { 'mcp-session-id': holder, 'mcp-protocol-version': LATEST_PROTOCOL_VERSION },
    });
    expect(left.status).toBe(200);
    await connecting;
    expect(waiting.transport.sessionId).toBeDefined();
    // A bound shorter than Retry-After gives the refusal back at once.
    const short = client(url, recoveringFetch({ maxRetryWaitMs: 500 }));
    await expect(short.connect()).rejects.toThrow(/503|Session limit/);
    await waiting.client.close();
    expect(() => recoveringFetch({ maxRetryWaitMs: -1 })).toThrow(RangeError);
  });

  it('gives the refusal back when no new session can be started', async () => {
    served = await start({ maxSessions: 1, evict: 'none' });
    const a = client(served.url, recoveringFetch());
    await a.connect();
    // Its session deleted behind its back, and the one slot taken by another client.
    const id = a.transport.sessionId as string;
    await fetch(served.url, {
      method: 'DELETE',
      headers: { 'mcp-session-id': id, 'mcp-protocol-version': LATEST_PROTOCOL_VERSION },
    });
    // The DELETE's answer may reach us before the broker has freed the slot.
    const s = served;
    await until(async () => (await s.broker.stats()).occupied === 0, 5000, 'the slot to be freed');
    await session(served.url);
    const result = await rawCall(served.url, id, 'echo', { text: 'x' });
    expect(result.status).toBe(404);
    await expect(a.client.callTool({ name: 'echo', arguments: { text: 'x' } })).rejects.toThrow(/503|Session limit/);
    await a.client.close();
  });
});
