/**
 * The broker's API, served over comlink to the main thread and to every handler
 * thread, and the wiring of one store to its owners.
 */

import type { MessagePort } from 'node:worker_threads';
import { type Remote, wrap } from 'comlink';
import type { OwnerControl } from '../shared/messages.js';
import { endpoint } from '../shared/rpc.js';
import type { AdmitRequest, BrokerStats, CloseReason, Decision, SessionRef } from '../shared/types.js';
import type { SessionStore } from './store.js';

export interface BrokerApi {
  admit(request: AdmitRequest): Promise<Decision>;
  closed(ref: SessionRef, reason: CloseReason, options?: { refund?: boolean }): void;
  close(ref: SessionRef, reason: CloseReason): void;
  /**
   * Connects a handler thread: it calls this API through `brokerPort`, and the
   * broker closes that thread's sessions through `controlPort`.
   */
  attach(threadId: number, brokerPort: MessagePort, controlPort: MessagePort): void;
  ownerGone(threadId: number): void;
  sweep(): void;
  stats(): BrokerStats | Promise<BrokerStats>;
  /** The URL of another host's private route (stores spread over hosts), else undefined. */
  peer(process: number): Promise<string | undefined>;
  shutdown(timeoutMs: number): Promise<void>;
}

/** Routes close requests to the owner threads that attached. */
export class OwnerRegistry {
  readonly #owners = new Map<number, { remote: Remote<OwnerControl>; port: MessagePort }>();

  /** `onGone` runs when the thread's end of the port closes (the thread died or was stopped). */
  attach(threadId: number, port: MessagePort, onGone: () => void): void {
    this.#owners.get(threadId)?.port.close();
    this.#owners.set(threadId, { remote: wrap<OwnerControl>(endpoint(port)), port });
    port.once('close', () => {
      if (this.#owners.get(threadId)?.port === port) onGone();
    });
  }

  detach(threadId: number): void {
    this.#owners.get(threadId)?.port.close();
    this.#owners.delete(threadId);
  }

  /** Closes a session in its owner; an owner that is gone has no transport left, so that is done at once. */
  close(owner: number, ref: SessionRef, reason: CloseReason): Promise<void> {
    const entry = this.#owners.get(owner);
    if (!entry) return Promise.resolve();
    return entry.remote.close(ref, reason);
  }
}

/** The API object over one store. */
export function brokerApi(store: SessionStore, owners: OwnerRegistry, serveOn: (port: MessagePort) => void): BrokerApi {
  const api: BrokerApi = {
    admit: (request) => store.admit(request),
    closed: (ref, reason, options) => store.closed(ref, reason, options),
    close: (ref, reason) => store.close(ref, reason),
    attach: (threadId, brokerPort, controlPort) => {
      owners.attach(threadId, controlPort, () => api.ownerGone(threadId));
      serveOn(brokerPort);
    },
    ownerGone: (threadId) => {
      owners.detach(threadId);
      store.ownerGone(threadId);
    },
    sweep: () => store.sweep(),
    stats: () => store.stats(),
    peer: async (process) => store.peer?.(process),
    shutdown: (timeoutMs) => store.shutdown(timeoutMs),
  };
  return api;
}
