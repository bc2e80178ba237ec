import { afterEach, describe, expect, it } from 'vitest';
import type { Served } from '../dist/main/index.js';
import { connect, inFlight, outcomeOf, rawInitialize, recordClosed, start } from './helpers.js';

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
