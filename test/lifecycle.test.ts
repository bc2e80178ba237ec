/**
 * Session lifecycle end to end (ported from the Rust crate's suite), through
 * real HTTP, the SDK's own client and two handler threads, on the manual clock.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { Served, SessionClosedEvent } from '../dist/main/index.js';
import { alive, connect, inFlight, outcomeOf, rawInitialize, recordClosed, settled, start, until } from './helpers.js';

let served: Served | undefined;
afterEach(async () => {
  await served?.close();
  served = undefined;
});

async function startManual(options: Parameters<typeof start>[0]) {
  served = await start({ manualClock: true, ...options });
  return { served, closed: recordClosed(served) };
}

/** Waits for the closed events of these ids to arrive (they come from the broker thread). */
async function closedFor(events: SessionClosedEvent[], ids: string[]) {
  await until(
    () => ids.every((id) => events.some((e) => e.id === id)),
    5000,
    `closed events for ${ids.length} sessions`,
  );
  return ids.map((id) => events.find((e) => e.id === id) as SessionClosedEvent);
}

async function cleanState(s: Served) {
  const stats = await s.broker.stats();
  expect(stats.occupied).toBe(0);
  expect(stats.live).toBe(0);
  expect(stats.closing).toBe(0);
  expect(stats.fifoLength).toBe(0);
  expect(stats.transports).toBe(0);
  expect(Object.values(stats.transportsByThread).every((n) => n === 0)).toBe(true);
  expect(stats.createdTotal).toBe(Object.values(stats.closedTotal).reduce((a, b) => a + b, 0));
}

describe('session lifecycle', () => {
  it('expires an idle session: 404 at once on the request path, closed as idle by the sweep', async () => {
    const { served, closed } = await startManual({ maxSessions: 10, idleTimeoutMs: 1_000 });
    const s = await connect(served.url, served);
    served.broker.clock.advance(999);
    expect(await alive(served.url, s.sessionId)).toBe(true);
    await settled(served, s.sessionId);
    served.broker.clock.advance(1_000);
    // No sweep has run on the manual clock yet: the request path alone refuses it.
    expect(await alive(served.url, s.sessionId)).toBe(false);
    await served.broker.sweep();
    const [event] = await closedFor(closed, [s.sessionId]);
    expect(event?.reason).toBe('idle');
  });

  it('applies an idle timeout shorter than the default', async () => {
    const { served } = await startManual({ maxSessions: 10, idleTimeoutMs: 500 });
    const s = await connect(served.url, served);
    served.broker.clock.advance(499);
    expect(await alive(served.url, s.sessionId)).toBe(true);
    await settled(served, s.sessionId);
    served.broker.clock.advance(500);
    expect(await alive(served.url, s.sessionId)).toBe(false);
  });

  it('evicts the oldest at max 2: s1 gets 404, s2 and s3 work', async () => {
    const { served, closed } = await startManual({ maxSessions: 2 });
    const s1 = await connect(served.url, served);
    const s2 = await connect(served.url, served);
    const s3 = await connect(served.url, served);
    await expect(s1.client.callTool({ name: 'echo', arguments: { text: 'a' } })).rejects.toThrow(
      /404|Session not found/,
    );
    expect(await s2.client.callTool({ name: 'echo', arguments: { text: 'b' } })).toMatchObject({
      content: [{ text: 'b' }],
    });
    expect(await s3.client.callTool({ name: 'echo', arguments: { text: 'c' } })).toMatchObject({
      content: [{ text: 'c' }],
    });
    const [event] = await closedFor(closed, [s1.sessionId]);
    expect(event?.reason).toBe('evicted');
    expect(served.broker.transports()).toBe(2);
  });

  it('does not let expired sessions hold capacity, even with eviction off', async () => {
    const { served, closed } = await startManual({ maxSessions: 2, evict: 'none', idleTimeoutMs: 1_000 });
    // Raw sessions, nothing of theirs running in the background; and both settled (their
    // initialize left the table: a client can read the answer before the server has let go
    // of the request, and a session with a request in flight is not idle).
    const a = await rawInitialize(served.url);
    const b = await rawInitialize(served.url);
    await settled(served, a.sessionId as string);
    await settled(served, b.sessionId as string);
    served.broker.clock.advance(1_000);
    const c = await connect(served.url, served);
    expect(await alive(served.url, c.sessionId)).toBe(true);
    const events = await closedFor(closed, [a.sessionId as string, b.sessionId as string]);
    expect(events.map((e) => e.reason)).toEqual(['idle', 'idle']);
  });

  it.each([
    ['an SSE', false],
    ['a JSON', true],
  ])(
    'closes a busy session at its max lifetime; %s response in flight ends with an error naming the reason',
    async (_mode, jsonResponse) => {
      const { served, closed } = await startManual({
        maxSessions: 5,
        maxLifetimeMs: 1_000,
        idleTimeoutMs: 0,
        jsonResponse,
      });
      const s = await connect(served.url, served);
      const outcome = outcomeOf(s.client.callTool({ name: 'sleep', arguments: { ms: 60_000 } }));
      await inFlight(served, s.sessionId);
      served.broker.clock.advance(1_000);
      await served.broker.sweep();
      expect(await outcome).toMatch(/Session closed: lifetime/);
      const [event] = await closedFor(closed, [s.sessionId]);
      expect(event?.reason).toBe('lifetime');
      expect(await alive(served.url, s.sessionId)).toBe(false);
    },
  );

  it('ends a pending JSON response with an error when its session is deleted by the client', async () => {
    const { served } = await startManual({ maxSessions: 5, jsonResponse: true });
    const s = await connect(served.url, served);
    const outcome = outcomeOf(s.client.callTool({ name: 'sleep', arguments: { ms: 60_000 } }));
    await inFlight(served, s.sessionId);
    await s.transport.terminateSession();
    expect(await outcome).toMatch(/Session closed: deleted/);
    await until(async () => (await served.broker.stats()).occupied === 0, 5000, 'the slot to free');
  });

  it('leaves nothing behind when a session is deleted before its lifetime ends', async () => {
    const { served, closed } = await startManual({ maxSessions: 5, maxLifetimeMs: 1_000 });
    const s = await connect(served.url, served);
    await s.transport.terminateSession();
    const [event] = await closedFor(closed, [s.sessionId]);
    expect(event?.reason).toBe('deleted');
    served.broker.clock.advance(5_000);
    await served.broker.sweep();
    const stats = await served.broker.stats();
    expect(stats.closedTotal.lifetime).toBe(0);
    await cleanState(served);
  });

  it('combines eviction with max lifetime', async () => {
    const { served, closed } = await startManual({ maxSessions: 2, maxLifetimeMs: 10_000 });
    const s1 = await connect(served.url, served);
    served.broker.clock.advance(1_000);
    const s2 = await connect(served.url, served);
    const s3 = await connect(served.url, served);
    served.broker.clock.advance(10_000);
    await served.broker.sweep();
    const events = await closedFor(closed, [s1.sessionId, s2.sessionId, s3.sessionId]);
    expect(events.map((e) => e.reason)).toEqual(['evicted', 'lifetime', 'lifetime']);
    await cleanState(served);
  });

  it('reports id, client key, duration and reason in closed events for deleted, evicted, idle and lifetime', async () => {
    const { served, closed } = await startManual({ maxSessions: 2, idleTimeoutMs: 5_000, maxLifetimeMs: 20_000 });
    const deleted = await connect(served.url, served);
    served.broker.clock.advance(100);
    await deleted.transport.terminateSession();
    const evicted = await connect(served.url, served); // t=100
    served.broker.clock.advance(200);
    const lifetime = await connect(served.url, served); // t=300
    served.broker.clock.advance(300);
    const idle = await connect(served.url, served); // t=600, evicts `evicted` (lived 500)
    // Keep `lifetime` active past its lifetime, and let `idle` go idle.
    for (let t = 0; t < 4; t++) {
      served.broker.clock.advance(4_000);
      expect(await alive(served.url, lifetime.sessionId)).toBe(true);
      // t=8,600: `idle` has been idle since 5,600; the sweep closes it (durations run to the close).
      if (t === 1) {
        await served.broker.sweep();
        await closedFor(closed, [idle.sessionId]);
      }
    }
    served.broker.clock.advance(4_000);
    // t=20,600: `lifetime` ended at 20,300.
    await served.broker.sweep();
    const events = await closedFor(closed, [deleted.sessionId, evicted.sessionId, idle.sessionId, lifetime.sessionId]);
    expect(events.map((e) => [e.reason, e.durationMs])).toEqual([
      ['deleted', 100],
      ['evicted', 500],
      ['idle', 8_000],
      ['lifetime', 20_300],
    ]);
    for (const e of events) expect(e.clientKey).toBe('127.0.0.1');
  });

  it('closes many sessions at their max lifetime, all of them', async () => {
    const { served, closed } = await startManual({ maxSessions: 50, maxLifetimeMs: 1_000 });
    const sessions = await Promise.all(Array.from({ length: 20 }, () => connect(served.url, served)));
    served.broker.clock.advance(1_000);
    await served.broker.sweep();
    const events = await closedFor(
      closed,
      sessions.map((s) => s.sessionId),
    );
    expect(events.every((e) => e.reason === 'lifetime')).toBe(true);
    await cleanState(served);
  });

  it('keeps the live count exact across creates and deletes', async () => {
    const { served } = await startManual({ maxSessions: 10 });
    const sessions = await Promise.all(Array.from({ length: 5 }, () => connect(served.url, served)));
    expect(served.broker.transports()).toBe(5);
    await sessions[0]?.transport.terminateSession();
    await sessions[3]?.transport.terminateSession();
    await until(async () => (await served.broker.stats()).occupied === 3);
    const stats = await served.broker.stats();
    expect(stats.transports).toBe(3);
    expect(stats.live).toBe(3);
    const metrics = await (await fetch(served.metricsUrl)).text();
    expect(metrics).toMatch(/^mcp_sessions_live 3$/m);
  });

  it('frees every slot, empties the FIFO list and every thread map once all sessions close', async () => {
    const { served } = await startManual({ maxSessions: 4, idleTimeoutMs: 1_000 });
    const sessions = [];
    for (let i = 0; i < 10; i++) sessions.push(await connect(served.url, served));
    await sessions[8]?.transport.terminateSession();
    served.broker.clock.advance(1_000);
    await served.broker.sweep();
    await until(async () => (await served.broker.stats()).occupied === 0);
    await cleanState(served);
    const stats = await served.broker.stats();
    expect(Object.keys(stats.transportsByThread)).toHaveLength(2);
  });

  it('leaves no corruption when eviction and timeouts interleave', async () => {
    const { served, closed } = await startManual({ maxSessions: 3, idleTimeoutMs: 1_000, maxLifetimeMs: 2_500 });
    const ids: string[] = [];
    for (let round = 0; round < 12; round++) {
      ids.push((await connect(served.url, served)).sessionId);
      served.broker.clock.advance(round % 3 === 0 ? 600 : 250);
      if (round % 4 === 0) await served.broker.sweep();
    }
    served.broker.clock.advance(3_000);
    await served.broker.sweep();
    await closedFor(closed, ids);
    for (const id of ids) expect(await alive(served.url, id)).toBe(false);
    expect(new Set(closed.map((e) => e.id)).size).toBe(12);
    await cleanState(served);
  });
});
