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
import { MessageChannel, type MessagePort } from 'node:worker_threads';
import { Piscina } from 'piscina';
import type { BrokerHandle } from '../../broker/index.js';
import { BrokerError } from '../../shared/errors.js';
import {
  type HandlerTask,
  isHelloMessage,
  type StreamLimits,
  type TaskResult,
  type WireRequest,
} from '../../shared/messages.js';
import type { SessionRef } from '../../shared/types.js';
import { deliver, type EventStoreLimits, type HandlerWorkerData, type SessionHost } from '../host/index.js';
import type { ClientIdentity } from './clients.js';

/** A routed request's answer: its head, and the port its body (if any) arrives on. */
export type Routed = { readonly result: TaskResult; readonly port: MessagePort } | { readonly busy: true };

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

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

export const defaultThreads = (): number => availableParallelism();

export interface PoolDispatcherOptions {
  readonly broker: BrokerHandle;
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
  readonly onThreadGone: (threadId: number) => void;
}

/** Per-task queue options: the owner to route to; the balancer notes the thread it chose. */
type QueueOptions = { readonly owner?: number; chosen?: number };
type PoolWorker = { readonly id: number; readonly terminating: boolean; readonly destroyed: boolean };

/**
 * How long the watchdog waits for a terminated thread to exit before it frees
 * the thread's sessions anyway: termination stops its JavaScript for good, but
 * a thread blocked inside a native call exits only when that call returns.
 */
const TERMINATE_GRACE_MS = 1_000;

export class PoolDispatcher implements Dispatcher {
  readonly #pool: Piscina;
  readonly #opts: PoolDispatcherOptions;
  readonly #pending = new Map<number, number>();
  readonly #live = new Set<number>();
  /** Threads the watchdog has terminated, until they are gone. */
  readonly #stalled = new Set<number>();
  readonly #restarts: ThreadRestarts = { stalled: 0, died: 0 };
  readonly #watchdog: NodeJS.Timeout | undefined;
  #roundRobin = 0;
  #closing = false;

  /** Starts the pool and resolves once every handler thread is connected to the broker. */
  static async start(options: PoolDispatcherOptions): Promise<PoolDispatcher> {
    const dispatcher = new PoolDispatcher(options);
    await dispatcher.#ready;
    return dispatcher;
  }

  readonly #ready: Promise<void>;

  private constructor(options: PoolDispatcherOptions) {
    this.#opts = options;
    const workerData: HandlerWorkerData = {
      index: options.broker.index.descriptor,
      module: options.module,
      enableJsonResponse: options.enableJsonResponse,
      factoryTimeoutMs: options.factoryTimeoutMs,
      streamLimits: options.streamLimits,
      eventStore: options.eventStore,
      resumeBytes: options.resumeBytes,
    };
    this.#pool = new Piscina({
      filename: new URL('../host/handler.js', import.meta.url).href,
      // Fixed size and never idle-reaped: a session lives in exactly one thread.
      minThreads: options.threads,
      maxThreads: options.threads,
      idleTimeout: Number.POSITIVE_INFINITY,
      // Idle handler threads hold sessions and SSE streams: they must never park in Atomics.wait.
      atomics: 'disabled',
      concurrentTasksPerWorker: options.maxPendingPerThread,
      maxQueue: options.maxPendingPerThread * options.threads,
      workerData,
      loadBalancer: (task, workers) =>
        this.#balance(
          (task as unknown as Record<symbol, QueueOptions | null>)[Piscina.queueOptionsSymbol] ?? null,
          workers,
        ),
    });
    let readyCount = 0;
    let resolveReady!: () => void;
    let rejectReady!: (error: Error) => void;
    this.#ready = new Promise<void>((resolve, reject) => {
      resolveReady = resolve;
      rejectReady = reject;
    });
    this.#pool.on('message', (message: unknown) => {
      if (!isHelloMessage(message)) return;
      const error = (message as { error?: string }).error;
      if (error) {
        rejectReady(new BrokerError('ERR_INVALID_MODULE', error));
        return;
      }
      this.#live.add(message.threadId);
      this.#opts.broker.attach(message.threadId, message.brokerPort, message.controlPort).then(() => {
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
        for (const id of [...this.#live]) if (!running.has(id)) this.#gone(id);
      });
    });
    this.#pool.on('error', (error: unknown) => {
      if (!this.#closing) console.error('[mcp-session-broker] handler pool error:', error);
    });
    if (options.stallTimeoutMs > 0) {
      // Checks as often as threads beat: a stall is acted on within one period of the timeout.
      this.#watchdog = setInterval(() => this.#watch(), options.broker.index.heartbeatIntervalMs);
      this.#watchdog.unref();
    }
  }

  get threadIds(): readonly number[] {
    return [...this.#live];
  }

  get restarts(): Readonly<ThreadRestarts> {
    return this.#restarts;
  }

  /** A handler thread is gone (it died, or the watchdog ended it): its sessions are freed. Idempotent. */
  #gone(threadId: number): void {
    if (!this.#live.delete(threadId)) return;
    this.#pending.delete(threadId);
    if (this.#closing) return;
    // A thread the watchdog ended was counted when it was ended.
    if (!this.#stalled.delete(threadId)) this.#restarts.died++;
    this.#opts.onThreadGone(threadId);
  }

  /** The watchdog: terminates every thread whose heartbeat is older than the stall timeout. */
  #watch(): void {
    if (this.#closing) return;
    const table = this.#opts.broker.index;
    for (const threadId of this.#live) {
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

  #balance<W extends PoolWorker>(queue: QueueOptions | null, workers: W[]): W | null {
    const chosen = this.#choose(queue, workers);
    if (chosen && queue && queue.chosen === undefined) {
      queue.chosen = chosen.id;
      this.#pending.set(chosen.id, (this.#pending.get(chosen.id) ?? 0) + 1);
    }
    return chosen;
  }

  #choose<W extends PoolWorker>(queue: QueueOptions | null, workers: W[]): W | null {
    let usable = workers.filter((w) => !w.terminating && !w.destroyed && !this.#stalled.has(w.id));
    if (usable.length === 0) return null;
    if (queue?.owner !== undefined) {
      // Requests go to the session's owner. If it just died, any thread will do:
      // it does not know the session and answers 404.
      return usable.find((w) => w.id === queue.owner) ?? usable[0] ?? null;
    }
    // A new session goes to the thread with the fewest live sessions (transports
    // plus admissions on their way), among the threads that can answer now;
    // ties are broken round-robin.
    const table = this.#opts.broker.index;
    const stuck = table.unresponsiveThreads();
    if (stuck.size > 0 && usable.some((w) => !stuck.has(w.id))) usable = usable.filter((w) => !stuck.has(w.id));
    const start = this.#roundRobin++ % usable.length;
    let best = null;
    let bestLoad = Number.POSITIVE_INFINITY;
    for (let i = 0; i < usable.length; i++) {
      const worker = usable[(start + i) % usable.length];
      if (!worker) continue;
      const load = table.transportsOf(worker.id) + (this.#pending.get(worker.id) ?? 0);
      if (load < bestLoad) {
        bestLoad = load;
        best = worker;
      }
    }
    return best;
  }

  async initialize(client: ClientIdentity, request: WireRequest): Promise<Routed> {
    // Busy when no thread could take it now: each is at its bound, or cannot
    // answer (its event loop is blocked; the session would wait for the watchdog).
    const stuck = this.#opts.broker.index.unresponsiveThreads();
    if (
      this.#live.size > 0 &&
      [...this.#live].every(
        (id) =>
          (this.#pending.get(id) ?? 0) >= this.#opts.maxPendingPerThread || stuck.has(id) || this.#stalled.has(id),
      )
    ) {
      return { busy: true };
    }
    return this.#run({ kind: 'initialize', clientKey: client.key, binding: client.binding, request }, undefined);
  }

  async session(sessionId: string, ref: SessionRef, owner: number, request: WireRequest): Promise<Routed> {
    if ((this.#pending.get(owner) ?? 0) >= this.#opts.maxPendingPerThread) return { busy: true };
    return this.#run({ kind: 'session', sessionId, ref, request }, owner);
  }

  async #run(task: DistributiveOmit<HandlerTask, 'port'>, owner: number | undefined): Promise<Routed> {
    const channel = new MessageChannel();
    const queue: QueueOptions = owner === undefined ? {} : { owner };
    try {
      const result = (await this.#pool.run(
        { ...task, port: channel.port2, [Piscina.queueOptionsSymbol]: queue },
        { transferList: [channel.port2] },
      )) as TaskResult;
      return { result, port: channel.port1 };
    } catch (error) {
      channel.port1.close();
      if (error instanceof Error && /queue/i.test(error.message)) return { busy: true };
      throw error;
    } finally {
      const chosen = queue.chosen;
      if (chosen !== undefined && this.#pending.has(chosen)) {
        const left = (this.#pending.get(chosen) ?? 1) - 1;
        if (left > 0) this.#pending.set(chosen, left);
        else this.#pending.delete(chosen);
      }
    }
  }

  async close(): Promise<void> {
    this.#closing = true;
    clearInterval(this.#watchdog);
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
    const channel = new MessageChannel();
    const result = await deliver(dispatched.result, dispatched.body, channel.port2, this.#limits, dispatched.gate);
    return { result, port: channel.port1 };
  }

  async close(): Promise<void> {}
}
