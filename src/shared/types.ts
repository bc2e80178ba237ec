/**
 * Types shared by every thread: close reasons, admission decisions, events.
 * Nothing here imports anything of ours.
 */

/** Why a session ended. The order is the order of the `closed` counters in the shared buffer. */
export const CLOSE_REASONS = ['deleted', 'evicted', 'idle', 'lifetime', 'shutdown', 'error'] as const;
export type CloseReason = (typeof CLOSE_REASONS)[number];

/**
 * Why the broker refused an admission. The order is the order of the `rejected`
 * counters. `rate_limited`/`full` are the global limits; `client_*` a client's own;
 * `shutting_down`: the server is shutting down; `owner_gone`: the thread that was
 * to own the session is gone (it died, or the watchdog is replacing it);
 * `unavailable`: the host's admission authority cannot be reached (many
 * processes: new sessions are refused until it is back, never admitted
 * without it).
 */
export const REJECT_REASONS = [
  'rate_limited',
  'full',
  'client_rate_limited',
  'client_full',
  'shutting_down',
  'owner_gone',
  'unavailable',
] as const;
export type RejectReason = (typeof REJECT_REASONS)[number];

/**
 * Why the HTTP front refused a request or a connection before any admission:
 * `queue_full` (the owner thread's dispatch queue), `in_flight_limited` (the
 * session's own requests in flight), `connections_full` (open connections,
 * server-wide, none idle), `address_full` (open connections, or behind a
 * trusted proxy requests in progress, of one client address).
 */
export const FRONT_REFUSAL_REASONS = ['queue_full', 'in_flight_limited', 'connections_full', 'address_full'] as const;
export type FrontRefusalReason = (typeof FRONT_REFUSAL_REASONS)[number];

/** A refusal by the HTTP front: a value, like an admission refusal. */
export interface FrontRefusal {
  readonly reason: FrontRefusalReason;
  /** How long the client should wait before trying again, in milliseconds. */
  readonly retryAfterMs: number;
}

/** What happens to the oldest or idlest session when the cap is reached. */
/**
 * The shortest `Retry-After` any refusal carries, ms: HTTP counts it in whole
 * seconds, and a client told "0" would retry at once.
 */
export const MIN_RETRY_AFTER_MS = 1_000;

export const EVICTION_POLICIES = ['oldest', 'idlest', 'none'] as const;
export type EvictionPolicy = (typeof EVICTION_POLICIES)[number];

/** A reference to one incarnation of a slot: the slot index and its generation at admission. */
export interface SessionRef {
  readonly slot: number;
  readonly gen: number;
}

/** A granted admission: the session exists in the table, already holding its initialize request. */
export interface Admitted extends SessionRef {
  readonly ok: true;
  readonly id: string;
}

/** A refused admission. Nothing was evicted and no rate token was spent. */
export interface Refused {
  readonly ok: false;
  readonly reason: RejectReason;
  /** How long the client should wait before trying again, in milliseconds (at least 1000). */
  readonly retryAfterMs: number;
}

/** The broker's answer to `admit`: a value, never an exception. */
export type Decision = Admitted | Refused;

/** What an admission asks for. */
export interface AdmitRequest {
  /** Who is asking: the authenticated principal or the remote address. */
  readonly clientKey: string;
  /** The thread that will own the session's transport (its `threadId`; 0 for the main thread). */
  readonly owner: number;
  /**
   * For an authenticated principal: a 64-bit keyed hash of it (two 32-bit
   * words, not both 0). The session then answers only requests that carry the
   * same principal. Absent for clients known only by their address.
   */
  readonly binding?: readonly [number, number];
}

/** A session came to life. */
export interface SessionCreatedEvent {
  readonly type: 'created';
  readonly id: string;
  readonly clientKey: string;
  readonly owner: number;
  /** Wall-clock time of the admission, ms since the Unix epoch. */
  readonly at: number;
}

/** A session ended and its transport is closed; its slot is free again. */
export interface SessionClosedEvent {
  readonly type: 'closed';
  readonly id: string;
  readonly clientKey: string;
  readonly owner: number;
  readonly reason: CloseReason;
  /** How long the session lived, in milliseconds. */
  readonly durationMs: number;
  /** Wall-clock time of the close, ms since the Unix epoch. */
  readonly at: number;
}

export type SessionEvent = SessionCreatedEvent | SessionClosedEvent;

/** A snapshot of the admission state. */
export interface BrokerStats {
  /** Slots that count against the cap: live sessions plus sessions whose close is not yet confirmed. */
  readonly occupied: number;
  /** Sessions that accept requests. */
  readonly live: number;
  /** Sessions being closed (their owner has not yet confirmed). */
  readonly closing: number;
  /** Transports alive per handler thread, as the threads themselves report them. */
  readonly transportsByThread: Readonly<Record<string, number>>;
  /** Sum of `transportsByThread`: the number of SDK transports alive right now. */
  readonly transports: number;
  /** Entries in the creation-order (FIFO) list. */
  readonly fifoLength: number;
  /** Admissions waiting for an evicted session's close to be confirmed. */
  readonly waiting: number;
  readonly createdTotal: number;
  readonly closedTotal: Readonly<Record<CloseReason, number>>;
  readonly rejectedTotal: Readonly<Record<RejectReason, number>>;
  /** Creations counted in the current rate window (0 when no rate is set). */
  readonly rateWindowCount: number;
}
