/**
 * The store contract, run against the Redis store: a host's store over a
 * real redis-server (each case in its own namespace), on the suite's fake
 * clock (passed to the scripts in place of Redis TIME).
 */
import { afterAll, beforeAll, describe } from 'vitest';
import type { StoreFactory } from '../dist/broker/index.js';
import { createStore as createRedisStore } from '../dist/broker/stores/redis/index.js';
import { REDIS_BINARY, REDIS_MISSING, RedisServer, SHARED_REDIS, uniqueNamespace } from './redis-helpers.js';
import { runStoreSuite } from './store.case.js';

let server: RedisServer | undefined;
let url = SHARED_REDIS ?? '';

const createStore: StoreFactory = (context) =>
  createRedisStore({
    ...context,
    storeOptions: {
      url,
      advertise: 'http://127.0.0.1:1',
      namespace: uniqueNamespace('contract'),
      // The suite moves its fake clock by hours and sweeps when it means to: no timer of ours may act on it.
      livenessMs: 1e12,
      sweepIntervalMs: 3_600_000,
      reconcileMs: 3_600_000,
    },
  });

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

  runStoreSuite({
    name: 'redis (a host sharing a Redis)',
    createStore,
    // Every decision is a script round trip; the end of a busy request is reported every 50 ms.
    settle: () => new Promise((resolve) => setTimeout(resolve, 80)),
  });
});

describe.skipIf(REDIS_MISSING !== undefined)('redis store through ioredis', () => {
  let own: RedisServer | undefined;
  let ioUrl = SHARED_REDIS ?? '';
  beforeAll(async () => {
    if (!SHARED_REDIS && REDIS_BINARY) {
      own = await RedisServer.start();
      ioUrl = own.url;
    }
  });
  afterAll(async () => {
    await own?.dispose();
  });

  runStoreSuite({
    name: 'redis via the ioredis adapter',
    createStore: (context) =>
      createRedisStore({
        ...context,
        storeOptions: {
          url: ioUrl,
          advertise: 'http://127.0.0.1:1',
          namespace: uniqueNamespace('ioredis'),
          client: 'ioredis',
          livenessMs: 1e12,
          sweepIntervalMs: 3_600_000,
          reconcileMs: 3_600_000,
        },
      }),
    settle: () => new Promise((resolve) => setTimeout(resolve, 80)),
  });
});
