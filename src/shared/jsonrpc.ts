/**
 * The JSON-RPC error envelope, built in one place, and the one mapping from
 * refusals and request faults to HTTP answers. Every error body the broker
 * sends is a JSON-RPC error object (`id` null unless the request's id is known).
 */
import { type CloseReason, type FrontRefusal, MIN_RETRY_AFTER_MS, type Refused } from './types.js';

export type JsonRpcId = string | number | null;

/** JSON-RPC error codes used by the broker. */
export const ErrorCode = {
  ParseError: -32700,
  InvalidRequest: -32600,
  /** Generic server error (transport-level refusals, as the MCP SDK uses it). */
  ServerError: -32000,
  /** Session not found (unknown, evicted, expired or deleted session id). */
  SessionNotFound: -32001,
  InternalError: -32603,
} as const;

/** An HTTP answer: status, headers and a JSON body. */
export interface HttpAnswer {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
}

export function jsonRpcError(code: number, message: string, id: JsonRpcId = null, data?: unknown) {
  const error: { code: number; message: string; data?: unknown } = { code, message };
  if (data !== undefined) error.data = data;
  return { jsonrpc: '2.0' as const, error, id };
}

/** Builds an HTTP answer carrying a JSON-RPC error. */
export function errorAnswer(
  status: number,
  code: number,
  message: string,
  options: { id?: JsonRpcId; headers?: Record<string, string>; data?: unknown } = {},
): HttpAnswer {
  return {
    status,
    headers: { 'content-type': 'application/json', ...options.headers },
    body: JSON.stringify(jsonRpcError(code, message, options.id ?? null, options.data)),
  };
}

/** Seconds for a `Retry-After` header: rounded up, at least 1. */
export function retryAfterSeconds(ms: number): number {
  return Math.ceil(Math.max(MIN_RETRY_AFTER_MS, ms) / 1000);
}

/**
 * Status and message per refusal reason: 429 for rates and for what one client
 * or one session holds, 503 for the server's capacity and for a server that
 * cannot take the session now (shutting down, its thread gone).
 */
const REFUSALS = {
  rate_limited: [429, 'Too many new sessions: session creation rate limit reached'],
  full: [503, 'Session limit reached and no session can be evicted'],
  client_rate_limited: [429, 'Too many new sessions from this client'],
  client_full: [429, 'Too many sessions for this client and none can be evicted'],
  shutting_down: [503, 'Server is shutting down'],
  owner_gone: [503, 'The thread that was to hold this session is gone and is being replaced: try again'],
  unavailable: [503, 'The session authority is unreachable: no new sessions until it is back'],
  queue_full: [503, 'Server busy: request queue is full'],
  in_flight_limited: [429, 'Too many requests in flight for this session'],
  connections_full: [503, 'Server busy: too many open connections'],
  address_full: [429, 'Too many open connections or requests from this address'],
} as const satisfies Record<Refused['reason'] | FrontRefusal['reason'], readonly [number, string]>;

/**
 * The one mapping from a refusal (an admission's, or the HTTP front's) to its
 * HTTP answer (429 or 503, with `Retry-After`).
 */
export function refusalAnswer(refused: Refused | FrontRefusal, id: JsonRpcId = null): HttpAnswer {
  const [status, message] = REFUSALS[refused.reason];
  return errorAnswer(status, ErrorCode.ServerError, message, {
    id,
    headers: { 'retry-after': String(retryAfterSeconds(refused.retryAfterMs)) },
    data: { reason: refused.reason, retryAfterMs: refused.retryAfterMs },
  });
}

/** What a 404 for a closed session says happened to it (after "Session not found: "). */
const CLOSED_BECAUSE: Readonly<Record<CloseReason, string>> = {
  deleted: 'it was deleted',
  evicted: "it was evicted (the server's session limit was reached)",
  idle: 'it expired (idle)',
  lifetime: 'it expired (maximum lifetime reached)',
  shutdown: 'the server closed it at shutdown',
  error: 'it was closed after a server error',
};

/** Answers for request faults detected before anything reaches a session. */
export const Answers = {
  /**
   * 404 for a request naming a session that is not live. With the reason it
   * was closed (known only to a request that presented its whole id): the
   * message says so and `data.reason` carries it; without, the generic answer.
   */
  sessionNotFound: (id: JsonRpcId = null, reason?: CloseReason | 'malformed' | 'unknown') =>
    reason && reason !== 'malformed' && reason !== 'unknown'
      ? errorAnswer(
          404,
          ErrorCode.SessionNotFound,
          `Session not found: ${CLOSED_BECAUSE[reason]}. Start a new session with initialize`,
          { id, data: { reason } },
        )
      : errorAnswer(404, ErrorCode.SessionNotFound, 'Session not found', { id }),
  missingSessionId: (id: JsonRpcId = null) =>
    errorAnswer(400, ErrorCode.ServerError, 'Bad Request: Mcp-Session-Id header is required', { id }),
  parseError: () => errorAnswer(400, ErrorCode.ParseError, 'Parse error: Invalid JSON'),
  tooDeep: (maxDepth: number) =>
    errorAnswer(400, ErrorCode.ParseError, `Parse error: JSON nested deeper than ${maxDepth} levels`),
  invalidJsonRpc: (id: JsonRpcId = null) =>
    errorAnswer(400, ErrorCode.ParseError, 'Parse error: Invalid JSON-RPC message', { id }),
  invalidMessage: (detail: string, id: JsonRpcId = null) =>
    errorAnswer(400, ErrorCode.InvalidRequest, `Invalid Request: ${detail}`, { id }),
  badRequest: (detail: string, id: JsonRpcId = null) =>
    errorAnswer(400, ErrorCode.ServerError, `Bad Request: ${detail}`, { id }),
  tooLarge: (maxBytes: number) =>
    errorAnswer(413, ErrorCode.ServerError, `Payload Too Large: request body must not exceed ${maxBytes} bytes`),
  notAcceptable: (what: string) =>
    errorAnswer(406, ErrorCode.ServerError, `Not Acceptable: Client must accept ${what}`),
  unsupportedMediaType: () =>
    errorAnswer(415, ErrorCode.ServerError, 'Unsupported Media Type: Content-Type must be application/json'),
  methodNotAllowed: () =>
    errorAnswer(405, ErrorCode.ServerError, 'Method not allowed', { headers: { allow: 'GET, POST, DELETE' } }),
  notFound: () => errorAnswer(404, ErrorCode.ServerError, 'Not found'),
  forbidden: (detail: string) => errorAnswer(403, ErrorCode.ServerError, detail),
  requestTimeout: () =>
    errorAnswer(408, ErrorCode.ServerError, 'Request Timeout', { headers: { connection: 'close' } }),
  headersTooLarge: () =>
    errorAnswer(431, ErrorCode.ServerError, 'Request Header Fields Too Large', { headers: { connection: 'close' } }),
  /** Any request once a shutdown was asked for (the same answer as an admission refused for it). */
  shuttingDown: (id: JsonRpcId = null) => {
    const refused = refusalAnswer({ ok: false, reason: 'shutting_down', retryAfterMs: 1000 }, id);
    return { ...refused, headers: { ...refused.headers, connection: 'close' } };
  },
  /** Any request that needs the session broker while it is still starting (`serve()` with port 0). */
  starting: () =>
    errorAnswer(503, ErrorCode.ServerError, 'Server is starting', {
      headers: { 'retry-after': '1' },
      data: { reason: 'starting', retryAfterMs: 1000 },
    }),
  /** Any request once the broker worker has died: the process cannot admit sessions again. */
  brokerFailed: () =>
    errorAnswer(503, ErrorCode.ServerError, 'Server unavailable: the session broker stopped', {
      headers: { 'retry-after': '1' },
      data: { reason: 'broker_failed' },
    }),
  internal: (detail: string, id: JsonRpcId = null) =>
    errorAnswer(500, ErrorCode.InternalError, `Internal error: ${detail}`, { id }),
  /** An in-flight request whose session was closed under it. */
  sessionClosed: (reason: CloseReason, id: JsonRpcId = null) =>
    errorAnswer(404, ErrorCode.SessionNotFound, `Session closed: ${reason}`, { id, data: { reason } }),
} as const;

/** The JSON-RPC error object for a request still pending when its session closed. */
export function sessionClosedError(reason: CloseReason, id: JsonRpcId) {
  return jsonRpcError(ErrorCode.SessionNotFound, `Session closed: ${reason}`, id, { reason });
}
