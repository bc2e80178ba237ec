/**
 * The admission store interface: every backend (the in-memory shared table
 * today, others later) gives the same semantics, checked by one contract suite.
 */
import type { AdmitRequest, BrokerStats, CloseReason, Decision, SessionEvent, SessionRef } from '../shared/types.js';

export interface SessionStore {
  /**
   * Decides an admission. Refusals are values: a refusal spends no rate token
   * and evicts nothing. At capacity it may evict one session and resolve only
   * once that session's owner has confirmed its transport is closed.
   */
  admit(request: AdmitRequest): Promise<Decision>;
  /**
   * The owner reports the session's transport closed: by the client (DELETE),
   * by a failure, or after a close the store asked for (then the store's reason
   * wins). Frees the slot. With `refund`, the session never served anything and
   * its rate token is given back (the factory or transport failed at creation).
   */
  closed(ref: SessionRef, reason: CloseReason, options?: { refund?: boolean }): void;
  /** Asks the owner to close a session (idempotent); `closed` follows when it has. */
  close(ref: SessionRef, reason: CloseReason): void;
  /** A thread died: every session it owned is freed with reason `error`. */
  ownerGone(owner: number): void;
  /** Closes expired sessions now (the store also does this on its own timer). */
  sweep(): void;
  stats(): BrokerStats;
  /** Refuses new admissions, closes every session with reason `shutdown`, waits up to `timeoutMs`. */
  shutdown(timeoutMs: number): Promise<void>;
}

/** Closes a session's transport in its owner thread; resolves when closed. */
export type SessionCloser = (owner: number, ref: SessionRef, reason: CloseReason) => Promise<void>;

export type SessionEventListener = (event: SessionEvent) => void;
