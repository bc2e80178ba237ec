/**
 * The layout of the shared session table: one SharedArrayBuffer, read by every
 * thread, whose admission state only the broker writes.
 *
 * ```
 *  byte 0
 *  +--------------------------------------------------------------------------+
 *  | CONFIG   Float64 x CONFIG_F64       written once before the buffer is    |
 *  |          (epoch, idle/lifetime/busy timeouts,   shared; plain reads      |
 *  |           unresponsive and stall thresholds)                             |
 *  +--------------------------------------------------------------------------+
 *  | CLOCK_COUNTERS  BigInt64 x HEADER_I64  manual clock, created/closed/    |
 *  |                                         rejected counters (Atomics)     |
 *  +--------------------------------------------------------------------------+
 *  | HEADER   Int32 x HEADER_I32        capacity, occupancy, FIFO head/tail, |
 *  |                                     free list head (Atomics)            |
 *  +--------------------------------------------------------------------------+
 *  | SLOT TIMES  BigInt64 x SLOT_I64 per slot: createdAt, lastSeen, busySince |
 *  +--------------------------------------------------------------------------+
 *  | SLOT WORDS  Int32 x SLOT_I32 per slot:                                    |
 *  |   STATE  [ 31: 0 | 30..23: gen tag | 22..20: state | 19..0: in-flight ]  |
 *  |   GEN, RAND0..3 (the id's secret), OWNER, CLIENT_HASH0..1 (binding),     |
 *  |   PREV, NEXT (FIFO list / free list), REASON                             |
 *  +--------------------------------------------------------------------------+
 *  | LANES    Int32 x LANE_I32 per handler thread: threadId + 1, transports   |
 *  +--------------------------------------------------------------------------+
 *  | BEATS    BigInt64 x BEAT_I64 per lane: the thread's last heartbeat       |
 *  |          (real ms since the epoch; 0 = the thread does not beat)         |
 *  +--------------------------------------------------------------------------+
 *  | RATE RING  Float64 x rate.max  (only when a rate is set): creation times |
 *  +--------------------------------------------------------------------------+
 *  | CLOSE LOG  Int32 x CLOSE_I32 per entry: recent closes (seq, the id's     |
 *  |            secret, its binding, the reason), for 404s that say why       |
 *  +--------------------------------------------------------------------------+
 * ```
 *
 * Who writes what:
 * - CONFIG: the creator of the buffer, once, before any other thread sees it.
 * - Manual clock: whoever drives the fake clock (tests), with Atomics.store.
 * - Counters, HEADER, GEN, RAND, OWNER, CLIENT_HASH, PREV/NEXT, REASON, createdAt,
 *   the rate ring: the broker only.
 * - STATE: the broker moves state (free -> live -> closing -> free); request
 *   threads change only the in-flight count, always by compare-and-swap.
 * - lastSeen, busySince: request threads (touch on request start and end) and
 *   the broker (at admission).
 * - LANES: each handler thread claims its lane by compare-and-swap and keeps its
 *   own transport count there; the broker clears the lane of a dead thread.
 * - CLOSE LOG: the broker only (as it frees a slot), each entry under a
 *   seqlock (CL_SEQ odd while written); request threads only read it.
 * - BEATS: each handler thread stores its lane's heartbeat from a timer; the
 *   listener's watchdog and the broker's victim selection only read it; the
 *   broker clears it with the lane of a dead thread.
 *
 * Ordering: every cross-thread field is accessed with Atomics (sequentially
 * consistent), except CONFIG, which is immutable once shared. The broker writes
 * GEN and RAND before it publishes a slot by storing STATE; readers load STATE
 * first and confirm it again with the compare-and-swap that enters the slot,
 * so a reader never accepts a half-written id (a seqlock on the STATE word).
 * A heartbeat is one self-contained 64-bit word: Atomics.store / Atomics.load
 * only so that it is never torn (a plain BigInt64 access may be); it orders
 * nothing else, and a reader that sees the previous beat only judges the thread
 * a few milliseconds later.
 */

export const LAYOUT_MAGIC = 0x4d435342; // "MCSB"
export const LAYOUT_VERSION = 3;

// ---- CONFIG (Float64, immutable once shared) -------------------------------
/** Wall-clock ms (performance.timeOrigin + performance.now()) that all stored times count from. */
export const C_EPOCH = 0;
/** Idle timeout in ms; 0 = off. */
export const C_IDLE_MS = 1;
/** Max lifetime in ms; 0 = off. */
export const C_LIFETIME_MS = 2;
/** Busy timeout in ms: a request in flight longer than this no longer protects its session. */
export const C_BUSY_MS = 3;
/** 1 when the clock is the manual clock below (tests), else 0. */
export const C_MANUAL_CLOCK = 4;
/**
 * A handler thread whose heartbeat is older than this (real ms) cannot answer
 * now: its sessions are not picked as eviction victims, it gets no new session.
 */
export const C_UNRESPONSIVE_MS = 5;
/** A handler thread whose heartbeat is older than this (real ms) is replaced; 0 = never. */
export const C_STALL_MS = 6;
export const CONFIG_F64 = 8;

// ---- CLOCK + COUNTERS (BigInt64, Atomics) ------------------------------------
/** The manual clock's current time, ms since the epoch. */
export const B_MANUAL_NOW = 0;
export const B_CREATED_TOTAL = 1;
/** Six counters, one per close reason in CLOSE_REASONS order. */
export const B_CLOSED_TOTAL = 2;
/** One counter per reject reason in REJECT_REASONS order (room for eight, up to HEADER_I64). */
export const B_REJECTED_TOTAL = 8;
export const HEADER_I64 = 16;

// ---- HEADER (Int32, Atomics; broker writes) ----------------------------------
export const H_MAGIC = 0;
export const H_VERSION = 1;
export const H_CAPACITY = 2;
export const H_LANES = 3;
/** rate.max, or 0 when no rate is set (and the rate ring is absent). */
export const H_RATE_MAX = 4;
/** Slots not free (live + closing): what counts against the cap. */
export const H_OCCUPIED = 5;
export const H_LIVE = 6;
export const H_CLOSING = 7;
/** Oldest slot in creation order, or -1. */
export const H_FIFO_HEAD = 8;
/** Newest slot in creation order, or -1. */
export const H_FIFO_TAIL = 9;
export const H_FIFO_LENGTH = 10;
/** First free slot (free slots are chained through NEXT and PREV), or -1. */
export const H_FREE_HEAD = 11;
/**
 * The process index this table's sessions carry in the top 8 bits of their
 * ids' slot word: 0 for one process alone, 1..255 under a host's authority
 * (ADR 20). An id with another index is not this table's.
 */
export const H_PROCESS_TAG = 12;
/** Slot bits of an id's slot word; the bits above name the process. */
export const SLOT_BITS = 24;
/**
 * Transports alive over every lane, kept beside the lanes' own counts: one
 * word a reader loads at once (a sum over lanes read one by one can add one
 * lane's count before a close to another's after an admission).
 */
export const H_TRANSPORTS = 13;
// Words 14..15 are unused.
export const HEADER_I32 = 16;

// ---- SLOT TIMES (BigInt64 per slot, Atomics) ---------------------------------
export const T_CREATED = 0;
export const T_LAST_SEEN = 1;
/** When the in-flight count last went from 0 to 1. */
export const T_BUSY_SINCE = 2;
export const SLOT_I64 = 4;

// ---- SLOT WORDS (Int32 per slot) ---------------------------------------------
/** State word: gen tag, state and in-flight count (see the diagram). */
export const S_STATE = 0;
/** Full 32-bit generation (read as unsigned). */
export const S_GEN = 1;
/** Four words of CSPRNG output: the id's secret part. */
export const S_RAND = 2;
/** threadId of the thread that owns the transport (0: the main thread). */
export const S_OWNER = 6;
/**
 * Two words: the session's binding, a 64-bit keyed hash of the authenticated
 * principal that created it, or 0, 0 when it is not bound. `lookup` accepts the
 * id only from a request carrying the same binding.
 */
export const S_CLIENT_HASH = 7;
/** Previous slot in creation order (broker only), or -1. */
export const S_PREV = 9;
/** Next slot in creation order, or next free slot (broker only), or -1. */
export const S_NEXT = 10;
/** Close reason index while closing (broker only), or -1. */
export const S_REASON = 11;
export const SLOT_I32 = 12;

// ---- STATE word bits ---------------------------------------------------------
export const INFLIGHT_MASK = 0x000f_ffff;
export const STATE_SHIFT = 20;
export const STATE_MASK = 0x7 << STATE_SHIFT;
export const TAG_SHIFT = 23;
export const TAG_MASK = 0xff << TAG_SHIFT;
export const ST_FREE = 0;
export const ST_LIVE = 1;
export const ST_CLOSING = 2;

// ---- LANES (Int32 per lane) ----------------------------------------------------
/** threadId + 1 of the thread holding the lane, or 0 when free. */
export const L_THREAD = 0;
/** SDK transports alive in that thread. */
export const L_TRANSPORTS = 1;
export const LANE_I32 = 2;

// ---- BEATS (BigInt64 per lane, Atomics) ----------------------------------------
/**
 * Real-clock ms since the epoch when the lane's thread last ran its heartbeat
 * timer (never the manual clock: it measures the thread's event loop, not
 * session time); 0 when the thread does not beat (the main thread, `threads: 0`).
 */
export const BT_HEARTBEAT = 0;
export const BEAT_I64 = 1;

// ---- CLOSE LOG (Int32 x CLOSE_I32 per entry, Atomics) ---------------------------
/*
 * The last closes, so that a request naming a closed session learns why (404
 * with `data.reason`). Direct-mapped: an entry's index is the id's first random
 * word modulo the entry count, so a lookup reads one entry (constant time) and
 * a later close that lands on the same entry replaces it; the id then gets the
 * generic 404. Bounded: `closeLogEntries(capacity)` entries of 32 bytes.
 */
/** Seqlock: even when the entry is stable, odd while the broker writes it. */
export const CL_SEQ = 0;
/** The closed id's four random words (its secret). */
export const CL_RAND = 1;
/** The closed session's principal binding (0, 0 when unbound). */
export const CL_CLIENT_HASH = 5;
/** 1 + the index of its close reason in CLOSE_REASONS; 0 = empty. */
export const CL_REASON = 7;
export const CLOSE_I32 = 8;
/** Fewest and most close-log entries (32 bytes each: 32 KiB to 4 MiB). */
export const CLOSE_LOG_MIN = 1024;
export const CLOSE_LOG_MAX = 131_072;

/** Entries in the close log of a table with `capacity` slots: a power of two near 4 x capacity, within bounds. */
export function closeLogEntries(capacity: number): number {
  let entries = CLOSE_LOG_MIN;
  while (entries < capacity * 4 && entries < CLOSE_LOG_MAX) entries *= 2;
  return entries;
}

/** Byte offsets and sizes of every region for one table shape. */
export interface Layout {
  readonly capacity: number;
  readonly lanes: number;
  readonly rateMax: number;
  readonly configOffset: number;
  readonly headerI64Offset: number;
  readonly headerI32Offset: number;
  readonly slotTimesOffset: number;
  readonly slotWordsOffset: number;
  readonly lanesOffset: number;
  readonly beatsOffset: number;
  readonly rateOffset: number;
  readonly closesOffset: number;
  readonly closeEntries: number;
  readonly byteLength: number;
}

/** Computes the regions for a table; every region is 8-byte aligned. */
export function computeLayout(capacity: number, lanes: number, rateMax: number): Layout {
  const configOffset = 0;
  const headerI64Offset = configOffset + CONFIG_F64 * 8;
  const headerI32Offset = headerI64Offset + HEADER_I64 * 8;
  const slotTimesOffset = headerI32Offset + HEADER_I32 * 4;
  const slotWordsOffset = slotTimesOffset + capacity * SLOT_I64 * 8;
  const lanesOffset = slotWordsOffset + align8(capacity * SLOT_I32 * 4);
  const beatsOffset = lanesOffset + align8(lanes * LANE_I32 * 4);
  const rateOffset = beatsOffset + lanes * BEAT_I64 * 8;
  const closesOffset = rateOffset + rateMax * 8;
  const closeEntries = closeLogEntries(capacity);
  const byteLength = closesOffset + closeEntries * CLOSE_I32 * 4;
  return {
    capacity,
    lanes,
    rateMax,
    configOffset,
    headerI64Offset,
    headerI32Offset,
    slotTimesOffset,
    slotWordsOffset,
    lanesOffset,
    beatsOffset,
    rateOffset,
    closesOffset,
    closeEntries,
    byteLength,
  };
}

function align8(n: number): number {
  return Math.ceil(n / 8) * 8;
}

/** Packs a state word. */
export function stateWord(gen: number, state: number, inflight: number): number {
  return ((gen & 0xff) << TAG_SHIFT) | (state << STATE_SHIFT) | inflight | 0;
}
export function wordTag(word: number): number {
  return (word & TAG_MASK) >>> TAG_SHIFT;
}
export function wordState(word: number): number {
  return (word & STATE_MASK) >>> STATE_SHIFT;
}
export function wordInflight(word: number): number {
  return word & INFLIGHT_MASK;
}

// ---- RESUMPTION BYTES (a second, small SharedArrayBuffer) ----------------------
/*
 * Bytes held by the resumability event stores of every session in the process,
 * against `resumability.maxTotalBytes`. One buffer, created by the listener and
 * handed to every handler thread; BigInt64 words, all accessed with Atomics.
 *
 * ```
 *  +-----------+------------------------+------------------------+-----
 *  | R_TOTAL   | thread slot 0          | thread slot 1          | ...
 *  | bytes held| RS_THREAD  | RS_BYTES  | RS_THREAD  | RS_BYTES  |
 *  +-----------+------------------------+------------------------+-----
 * ```
 *
 * R_TOTAL only grows by compare-and-swap against the maximum, so it never
 * exceeds it; a slot's RS_BYTES is what its thread added to R_TOTAL, so the
 * listener can take a dead thread's bytes back out of R_TOTAL.
 */
/** Bytes held across all threads. */
export const R_TOTAL = 0;
/** Index of the first thread slot. */
export const R_SLOTS = 1;
/** threadId + 1 of the thread holding the slot, or 0 when free. */
export const RS_THREAD = 0;
/** Bytes that thread holds (its share of R_TOTAL). */
export const RS_BYTES = 1;
export const RS_I64 = 2;

/** BigInt64 words of a resumption-bytes buffer with `slots` thread slots. */
export function resumeBytesWords(slots: number): number {
  return R_SLOTS + slots * RS_I64;
}
