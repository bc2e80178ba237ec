/**
 * A factory that fails or never finishes costs nothing lasting: the initialize
 * gets a JSON-RPC 500, the session is closed as `error`, the slot is freed and
 * the rate token refunded.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { Served } from '../dist/main/index.js';
import { rawInitialize, start } from './helpers.js';

let served: Served | undefined;
afterEach(async () => {
  await served?.close();
  served = undefined;
});

describe.each([
  ['throws', 'throwing-factory.js'],
  ['never finishes', 'hanging-factory.js'],
])('a factory that %s', (_what, file) => {
  it('answers 500, frees the slot and refunds the rate token', async () => {
    served = await start({
      maxSessions: 1,
      evict: 'none',
      threads: 1,
      rate: { max: 1, windowMs: 60_000 },
      factoryTimeoutMs: 300,
      module: new URL(`./fixtures/${file}`, import.meta.url),
    });
    for (let attempt = 0; attempt < 2; attempt++) {
      const res = await rawInitialize(served.url);
      // Not 429 on the second attempt (the token came back), not 503 (the slot came back).
      expect(res.status).toBe(500);
      expect(JSON.parse(res.text)).toMatchObject({ jsonrpc: '2.0', error: { code: -32603 } });
    }
    const stats = await served.broker.stats();
    expect(stats).toMatchObject({ occupied: 0, transports: 0, createdTotal: 2 });
    expect(stats.closedTotal.error).toBe(2);
    expect(stats.rejectedTotal.rate_limited).toBe(0);
  });
});
