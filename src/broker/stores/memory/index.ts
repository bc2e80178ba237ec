/**
 * The in-memory store: admission state in the shared session table. It runs on
 * one thread (the broker worker, or the main thread with `threads: 0`) and is
 * the only writer of admission state, so the cap and the rate window hold
 * exactly without locks: every decision is made synchronously on this thread,
 * and a slot is freed only when the owner confirms its transport is closed.
 */

import { randomFillSync } from 'node:crypto';
import {
  B_CLOSED_TOTAL,
  B_CREATED_TOTAL,
  B_REJECTED_TOTAL,
  H_CLOSING,
  H_FIFO_HEAD,
  H_FIFO_LENGTH,
  H_FIFO_TAIL,
  H_FREE_HEAD,
  H_LIVE,
  H_OCCUPIED,
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
} from '../../../shared/layout.js';
import { formatSessionId } from '../../../shared/session-id.js';
import type { IndexDescriptor } from '../../../shared/session-index.js';
import { SessionTable } from '../../../shared/table.js';
import {
  type AdmitRequest,
  type BrokerStats,
  CLOSE_REASONS,
  type CloseReason,
  type Decision,
  MIN_RETRY_AFTER_MS,
  REJECT_REASONS,
  type Refused,
  type RejectReason,
  type SessionEvent,
  type SessionRef,
} from '../../../shared/types.js';
import { type ResolvedAdmissionOptions, unresponsiveAfterMs } from '../../options.js';
import type { CloseVeto, SessionCloser, SessionEventListener, SessionStore, StoreFactory } from '../../store.js';
import { EmptyWait, emitLater } from '../common.js';
import { ItemHeap, SlotHeap } from './heaps.js';
import { RateWindow } from './rate-window.js';

export interface MemoryStoreOptions {
  readonly admission: ResolvedAdmissionOptions;
  /** Lanes for per-thread transport counts (handler threads plus room for replacements). */
  readonly lanes: number;
  /** Closes a session's transport in its owner thread. */
  readonly closer: SessionCloser;
  readonly onEvent?: SessionEventListener;
  /** Clock override for this thread, ms (in-process tests). */
  readonly now?: () => number;
  /** Run every thread on the manual clock stored in the table (tests across threads). */
  readonly manualClock?: boolean;
  /** How often the idle/lifetime sweep runs, ms. @default derived from the timeouts, 50..1000 */
  readonly sweepIntervalMs?: number;
  /**
   * After how long without a heartbeat (real ms) the listener replaces a
   * handler thread; 0 = never. The store only uses it to tell a refused client
   * when to retry. @default 0
   */
  readonly stallTimeoutMs?: number;
  /**
   * A handler thread whose heartbeat is older than this (real ms) cannot answer
   * now: its sessions are never picked as eviction victims, so an admission at
   * capacity does not wait on it. Threads that do not beat are never judged.
   * @default unresponsiveAfterMs(stallTimeoutMs): half of it, at most 1 s
   */
  readonly unresponsiveMs?: number;
  /**
   * The process index (1..255) an owner's session ids carry in the top 8 bits
   * of their slot word, when owners are processes under a host's authority
   * (ADR 20). @default none: ids carry 0
   */
  readonly idTag?: (owner: number) => number;
}

/** A session an owner still holds, as a restarted authority takes it over (`adopt`). */
export interface AdoptedSession {
  readonly slot: number;
  readonly gen: number;
  readonly rand: readonly [number, number, number, number];
  readonly owner: number;
  readonly clientKey: string;
  readonly binding?: readonly [number, number];
  readonly createdAgoMs: number;
  readonly seenAgoMs: number;
}

interface SlotMeta {
  id: string;
  clientKey: string;
  rateToken: number;
  clientToken: number;
  client: ClientEntry | undefined;
  closeRequested: boolean;
}

/** An admission waiting for a slot to be freed for it. */
interface Waiter {
  readonly request: AdmitRequest;
  /** Token in the global window (0: none). */
  rateToken: number;
  /** The client's entry and its token in the client's window (per-client limits only). */
  readonly client: ClientEntry | undefined;
  clientToken: number;
  /** The slot being evicted for this admission, or -1 for any slot that frees up. */
  victim: number;
  /** The thread owning the victim's transport (when victim >= 0). */
  victimOwner: number;
  /** Where another victim is looked for if the owner vetoes this one: the client's own sessions, or all. */
  readonly scope: 'client' | 'global';
  readonly timer: NodeJS.Timeout;
  readonly resolve: (decision: Decision) => void;
}

/** A client's standing (per-client limits only). Broker-local. */
interface ClientEntry {
  readonly key: string;
  /** Sessions holding a slot (live or closing) plus admissions waiting for one. */
  count: number;
  /** The client's slots in creation order (linked through #clientPrev/#clientNext). */
  head: number;
  tail: number;
  readonly rate: RateWindow | undefined;
  /** When the entry last became active (entered #clients): ties between equal counts go to the earlier. */
  seq: number;
  /** Position in #heaviest, or -1. */
  heapIndex: number;
}

/** Per owner thread (broker-local): its slots occupied, closing, and bound to a waiting admission. */
interface OwnerCounts {
  occupied: number;
  closing: number;
  bound: number;
}

/** Where a victim search records the soonest end of a busy protection it met (for Retry-After). */
interface Walk {
  busyUntil: number;
}

/**
 * Client-table entries beyond `maxSessions`: every client holding a session
 * keeps its entry, and this many more remember recent clients' rate history.
 */
const CLIENT_TABLE_SLACK = 64;
const NO_DEADLINE_RETRY_MS = 5_000;
const MAX_RETRY_MS = 60_000;

export class MemoryStore implements SessionStore {
  readonly table: SessionTable;

  get index(): IndexDescriptor {
    return this.table.descriptor;
  }
  readonly #opts: ResolvedAdmissionOptions;
  readonly #closer: SessionCloser;
  readonly #onEvent: SessionEventListener | undefined;
  readonly #idTag: ((owner: number) => number) | undefined;
  readonly #rate: RateWindow | undefined;
  readonly #meta: Array<SlotMeta | undefined>;
  /** Admissions waiting for any slot that frees up, in arrival order. */
  readonly #waiters: Waiter[] = [];
  /** Admissions waiting for the slot evicted for them, by that slot. */
  readonly #bound = new Map<number, Waiter>();
  /** Clients holding sessions or waiting (per-client limits only). */
  readonly #clients = new Map<string, ClientEntry>();
  /** Clients with nothing held, least recently used first: recycled when the table is full. */
  readonly #idleClients = new Map<string, ClientEntry>();
  readonly #clientLimit: number;
  readonly #clientPrev: Int32Array;
  readonly #clientNext: Int32Array;
  readonly #sweepTimer: NodeJS.Timeout | undefined;
  readonly #empty = new EmptyWait();
  /**
   * Live slots by a lower bound on when each can expire (idle or lifetime);
   * undefined when neither timeout is on. Last-seen times move later behind
   * the broker's back, never earlier, so a key is re-checked when it comes
   * due: the slot expires, or goes back with its new bound. See ADR 16.
   */
  readonly #expiry: SlotHeap | undefined;
  /**
   * Live slots by last-seen as the broker last read it (evict: 'idlest'
   * without per-client limits): the least is re-read when it comes to the
   * top, and goes back with its newer time until the top is current.
   */
  readonly #idlest: SlotHeap | undefined;
  /** Clients holding sessions or waiting, most first (per-client limits only). */
  readonly #heaviest = new ItemHeap<ClientEntry>((a, b) => a.count > b.count || (a.count === b.count && a.seq < b.seq));
  #clientSeq = 0;
  /** Counts per owner thread, so the checks for stuck threads cost O(threads), not O(capacity). */
  readonly #owners = new Map<number, OwnerCounts>();
  /** Threads known to be gone: an admission still in transit from one is refused. */
  readonly #deadOwners = new Set<number>();
  #shuttingDown = false;

  constructor(options: MemoryStoreOptions) {
    const a = options.admission;
    this.#opts = a;
    this.#closer = options.closer;
    this.#onEvent = options.onEvent;
    this.#idTag = options.idTag;
    const table = SessionTable.create({
      capacity: a.maxSessions,
      lanes: options.lanes,
      rateMax: a.rate?.max ?? 0,
      idleTimeoutMs: a.idleTimeoutMs,
      maxLifetimeMs: a.maxLifetimeMs,
      busyTimeoutMs: a.busyTimeoutMs,
      manualClock: options.manualClock ?? false,
      stallTimeoutMs: options.stallTimeoutMs ?? 0,
      unresponsiveMs: options.unresponsiveMs ?? unresponsiveAfterMs(options.stallTimeoutMs ?? 0),
    });
    this.table = options.now ? new SessionTable(table.buffer, options.now) : table;
    this.#rate = a.rate ? new RateWindow(this.table.views.rate, a.rate.windowMs) : undefined;
    this.#meta = new Array(a.maxSessions);
    // Every client holding a session keeps its entry: there are at most
    // maxSessions of those, plus room for clients that currently hold none.
    this.#clientLimit = a.maxSessions + CLIENT_TABLE_SLACK;
    this.#clientPrev = new Int32Array(a.perClient ? a.maxSessions : 0).fill(-1);
    this.#clientNext = new Int32Array(a.perClient ? a.maxSessions : 0).fill(-1);
    const timeouts = [a.idleTimeoutMs, a.maxLifetimeMs].filter((ms) => ms > 0);
    this.#expiry = timeouts.length > 0 ? new SlotHeap(a.maxSessions) : undefined;
    this.#idlest = a.evict === 'idlest' && !a.perClient ? new SlotHeap(a.maxSessions) : undefined;
    if (timeouts.length > 0) {
      const interval = options.sweepIntervalMs ?? Math.min(1000, Math.max(50, Math.floor(Math.min(...timeouts) / 10)));
      this.#sweepTimer = setInterval(() => this.sweep(), interval);
      this.#sweepTimer.unref();
    }
  }

  // ---- admission -----------------------------------------------------------

  admit(request: AdmitRequest): Promise<Decision> {
    if (this.#shuttingDown) return Promise.resolve(this.#refuse('shutting_down', MIN_RETRY_AFTER_MS));
    // An admission still in transit from a thread that is gone: nobody would build its transport.
    if (this.#deadOwners.has(request.owner)) return Promise.resolve(this.#refuse('owner_gone', MIN_RETRY_AFTER_MS));
    const now = this.table.now();
    const perClient = this.#opts.perClient;
    const client = perClient ? this.#peekClient(request.clientKey) : undefined;
    // Limits are checked in a fixed order and tokens spent only once every check
    // passed, so a refusal spends nothing and evicts nothing.
    // 1. The client's rate.
    if (client?.rate) {
      const check = client.rate.check(now);
      if (!check.ok) return Promise.resolve(this.#refuse('client_rate_limited', check.retryAfterMs));
    }
    // 2. The global rate.
    if (this.#rate) {
      const check = this.#rate.check(now);
      if (!check.ok) return Promise.resolve(this.#refuse('rate_limited', check.retryAfterMs));
    }
    // 3. The client's cap: its own oldest evictable session makes room.
    if (perClient?.maxSessions !== undefined && client && client.count >= perClient.maxSessions) {
      this.#expireDue(now);
      if (client.count >= perClient.maxSessions) {
        // Never wait on a thread that cannot answer now: its sessions are neither awaited nor evicted.
        const stuck = this.table.unresponsiveThreads();
        // One of its own sessions already closing (expired, say) and not yet spoken for makes room.
        const closing = this.#unclaimedClosing(this.#clientSlots(client), stuck);
        if (closing >= 0) return this.#wait(request, now, closing, 'client');
        const victim = this.#opts.evict === 'none' ? -1 : this.#evictFrom(this.#clientSlots(client), now, stuck);
        if (victim < 0) {
          return Promise.resolve(this.#refuse('client_full', this.#retryAfter(this.#clientSlots(client), now, stuck)));
        }
        return this.#wait(request, now, victim, 'client');
      }
    }
    // 4. The global cap.
    const header = this.table.views.header;
    if (Atomics.load(header, H_OCCUPIED) < this.#opts.maxSessions && this.#waiters.length === 0) {
      const [rateToken, clientToken, entry] = this.#spend(request.clientKey, now);
      if (entry) this.#clientCount(entry, 1);
      return Promise.resolve(this.#allocate(request, rateToken, clientToken, entry, now));
    }
    // At capacity: expired sessions go first (with their own reason), then one victim.
    this.#expireDue(now);
    // Never wait on a thread that cannot answer now (a tool blocking its event
    // loop): its closing sessions are not counted on, its live ones not evicted.
    // If nothing else can make room, the refusal is immediate.
    const stuck = this.table.unresponsiveThreads();
    const unclaimed = this.#unboundClosing(stuck) - this.#waiters.length;
    if (unclaimed > 0) return this.#wait(request, now, -1, 'global');
    const walk: Walk = { busyUntil: Number.POSITIVE_INFINITY };
    const victim = this.#opts.evict === 'none' ? -1 : this.#pickVictim(now, stuck, walk);
    if (victim < 0) return Promise.resolve(this.#refuse('full', this.#fullRetryAfter(now, stuck, walk.busyUntil)));
    return this.#wait(request, now, victim, 'global');
  }

  /** The first of `slots` that is closing, not awaited by an admission, and whose owner can answer; or -1. */
  #unclaimedClosing(slots: Iterable<number>, stuck: ReadonlyMap<number, number>): number {
    const words = this.table.views.words;
    for (const slot of slots) {
      if (
        wordState(Atomics.load(words, slot * SLOT_I32 + S_STATE)) === ST_CLOSING &&
        !this.#bound.has(slot) &&
        !stuck.has(Atomics.load(words, slot * SLOT_I32 + S_OWNER))
      )
        return slot;
    }
    return -1;
  }

  /**
   * Closing slots no admission is bound to, whose owner can answer. O(stuck
   * threads): every bound slot is closing, and each owner's closing and bound
   * slots are counted.
   */
  #unboundClosing(stuck: ReadonlyMap<number, number>): number {
    let count = Atomics.load(this.table.views.header, H_CLOSING) - this.#bound.size;
    for (const owner of stuck.keys()) {
      const counts = this.#owners.get(owner);
      if (counts) count -= counts.closing - counts.bound;
    }
    return count;
  }

  /** Adds to an owner's counts; an owner with nothing left is forgotten (the map holds live owners only). */
  #count(owner: number, occupied: number, closing: number, bound: number): void {
    let counts = this.#owners.get(owner);
    if (!counts) {
      counts = { occupied: 0, closing: 0, bound: 0 };
      this.#owners.set(owner, counts);
    }
    counts.occupied += occupied;
    counts.closing += closing;
    counts.bound += bound;
    if (counts.occupied === 0 && counts.closing === 0 && counts.bound === 0) this.#owners.delete(owner);
  }

  /** Spends the admission's tokens (global and the client's); returns them and the client's entry. */
  #spend(clientKey: string, now: number): [number, number, ClientEntry | undefined] {
    const rateToken = this.#rate?.spend(now) ?? 0;
    if (!this.#opts.perClient) return [rateToken, 0, undefined];
    const entry = this.#obtainClient(clientKey);
    return [rateToken, entry.rate?.spend(now) ?? 0, entry];
  }

  /** Spends the tokens now and waits for a slot: the victim's (>= 0) or any that frees up (-1). */
  #wait(request: AdmitRequest, now: number, victim: number, scope: 'client' | 'global'): Promise<Decision> {
    const [rateToken, clientToken, entry] = this.#spend(request.clientKey, now);
    if (entry) this.#clientCount(entry, 1);
    const victimOwner = victim >= 0 ? Atomics.load(this.table.views.words, victim * SLOT_I32 + S_OWNER) : -1;
    return new Promise<Decision>((resolve) => {
      const timer = setTimeout(() => {
        // The evicted session's owner never confirmed: give up, give the tokens back.
        // Named for why: an owner that cannot answer (to be replaced), else capacity.
        this.#unqueue(waiter);
        this.#release(waiter);
        resolve(this.#refuse(this.#ownerCannotAnswer(victim) ? 'owner_gone' : 'full', MIN_RETRY_AFTER_MS));
      }, this.#opts.closeTimeoutMs);
      timer.unref();
      const waiter: Waiter = {
        request,
        rateToken,
        client: entry,
        clientToken,
        victim,
        victimOwner,
        scope,
        timer,
        resolve,
      };
      if (victim >= 0) {
        this.#bound.set(victim, waiter);
        this.#count(victimOwner, 0, 0, 1);
      } else this.#waiters.push(waiter);
    });
  }

  /** Whether the owner of `slot` (a victim; -1 for none) is gone or has stopped answering. */
  #ownerCannotAnswer(slot: number): boolean {
    if (slot < 0) return false;
    const owner = Atomics.load(this.table.views.words, slot * SLOT_I32 + S_OWNER);
    return this.#deadOwners.has(owner) || this.table.unresponsiveThreads().has(owner);
  }

  #unqueue(waiter: Waiter): void {
    if (waiter.victim >= 0) {
      if (this.#bound.get(waiter.victim) === waiter) {
        this.#bound.delete(waiter.victim);
        this.#count(waiter.victimOwner, 0, 0, -1);
      }
    } else {
      const i = this.#waiters.indexOf(waiter);
      if (i >= 0) this.#waiters.splice(i, 1);
    }
    clearTimeout(waiter.timer);
  }

  /** A waiter that will not be admitted: its tokens and its client reservation go back. */
  #release(waiter: Waiter): void {
    if (waiter.rateToken) this.#rate?.refund(waiter.rateToken);
    if (waiter.client) {
      if (waiter.clientToken) waiter.client.rate?.refund(waiter.clientToken);
      this.#clientDone(waiter.client);
    }
  }

  /** Grants a freed slot to the admission waiting for it (bound to it, else the oldest unbound). */
  #grant(slot: number): void {
    for (;;) {
      const waiter = this.#bound.get(slot) ?? this.#waiters[0];
      if (!waiter) return;
      this.#unqueue(waiter);
      const now = this.table.now();
      // The creation happens now, not when it was decided: move its tokens to now.
      if (waiter.rateToken && this.#rate) {
        waiter.rateToken = this.#rate.restamp(waiter.rateToken, now);
        if (waiter.rateToken === 0) {
          this.#release(waiter);
          const check = this.#rate.check(now);
          waiter.resolve(this.#refuse('rate_limited', check.ok ? MIN_RETRY_AFTER_MS : check.retryAfterMs));
          continue;
        }
      }
      if (waiter.clientToken && waiter.client?.rate) {
        waiter.clientToken = waiter.client.rate.restamp(waiter.clientToken, now);
        if (waiter.clientToken === 0) {
          this.#release(waiter);
          const check = waiter.client.rate.check(now);
          waiter.resolve(this.#refuse('client_rate_limited', check.ok ? MIN_RETRY_AFTER_MS : check.retryAfterMs));
          continue;
        }
      }
      waiter.resolve(this.#allocate(waiter.request, waiter.rateToken, waiter.clientToken, waiter.client, now));
      return;
    }
  }

  #emit(event: SessionEvent): void {
    emitLater(this.#onEvent, event);
  }

  #refuse(reason: RejectReason, retryAfterMs: number): Refused {
    Atomics.add(this.table.views.header64, B_REJECTED_TOTAL + REJECT_REASONS.indexOf(reason), 1n);
    return { ok: false, reason, retryAfterMs: Math.max(MIN_RETRY_AFTER_MS, Math.ceil(retryAfterMs)) };
  }

  /**
   * Takes a free slot and publishes it live, holding its initialize request
   * (in-flight 1). The client's reservation (`count`) was made by the caller.
   */
  #allocate(
    request: AdmitRequest,
    rateToken: number,
    clientToken: number,
    client: ClientEntry | undefined,
    now: number,
  ): Decision {
    const { header, words, times, header64 } = this.table.views;
    const slot = Atomics.load(header, H_FREE_HEAD);
    if (slot < 0) throw new Error('session table invariant broken: no free slot below capacity');
    const base = slot * SLOT_I32;
    const nextFree = Atomics.load(words, base + S_NEXT);
    Atomics.store(header, H_FREE_HEAD, nextFree);
    if (nextFree >= 0) Atomics.store(words, nextFree * SLOT_I32 + S_PREV, -1);
    const gen = Atomics.load(words, base + S_GEN) >>> 0;
    const rand = new Int32Array(4);
    randomFillSync(rand);
    for (let i = 0; i < 4; i++) Atomics.store(words, base + S_RAND + i, rand[i] ?? 0);
    Atomics.store(words, base + S_OWNER, request.owner);
    Atomics.store(words, base + S_REASON, -1);
    Atomics.store(words, base + S_CLIENT_HASH, request.binding?.[0] ?? 0);
    Atomics.store(words, base + S_CLIENT_HASH + 1, request.binding?.[1] ?? 0);
    const tbase = slot * SLOT_I64;
    const stamp = BigInt(now);
    Atomics.store(times, tbase + T_CREATED, stamp);
    Atomics.store(times, tbase + T_LAST_SEEN, stamp);
    Atomics.store(times, tbase + T_BUSY_SINCE, stamp);
    this.#linkTail(slot);
    if (client) this.#linkClient(client, slot);
    this.#count(request.owner, 1, 0, 0);
    this.#expiry?.set(slot, this.#expiryKey(slot, now));
    this.#idlest?.set(slot, now);
    const id = formatSessionId(this.#idSlot(slot, request.owner), gen, rand);
    this.#meta[slot] = { id, clientKey: request.clientKey, rateToken, clientToken, client, closeRequested: false };
    Atomics.add(header, H_OCCUPIED, 1);
    Atomics.add(header, H_LIVE, 1);
    Atomics.add(header64, B_CREATED_TOTAL, 1n);
    // Publish last: readers load STATE first, so they never see a half-written slot.
    Atomics.store(words, base + S_STATE, stateWord(gen, ST_LIVE, 1));
    this.#emit({ type: 'created', id, clientKey: request.clientKey, owner: request.owner, at: Date.now() });
    return { ok: true, id, slot, gen };
  }

  /**
   * Marks the victim for an admission at the global cap closing and asks its
   * owner to close it; returns its slot, or -1 when nothing can be evicted.
   * With per-client limits, the victim is the oldest evictable session of the
   * client holding the most sessions (so many addresses cannot push out one
   * quiet client); otherwise the oldest (or idlest) of all. Protected sessions
   * met on the way record when their protection ends in `walk`.
   */
  #pickVictim(now: number, stuck: ReadonlyMap<number, number>, walk: Walk): number {
    if (this.#opts.perClient) {
      // Clients in order of how many they hold; those without an evictable session go back after.
      const visited: ClientEntry[] = [];
      let victim = -1;
      for (let client = this.#heaviest.pop(); client; client = this.#heaviest.pop()) {
        visited.push(client);
        victim = this.#evictFrom(this.#clientSlots(client), now, stuck, walk);
        if (victim >= 0) break;
      }
      for (const client of visited) if (client.count > 0) this.#heaviest.update(client);
      return victim;
    }
    if (this.#idlest) return this.#evictIdlest(this.#idlest, now, stuck, walk);
    return this.#evictFrom(this.#byCreation(), now, stuck, walk);
  }

  /**
   * Begins closing the first evictable slot among `candidates` whose owner can
   * answer (not in `stuck`); returns it, or -1. O(candidates passed over):
   * sessions with a request in flight, closing, or of a stuck thread.
   */
  #evictFrom(candidates: Iterable<number>, now: number, stuck: ReadonlyMap<number, number>, walk?: Walk): number {
    const words = this.table.views.words;
    for (const slot of candidates) {
      if (stuck.size > 0 && stuck.has(Atomics.load(words, slot * SLOT_I32 + S_OWNER))) continue;
      // A candidate that a request entered since we looked fails the compare-and-swap: try the next.
      if (this.#beginClose(slot, 'evicted', now, false)) return slot;
      if (walk) this.#noteBusy(slot, walk);
    }
    return -1;
  }

  /**
   * The least recently active evictable slot, begun closing; or -1. The heap's
   * keys are last-seen times as last read, never later than the real ones: a
   * top whose real time is later goes back with it, and a top that is current
   * is the least of all. Tops that cannot be evicted (busy, stuck) are set
   * aside and put back. Amortised O(log n) per activity seen, plus O(log n)
   * per slot set aside.
   */
  #evictIdlest(heap: SlotHeap, now: number, stuck: ReadonlyMap<number, number>, walk: Walk): number {
    const { words, times } = this.table.views;
    const aside: number[] = [];
    let victim = -1;
    for (let slot = heap.peek(); slot >= 0; slot = heap.peek()) {
      const seen = Number(Atomics.load(times, slot * SLOT_I64 + T_LAST_SEEN));
      if (seen > heap.key(slot)) {
        heap.set(slot, seen);
        continue;
      }
      heap.delete(slot);
      if (stuck.size > 0 && stuck.has(Atomics.load(words, slot * SLOT_I32 + S_OWNER))) {
        aside.push(slot);
        continue;
      }
      if (this.#beginClose(slot, 'evicted', now, false)) {
        victim = slot;
        break;
      }
      this.#noteBusy(slot, walk);
      aside.push(slot);
    }
    for (const slot of aside) {
      if (wordState(Atomics.load(words, slot * SLOT_I32 + S_STATE)) === ST_LIVE) {
        heap.set(slot, Number(Atomics.load(times, slot * SLOT_I64 + T_LAST_SEEN)));
      }
    }
    return victim;
  }

  /** Records when a live slot's busy protection ends, if it has a request in flight. */
  #noteBusy(slot: number, walk: Walk): void {
    const word = Atomics.load(this.table.views.words, slot * SLOT_I32 + S_STATE);
    if (wordState(word) !== ST_LIVE || wordInflight(word) === 0) return;
    const since = Number(Atomics.load(this.table.views.times, slot * SLOT_I64 + T_BUSY_SINCE));
    walk.busyUntil = Math.min(walk.busyUntil, since + this.#opts.busyTimeoutMs);
  }

  /**
   * A client's slots, oldest first, walked lazily (the walk stops at the first
   * evictable); with evict: 'idlest', least recently active first, which
   * sorts them: O(k log k) for a client holding k, at most its cap.
   */
  *#clientSlots(client: ClientEntry): Generator<number> {
    if (this.#opts.evict !== 'idlest') {
      for (let slot = client.head; slot >= 0; slot = this.#clientNext[slot] ?? -1) yield slot;
      return;
    }
    const slots: number[] = [];
    for (let slot = client.head; slot >= 0; slot = this.#clientNext[slot] ?? -1) slots.push(slot);
    const times = this.table.views.times;
    const seen = (slot: number) => Number(Atomics.load(times, slot * SLOT_I64 + T_LAST_SEEN));
    slots.sort((a, b) => seen(a) - seen(b));
    yield* slots;
  }

  *#byCreation(): Generator<number> {
    const { header, words } = this.table.views;
    for (
      let slot = Atomics.load(header, H_FIFO_HEAD);
      slot >= 0;
      slot = Atomics.load(words, slot * SLOT_I32 + S_NEXT)
    ) {
      yield slot;
    }
  }

  /**
   * Moves a live slot to closing by compare-and-swap and asks its owner to close
   * it. Unless `force`, only an unprotected slot moves (no request in flight, or
   * in flight past the busy timeout). Returns whether this call moved it.
   */
  #beginClose(slot: number, reason: CloseReason, now: number, force: boolean): boolean {
    const { words, header } = this.table.views;
    const index = slot * SLOT_I32 + S_STATE;
    for (;;) {
      const word = Atomics.load(words, index);
      if (wordState(word) !== ST_LIVE) return false;
      if (!force && this.table.isProtected(slot, word, now)) return false;
      const gen = Atomics.load(words, slot * SLOT_I32 + S_GEN) >>> 0;
      const next = stateWord(gen, ST_CLOSING, wordInflight(word));
      // Fails only when a request entered or left meanwhile: look again.
      if (Atomics.compareExchange(words, index, word, next) !== word) continue;
      Atomics.store(words, slot * SLOT_I32 + S_REASON, CLOSE_REASONS.indexOf(reason));
      Atomics.sub(header, H_LIVE, 1);
      Atomics.add(header, H_CLOSING, 1);
      this.#expiry?.delete(slot);
      this.#idlest?.delete(slot);
      this.#count(Atomics.load(words, slot * SLOT_I32 + S_OWNER), 0, 1, 0);
      this.#askOwner(slot, gen, reason);
      return true;
    }
  }

  #askOwner(slot: number, gen: number, reason: CloseReason): void {
    const meta = this.#meta[slot];
    if (meta) meta.closeRequested = true;
    const owner = Atomics.load(this.table.views.words, slot * SLOT_I32 + S_OWNER);
    const ref = { slot, gen };
    const seenAgoMs = this.#opts.evict === 'idlest' && reason === 'evicted' ? this.#seenAgo(slot) : undefined;
    this.#closer(owner, ref, reason, seenAgoMs === undefined ? undefined : { seenAgoMs }).then(
      (answer) => (answer ? this.#reopen(ref, answer) : this.closed(ref, reason)),
      // The owner could not be reached: its death (ownerGone) frees the slot.
      () => undefined,
    );
  }

  #seenAgo(slot: number): number {
    return Math.max(0, this.table.now() - Number(Atomics.load(this.table.views.times, slot * SLOT_I64 + T_LAST_SEEN)));
  }

  /**
   * The owner vetoed a close that was not forced (ADR 20: an owner in another
   * process knows what this table does not: a request in flight, activity
   * since). The slot goes back to live with what the owner said; an
   * admission counting on it looks for another victim, or is refused.
   */
  #reopen(ref: SessionRef, veto: CloseVeto): void {
    const { words, header, times } = this.table.views;
    const slot = ref.slot;
    const base = slot * SLOT_I32;
    const word = Atomics.load(words, base + S_STATE);
    if (wordState(word) !== ST_CLOSING || Atomics.load(words, base + S_GEN) >>> 0 !== ref.gen >>> 0) return;
    const now = this.table.now();
    const tbase = slot * SLOT_I64;
    const seen = Math.max(Number(Atomics.load(times, tbase + T_LAST_SEEN)), now - veto.seenAgoMs);
    Atomics.store(times, tbase + T_LAST_SEEN, BigInt(seen));
    // A request in flight there: protected here too, from when it began, until the busy timeout.
    if (veto.busyForMs !== undefined) Atomics.store(times, tbase + T_BUSY_SINCE, BigInt(now - veto.busyForMs));
    Atomics.store(words, base + S_REASON, -1);
    Atomics.store(words, base + S_STATE, stateWord(ref.gen, ST_LIVE, veto.busyForMs === undefined ? 0 : 1));
    Atomics.sub(header, H_CLOSING, 1);
    Atomics.add(header, H_LIVE, 1);
    this.#count(Atomics.load(words, base + S_OWNER), 0, -1, 0);
    const meta = this.#meta[slot];
    if (meta) meta.closeRequested = false;
    this.#expiry?.set(slot, this.#expiryKey(slot, now));
    this.#idlest?.set(slot, seen);
    const bound = this.#bound.get(slot);
    if (bound) {
      this.#bound.delete(slot);
      this.#count(bound.victimOwner, 0, 0, -1);
      this.#rebind(bound, now);
      return;
    }
    // Admissions waiting for any closing slot: one fewer will free up.
    const stuck = this.table.unresponsiveThreads();
    if (this.#waiters.length > this.#unboundClosing(stuck)) {
      const waiter = this.#waiters.pop();
      if (waiter) this.#rebind(waiter, now);
    }
  }

  /** Finds a waiting admission another victim in its scope, or refuses it (its tokens go back). */
  #rebind(waiter: Waiter, now: number): void {
    const stuck = this.table.unresponsiveThreads();
    const walk: Walk = { busyUntil: Number.POSITIVE_INFINITY };
    const client = waiter.client;
    const inClient = waiter.scope === 'client' && client !== undefined;
    const victim =
      this.#opts.evict === 'none'
        ? -1
        : inClient
          ? this.#evictFrom(this.#clientSlots(client), now, stuck, walk)
          : this.#pickVictim(now, stuck, walk);
    if (victim >= 0) {
      waiter.victim = victim;
      waiter.victimOwner = Atomics.load(this.table.views.words, victim * SLOT_I32 + S_OWNER);
      this.#bound.set(victim, waiter);
      this.#count(waiter.victimOwner, 0, 0, 1);
      return;
    }
    clearTimeout(waiter.timer);
    this.#release(waiter);
    waiter.resolve(
      inClient
        ? this.#refuse('client_full', this.#retryAfter(this.#clientSlots(client), now, stuck))
        : this.#refuse('full', this.#fullRetryAfter(now, stuck, walk.busyUntil)),
    );
  }

  /**
   * Retry-After for a refusal at the global cap, without looking at every
   * slot: at once if a slot of a thread that can answer is closing; else the
   * soonest of the watchdog replacing a stuck thread that holds slots, the end
   * of a busy protection the victim search met (`busyUntil`), and the soonest
   * idle or lifetime deadline (the expiry index's top, brought up to date).
   * O(stuck threads) + amortised O(log n).
   */
  #fullRetryAfter(now: number, stuck: ReadonlyMap<number, number>, busyUntil: number): number {
    const stallMs = this.table.stallTimeoutMs;
    let soonest = busyUntil - now;
    let stuckClosing = 0;
    for (const [owner, silent] of stuck) {
      const counts = this.#owners.get(owner);
      if (!counts || counts.occupied === 0) continue;
      stuckClosing += counts.closing;
      // Nothing of a stuck thread frees up before the thread is replaced (if ever).
      if (stallMs > 0) soonest = Math.min(soonest, stallMs - silent);
    }
    if (Atomics.load(this.table.views.header, H_CLOSING) > stuckClosing) return MIN_RETRY_AFTER_MS;
    soonest = Math.min(soonest, this.#soonestExpiry(now) - now);
    if (!Number.isFinite(soonest)) return NO_DEADLINE_RETRY_MS;
    return Math.min(MAX_RETRY_MS, Math.max(MIN_RETRY_AFTER_MS, soonest));
  }

  /**
   * A lower bound on when the live slot can expire (idle or lifetime), from
   * its times now. Last-seen only moves later, so it stays a lower bound
   * whatever requests do next: a busy slot is not idle before its protection
   * ends, and a request ending later touches last-seen, so not before now +
   * idle either way.
   */
  #expiryKey(slot: number, now: number): number {
    const { idleTimeoutMs, maxLifetimeMs, busyTimeoutMs } = this.#opts;
    const times = this.table.views.times;
    const tbase = slot * SLOT_I64;
    let key =
      maxLifetimeMs > 0 ? Number(Atomics.load(times, tbase + T_CREATED)) + maxLifetimeMs : Number.POSITIVE_INFINITY;
    if (idleTimeoutMs > 0) {
      let idleAt = Number(Atomics.load(times, tbase + T_LAST_SEEN)) + idleTimeoutMs;
      if (wordInflight(Atomics.load(this.table.views.words, slot * SLOT_I32 + S_STATE)) > 0) {
        const busyEnds = Number(Atomics.load(times, tbase + T_BUSY_SINCE)) + busyTimeoutMs;
        idleAt = Math.min(Math.max(idleAt, busyEnds), now + idleTimeoutMs);
      }
      key = Math.min(key, idleAt);
    }
    return key;
  }

  /** The soonest idle or lifetime deadline of a live slot, or Infinity: the expiry index's top, brought up to date. */
  #soonestExpiry(now: number): number {
    const heap = this.#expiry;
    if (!heap) return Number.POSITIVE_INFINITY;
    for (let slot = heap.peek(); slot >= 0; slot = heap.peek()) {
      const key = this.#expiryKey(slot, now);
      if (key <= heap.key(slot)) return heap.key(slot);
      heap.set(slot, key);
    }
    return Number.POSITIVE_INFINITY;
  }

  /**
   * Expires every live slot whose deadline has come: pops the expiry index
   * while its top is due; a top that is not expired after all (its session
   * was active since) goes back with its new bound, always later than now.
   * O(log n) per slot expired or re-keyed; nothing else is looked at.
   */
  #expireDue(now: number): void {
    const heap = this.#expiry;
    if (!heap) return;
    const words = this.table.views.words;
    for (let slot = heap.peek(); slot >= 0 && heap.key(slot) <= now; slot = heap.peek()) {
      const word = Atomics.load(words, slot * SLOT_I32 + S_STATE);
      if (wordState(word) !== ST_LIVE) {
        heap.delete(slot);
        continue;
      }
      const expired = this.table.expiry(slot, word, now);
      // A successful close takes the slot out of the index.
      if (expired && this.#beginClose(slot, expired, now, expired === 'lifetime')) continue;
      // Not expired at `now` (times are whole ms): its deadline is at least now + 1.
      heap.set(slot, Math.max(now + 1, this.#expiryKey(slot, now)));
    }
  }

  /**
   * The soonest moment one of a client's `slots` could free up on its own: an
   * idle or lifetime deadline, a busy timeout ending, or the watchdog replacing
   * the stuck thread that owns it (`stuck`: threads and how long they have
   * been silent). O(slots), at most the client's cap.
   */
  #retryAfter(slots: Iterable<number>, now: number, stuck: ReadonlyMap<number, number>): number {
    const { words, times } = this.table.views;
    const { idleTimeoutMs, maxLifetimeMs, busyTimeoutMs } = this.#opts;
    const stallMs = this.table.stallTimeoutMs;
    let soonest = Number.POSITIVE_INFINITY;
    for (const slot of slots) {
      const word = Atomics.load(words, slot * SLOT_I32 + S_STATE);
      if (wordState(word) === ST_FREE) continue;
      const silent = stuck.get(Atomics.load(words, slot * SLOT_I32 + S_OWNER));
      if (silent !== undefined) {
        // Nothing of a stuck thread frees up before the thread is replaced (if ever).
        if (stallMs > 0) soonest = Math.min(soonest, stallMs - silent);
        continue;
      }
      if (wordState(word) === ST_CLOSING) return MIN_RETRY_AFTER_MS;
      if (wordState(word) !== ST_LIVE) continue;
      const tbase = slot * SLOT_I64;
      if (maxLifetimeMs > 0)
        soonest = Math.min(soonest, Number(Atomics.load(times, tbase + T_CREATED)) + maxLifetimeMs - now);
      if (wordInflight(word) > 0) {
        soonest = Math.min(soonest, Number(Atomics.load(times, tbase + T_BUSY_SINCE)) + busyTimeoutMs - now);
      } else if (idleTimeoutMs > 0) {
        soonest = Math.min(soonest, Number(Atomics.load(times, tbase + T_LAST_SEEN)) + idleTimeoutMs - now);
      }
    }
    if (!Number.isFinite(soonest)) return NO_DEADLINE_RETRY_MS;
    return Math.min(MAX_RETRY_MS, Math.max(MIN_RETRY_AFTER_MS, soonest));
  }

  /** The slot word of an id: the slot, with its owner's process index above it when ids carry one. */
  #idSlot(slot: number, owner: number): number {
    const tag = this.#idTag?.(owner) ?? 0;
    return (slot | (tag << SLOT_BITS)) >>> 0;
  }

  // ---- owners in other processes (ADR 20) ---------------------------------------

  /** An owner index given again (a process that connected after one that left): admissions from it count again. */
  reviveOwner(owner: number): void {
    this.#deadOwners.delete(owner);
  }

  /**
   * Takes over a session its owner still holds (a restarted authority
   * rebuilding its state): the slot must be free and of this table; it is
   * published live with the owner's times and linked last in creation order.
   * No rate token is spent (the window's history is lost with the authority
   * that had it). Returns false, changing nothing, when the slot cannot be
   * taken (taken already, out of range, or at capacity).
   */
  adopt(session: AdoptedSession): boolean {
    const { header, words, times } = this.table.views;
    const { slot, owner } = session;
    if (this.#shuttingDown || !Number.isInteger(slot) || slot < 0 || slot >= this.table.capacity) return false;
    const base = slot * SLOT_I32;
    if (wordState(Atomics.load(words, base + S_STATE)) !== ST_FREE) return false;
    if (Atomics.load(header, H_OCCUPIED) >= this.#opts.maxSessions) return false;
    // Out of the free list (doubly linked for this).
    const prev = Atomics.load(words, base + S_PREV);
    const next = Atomics.load(words, base + S_NEXT);
    if (prev >= 0) Atomics.store(words, prev * SLOT_I32 + S_NEXT, next);
    else Atomics.store(header, H_FREE_HEAD, next);
    if (next >= 0) Atomics.store(words, next * SLOT_I32 + S_PREV, prev);
    const gen = session.gen >>> 0 || 1;
    Atomics.store(words, base + S_GEN, gen | 0);
    for (let i = 0; i < 4; i++) Atomics.store(words, base + S_RAND + i, session.rand[i] ?? 0);
    Atomics.store(words, base + S_OWNER, owner);
    Atomics.store(words, base + S_REASON, -1);
    Atomics.store(words, base + S_CLIENT_HASH, session.binding?.[0] ?? 0);
    Atomics.store(words, base + S_CLIENT_HASH + 1, session.binding?.[1] ?? 0);
    const now = this.table.now();
    const tbase = slot * SLOT_I64;
    Atomics.store(times, tbase + T_CREATED, BigInt(now - session.createdAgoMs));
    Atomics.store(times, tbase + T_LAST_SEEN, BigInt(now - session.seenAgoMs));
    Atomics.store(times, tbase + T_BUSY_SINCE, BigInt(now - session.seenAgoMs));
    this.#linkTail(slot);
    let client: ClientEntry | undefined;
    if (this.#opts.perClient) {
      client = this.#obtainClient(session.clientKey);
      this.#clientCount(client, 1);
      this.#linkClient(client, slot);
    }
    this.#count(owner, 1, 0, 0);
    this.#expiry?.set(slot, this.#expiryKey(slot, now));
    this.#idlest?.set(slot, now - session.seenAgoMs);
    const id = formatSessionId(this.#idSlot(slot, owner), gen, session.rand);
    this.#meta[slot] = {
      id,
      clientKey: session.clientKey,
      rateToken: 0,
      clientToken: 0,
      client,
      closeRequested: false,
    };
    Atomics.add(header, H_OCCUPIED, 1);
    Atomics.add(header, H_LIVE, 1);
    Atomics.store(words, base + S_STATE, stateWord(gen, ST_LIVE, 0));
    return true;
  }

  /**
   * What an owner in another process saw of a live session: activity
   * `seenAgoMs` ago, and whether a request is in flight now. Last-seen only
   * moves later; a busy mark left by a veto is lifted when the owner says the
   * session is no longer busy. The indexes take the new times.
   */
  noteSeen(ref: SessionRef, seenAgoMs: number, busy: boolean): void {
    const { words, times } = this.table.views;
    const base = ref.slot * SLOT_I32;
    if (ref.slot < 0 || ref.slot >= this.table.capacity) return;
    const word = Atomics.load(words, base + S_STATE);
    if (wordState(word) !== ST_LIVE || Atomics.load(words, base + S_GEN) >>> 0 !== ref.gen >>> 0) return;
    const now = this.table.now();
    const tbase = ref.slot * SLOT_I64;
    const seen = Math.max(Number(Atomics.load(times, tbase + T_LAST_SEEN)), now - seenAgoMs);
    Atomics.store(times, tbase + T_LAST_SEEN, BigInt(seen));
    // Only this thread writes this table's state words (no request enters here).
    if (!busy && wordInflight(word) > 0) Atomics.store(words, base + S_STATE, stateWord(ref.gen, ST_LIVE, 0));
    this.#expiry?.set(ref.slot, this.#expiryKey(ref.slot, now));
    this.#idlest?.set(ref.slot, seen);
  }

  // ---- closing ---------------------------------------------------------------

  close(ref: SessionRef, reason: CloseReason): void {
    if (!this.table.occupies(ref)) return;
    this.#beginClose(ref.slot, reason, this.table.now(), true);
  }

  closed(ref: SessionRef, reason: CloseReason, options: { refund?: boolean } = {}): void {
    if (!this.table.occupies(ref)) return;
    const { words, header, header64 } = this.table.views;
    const base = ref.slot * SLOT_I32;
    const word = Atomics.load(words, base + S_STATE);
    const state = wordState(word);
    const recorded = Atomics.load(words, base + S_REASON);
    const finalReason: CloseReason =
      state === ST_CLOSING && recorded >= 0 ? (CLOSE_REASONS[recorded] ?? reason) : reason;
    const meta = this.#meta[ref.slot];
    const now = this.table.now();
    const createdAt = Number(Atomics.load(this.table.views.times, ref.slot * SLOT_I64 + T_CREATED));
    const owner = Atomics.load(words, base + S_OWNER);
    // Remembered for the 404 a later request with this id gets (before the slot can be reused).
    this.table.recordClose(ref, finalReason);
    // Free: bump the generation so the old id (and late leave()s) never match again.
    const gen = ((Atomics.load(words, base + S_GEN) >>> 0) + 1) >>> 0 || 1;
    Atomics.store(words, base + S_GEN, gen | 0);
    Atomics.store(words, base + S_STATE, stateWord(gen, ST_FREE, 0));
    Atomics.store(words, base + S_REASON, -1);
    if (state === ST_CLOSING) Atomics.sub(header, H_CLOSING, 1);
    else Atomics.sub(header, H_LIVE, 1);
    Atomics.sub(header, H_OCCUPIED, 1);
    this.#expiry?.delete(ref.slot);
    this.#idlest?.delete(ref.slot);
    this.#count(owner, -1, state === ST_CLOSING ? -1 : 0, 0);
    this.#unlink(ref.slot);
    this.#meta[ref.slot] = undefined;
    if (options.refund && meta?.rateToken) this.#rate?.refund(meta.rateToken);
    if (meta?.client) {
      if (options.refund && meta.clientToken) meta.client.rate?.refund(meta.clientToken);
      this.#unlinkClient(meta.client, ref.slot);
      this.#clientDone(meta.client);
    }
    Atomics.add(header64, B_CLOSED_TOTAL + CLOSE_REASONS.indexOf(finalReason), 1n);
    // The slot goes to the next waiting admission, or back to the free list.
    const freeHead = Atomics.load(header, H_FREE_HEAD);
    Atomics.store(words, base + S_NEXT, freeHead);
    Atomics.store(words, base + S_PREV, -1);
    if (freeHead >= 0) Atomics.store(words, freeHead * SLOT_I32 + S_PREV, ref.slot);
    Atomics.store(header, H_FREE_HEAD, ref.slot);
    if (meta) {
      this.#emit({
        type: 'closed',
        id: meta.id,
        clientKey: meta.clientKey,
        owner,
        reason: finalReason,
        durationMs: Math.max(0, now - createdAt),
        at: Date.now(),
      });
    }
    this.#grant(ref.slot);
    this.#empty.settled(Atomics.load(header, H_OCCUPIED) === 0);
  }

  ownerGone(owner: number): void {
    this.#deadOwners.add(owner);
    // Its queued admissions will never build a transport: refuse them and give their tokens back.
    for (const waiter of [...this.#waiters, ...this.#bound.values()]) {
      if (waiter.request.owner !== owner) continue;
      this.#unqueue(waiter);
      this.#release(waiter);
      waiter.resolve(this.#refuse('owner_gone', MIN_RETRY_AFTER_MS));
    }
    const { words } = this.table.views;
    for (let slot = 0; slot < this.table.capacity; slot++) {
      const base = slot * SLOT_I32;
      const word = Atomics.load(words, base + S_STATE);
      if (wordState(word) === ST_FREE || Atomics.load(words, base + S_OWNER) !== owner) continue;
      this.closed({ slot, gen: Atomics.load(words, base + S_GEN) >>> 0 }, 'error');
    }
    this.table.releaseLane(owner);
  }

  /**
   * Expires every session whose idle or lifetime deadline has passed (also
   * run from a timer). O(log n) per session expired or found active since its
   * deadline was indexed; sessions not yet due are not looked at.
   */
  sweep(): void {
    this.#expireDue(this.table.now());
  }

  // ---- clients (per-client limits), broker-only ---------------------------------

  /** The client's entry if it has one (never creates). */
  #peekClient(key: string): ClientEntry | undefined {
    return this.#clients.get(key) ?? this.#idleClients.get(key);
  }

  /**
   * The client's entry, made active. A new client takes a fresh entry; when the
   * table is full, the least recently used client holding nothing is recycled
   * (its rate history is lost; the global window still holds).
   */
  #obtainClient(key: string): ClientEntry {
    let entry = this.#clients.get(key);
    if (entry) return entry;
    entry = this.#idleClients.get(key);
    if (entry) {
      this.#idleClients.delete(key);
    } else {
      if (this.#clients.size + this.#idleClients.size >= this.#clientLimit) {
        const oldest = this.#idleClients.keys().next().value;
        if (oldest !== undefined) this.#idleClients.delete(oldest);
      }
      const rate = this.#opts.perClient?.rate;
      entry = {
        key,
        count: 0,
        head: -1,
        tail: -1,
        rate: rate ? new RateWindow(new Float64Array(rate.max), rate.windowMs) : undefined,
        seq: 0,
        heapIndex: -1,
      };
    }
    entry.seq = this.#clientSeq++;
    this.#clients.set(key, entry);
    return entry;
  }

  /** Adds to a client's count (sessions plus reservations) and keeps its place among the heaviest. */
  #clientCount(entry: ClientEntry, delta: number): void {
    entry.count += delta;
    if (entry.count > 0) this.#heaviest.update(entry);
    else this.#heaviest.delete(entry);
  }

  /** One session (or reservation) of the client is gone; an entry holding nothing becomes idle. */
  #clientDone(entry: ClientEntry): void {
    this.#clientCount(entry, -1);
    if (entry.count > 0 || this.#clients.get(entry.key) !== entry) return;
    this.#clients.delete(entry.key);
    this.#idleClients.set(entry.key, entry);
  }

  #linkClient(entry: ClientEntry, slot: number): void {
    this.#clientPrev[slot] = entry.tail;
    this.#clientNext[slot] = -1;
    if (entry.tail >= 0) this.#clientNext[entry.tail] = slot;
    else entry.head = slot;
    entry.tail = slot;
  }

  #unlinkClient(entry: ClientEntry, slot: number): void {
    const prev = this.#clientPrev[slot] ?? -1;
    const next = this.#clientNext[slot] ?? -1;
    if (prev >= 0) this.#clientNext[prev] = next;
    else entry.head = next;
    if (next >= 0) this.#clientPrev[next] = prev;
    else entry.tail = prev;
    this.#clientPrev[slot] = -1;
    this.#clientNext[slot] = -1;
  }

  /** Clients with an entry (holding sessions or not), for tests and stats. */
  get clientEntries(): number {
    return this.#clients.size + this.#idleClients.size;
  }

  // ---- FIFO list (creation order), broker-only ---------------------------------

  #linkTail(slot: number): void {
    const { header, words } = this.table.views;
    const tail = Atomics.load(header, H_FIFO_TAIL);
    Atomics.store(words, slot * SLOT_I32 + S_PREV, tail);
    Atomics.store(words, slot * SLOT_I32 + S_NEXT, -1);
    if (tail >= 0) Atomics.store(words, tail * SLOT_I32 + S_NEXT, slot);
    else Atomics.store(header, H_FIFO_HEAD, slot);
    Atomics.store(header, H_FIFO_TAIL, slot);
    Atomics.add(header, H_FIFO_LENGTH, 1);
  }

  #unlink(slot: number): void {
    const { header, words } = this.table.views;
    const prev = Atomics.load(words, slot * SLOT_I32 + S_PREV);
    const next = Atomics.load(words, slot * SLOT_I32 + S_NEXT);
    if (prev >= 0) Atomics.store(words, prev * SLOT_I32 + S_NEXT, next);
    else Atomics.store(header, H_FIFO_HEAD, next);
    if (next >= 0) Atomics.store(words, next * SLOT_I32 + S_PREV, prev);
    else Atomics.store(header, H_FIFO_TAIL, prev);
    Atomics.store(words, slot * SLOT_I32 + S_PREV, -1);
    Atomics.store(words, slot * SLOT_I32 + S_NEXT, -1);
    Atomics.sub(header, H_FIFO_LENGTH, 1);
  }

  // ---- stats and shutdown -----------------------------------------------------

  stats(): BrokerStats {
    const { header, header64 } = this.table.views;
    const { closedTotal, rejectedTotal } = this.table.totals();
    return {
      occupied: Atomics.load(header, H_OCCUPIED),
      live: Atomics.load(header, H_LIVE),
      closing: Atomics.load(header, H_CLOSING),
      transportsByThread: this.table.transportsByThread(),
      transports: this.table.transports(),
      fifoLength: Atomics.load(header, H_FIFO_LENGTH),
      waiting: this.#waiters.length + this.#bound.size,
      createdTotal: Number(Atomics.load(header64, B_CREATED_TOTAL)),
      closedTotal,
      rejectedTotal,
      rateWindowCount: this.#rate?.countAt(this.table.now()) ?? 0,
    };
  }

  async shutdown(timeoutMs: number): Promise<void> {
    this.#shuttingDown = true;
    if (this.#sweepTimer) clearInterval(this.#sweepTimer);
    for (const waiter of [...this.#waiters, ...this.#bound.values()]) {
      this.#unqueue(waiter);
      this.#release(waiter);
      waiter.resolve(this.#refuse('shutting_down', MIN_RETRY_AFTER_MS));
    }
    const now = this.table.now();
    const { words, header } = this.table.views;
    for (let slot = 0; slot < this.table.capacity; slot++) {
      const word = Atomics.load(words, slot * SLOT_I32 + S_STATE);
      if (wordState(word) === ST_LIVE) this.#beginClose(slot, 'shutdown', now, true);
      else if (wordState(word) === ST_CLOSING && !this.#meta[slot]?.closeRequested) {
        this.#askOwner(slot, Atomics.load(words, slot * SLOT_I32 + S_GEN) >>> 0, 'shutdown');
      }
    }
    if (Atomics.load(header, H_OCCUPIED) > 0) await this.#empty.wait(timeoutMs);
  }
}

/** The store module's factory (the default store): the strict in-memory store over a shared table. */
export const createStore: StoreFactory = (context) =>
  new MemoryStore({
    admission: context.admission,
    lanes: context.lanes,
    manualClock: context.manualClock,
    stallTimeoutMs: context.stallTimeoutMs,
    closer: context.closer,
    onEvent: context.onEvent,
    ...(context.now ? { now: context.now } : {}),
  });
