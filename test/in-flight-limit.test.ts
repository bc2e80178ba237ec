/**
 * Requests in flight are bounded per session: one session firing many
 * concurrent calls gets 429 for its own excess, and never fills its thread's
 * queue for the sessions next to it.
 */
import { LATEST_PROTOCOL_VERSION } from '@modelcontextprotocol/sdk/types.js';
import { afterEach, describe, expect, it } from 'vitest';
import type { Served } from '../dist/main/index.js';
import { post, rawCall, rawInitialize, start, until } from './helpers.js';

let served: Served | undefined;
afterEach(async () => {
  await served?.close();
  served = undefined;
});

describe('requests in flight per session', () => {
  it('answer a session past its bound 429 with Retry-After, while its neighbour on the same thread is served', async () => {
    // JSON responses: a request holds its place in the thread's queue until the tool has answered.
    served = await start({
      maxSessions: 10,
      threads: 1,
      jsonResponse: true,
      maxPendingPerThread: 16,
      maxInFlightPerSession: 4,
    });
    const s = served;
    const noisy = (await rawInitialize(s.url)).sessionId as string;
    const quiet = (await rawInitialize(s.url)).sessionId as string;
    const noisyRef = s.broker.index.lookup(noisy);
    if (!noisyRef.ok) throw new Error('no session');

    const flood = Array.from({ length: 30 }, () => rawCall(s.url, noisy, 'sleep', { ms: 6000 }));
    await until(() => s.broker.index.inflight(noisyRef.ref) >= 4, 5000, 'the noisy session at its bound');
    // The neighbour stays within its own bound (4 at once), twice over.
    for (let round = 0; round < 2; round++) {
      const neighbour = await Promise.all(
        Array.from({ length: 4 }, () => rawCall(s.url, quiet, 'echo', { text: 'hi' })),
      );
      expect(neighbour.map((r) => r.status)).toEqual([200, 200, 200, 200]);
    }
    expect(s.broker.index.inflight(noisyRef.ref)).toBe(4);

    const noisyResults = await Promise.all(flood);
    const statuses = noisyResults.map((r) => r.status).sort();
    expect(statuses).toEqual([...Array(4).fill(200), ...Array(26).fill(429)]);
    for (const limited of noisyResults.filter((r) => r.status === 429)) {
      expect(limited.headers.get('retry-after')).toBe('1');
      expect(JSON.parse(limited.text)).toMatchObject({
        jsonrpc: '2.0',
        error: {
          code: -32000,
          message: 'Too many requests in flight for this session',
          data: { reason: 'in_flight_limited' },
        },
      });
    }
    // Once its requests are done, the session is served again.
    expect((await rawCall(s.url, noisy, 'echo', { text: 'again' })).status).toBe(200);
    const metrics = await (await fetch(s.metricsUrl)).text();
    expect(metrics).toMatch(/^mcp_requests_rejected_total\{reason="in_flight_limited"\} 26$/m);
    expect(metrics).not.toMatch(/reason="queue_full"\} [1-9]/);
  });

  it('counts a DELETE as in flight: a session at its bound gets 429 for it too, and 200 once a request ends', async () => {
    served = await start({ maxSessions: 10, threads: 1, jsonResponse: true, maxInFlightPerSession: 1 });
    const s = served;
    const id = (await rawInitialize(s.url)).sessionId as string;
    const found = s.broker.index.lookup(id);
    if (!found.ok) throw new Error('no session');
    const slow = rawCall(s.url, id, 'sleep', { ms: 500 });
    await until(() => s.broker.index.inflight(found.ref) === 1, 5000, 'the call in flight');
    const headers = { 'mcp-session-id': id, 'mcp-protocol-version': LATEST_PROTOCOL_VERSION };
    const refused = await fetch(s.url, { method: 'DELETE', headers });
    expect(refused.status).toBe(429);
    await refused.text();
    // The GET stream is not in flight: it opens while the call runs.
    const stream = await fetch(s.url, { headers: { ...headers, accept: 'text/event-stream' } });
    expect(stream.status).toBe(200);
    await stream.body?.cancel();
    expect((await slow).status).toBe(200);
    const deleted = await fetch(s.url, { method: 'DELETE', headers });
    expect(deleted.status).toBe(200);
    expect((await post(s.url, { jsonrpc: '2.0', id: 1, method: 'ping' }, headers)).status).toBe(404);
  });
});
