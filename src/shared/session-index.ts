/**
 * The per-process session index: everything the request path asks about
 * sessions and threads, answered in the calling thread without a round trip to
 * the admission authority. Every thread of one process opens the same index
 * (from its cloneable `IndexDescriptor`).
 *
 * The shared-table index (`SessionTable`, over a SharedArrayBuffer) is the one
 * implementation: with the memory store it *is* the authority's state; with an
 * authority elsewhere (another process, Redis) it holds this process's sessions
 * and follows the authority's admissions and closes. A `SessionRef` is a handle
 * into this index (slot and generation), valid in this process only.
 */
import type { CloseReason, SessionRef } from './types.js';

/** What `enter` did: `entered`, or why not (the session is `gone`, or `limited` by its requests in flight). */
export type EnterResult = 'entered' | 'gone' | 'limited';

/**
 * Why a lookup found no usable session: `malformed` or `unknown` ids, or a
 * session this index knows was closed, and why (`idle` and `lifetime` also for
 * one past its deadline and not yet swept). A close is told only to a request
 * that presents the whole id (and the principal it was bound to), and only
 * while the index still remembers it (a bounded record of recent closes).
 */
export type LookupMiss = 'malformed' | 'unknown' | CloseReason;

export type LookupResult =
  | { readonly ok: true; readonly ref: SessionRef }
  | { readonly ok: false; readonly miss: LookupMiss };

/** How a thread opens a process's index (cloneable: it crosses to handler threads). */
export type IndexDescriptor = { readonly kind: 'shared-table'; readonly buffer: SharedArrayBuffer };

export interface SessionIndex {
  /** The descriptor other threads of this process open this index with. */
  readonly descriptor: IndexDescriptor;
  /** Most sessions the index holds (the cap, for the memory store). */
  readonly capacity: number;

  // ---- sessions: the per-request hot path ----------------------------------

  /** Validates an id (and, with auth, the principal it is bound to) in constant time. */
  lookup(id: string, binding?: readonly [number, number]): LookupResult;
  /** Remembers why a session closed, for `lookup` (the authority's side, as it frees the session). */
  recordClose(ref: SessionRef, reason: CloseReason): void;
  /** Marks activity (the standalone GET stream, which never counts as in flight). */
  touch(ref: SessionRef): void;
  /** A POST or DELETE starts: the session is busy until `leave`; refused past `limit` in flight. */
  enter(ref: SessionRef, limit?: number): EnterResult;
  leave(ref: SessionRef): void;
  /** Requests of the session in flight now. */
  inflight(ref: SessionRef): number;
  /** Whether the session is still live (not closing, not freed). */
  isLive(ref: SessionRef): boolean;
  /** The thread that owns the session. */
  owner(ref: SessionRef): number;

  // ---- threads of this process ---------------------------------------------

  /** Claims a lane for a thread's counts and heartbeat; -1 when none is free. */
  claimLane(threadId: number): number;
  /** Adds to the lane's count of live transports (the owning thread only). */
  addTransports(lane: number, delta: number): void;
  /** Live transports across the process's threads, as they report them. */
  transports(): number;
  transportsOf(threadId: number): number;
  transportsByThread(): Record<string, number>;
  /** How often a handler thread should `beat`, ms. */
  readonly heartbeatIntervalMs: number;
  /** The lane's thread is running its event loop now (from a timer in that thread). */
  beat(lane: number): void;
  /** Real ms since the thread last beat; undefined when it does not beat. */
  heartbeatAge(threadId: number): number | undefined;
  /** Threads that cannot answer now, with how long they have been silent. */
  unresponsiveThreads(): Map<number, number>;

  // ---- clock ---------------------------------------------------------------

  /** Ms on the index's timeline (the manual clock when the index runs on one). */
  now(): number;
  /** Sets the manual clock (tests; only on an index created with one). */
  setManualNow(ms: number): void;
}
