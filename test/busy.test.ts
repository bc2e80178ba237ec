/**
 * Busy sessions: a POST in flight protects its session from eviction, for at
 * most the busy timeout; a client that never reads its SSE response gets its
 * stream aborted at the buffer cap instead of holding memory.
 */
import { connect as netConnect } from 'node:net';
import { LATEST_PROTOCOL_VERSION } from '@modelcontextprotocol/sdk/types.js';
import { afterEach, describe, expect, it } from 'vitest';
import type { Served } from '../dist/main/index.js';
import { alive, connect, inFlight, outcomeOf, rawCall, rawInitialize, recordClosed, start, until } from './helpers.js';

let served: Served | undefined;
afterEach(async () => {
  await served?.close();
  served = undefined;
});

describe('busy sessions', () => {
  it('are not evicted while a request is in flight, until the busy timeout passes', async () => {
    served = await start({ maxSessions: 1, manualClock: true, busyTimeoutMs: 2_000, idleTimeoutMs: 0 });
    const s = served;
    const closed = recordClosed(s);
    const busy = await connect(s.url);
    const call = outcomeOf(busy.client.callTool({ name: 'sleep', arguments: { ms: 60_000 } }));
    await inFlight(s, busy.sessionId);
    const refused = await rawInitialize(s.url);
    expect(refused.status).toBe(503);
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(closed).toHaveLength(0);
    s.broker.clock.advance(1_999);
    expect((await rawInitialize(s.url)).status).toBe(503);
    s.broker.clock.advance(1);
    const admitted = await rawInitialize(s.url);
    expect(admitted.status).toBe(200);
    expect(await call).toMatch(/Session closed: evicted/);
    expect(closed.map((e) => [e.id, e.reason])).toEqual([[busy.sessionId, 'evicted']]);
  });

  it('abort the stream of a client that never reads, freeing the session from busy', async () => {
    served = await start({
      maxSessions: 1,
      threads: 1,
      maxStreamBufferBytes: 256 * 1024,
      streamWindowBytes: 64 * 1024,
    });
    const s = served;
    const { sessionId } = await rawInitialize(s.url);
    if (!sessionId) throw new Error('no session');
    const found = s.broker.table.lookup(sessionId);
    if (!found.ok) throw new Error('not found');
    const seenBefore = Number(s.broker.table.views.times[found.ref.slot * 4 + 1]);
    await new Promise((resolve) => setTimeout(resolve, 5));
    // A raw socket that sends a tools/call producing ~40 MB of SSE, then never reads.
    const url = new URL(s.url);
    const body = JSON.stringify({
      jsonrpc: '2.0',
      id: 9,
      method: 'tools/call',
      params: { name: 'flood', arguments: { count: 4000, size: 10_000 } },
    });
    const socket = netConnect(Number(url.port), url.hostname);
    socket.pause();
    socket.on('error', () => undefined);
    socket.write(
      `POST ${url.pathname} HTTP/1.1\r\nhost: ${url.host}\r\ncontent-type: application/json\r\n` +
        `accept: application/json, text/event-stream\r\nmcp-session-id: ${sessionId}\r\n` +
        `mcp-protocol-version: ${LATEST_PROTOCOL_VERSION}\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    );
    // The request entered (it touched the session) and has already left again, or will.
    const lastSeen = () => Number(s.broker.table.views.times[found.ref.slot * 4 + 1]);
    await until(() => lastSeen() > seenBefore, 5000, 'the call to arrive');
    // The server aborts the stream once the buffer cap is exceeded: the request is no longer in flight
    // although the client has read nothing and the tool had far more to send.
    await until(() => s.broker.table.inflight(found.ref) === 0, 20_000, 'the stream abort');
    // The session itself survives and answers other requests.
    expect(await alive(s.url, sessionId)).toBe(true);
    expect((await rawCall(s.url, sessionId, 'echo', { text: 'ok' })).status).toBe(200);
    socket.destroy();
  });
});
