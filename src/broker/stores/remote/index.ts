/**
 * The store of a process under a host's admission authority (ADR 20). It
 * runs in the process's broker worker and keeps the process's own session
 * index: the sessions this process owns, in the slots the authority assigned
 * (ids carry the process's index in their top 8 bits). Requests to them are
 * validated, entered and touched there, as with the memory store; only an
 * admission, a close, and the closes the authority asks for cross to it.
 *
 * Faults: with the authority unreachable, admissions are refused
 * (`unavailable`, 503 + Retry-After: never admitted without it) while the
 * sessions this process owns keep being served and expire here; the store
 * reconnects with backoff and re-registers what it owns.
 */

import { BrokerError } from '../../../shared/errors.js';
import {
  B_CLOSED_TOTAL,
  B_REJECTED_TOTAL,
  H_CLOSING,
  H_LIVE,
  H_OCCUPIED,
  S_CLIENT_HASH,
  S_GEN,
  S_OWNER,
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
import { unresponsiveAfterMs } from '../../options.js';
import {
  type AuthorityMessage,
  MAX_FRAME_BYTES,
  type ProcessMessage,
  type RegisteredSession,
} from '../../remote/protocol.js';
import type { RouteInfo, SessionCloser, SessionStore, StoreContext, StoreFactory } from '../../store.js';
import { EmptyWait, emitLater } from '../common.js';
import type { AuthorityLink, Welcome } from './link.js';
import { SocketLink } from './socket-link.js';

/** What the remote store is configured with (`StoreContext.storeOptions`). */
export interface RemoteStoreOptions {
  /** The authority: a unix socket path, or `HOST:PORT` on TCP. */
  readonly address: string;
  /** The authority's shared secret (required on TCP). */
  readonly secret?: string;
  /** How long to wait for the authority at start, ms. @default 5_000 */
  readonly connectTimeoutMs?: number;
}

/** Reconnect backoff bounds, ms. */
const RETRY_MIN_MS = 100;
const RETRY_MAX_MS = 1_000;
/** How often sessions are expired here while the authority is unreachable, ms. */
const LOCAL_SWEEP_MS = 1_000;
/** Admissions waiting for the authority's answer, beyond which new ones are refused (a bound, far above use). */
const MAX_PENDING_ADMITS = 65_536;
/** How often sessions a veto marked busy are checked for their request's end, ms. */
const BUSY_CHECK_MS = 50;
/** How often activity is reported to the authority (sessions active since the last report), ms. */
const SEEN_REPORT_MS = 1_000;

interface Meta {
  readonly id: string;
  readonly clientKey: string;
  readonly binding: readonly [number, number] | undefined;
}

interface PendingAdmit {
  readonly request: AdmitRequest;
  readonly resolve: (decision: Decision) => void;
}

export class RemoteStore implements SessionStore {
  readonly #context: StoreContext;
  readonly #closer: SessionCloser;
  #table!: SessionTable;
  #routing!: RouteInfo;
  #meta: Array<Meta | undefined> = [];
  readonly #link: AuthorityLink;
  #connected = false;
  #shuttingDown = false;
  #seq = 0;
  readonly #admits = new Map<number, PendingAdmit>();
  readonly #statsWaits = new Map<number, (stats: Record<string, number> | undefined) => void>();
  /** Threads known to be gone: an admission from one is refused, one admitted for it is closed. */
  readonly #deadOwners = new Set<number>();
  #retryMs = RETRY_MIN_MS;
  #retryTimer: NodeJS.Timeout | undefined;
  readonly #sweepTimer: NodeJS.Timeout;
  readonly #empty = new EmptyWait();
  /** Slots whose eviction was vetoed as busy: the authority is told when their request ends. */
  readonly #vetoedBusy = new Set<number>();
  /** Per slot, the last-seen time last reported to the authority. */
  #reported = new Float64Array(0);
  #reportTimer: NodeJS.Timeout | undefined;
  #ticks = 0;
  #log: (line: string) => void = (line) => console.error(line);

  /** Connects to the authority through `link` (by default, the socket named in `storeOptions`). */
  static async connect(context: StoreContext, link?: AuthorityLink, connectTimeoutMs?: number): Promise<RemoteStore> {
    let chosen = link;
    let timeoutMs = connectTimeoutMs;
    if (!chosen) {
      const options = context.storeOptions as RemoteStoreOptions | undefined;
      if (!options || typeof options.address !== 'string' || options.address.length === 0) {
        throw new TypeError('the remote store needs storeOptions.address (the authority socket or HOST:PORT)');
      }
      chosen = new SocketLink(options.address, options.secret);
      timeoutMs ??= options.connectTimeoutMs;
    }
    const store = new RemoteStore(context, chosen);
    await store.#start(timeoutMs ?? 5_000);
    return store;
  }

  private constructor(context: StoreContext, link: AuthorityLink) {
    this.#link = link;
    this.#context = context;
    this.#closer = context.closer;
    // While connected the authority sweeps on its own timer.
    this.#sweepTimer = setInterval(() => {
      if (!this.#connected) this.sweep();
    }, LOCAL_SWEEP_MS);
    this.#sweepTimer.unref();
  }

  get index(): IndexDescriptor {
    return this.#table.descriptor;
  }

  get routing(): RouteInfo {
    return this.#routing;
  }

  /** The URL of another host's private route, where the link knows it (Redis). */
  async peer(process: number): Promise<string | undefined> {
    return this.#link.peer?.(process);
  }

  /** The process's own table (tests). */
  get table(): SessionTable {
    return this.#table;
  }

  /** Whether the authority is reachable now. */
  get connected(): boolean {
    return this.#connected;
  }

  // ---- connection ---------------------------------------------------------------

  async #start(timeoutMs: number): Promise<void> {
    try {
      const welcome = await this.#open(undefined, timeoutMs);
      const table = SessionTable.create({
        capacity: welcome.capacity,
        lanes: this.#context.lanes,
        rateMax: 0,
        idleTimeoutMs: welcome.idleTimeoutMs,
        maxLifetimeMs: welcome.maxLifetimeMs,
        busyTimeoutMs: welcome.busyTimeoutMs,
        manualClock: this.#context.manualClock,
        stallTimeoutMs: this.#context.stallTimeoutMs,
        unresponsiveMs: unresponsiveAfterMs(this.#context.stallTimeoutMs),
        processTag: welcome.process,
      });
      const now = this.#context.now;
      this.#table = now ? new SessionTable(table.buffer, now) : table;
      this.#meta = new Array(welcome.capacity);
      this.#reported = new Float64Array(welcome.capacity);
      this.#reportTimer = setInterval(() => this.#report(), BUSY_CHECK_MS);
      this.#reportTimer.unref();
      this.#routing = {
        process: welcome.process,
        routes: welcome.routes,
        secret: welcome.routeSecret,
        ...(this.#link.listen ? { listen: this.#link.listen } : {}),
      };
    } catch (cause) {
      clearInterval(this.#sweepTimer);
      clearInterval(this.#reportTimer);
      await this.#link.close().catch(() => undefined);
      const why = cause instanceof Error ? cause.message : String(cause);
      throw new BrokerError('ERR_BROKER_START', `cannot reach ${this.#link.label}: ${why}`, {
        cause,
      });
    }
  }

  /** Connects through the link and says hello; messages after the welcome come to `#receive`. */
  #open(want: number | undefined, timeoutMs: number): Promise<Welcome> {
    return this.#link.open(want, timeoutMs, {
      receive: (message) => this.#receive(message),
      lost: () => this.#lost(),
      welcomed: () => {
        this.#connected = true;
        this.#retryMs = RETRY_MIN_MS;
      },
      owned: (from, limit) => this.#owned(true, from, limit),
      log: (line) => this.#log(line),
    });
  }

  /** The authority is gone: fail closed, end every wait, and try again with backoff. */
  #lost(): void {
    if (!this.#connected) return;
    this.#connected = false;
    for (const [seq, pending] of this.#admits) {
      this.#admits.delete(seq);
      pending.resolve(this.#refuse('unavailable', this.#retryMs));
    }
    for (const [seq, wait] of this.#statsWaits) {
      this.#statsWaits.delete(seq);
      wait(undefined);
    }
    if (this.#shuttingDown) return;
    this.#log(`[mcp-session-broker] lost ${this.#link.label}: new sessions are refused until it is back`);
    this.#scheduleReconnect();
  }

  #scheduleReconnect(): void {
    clearTimeout(this.#retryTimer);
    this.#retryTimer = setTimeout(() => void this.#reconnect(), this.#retryMs);
    this.#retryTimer.unref();
    this.#retryMs = Math.min(RETRY_MAX_MS, this.#retryMs * 2);
  }

  async #reconnect(): Promise<void> {
    if (this.#shuttingDown || this.#connected) return;
    let welcome: Welcome;
    try {
      welcome = await this.#open(this.#routing.process, 5_000);
    } catch (error) {
      if ((error as { fatal?: boolean }).fatal) {
        this.#log(
          `[mcp-session-broker] ${(error as Error).message}: this process cannot go on under ${this.#link.label}; restart it`,
        );
        this.#shuttingDown = true;
        return;
      }
      this.#scheduleReconnect();
      return;
    }
    if (welcome.process !== this.#routing.process || welcome.capacity !== this.#table.capacity) {
      // Ids carry the process index, and the index is sized by the capacity: neither can change under them.
      this.#log(
        `[mcp-session-broker] the session authority gave process index ${welcome.process} (was ${this.#routing.process}) and capacity ${welcome.capacity} (was ${this.#table.capacity}): this process cannot go on under it; restart it`,
      );
      // Shutting down first: ending the link reports it lost, which must not reconnect.
      this.#shuttingDown = true;
      this.#link.end();
      return;
    }
    this.#routing = { ...this.#routing, routes: welcome.routes, secret: welcome.routeSecret };
    this.#log(`[mcp-session-broker] reconnected to ${this.#link.label}: re-registering sessions`);
    this.#register();
  }

  /** Tells a (restarted) authority every live session this process owns, in frames under the size bound. */
  #register(): void {
    let batch: RegisteredSession[] = [];
    let bytes = 0;
    const flush = () => {
      if (batch.length > 0) this.#send({ type: 'register', sessions: batch });
      batch = [];
      bytes = 0;
    };
    for (const session of this.#owned()) {
      const size = JSON.stringify(session).length + 1;
      if (batch.length >= 256 || bytes + size > MAX_FRAME_BYTES - 1024) flush();
      batch.push(session);
      bytes += size;
    }
    flush();
  }

  /**
   * Every live session this process owns, as a (restarted) authority is
   * told; with `closing`, those still closing here too (a reconcile must not
   * free a slot whose transport is not closed yet). From slot `from`, at
   * most `limit` of them. O(the slots walked).
   */
  #owned(closing = false, from = 0, limit = Number.POSITIVE_INFINITY): RegisteredSession[] {
    const { words, times } = this.#table.views;
    const now = this.#table.now();
    const sessions: RegisteredSession[] = [];
    for (let slot = from; slot < this.#table.capacity && sessions.length < limit; slot++) {
      const base = slot * SLOT_I32;
      const state = wordState(Atomics.load(words, base + S_STATE));
      if (state !== ST_LIVE && !(closing && state === ST_CLOSING)) continue;
      const meta = this.#meta[slot];
      if (!meta) continue;
      const tbase = slot * SLOT_I64;
      sessions.push({
        slot,
        gen: Atomics.load(words, base + S_GEN) >>> 0,
        rand: [
          Atomics.load(words, base + S_RAND),
          Atomics.load(words, base + S_RAND + 1),
          Atomics.load(words, base + S_RAND + 2),
          Atomics.load(words, base + S_RAND + 3),
        ],
        clientKey: meta.clientKey,
        createdAgoMs: Math.max(0, now - Number(Atomics.load(times, tbase + T_CREATED))),
        seenAgoMs: Math.max(0, now - Number(Atomics.load(times, tbase + T_LAST_SEEN))),
        ...(meta.binding ? { binding: meta.binding } : {}),
      });
    }
    return sessions;
  }

  #send(message: ProcessMessage): void {
    if (this.#connected) this.#link.send(message);
  }

  #receive(message: AuthorityMessage): void {
    switch (message.type) {
      case 'admitted':
        this.#admitted(message);
        return;
      case 'refused': {
        const pending = this.#admits.get(message.seq);
        if (!pending) return;
        this.#admits.delete(message.seq);
        pending.resolve({ ok: false, reason: message.reason, retryAfterMs: message.retryAfterMs });
        return;
      }
      case 'close':
        this.#closeAsked(message);
        return;
      case 'stats-result': {
        const wait = this.#statsWaits.get(message.seq);
        this.#statsWaits.delete(message.seq);
        wait?.(message.stats as Record<string, number>);
        return;
      }
      default:
        this.#log(`[mcp-session-broker] the session authority sent ${message.type}: dropping the connection`);
        this.#link.end();
    }
  }

  /**
   * Tells the authority what it cannot see: every 50 ms, which sessions it
   * holds as busy (after a veto) have ended their request; every second,
   * which sessions were active since the last report (for idle and idlest).
   * O(vetoed) per tick, O(capacity) per second.
   */
  #report(): void {
    if (!this.#connected) return;
    const { words, times } = this.#table.views;
    const now = this.#table.now();
    const entries: [number, number, number, 0 | 1][] = [];
    const flush = () => {
      if (entries.length > 0) this.#send({ type: 'seen', entries: entries.splice(0) });
    };
    const add = (slot: number, gen: number, seen: number, busy: boolean) => {
      entries.push([slot, gen, Math.max(0, now - seen), busy ? 1 : 0]);
      this.#reported[slot] = seen;
      if (entries.length >= 256) flush();
    };
    for (const slot of this.#vetoedBusy) {
      const base = slot * SLOT_I32;
      const word = Atomics.load(words, base + S_STATE);
      if (wordState(word) !== ST_LIVE) {
        this.#vetoedBusy.delete(slot);
        continue;
      }
      if (this.#table.isProtected(slot, word, now)) continue;
      this.#vetoedBusy.delete(slot);
      add(
        slot,
        Atomics.load(words, base + S_GEN) >>> 0,
        Number(Atomics.load(times, slot * SLOT_I64 + T_LAST_SEEN)),
        false,
      );
    }
    if (++this.#ticks % (SEEN_REPORT_MS / BUSY_CHECK_MS) === 0) {
      for (let slot = 0; slot < this.#table.capacity; slot++) {
        const base = slot * SLOT_I32;
        const word = Atomics.load(words, base + S_STATE);
        if (wordState(word) !== ST_LIVE) continue;
        const seen = Number(Atomics.load(times, slot * SLOT_I64 + T_LAST_SEEN));
        if (seen <= (this.#reported[slot] ?? 0)) continue;
        add(slot, Atomics.load(words, base + S_GEN) >>> 0, seen, this.#table.isProtected(slot, word, now));
      }
    }
    flush();
  }

  // ---- admission ----------------------------------------------------------------

  admit(request: AdmitRequest): Promise<Decision> {
    if (this.#shuttingDown) return Promise.resolve(this.#refuse('shutting_down', MIN_RETRY_AFTER_MS));
    if (this.#deadOwners.has(request.owner)) return Promise.resolve(this.#refuse('owner_gone', MIN_RETRY_AFTER_MS));
    if (!this.#connected) return Promise.resolve(this.#refuse('unavailable', this.#retryMs));
    if (this.#admits.size >= MAX_PENDING_ADMITS)
      return Promise.resolve(this.#refuse('unavailable', MIN_RETRY_AFTER_MS));
    const seq = ++this.#seq;
    return new Promise((resolve) => {
      this.#admits.set(seq, { request, resolve });
      this.#send({
        type: 'admit',
        seq,
        clientKey: request.clientKey,
        owner: request.owner,
        ...(request.binding ? { binding: request.binding } : {}),
      });
    });
  }

  /** The authority gave a slot: publish it live here, holding its initialize request. */
  #admitted(message: Extract<AuthorityMessage, { type: 'admitted' }>): void {
    const pending = this.#admits.get(message.seq);
    const ref = { slot: message.slot, gen: message.gen };
    if (!pending || message.slot >= this.#table.capacity) {
      // Nobody waits for it here (the wait ended with the connection): give it back.
      this.#send({ type: 'closed', ...ref, reason: 'error', refund: true });
      return;
    }
    this.#admits.delete(message.seq);
    const { request } = pending;
    if (this.#deadOwners.has(request.owner) || this.#shuttingDown) {
      this.#send({ type: 'closed', ...ref, reason: 'error', refund: true });
      pending.resolve(this.#refuse(this.#shuttingDown ? 'shutting_down' : 'owner_gone', MIN_RETRY_AFTER_MS));
      return;
    }
    const { header, words, times } = this.#table.views;
    const base = message.slot * SLOT_I32;
    if (wordState(Atomics.load(words, base + S_STATE)) !== ST_FREE) {
      // Held here still (a close not yet confirmed by a previous authority): cannot be two sessions.
      this.#send({ type: 'closed', ...ref, reason: 'error', refund: true });
      pending.resolve(this.#refuse('unavailable', MIN_RETRY_AFTER_MS));
      return;
    }
    const now = this.#table.now();
    Atomics.store(words, base + S_GEN, message.gen | 0);
    for (let i = 0; i < 4; i++) Atomics.store(words, base + S_RAND + i, message.rand[i] ?? 0);
    Atomics.store(words, base + S_OWNER, request.owner);
    Atomics.store(words, base + S_REASON, -1);
    Atomics.store(words, base + S_CLIENT_HASH, request.binding?.[0] ?? 0);
    Atomics.store(words, base + S_CLIENT_HASH + 1, request.binding?.[1] ?? 0);
    const tbase = message.slot * SLOT_I64;
    const stamp = BigInt(now);
    Atomics.store(times, tbase + T_CREATED, stamp);
    Atomics.store(times, tbase + T_LAST_SEEN, stamp);
    Atomics.store(times, tbase + T_BUSY_SINCE, stamp);
    const id = formatSessionId((message.slot | (this.#routing.process << SLOT_BITS)) >>> 0, message.gen, message.rand);
    this.#meta[message.slot] = { id, clientKey: request.clientKey, binding: request.binding };
    this.#reported[message.slot] = now;
    Atomics.add(header, H_OCCUPIED, 1);
    Atomics.add(header, H_LIVE, 1);
    // Publish last: readers load STATE first.
    Atomics.store(words, base + S_STATE, stateWord(message.gen, ST_LIVE, 1));
    this.#emit({ type: 'created', id, clientKey: request.clientKey, owner: request.owner, at: Date.now() });
    pending.resolve({ ok: true, id, slot: message.slot, gen: message.gen });
  }

  #refuse(reason: RejectReason, retryAfterMs: number): Refused {
    // Counted here only for what this process decides alone; the authority counts the rest.
    if (reason === 'unavailable' || reason === 'shutting_down' || reason === 'owner_gone') {
      Atomics.add(this.#table.views.header64, B_REJECTED_TOTAL + REJECT_REASONS.indexOf(reason), 1n);
    }
    return { ok: false, reason, retryAfterMs: Math.max(MIN_RETRY_AFTER_MS, Math.ceil(retryAfterMs)) };
  }

  // ---- closing ------------------------------------------------------------------

  /**
   * The authority asks for a close. Forced reasons (lifetime, shutdown, ...)
   * close at once; eviction and idle expiry only what this process, which
   * sees the requests, agrees is evictable or idle: else a veto says why.
   */
  #closeAsked(message: Extract<AuthorityMessage, { type: 'close' }>): void {
    const ref = { slot: message.slot, gen: message.gen };
    if (message.slot >= this.#table.capacity) return;
    const { words, times } = this.#table.views;
    const base = ref.slot * SLOT_I32;
    const index = base + S_STATE;
    for (;;) {
      const word = Atomics.load(words, index);
      const ours = Atomics.load(words, base + S_GEN) >>> 0 === ref.gen >>> 0;
      if (!ours || wordState(word) === ST_FREE) {
        // Already gone here: the authority frees it too.
        this.#send({ type: 'closed', ...ref, reason: message.reason });
        return;
      }
      if (wordState(word) === ST_CLOSING) return; // its `closed` follows
      const now = this.#table.now();
      const forced = message.reason !== 'evicted' && message.reason !== 'idle';
      if (!forced) {
        const tbase = ref.slot * SLOT_I64;
        const seenAgoMs = Math.max(0, now - Number(Atomics.load(times, tbase + T_LAST_SEEN)));
        const owner = Atomics.load(words, base + S_OWNER);
        const stuck = this.#table.unresponsiveThreads().has(owner);
        const busy = this.#table.isProtected(ref.slot, word, now);
        const active =
          (message.reason === 'idle' && this.#table.expiry(ref.slot, word, now) === undefined) ||
          (message.seenAgoMs !== undefined && seenAgoMs < message.seenAgoMs);
        if (busy || stuck || active) {
          const busyForMs = busy
            ? Math.max(0, now - Number(Atomics.load(times, tbase + T_BUSY_SINCE)))
            : stuck
              ? 0
              : undefined;
          this.#send({ type: 'veto', ...ref, seenAgoMs, ...(busyForMs === undefined ? {} : { busyForMs }) });
          if (busyForMs !== undefined) this.#vetoedBusy.add(ref.slot);
          this.#reported[ref.slot] = now - seenAgoMs;
          return;
        }
      }
      const next = stateWord(ref.gen, ST_CLOSING, wordInflight(word));
      if (Atomics.compareExchange(words, index, word, next) !== word) continue;
      this.#closing(ref, message.reason);
      return;
    }
  }

  /** Bookkeeping once a slot moved to closing here; then the owner thread closes the transport. */
  #closing(ref: SessionRef, reason: CloseReason): void {
    const { words, header } = this.#table.views;
    Atomics.store(words, ref.slot * SLOT_I32 + S_REASON, CLOSE_REASONS.indexOf(reason));
    Atomics.sub(header, H_LIVE, 1);
    Atomics.add(header, H_CLOSING, 1);
    const owner = Atomics.load(words, ref.slot * SLOT_I32 + S_OWNER);
    this.#closer(owner, ref, reason).then(
      () => this.closed(ref, reason),
      // The thread could not be reached: its death (ownerGone) frees the slot.
      () => undefined,
    );
  }

  close(ref: SessionRef, reason: CloseReason): void {
    if (!this.#table.occupies(ref)) return;
    const { words } = this.#table.views;
    const index = ref.slot * SLOT_I32 + S_STATE;
    for (;;) {
      const word = Atomics.load(words, index);
      if (wordState(word) !== ST_LIVE) return;
      if (Atomics.compareExchange(words, index, word, stateWord(ref.gen, ST_CLOSING, wordInflight(word))) === word) {
        this.#closing(ref, reason);
        return;
      }
    }
  }

  closed(ref: SessionRef, reason: CloseReason, options: { refund?: boolean } = {}): void {
    if (!this.#table.occupies(ref)) return;
    const { words, header, header64, times } = this.#table.views;
    const base = ref.slot * SLOT_I32;
    const state = wordState(Atomics.load(words, base + S_STATE));
    const recorded = Atomics.load(words, base + S_REASON);
    const finalReason: CloseReason =
      state === ST_CLOSING && recorded >= 0 ? (CLOSE_REASONS[recorded] ?? reason) : reason;
    const owner = Atomics.load(words, base + S_OWNER);
    const createdAt = Number(Atomics.load(times, ref.slot * SLOT_I64 + T_CREATED));
    this.#table.recordClose(ref, finalReason);
    const gen = ((ref.gen >>> 0) + 1) >>> 0 || 1;
    Atomics.store(words, base + S_GEN, gen | 0);
    Atomics.store(words, base + S_STATE, stateWord(gen, ST_FREE, 0));
    Atomics.store(words, base + S_REASON, -1);
    if (state === ST_CLOSING) Atomics.sub(header, H_CLOSING, 1);
    else Atomics.sub(header, H_LIVE, 1);
    Atomics.sub(header, H_OCCUPIED, 1);
    Atomics.add(header64, B_CLOSED_TOTAL + CLOSE_REASONS.indexOf(finalReason), 1n);
    const meta = this.#meta[ref.slot];
    this.#meta[ref.slot] = undefined;
    this.#send({
      type: 'closed',
      slot: ref.slot,
      gen: ref.gen,
      reason: finalReason,
      ...(options.refund ? { refund: true } : {}),
    });
    if (meta) {
      this.#emit({
        type: 'closed',
        id: meta.id,
        clientKey: meta.clientKey,
        owner,
        reason: finalReason,
        durationMs: Math.max(0, this.#table.now() - createdAt),
        at: Date.now(),
      });
    }
    this.#empty.settled(Atomics.load(header, H_OCCUPIED) === 0);
  }

  ownerGone(owner: number): void {
    this.#deadOwners.add(owner);
    const { words } = this.#table.views;
    for (let slot = 0; slot < this.#table.capacity; slot++) {
      const base = slot * SLOT_I32;
      if (wordState(Atomics.load(words, base + S_STATE)) === ST_FREE) continue;
      if (Atomics.load(words, base + S_OWNER) !== owner) continue;
      this.closed({ slot, gen: Atomics.load(words, base + S_GEN) >>> 0 }, 'error');
    }
    this.#table.releaseLane(owner);
  }

  /**
   * Expires this process's sessions whose deadline passed. The authority
   * decides expiry while it is reachable (and this process confirms); this
   * runs on its own only while it is not, so sessions still end on time.
   * O(capacity).
   */
  sweep(): void {
    if (!this.#table) return;
    if (this.#connected) {
      this.#send({ type: 'sweep' });
      return;
    }
    const now = this.#table.now();
    const { words } = this.#table.views;
    for (let slot = 0; slot < this.#table.capacity; slot++) {
      const base = slot * SLOT_I32;
      const word = Atomics.load(words, base + S_STATE);
      if (wordState(word) !== ST_LIVE) continue;
      const expired = this.#table.expiry(slot, word, now);
      if (expired) this.close({ slot, gen: Atomics.load(words, base + S_GEN) >>> 0 }, expired);
    }
  }

  #emit(event: SessionEvent): void {
    emitLater(this.#context.onEvent, event);
  }

  // ---- stats and shutdown ---------------------------------------------------------

  /** The authority's counts (every process of the host), with this process's transports. */
  async stats(): Promise<BrokerStats> {
    const local = this.#localStats();
    if (!this.#connected) return local;
    const seq = ++this.#seq;
    const remote = await new Promise<Record<string, number> | undefined>((resolve) => {
      this.#statsWaits.set(seq, resolve);
      this.#send({ type: 'stats', seq });
    });
    // An authority that could not answer (Redis down mid-call) gives nothing: this process's own counts.
    if (!remote || remote.occupied === undefined) return local;
    const pick = (prefix: string, names: readonly string[], add: Record<string, number>) =>
      Object.fromEntries(names.map((n) => [n, (remote[`${prefix}.${n}`] ?? 0) + (add[n] ?? 0)]));
    return {
      occupied: remote.occupied ?? 0,
      live: remote.live ?? 0,
      closing: remote.closing ?? 0,
      transportsByThread: local.transportsByThread,
      transports: local.transports,
      fifoLength: remote.fifoLength ?? 0,
      waiting: (remote.waiting ?? 0) + this.#admits.size,
      createdTotal: remote.createdTotal ?? 0,
      closedTotal: pick('closedTotal', CLOSE_REASONS, {}) as BrokerStats['closedTotal'],
      // Refusals decided here (authority unreachable, shutting down, thread gone) add to the authority's.
      rejectedTotal: pick('rejectedTotal', REJECT_REASONS, local.rejectedTotal) as BrokerStats['rejectedTotal'],
      rateWindowCount: remote.rateWindowCount ?? 0,
    };
  }

  /** This process's own view: its sessions, and what it refused itself. */
  #localStats(): BrokerStats {
    const header = this.#table.views.header;
    return {
      ...this.#table.totals(),
      occupied: Atomics.load(header, H_OCCUPIED),
      live: Atomics.load(header, H_LIVE),
      closing: Atomics.load(header, H_CLOSING),
      transportsByThread: this.#table.transportsByThread(),
      transports: this.#table.transports(),
      fifoLength: 0,
      waiting: this.#admits.size,
      createdTotal: 0,
      rateWindowCount: 0,
    };
  }

  /** Refuses new sessions, closes this process's own with reason `shutdown`, then leaves the authority. */
  async shutdown(timeoutMs: number): Promise<void> {
    this.#shuttingDown = true;
    clearInterval(this.#sweepTimer);
    clearInterval(this.#reportTimer);
    clearTimeout(this.#retryTimer);
    for (const [seq, pending] of this.#admits) {
      this.#admits.delete(seq);
      pending.resolve(this.#refuse('shutting_down', MIN_RETRY_AFTER_MS));
    }
    const { words, header } = this.#table.views;
    for (let slot = 0; slot < this.#table.capacity; slot++) {
      const base = slot * SLOT_I32;
      if (wordState(Atomics.load(words, base + S_STATE)) === ST_LIVE) {
        this.close({ slot, gen: Atomics.load(words, base + S_GEN) >>> 0 }, 'shutdown');
      }
    }
    if (Atomics.load(header, H_OCCUPIED) > 0) await this.#empty.wait(timeoutMs);
    // The closes reach the authority before the connection ends (they were sent first).
    await this.#link.close();
    this.#lost();
  }
}

/** The store module's factory: connects to the authority named in `storeOptions`. */
export const createStore: StoreFactory = (context) => RemoteStore.connect(context);
