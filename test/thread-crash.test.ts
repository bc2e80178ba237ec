/**
 * A handler thread that dies has its sessions closed with reason `error` and
 * their capacity freed; the pool replaces the thread.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { Served } from '../dist/main/index.js';
import {
  alive,
  connect,
  connectOnEveryThread,
  rawCall,
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

describe('a handler thread crash', () => {
  it.each(['crash', 'throw'])('is noticed when the thread dies by %s, and its sessions are freed', async (tool) => {
    served = await start({ maxSessions: 4, threads: 2, evict: 'none' });
    const s = served;
    const closed = recordClosed(s);
    const sessions = await Promise.all(Array.from({ length: 4 }, () => connect(s.url)));
    const owners = await Promise.all(sessions.map((x) => threadOf(s.url, x.sessionId)));
    const doomed = sessions.filter((_, i) => owners[i] === owners[0]).map((x) => x.sessionId);
    await rawCall(s.url, doomed[0] as string, tool);
    await until(
      () => doomed.every((id) => closed.some((e) => e.id === id && e.reason === 'error')),
      10_000,
      'the sessions',
    );
    await until(async () => (await s.broker.stats()).occupied === 4 - doomed.length, 5000, 'the capacity');
    expect((await s.broker.stats()).transports).toBe(4 - doomed.length);
    // Their next request is told why (404, reason error).
    const answer = await rawCall(s.url, doomed[0] as string, 'echo', { text: 'x' });
    expect(answer.status).toBe(404);
    expect(JSON.parse(answer.text)).toMatchObject({ error: { data: { reason: 'error' } } });
    await until(() => s.broker.threadIds.length === 2 && !s.broker.threadIds.includes(owners[0] as number), 10_000);
  });

  it('closes its sessions with reason error, frees their capacity, and the pool replaces the thread', async () => {
    served = await start({ maxSessions: 6, threads: 2, evict: 'none' });
    const s = served;
    const closed = recordClosed(s);
    // Both threads own sessions (with per-thread listeners the kernel picks).
    const owned = await connectOnEveryThread(s, 6);
    const victimThread = owned[0]?.owner as number;
    const doomed = owned.filter((x) => x.owner === victimThread).map((x) => x.session.sessionId);
    const survivors = owned.filter((x) => x.owner !== victimThread).map((x) => x.session.sessionId);
    expect(doomed.length).toBeGreaterThan(0);
    expect(survivors.length).toBeGreaterThan(0);
    // Full, eviction off: nothing more fits.
    expect((await rawInitialize(s.url)).status).toBe(503);

    await rawCall(s.url, doomed[0] as string, 'crash');
    await until(
      () => doomed.every((id) => closed.some((e) => e.id === id)),
      10_000,
      'the crashed thread sessions to close',
    );
    expect(closed.filter((e) => doomed.includes(e.id)).every((e) => e.reason === 'error')).toBe(true);
    for (const id of doomed) expect(await alive(s.url, id)).toBe(false);
    for (const id of survivors) expect(await alive(s.url, id)).toBe(true);

    const stats = await s.broker.stats();
    expect(stats.occupied).toBe(survivors.length);
    expect(stats.transports).toBe(survivors.length);
    // The freed capacity is usable, and the pool is back to two threads.
    await until(() => s.broker.threadIds.length === 2, 10_000, 'the replacement thread');
    expect(s.broker.threadIds).not.toContain(victimThread);
    expect(s.broker.threadRestarts).toEqual({ stalled: 0, died: 1 });
    const fresh = await Promise.all(doomed.map(() => connect(s.url)));
    expect(fresh).toHaveLength(doomed.length);
    expect((await rawInitialize(s.url)).status).toBe(503);
  });
});
