/**
 * Loads a store by module: the module's `createStore` export builds it. Runs
 * where the authority runs (the broker worker, or the main thread with
 * `threads: 0`).
 */
import { BrokerError } from '../shared/errors.js';
import type { SessionStore, StoreContext, StoreFactory } from './store.js';

/** The default store: strict, in memory, over the process's shared table. */
export const MEMORY_STORE_MODULE = new URL('./stores/memory/index.js', import.meta.url).href;
/** The store of a process under a host's admission authority (ADR 20). */
export const REMOTE_STORE_MODULE = new URL('./stores/remote/index.js', import.meta.url).href;
/** The store of a host sharing a Redis with other hosts (ADR 21). */
export const REDIS_STORE_MODULE = new URL('./stores/redis/index.js', import.meta.url).href;

export async function loadStore(module: string, context: StoreContext): Promise<SessionStore> {
  let factory: unknown;
  try {
    factory = ((await import(module)) as { createStore?: unknown }).createStore;
  } catch (cause) {
    throw new BrokerError('ERR_INVALID_STORE', `cannot load the store module ${module}`, { cause });
  }
  if (typeof factory !== 'function') {
    throw new BrokerError('ERR_INVALID_STORE', `the store module ${module} must export createStore(context)`);
  }
  return (factory as StoreFactory)(context);
}
