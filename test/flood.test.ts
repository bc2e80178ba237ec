/**
 * A flood of initializes that never DELETE: the live count plateaus at the cap,
 * every answer is a session or a 503 by policy, and the server keeps serving
 * a fresh client. (The 50k-initialize memory plateau is measured in bench/.)
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { Served } from '../dist/main/index.js';
import { connect, initializeBody, post, start } from './helpers.js';

let served: Served | undefined;
afterEach(async () => {
  await served?.close();
  served = undefined;
});

describe('an initialize flood', () => {
  it('plateaus at the cap and keeps serving', async () => {
    const max = 100;
    served = await start({ maxSessions: max, threads: 2 });
    const s = served;
    const total = 3000;
    let next = 0;
    let peak = 0;
    const statuses = new Map<number, number>();
    const worker = async () => {
      while (next < total) {
        next++;
        const res = await post(s.url, initializeBody());
        await res.text();
        statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
        peak = Math.max(peak, s.broker.transports());
      }
    };
    await Promise.all(Array.from({ length: 32 }, worker));
    expect([...statuses.keys()].every((status) => status === 200 || status === 503)).toBe(true);
    expect(statuses.get(200) ?? 0).toBeGreaterThan(total / 2);
    expect(peak).toBeLessThanOrEqual(max);
    const stats = await s.broker.stats();
    expect(stats.transports).toBe(max);
    expect(stats.closedTotal.evicted).toBe((statuses.get(200) ?? 0) - max);
    // Still answering: a fresh client gets a session and a tool call through.
    const { client } = await connect(s.url);
    expect(await client.callTool({ name: 'echo', arguments: { text: 'alive' } })).toMatchObject({
      content: [{ text: 'alive' }],
    });
  }, 120_000);
});
