/**
 * The request front: everything done with an HTTP request to the MCP endpoint
 * before and after its session's owner runs it. It answers what it can without
 * a hop (unknown session, missing id, bad headers, bad JSON, too large, at the
 * in-flight limit), hands the rest to a `Dispatcher`, and writes the answer
 * back. One code path wherever requests are received: the listener thread
 * (`SessionBroker`), or each handler thread when they listen themselves.
 */
import { once } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { AuthInfo } from '@modelcontextprotocol/sdk/server/auth/types.js';
import type { SessionIndex } from '../../broker/index.js';
import { Answers, type HttpAnswer, refusalAnswer, sessionClosedError } from '../../shared/jsonrpc.js';
import type { TaskResult, WireRequest } from '../../shared/messages.js';
import { MIN_RETRY_AFTER_MS, type Refused, type SessionRef } from '../../shared/types.js';
import { type Authenticate, cloneableAuth } from './auth.js';
import type { ClientKeys } from './clients.js';
import type { Dispatcher, Routed } from './dispatch.js';
import { ErrorLog } from './log.js';
import type { ResolvedSessionBrokerOptions } from './options.js';
import { checkOrigin } from './origin.js';
import type { PeerRouter } from './peers.js';
import { checkGetHeaders, checkPostBody, checkPostHeaders, checkPostMessage } from './preflight.js';
import { pipePortToResponse } from './receive.js';

type TaskHeaders = Extract<TaskResult, { kind: 'head' }>['headers'];

/** The answer to an initialize whose thread died before answering it. */
const LOST_INITIALIZE: Refused = { ok: false, reason: 'owner_gone', retryAfterMs: 1_000 };

/** The session a request names, as the index found it. */
interface Named {
  readonly id: string;
  readonly ref: SessionRef;
  readonly binding: readonly [number, number] | undefined;
}

/** Requests refused or lost by the front itself (not by the broker), for metrics. */
export interface FrontCounters {
  /** 503: the owner thread's dispatch queue was full. */
  queueFull: number;
  /** Clients that went away before their request body arrived whole (not an error: counted, not logged). */
  clientAborts: number;
  /** 429: the session already had `maxInFlightPerSession` requests in flight. */
  inFlightLimited: number;
  /** Requests passed from the thread that received them to their session's owner thread (per-thread listeners only). */
  handedOff: number;
}

/**
 * Headers of the SDK's response that describe its own connection, not ours:
 * Node sets them for the real socket (honouring the client's `Connection: close`).
 */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'transfer-encoding']);

/** The options the front reads. */
export type FrontOptions = Pick<
  ResolvedSessionBrokerOptions,
  'cors' | 'originPolicy' | 'maxBodyBytes' | 'maxInFlightPerSession'
>;

export interface FrontParts {
  readonly opts: FrontOptions;
  readonly index: SessionIndex;
  readonly dispatcher: Dispatcher;
  readonly clients: ClientKeys;
  readonly authenticate: Authenticate | undefined;
  /** Whether new requests are served: `closing` and `failed` answer 503. */
  readonly status: () => 'open' | 'closing' | 'failed';
  /** Where the refusal counts go (the caller may share them). */
  readonly counters: FrontCounters;
  /** Routes requests for other processes' sessions to them (under a host's authority only). */
  readonly peers?: PeerRouter | undefined;
}

export class Front {
  readonly #opts: FrontOptions;
  readonly #index: SessionIndex;
  readonly #dispatcher: Dispatcher;
  readonly #clients: ClientKeys;
  readonly #authenticate: Authenticate | undefined;
  readonly #status: () => 'open' | 'closing' | 'failed';
  readonly #counters: FrontCounters;
  readonly #peers: PeerRouter | undefined;
  readonly #log = new ErrorLog();
  /** Every response not yet closed (GET streams included), destroyed at the end of shutdown. */
  readonly #active = new Set<ServerResponse>();
  /** POST and DELETE responses in flight: shutdown lets these finish. */
  #inFlight = 0;
  #drained: (() => void) | undefined;
  /** The last request handled on each connection: requests on one connection run in order. */
  readonly #lastOnSocket = new WeakMap<Socket, ServerResponse>();

  constructor(parts: FrontParts) {
    this.#opts = parts.opts;
    this.#index = parts.index;
    this.#dispatcher = parts.dispatcher;
    this.#clients = parts.clients;
    this.#authenticate = parts.authenticate;
    this.#status = parts.status;
    this.#counters = parts.counters;
    this.#peers = parts.peers;
  }

  /** Resolves once no POST or DELETE is in flight, or after `timeoutMs`. */
  async drain(timeoutMs: number): Promise<void> {
    if (this.#inFlight === 0) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, timeoutMs);
      this.#drained = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  /**
   * Lets the responses still open (closed transports end their streams, GET
   * included) reach their clients for up to `ms`, then destroys what is left.
   */
  async flush(ms: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.all([...this.#active].map((res) => (res.closed ? undefined : once(res, 'close')))),
      new Promise((resolve) => {
        timer = setTimeout(resolve, ms);
      }),
    ]);
    clearTimeout(timer);
    for (const res of this.#active) res.destroy();
  }

  /**
   * Handles one request to the MCP endpoint (node:http or express). With a
   * body parser in front, pass its result as `parsedBody`.
   */
  async handle(req: IncomingMessage, res: ServerResponse, parsedBody?: unknown, routed = false): Promise<void> {
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
      const status = this.#status();
      if (status === 'closing') return send(res, Answers.shuttingDown());
      if (status === 'failed') return send(res, Answers.brokerFailed());
      const forbidden = checkOrigin(req, this.#opts.originPolicy);
      if (forbidden) return send(res, forbidden);
      if (this.#authenticate && !(await this.#authenticate(req, res))) return;
      await this.#route(req, res, parsedBody, routed);
    } catch (error) {
      this.#log.report('request failed', error);
      if (!res.headersSent) send(res, Answers.internal('request failed'));
      else res.destroy();
    }
  }

  /** Finds the session a request names (404 when it names one that does not exist), then hands it to its method. */
  async #route(req: IncomingMessage, res: ServerResponse, parsedBody: unknown, routed: boolean): Promise<void> {
    const method = req.method ?? 'GET';
    if (method !== 'GET' && method !== 'POST' && method !== 'DELETE') return send(res, Answers.methodNotAllowed());
    const rawId = req.headers['mcp-session-id'];
    const sessionId = Array.isArray(rawId) ? rawId[0] : rawId;
    // Another process's session (its index is in the id): passed to it, never looked up here.
    // A request that was itself forwarded is never passed on again.
    const peer = sessionId !== undefined && !routed ? this.#peers?.ownerOf(sessionId) : undefined;
    if (peer !== undefined && this.#peers) {
      this.#active.add(res);
      res.once('close', () => this.#active.delete(res));
      if (method !== 'GET') this.#trackInFlight(res);
      this.#peers.forward(req, res, peer, parsedBody);
      return;
    }
    const binding = this.#clients.bindingOf(req);
    let named: Named | undefined;
    if (sessionId !== undefined) {
      const found = this.#index.lookup(sessionId, binding);
      if (!found.ok) return send(res, Answers.sessionNotFound(null, found.miss));
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
    const index = this.#index;
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
    return this.#enterAndForward(res, named, () =>
      this.#dispatcher.session(named.id, named.ref, this.#index.owner(named.ref), request),
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
    const index = this.#index;
    const still = index.lookup(named.id, named.binding);
    if (!still.ok) return send(res, Answers.sessionNotFound(check.id, still.miss));
    // The same id names the same slot and generation: `named.ref` is still the session's.
    return this.#enterAndForward(
      res,
      named,
      () => this.#dispatcher.session(named.id, named.ref, index.owner(named.ref), request),
      check.id,
    );
  }

  /** A POST or DELETE is in flight from dispatch until its response has ended (or the client left). */
  async #enterAndForward(
    res: ServerResponse,
    named: Named,
    run: () => Promise<Routed>,
    id: string | number | null = null,
  ) {
    const ref = named.ref;
    const entered = this.#index.enter(ref, this.#opts.maxInFlightPerSession);
    if (entered === 'gone') {
      // Closed since it was looked up: a second look says why, if the index knows.
      const again = this.#index.lookup(named.id, named.binding);
      return send(res, Answers.sessionNotFound(id, again.ok ? undefined : again.miss));
    }
    if (entered === 'limited') {
      this.#counters.inFlightLimited++;
      return send(res, refusalAnswer({ reason: 'in_flight_limited', retryAfterMs: MIN_RETRY_AFTER_MS }, id));
    }
    this.#leaveAtEnd(res, ref);
    this.#trackInFlight(res);
    return this.#forward(res, run, id);
  }

  /**
   * The session's request leaves just before the response's last bytes are
   * written (or when the response closes first), not on its 'close' event,
   * which comes later: a client that has read the whole answer never finds
   * its request still in flight (its session busy, not idle) (ADR 22).
   */
  #leaveAtEnd(res: ServerResponse, ref: SessionRef): void {
    let left = false;
    const leave = () => {
      if (left) return;
      left = true;
      this.#index.leave(ref);
    };
    const end = res.end as (...args: unknown[]) => ServerResponse;
    res.end = ((...args: unknown[]) => {
      leave();
      return end.apply(res, args);
    }) as ServerResponse['end'];
    res.once('close', leave);
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
      if (res.closed) this.#index.leave(created);
      else this.#leaveAtEnd(res, created);
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
