/**
 * `SessionBroker`: the MCP endpoint with bounded sessions. It owns the broker
 * (a worker thread, or in-process with `threads: 0`), the handler threads, and
 * the request front of this thread (`front.ts`). With per-thread listeners
 * (`serve()` only) the handler threads run their own fronts, and this object
 * starts, drives and stops them.
 */
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { type BrokerHandle, type SessionIndex, startBroker, startInProcessBroker } from '../../broker/index.js';
import type { BrokerError } from '../../shared/errors.js';
import { LISTEN_STATUS } from '../../shared/messages.js';
import { ResumeBudget } from '../../shared/resume-budget.js';
import type { BrokerStats, SessionClosedEvent, SessionCreatedEvent, SessionEvent } from '../../shared/types.js';
import { bearerAuth } from './auth.js';
import { ClientKeys } from './clients.js';
import { type ConnectionCounters, FrontTally } from './connections.js';
import { type Dispatcher, LocalDispatcher, PoolDispatcher, type ThreadRestarts } from './dispatch.js';
import { Front, type FrontCounters } from './front.js';
import type { ListenerOptions } from './listener.js';
import {
  type ResolvedSessionBrokerOptions,
  resolveSessionBrokerOptions,
  type SessionBrokerOptions,
} from './options.js';
import type { OriginPolicy } from './origin.js';
import { PeerRouter, type PrivateListener } from './peers.js';

/** How long shutdown waits at least for ended streams to flush before destroying what is left. */
const SHUTDOWN_FLUSH_MS = 1_000;

export interface SessionBrokerEvents {
  created: [SessionCreatedEvent];
  closed: [SessionClosedEvent];
  /** A fatal fault (the broker worker died): the broker answers 503 from then on. */
  error: [BrokerError];
}

/**
 * Lanes in the index (per-thread counts and heartbeats): each handler thread
 * holds one, and as many again are free for replacements of threads that died
 * while their own lanes are still being reclaimed; the main thread alone needs one.
 */
function lanesFor(threads: number): number {
  return threads === 0 ? 1 : threads * 2 + 2;
}

/** `SessionBroker[START]`: the start from resolved options, for `serve()` in this folder only. */
export const START = Symbol('start');
/** `SessionBroker[THREADS_LISTEN]`: per-thread listeners, for `serve()` in this folder only. */
export const THREADS_LISTEN = Symbol('threads listen');

/** What `serve()` gives `SessionBroker[START]` for the handler threads to listen themselves. */
export interface ThreadListenParams {
  readonly listener: ListenerOptions;
  readonly maxConnections: number;
  /** The auth module every thread loads (a path), when auth is on. */
  readonly authModule: string | undefined;
}

/** Per-thread listeners, as `serve()` drives them once the broker is started. */
export interface ThreadsListen {
  /** Every thread listens on `port` (0: a free one); resolves with the port. Until `open`: 503 starting. */
  listen(port: number, host: string): Promise<number>;
  /** Every thread serves from now on, under `policy`. */
  open(policy: OriginPolicy): Promise<void>;
  /** Every thread stops accepting connections and closes its idle ones (the start of `served.close()`). */
  stop(): Promise<void>;
  /** The connection counts of every thread, summed. */
  connections(): ConnectionCounters;
  /** Where the threads' `/metrics` comes from. */
  renderMetrics: (() => Promise<{ contentType: string; text: string }>) | undefined;
}

/** The per-thread listeners' shared state, kept by main. */
interface Listening {
  readonly dispatcher: PoolDispatcher;
  readonly status: Int32Array;
  readonly tally: FrontTally;
  readonly maxConnections: number;
  renderMetrics: ThreadsListen['renderMetrics'];
}

export class SessionBroker extends EventEmitter<SessionBrokerEvents> {
  readonly #broker: BrokerHandle;
  readonly #dispatcher: Dispatcher;
  readonly #counters: FrontCounters = { queueFull: 0, clientAborts: 0, inFlightLimited: 0, handedOff: 0 };
  readonly #front: Front;
  #closing: Promise<void> | undefined;
  #failed: BrokerError | undefined;
  readonly #resumeBudget: ResumeBudget | undefined;
  /** Set when the handler threads listen themselves (`serve()` with per-thread listeners). */
  readonly #listening: Listening | undefined;
  /** Under a host's authority: routes to the other processes, and this one's private socket. */
  readonly #peers: PeerRouter | undefined;
  #private: PrivateListener | undefined;

  /** Starts the broker and its handler threads; resolves once every thread is ready. */
  static async create(options: SessionBrokerOptions): Promise<SessionBroker> {
    return SessionBroker[START](resolveSessionBrokerOptions(options));
  }

  /** Starts from options already validated (`serve()` validates once, before it listens). */
  static async [START](opts: ResolvedSessionBrokerOptions, listen?: ThreadListenParams): Promise<SessionBroker> {
    // Events reach the broker once it exists; none can fire before (no session exists yet).
    let self: SessionBroker | undefined;
    const onEvent = (event: SessionEvent) => {
      if (event.type === 'created') self?.emit('created', event);
      else self?.emit('closed', event);
    };
    const lanes = lanesFor(opts.threads);
    // One slot per lane: a replacement thread claims its own while a dead one's is reclaimed.
    const budget = opts.eventStore ? ResumeBudget.create(opts.eventStore.maxTotalBytes, lanes) : undefined;
    if (opts.threads === 0) {
      // Loaded here only: with handler threads this thread never runs the SDK's
      // server (its modules cost a few hundred ms of startup per thread).
      const { eventStoreFactory, loadFactory, SessionHost } = await import('../host/index.js');
      const factory = opts.factory ?? (await loadFactory(opts.module));
      let host: InstanceType<typeof SessionHost> | undefined;
      const broker = await startInProcessBroker({
        admission: opts.admission,
        lanes,
        manualClock: opts.manualClock,
        // No handler threads, no watchdog: a stuck tool stalls this very thread.
        stallTimeoutMs: 0,
        storeModule: opts.store,
        storeOptions: opts.storeOptions,
        onEvent,
        closer: (_owner, ref, reason) => (host ? host.close(ref, reason) : Promise.resolve()),
      });
      host = new SessionHost({
        factory,
        index: broker.index,
        broker: broker.api,
        threadId: 0,
        enableJsonResponse: opts.jsonResponse,
        factoryTimeoutMs: opts.factoryTimeoutMs,
        maxBufferedBytes: opts.streamLimits.maxBufferedBytes,
        ...eventStoreFactory(opts.eventStore, budget?.claim(0)),
        onError: (error) => console.error('[mcp-session-broker]', error),
      });
      self = new SessionBroker(opts, broker, new LocalDispatcher(host, opts.streamLimits), budget);
      await self.#listenPrivate();
      return self;
    }
    // Not awaited: the handler threads load their modules while the broker starts.
    const starting = startBroker({
      admission: opts.admission,
      lanes,
      manualClock: opts.manualClock,
      stallTimeoutMs: opts.stallTimeoutMs,
      storeModule: opts.store,
      storeOptions: opts.storeOptions,
      onEvent,
      onFailure: (error) => {
        if (!self) return;
        self.#failed = error;
        self.#setListenStatus();
        self.emit('error', error);
      },
    });
    starting.catch(() => undefined);
    let broker: BrokerHandle | undefined;
    const status = new Int32Array(new SharedArrayBuffer(4));
    // Sessions are bound to principals by a keyed hash: every thread that checks them uses this key.
    const bindingSecret = new Uint8Array(randomBytes(32));
    const tally = listen ? FrontTally.create(lanes) : undefined;
    let listening: Listening | undefined;
    let dispatcher: PoolDispatcher;
    try {
      dispatcher = await PoolDispatcher.start({
        broker: starting,
        threads: opts.threads,
        module: opts.module,
        enableJsonResponse: opts.jsonResponse,
        factoryTimeoutMs: opts.factoryTimeoutMs,
        streamLimits: opts.streamLimits,
        eventStore: opts.eventStore,
        resumeBytes: budget?.buffer,
        maxPendingPerThread: opts.maxPendingPerThread,
        stallTimeoutMs: opts.stallTimeoutMs,
        onThreadGone: (threadId, lane) => {
          // Its sessions are gone, and their events with them (and its connections).
          budget?.reclaim(threadId);
          if (lane >= 0) tally?.reclaim(lane);
          if (broker) void broker.api.ownerGone(threadId);
        },
        listen:
          listen && tally
            ? {
                listener: listen.listener,
                front: {
                  cors: opts.cors,
                  maxBodyBytes: opts.maxBodyBytes,
                  maxInFlightPerSession: opts.maxInFlightPerSession,
                },
                maxConnections: listen.maxConnections,
                trustProxy: opts.trustProxy,
                authModule: listen.authModule,
                bindingSecret,
                maxPendingPerThread: opts.maxPendingPerThread,
                status: status.buffer as SharedArrayBuffer,
                tally: tally.buffer,
              }
            : undefined,
        metrics: async () => {
          const render = listening?.renderMetrics;
          if (!render) throw new Error('metrics are not ready');
          return render();
        },
      });
      broker = await starting;
    } catch (error) {
      await starting.then(
        (started) => started.terminate(),
        () => undefined,
      );
      throw error;
    }
    if (listen && tally) {
      listening = { dispatcher, status, tally, maxConnections: listen.maxConnections, renderMetrics: undefined };
    }
    self = new SessionBroker(opts, broker, dispatcher, budget, listening);
    await self.#listenPrivate();
    return self;
  }

  /** Under a host's authority: accept requests other processes forward to this one's sessions. */
  async #listenPrivate(): Promise<void> {
    if (!this.#peers) return;
    try {
      this.#private = await this.#peers.listen((req, res) => void this.#front.handle(req, res, undefined, true));
    } catch (error) {
      await this.close({ timeoutMs: 0 });
      throw error;
    }
  }

  private constructor(
    opts: ResolvedSessionBrokerOptions,
    broker: BrokerHandle,
    dispatcher: Dispatcher,
    budget: ResumeBudget | undefined,
    listening?: Listening,
  ) {
    super();
    this.#listening = listening;
    this.#resumeBudget = budget;
    this.#broker = broker;
    this.#dispatcher = dispatcher;
    this.#peers = broker.routing ? new PeerRouter(broker.routing, (process) => broker.api.peer(process)) : undefined;
    this.#front = new Front({
      peers: this.#peers,
      opts,
      index: broker.index,
      dispatcher,
      clients: new ClientKeys({ trustProxy: opts.trustProxy, clientKey: opts.clientKey }),
      authenticate: opts.auth ? bearerAuth(opts.auth) : undefined,
      status: () => this.status,
      counters: this.#counters,
    });
  }

  /**
   * `open` while it admits sessions, `closing` once `close()` was called,
   * `failed` once the broker worker died (it answers 503 from then on).
   */
  get status(): 'open' | 'closing' | 'failed' {
    return this.#closing ? 'closing' : this.#failed ? 'failed' : 'open';
  }

  /** The shared session table (read-only use: lookups, transport counts). */
  get index(): SessionIndex {
    return this.#broker.index;
  }

  /**
   * This process's index under a host's authority (1..255: its sessions'
   * ids begin with it in two hex digits), or 0 when it decides alone.
   */
  get process(): number {
    return this.#peers?.process ?? 0;
  }

  /** Requests this process passed to the owner of their session in another process. */
  get forwarded(): number {
    return this.#peers?.forwarded ?? 0;
  }

  /** The handler threads' ids (`[0]` with `threads: 0`). */
  get threadIds(): readonly number[] {
    return this.#dispatcher.threadIds;
  }

  /** SDK transports alive right now across all threads, as the threads report them. */
  transports(): number {
    return this.#broker.index.transports();
  }

  /**
   * Bytes the resumability event stores of all sessions hold right now, across
   * threads (the JSON size of the stored messages); at most
   * `resumability.maxTotalBytes`, 0 with resumability off.
   */
  resumeBytes(): number {
    return this.#resumeBudget?.used ?? 0;
  }

  /** A snapshot of admission state and counters. */
  stats(): Promise<BrokerStats> {
    return this.#broker.api.stats();
  }

  /**
   * Handler threads lost and replaced since start: `stalled`, ended by the
   * watchdog (`stallTimeoutMs`); `died`, exited on their own (`process.exit`,
   * an uncaught exception).
   */
  get threadRestarts(): Readonly<ThreadRestarts> {
    return { ...this.#dispatcher.restarts };
  }

  /** Listener-side refusal counts (the broker's own are in `stats()`); with per-thread listeners, every thread's summed. */
  get frontCounters(): Readonly<FrontCounters> {
    return this.#listening ? this.#listening.tally.front() : this.#counters;
  }

  /** Per-thread listeners (undefined unless `serve()` started the broker with them). */
  get [THREADS_LISTEN](): ThreadsListen | undefined {
    const listening = this.#listening;
    if (!listening) return undefined;
    return {
      listen: (port, host) => listening.dispatcher.listen(port, host),
      open: async (policy) => {
        await listening.dispatcher.open(policy);
        this.#setListenStatus();
      },
      stop: () => listening.dispatcher.stopListening(),
      connections: () => listening.tally.connections(listening.maxConnections),
      set renderMetrics(render) {
        listening.renderMetrics = render;
      },
      get renderMetrics() {
        return listening.renderMetrics;
      },
    };
  }

  /** Tells listening threads what `status` says. */
  #setListenStatus(): void {
    if (!this.#listening) return;
    const status = this.status;
    Atomics.store(
      this.#listening.status,
      0,
      status === 'closing' ? LISTEN_STATUS.closing : status === 'failed' ? LISTEN_STATUS.failed : LISTEN_STATUS.open,
    );
  }

  /** The manual clock (only with `manualClock: true`): ms since the table's epoch, seen by every thread. */
  readonly clock = {
    now: (): number => this.#broker.index.now(),
    set: (ms: number): void => this.#broker.index.setManualNow(ms),
    advance: (ms: number): void => this.#broker.index.setManualNow(this.#broker.index.now() + ms),
  };

  /** Runs the idle/lifetime sweep now (it also runs on its own timer). */
  sweep(): Promise<void> {
    return this.#broker.api.sweep();
  }

  /**
   * Handles one request to the MCP endpoint (node:http or express). With a
   * body parser in front, pass its result as `parsedBody`.
   */
  handle(req: IncomingMessage, res: ServerResponse, parsedBody?: unknown): Promise<void> {
    return this.#front.handle(req, res, parsedBody);
  }

  /**
   * Graceful shutdown: refuses new requests (503), lets in-flight POSTs finish
   * for up to `timeoutMs`, closes every session with reason `shutdown`, and
   * stops the threads. Idempotent.
   */
  close(options: { timeoutMs?: number } = {}): Promise<void> {
    this.#closing ??= this.#shutdown(options.timeoutMs ?? 10_000);
    this.#setListenStatus();
    return this.#closing;
  }

  async #shutdown(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const listening = this.#listening;
    if (listening) await listening.dispatcher.drain(timeoutMs);
    else await this.#front.drain(timeoutMs);
    await this.#broker.api.shutdown(Math.max(100, deadline - Date.now())).catch(() => undefined);
    // Closed transports end their streams (GET included); let those ends reach the clients.
    const flushMs = Math.max(SHUTDOWN_FLUSH_MS, deadline - Date.now());
    if (listening) await listening.dispatcher.flush(flushMs);
    else await this.#front.flush(flushMs);
    this.#private?.close();
    this.#private?.destroy();
    this.#peers?.close();
    await this.#dispatcher.close();
    await this.#broker.terminate();
  }
}
