/**
 * Admission options: what the broker enforces, validated eagerly.
 */
import { EVICTION_POLICIES, type EvictionPolicy } from '../shared/types.js';

/** A sliding-window limit on session creation. */
export interface RateLimit {
  /** Most sessions created in any window. Positive integer. */
  readonly max: number;
  /** Window length in milliseconds. Positive. */
  readonly windowMs: number;
}

export interface AdmissionOptions {
  /**
   * Most sessions alive at once, across all threads. A session counts from its
   * admission until its transport is closed. Required; positive integer.
   */
  maxSessions: number;
  /**
   * What to do when `maxSessions` is reached: close the `oldest` session (FIFO
   * by creation), the `idlest` (least recently active), or refuse (`none`, 503).
   * Busy sessions are never evicted.
   * @default 'oldest'
   */
  evict?: EvictionPolicy;
  /** Sliding-window limit on session creation; over it, 429 with `Retry-After`. @default no limit */
  rate?: RateLimit;
  /**
   * Close a session after this many milliseconds without a request. A session
   * with a request in flight is not idle. 0 turns idle expiry off (then only the
   * cap, eviction and `maxLifetimeMs` bound sessions).
   * @default 1_800_000 (30 minutes)
   */
  idleTimeoutMs?: number;
  /** Close a session this many milliseconds after its creation, busy or not. 0 = off. @default 0 */
  maxLifetimeMs?: number;
  /**
   * A request in flight protects its session from eviction and idle expiry for
   * at most this many milliseconds, so a client that never reads cannot pin a slot.
   * @default 300_000 (5 minutes)
   */
  busyTimeoutMs?: number;
  /**
   * Limits per client key (the authenticated principal, or the remote address).
   * Checks run in a fixed order: per-client rate, global rate, per-client cap,
   * global cap; a refusal spends no token of either window. At its own cap a
   * client's own oldest evictable session goes (or it is refused with
   * `evict: 'none'`), never another client's; at the global cap the victim is
   * the oldest evictable session of the client holding the most sessions.
   * @default no per-client limits
   */
  perClient?: { maxSessions?: number; rate?: RateLimit };
  /**
   * How long an admission at capacity waits for an evicted session's owner to
   * confirm its transport is closed before it gives up with 503.
   * @default 10_000
   */
  closeTimeoutMs?: number;
}

export interface ResolvedAdmissionOptions {
  readonly maxSessions: number;
  readonly evict: EvictionPolicy;
  readonly rate: RateLimit | undefined;
  readonly idleTimeoutMs: number;
  readonly maxLifetimeMs: number;
  readonly busyTimeoutMs: number;
  readonly closeTimeoutMs: number;
  readonly perClient: { readonly maxSessions: number | undefined; readonly rate: RateLimit | undefined } | undefined;
}

export const ADMISSION_DEFAULTS = {
  evict: 'oldest',
  idleTimeoutMs: 30 * 60_000,
  maxLifetimeMs: 0,
  busyTimeoutMs: 5 * 60_000,
  closeTimeoutMs: 10_000,
} as const satisfies Partial<ResolvedAdmissionOptions>;

/** The longest a handler thread's heartbeat may be silent before the thread counts as unable to answer now, ms. */
export const MAX_UNRESPONSIVE_MS = 1_000;

/**
 * How long a handler thread's heartbeat may be silent before admission stops
 * counting on the thread (no eviction victim there, no new session there):
 * half the stall timeout, at most one second, so an admission at capacity
 * never waits on a thread that cannot answer, long before the thread is replaced.
 */
export function unresponsiveAfterMs(stallTimeoutMs: number): number {
  return stallTimeoutMs === 0 ? MAX_UNRESPONSIVE_MS : Math.min(MAX_UNRESPONSIVE_MS, Math.floor(stallTimeoutMs / 2));
}

/** The largest cap a shared table is built for (slots are preallocated). */
export const MAX_SESSIONS_LIMIT = 1_000_000;
/** The largest rate ring (one Float64 per creation in the window). */
export const MAX_RATE_LIMIT = 10_000_000;
/** The largest duration accepted (about 24.8 days, the largest timer delay). */
export const MAX_DURATION_MS = 2 ** 31 - 1;

export function positiveInteger(name: string, value: unknown, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof value !== 'number') throw new TypeError(`options.${name} must be a positive integer`);
  if (!Number.isInteger(value) || value < 1) throw new RangeError(`options.${name} must be a positive integer`);
  if (value > max) throw new RangeError(`options.${name} must be at most ${max}`);
  return value;
}

export function duration(name: string, value: unknown, fallback: number, allowZero: boolean): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number') throw new TypeError(`options.${name} must be a number of milliseconds`);
  if (!Number.isFinite(value) || value < 0 || (!allowZero && value === 0)) {
    throw new RangeError(
      `options.${name} must be a ${allowZero ? 'non-negative' : 'positive'} finite number of milliseconds`,
    );
  }
  if (value > MAX_DURATION_MS) throw new RangeError(`options.${name} must be at most ${MAX_DURATION_MS} ms`);
  return Math.floor(value);
}

/** Validates admission options and fills in defaults. Throws TypeError / RangeError. */
export function resolveAdmissionOptions(options: AdmissionOptions): ResolvedAdmissionOptions {
  if (typeof options !== 'object' || options === null) throw new TypeError('options must be an object');
  const maxSessions = positiveInteger('maxSessions', options.maxSessions, MAX_SESSIONS_LIMIT);
  const evict = options.evict ?? ADMISSION_DEFAULTS.evict;
  if (typeof evict !== 'string') throw new TypeError(`options.evict must be one of ${EVICTION_POLICIES.join(', ')}`);
  if (!(EVICTION_POLICIES as readonly string[]).includes(evict)) {
    throw new RangeError(`options.evict must be one of ${EVICTION_POLICIES.join(', ')}`);
  }
  const rate = rateLimit('rate', options.rate);
  let perClient: ResolvedAdmissionOptions['perClient'];
  if (options.perClient !== undefined) {
    if (typeof options.perClient !== 'object' || options.perClient === null) {
      throw new TypeError('options.perClient must be an object { maxSessions?, rate? }');
    }
    perClient = {
      maxSessions:
        options.perClient.maxSessions === undefined
          ? undefined
          : positiveInteger('perClient.maxSessions', options.perClient.maxSessions, maxSessions),
      rate: rateLimit('perClient.rate', options.perClient.rate),
    };
    if (perClient.maxSessions === undefined && perClient.rate === undefined) perClient = undefined;
  }
  return {
    maxSessions,
    evict,
    rate,
    idleTimeoutMs: duration('idleTimeoutMs', options.idleTimeoutMs, ADMISSION_DEFAULTS.idleTimeoutMs, true),
    maxLifetimeMs: duration('maxLifetimeMs', options.maxLifetimeMs, ADMISSION_DEFAULTS.maxLifetimeMs, true),
    busyTimeoutMs: duration('busyTimeoutMs', options.busyTimeoutMs, ADMISSION_DEFAULTS.busyTimeoutMs, false),
    closeTimeoutMs: duration('closeTimeoutMs', options.closeTimeoutMs, ADMISSION_DEFAULTS.closeTimeoutMs, false),
    perClient,
  };
}

function rateLimit(name: string, value: unknown): RateLimit | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'object' || value === null)
    throw new TypeError(`options.${name} must be an object { max, windowMs }`);
  const { max, windowMs } = value as { max?: unknown; windowMs?: unknown };
  if (windowMs === undefined) throw new TypeError(`options.${name}.windowMs must be a number of milliseconds`);
  return {
    max: positiveInteger(`${name}.max`, max, MAX_RATE_LIMIT),
    windowMs: duration(`${name}.windowMs`, windowMs, 0, false),
  };
}
