/**
 * The broker worker's entry: one thread, the single authority for admission.
 * It owns the store (and so the shared table), serves the broker API over
 * comlink, and posts lifecycle events to the main thread.
 */

import { type MessagePort, parentPort, workerData } from 'node:worker_threads';
import { expose } from 'comlink';
import { endpoint } from '../shared/rpc.js';
import type { IndexDescriptor } from '../shared/session-index.js';
import { type BrokerApi, brokerApi, OwnerRegistry } from './api.js';
import { loadStore } from './load-store.js';
import type { ResolvedAdmissionOptions } from './options.js';
import type { RouteInfo } from './store.js';

/** What the main thread passes to the broker worker. */
export interface BrokerWorkerData {
  readonly admission: ResolvedAdmissionOptions;
  readonly lanes: number;
  readonly manualClock: boolean;
  readonly stallTimeoutMs: number;
  /** The store module (file URL); it exports `createStore`. */
  readonly storeModule: string;
  /** What the store module is configured with (plain data). */
  readonly storeOptions?: unknown;
  readonly eventPort: MessagePort;
}

/** The API the main thread sees: the broker API plus the store's session index. */
export interface BrokerWorkerApi extends BrokerApi {
  index(): IndexDescriptor;
  /** How requests reach other processes' sessions (stores under a host's authority only). */
  routing(): RouteInfo | undefined;
}

if (!parentPort) throw new Error('the broker worker must run in a worker thread');
const data = workerData as BrokerWorkerData;
const owners = new OwnerRegistry();
const store = await loadStore(data.storeModule, {
  admission: data.admission,
  lanes: data.lanes,
  manualClock: data.manualClock,
  stallTimeoutMs: data.stallTimeoutMs,
  closer: (owner, ref, reason) => owners.close(owner, ref, reason),
  onEvent: (event) => data.eventPort.postMessage(event),
  storeOptions: data.storeOptions,
});
const api: BrokerWorkerApi = {
  ...brokerApi(store, owners, (port) => expose(api, endpoint(port))),
  index: () => store.index,
  routing: () => store.routing,
};
expose(api, endpoint(parentPort));
