/**
 * What the rest of the package may use of the broker: start it in its own
 * worker thread, or run the same store in-process (`threads: 0`).
 */

import { MessageChannel, type MessagePort, Worker } from 'node:worker_threads';
import { type Remote, releaseProxy, transfer, wrap } from 'comlink';
import { BrokerError } from '../shared/errors.js';
import { endpoint } from '../shared/rpc.js';
import type { IndexDescriptor, SessionIndex } from '../shared/session-index.js';
import { SessionTable } from '../shared/table.js';
import type { SessionEvent } from '../shared/types.js';
import { type BrokerApi, brokerApi, OwnerRegistry } from './api.js';
import { loadStore, MEMORY_STORE_MODULE } from './load-store.js';
import type { ResolvedAdmissionOptions } from './options.js';
import type { RouteInfo, SessionCloser, SessionEventListener } from './store.js';
import type { BrokerWorkerApi, BrokerWorkerData } from './worker.js';

export type {
  EnterResult,
  IndexDescriptor,
  LookupMiss,
  LookupResult,
  SessionIndex,
} from '../shared/session-index.js';
export type { BrokerApi } from './api.js';

/** Opens a process's session index in the calling thread (`now`: a clock override, for in-process tests). */
export function openIndex(descriptor: IndexDescriptor, now?: () => number): SessionIndex {
  return new SessionTable(descriptor.buffer, now);
}
export { MEMORY_STORE_MODULE, REDIS_STORE_MODULE, REMOTE_STORE_MODULE } from './load-store.js';
export {
  ADMISSION_DEFAULTS,
  type AdmissionOptions,
  duration,
  MAX_DURATION_MS,
  positiveInteger,
  type RateLimit,
  type ResolvedAdmissionOptions,
  resolveAdmissionOptions,
  unresponsiveAfterMs,
} from './options.js';
export {
  Authority,
  type AuthorityAddress,
  type AuthorityOptions,
  listenOwnerOnly,
  removeStaleSocket,
} from './remote/authority.js';
export { MAX_CAPACITY } from './remote/protocol.js';
export type {
  CloseVeto,
  RouteInfo,
  SessionCloser,
  SessionEventListener,
  SessionStore,
  StoreContext,
  StoreFactory,
} from './store.js';
export { createStore as createMemoryStore, MemoryStore, type MemoryStoreOptions } from './stores/memory/index.js';
export { checkRedisUrl, redactUrl } from './stores/redis/client.js';
export { checkRedisOptions, parseAdvertise, type RedisStoreOptions } from './stores/redis/link.js';
export type { RemoteStoreOptions } from './stores/remote/index.js';

/** Every broker API call, as a promise (what a comlink proxy gives). */
export type AsyncBrokerApi = {
  [K in keyof BrokerApi]: (...args: Parameters<BrokerApi[K]>) => Promise<Awaited<ReturnType<BrokerApi[K]>>>;
};

/** A running broker, wherever it runs. */
export interface BrokerHandle {
  /** This process's session index (the store's own shared table, for the memory store). */
  readonly index: SessionIndex;
  readonly api: AsyncBrokerApi;
  /** How requests reach sessions of other processes (under a host's authority), else undefined. */
  readonly routing: RouteInfo | undefined;
  /** Connects a handler thread (threads mode only). */
  attach(threadId: number, brokerPort: MessagePort, controlPort: MessagePort): Promise<void>;
  /** Stops the broker (after `api.shutdown`). */
  terminate(): Promise<void>;
}

export interface BrokerStartOptions {
  readonly admission: ResolvedAdmissionOptions;
  readonly lanes: number;
  readonly manualClock: boolean;
  /** A handler thread silent this long (real ms) is replaced by the listener's watchdog; 0 = never. */
  readonly stallTimeoutMs: number;
  /** The store module (file URL) exporting `createStore`. @default the memory store */
  readonly storeModule?: string;
  /** What the store module is configured with (plain data). */
  readonly storeOptions?: unknown;
  readonly onEvent: SessionEventListener;
  /** The broker worker died after it started (its calls now reject with this error). */
  readonly onFailure?: (error: BrokerError) => void;
}

/** Starts the broker worker and waits until its shared table is available. */
export async function startBroker(options: BrokerStartOptions): Promise<BrokerHandle> {
  const events = new MessageChannel();
  const data: BrokerWorkerData = {
    admission: options.admission,
    lanes: options.lanes,
    manualClock: options.manualClock,
    stallTimeoutMs: options.stallTimeoutMs,
    storeModule: options.storeModule ?? MEMORY_STORE_MODULE,
    storeOptions: options.storeOptions,
    eventPort: events.port2,
  };
  const worker = new Worker(new URL('./worker.js', import.meta.url), {
    workerData: data,
    transferList: [events.port2],
    name: 'mcp-session-broker',
  });
  events.port1.on('message', (event: SessionEvent) => options.onEvent(event));
  events.port1.unref();
  const remote: Remote<BrokerWorkerApi> = wrap<BrokerWorkerApi>(endpoint(worker));
  let descriptor: IndexDescriptor;
  let routing: RouteInfo | undefined;
  try {
    [descriptor, routing] = await Promise.race([
      Promise.all([remote.index(), remote.routing()]),
      new Promise<never>((_, reject) => {
        worker.once('error', reject);
        worker.once('exit', (code) => reject(new Error(`broker worker exited with code ${code}`)));
      }),
    ]);
  } catch (cause) {
    await worker.terminate();
    // The store's own words say more than ours (an authority that cannot be reached, say).
    const why = cause instanceof Error && cause.message ? `: ${cause.message}` : '';
    throw new BrokerError('ERR_BROKER_START', `the broker worker failed to start${why}`, { cause });
  }
  // After start, a dead broker must not leave callers waiting forever: every
  // call races the worker's exit.
  let terminating = false;
  let failure: BrokerError | undefined;
  let fail!: (error: BrokerError) => void;
  const dead = new Promise<never>((_, reject) => {
    fail = reject;
  });
  dead.catch(() => undefined);
  worker.once('exit', (code) => {
    if (terminating) return;
    failure = new BrokerError('ERR_BROKER_CLOSED', `the broker worker exited unexpectedly (code ${code})`);
    fail(failure);
    options.onFailure?.(failure);
  });
  const guard =
    <A extends unknown[], R>(call: (...args: A) => Promise<R>) =>
    (...args: A): Promise<R> =>
      failure ? Promise.reject(failure) : Promise.race([call(...args), dead]);
  const api = Object.fromEntries(
    API_METHODS.map((name) => [
      name,
      guard((...args: unknown[]) => (remote[name] as (...a: unknown[]) => Promise<unknown>)(...args)),
    ]),
  ) as AsyncBrokerApi;
  return {
    index: openIndex(descriptor),
    routing,
    api,
    attach: guard((threadId: number, brokerPort: MessagePort, controlPort: MessagePort) =>
      remote.attach(threadId, transfer(brokerPort, [brokerPort]), transfer(controlPort, [controlPort])),
    ),
    async terminate() {
      terminating = true;
      remote[releaseProxy]();
      events.port1.close();
      await worker.terminate();
    },
  };
}

const API_METHODS = [
  'admit',
  'closed',
  'close',
  'attach',
  'ownerGone',
  'sweep',
  'stats',
  'peer',
  'shutdown',
] as const satisfies readonly (keyof BrokerApi)[];

export interface InProcessBrokerOptions extends BrokerStartOptions {
  /** Closes a session's transport (the owner is always this thread). */
  readonly closer: SessionCloser;
  /** Clock override, ms (tests). */
  readonly now?: () => number;
}

/** Runs the store on this thread: no broker worker, no comlink hop. */
export async function startInProcessBroker(options: InProcessBrokerOptions): Promise<BrokerHandle> {
  const store = await loadStore(options.storeModule ?? MEMORY_STORE_MODULE, {
    admission: options.admission,
    lanes: options.lanes,
    manualClock: options.manualClock,
    stallTimeoutMs: options.stallTimeoutMs,
    closer: options.closer,
    onEvent: options.onEvent,
    storeOptions: options.storeOptions,
    ...(options.now ? { now: options.now } : {}),
  });
  const api = brokerApi(store, new OwnerRegistry(), () => {
    throw new TypeError('handler threads cannot attach to an in-process broker');
  });
  const asyncApi = Object.fromEntries(
    Object.entries(api).map(([name, fn]) => [
      name,
      async (...args: unknown[]) => (fn as (...a: unknown[]) => unknown)(...args),
    ]),
  ) as AsyncBrokerApi;
  return {
    index: openIndex(store.index, options.now),
    routing: store.routing,
    api: asyncApi,
    attach: () => Promise.reject(new TypeError('handler threads cannot attach to an in-process broker')),
    terminate: async () => undefined,
  };
}
