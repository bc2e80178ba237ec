/**
 * Requests at the edges of what the front accepts: bodies nested too deep,
 * bodies that arrive too slowly, and clients that ask for `Connection: close`.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { MAX_JSON_DEPTH } from '../dist/main/front/preflight.js';
import type { Served } from '../dist/main/index.js';
import { alive, post, rawExchange, rawInitialize, rawPost, start } from './helpers.js';

let served: Served | undefined;
afterEach(async () => {
  await served?.close();
  served = undefined;
});

function nested(depth: number): string {
  return `${'['.repeat(depth)}${']'.repeat(depth)}`;
}

function callWithArgument(argument: string): string {
  return `{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"echo","arguments":{"text":"x","deep":${argument}}}}`;
}

describe('deeply nested JSON', () => {
  it('is refused with 400 -32700 before the hop, and the session is fine', async () => {
    served = await start({ maxSessions: 2, threads: 1 });
    const { sessionId } = await rawInitialize(served.url);
    if (!sessionId) throw new Error('no session');
    const headers = { 'mcp-session-id': sessionId, 'mcp-protocol-version': '2025-11-25' };
    const deep = await post(served.url, callWithArgument(nested(10_000)), headers);
    expect(deep.status).toBe(400);
    const body = (await deep.json()) as { error: { code: number; message: string } };
    expect(body.error.code).toBe(-32700);
    expect(body.error.message).toContain(`deeper than ${MAX_JSON_DEPTH} levels`);
    expect(await alive(served.url, sessionId)).toBe(true);
    // Nesting within the limit passes to the session (the message itself is level 1, params 2, arguments 3).
    const ok = await post(served.url, callWithArgument(nested(MAX_JSON_DEPTH - 3)), headers);
    expect(ok.status).toBe(200);
    expect(await ok.text()).toContain('"text":"x"');
    const over = await post(served.url, callWithArgument(nested(MAX_JSON_DEPTH - 2)), headers);
    expect(over.status).toBe(400);
    // Without a session too (an initialize-shaped body).
    const session = await post(served.url, nested(10_000));
    expect(session.status).toBe(400);
    expect(((await session.json()) as { error: { code: number } }).error.code).toBe(-32700);
  });
});

describe('a body that arrives too slowly', () => {
  it('gets 408 with a JSON-RPC body, as slow headers do', async () => {
    served = await start({ maxSessions: 2, threads: 1, requestTimeoutMs: 1_000, headersTimeoutMs: 1_000 });
    const body = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'ping' });
    // Headers promise the whole body; only half of it is ever sent.
    const partial = rawPost(served.url, body).slice(0, -Math.floor(body.length / 2));
    const { text, closedByServer } = await rawExchange(served.url, partial, 10_000);
    expect(closedByServer).toBe(true);
    expect(text).toMatch(/^HTTP\/1\.1 408/);
    expect(text).toContain('"code":-32000');
    expect(text).toContain('Request Timeout');
  });
});

describe('Connection: close from the client', () => {
  it.each([
    ['SSE', false],
    ['JSON', true],
  ])('is honoured on %s answers: the server closes the connection after the response', async (_mode, jsonResponse) => {
    served = await start({ maxSessions: 2, threads: 1, jsonResponse });
    const { sessionId } = await rawInitialize(served.url);
    if (!sessionId) throw new Error('no session');
    const call = JSON.stringify({
      jsonrpc: '2.0',
      id: 8,
      method: 'tools/call',
      params: { name: 'echo', arguments: { text: 'bye' } },
    });
    const { text, closedByServer, elapsedMs } = await rawExchange(
      served.url,
      rawPost(served.url, call, { 'mcp-session-id': sessionId, connection: 'close' }),
      4_000,
    );
    expect(text).toMatch(/^HTTP\/1\.1 200/);
    expect(text).toContain('bye');
    expect(text.toLowerCase()).toContain('connection: close');
    expect(closedByServer).toBe(true);
    expect(elapsedMs).toBeLessThan(4_000);
  });
});
