/**
 * Dispatchers hand a checked request to the thread that owns (or will own) its
 * session and give back the answer's head and a port carrying its body:
 * `PoolDispatcher` through a piscina pool of handler threads, routed to the
 * owner; `LocalDispatcher` to a session host on this thread (`threads: 0`).
 * The pool dispatcher also runs the watchdog (on the main thread): a handler
 * thread whose heartbeat is older than the stall timeout is terminated, and
 * piscina replaces it.
 */
import { availableParallelism } from 'node:os';
import { MessageChannel } from 'node:worker_threads';
import { expose, type Remote, transfer, wrap } from 'comlink';
import { Piscina } from 'piscina';
import type { BrokerHandle } from '../../broker/index.js';
import { Channel, type ChannelTask, localPair, type StreamPort } from '../../shared/channel.js';
import { deliver } from '../../shared/deliver.js';
import { BrokerError } from '../../shared/errors.js';
import {
  type HelloMessage,
  isHelloMessage,
  isLoadedMessage,
  type StreamLimits,
  type TaskResult,
  type WireRequest,
} from '../../shared/messages.js';
import type { EventStoreLimits } from '../../shared/resume-budget.js';
import { endpoint } from '../../shared/rpc.js';
import type { SessionRef } from '../../shared/types.js';
import type { SessionHost } from '../host/index.js';
import type { HandlerWorkerData, MainControl, ThreadControl, ThreadListenConfig } from '../thread/index.js';
import type { ClientIdentity } from './clients.js';
import type { OriginPolicy } from './origin.js';

/** A routed request's answer: its head, and the port its body (if any) arrives on. */
export type Routed = { readonly result: TaskResult; readonly port: StreamPort } | { readonly busy: true };

/** Handler threads lost and replaced, by why: the watchdog ended them (`stalled`), or they exited (`died`). */
export interface ThreadRestarts {
  stalled: number;
  died: number;
}

export interface Dispatcher {
  /** Threads that can own sessions (their threadIds). */
  readonly threadIds: readonly number[];
  readonly restarts: Readonly<ThreadRestarts>;
  initialize(client: ClientIdentity, request: WireRequest): Promise<Routed>;
  session(sessionId: string, ref: SessionRef, owner: number, request: WireRequest): Promise<Routed>;
  close(): Promise<void>;
}

export const defaultThreads = (): number => availableParallelism();

/** Requests handed to each thread and not yet answered (head not back), by thread id; no entry at 0. */
export class PendingCounts {
  readonly #counts = new Map<number, number>();

  of(threadId: number): number {
    return this.#counts.get(threadId) ?? 0;
  }

  add(threadId: number): void {
    this.#counts.set(threadId, this.of(threadId) + 1);
  }

  /** One answered; a thread already forgotten (gone) stays forgotten. */
  done(threadId: number): void {
    const left = this.#counts.get(threadId);
    if (left === undefined) return;
    if (left > 1) this.#counts.set(threadId, left - 1);
    else this.#counts.delete(threadId);
  }

  forget(threadId: number): void {
    this.#counts.delete(threadId);
  }
}

export interface PoolDispatcherOptions {
  /** The broker, starting: the handler threads load meanwhile and get its index once it has started. */
  readonly broker: Promise<BrokerHandle>;
  readonly threads: number;
  readonly module: string | undefined;
  readonly enableJsonResponse: boolean;
  readonly factoryTimeoutMs: number;
  readonly streamLimits: StreamLimits;
  readonly eventStore: EventStoreLimits | undefined;
  /** The buffer of the `ResumeBudget` shared by every handler thread's event stores. */
  readonly resumeBytes: SharedArrayBuffer | undefined;
  /** Tasks dispatched to one thread and not yet answered, beyond which requests get 503. */
  readonly maxPendingPerThread: number;
  /** A handler thread whose heartbeat is older than this (real ms) is terminated and replaced; 0 = never. */
  readonly stallTimeoutMs: number;
  /** A handler thread is gone, dead or ended by the watchdog (not at shutdown). */
  readonly onThreadGone: (threadId: number, lane: number) => void;
  /** Set when the handler threads listen on the port themselves (per-thread listeners). */
  readonly listen: ThreadListenConfig | undefined;
  /** Answers a listening thread's `/metrics`. */
  readonly metrics: MainControl['metrics'];
}

/** A live handler thread, as the dispatcher knows it. */
interface LiveThread {
  readonly channel: Channel;
  readonly lane: number;
  /** Its listener (per-thread listeners only). */
  readonly listener: Remote<ThreadControl> | undefined;
  /** Settles once the thread is gone or the pool closed: a call to its listener then never answers. */
  readonly left: Promise<void>;
  leave(): void;
}

/**
 * How long the watchdog waits for a terminated thread to exit before it frees
 * the thread's sessions anyway: termination stops its JavaScript for good, but
 * a thread blocked inside a native call exits only when that call returns.
 */
const TERMINATE_GRACE_MS = 1_000;

export class PoolDispatcher implements Dispatcher {
  readonly #pool: Piscina;
  readonly #opts: PoolDispatcherOptions;
  readonly #pending = new PendingCounts();
  /** Each live handler thread: its channel (requests go to it, answers come back on it). */
  readonly #live = new Map<number, LiveThread>();
  /** Per-thread listeners: where they listen, once they do (a replacement thread listens there too). */
  #listening: { readonly port: number; readonly host: string } | undefined;
  /** Per-thread listeners: the Host/Origin policy they serve under, once open (a replacement opens with it). */
  #policy: OriginPolicy | undefined;
  /** Threads the watchdog has terminated, until they are gone. */
  readonly #stalled = new Set<number>();
  readonly #restarts: ThreadRestarts = { stalled: 0, died: 0 };
  #watchdog: NodeJS.Timeout | undefined;
  #roundRobin = 0;
  #closing = false;

  /**
   * Starts the pool at once (its threads load their modules while the broker
   * starts) and resolves once every handler thread is connected to the broker.
   * If either fails, the pool is destroyed.
   */
  static async start(options: PoolDispatcherOptions): Promise<PoolDispatcher> {
    const dispatcher = new PoolDispatcher(options);
    try {
      dispatcher.#broker = await options.broker;
      if (options.stallTimeoutMs > 0) {
        // Checks as often as threads beat: a stall is acted on within one period of the timeout.
        dispatcher.#watchdog = setInterval(() => dispatcher.#watch(), dispatcher.#broker.index.heartbeatIntervalMs);
        dispatcher.#watchdog.unref();
      }
      await dispatcher.#ready;
    } catch (error) {
      dispatcher.#closing = true;
      if (dispatcher.#watchdog) clearInterval(dispatcher.#watchdog);
      await dispatcher.#pool.destroy().catch(() => undefined);
      throw error;
    }
    return dispatcher;
  }

  readonly #ready: Promise<void>;
  /** Set once the broker has started (before any thread is told the index). */
  #broker!: BrokerHandle;

  private constructor(options: PoolDispatcherOptions) {
    this.#opts = options;
    const workerData: HandlerWorkerData = {
      listen: options.listen,
      module: options.module,
      enableJsonResponse: options.enableJsonResponse,
      factoryTimeoutMs: options.factoryTimeoutMs,
      streamLimits: options.streamLimits,
      eventStore: options.eventStore,
      resumeBytes: options.resumeBytes,
    };
    this.#pool = new Piscina({
      filename: new URL('../thread/handler.js', import.meta.url).href,
      // Fixed size and never idle-reaped: a session lives in exactly one thread.
      // piscina starts the threads and replaces one that dies; requests do not
      // go through its task queue but over each thread's channel (ADR 17).
      minThreads: options.threads,
      maxThreads: options.threads,
      idleTimeout: Number.POSITIVE_INFINITY,
      // Idle handler threads hold sessions and SSE streams: they must never park in Atomics.wait.
      atomics: 'disabled',
      workerData,
    });
    let readyCount = 0;
    let resolveReady!: () => void;
    let rejectReady!: (error: Error) => void;
    this.#ready = new Promise<void>((resolve, reject) => {
      resolveReady = resolve;
      rejectReady = reject;
    });
    // Awaited by start() only once the broker has started: a failure before that is not unhandled.
    this.#ready.catch(() => undefined);
    this.#pool.on('message', (message: unknown) => {
      if (isLoadedMessage(message)) {
        // A thread has loaded: it gets the index once the broker has started (a failed start closes the port).
        options.broker.then(
          (broker) => message.setupPort.postMessage(broker.index.descriptor),
          () => message.setupPort.close(),
        );
        return;
      }
      if (!isHelloMessage(message)) return;
      const error = (message as { error?: string }).error;
      if (error) {
        rejectReady(new BrokerError('ERR_INVALID_MODULE', error));
        return;
      }
      const thread = this.#welcome(message);
      this.#broker
        .attach(message.threadId, message.brokerPort, message.controlPort)
        .then(() => {
          if (readyCount < options.threads) return;
          // A replacement thread (after the first ones were ready): it listens where the others do.
          return this.#listenAgain(message.threadId, thread);
        })
        .then(() => {
          readyCount++;
          if (readyCount === options.threads) resolveReady();
        }, rejectReady);
    });
    this.#pool.on('workerDestroy', () => {
      // piscina emits this before it drops the worker from `threads` (and a dead
      // worker's threadId may already read -1): find who is gone by difference,
      // once piscina is done. The broker also notices on its own, when the
      // thread's port closes.
      setImmediate(() => {
        const running = new Set(this.#pool.threads.map((t) => t.threadId).filter((id) => id >= 0));
        for (const id of [...this.#live.keys()]) if (!running.has(id)) this.#gone(id);
      });
    });
    this.#pool.on('error', (error: unknown) => {
      if (!this.#closing) console.error('[mcp-session-broker] handler pool error:', error);
    });
  }

  /**
   * A thread said hello: its channel, and with per-thread listeners its
   * listener, wired to every other live thread's by a channel of their own.
   */
  #welcome(message: HelloMessage): LiveThread {
    const listener = this.#opts.listen ? wrap<ThreadControl>(endpoint(message.listenerPort)) : undefined;
    if (listener) expose({ metrics: () => this.#opts.metrics() } satisfies MainControl, endpoint(message.mainPort));
    else {
      message.listenerPort.close();
      message.mainPort.close();
    }
    let leave!: () => void;
    const left = new Promise<void>((resolve) => {
      leave = resolve;
    });
    const thread: LiveThread = { channel: new Channel(message.requestPort), lane: message.lane, listener, left, leave };
    if (listener) {
      for (const [otherId, other] of this.#live) {
        if (!other.listener) continue;
        const { port1, port2 } = new MessageChannel();
        void listener.addPeer(otherId, transfer(port1, [port1])).catch(() => undefined);
        void other.listener.addPeer(message.threadId, transfer(port2, [port2])).catch(() => undefined);
      }
    }
    this.#live.set(message.threadId, thread);
    return thread;
  }

  /** A replacement thread listens and opens where the others do (if they already do). */
  async #listenAgain(threadId: number, thread: LiveThread): Promise<void> {
    const at = this.#listening;
    if (!thread.listener || !at) return;
    try {
      // Open first: the first connection it accepts is served (as with a known port at start).
      if (this.#policy) await thread.listener.open(this.#policy);
      await thread.listener.listen(at.port, at.host);
    } catch (error) {
      console.error(`[mcp-session-broker] handler thread ${threadId} cannot listen:`, error);
    }
  }

  /**
   * Per-thread listeners: every thread listens on `port` (0: the first one
   * picks a free port, the others join it); resolves with the port. They
   * answer 503 starting until `open`.
   */
  async listen(port: number, host: string): Promise<number> {
    const threads = [...this.#live.values()].filter((t) => t.listener);
    const [first, ...rest] = threads;
    if (!first?.listener) throw new BrokerError('ERR_LISTEN', 'no handler thread can listen');
    const bound = await first.listener.listen(port, host);
    this.#listening = { port: bound, host };
    await Promise.all(rest.map((t) => t.listener?.listen(bound, host)));
    return bound;
  }

  /** Per-thread listeners: every thread serves the MCP path from now on, under `policy`. */
  async open(policy: OriginPolicy): Promise<void> {
    // Known before or after listen(): serve() opens first for a known port, after for port 0.
    this.#policy = policy;
    await this.#everyListener((listener) => listener.open(policy));
  }

  /** Per-thread listeners: every thread stops accepting connections and closes its idle ones. */
  async stopListening(): Promise<void> {
    await this.#everyListener((listener) => listener.stop().catch(() => undefined));
  }

  /** Per-thread listeners: every thread lets its POSTs finish (up to `timeoutMs`). */
  async drain(timeoutMs: number): Promise<void> {
    await this.#everyListener((listener) => listener.drain(timeoutMs).catch(() => undefined));
  }

  /** Per-thread listeners: every thread lets its open responses end for up to `ms`, then closes its connections. */
  async flush(ms: number): Promise<void> {
    await this.#everyListener((listener) => listener.flush(ms).catch(() => undefined));
  }

  /**
   * Calls every live thread's listener. A call to a thread that goes (it died,
   * or the pool was closed meanwhile: a shutdown that runs while `serve()`
   * stops the listeners) ends when it does: a terminated thread never answers.
   */
  async #everyListener(call: (listener: Remote<ThreadControl>) => Promise<unknown>): Promise<void> {
    await Promise.all(
      [...this.#live.values()].map((t) => (t.listener ? Promise.race([call(t.listener), t.left]) : undefined)),
    );
  }

  get threadIds(): readonly number[] {
    return [...this.#live.keys()];
  }

  get restarts(): Readonly<ThreadRestarts> {
    return this.#restarts;
  }

  /** A handler thread is gone (it died, or the watchdog ended it): its sessions are freed. Idempotent. */
  #gone(threadId: number): void {
    const thread = this.#live.get(threadId);
    if (!thread) return;
    this.#live.delete(threadId);
    thread.leave();
    // Requests still waiting on it fail now ("Session closed: error"), if the port has not closed already.
    thread.channel.close();
    this.#pending.forget(threadId);
    if (this.#closing) return;
    // A thread the watchdog ended was counted when it was ended.
    if (!this.#stalled.delete(threadId)) this.#restarts.died++;
    this.#opts.onThreadGone(threadId, thread.lane);
  }

  /** The watchdog: terminates every thread whose heartbeat is older than the stall timeout. */
  #watch(): void {
    if (this.#closing) return;
    const table = this.#broker.index;
    for (const threadId of this.#live.keys()) {
      if (this.#stalled.has(threadId)) continue;
      const silentMs = table.heartbeatAge(threadId);
      if (silentMs === undefined || silentMs <= this.#opts.stallTimeoutMs) continue;
      void this.#replace(threadId, silentMs);
    }
  }

  async #replace(threadId: number, silentMs: number): Promise<void> {
    this.#stalled.add(threadId);
    this.#restarts.stalled++;
    console.error(
      `[mcp-session-broker] handler thread ${threadId} has not answered for ${silentMs} ms: terminating it (its sessions close with reason error)`,
    );
    // piscina sees the exit, rejects the thread's unanswered tasks (their requests
    // get "Session closed: error") and starts a replacement.
    const worker = this.#pool.threads.find((t) => t.threadId === threadId);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      worker?.terminate().catch(() => undefined),
      new Promise((resolve) => {
        timer = setTimeout(resolve, TERMINATE_GRACE_MS);
      }),
    ]);
    clearTimeout(timer);
    this.#gone(threadId);
  }

  /** Threads that can take a request now: live, not being ended by the watchdog. */
  #usable(): number[] {
    return [...this.#live.keys()].filter((id) => !this.#stalled.has(id));
  }

  /**
   * A new session goes to the thread with the fewest live sessions (transports
   * plus admissions on their way), among the threads that can answer now;
   * ties are broken round-robin.
   */
  #chooseForNew(): number | undefined {
    let usable = this.#usable();
    const table = this.#broker.index;
    const stuck = table.unresponsiveThreads();
    if (stuck.size > 0 && usable.some((id) => !stuck.has(id))) usable = usable.filter((id) => !stuck.has(id));
    if (usable.length === 0) return undefined;
    const start = this.#roundRobin++ % usable.length;
    let best: number | undefined;
    let bestLoad = Number.POSITIVE_INFINITY;
    for (let i = 0; i < usable.length; i++) {
      const id = usable[(start + i) % usable.length] as number;
      const load = table.transportsOf(id) + this.#pending.of(id);
      if (load < bestLoad) {
        bestLoad = load;
        best = id;
      }
    }
    return best;
  }

  async initialize(client: ClientIdentity, request: WireRequest): Promise<Routed> {
    // Busy when no thread could take it now: each is at its bound, or cannot
    // answer (its event loop is blocked; the session would wait for the watchdog).
    const stuck = this.#broker.index.unresponsiveThreads();
    if (
      this.#live.size > 0 &&
      [...this.#live.keys()].every(
        (id) => this.#pending.of(id) >= this.#opts.maxPendingPerThread || stuck.has(id) || this.#stalled.has(id),
      )
    ) {
      return { busy: true };
    }
    const threadId = this.#chooseForNew();
    if (threadId === undefined) throw new BrokerError('ERR_THREAD_GONE', 'no handler thread is running');
    return this.#run(threadId, { kind: 'initialize', clientKey: client.key, binding: client.binding, request });
  }

  async session(sessionId: string, ref: SessionRef, owner: number, request: WireRequest): Promise<Routed> {
    if (this.#pending.of(owner) >= this.#opts.maxPendingPerThread) return { busy: true };
    // Requests go to the session's owner. If it just died, any thread will do:
    // it does not know the session and answers 404.
    const threadId = this.#live.has(owner) && !this.#stalled.has(owner) ? owner : this.#usable()[0];
    if (threadId === undefined) throw new BrokerError('ERR_THREAD_GONE', 'no handler thread is running');
    return this.#run(threadId, { kind: 'session', sessionId, ref, request });
  }

  async #run(threadId: number, task: ChannelTask): Promise<Routed> {
    const channel = (this.#live.get(threadId) as LiveThread).channel;
    this.#pending.add(threadId);
    try {
      return await channel.call(task);
    } finally {
      this.#pending.done(threadId);
    }
  }

  async close(): Promise<void> {
    this.#closing = true;
    clearInterval(this.#watchdog);
    for (const thread of this.#live.values()) {
      thread.channel.close();
      thread.leave();
    }
    await this.#pool.destroy();
  }
}

/** Serves sessions on this thread (`threads: 0`): no pool, same host code. */
export class LocalDispatcher implements Dispatcher {
  readonly threadIds = [0] as const;
  /** Nothing to restart: with no handler threads, a stuck or dying tool takes the process with it. */
  readonly restarts: Readonly<ThreadRestarts> = { stalled: 0, died: 0 };
  readonly #host: SessionHost;
  readonly #limits: StreamLimits;

  constructor(host: SessionHost, limits: StreamLimits) {
    this.#host = host;
    this.#limits = limits;
  }

  async initialize(client: ClientIdentity, request: WireRequest): Promise<Routed> {
    return this.#route(await this.#host.initialize(client.key, client.binding, request));
  }

  async session(sessionId: string, _ref: SessionRef, _owner: number, request: WireRequest): Promise<Routed> {
    return this.#route(await this.#host.request(sessionId, request));
  }

  async #route(dispatched: Awaited<ReturnType<SessionHost['request']>>): Promise<Routed> {
    const [receiving, sending] = localPair();
    const result = await deliver(dispatched.result, dispatched.body, sending, this.#limits, dispatched.gate);
    return { result, port: receiving };
  }

  async close(): Promise<void> {}
}
