/**
 * The store contract, run against the Redis store: a host's store over a
 * real redis-server (each case in its own namespace), on the suite's fake
 * clock (passed to the scripts in place of Redis TIME).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openIndex, resolveAdmissionOptions, type StoreFactory } from '../dist/broker/index.js';
import { createStore as createRedisStore, type RedisStoreOptions } from '../dist/broker/stores/redis/index.js';
import type { Admitted, SessionRef } from '../dist/shared/types.js';
import { until } from './helpers.js';
import {
  injectGhosts,
  occupiedIn,
  REDIS_BINARY,
  REDIS_MISSING,
  RedisServer,
  SHARED_REDIS,
  uniqueNamespace,
} from './redis-helpers.js';
import { runStoreSuite } from './store.case.js';

let server: RedisServer | undefined;
let url = SHARED_REDIS ?? '';

/**
 * A host's store options in a namespace of its own (or the one given). The
 * suites move their fake clock by hours and sweep when they mean to: no
 * timer of the store's may act on it.
 */
function storeOptions(namespace: string, extra: Partial<RedisStoreOptions> = {}): RedisStoreOptions {
  return {
    url,
    advertise: 'http://127.0.0.1:1',
    namespace,
    livenessMs: 1e12,
    sweepIntervalMs: 3_600_000,
    reconcileMs: 3_600_000,
    ...extra,
  };
}

/** The contract's store factory, through the given client library. */
const factory =
  (client: RedisStoreOptions['client']): StoreFactory =>
  (context) =>
    createRedisStore({ ...context, storeOptions: storeOptions(uniqueNamespace(client ?? 'redis'), { client }) });

/** Every decision is a script round trip; the end of a busy request is reported every 50 ms. */
const settle = () => new Promise<void>((resolve) => setTimeout(resolve, 80));

describe.skipIf(REDIS_MISSING !== undefined)('redis store', () => {
  beforeAll(async () => {
    if (!SHARED_REDIS && REDIS_BINARY) {
      server = await RedisServer.start();
      url = server.url;
    }
  });
  afterAll(async () => {
    await server?.dispose();
  });

  runStoreSuite({ name: 'redis (a host sharing a Redis)', createStore: factory('redis'), settle });
  runStoreSuite({ name: 'redis via the ioredis adapter', createStore: factory('ioredis'), settle });

  it('reconciles page by page: frees what Redis holds for a host that does not own it in every page, keeps the rest', async () => {
    const namespace = uniqueNamespace('pages');
    const store = await createRedisStore({
      admission: resolveAdmissionOptions({ maxSessions: 1000, evict: 'none' }),
      lanes: 1,
      manualClock: false,
      stallTimeoutMs: 0,
      now: () => Date.now(),
      closer: async () => undefined,
      onEvent: () => undefined,
      storeOptions: storeOptions(namespace, { reconcileMs: 100 }),
    });
    const { createClient } = await import('redis');
    const probe = createClient({ url });
    await probe.connect();
    try {
      // 700 sessions in slots 0-699.
      const held: Admitted[] = [];
      for (let i = 0; i < 700; i++) {
        const admitted = await store.admit({ clientKey: `c${i % 7}`, owner: 1 });
        if (!admitted.ok) throw new Error(`refused: ${admitted.reason}`);
        held.push(admitted);
      }
      const host = Number.parseInt((held[0] as Admitted).id.slice(0, 2), 16);
      // These become ghosts: Redis holds them for this host (a minute old, past the reconcile's grace), it
      // does not. The host then owns 695 sessions, listed in pages of 256: slots 1-256, 258-514 (without
      // 300), 516-698. So the ghosts sit at the start of the first page's range (0), just past a page's last
      // session (257, 515), inside a page (300), at the end (699), and past every session (850).
      const ghosts = [0, 257, 300, 515, 699];
      for (const slot of ghosts) {
        const own = held.find((a) => a.slot === slot) as Admitted;
        store.closed(own, 'deleted');
      }
      await until(async () => (await occupiedIn(probe, namespace)) === 700 - ghosts.length, 5000, 'the closes');
      expect(await injectGhosts(probe, namespace, host, [...ghosts, 850])).toBe(701);

      // The reconcile (every 100 ms here) frees every ghost, whichever page its slot falls in.
      await until(async () => (await occupiedIn(probe, namespace)) === 700 - ghosts.length, 5000, 'the reconcile');
      // A few more reconciles later, every session the host owns is still its own, live, in Redis.
      await new Promise((resolve) => setTimeout(resolve, 500));
      expect(await occupiedIn(probe, namespace)).toBe(700 - ghosts.length);
      for (const slot of [...ghosts, 850])
        expect(await probe.sendCommand(['HEXISTS', `{mcpsb:${namespace}}:sess`, String(slot)])).toBe(0);
      const kept = held.filter((a) => !ghosts.includes(a.slot));
      for (const a of kept) {
        const record = JSON.parse(
          String(await probe.sendCommand(['HGET', `{mcpsb:${namespace}}:sess`, String(a.slot)])),
        );
        expect(record).toMatchObject({ h: host, g: a.gen, st: 'L' });
      }
    } finally {
      await probe.close();
      await store.shutdown(0);
    }
  });

  describe('two hosts in one namespace', () => {
    /** A host's store on the shared fake clock, whose owner closes only when told. */
    async function host(namespace: string, clock: () => number) {
      const asked: { ref: SessionRef; confirm: () => void }[] = [];
      const store = await createRedisStore({
        admission: resolveAdmissionOptions({ maxSessions: 1, evict: 'oldest' }),
        lanes: 1,
        manualClock: false,
        stallTimeoutMs: 0,
        now: clock,
        closer: (_owner: number, ref: SessionRef) =>
          new Promise<void>((resolve) => {
            asked.push({ ref, confirm: resolve });
          }),
        onEvent: () => undefined,
        storeOptions: storeOptions(namespace),
      });
      return { store, asked };
    }

    it('gives back the slot an admission waited for when its host is gone before the grant', async () => {
      const namespace = uniqueNamespace('two');
      const clock = () => 1_000;
      const b = await host(namespace, clock);
      const a = await host(namespace, clock);
      const held = await b.store.admit({ clientKey: 'b', owner: 1 });
      if (!held.ok) throw new Error(`refused: ${held.reason}`);
      // Its initialize request ends: an idle session, evictable.
      openIndex(b.store.index, clock).leave(held);
      // A's admission at the cap waits for B's session to close; A leaves before B confirms.
      const waiting = a.store.admit({ clientKey: 'a', owner: 1 });
      await until(() => b.asked.length === 1, 5000, 'the close asked of B');
      await a.store.shutdown(0);
      expect(await waiting).toMatchObject({ ok: false });
      b.asked[0]?.confirm();
      // The freed slot is not granted to a host that is gone: it is free again, for B.
      await until(async () => (await b.store.stats()).occupied === 0, 5000, 'the slot back');
      expect((await b.store.admit({ clientKey: 'b', owner: 1 })).ok).toBe(true);
      expect((await b.store.stats()).occupied).toBe(1);
      await b.store.shutdown(0);
    });
  });
});
