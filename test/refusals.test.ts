/**
 * A refused initialize evicts nothing and spends no rate token: the preflight
 * answers before the broker is asked.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { Served } from '../dist/main/index.js';
import { alive, initializeBody, post, rawInitialize, recordClosed, start } from './helpers.js';

let served: Served | undefined;
afterEach(async () => {
  await served?.close();
  served = undefined;
});

describe('refused initializes', () => {
  it('answer 406, 415 and 400 (bad version) without evicting anything or spending a token', async () => {
    served = await start({ maxSessions: 2, rate: { max: 3, windowMs: 60_000 } });
    const closed = recordClosed(served);
    const a = await rawInitialize(served.url);
    const b = await rawInitialize(served.url);
    expect([a.status, b.status]).toEqual([200, 200]);
    const refusals = await Promise.all([
      post(served.url, initializeBody(), { accept: 'text/event-stream' }),
      post(served.url, initializeBody(), { 'content-type': 'application/x-www-form-urlencoded' }),
      post(served.url, initializeBody(), { 'mcp-protocol-version': '2099-12-31' }),
      post(served.url, { ...initializeBody(), params: { capabilities: {} } }),
      post(served.url, '{ not json'),
    ]);
    expect(refusals.map((r) => r.status)).toEqual([406, 415, 400, 400, 400]);
    // Nothing was evicted: both sessions still answer.
    expect(await alive(served.url, a.sessionId as string)).toBe(true);
    expect(await alive(served.url, b.sessionId as string)).toBe(true);
    expect(closed).toHaveLength(0);
    // No token was spent: exactly one more creation fits in the window (3 per minute).
    expect((await rawInitialize(served.url)).status).toBe(200);
    expect((await rawInitialize(served.url)).status).toBe(429);
    const stats = await served.broker.stats();
    expect(stats.createdTotal).toBe(3);
    expect(stats.closedTotal.evicted).toBe(1);
  });
});
