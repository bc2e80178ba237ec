/**
 * The shared session table: typed views over the SharedArrayBuffer described in
 * `layout.ts`, and the lock-free operations any thread may run on it (validate an
 * id, enter and leave a session, touch its last-seen time, report transports).
 * Admission state is written only by the broker's store, through `views`.
 */
import {
  B_CLOSED_TOTAL,
  B_MANUAL_NOW,
  B_REJECTED_TOTAL,
  BEAT_I64,
  BT_HEARTBEAT,
  C_BUSY_MS,
  C_EPOCH,
  C_IDLE_MS,
  C_LIFETIME_MS,
  C_MANUAL_CLOCK,
  C_STALL_MS,
  C_UNRESPONSIVE_MS,
  CL_CLIENT_HASH,
  CL_RAND,
  CL_REASON,
  CL_SEQ,
  CLOSE_I32,
  CONFIG_F64,
  computeLayout,
  H_CAPACITY,
  H_FIFO_HEAD,
  H_FIFO_TAIL,
  H_FREE_HEAD,
  H_LANES,
  H_MAGIC,
  H_PROCESS_TAG,
  H_RATE_MAX,
  H_TRANSPORTS,
  H_VERSION,
  HEADER_I32,
  HEADER_I64,
  INFLIGHT_MASK,
  L_THREAD,
  L_TRANSPORTS,
  LANE_I32,
  LAYOUT_MAGIC,
  LAYOUT_VERSION,
  type Layout,
  S_CLIENT_HASH,
  S_GEN,
  S_NEXT,
  S_OWNER,
  S_PREV,
  S_RAND,
  S_REASON,
  S_STATE,
  SLOT_BITS,
  SLOT_I32,
  SLOT_I64,
  ST_CLOSING,
  ST_FREE,
  ST_LIVE,
  stateWord,
  T_BUSY_SINCE,
  T_CREATED,
  T_LAST_SEEN,
  wordInflight,
  wordState,
  wordTag,
} from './layout.js';
import { parseSessionId } from './session-id.js';

const SLOT_MASK = (1 << SLOT_BITS) - 1;

import type { EnterResult, IndexDescriptor, LookupResult, SessionIndex } from './session-index.js';
import { CLOSE_REASONS, type CloseReason, REJECT_REASONS, type RejectReason, type SessionRef } from './types.js';

/** The shape and timing a table is created with. */
export interface TableInit {
  /** Number of slots: the session cap. */
  readonly capacity: number;
  /** Number of handler-thread lanes for transport counts. */
  readonly lanes: number;
  /** rate.max, or 0 for no rate ring. */
  readonly rateMax: number;
  readonly idleTimeoutMs: number;
  readonly maxLifetimeMs: number;
  readonly busyTimeoutMs: number;
  /** Use the manual clock stored in the buffer (tests) instead of the real one. */
  readonly manualClock: boolean;
  /** A handler thread whose heartbeat is older than this (real ms) cannot answer now. */
  readonly unresponsiveMs: number;
  /** A handler thread whose heartbeat is older than this (real ms) is replaced; 0 = never. */
  readonly stallTimeoutMs: number;
  /** The process index the sessions' ids carry (1..255 under a host's authority). @default 0 */
  readonly processTag?: number;
}

/** Typed views over each region; the broker's store writes through these. */
export interface TableViews {
  readonly config: Float64Array;
  readonly header64: BigInt64Array;
  readonly header: Int32Array;
  readonly times: BigInt64Array;
  readonly words: Int32Array;
  readonly lanes: Int32Array;
  readonly beats: BigInt64Array;
  readonly rate: Float64Array;
  readonly closes: Int32Array;
}

/** The shortest heartbeat period, ms: a timer that fires more often costs more than it tells. */
const MIN_HEARTBEAT_MS = 10;

/**
 * How an id's secret (its four random words) and the request's principal
 * binding differ from the ones stored at `randAt` and `bindingAt` of `array`:
 * 0 when they match. The differences are accumulated without branching on
 * secret material. A stored binding of 0, 0 (a session not bound to a
 * principal) matches any request; a bound one only the same principal (a
 * request without one compares as 0, 0 and never matches a binding).
 */
function secretDiff(
  array: Int32Array,
  randAt: number,
  bindingAt: number,
  rand: readonly number[],
  binding: readonly [number, number] | undefined,
): number {
  let diff = Atomics.load(array, randAt) ^ (rand[0] ?? 0);
  diff |= Atomics.load(array, randAt + 1) ^ (rand[1] ?? 0);
  diff |= Atomics.load(array, randAt + 2) ^ (rand[2] ?? 0);
  diff |= Atomics.load(array, randAt + 3) ^ (rand[3] ?? 0);
  const bound0 = Atomics.load(array, bindingAt);
  const bound1 = Atomics.load(array, bindingAt + 1);
  if ((bound0 | bound1) !== 0) diff |= (bound0 ^ (binding?.[0] ?? 0)) | (bound1 ^ (binding?.[1] ?? 0));
  return diff;
}

/** The real clock: ms on a timeline shared by all threads of the process. */
export function wallNow(): number {
  return performance.timeOrigin + performance.now();
}

/** The shared-table session index: one SharedArrayBuffer read and written by every thread of a process. */
export class SessionTable implements SessionIndex {
  readonly buffer: SharedArrayBuffer;
  readonly layout: Layout;
  readonly views: TableViews;
  readonly capacity: number;
  readonly idleTimeoutMs: number;
  readonly maxLifetimeMs: number;
  readonly busyTimeoutMs: number;
  /** A heartbeat older than this (real ms) means its thread cannot answer now. */
  readonly unresponsiveMs: number;
  /** A heartbeat older than this (real ms) gets its thread replaced; 0 = never. */
  readonly stallTimeoutMs: number;
  /** The process index this table's ids carry (`H_PROCESS_TAG`). */
  readonly processTag: number;
  readonly #epoch: number;
  readonly #manual: boolean;
  readonly #now: (() => number) | undefined;

  /** Allocates and initialises a table. Only the broker calls this. */
  static create(init: TableInit): SessionTable {
    const layout = computeLayout(init.capacity, init.lanes, init.rateMax);
    const buffer = new SharedArrayBuffer(layout.byteLength);
    const config = new Float64Array(buffer, layout.configOffset, CONFIG_F64);
    config[C_EPOCH] = Math.floor(wallNow());
    config[C_IDLE_MS] = init.idleTimeoutMs;
    config[C_LIFETIME_MS] = init.maxLifetimeMs;
    config[C_BUSY_MS] = init.busyTimeoutMs;
    config[C_MANUAL_CLOCK] = init.manualClock ? 1 : 0;
    config[C_UNRESPONSIVE_MS] = init.unresponsiveMs;
    config[C_STALL_MS] = init.stallTimeoutMs;
    const header = new Int32Array(buffer, layout.headerI32Offset, HEADER_I32);
    header[H_MAGIC] = LAYOUT_MAGIC;
    header[H_VERSION] = LAYOUT_VERSION;
    header[H_CAPACITY] = init.capacity;
    header[H_LANES] = init.lanes;
    header[H_RATE_MAX] = init.rateMax;
    header[H_FIFO_HEAD] = -1;
    header[H_FIFO_TAIL] = -1;
    header[H_PROCESS_TAG] = init.processTag ?? 0;
    const words = new Int32Array(buffer, layout.slotWordsOffset, init.capacity * SLOT_I32);
    // Every slot starts free with generation 1, chained into the free list in index order.
    for (let slot = 0; slot < init.capacity; slot++) {
      const base = slot * SLOT_I32;
      words[base + S_GEN] = 1;
      words[base + S_STATE] = stateWord(1, 0, 0);
      words[base + S_PREV] = slot - 1;
      words[base + S_NEXT] = slot + 1 < init.capacity ? slot + 1 : -1;
      words[base + S_REASON] = -1;
    }
    header[H_FREE_HEAD] = init.capacity > 0 ? 0 : -1;
    return new SessionTable(buffer);
  }

  /**
   * Attaches to a table created elsewhere (another thread).
   * @param now optional clock override for this thread (ms since the table's epoch), for in-process tests.
   */
  get descriptor(): IndexDescriptor {
    return { kind: 'shared-table', buffer: this.buffer };
  }

  constructor(buffer: SharedArrayBuffer, now?: () => number) {
    const probe = new Int32Array(buffer, CONFIG_F64 * 8 + HEADER_I64 * 8, HEADER_I32);
    if (probe[H_MAGIC] !== LAYOUT_MAGIC || probe[H_VERSION] !== LAYOUT_VERSION) {
      throw new TypeError('buffer is not a session table of this version');
    }
    const layout = computeLayout(probe[H_CAPACITY] ?? 0, probe[H_LANES] ?? 0, probe[H_RATE_MAX] ?? 0);
    this.buffer = buffer;
    this.layout = layout;
    this.capacity = layout.capacity;
    this.views = {
      config: new Float64Array(buffer, layout.configOffset, CONFIG_F64),
      header64: new BigInt64Array(buffer, layout.headerI64Offset, HEADER_I64),
      header: probe,
      times: new BigInt64Array(buffer, layout.slotTimesOffset, layout.capacity * SLOT_I64),
      words: new Int32Array(buffer, layout.slotWordsOffset, layout.capacity * SLOT_I32),
      lanes: new Int32Array(buffer, layout.lanesOffset, layout.lanes * LANE_I32),
      beats: new BigInt64Array(buffer, layout.beatsOffset, layout.lanes * BEAT_I64),
      rate: new Float64Array(buffer, layout.rateOffset, layout.rateMax),
      closes: new Int32Array(buffer, layout.closesOffset, layout.closeEntries * CLOSE_I32),
    };
    const config = this.views.config;
    this.#epoch = config[C_EPOCH] ?? 0;
    this.idleTimeoutMs = config[C_IDLE_MS] ?? 0;
    this.maxLifetimeMs = config[C_LIFETIME_MS] ?? 0;
    this.busyTimeoutMs = config[C_BUSY_MS] ?? 0;
    this.#manual = config[C_MANUAL_CLOCK] === 1;
    this.unresponsiveMs = config[C_UNRESPONSIVE_MS] ?? 0;
    this.stallTimeoutMs = config[C_STALL_MS] ?? 0;
    this.processTag = probe[H_PROCESS_TAG] ?? 0;
    this.#now = now;
  }

  /** Current time in ms since the table's epoch (integer). */
  now(): number {
    if (this.#now) return this.#now();
    if (this.#manual) return Number(Atomics.load(this.views.header64, B_MANUAL_NOW));
    return Math.floor(wallNow() - this.#epoch);
  }

  /**
   * Real-clock ms since the table's epoch, whatever clock sessions run on:
   * heartbeats measure whether a thread's event loop turns, not session time.
   */
  realNow(): number {
    return Math.floor(wallNow() - this.#epoch);
  }

  /** Whether the table runs on the manual clock. */
  get manualClock(): boolean {
    return this.#manual;
  }

  /** Sets the manual clock (ms since the epoch). Every thread sees it at once. */
  setManualNow(ms: number): void {
    if (!this.#manual) throw new TypeError('the table was not created with a manual clock');
    Atomics.store(this.views.header64, B_MANUAL_NOW, BigInt(Math.floor(ms)));
  }

  /**
   * Validates a session id and returns its slot reference, or why not. O(1): no
   * hash table, one atomic load of the state word, a constant-time compare of
   * the random words (and of the principal binding, if the session has one),
   * and the expiry deadlines.
   */
  lookup(id: string, binding?: readonly [number, number]): LookupResult {
    const parsed = parseSessionId(id);
    if (!parsed) return { ok: false, miss: 'malformed' };
    const { gen, rand } = parsed;
    // The top bits name the process that owns the session: another's is not in this table.
    if (parsed.slot >>> SLOT_BITS !== this.processTag) return { ok: false, miss: 'unknown' };
    const slot = parsed.slot & SLOT_MASK;
    if (slot >= this.capacity) return { ok: false, miss: 'unknown' };
    const words = this.views.words;
    const base = slot * SLOT_I32;
    const word = Atomics.load(words, base + S_STATE);
    const tag = gen & 0xff;
    if (wordState(word) === ST_LIVE && wordTag(word) === tag && this.#holds(base, gen, rand, binding)) {
      // A slot recycled (or closing) between these loads changes its state or its
      // tag. Only those are compared: the in-flight count in the same word moves
      // whenever a request of this session enters or leaves on another thread, and
      // must not make the lookup fail. The compare-and-swap in enter() checks again.
      const again = Atomics.load(words, base + S_STATE);
      if (wordState(again) === ST_LIVE && wordTag(again) === tag) {
        const expired = this.expiry(slot, word, this.now());
        return expired ? { ok: false, miss: expired } : { ok: true, ref: { slot, gen } };
      }
    }
    return { ok: false, miss: this.#closedReason(slot, gen, rand, binding) };
  }

  /**
   * Whether the slot at `base` holds this id's generation and secret, and (if
   * the session is bound to a principal) this principal. The differences are
   * accumulated without branching on secret material.
   */
  #holds(base: number, gen: number, rand: readonly number[], binding: readonly [number, number] | undefined): boolean {
    const words = this.views.words;
    const genDiff = (Atomics.load(words, base + S_GEN) >>> 0) ^ gen;
    return (genDiff | secretDiff(words, base + S_RAND, base + S_CLIENT_HASH, rand, binding)) === 0;
  }

  /**
   * Why the session an id names was closed, if this index still knows: the slot
   * while it is closing (the owner has not confirmed yet), else the close log.
   * Only the whole id (and the principal a bound session had) learns it; any
   * other id gets `unknown`, as an id never issued does.
   */
  #closedReason(
    slot: number,
    gen: number,
    rand: readonly number[],
    binding: readonly [number, number] | undefined,
  ): 'unknown' | CloseReason {
    const words = this.views.words;
    const base = slot * SLOT_I32;
    const word = Atomics.load(words, base + S_STATE);
    if (wordState(word) === ST_CLOSING && wordTag(word) === (gen & 0xff)) {
      const reason = CLOSE_REASONS[Atomics.load(words, base + S_REASON)];
      const held = this.#holds(base, gen, rand, binding);
      const again = Atomics.load(words, base + S_STATE);
      if (held && reason && wordState(again) === ST_CLOSING && wordTag(again) === wordTag(word)) return reason;
    }
    const closes = this.views.closes;
    const entry = ((rand[0] ?? 0) & (this.layout.closeEntries - 1)) * CLOSE_I32;
    const seq = Atomics.load(closes, entry + CL_SEQ);
    if (seq & 1) return 'unknown';
    const diff = secretDiff(closes, entry + CL_RAND, entry + CL_CLIENT_HASH, rand, binding);
    const reason = CLOSE_REASONS[Atomics.load(closes, entry + CL_REASON) - 1];
    // A write that began meanwhile moved the sequence: what was read may be torn.
    if (diff !== 0 || !reason || Atomics.load(closes, entry + CL_SEQ) !== seq) return 'unknown';
    return reason;
  }

  /**
   * Remembers why the session in this slot closed (the broker only, as it
   * frees the slot, before the slot is reused): its secret, its binding and
   * the reason go to the close log entry its first random word maps to.
   */
  recordClose(ref: SessionRef, reason: CloseReason): void {
    const { words, closes } = this.views;
    const base = ref.slot * SLOT_I32;
    if (Atomics.load(words, base + S_GEN) >>> 0 !== ref.gen) return;
    const rand0 = Atomics.load(words, base + S_RAND);
    const entry = (rand0 & (this.layout.closeEntries - 1)) * CLOSE_I32;
    const seq = Atomics.load(closes, entry + CL_SEQ);
    Atomics.store(closes, entry + CL_SEQ, (seq + 1) | 0);
    Atomics.store(closes, entry + CL_RAND, rand0);
    for (let i = 1; i < 4; i++) Atomics.store(closes, entry + CL_RAND + i, Atomics.load(words, base + S_RAND + i));
    Atomics.store(closes, entry + CL_CLIENT_HASH, Atomics.load(words, base + S_CLIENT_HASH));
    Atomics.store(closes, entry + CL_CLIENT_HASH + 1, Atomics.load(words, base + S_CLIENT_HASH + 1));
    Atomics.store(closes, entry + CL_REASON, CLOSE_REASONS.indexOf(reason) + 1);
    Atomics.store(closes, entry + CL_SEQ, (seq + 2) | 0);
  }

  /** Whether the slot holds this incarnation (its generation) and is not free: live or closing. */
  occupies(ref: SessionRef): boolean {
    if (!Number.isInteger(ref.slot) || ref.slot < 0 || ref.slot >= this.capacity) return false;
    const words = this.views.words;
    const base = ref.slot * SLOT_I32;
    return (
      Atomics.load(words, base + S_GEN) >>> 0 === ref.gen >>> 0 &&
      wordState(Atomics.load(words, base + S_STATE)) !== ST_FREE
    );
  }

  /** The close and refusal counters kept in the header, by reason. */
  totals(): { closedTotal: Record<CloseReason, number>; rejectedTotal: Record<RejectReason, number> } {
    const header64 = this.views.header64;
    return {
      closedTotal: Object.fromEntries(
        CLOSE_REASONS.map((r, i) => [r, Number(Atomics.load(header64, B_CLOSED_TOTAL + i))]),
      ) as Record<CloseReason, number>,
      rejectedTotal: Object.fromEntries(
        REJECT_REASONS.map((r, i) => [r, Number(Atomics.load(header64, B_REJECTED_TOTAL + i))]),
      ) as Record<RejectReason, number>,
    };
  }

  /**
   * Which deadline, if any, the live slot has passed: `lifetime` (always), or
   * `idle` when no request protects it (none in flight, or the session has
   * been busy without a break for longer than the busy timeout).
   */
  expiry(slot: number, word: number, now: number): 'idle' | 'lifetime' | undefined {
    const times = this.views.times;
    const tbase = slot * SLOT_I64;
    if (this.maxLifetimeMs > 0 && now - Number(Atomics.load(times, tbase + T_CREATED)) >= this.maxLifetimeMs) {
      return 'lifetime';
    }
    if (this.idleTimeoutMs > 0 && !this.isProtected(slot, word, now)) {
      if (now - Number(Atomics.load(times, tbase + T_LAST_SEEN)) >= this.idleTimeoutMs) return 'idle';
    }
    return undefined;
  }

  /**
   * A slot is protected (busy) while a request is in flight, for at most the
   * busy timeout counted from when it became busy (its in-flight count rose
   * from 0); overlapping requests do not extend it.
   */
  isProtected(slot: number, word: number, now: number): boolean {
    if (wordInflight(word) === 0) return false;
    const since = Number(Atomics.load(this.views.times, slot * SLOT_I64 + T_BUSY_SINCE));
    return now - since < this.busyTimeoutMs;
  }

  /**
   * Enters a request into a live session: increments its in-flight count by
   * compare-and-swap, only while the slot is live and of this generation and
   * the count is below `limit`. Returns `gone` when the session is not live
   * (answer 404), `limited` when it already has `limit` requests in flight.
   * @param limit most requests in flight in one session (capped at the count's width, INFLIGHT_MASK)
   */
  enter(ref: SessionRef, limit: number = INFLIGHT_MASK): EnterResult {
    const words = this.views.words;
    const index = ref.slot * SLOT_I32 + S_STATE;
    const tbase = ref.slot * SLOT_I64;
    const most = Math.min(limit, INFLIGHT_MASK);
    for (;;) {
      const word = Atomics.load(words, index);
      if (!this.#isLiveGen(ref, word)) return 'gone';
      const inflight = wordInflight(word);
      // The limit is checked on the word the compare-and-swap below confirms:
      // concurrent enters cannot overshoot it together.
      if (inflight >= most) return 'limited';
      // Times first, then the compare-and-swap that publishes in-flight: the
      // broker must never see the new count with a stale busySince (it would
      // think the request old enough to evict its session).
      const now = BigInt(this.now());
      if (inflight === 0) Atomics.store(this.views.times, tbase + T_BUSY_SINCE, now);
      Atomics.store(this.views.times, tbase + T_LAST_SEEN, now);
      if (Atomics.compareExchange(words, index, word, word + 1) === word) return 'entered';
    }
  }

  /** The word is live and of the ref's generation: the tag in the word and the full generation word. */
  #isLiveGen(ref: SessionRef, word: number): boolean {
    if (wordState(word) !== ST_LIVE || wordTag(word) !== (ref.gen & 0xff)) return false;
    return Atomics.load(this.views.words, ref.slot * SLOT_I32 + S_GEN) >>> 0 === ref.gen >>> 0;
  }

  /**
   * Leaves a session: decrements the in-flight count of this generation (a
   * recycled slot is left alone, whatever its state) and touches last-seen.
   */
  leave(ref: SessionRef): void {
    const words = this.views.words;
    const index = ref.slot * SLOT_I32 + S_STATE;
    // Touch first, then decrement: once the count reaches 0 the session is
    // idle-eligible, and its last-seen must already be this moment.
    this.touch(ref);
    for (;;) {
      const word = Atomics.load(words, index);
      if (wordTag(word) !== (ref.gen & 0xff) || wordInflight(word) === 0 || wordState(word) === 0) return;
      if (Atomics.load(words, ref.slot * SLOT_I32 + S_GEN) >>> 0 !== ref.gen >>> 0) return;
      if (Atomics.compareExchange(words, index, word, word - 1) === word) return;
    }
  }

  /** Records activity (a GET stream opening, a request ending) on the session's last-seen time. */
  touch(ref: SessionRef): void {
    const word = Atomics.load(this.views.words, ref.slot * SLOT_I32 + S_STATE);
    if (!this.#isLiveGen(ref, word)) return;
    Atomics.store(this.views.times, ref.slot * SLOT_I64 + T_LAST_SEEN, BigInt(this.now()));
  }

  /** Requests in flight in the session (0 once the slot was recycled). */
  inflight(ref: SessionRef): number {
    const word = Atomics.load(this.views.words, ref.slot * SLOT_I32 + S_STATE);
    return this.#isLiveGen(ref, word) ? wordInflight(word) : 0;
  }

  /** Whether the slot still holds this live session (not closing, not recycled). */
  isLive(ref: SessionRef): boolean {
    return this.#isLiveGen(ref, Atomics.load(this.views.words, ref.slot * SLOT_I32 + S_STATE));
  }

  /** The thread owning the session's transport. */
  owner(ref: SessionRef): number {
    return Atomics.load(this.views.words, ref.slot * SLOT_I32 + S_OWNER);
  }

  /** Claims a free lane for a thread's transport count; returns its index, or -1 when none is free. */
  claimLane(threadId: number): number {
    const lanes = this.views.lanes;
    for (let lane = 0; lane < this.layout.lanes; lane++) {
      if (Atomics.compareExchange(lanes, lane * LANE_I32 + L_THREAD, 0, threadId + 1) === 0) {
        this.#clearLaneTransports(lane);
        return lane;
      }
    }
    return -1;
  }

  /** Adds to a lane's transport count (the owning thread only). */
  addTransports(lane: number, delta: number): void {
    if (lane < 0) return;
    Atomics.add(this.views.lanes, lane * LANE_I32 + L_TRANSPORTS, delta);
    Atomics.add(this.views.header, H_TRANSPORTS, delta);
  }

  /** Sets a lane's transport count to 0, taking what it held out of the total. */
  #clearLaneTransports(lane: number): void {
    const held = Atomics.exchange(this.views.lanes, lane * LANE_I32 + L_TRANSPORTS, 0);
    if (held !== 0) Atomics.sub(this.views.header, H_TRANSPORTS, held);
  }

  /** Frees the lane of a thread that is gone (the broker only). */
  releaseLane(threadId: number): void {
    const lanes = this.views.lanes;
    for (let lane = 0; lane < this.layout.lanes; lane++) {
      if (Atomics.load(lanes, lane * LANE_I32 + L_THREAD) === threadId + 1) {
        this.#clearLaneTransports(lane);
        // Cleared before the lane is free: the next holder starts as "does not beat".
        Atomics.store(this.views.beats, lane * BEAT_I64 + BT_HEARTBEAT, 0n);
        Atomics.store(lanes, lane * LANE_I32 + L_THREAD, 0);
      }
    }
  }

  /** The lane a thread holds, or -1. */
  laneOf(threadId: number): number {
    const lanes = this.views.lanes;
    for (let lane = 0; lane < this.layout.lanes; lane++) {
      if (Atomics.load(lanes, lane * LANE_I32 + L_THREAD) === threadId + 1) return lane;
    }
    return -1;
  }

  /** How often a handler thread should beat, ms: a quarter of the unresponsive threshold. */
  get heartbeatIntervalMs(): number {
    return Math.max(MIN_HEARTBEAT_MS, Math.floor(this.unresponsiveMs / 4));
  }

  /** Records that the lane's thread is running its event loop now (that thread only, from a timer). */
  beat(lane: number): void {
    if (lane < 0) return;
    // Never 0, which means "does not beat".
    Atomics.store(this.views.beats, lane * BEAT_I64 + BT_HEARTBEAT, BigInt(Math.max(1, this.realNow())));
  }

  /**
   * Real ms since the thread last beat, or undefined when it holds no lane or
   * does not beat (the main thread, or a thread that has not started beating).
   */
  heartbeatAge(threadId: number): number | undefined {
    const lane = this.laneOf(threadId);
    if (lane < 0) return undefined;
    const beat = Number(Atomics.load(this.views.beats, lane * BEAT_I64 + BT_HEARTBEAT));
    return beat === 0 ? undefined : this.realNow() - beat;
  }

  /**
   * Threads that cannot answer now, with how long they have been silent (real
   * ms): their heartbeat is older than the unresponsive threshold.
   */
  unresponsiveThreads(): Map<number, number> {
    const { lanes, beats } = this.views;
    const out = new Map<number, number>();
    const now = this.realNow();
    for (let lane = 0; lane < this.layout.lanes; lane++) {
      const holder = Atomics.load(lanes, lane * LANE_I32 + L_THREAD);
      if (holder === 0) continue;
      const beat = Number(Atomics.load(beats, lane * BEAT_I64 + BT_HEARTBEAT));
      if (beat !== 0 && now - beat > this.unresponsiveMs) out.set(holder - 1, now - beat);
    }
    return out;
  }

  /** Transport counts per thread, keyed by threadId, as the threads report them. */
  transportsByThread(): Record<string, number> {
    const lanes = this.views.lanes;
    const out: Record<string, number> = {};
    for (let lane = 0; lane < this.layout.lanes; lane++) {
      const holder = Atomics.load(lanes, lane * LANE_I32 + L_THREAD);
      if (holder !== 0) out[String(holder - 1)] = Atomics.load(lanes, lane * LANE_I32 + L_TRANSPORTS);
    }
    return out;
  }

  /** Transports alive for one thread (0 when it holds no lane). */
  transportsOf(threadId: number): number {
    const lanes = this.views.lanes;
    for (let lane = 0; lane < this.layout.lanes; lane++) {
      if (Atomics.load(lanes, lane * LANE_I32 + L_THREAD) === threadId + 1) {
        return Atomics.load(lanes, lane * LANE_I32 + L_TRANSPORTS);
      }
    }
    return 0;
  }

  /** SDK transports alive across threads right now (the lanes' counts' total, read as one word). */
  transports(): number {
    return Atomics.load(this.views.header, H_TRANSPORTS);
  }
}
