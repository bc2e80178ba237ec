import { request } from 'node:http';
import { LATEST_PROTOCOL_VERSION } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Served } from '../dist/main/index.js';
import {
  ACCEPT,
  type Connected,
  connect,
  inFlight,
  initializeBody,
  post,
  rawCall,
  rawInitialize,
  settled,
  start,
} from './helpers.js';

async function json(res: Response) {
  return (await res.json()) as { jsonrpc: string; id: unknown; error: { code: number; message: string } };
}

/** A POST with a Host header fetch() would not send. */
function postWithHost(target: string, host: string, body: unknown): Promise<{ status: number; body: string }> {
  const url = new URL(target);
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: url.hostname,
        port: url.port,
        path: url.pathname,
        method: 'POST',
        headers: { host, 'content-type': 'application/json', accept: ACCEPT },
      },
      (res) => {
        let text = '';
        res.on('data', (chunk) => {
          text += chunk;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
      },
    );
    req.on('error', reject);
    req.end(JSON.stringify(body));
  });
}

const WELL_FORMED_UNKNOWN = `00000000${'0'.repeat(8)}${'ab'.repeat(16)}`;

describe('the HTTP answers table', () => {
  let served: Served;
  let bystander: Connected;

  beforeAll(async () => {
    served = await start({
      maxSessions: 50,
      evict: 'none',
      maxBodyBytes: 64 * 1024,
      allowedHosts: ['127.0.0.1', 'x:99999'],
    });
    bystander = await connect(served.url);
  });
  afterAll(async () => {
    await bystander.client.close();
    await served.close();
  });

  it.each([
    ['POST', 'an unknown id', WELL_FORMED_UNKNOWN],
    ['POST', 'a malformed id', 'not-a-session'],
    ['GET', 'an unknown id', WELL_FORMED_UNKNOWN],
    ['DELETE', 'a malformed id', 'x'.repeat(48)],
  ])('answers %s with %s 404 and JSON-RPC -32001', async (method, _what, id) => {
    const res = await fetch(served.url, {
      method,
      headers: { 'mcp-session-id': id, accept: ACCEPT, 'content-type': 'application/json' },
      ...(method === 'POST' ? { body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'ping' }) } : {}),
    });
    expect(res.status).toBe(404);
    expect(await json(res)).toMatchObject({ jsonrpc: '2.0', id: null, error: { code: -32001 } });
  });

  it('answers an initialize that carries an unknown session id with 404', async () => {
    const res = await post(served.url, initializeBody(), { 'mcp-session-id': WELL_FORMED_UNKNOWN });
    expect(res.status).toBe(404);
    expect((await json(res)).error.code).toBe(-32001);
  });

  it('answers a non-initialize POST without a session id with 400 -32000', async () => {
    const res = await post(served.url, { jsonrpc: '2.0', id: 7, method: 'tools/list' });
    expect(res.status).toBe(400);
    expect(await json(res)).toMatchObject({ id: 7, error: { code: -32000 } });
  });

  it.each(['GET', 'DELETE'])('answers %s without a session id with 400 -32000', async (method) => {
    const res = await fetch(served.url, { method, headers: { accept: 'text/event-stream' } });
    expect(res.status).toBe(400);
    expect((await json(res)).error.code).toBe(-32000);
  });

  it('answers malformed JSON with 400 -32700', async () => {
    const res = await post(served.url, '{"jsonrpc": "2.0", "id": 1, "method": ');
    expect(res.status).toBe(400);
    expect((await json(res)).error.code).toBe(-32700);
  });

  it('answers JSON that is not JSON-RPC with 400 -32700', async () => {
    const res = await post(served.url, { hello: 'world' });
    expect(res.status).toBe(400);
    expect((await json(res)).error.code).toBe(-32700);
  });

  it('answers a body over the limit with 413 -32000, by Content-Length or by streaming', async () => {
    const big = JSON.stringify({ ...initializeBody(), pad: 'x'.repeat(70 * 1024) });
    const declared = await post(served.url, big);
    expect(declared.status).toBe(413);
    expect((await json(declared)).error.code).toBe(-32000);
    const chunked = await fetch(served.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: ACCEPT },
      body: new ReadableStream({
        start(controller) {
          controller.enqueue(new TextEncoder().encode(big));
          controller.close();
        },
      }),
      duplex: 'half',
    } as RequestInit);
    expect(chunked.status).toBe(413);
  });

  it('answers a wrong Accept with 406 and a wrong Content-Type with 415', async () => {
    const notAcceptable = await post(served.url, initializeBody(), { accept: 'application/json' });
    expect(notAcceptable.status).toBe(406);
    expect((await json(notAcceptable)).error.code).toBe(-32000);
    const unsupported = await post(served.url, initializeBody(), { 'content-type': 'text/plain' });
    expect(unsupported.status).toBe(415);
    const getNotAcceptable = await fetch(served.url, {
      headers: { accept: 'application/json', 'mcp-session-id': bystander.sessionId },
    });
    expect(getNotAcceptable.status).toBe(406);
  });

  it('answers an initialize with an unsupported protocol version header with 400', async () => {
    const res = await post(served.url, initializeBody(), { 'mcp-protocol-version': '1999-01-01' });
    expect(res.status).toBe(400);
    expect((await json(res)).error.message).toMatch(/Unsupported protocol version/);
  });

  it('answers an initialize sent as a notification (no id) with 400 and creates nothing', async () => {
    const before = (await served.broker.stats()).createdTotal;
    const { id: _, ...notification } = initializeBody();
    const res = await post(served.url, notification);
    expect(res.status).toBe(400);
    expect((await json(res)).error.code).toBe(-32600);
    expect((await served.broker.stats()).createdTotal).toBe(before);
  });

  it('answers a batch with two initializes with 400 -32600', async () => {
    const res = await post(served.url, [initializeBody(1), initializeBody(2)]);
    expect(res.status).toBe(400);
    expect((await json(res)).error.code).toBe(-32600);
  });

  it.each(['PUT', 'PATCH'])('answers %s with 405 and an Allow header', async (method) => {
    const res = await fetch(served.url, { method });
    expect(res.status).toBe(405);
    expect(res.headers.get('allow')).toBe('GET, POST, DELETE');
    expect((await json(res)).error.code).toBe(-32000);
  });

  it('answers DELETE of a live session with 200, then 404', async () => {
    const { sessionId } = await rawInitialize(served.url);
    if (!sessionId) throw new Error('no session');
    const headers = { 'mcp-session-id': sessionId, 'mcp-protocol-version': LATEST_PROTOCOL_VERSION };
    const deleted = await fetch(served.url, { method: 'DELETE', headers });
    expect(deleted.status).toBe(200);
    const again = await fetch(served.url, { method: 'DELETE', headers });
    expect(again.status).toBe(404);
    expect((await rawCall(served.url, sessionId, 'echo', { text: 'x' })).status).toBe(404);
  });

  it('answers a Host outside the loopback names with 403 (DNS rebinding) and creates nothing', async () => {
    const before = (await served.broker.stats()).createdTotal;
    const answer = await postWithHost(served.url, 'evil.example', initializeBody());
    expect(answer.status).toBe(403);
    expect(JSON.parse(answer.body)).toMatchObject({ error: { code: -32000, message: 'Invalid Host: evil.example' } });
    const foreignOrigin = await post(served.url, initializeBody(), { origin: 'http://evil.example' });
    expect(foreignOrigin.status).toBe(403);
    expect((await served.broker.stats()).createdTotal).toBe(before);
  });

  it('answers an initialize with an unparsable Host header with 400 and creates nothing', async () => {
    // Allowed by the Host policy, but not a valid URL authority.
    const before = (await served.broker.stats()).createdTotal;
    const { status } = await postWithHost(served.url, 'x:99999', initializeBody());
    expect(status).toBe(400);
    expect((await served.broker.stats()).createdTotal).toBe(before);
  });

  it('sends no CORS headers by default', async () => {
    const res = await post(served.url, { jsonrpc: '2.0', id: 1, method: 'ping' }, { origin: 'http://example.test' });
    await res.text();
    expect(res.headers.get('access-control-allow-origin')).toBeNull();
  });

  it('answers unknown paths with 404 and /healthz with 200', async () => {
    const base = served.url.replace(/\/mcp$/, '');
    expect((await fetch(`${base}/nope`)).status).toBe(404);
    const health = await fetch(`${base}/healthz`);
    expect(health.status).toBe(200);
  });

  it('keeps every other session working after all of the above', async () => {
    const result = await bystander.client.callTool({ name: 'echo', arguments: { text: 'still here' } });
    expect(result.content).toEqual([{ type: 'text', text: 'still here' }]);
  });
});

describe('limits in the HTTP table', () => {
  it('answers a full server with eviction off with 503, Retry-After and -32000', async () => {
    const served = await start({ maxSessions: 1, evict: 'none' });
    try {
      expect((await rawInitialize(served.url)).status).toBe(200);
      const refused = await rawInitialize(served.url);
      expect(refused.status).toBe(503);
      expect(Number(refused.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
      expect(JSON.parse(refused.text)).toMatchObject({ jsonrpc: '2.0', id: 1, error: { code: -32000 } });
    } finally {
      await served.close();
    }
  });

  it('answers a rate-limited initialize with 429, Retry-After and -32000', async () => {
    const served = await start({ maxSessions: 10, rate: { max: 2, windowMs: 60_000 } });
    try {
      expect((await rawInitialize(served.url)).status).toBe(200);
      expect((await rawInitialize(served.url)).status).toBe(200);
      const limited = await rawInitialize(served.url);
      expect(limited.status).toBe(429);
      const retryAfter = Number(limited.headers.get('retry-after'));
      expect(retryAfter).toBeGreaterThanOrEqual(59);
      expect(retryAfter).toBeLessThanOrEqual(60);
      expect(JSON.parse(limited.text).error.code).toBe(-32000);
      expect(limited.sessionId).toBeUndefined();
    } finally {
      await served.close();
    }
  });

  it('answers 503 with Retry-After when the owner thread has too many requests pending', async () => {
    // JSON responses hold their dispatch until the tool answers (an SSE head is sent at once).
    const served = await start({ maxSessions: 5, threads: 1, maxPendingPerThread: 1, jsonResponse: true });
    try {
      const busy = (await rawInitialize(served.url)).sessionId;
      const other = (await rawInitialize(served.url)).sessionId;
      if (!busy || !other) throw new Error('no session');
      // One slow request of one session occupies the thread's only dispatch slot while its tool runs.
      // Its initialize may still count as in flight just after its answer was read: wait for it to leave.
      await settled(served, busy);
      const slow = rawCall(served.url, busy, 'sleep', { ms: 1500 });
      await inFlight(served, busy);
      const refused = await rawCall(served.url, other, 'echo', { text: 'x' });
      expect(refused.status).toBe(503);
      expect(refused.headers.get('retry-after')).toBe('1');
      expect(JSON.parse(refused.text).error).toMatchObject({ code: -32000, data: { reason: 'queue_full' } });
      expect((await slow).status).toBe(200);
    } finally {
      await served.close();
    }
  });

  it('sends CORS headers exposing Mcp-Session-Id when configured, and answers preflight', async () => {
    const served = await start({ maxSessions: 5, cors: 'http://app.test' });
    try {
      const res = await post(served.url, initializeBody(), { origin: 'http://app.test' });
      await res.text();
      expect(res.headers.get('access-control-allow-origin')).toBe('http://app.test');
      expect(res.headers.get('access-control-expose-headers')).toMatch(/mcp-session-id/i);
      const preflight = await fetch(served.url, { method: 'OPTIONS', headers: { origin: 'http://app.test' } });
      expect(preflight.status).toBe(204);
      expect(preflight.headers.get('access-control-allow-headers')).toMatch(/mcp-session-id/);
    } finally {
      await served.close();
    }
  });
});
