/**
 * The Redis store (ADR 21): one cap, one creation rate and the same
 * eviction over every host that shares a Redis namespace. Each host's store
 * is the store of a process under an authority (ADR 20): it owns its
 * sessions in its own table (the request path never calls Redis), and Redis
 * scripts decide what the authority would.
 */

import type { StoreFactory } from '../../store.js';
import { RemoteStore } from '../remote/index.js';
import { RedisLink, type RedisStoreOptions } from './link.js';

export { checkRedisUrl, redactUrl } from './client.js';
export { checkRedisOptions, parseAdvertise, RedisLink, type RedisStoreOptions } from './link.js';

/** The store module's factory: connects to the Redis named in `storeOptions` (`RedisStoreOptions`). */
export const createStore: StoreFactory = (context) => {
  const options = context.storeOptions as RedisStoreOptions | undefined;
  if (!options || typeof options.url !== 'string') {
    throw new TypeError('the Redis store needs storeOptions { url, advertise }');
  }
  const link = new RedisLink(options, context.admission, context.now);
  return RemoteStore.connect(context, link, options.connectTimeoutMs ?? 5_000);
};
