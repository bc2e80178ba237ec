/**
 * The session host: the sessions one thread owns (a handler thread, or the main
 * thread with `threads: 0`). It asks the broker to admit before it creates any
 * transport, runs the user's factory, hands requests to the SDK transport, and
 * closes transports when the broker says so.
 */

import type { AuthInfo } from '@modelcontextprotocol/sdk/server/auth/types.js';
import type { Server } from '@modelcontextprotocol/sdk/server/index.js';
import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { WebStandardStreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/webStandardStreamableHttp.js';
import {
  isJSONRPCErrorResponse,
  isJSONRPCRequest,
  isJSONRPCResultResponse,
  type JSONRPCMessage,
  type RequestId,
} from '@modelcontextprotocol/sdk/types.js';
import type { SessionIndex } from '../../broker/index.js';
import { StreamGate } from '../../shared/deliver.js';
import { BrokerError } from '../../shared/errors.js';
import { Answers, type HttpAnswer, type JsonRpcId, refusalAnswer, sessionClosedError } from '../../shared/jsonrpc.js';
import type { TaskResult, WireRequest } from '../../shared/messages.js';
import { withTimeout } from '../../shared/timeout.js';
import {
  type AdmitRequest,
  type Admitted,
  type CloseReason,
  type Decision,
  MIN_RETRY_AFTER_MS,
  type SessionRef,
} from '../../shared/types.js';
import { restoreAuth } from './auth.js';
import type { ResumptionStore } from './event-store.js';

/** What the factory receives for each new session. */
export interface SessionContext {
  /** The new session's id (as the client will see it in `Mcp-Session-Id`). */
  readonly sessionId: string;
  /** Who asked for the session: the authenticated principal, or the remote address. */
  readonly clientKey: string;
  /** The thread that owns the session (0: the main thread). */
  readonly threadId: number;
}

/** The default export of a server module: builds one MCP server per session. */
export type ServerFactory = (context: SessionContext) => McpServer | Server | Promise<McpServer | Server>;

/** The broker calls a host makes. */
export interface HostBroker {
  admit(request: AdmitRequest): Promise<Decision>;
  closed(ref: SessionRef, reason: CloseReason, options?: { refund?: boolean }): Promise<void> | void;
}

export interface HostOptions {
  readonly factory: ServerFactory;
  readonly index: SessionIndex;
  readonly broker: HostBroker;
  readonly threadId: number;
  readonly enableJsonResponse: boolean;
  /** How long the factory may take to build a session's server, ms. */
  readonly factoryTimeoutMs: number;
  /** Builds a per-session event store for resumability, or none; disposed when the transport closes. */
  readonly eventStore?: () => ResumptionStore;
  /** Called with errors that do not belong to any one request. */
  readonly onError?: (error: unknown) => void;
  /**
   * Bytes an SSE stream may hold for its client before the transport's sends
   * to it wait (see `StreamGate`); undefined: sends never wait.
   */
  readonly maxBufferedBytes?: number;
}

/** A task's answer: the head (or a whole answer), and the body stream, if any. */
export interface Dispatched {
  readonly result: TaskResult;
  readonly body: ReadableStream<Uint8Array> | null;
  /** The body's backpressure on the transport's sends, when it is an SSE stream. */
  readonly gate?: StreamGate;
}

/**
 * The SDK transport, noting each response it sends so a closed session can
 * fail the rest, and making each send wait for room on the stream it goes to
 * (the SDK itself enqueues without bound). It reads both from its session
 * (a field, not closures: this lives as long as the session does).
 */
class OwnedTransport extends WebStandardStreamableHTTPServerTransport {
  session: Session | undefined;

  override async send(message: JSONRPCMessage, options?: { relatedRequestId?: RequestId }): Promise<void> {
    const session = this.session;
    const isResponse = isJSONRPCResultResponse(message) || isJSONRPCErrorResponse(message);
    const requestId = isResponse ? message.id : options?.relatedRequestId;
    // The gate of the stream the message goes to: its request's, or the standalone GET stream's.
    const gate = requestId === undefined ? session?.standalone : session?.pending?.get(requestId)?.gate;
    if (isResponse && message.id !== undefined && session) answered(session, message.id);
    if (!gate) return super.send(message, options);
    return gate.run(() => super.send(message, options));
  }
}

/** The response to `requestId` is on its way: the request no longer waits for one. */
function answered(session: Session, requestId: RequestId): void {
  const call = session.pending?.get(requestId);
  if (!call) return;
  call.ids.delete(requestId);
  session.pending?.delete(requestId);
  if (session.pending?.size === 0) session.pending = undefined;
}

interface PendingCall {
  readonly ids: Set<RequestId>;
  readonly gate: StreamGate | undefined;
}

interface Session {
  readonly id: string;
  readonly ref: SessionRef;
  readonly server: McpServer | Server;
  readonly transport: OwnedTransport;
  /** The transport's resumability event store, if any. */
  readonly eventStore: ResumptionStore | undefined;
  /**
   * Requests in flight, by JSON-RPC id, still waiting for their response;
   * undefined while there are none (as for most sessions most of the time).
   */
  pending: Map<RequestId, PendingCall> | undefined;
  /** Set once the session is closing; the reason in-flight requests are failed with. */
  reason: CloseReason | undefined;
  /**
   * Requests waiting for the SDK's answer (JSON responses), each with a way to
   * end it early when the session closes under it. Per request, so nothing
   * accumulates on a promise that lives as long as the session. Undefined
   * while none waits.
   */
  waiting: Set<(reason: CloseReason) => void> | undefined;
  /** The gate of the standalone GET stream, while one is open. */
  standalone: StreamGate | undefined;
  /** Called once the transport is closed and the session is gone from this host (closes waiting for that). */
  gone: Array<() => void> | undefined;
}

const encoder = new TextEncoder();

export class SessionHost {
  readonly #opts: HostOptions;
  readonly #lane: number;
  readonly #sessions = new Map<string, Session>();
  readonly #bySlot = new Map<number, Session>();
  /**
   * Close requests that found no session (slot -> generation): the broker's
   * close can overtake the admit reply it raced with; such a session is never built.
   */
  readonly #tombstones = new Map<number, { gen: number; reason: CloseReason }>();
  /** Sessions admitted but still being built, by slot; a close request waits for the build. */
  readonly #building = new Map<number, { gen: number; reason: CloseReason | undefined; settled: Promise<void> }>();

  /** The lane this host's thread holds in the index (its transport count and heartbeat). */
  get lane(): number {
    return this.#lane;
  }

  constructor(options: HostOptions) {
    this.#opts = options;
    this.#lane = options.index.claimLane(options.threadId);
  }

  // ---- requests ------------------------------------------------------------

  /** Admits and creates a session for a preflighted initialize, then answers it: admit, build, answer. */
  async initialize(
    clientKey: string,
    binding: readonly [number, number] | undefined,
    request: WireRequest,
  ): Promise<Dispatched> {
    const requestId = requestIdOf(request.body);
    const decision = await this.#opts.broker.admit({
      clientKey,
      owner: this.#opts.threadId,
      ...(binding ? { binding } : {}),
    });
    if (!decision.ok) return { result: { kind: 'refused', refused: decision }, body: null };
    const built = await this.#build(decision, clientKey);
    if (!('session' in built)) return answer(built.refusal(requestId));
    return this.#answerInitialize(built.session, decision, request);
  }

  /**
   * Builds an admitted session: runs the factory and connects a transport. A
   * close the broker asks for meanwhile is applied as soon as it exists; a
   * failed build is reported with the refund.
   */
  async #build(
    decision: Admitted,
    clientKey: string,
  ): Promise<{ session: Session } | { refusal: (id: JsonRpcId) => ReturnType<typeof Answers.internal> }> {
    const ref: SessionRef = { slot: decision.slot, gen: decision.gen };
    const tombstone = this.#tombstones.get(ref.slot);
    if (tombstone?.gen === ref.gen || !this.#opts.index.isLive(ref)) {
      // Closed before it was built (the broker frees the slot on its own).
      this.#tombstones.delete(ref.slot);
      const reason = tombstone?.gen === ref.gen ? tombstone.reason : 'error';
      return { refusal: (id) => closedBeforeAnswered(reason, id) };
    }
    let settle!: () => void;
    const building = {
      gen: ref.gen,
      reason: undefined as CloseReason | undefined,
      settled: new Promise<void>((resolve) => {
        settle = resolve;
      }),
    };
    this.#building.set(ref.slot, building);
    // Counted before the transport exists and uncounted after it is closed, so
    // the sum over threads never exceeds what the broker admitted.
    this.#opts.index.addTransports(this.#lane, 1);
    let session: Session;
    try {
      session = await this.#create(decision.id, ref, clientKey);
    } catch (error) {
      this.#opts.index.addTransports(this.#lane, -1);
      this.#building.delete(ref.slot);
      // Report (with the refund) before a pending close request is answered.
      await this.#opts.broker.closed(ref, 'error', { refund: true });
      settle();
      this.#opts.onError?.(error);
      return { refusal: (id) => Answers.internal('the server factory failed', id) };
    }
    this.#building.delete(ref.slot);
    const closedMeanwhile = building.reason;
    if (closedMeanwhile) {
      // The broker asked for this session's close while it was being built.
      await this.#close(session, closedMeanwhile);
      settle();
      return { refusal: (id) => closedBeforeAnswered(closedMeanwhile, id) };
    }
    settle();
    return { session };
  }

  /** Hands the initialize to the new session's transport; a session the SDK did not accept is closed at once. */
  async #answerInitialize(session: Session, decision: Admitted, request: WireRequest): Promise<Dispatched> {
    let dispatched: Dispatched;
    try {
      dispatched = await this.#handle(session, request);
    } catch (error) {
      this.#opts.onError?.(error);
      dispatched = answer(Answers.internal('the initialize request failed', requestIdOf(request.body)));
    }
    if (dispatched.result.kind !== 'head' || dispatched.result.status !== 200) {
      // The SDK did not answer the initialize as one (it refused it, or took it
      // for a notification): the client has no session id, so no session exists.
      session.reason = 'error';
      await this.#close(session, 'error');
      await this.#opts.broker.closed(session.ref, 'error', { refund: true });
      return dispatched;
    }
    return { ...dispatched, result: { ...dispatched.result, created: { ...session.ref, id: decision.id } } };
  }

  /** Hands a request to the session it names (the listener already validated the id). */
  async request(sessionId: string, request: WireRequest): Promise<Dispatched> {
    const session = this.#sessions.get(sessionId);
    if (!session || session.reason) return answer(Answers.sessionNotFound(requestIdOf(request.body), session?.reason));
    return this.#handle(session, request);
  }

  async #create(id: string, ref: SessionRef, clientKey: string): Promise<Session> {
    const building = Promise.resolve(this.#opts.factory({ sessionId: id, clientKey, threadId: this.#opts.threadId }));
    const server = await withTimeout(building, this.#opts.factoryTimeoutMs, () => {
      // Too late to serve its session: close whatever it builds in the end.
      building
        .then(
          (late) => late?.close?.(),
          () => undefined,
        )
        .catch(() => undefined);
      return new BrokerError(
        'ERR_FACTORY',
        `the server factory did not finish within ${this.#opts.factoryTimeoutMs} ms`,
      );
    });
    if (!server || typeof (server as { connect?: unknown }).connect !== 'function') {
      throw new TypeError('the server factory must return an McpServer or Server');
    }
    const session = this.#session(id, ref, server);
    await server.connect(session.transport);
    this.#sessions.set(id, session);
    this.#bySlot.set(ref.slot, session);
    return session;
  }

  /**
   * A session's record and transport. Apart from the SDK's own, the only
   * closures that live as long as the session are made here, so they hold
   * nothing else (a closure keeps its whole scope: in `#create`, the factory's
   * promise).
   */
  #session(id: string, ref: SessionRef, server: McpServer | Server): Session {
    const eventStore = this.#opts.eventStore?.();
    const transport = new OwnedTransport({
      sessionIdGenerator: () => id,
      enableJsonResponse: this.#opts.enableJsonResponse,
      ...(eventStore ? { eventStore } : {}),
      onsessionclosed: this.#onDeleted,
    });
    const session: Session = {
      id,
      ref,
      server,
      transport,
      eventStore,
      pending: undefined,
      reason: undefined,
      waiting: undefined,
      standalone: undefined,
      gone: undefined,
    };
    transport.session = session;
    transport.onclose = () => this.#onTransportClosed(session);
    return session;
  }

  /** The client deleted its session (the SDK's `onsessionclosed`, one function for every session). */
  readonly #onDeleted = (sessionId: string | undefined): void => {
    const session = sessionId === undefined ? undefined : this.#sessions.get(sessionId);
    if (session) session.reason ??= 'deleted';
  };

  async #handle(session: Session, wire: WireRequest): Promise<Dispatched> {
    const request = new Request(wire.url, { method: wire.method, headers: wire.headers as [string, string][] });
    const ids = new Set<RequestId>();
    for (const message of messagesOf(wire.body)) {
      if (isJSONRPCRequest(message)) ids.add(message.id);
    }
    // JSON answers are one body built at the end: only SSE streams need the gate.
    const limit = this.#opts.maxBufferedBytes;
    const gate =
      limit !== undefined && !this.#opts.enableJsonResponse && wire.method !== 'DELETE'
        ? new StreamGate(limit)
        : undefined;
    const call: PendingCall = { ids, gate };
    if (ids.size > 0) {
      session.pending ??= new Map();
      for (const id of ids) session.pending.set(id, call);
    }

    const options: { parsedBody?: unknown; authInfo?: AuthInfo } = {};
    if (wire.body !== undefined) options.parsedBody = wire.body;
    if (wire.authInfo !== undefined) options.authInfo = restoreAuth(wire.authInfo);
    const handled = session.transport.handleRequest(request, options);
    let raced: Response | CloseReason;
    if (wire.method === 'DELETE') {
      // The client's own DELETE closes the session and gets its 200.
      raced = await handled;
    } else {
      let abort!: (reason: CloseReason) => void;
      const aborted = new Promise<CloseReason>((resolve) => {
        abort = resolve;
      });
      session.waiting ??= new Set();
      session.waiting.add(abort);
      try {
        raced = await Promise.race([handled, aborted]);
      } finally {
        session.waiting?.delete(abort);
        if (session.waiting?.size === 0) session.waiting = undefined;
      }
    }
    if (!(raced instanceof Response)) {
      // The session closed before the SDK answered (a JSON response still pending).
      handled.catch(() => undefined);
      gate?.close();
      this.#forget(session, call);
      return answer(Answers.sessionClosed(raced, singleId(ids)));
    }
    const response = raced;
    const headers: [string, string][] = [];
    response.headers.forEach((value, name) => {
      headers.push([name, value]);
    });
    if (!response.body) {
      gate?.close();
      this.#forget(session, call);
      return { result: { kind: 'head', status: response.status, headers, hasBody: false }, body: null };
    }
    const isSse = (response.headers.get('content-type') ?? '').includes('text/event-stream');
    const body = this.#guardBody(session, call, response.body, isSse);
    const result: TaskResult = { kind: 'head', status: response.status, headers, hasBody: true };
    if (!isSse || !gate) {
      gate?.close();
      return { result, body };
    }
    if (wire.method === 'GET') session.standalone = gate;
    return { result, body, gate };
  }

  /**
   * Passes the SDK's body through; if the session closes before every request
   * of this call is answered, ends an SSE stream with a JSON-RPC error per
   * unanswered request, naming the reason.
   */
  #guardBody(
    session: Session,
    call: PendingCall,
    inner: ReadableStream<Uint8Array>,
    isSse: boolean,
  ): ReadableStream<Uint8Array> {
    const reader = inner.getReader();
    return new ReadableStream<Uint8Array>({
      pull: async (controller) => {
        const { done, value } = await reader.read();
        if (!done) {
          controller.enqueue(value);
          return;
        }
        if (isSse && session.reason && call.ids.size > 0) {
          for (const id of call.ids) {
            const event = `event: message\ndata: ${JSON.stringify(sessionClosedError(session.reason, id))}\n\n`;
            controller.enqueue(encoder.encode(event));
          }
        }
        this.#forget(session, call);
        controller.close();
      },
      cancel: async (reason) => {
        this.#forget(session, call);
        await reader.cancel(reason);
      },
    });
  }

  #forget(session: Session, call: PendingCall): void {
    for (const id of call.ids) session.pending?.delete(id);
    if (session.pending?.size === 0) session.pending = undefined;
    call.ids.clear();
  }

  // ---- closing -----------------------------------------------------------------

  /** Closes a session's transport at the broker's request (OwnerControl.close). */
  async close(ref: SessionRef, reason: CloseReason): Promise<void> {
    const session = this.#bySlot.get(ref.slot);
    if (session && session.ref.gen === ref.gen) return this.#close(session, reason);
    const building = this.#building.get(ref.slot);
    if (building && building.gen === ref.gen) {
      // Admitted, factory still running: it is closed as soon as it exists.
      building.reason ??= reason;
      await building.settled;
      return;
    }
    this.#tombstones.set(ref.slot, { gen: ref.gen, reason });
  }

  async #close(session: Session, reason: CloseReason): Promise<void> {
    if (!session.reason) session.reason = reason;
    for (const abort of session.waiting ?? []) abort(session.reason);
    try {
      await session.server.close();
    } catch (error) {
      this.#opts.onError?.(error);
      this.#onTransportClosed(session);
    }
    if (this.#sessions.get(session.id) !== session) return;
    // Still closing (a transport closes once the SDK is done with it): wait for it.
    session.gone ??= [];
    const gone = session.gone;
    await new Promise<void>((resolve) => {
      gone.push(resolve);
    });
  }

  /** The transport closed, for whatever reason: forget the session, then tell the broker. */
  #onTransportClosed(session: Session): void {
    if (this.#sessions.get(session.id) !== session) return;
    this.#sessions.delete(session.id);
    this.#bySlot.delete(session.ref.slot);
    this.#opts.index.addTransports(this.#lane, -1);
    // Its events can never be replayed now: give their bytes back to the budget.
    session.eventStore?.dispose();
    const initiatedHere = !session.reason || session.reason === 'deleted';
    const reason = session.reason ?? 'error';
    session.reason = reason;
    // Requests still waiting for an answer end now, whatever closed the session.
    for (const abort of session.waiting ?? []) abort(reason);
    for (const resolve of session.gone ?? []) resolve();
    session.gone = undefined;
    // A close the broker asked for is confirmed by the broker itself when close() resolves.
    if (initiatedHere) void Promise.resolve(this.#opts.broker.closed(session.ref, reason)).catch(this.#opts.onError);
  }
}

/**
 * The answer to an initialize whose session was closed before it answered: a
 * shutdown refuses it as such (503, try again elsewhere or later); any other
 * close is named.
 */
function closedBeforeAnswered(reason: CloseReason, id: JsonRpcId): HttpAnswer {
  if (reason === 'shutdown') {
    return refusalAnswer({ ok: false, reason: 'shutting_down', retryAfterMs: MIN_RETRY_AFTER_MS }, id);
  }
  return Answers.sessionClosed(reason, id);
}

function answer(a: HttpAnswer): Dispatched {
  return { result: { kind: 'answer', answer: a }, body: null };
}

function messagesOf(body: unknown): unknown[] {
  if (body === undefined) return [];
  return Array.isArray(body) ? body : [body];
}

function requestIdOf(body: unknown): JsonRpcId {
  if (typeof body === 'object' && body !== null && !Array.isArray(body)) {
    const id = (body as { id?: unknown }).id;
    if (typeof id === 'string' || typeof id === 'number') return id;
  }
  return null;
}

function singleId(ids: Set<RequestId>): JsonRpcId {
  if (ids.size !== 1) return null;
  const [id] = ids;
  return id ?? null;
}
