/**
 * `SessionBroker`: the MCP endpoint with bounded sessions. It owns the broker
 * (a worker thread, or in-process with `threads: 0`), the handler threads, and
 * the request front: everything the listener can answer without a hop
 * (unknown session, missing id, bad headers, bad JSON, too large) is answered
 * here; the rest goes to the session's owner thread.
 */
import { EventEmitter, once } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { AuthInfo } from '@modelcontextprotocol/sdk/server/auth/types.js';
import { type BrokerHandle, type SessionIndex, startBroker, startInProcessBroker } from '../../broker/index.js';
import type { BrokerError } from '../../shared/errors.js';
import { Answers, type HttpAnswer, refusalAnswer, sessionClosedError } from '../../shared/jsonrpc.js';
import type { TaskResult, WireRequest } from '../../shared/messages.js';
import {
  type BrokerStats,
  MIN_RETRY_AFTER_MS,
  type Refused,
  type SessionClosedEvent,
  type SessionCreatedEvent,
  type SessionEvent,
  type SessionRef,
} from '../../shared/types.js';
import { eventStoreFactory, loadFactory, ResumeBudget, SessionHost } from '../host/index.js';
import { type Authenticate, bearerAuth, cloneableAuth } from './auth.js';
import { ClientKeys } from './clients.js';
import { type Dispatcher, LocalDispatcher, PoolDispatcher, type Routed, type ThreadRestarts } from './dispatch.js';
import { ErrorLog } from './log.js';
import {
  type ResolvedSessionBrokerOptions,
  resolveSessionBrokerOptions,
  type SessionBrokerOptions,
} from './options.js';
import { checkOrigin } from './origin.js';
import { checkGetHeaders, checkPostBody, checkPostHeaders, checkPostMessage } from './preflight.js';
import { pipePortToResponse } from './receive.js';

type TaskHeaders = Extract<TaskResult, { kind: 'head' }>['headers'];

/** The answer to an initialize whose thread died before answering it. */
const LOST_INITIALIZE: Refused = { ok: false, reason: 'owner_gone', retryAfterMs: 1_000 };

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

/** The session a request names, as the index found it. */
interface Named {
  readonly id: string;
  readonly ref: SessionRef;
  readonly binding: readonly [number, number] | undefined;
}

/** Requests refused or lost by the listener itself (not by the broker), for metrics. */
export interface FrontCounters {
  /** 503: the owner thread's dispatch queue was full. */
  queueFull: number;
  /** Clients that went away before their request body arrived whole (not an error: counted, not logged). */
  clientAborts: number;
  /** 429: the session already had `maxInFlightPerSession` requests in flight. */
  inFlightLimited: number;
}

/**
 * Headers of the SDK's response that describe its own connection, not ours:
 * Node sets them for the real socket (honouring the client's `Connection: close`).
 */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'transfer-encoding']);

export class SessionBroker extends EventEmitter<SessionBrokerEvents> {
  readonly #opts: ResolvedSessionBrokerOptions;
  readonly #broker: BrokerHandle;
  readonly #dispatcher: Dispatcher;
  /** Every response not yet closed (GET streams included), destroyed at the end of shutdown. */
  readonly #active = new Set<ServerResponse>();
  /** POST and DELETE responses in flight: shutdown lets these finish. */
  #inFlight = 0;
  #drained: (() => void) | undefined;
  readonly #counters: FrontCounters = { queueFull: 0, clientAborts: 0, inFlightLimited: 0 };
  readonly #log = new ErrorLog();
  /** The last request handled on each connection: requests on one connection run in order. */
  readonly #lastOnSocket = new WeakMap<Socket, ServerResponse>();
  readonly #clients: ClientKeys;
  readonly #authenticate: Authenticate | undefined;
  #closing: Promise<void> | undefined;
  #failed: BrokerError | undefined;
  readonly #resumeBudget: ResumeBudget | undefined;

  /** Starts the broker and its handler threads; resolves once every thread is ready. */
  static async create(options: SessionBrokerOptions): Promise<SessionBroker> {
    return SessionBroker[START](resolveSessionBrokerOptions(options));
  }

  /** Starts from options already validated (`serve()` validates once, before it listens). */
  static async [START](opts: ResolvedSessionBrokerOptions): Promise<SessionBroker> {
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
      const factory = opts.factory ?? (await loadFactory(opts.module));
      let host: SessionHost | undefined;
      const broker = await startInProcessBroker({
        admission: opts.admission,
        lanes,
        manualClock: opts.manualClock,
        // No handler threads, no watchdog: a stuck tool stalls this very thread.
        stallTimeoutMs: 0,
        storeModule: opts.store,
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
      return self;
    }
    const broker = await startBroker({
      admission: opts.admission,
      lanes,
      manualClock: opts.manualClock,
      stallTimeoutMs: opts.stallTimeoutMs,
      storeModule: opts.store,
      onEvent,
      onFailure: (error) => {
        if (!self) return;
        self.#failed = error;
        self.emit('error', error);
      },
    });
    let dispatcher: PoolDispatcher;
    try {
      dispatcher = await PoolDispatcher.start({
        broker,
        threads: opts.threads,
        module: opts.module,
        enableJsonResponse: opts.jsonResponse,
        factoryTimeoutMs: opts.factoryTimeoutMs,
        streamLimits: opts.streamLimits,
        eventStore: opts.eventStore,
        resumeBytes: budget?.buffer,
        maxPendingPerThread: opts.maxPendingPerThread,
        stallTimeoutMs: opts.stallTimeoutMs,
        onThreadGone: (threadId) => {
          // Its sessions are gone, and their events with them.
          budget?.reclaim(threadId);
          void broker.api.ownerGone(threadId);
        },
      });
    } catch (error) {
      await broker.terminate();
      throw error;
    }
    self = new SessionBroker(opts, broker, dispatcher, budget);
    return self;
  }

  private constructor(
    opts: ResolvedSessionBrokerOptions,
    broker: BrokerHandle,
    dispatcher: Dispatcher,
    budget: ResumeBudget | undefined,
  ) {
    super();
    this.#resumeBudget = budget;
    this.#opts = opts;
    this.#clients = new ClientKeys({ trustProxy: opts.trustProxy, clientKey: opts.clientKey });
    this.#authenticate = opts.auth ? bearerAuth(opts.auth) : undefined;
    this.#broker = broker;
    this.#dispatcher = dispatcher;
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

  /** Listener-side refusal counts (the broker's own are in `stats()`). */
  get frontCounters(): Readonly<FrontCounters> {
    return this.#counters;
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
  async handle(req: IncomingMessage, res: ServerResponse, parsedBody?: unknown): Promise<void> {
    // Pipelined requests: the previous request of this connection is answered
    // (or abandoned) before this one starts, so a DELETE never overtakes a call.
    const socket = req.socket;
    const previous = this.#lastOnSocket.get(socket);
    this.#lastOnSocket.set(socket, res);
    if (previous && !previous.closed) await new Promise((resolve) => previous.once('close', resolve));
    if (res.closed) return;
    try {
      this.#cors(res);
      if (req.method === 'OPTIONS' && this.#opts.cors) {
        res.writeHead(204, {
          'access-control-allow-methods': 'GET, POST, DELETE, OPTIONS',
          'access-control-allow-headers':
            'content-type, accept, authorization, mcp-session-id, mcp-protocol-version, last-event-id',
          'access-control-max-age': '600',
        });
        res.end();
        return;
      }
      if (this.#closing) return send(res, Answers.shuttingDown());
      if (this.#failed) return send(res, Answers.brokerFailed());
      const forbidden = checkOrigin(req, this.#opts.originPolicy);
      if (forbidden) return send(res, forbidden);
      if (this.#authenticate && !(await this.#authenticate(req, res))) return;
      await this.#route(req, res, parsedBody);
    } catch (error) {
      this.#log.report('request failed', error);
      if (!res.headersSent) send(res, Answers.internal('request failed'));
      else res.destroy();
    }
  }

  /** Finds the session a request names (404 when it names one that does not exist), then hands it to its method. */
  async #route(req: IncomingMessage, res: ServerResponse, parsedBody: unknown): Promise<void> {
    const method = req.method ?? 'GET';
    if (method !== 'GET' && method !== 'POST' && method !== 'DELETE') return send(res, Answers.methodNotAllowed());
    const rawId = req.headers['mcp-session-id'];
    const sessionId = Array.isArray(rawId) ? rawId[0] : rawId;
    const binding = this.#clients.bindingOf(req);
    let named: Named | undefined;
    if (sessionId !== undefined) {
      const found = this.#broker.index.lookup(sessionId, binding);
      if (!found.ok) return send(res, Answers.sessionNotFound());
      named = { id: sessionId, ref: found.ref, binding };
    }
    if (method === 'GET') return this.#get(req, res, named);
    if (method === 'DELETE') return this.#delete(req, res, named);
    return this.#post(req, res, named, parsedBody);
  }

  /** The standalone SSE stream (or a resumption): activity, never "in flight". */
  #get(req: IncomingMessage, res: ServerResponse, named: Named | undefined): void | Promise<void> {
    const bad = checkGetHeaders(req.headers);
    if (bad) return send(res, bad);
    if (!named) return send(res, Answers.missingSessionId());
    const index = this.#broker.index;
    index.touch(named.ref);
    const request = wire(req);
    if (!request) return send(res, Answers.badRequest('invalid Host header or URL'));
    return this.#forward(res, () => this.#dispatcher.session(named.id, named.ref, index.owner(named.ref), request));
  }

  /** The client ends its session: in flight like a POST, so it never overtakes one. */
  #delete(req: IncomingMessage, res: ServerResponse, named: Named | undefined): void | Promise<void> {
    if (!named) return send(res, Answers.missingSessionId());
    const request = wire(req);
    if (!request) return send(res, Answers.badRequest('invalid Host header or URL'));
    return this.#enterAndForward(res, named.ref, () =>
      this.#dispatcher.session(named.id, named.ref, this.#broker.index.owner(named.ref), request),
    );
  }

  /** A message: an initialize (a new session) or a request of a named session. */
  async #post(req: IncomingMessage, res: ServerResponse, named: Named | undefined, parsedBody: unknown): Promise<void> {
    const badHeaders = checkPostHeaders(req.headers);
    if (badHeaders) return send(res, badHeaders);
    let check: ReturnType<typeof checkPostBody>;
    if (parsedBody !== undefined) {
      check = checkPostMessage(parsedBody, named !== undefined, req.headers);
    } else {
      const body = await readBody(req, this.#opts.maxBodyBytes);
      if (body === TOO_LARGE) {
        res.setHeader('connection', 'close');
        return send(res, Answers.tooLarge(this.#opts.maxBodyBytes));
      }
      if (body === ABORTED) {
        // The client went away mid-body (or the server timed the body out and answered 408).
        this.#counters.clientAborts++;
        if (!res.headersSent) res.destroy();
        return;
      }
      check = checkPostBody(body, named !== undefined, req.headers);
    }
    if (!check.ok) return send(res, check.answer);
    const request = wire(req, check.body);
    if (!request) return send(res, Answers.badRequest('invalid Host header or URL', check.id));
    if (check.isInitialize) {
      const client = this.#clients.identify(req);
      this.#trackInFlight(res);
      return this.#forward(res, () => this.#dispatcher.initialize(client, request), check.id, LOST_INITIALIZE);
    }
    if (!named) return send(res, Answers.missingSessionId(check.id));
    // Reading the body took time: the session may have expired or closed meanwhile.
    const index = this.#broker.index;
    const still = index.lookup(named.id, named.binding);
    if (!still.ok) return send(res, Answers.sessionNotFound(check.id));
    return this.#enterAndForward(
      res,
      still.ref,
      () => this.#dispatcher.session(named.id, still.ref, index.owner(still.ref), request),
      check.id,
    );
  }

  /** A POST or DELETE is in flight from dispatch until its response has ended (or the client left). */
  async #enterAndForward(
    res: ServerResponse,
    ref: SessionRef,
    run: () => Promise<Routed>,
    id: string | number | null = null,
  ) {
    const entered = this.#broker.index.enter(ref, this.#opts.maxInFlightPerSession);
    if (entered === 'gone') return send(res, Answers.sessionNotFound(id));
    if (entered === 'limited') {
      this.#counters.inFlightLimited++;
      return send(res, refusalAnswer({ reason: 'in_flight_limited', retryAfterMs: MIN_RETRY_AFTER_MS }, id));
    }
    res.once('close', () => this.#broker.index.leave(ref));
    this.#trackInFlight(res);
    return this.#forward(res, run, id);
  }

  #trackInFlight(res: ServerResponse): void {
    this.#inFlight++;
    res.once('close', () => {
      this.#inFlight--;
      if (this.#inFlight === 0) this.#drained?.();
    });
  }

  async #forward(
    res: ServerResponse,
    run: () => Promise<Routed>,
    id: string | number | null = null,
    lost: Refused | undefined = undefined,
  ) {
    this.#active.add(res);
    res.once('close', () => this.#active.delete(res));
    let routed: Routed;
    try {
      routed = await run();
    } catch {
      // The owner thread died under the request (piscina rejects its task);
      // an initialize has no session to name yet: it is refused as `lost`.
      return send(res, lost ? refusalAnswer(lost, id) : Answers.sessionClosed('error', id));
    }
    if ('busy' in routed) {
      this.#counters.queueFull++;
      return send(res, refusalAnswer({ reason: 'queue_full', retryAfterMs: MIN_RETRY_AFTER_MS }, id));
    }
    const { result, port } = routed;
    if (result.kind === 'head' && result.created) {
      // The new session holds its initialize request until the response ends.
      const created = { slot: result.created.slot, gen: result.created.gen };
      if (res.closed) this.#broker.index.leave(created);
      else res.once('close', () => this.#broker.index.leave(created));
    }
    if (res.closed) {
      // The client left before the answer: closing the port cancels the body at its source.
      port.close();
      return;
    }
    switch (result.kind) {
      case 'answer':
        port.close();
        return send(res, result.answer);
      case 'refused':
        port.close();
        return send(res, refusalAnswer(result.refused, id));
      case 'head': {
        const headers: Record<string, string> = {};
        for (const [name, value] of result.headers) {
          if (!HOP_BY_HOP.has(name.toLowerCase())) headers[name] = value;
        }
        res.writeHead(result.status, headers);
        if (!result.hasBody || result.ended) {
          port.close();
          res.end(result.body);
          return;
        }
        await pipePortToResponse(port, res, result.body, () => senderGoneTail(result.headers, id));
        return;
      }
    }
  }

  #cors(res: ServerResponse): void {
    if (!this.#opts.cors) return;
    res.setHeader('access-control-allow-origin', this.#opts.cors);
    res.setHeader('access-control-expose-headers', 'mcp-session-id, mcp-protocol-version');
    if (this.#opts.cors !== '*') res.setHeader('vary', 'origin');
  }

  /**
   * Graceful shutdown: refuses new requests (503), lets in-flight POSTs finish
   * for up to `timeoutMs`, closes every session with reason `shutdown`, and
   * stops the threads. Idempotent.
   */
  close(options: { timeoutMs?: number } = {}): Promise<void> {
    this.#closing ??= this.#shutdown(options.timeoutMs ?? 10_000);
    return this.#closing;
  }

  async #shutdown(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    if (this.#inFlight > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, timeoutMs);
        this.#drained = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    await this.#broker.api.shutdown(Math.max(100, deadline - Date.now())).catch(() => undefined);
    // Closed transports end their streams (GET included); let those ends reach the clients.
    let flushTimer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.all([...this.#active].map((res) => (res.closed ? undefined : once(res, 'close')))),
      new Promise((resolve) => {
        flushTimer = setTimeout(resolve, Math.max(SHUTDOWN_FLUSH_MS, deadline - Date.now()));
      }),
    ]);
    clearTimeout(flushTimer);
    for (const res of this.#active) res.destroy();
    await this.#dispatcher.close();
    await this.#broker.terminate();
  }
}

/**
 * The end of an SSE response whose owner thread died before ending it: the
 * request's JSON-RPC error, when the listener knows its id (a single request),
 * so the client's call fails at once instead of waiting on a broken stream.
 */
function senderGoneTail(headers: TaskHeaders, id: string | number | null): Uint8Array | undefined {
  if (id === null) return undefined;
  const type = headers.find(([name]) => name.toLowerCase() === 'content-type')?.[1] ?? '';
  if (!type.includes('text/event-stream')) return undefined;
  return Buffer.from(`event: message\ndata: ${JSON.stringify(sessionClosedError('error', id))}\n\n`);
}

/** Writes an answer (or just ends a response whose head is already out). */
export function send(res: ServerResponse, answer: HttpAnswer): void {
  if (res.headersSent) {
    res.end();
    return;
  }
  res.writeHead(answer.status, answer.headers);
  res.end(answer.body);
}

/** The request as plain data for the owner thread; undefined when its Host/URL does not parse. */
function wire(req: IncomingMessage, body?: unknown): WireRequest | undefined {
  const headers: [string, string][] = [];
  for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) {
    headers.push([req.rawHeaders[i] as string, req.rawHeaders[i + 1] as string]);
  }
  const url = `http://${req.headers.host ?? 'localhost'}${req.url ?? '/'}`;
  if (!URL.canParse(url)) return undefined;
  const request: { -readonly [K in keyof WireRequest]: WireRequest[K] } = { method: req.method ?? 'GET', url, headers };
  if (body !== undefined) request.body = body;
  const auth = (req as { auth?: AuthInfo }).auth;
  if (auth !== undefined) request.authInfo = cloneableAuth(auth);
  return request;
}

const TOO_LARGE = Symbol('too large');
const ABORTED = Symbol('aborted');

/**
 * Reads a body up to `limit` bytes: TOO_LARGE when it is larger (the rest is
 * discarded, unread), ABORTED when the connection ends before the body does.
 */
function readBody(req: IncomingMessage, limit: number): Promise<string | typeof TOO_LARGE | typeof ABORTED> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) {
    req.resume();
    return Promise.resolve(TOO_LARGE);
  }
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        req.off('data', onData);
        req.resume();
        resolve(TOO_LARGE);
        return;
      }
      chunks.push(chunk);
    };
    req.on('data', onData);
    req.once('end', () => resolve(size > limit ? TOO_LARGE : Buffer.concat(chunks).toString('utf8')));
    // Resolving twice is harmless: whichever comes first wins.
    req.once('error', () => resolve(ABORTED));
    req.once('close', () => resolve(ABORTED));
  });
}
