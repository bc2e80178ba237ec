/**
 * The store contract, run against the Redis store: a host's store over a
 * real redis-server (each case in its own namespace), on the suite's fake
 * clock (passed to the scripts in place of Redis TIME).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openIndex, resolveAdmissionOptions, type StoreFactory } from '../dist/broker/index.js';
import { createStore as createRedisStore, type RedisStoreOptions } from '../dist/broker/stores/redis/index.js';
import type { SessionRef } from '../dist/shared/types.js';
import { until } from './helpers.js';
import { REDIS_BINARY, REDIS_MISSING, RedisServer, SHARED_REDIS, uniqueNamespace } from './redis-helpers.js';
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
