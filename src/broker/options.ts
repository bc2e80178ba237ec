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
}

export const ADMISSION_DEFAULTS = {
  evict: 'oldest',
  idleTimeoutMs: 30 * 60_000,
  maxLifetimeMs: 0,
  busyTimeoutMs: 5 * 60_000,
  closeTimeoutMs: 10_000,
} as const satisfies Partial<ResolvedAdmissionOptions>;

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
  let rate: RateLimit | undefined;
  if (options.rate !== undefined) {
    if (typeof options.rate !== 'object' || options.rate === null) {
      throw new TypeError('options.rate must be an object { max, windowMs }');
    }
    rate = {
      max: positiveInteger('rate.max', options.rate.max, MAX_RATE_LIMIT),
      windowMs: duration('rate.windowMs', options.rate.windowMs, Number.NaN, false),
    };
    if (Number.isNaN(rate.windowMs)) throw new TypeError('options.rate.windowMs must be a number of milliseconds');
  }
  return {
    maxSessions,
    evict,
    rate,
    idleTimeoutMs: duration('idleTimeoutMs', options.idleTimeoutMs, ADMISSION_DEFAULTS.idleTimeoutMs, true),
    maxLifetimeMs: duration('maxLifetimeMs', options.maxLifetimeMs, ADMISSION_DEFAULTS.maxLifetimeMs, true),
    busyTimeoutMs: duration('busyTimeoutMs', options.busyTimeoutMs, ADMISSION_DEFAULTS.busyTimeoutMs, false),
    closeTimeoutMs: duration('closeTimeoutMs', options.closeTimeoutMs, ADMISSION_DEFAULTS.closeTimeoutMs, false),
  };
}
