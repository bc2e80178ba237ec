/**
 * `mcp-session-broker/redis`: many hosts, one limit (ADR 21). Pass
 * `redis: { url, advertise, namespace? }` to `SessionBroker.start` or
 * `serve` (what `serve --store redis://...` does); this entry point gives the
 * Redis store's module, its options' type and checks, for a custom setup
 * (`store: REDIS_STORE_MODULE` with `storeOptions`) and for tooling. The
 * `redis` package (or `ioredis`) must be installed: both are optional peer
 * dependencies.
 */
export {
  checkRedisOptions,
  checkRedisUrl,
  parseAdvertise,
  REDIS_STORE_MODULE,
  type RedisStoreOptions,
  redactUrl,
} from '../../broker/index.js';
