/**
 * The admission authority's interface (the store): every backend gives the
 * same semantics, checked by one contract suite (`runStoreSuite`). The request
 * path never talks to a store directly: it reads the per-process session index
 * the store keeps (`index`), and calls the store only to admit and to report
 * closes. A store is chosen by module (`store` option): the module exports
 * `createStore(context)`.
 */
import type { IndexDescriptor } from '../shared/session-index.js';
import type { AdmitRequest, BrokerStats, CloseReason, Decision, SessionEvent, SessionRef } from '../shared/types.js';
import type { ResolvedAdmissionOptions } from './options.js';

export interface SessionStore {
  /** The session index this store keeps for the process; every thread opens it from this descriptor. */
  readonly index: IndexDescriptor;
  /**
   * Decides an admission. Refusals are values: a refusal spends no rate token
   * and evicts nothing. At capacity it may evict one session and resolve only
   * once that session's owner has confirmed its transport is closed.
   */
  admit(request: AdmitRequest): Promise<Decision>;
  /**
   * The owner reports the session's transport closed: by the client (DELETE),
   * by a failure, or after a close the store asked for (then the store's reason
   * wins). Frees the slot, and records the close in the process's index
   * (`SessionIndex.recordClose`) so that a later request with the session's id
   * is told why (404 with `data.reason`). With `refund`, the session never
   * served anything and its rate token is given back (the factory or
   * transport failed at creation).
   */
  closed(ref: SessionRef, reason: CloseReason, options?: { refund?: boolean }): void;
  /** Asks the owner to close a session (idempotent); `closed` follows when it has. */
  close(ref: SessionRef, reason: CloseReason): void;
  /** A thread died: every session it owned is freed with reason `error`. */
  ownerGone(owner: number): void;
  /** Closes expired sessions now (the store also does this on its own timer). */
  sweep(): void;
  /** A store whose state lives elsewhere (a host's authority) answers asynchronously. */
  stats(): BrokerStats | Promise<BrokerStats>;
  /** Refuses new admissions, closes every session with reason `shutdown`, waits up to `timeoutMs`. */
  shutdown(timeoutMs: number): Promise<void>;
  /**
   * Set by a store whose sessions are spread over processes (ADR 20): this
   * process's index in ids, and how requests reach the others.
   */
  readonly routing?: RouteInfo;
  /** The URL of another host's private route (stores spread over hosts, ADR 21). */
  peer?(process: number): Promise<string | undefined>;
}

/** How a process reaches the owners of sessions it does not own (ADR 20). */
export interface RouteInfo {
  /** This process's index (1..255), in the top 8 bits of its sessions' ids. */
  readonly process: number;
  /** The directory of every process's private socket, `<process>.sock` ('' across hosts: see `listen`). */
  readonly routes: string;
  /**
   * Across hosts (ADR 21): where this host accepts forwarded requests (its
   * advertised URL); the others' URLs come from the store (`peer`).
   */
  readonly listen?: { readonly host: string; readonly port: number; readonly url: string };
  /** What a forwarded request carries for its owner to accept it. */
  readonly secret: string;
}

/**
 * An owner's refusal to close a session it was asked to close without force
 * (eviction, idle expiry). Only owners in another process give one (ADR 20):
 * they know what the authority's table does not. The slot goes back to live.
 */
export interface CloseVeto {
  /** How long ago the session was last active, as the owner knows it. */
  readonly seenAgoMs: number;
  /** Set when a request is in flight (or the owner thread cannot answer now): for how long, ms. */
  readonly busyForMs?: number;
}

/**
 * Closes a session's transport in its owner; resolves when closed, or with a
 * veto (owners in other processes only). `hint.seenAgoMs`: for eviction of the
 * idlest, how long ago the store believes the session was last active.
 */
export type SessionCloser = (
  owner: number,
  ref: SessionRef,
  reason: CloseReason,
  hint?: { readonly seenAgoMs: number },
) => Promise<CloseVeto | undefined> | Promise<void>;

export type SessionEventListener = (event: SessionEvent) => void;

/** What a store is created with. */
export interface StoreContext {
  readonly admission: ResolvedAdmissionOptions;
  /** Lanes for per-thread counts in the index (handler threads plus room for replacements). */
  readonly lanes: number;
  /** Run every thread on the manual clock stored in the index (tests across threads). */
  readonly manualClock: boolean;
  /** A handler thread silent this long (real ms) is replaced by the listener's watchdog; 0 = never. */
  readonly stallTimeoutMs: number;
  /** Closes a session's transport in its owner thread. */
  readonly closer: SessionCloser;
  readonly onEvent: SessionEventListener;
  /** Clock override for this thread, ms (in-process tests). */
  readonly now?: () => number;
  /** What the store module is configured with (plain data: it crosses to the broker worker). */
  readonly storeOptions?: unknown;
}

/** What a store module exports as `createStore`. */
export type StoreFactory = (context: StoreContext) => SessionStore | Promise<SessionStore>;
