/**
 * A handler thread whose event loop is blocked (a tool in an endless
 * synchronous loop) is terminated and replaced by the watchdog: the call gets
 * an error answer, the thread's sessions close with reason `error` and their
 * capacity returns, while sessions on other threads keep working. Long before
 * that, an admission at capacity stops counting on the thread: it evicts
 * elsewhere or is refused at once, never waiting on a close the thread cannot
 * confirm.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import type { Served } from '../dist/main/index.js';
import {
  type Connected,
  connect,
  inFlight,
  outcomeOf,
  rawInitialize,
  recordClosed,
  start,
  threadOf,
  until,
} from './helpers.js';

let served: Served | undefined;
afterEach(async () => {
  await served?.close();
  served = undefined;
});

interface Owned {
  readonly session: Connected;
  readonly owner: number;
}

/** Connects `n` sessions one after the other (so creation order is index order) and finds their threads. */
async function connectInOrder(s: Served, n: number): Promise<Owned[]> {
  const out: Owned[] = [];
  for (let i = 0; i < n; i++) {
    const session = await connect(s.url);
    out.push({ session, owner: await threadOf(s.url, session.sessionId) });
  }
  return out;
}

/** An initialize, or undefined if it has no answer within `ms`. */
function initializeWithin(url: string, ms: number) {
  return Promise.race([rawInitialize(url), sleep(ms).then(() => undefined)]);
}

// The listener-thread design: the main thread accepts every connection, so a
// blocked handler thread holds up only its own sessions. With per-thread
// listeners it also holds up the connections the kernel gave it, until the
// watchdog replaces it (thread-listeners.test.ts).
describe('a handler thread whose event loop is blocked', () => {
  it.each([
    ['before the call is answered', {}],
    ['while the call answer streams', { afterMs: 200 }],
  ])(
    'is replaced when a tool blocks it %s: the call fails, its sessions close with reason error, the capacity returns, other threads keep serving',
    async (_when, args) => {
      served = await start({ maxSessions: 4, threads: 2, evict: 'none', stallTimeoutMs: 1500, listeners: 'main' });
      const s = served;
      const closed = recordClosed(s);
      const all = await connectInOrder(s, 4);
      const stuckThread = all[0]?.owner as number;
      const doomed = all.filter((x) => x.owner === stuckThread);
      const survivors = all.filter((x) => x.owner !== stuckThread);
      expect(survivors.length).toBeGreaterThan(0);
      expect((await rawInitialize(s.url)).status).toBe(503);

      const started = Date.now();
      const outcome = await outcomeOf((doomed[0] as Owned).session.client.callTool({ name: 'spin', arguments: args }));
      expect(outcome).toMatch(/Session closed: error/);
      // The stall timeout (1.5 s), at most one watchdog period, the termination, and a loaded machine's delays.
      expect(Date.now() - started).toBeLessThan(5000);
      await until(
        () => doomed.every((d) => closed.some((e) => e.id === d.session.sessionId && e.reason === 'error')),
        5000,
        'the stuck thread sessions to close',
      );
      const stats = await s.broker.stats();
      expect(stats.occupied).toBe(survivors.length);
      expect(stats.transports).toBe(survivors.length);
      expect(s.broker.threadRestarts).toEqual({ stalled: 1, died: 0 });

      for (const { session } of survivors) {
        expect(await session.client.callTool({ name: 'echo', arguments: { text: 'still here' } })).toMatchObject({
          content: [{ type: 'text', text: 'still here' }],
        });
      }
      await until(
        () => s.broker.threadIds.length === 2 && !s.broker.threadIds.includes(stuckThread),
        10_000,
        'the replacement thread',
      );
      const fresh = await Promise.all(doomed.map(() => connect(s.url)));
      expect(fresh).toHaveLength(doomed.length);
      expect((await rawInitialize(s.url)).status).toBe(503);
      expect(await (await fetch(s.metricsUrl)).text()).toMatch(
        /^mcp_handler_thread_restarts_total\{reason="stalled"\} 1$/m,
      );
    },
  );

  it('does not hold up an admission at capacity: the oldest session of a thread that can answer is evicted at once', async () => {
    // A watchdog far away: the admission must not depend on it.
    served = await start({
      listeners: 'main',
      maxSessions: 4,
      threads: 2,
      evict: 'oldest',
      stallTimeoutMs: 60_000,
      shutdownTimeoutMs: 500,
    });
    const s = served;
    const closed = recordClosed(s);
    const all = await connectInOrder(s, 4);
    // The oldest session sits idle on the thread another of its sessions is about to block.
    const stuckThread = all[0]?.owner as number;
    const spinner = all.slice(1).find((x) => x.owner === stuckThread);
    const healthy = all.filter((x) => x.owner !== stuckThread);
    if (!spinner || healthy.length === 0) throw new Error('sessions were not spread over both threads');
    void outcomeOf(spinner.session.client.callTool({ name: 'spin', arguments: {} }));
    await until(() => s.broker.index.unresponsiveThreads().has(stuckThread), 5000, 'the thread to fall silent');

    const started = Date.now();
    const answer = await initializeWithin(s.url, 5000);
    expect(answer?.status).toBe(200);
    expect(Date.now() - started).toBeLessThan(2000);
    expect(closed.map((e) => [e.id, e.reason])).toEqual([[healthy[0]?.session.sessionId, 'evicted']]);
    expect((await s.broker.stats()).occupied).toBe(4);
  });

  it('refuses an admission at capacity at once, with 503 and Retry-After, when only its sessions could be evicted', async () => {
    served = await start({
      listeners: 'main',
      maxSessions: 4,
      threads: 2,
      evict: 'oldest',
      stallTimeoutMs: 60_000,
      shutdownTimeoutMs: 500,
    });
    const s = served;
    const closed = recordClosed(s);
    const all = await connectInOrder(s, 4);
    const stuckThread = all[0]?.owner as number;
    const spinner = all.slice(1).find((x) => x.owner === stuckThread);
    const healthy = all.filter((x) => x.owner !== stuckThread);
    if (!spinner || healthy.length === 0) throw new Error('sessions were not spread over both threads');
    // Every session of the other thread is busy (a request in flight): not evictable.
    for (const { session } of healthy) {
      void outcomeOf(session.client.callTool({ name: 'sleep', arguments: { ms: 30_000 } }));
      await inFlight(s, session.sessionId);
    }
    void outcomeOf(spinner.session.client.callTool({ name: 'spin', arguments: {} }));
    await until(() => s.broker.index.unresponsiveThreads().has(stuckThread), 5000, 'the thread to fall silent');

    const started = Date.now();
    const answer = await initializeWithin(s.url, 5000);
    expect(answer?.status).toBe(503);
    expect(Number(answer?.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(Date.now() - started).toBeLessThan(2000);
    expect(closed).toEqual([]);
    // A thread merely waiting on async work keeps its heartbeat.
    expect(s.broker.index.unresponsiveThreads().has(healthy[0]?.owner as number)).toBe(false);
  });
});
