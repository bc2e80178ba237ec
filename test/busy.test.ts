import { afterEach, describe, expect, it } from 'vitest';
import type { Served } from '../dist/main/index.js';
import { connect, inFlight, outcomeOf, rawCall, rawInitialize, recordClosed, start } from './helpers.js';

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
    const busy = await connect(s.url, s);
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
});

describe('a request that has been answered', () => {
  it.each([
    ['JSON', true],
    ['SSE', false],
  ])('no longer holds its session once the client has read its answer (%s)', async (_mode, jsonResponse) => {
    served = await start({ maxSessions: 2, threads: 2, jsonResponse });
    const s = served;
    const created = await rawInitialize(s.url);
    const id = created.sessionId as string;
    const found = s.broker.index.lookup(id);
    if (!found.ok) throw new Error('no session');
    // The initialize was answered: its request left before its last bytes were written (ADR 22).
    expect(s.broker.index.inflight(found.ref)).toBe(0);
    for (let i = 0; i < 40; i++) {
      const answer = await rawCall(s.url, id, 'echo', { text: `${i}` });
      expect(answer.status).toBe(200);
      expect(s.broker.index.inflight(found.ref)).toBe(0);
    }
  });
});
