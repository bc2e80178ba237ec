/**
 * The contract every SessionStore meets, on a fake clock, through public
 * interfaces only: the store as its `createStore` builds it, and the session
 * index it keeps (opened as the request path opens it). A store's own test
 * calls `runStoreSuite`; owners are simulated here. A store that cannot meet a
 * case says which and why in `skip`.
 */
import { describe, expect, it } from 'vitest';
import {
  type AdmissionOptions,
  openIndex,
  resolveAdmissionOptions,
  type SessionStore,
  type StoreFactory,
} from '../dist/broker/index.js';
import type { Admitted, CloseReason, Decision, SessionEvent, SessionRef } from '../dist/shared/types.js';

export interface StoreSuiteOptions {
  readonly name: string;
  /** Builds the store under test, as the broker does. */
  readonly createStore: StoreFactory;
  /** Lets what the store does after a call finish (a store across a socket needs more than a turn). */
  readonly settle?: () => Promise<void>;
  /** Cases this store does not meet, by name, each group with its reason. */
  readonly skip?: readonly { readonly reason: string; readonly tests: readonly string[] }[];
}

interface StoreUnderTest {
  readonly store: SessionStore;
  /** A request enters / leaves the session (what the listener does around a POST). */
  enter(ref: SessionRef): boolean;
  leave(ref: SessionRef): void;
  /** Validates an id as the request path does. */
  lookup(id: string): { ok: boolean };
  dispose(): Promise<void> | void;
}

interface CloseCall {
  readonly owner: number;
  readonly ref: SessionRef;
  readonly reason: CloseReason;
  confirm(): void;
}

/** A fake clock, owners that close on demand (or at once), and the store. */
async function harness(suite: StoreSuiteOptions, admission: AdmissionOptions, autoConfirm = true) {
  let time = 1_000;
  const closes: CloseCall[] = [];
  const events: SessionEvent[] = [];
  const now = () => time;
  const store = await suite.createStore({
    admission: resolveAdmissionOptions(admission),
    lanes: 1,
    manualClock: false,
    stallTimeoutMs: 0,
    now,
    closer: (owner: number, ref: SessionRef, reason: CloseReason) =>
      new Promise<void>((resolve) => {
        const call: CloseCall = { owner, ref, reason, confirm: resolve };
        closes.push(call);
        if (autoConfirm) resolve();
      }),
    onEvent: (event: SessionEvent) => events.push(event),
  });
  const index = openIndex(store.index, now);
  const under: StoreUnderTest = {
    store,
    enter: (ref) => index.enter(ref) === 'entered',
    leave: (ref) => index.leave(ref),
    lookup: (id) => index.lookup(id),
    dispose: () => store.shutdown(0),
  };
  const admit = async (clientKey = 'c', owner = 1): Promise<Decision> => under.store.admit({ clientKey, owner });
  const admitOk = async (clientKey = 'c', owner = 1): Promise<Admitted> => {
    const decision = await admit(clientKey, owner);
    if (!decision.ok) throw new Error(`refused: ${decision.reason}`);
    return decision;
  };
  /** Admits and ends the initialize request, leaving an idle live session. */
  const idleSession = async (clientKey = 'c', owner = 1) => {
    const admitted = await admitOk(clientKey, owner);
    under.leave(admitted);
    return admitted;
  };
  return {
    ...under,
    closes,
    events,
    admit,
    admitOk,
    idleSession,
    advance: (ms: number) => {
      time += ms;
    },
    settle: suite.settle ?? (() => new Promise((resolve) => setImmediate(resolve))),
  };
}

export function runStoreSuite(suite: StoreSuiteOptions): void {
  const skipped = new Map<string, string>();
  for (const group of suite.skip ?? []) {
    if (typeof group.reason !== 'string' || group.reason.trim() === '') {
      throw new TypeError('every skip states its reason');
    }
    for (const name of group.tests) skipped.set(name, group.reason);
  }
  const seen = new Set<string>();
  const test = (name: string, fn: () => Promise<void>) => {
    seen.add(name);
    const reason = skipped.get(name);
    if (reason === undefined) it(name, fn);
    else it.skip(`${name} (skipped: ${reason})`, fn);
  };
  describe(`${suite.name} store contract`, () => {
    test('admits up to maxSessions with distinct, valid ids', async () => {
      const h = await harness(suite, { maxSessions: 3, evict: 'none' });
      const ids = new Set<string>();
      for (let i = 0; i < 3; i++) ids.add((await h.idleSession()).id);
      expect(ids.size).toBe(3);
      for (const id of ids) expect(h.lookup(id).ok).toBe(true);
      expect((await h.store.stats()).occupied).toBe(3);
      await h.dispose();
    });

    test('remembers why a session closed: its id then looks up as the close reason (for the 404 that says why)', async () => {
      const h = await harness(suite, { maxSessions: 2, evict: 'oldest' });
      const evicted = await h.idleSession();
      const deleted = await h.idleSession();
      h.store.closed(deleted, 'deleted');
      await h.idleSession(); // frees a slot: none is full, so nothing is evicted yet
      await h.idleSession(); // evicts the oldest
      await h.settle();
      expect(h.lookup(evicted.id)).toEqual({ ok: false, miss: 'evicted' });
      expect(h.lookup(deleted.id)).toEqual({ ok: false, miss: 'deleted' });
      // Only the whole id: the same slot and generation with another secret is unknown.
      const last = evicted.id.at(-1) === '0' ? '1' : '0';
      expect(h.lookup(`${evicted.id.slice(0, -1)}${last}`)).toEqual({ ok: false, miss: 'unknown' });
      await h.dispose();
    });

    test('refuses at capacity with eviction off: 503 reason, Retry-After of at least one second, nothing evicted', async () => {
      const h = await harness(suite, { maxSessions: 2, evict: 'none' });
      await h.idleSession();
      await h.idleSession();
      const refused = await h.admit();
      expect(refused).toMatchObject({ ok: false, reason: 'full' });
      if (!refused.ok) expect(refused.retryAfterMs).toBeGreaterThanOrEqual(1000);
      expect(h.closes).toHaveLength(0);
      expect((await h.store.stats()).rejectedTotal.full).toBe(1);
      await h.dispose();
    });

    test('evicts the oldest at capacity and admits only once the owner confirms the close', async () => {
      const h = await harness(suite, { maxSessions: 2 }, false);
      const first = await h.idleSession();
      const second = await h.idleSession();
      let decided: Decision | undefined;
      const third = h.admit().then((d) => {
        decided = d;
        return d;
      });
      await h.settle();
      expect(h.closes.map((c) => [c.ref.slot, c.reason])).toEqual([[first.slot, 'evicted']]);
      expect(decided).toBeUndefined();
      expect((await h.store.stats()).occupied).toBe(2);
      h.closes[0]?.confirm();
      const d = await third;
      expect(d.ok).toBe(true);
      expect(h.lookup(first.id).ok).toBe(false);
      expect(h.lookup(second.id).ok).toBe(true);
      expect((await h.store.stats()).occupied).toBe(2);
      await h.dispose();
    });

    test('never evicts a session with a request in flight; refuses when all are busy', async () => {
      const h = await harness(suite, { maxSessions: 2 });
      const a = await h.admitOk(); // still holding its initialize
      const b = await h.idleSession();
      expect(h.enter(b)).toBe(true);
      const refused = await h.admit();
      expect(refused).toMatchObject({ ok: false, reason: 'full' });
      expect(h.closes).toHaveLength(0);
      h.leave(a);
      // A store whose owners are elsewhere learns of the request's end within its report interval.
      await h.settle();
      const admitted = await h.admit();
      expect(admitted.ok).toBe(true);
      expect(h.closes.map((c) => c.ref.slot)).toEqual([a.slot]);
      await h.dispose();
    });

    test('stops protecting a busy session after the busy timeout', async () => {
      const h = await harness(suite, { maxSessions: 1, busyTimeoutMs: 5_000 });
      const stuck = await h.admitOk(); // its request never ends
      expect(await h.admit()).toMatchObject({ ok: false, reason: 'full' });
      h.advance(5_000);
      const d = await h.admit();
      expect(d.ok).toBe(true);
      expect(h.closes.map((c) => [c.ref.slot, c.ref.gen, c.reason])).toEqual([[stuck.slot, stuck.gen, 'evicted']]);
      await h.dispose();
    });

    test('evicts the least recently active session with evict: idlest', async () => {
      const h = await harness(suite, { maxSessions: 3, evict: 'idlest' });
      const a = await h.idleSession();
      h.advance(10);
      const b = await h.idleSession();
      h.advance(10);
      const c = await h.idleSession();
      h.advance(10);
      // a becomes the most recently active; b is now the idlest.
      expect(h.enter(a)).toBe(true);
      h.leave(a);
      await h.admitOk();
      expect(h.closes.map((x) => x.ref.slot)).toEqual([b.slot]);
      expect(h.lookup(a.id).ok && h.lookup(c.id).ok).toBe(true);
      await h.dispose();
    });

    test('limits creations to rate.max per sliding window, with exact Retry-After', async () => {
      const h = await harness(suite, { maxSessions: 10, rate: { max: 2, windowMs: 1_000 } });
      await h.idleSession();
      h.advance(300);
      await h.idleSession();
      h.advance(200);
      const refused = await h.admit();
      expect(refused).toEqual({ ok: false, reason: 'rate_limited', retryAfterMs: 1000 });
      // 500 ms after the first creation it still counts: it leaves the window at +1000.
      h.advance(499);
      expect(await h.admit()).toMatchObject({ ok: false, reason: 'rate_limited' });
      h.advance(1);
      expect((await h.admit()).ok).toBe(true);
      // Now [300, 1000] hold two: the next fits at 1300.
      expect(await h.admit()).toMatchObject({ ok: false, reason: 'rate_limited' });
      h.advance(299);
      expect(await h.admit()).toMatchObject({ ok: false, reason: 'rate_limited' });
      h.advance(1);
      expect((await h.admit()).ok).toBe(true);
      expect((await h.store.stats()).rejectedTotal.rate_limited).toBe(4);
      await h.dispose();
    });

    test('reports Retry-After as the time until the oldest creation leaves the window', async () => {
      const h = await harness(suite, { maxSessions: 10, rate: { max: 1, windowMs: 60_000 } });
      await h.idleSession();
      h.advance(15_500);
      expect(await h.admit()).toEqual({ ok: false, reason: 'rate_limited', retryAfterMs: 44_500 });
      h.advance(44_000);
      // Never below one second.
      expect(await h.admit()).toEqual({ ok: false, reason: 'rate_limited', retryAfterMs: 1000 });
      await h.dispose();
    });

    test('checks the rate before capacity: a rate refusal evicts nothing, a capacity refusal spends no token', async () => {
      const h = await harness(suite, { maxSessions: 1, evict: 'none', rate: { max: 2, windowMs: 1_000 } });
      const a = await h.idleSession();
      expect(await h.admit()).toMatchObject({ ok: false, reason: 'full' });
      expect(await h.admit()).toMatchObject({ ok: false, reason: 'full' });
      h.store.closed(a, 'deleted');
      // Two refusals spent nothing: one more creation fits in the window.
      const b = await h.idleSession();
      h.store.closed(b, 'deleted');
      // a and b used the window's two tokens.
      expect(await h.admit()).toMatchObject({ ok: false, reason: 'rate_limited' });
      expect(h.closes).toHaveLength(0);
      await h.dispose();
    });

    test('gives the rate token back when a session fails at creation (refund)', async () => {
      const h = await harness(suite, { maxSessions: 5, rate: { max: 1, windowMs: 1_000 } });
      const failed = await h.admitOk();
      h.store.closed(failed, 'error', { refund: true });
      expect((await h.admit()).ok).toBe(true);
      expect(await h.admit()).toMatchObject({ ok: false, reason: 'rate_limited' });
      await h.dispose();
    });

    test('expires idle sessions at once on the request path and closes them on sweep', async () => {
      const h = await harness(suite, { maxSessions: 5, idleTimeoutMs: 1_000 });
      const a = await h.idleSession();
      h.advance(999);
      expect(h.lookup(a.id).ok).toBe(true);
      h.advance(1);
      expect(h.lookup(a.id).ok).toBe(false);
      h.store.sweep();
      await h.settle();
      expect(h.closes.map((c) => c.reason)).toEqual(['idle']);
      expect((await h.store.stats()).occupied).toBe(0);
      await h.dispose();
    });

    test('does not expire a busy session for idleness, but does past the busy timeout', async () => {
      const h = await harness(suite, { maxSessions: 5, idleTimeoutMs: 1_000, busyTimeoutMs: 3_000 });
      const a = await h.admitOk(); // initialize still in flight
      h.advance(2_000);
      h.store.sweep();
      expect(h.closes).toHaveLength(0);
      expect(h.lookup(a.id).ok).toBe(true);
      h.advance(1_000);
      h.store.sweep();
      await h.settle();
      expect(h.closes.map((c) => c.reason)).toEqual(['idle']);
      await h.dispose();
    });

    test('closes a session at its max lifetime even while busy', async () => {
      const h = await harness(suite, { maxSessions: 5, maxLifetimeMs: 2_000, idleTimeoutMs: 0 });
      const a = await h.admitOk();
      h.advance(1_999);
      h.store.sweep();
      expect(h.closes).toHaveLength(0);
      h.advance(1);
      expect(h.lookup(a.id).ok).toBe(false);
      h.store.sweep();
      await h.settle();
      expect(h.closes.map((c) => c.reason)).toEqual(['lifetime']);
      await h.dispose();
    });

    test('reclaims expired sessions before evicting live ones, even with eviction off', async () => {
      const h = await harness(suite, { maxSessions: 2, evict: 'none', idleTimeoutMs: 1_000 });
      await h.idleSession();
      await h.idleSession();
      h.advance(1_000);
      const d = await h.admit();
      expect(d.ok).toBe(true);
      expect(h.closes.map((c) => c.reason)).toEqual(['idle', 'idle']);
      await h.dispose();
    });

    test('emits created and closed events with id, client key, reason and duration', async () => {
      const h = await harness(suite, { maxSessions: 1 });
      const a = await h.idleSession('alice');
      h.advance(250);
      await h.admitOk('bob');
      const created = h.events.filter((e) => e.type === 'created');
      expect(created.map((e) => e.clientKey)).toEqual(['alice', 'bob']);
      const closed = h.events.find((e) => e.type === 'closed');
      expect(closed).toMatchObject({
        type: 'closed',
        id: a.id,
        clientKey: 'alice',
        reason: 'evicted',
        durationMs: 250,
      });
      await h.dispose();
    });

    test('keeps the reason it asked for when the owner reports the close itself', async () => {
      const h = await harness(suite, { maxSessions: 1 }, false);
      const a = await h.idleSession();
      const pending = h.admit();
      await h.settle();
      // The owner closes the transport and reports it before the close RPC returns.
      h.store.closed(a, 'error');
      expect((await pending).ok).toBe(true);
      expect(h.events.find((e) => e.type === 'closed')).toMatchObject({ reason: 'evicted' });
      await h.dispose();
    });

    test('frees every session of an owner that is gone, with reason error', async () => {
      const h = await harness(suite, { maxSessions: 4 });
      await h.idleSession('c', 7);
      await h.idleSession('c', 8);
      await h.idleSession('c', 7);
      h.store.ownerGone(7);
      const stats = await h.store.stats();
      expect(stats.occupied).toBe(1);
      expect(stats.closedTotal.error).toBe(2);
      await h.dispose();
    });

    test('leaves every slot free after all sessions close', async () => {
      const h = await harness(suite, { maxSessions: 3, idleTimeoutMs: 1_000 });
      const refs: Admitted[] = [];
      for (let i = 0; i < 10; i++) refs.push(await h.idleSession());
      for (const r of refs) h.store.closed(r, 'deleted');
      h.advance(5_000);
      h.store.sweep();
      await h.settle();
      const stats = await h.store.stats();
      expect(stats).toMatchObject({ occupied: 0, live: 0, closing: 0, waiting: 0, createdTotal: 10 });
      expect(stats.closedTotal.evicted + stats.closedTotal.deleted).toBe(10);
      await h.dispose();
    });

    describe('per-client limits', () => {
      test('limits one client by its own rate without touching others', async () => {
        const h = await harness(suite, { maxSessions: 10, perClient: { rate: { max: 2, windowMs: 1_000 } } });
        await h.idleSession('a');
        await h.idleSession('a');
        expect(await h.admit('a')).toEqual({ ok: false, reason: 'client_rate_limited', retryAfterMs: 1000 });
        expect((await h.admit('b')).ok).toBe(true);
        h.advance(1_000);
        expect((await h.admit('a')).ok).toBe(true);
        await h.dispose();
      });

      test("evicts a client's own oldest session at its cap, never another client's", async () => {
        const h = await harness(suite, { maxSessions: 10, perClient: { maxSessions: 2 } });
        const b = await h.idleSession('b');
        const a1 = await h.idleSession('a');
        const a2 = await h.idleSession('a');
        const a3 = await h.admitOk('a');
        expect(h.closes.map((c) => c.ref.slot)).toEqual([a1.slot]);
        expect([h.lookup(b.id).ok, h.lookup(a1.id).ok, h.lookup(a2.id).ok, h.lookup(a3.id).ok]).toEqual([
          true,
          false,
          true,
          true,
        ]);
        await h.dispose();
      });

      test('refuses a client at its cap with eviction off (client_full), others still admitted', async () => {
        const h = await harness(suite, { maxSessions: 10, evict: 'none', perClient: { maxSessions: 1 } });
        await h.idleSession('a');
        const refused = await h.admit('a');
        expect(refused).toMatchObject({ ok: false, reason: 'client_full' });
        expect((await h.admit('b')).ok).toBe(true);
        expect(h.closes).toHaveLength(0);
        await h.dispose();
      });

      test('at the global cap, evicts the oldest evictable session of the client holding the most', async () => {
        const h = await harness(suite, { maxSessions: 5, perClient: { maxSessions: 5 } });
        const quiet = await h.idleSession('quiet'); // the oldest session of all
        const noisy = [];
        for (let i = 0; i < 4; i++) noisy.push(await h.idleSession('noisy'));
        await h.admitOk('third');
        expect(h.closes.map((c) => c.ref.slot)).toEqual([noisy[0]?.slot]);
        expect(h.lookup(quiet.id).ok).toBe(true);
        await h.dispose();
      });

      test('checks in order (client rate, global rate, client cap, global cap) and spends all tokens or none', async () => {
        const h = await harness(suite, {
          maxSessions: 10,
          evict: 'none',
          rate: { max: 3, windowMs: 1_000 },
          perClient: { maxSessions: 1, rate: { max: 2, windowMs: 1_000 } },
        });
        const a = await h.idleSession('a');
        // a is at its cap: refused without spending a's or the global token.
        expect(await h.admit('a')).toMatchObject({ ok: false, reason: 'client_full' });
        h.store.closed(a, 'deleted');
        expect((await h.admit('a')).ok).toBe(true); // a's second token, global's second
        // a's own rate is now spent (2 per window): refused before the global rate or any cap.
        expect(await h.admit('a')).toMatchObject({ ok: false, reason: 'client_rate_limited' });
        expect((await h.admit('b')).ok).toBe(true); // global's third
        expect(await h.admit('c')).toMatchObject({ ok: false, reason: 'rate_limited' });
        // c spent nothing of its own: once the global window moves, c gets in.
        h.advance(1_000);
        expect((await h.admit('c')).ok).toBe(true);
        await h.dispose();
      });

      test('never lets a client hold more live sessions than its cap, even while its victim closes', async () => {
        const h = await harness(suite, { maxSessions: 10, perClient: { maxSessions: 2 } }, false);
        await h.idleSession('a');
        await h.idleSession('a');
        const third = h.admit('a');
        await h.settle();
        // The victim has not confirmed its close: the client's third is not admitted yet.
        expect((await h.store.stats()).occupied).toBe(2);
        h.closes[0]?.confirm();
        expect((await third).ok).toBe(true);
        expect((await h.store.stats()).occupied).toBe(2);
        await h.dispose();
      });
    });

    test('closes everything with reason shutdown and then refuses', async () => {
      const h = await harness(suite, { maxSessions: 3 });
      await h.idleSession();
      await h.admitOk();
      await h.store.shutdown(1_000);
      expect(h.closes.map((c) => c.reason)).toEqual(['shutdown', 'shutdown']);
      expect((await h.store.stats()).occupied).toBe(0);
      expect((await h.admit()).ok).toBe(false);
      await h.dispose();
    });
  });
  for (const name of skipped.keys()) {
    if (!seen.has(name)) throw new TypeError(`skip names a case the suite does not have: ${name}`);
  }
}
