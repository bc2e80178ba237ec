/**
 * The Redis store on a Redis Cluster (three primaries started here): the
 * store contract through node-redis's and ioredis's cluster clients, each
 * case in a namespace of its own, so the namespaces' slots fall on every
 * node, not only the one in the URL.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StoreFactory } from '../dist/broker/index.js';
import { createStore as createRedisStore, type RedisStoreOptions } from '../dist/broker/stores/redis/index.js';
import { REDIS_BINARY, RedisCluster, uniqueNamespace } from './redis-helpers.js';
import { runStoreSuite } from './store.case.js';

let cluster: RedisCluster | undefined;

const factory =
  (client: RedisStoreOptions['client']): StoreFactory =>
  (context) =>
    createRedisStore({
      ...context,
      storeOptions: {
        url: (cluster as RedisCluster).url,
        advertise: 'http://127.0.0.1:1',
        namespace: uniqueNamespace(`cluster-${client}`),
        client,
        livenessMs: 1e12,
        sweepIntervalMs: 3_600_000,
        reconcileMs: 3_600_000,
      },
    });

const settle = () => new Promise<void>((resolve) => setTimeout(resolve, 80));

describe.skipIf(!REDIS_BINARY)('redis store on a Redis Cluster', () => {
  beforeAll(async () => {
    cluster = await RedisCluster.start(3);
  }, 30_000);
  afterAll(async () => {
    await cluster?.dispose();
  });

  runStoreSuite({ name: 'redis cluster via node-redis', createStore: factory('redis'), settle });
  runStoreSuite({ name: 'redis cluster via ioredis', createStore: factory('ioredis'), settle });

  it("put the suites' namespaces on every node, not only the one in the URL", async () => {
    const { createClient } = await import('redis');
    for (const node of (cluster as RedisCluster).nodes) {
      const client = await createClient({ url: node.url }).connect();
      try {
        expect(Number(await client.sendCommand(['DBSIZE']))).toBeGreaterThan(0);
      } finally {
        client.destroy();
      }
    }
  });
});
