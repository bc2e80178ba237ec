/**
 * Options of the public API, their defaults, and eager validation.
 */
import type { IncomingMessage } from 'node:http';
import { isAbsolute, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import {
  type AdmissionOptions,
  duration,
  positiveInteger,
  type ResolvedAdmissionOptions,
  resolveAdmissionOptions,
} from '../broker/index.js';
import type { AuthOptions } from './auth.js';
import { defaultThreads } from './dispatch.js';
import { DEFAULT_EVENT_STORE_LIMITS, type EventStoreLimits } from './event-store.js';
import type { ServerFactory } from './host.js';
import type { OriginPolicy } from './origin.js';
import type { StreamLimits } from './stream.js';

export interface SessionBrokerOptions extends AdmissionOptions {
  /**
   * The server module (path or file URL) whose default export builds one
   * `McpServer` per session; it runs in the handler threads. Relative paths
   * resolve against the current directory.
   * @default the built-in example server (tools echo, add, sha)
   */
  module?: string | URL;
  /** A factory function instead of a module; only with `threads: 0` (functions cannot cross threads). */
  factory?: ServerFactory;
  /**
   * Handler threads in the pool; 0 runs everything on the calling thread
   * (no broker worker, no pool: for embedding in an existing app).
   * @default os.availableParallelism()
   */
  threads?: number;
  /**
   * How long the factory may take to build a session's server, ms; past it the
   * initialize gets 500, the session is closed (reason `error`) and its rate
   * token refunded, and a server it builds later is closed.
   * @default 30_000
   */
  factoryTimeoutMs?: number;
  /** Largest request body accepted, in bytes; larger gets 413. @default 4 MiB */
  maxBodyBytes?: number;
  /** Answer POSTs with JSON instead of an SSE stream. @default false */
  jsonResponse?: boolean;
  /** Requests dispatched to one handler thread and not yet answered, beyond which requests get 503. @default 1024 */
  maxPendingPerThread?: number;
  /** Bytes of a response the listener may hold unacknowledged per stream. @default 256 KiB */
  streamWindowBytes?: number;
  /** Bytes a response stream may buffer for a client that does not read before it is aborted. @default 4 MiB */
  maxStreamBufferBytes?: number;
  /** Allowed CORS origin (`*` for any); CORS is off when unset. Exposes `Mcp-Session-Id`. */
  cors?: string;
  /**
   * SSE resumability: every transport gets a bounded in-memory event store, so
   * a client can resume a dropped stream with `Last-Event-ID`. The store keeps
   * the last `maxEventsPerStream` events of the `maxStreams` most recently
   * written streams of a session, at most `maxBytesPerSession` bytes of them
   * (the session's oldest events go first), and all sessions together at most
   * `maxTotalBytes` (across threads); it is dropped with the session. Bytes are
   * the size of a message as JSON in UTF-8. An event larger than
   * `maxBytesPerSession`, or that does not fit in what other sessions leave of
   * `maxTotalBytes`, is sent but not stored: resuming from before it is
   * refused like an unknown event id (400). `maxBytesPerSession` defaults to
   * 1 MiB, or `maxTotalBytes` if that is smaller, and may not exceed it.
   * `false` turns resumability off.
   * @default { maxEventsPerStream: 32, maxStreams: 8, maxBytesPerSession: 1 MiB, maxTotalBytes: 64 MiB }
   */
  resumability?: Partial<EventStoreLimits> | false;
  /**
   * Derives the client key of a request (for per-client limits and events).
   * @default the authenticated principal (`req.auth`, see `auth`), else the remote address
   */
  clientKey?: (req: IncomingMessage) => string;
  /**
   * Proxy hops in front of the server whose `X-Forwarded-For` entries are
   * trusted for the client address. Only set this behind proxies you run: a
   * client can write any `X-Forwarded-For` it likes.
   * @default 0
   */
  trustProxy?: number;
  /**
   * Require a bearer token on every request, checked with the SDK's
   * `requireBearerAuth` (401 with `WWW-Authenticate` without a valid one). The
   * verified principal becomes the client key, and each session is bound to the
   * principal that created it: any other (or none) gets 404 for it.
   */
  auth?: AuthOptions;
  /** Accepted `Host` headers (`name` or `name:port`); others get 403. @default any (serve(): loopback names when bound to loopback) */
  allowedHosts?: string[];
  /** Accepted `Origin` headers (exact); others get 403, requests without one pass. @default any (serve(): loopback origins when bound to loopback) */
  allowedOrigins?: string[];
  /** Run on a manual clock shared by all threads (tests); drive it with `broker.clock`. @default false */
  manualClock?: boolean;
}

export interface ResolvedSessionBrokerOptions {
  readonly admission: ResolvedAdmissionOptions;
  readonly module: string | undefined;
  readonly factory: ServerFactory | undefined;
  readonly threads: number;
  readonly maxBodyBytes: number;
  readonly jsonResponse: boolean;
  readonly factoryTimeoutMs: number;
  readonly maxPendingPerThread: number;
  readonly streamLimits: StreamLimits;
  readonly cors: string | undefined;
  readonly eventStore: EventStoreLimits | undefined;
  readonly clientKey: ((req: IncomingMessage) => string) | undefined;
  readonly trustProxy: number;
  readonly auth: AuthOptions | undefined;
  readonly originPolicy: OriginPolicy;
  readonly manualClock: boolean;
}

export const SESSION_BROKER_DEFAULTS = {
  maxBodyBytes: 4 * 1024 * 1024,
  jsonResponse: false,
  factoryTimeoutMs: 30_000,
  maxPendingPerThread: 1024,
  streamWindowBytes: 256 * 1024,
  maxStreamBufferBytes: 4 * 1024 * 1024,
} as const;

const MAX_THREADS = 256;

export function resolveSessionBrokerOptions(options: SessionBrokerOptions): ResolvedSessionBrokerOptions {
  const admission = resolveAdmissionOptions(options);
  let threads = defaultThreads();
  if (options.threads !== undefined) {
    if (typeof options.threads !== 'number') throw new TypeError('options.threads must be a non-negative integer');
    if (!Number.isInteger(options.threads) || options.threads < 0 || options.threads > MAX_THREADS) {
      throw new RangeError(`options.threads must be an integer from 0 to ${MAX_THREADS}`);
    }
    threads = options.threads;
  }
  if (options.factory !== undefined) {
    if (typeof options.factory !== 'function') throw new TypeError('options.factory must be a function');
    if (threads !== 0)
      throw new RangeError('options.factory needs threads: 0 (use options.module with handler threads)');
    if (options.module !== undefined) throw new TypeError('options.module and options.factory are mutually exclusive');
  }
  let module: string | undefined;
  if (options.module !== undefined) {
    if (options.module instanceof URL) module = options.module.href;
    else if (typeof options.module === 'string' && options.module.length > 0) {
      module =
        /^[a-z][a-z0-9+.-]*:/i.test(options.module) && !isAbsolute(options.module)
          ? options.module
          : pathToFileURL(resolve(options.module)).href;
    } else throw new TypeError('options.module must be a path or a URL');
  }
  const bool = (name: string, value: unknown, fallback: boolean): boolean => {
    if (value === undefined) return fallback;
    if (typeof value !== 'boolean') throw new TypeError(`options.${name} must be a boolean`);
    return value;
  };
  const int = (name: string, value: unknown, fallback: number): number =>
    value === undefined ? fallback : positiveInteger(name, value);
  if (options.cors !== undefined && (typeof options.cors !== 'string' || options.cors.length === 0)) {
    throw new TypeError('options.cors must be an origin string (or "*")');
  }
  if (options.clientKey !== undefined && typeof options.clientKey !== 'function') {
    throw new TypeError('options.clientKey must be a function (req) => string');
  }
  let trustProxy = 0;
  if (options.trustProxy !== undefined) {
    if (typeof options.trustProxy !== 'number')
      throw new TypeError('options.trustProxy must be a non-negative integer');
    if (!Number.isInteger(options.trustProxy) || options.trustProxy < 0 || options.trustProxy > 16) {
      throw new RangeError('options.trustProxy must be an integer from 0 to 16');
    }
    trustProxy = options.trustProxy;
  }
  if (options.auth !== undefined) {
    if (
      typeof options.auth !== 'object' ||
      options.auth === null ||
      typeof options.auth.verifier?.verifyAccessToken !== 'function'
    ) {
      throw new TypeError('options.auth must be { verifier: { verifyAccessToken(token) } }');
    }
  }
  const list = (name: string, value: unknown): string[] | undefined => {
    if (value === undefined) return undefined;
    if (!Array.isArray(value) || value.some((v) => typeof v !== 'string' || v.length === 0)) {
      throw new TypeError(`options.${name} must be an array of non-empty strings`);
    }
    return value.map((v: string) => (name === 'allowedHosts' ? v.toLowerCase() : v));
  };
  const originPolicy: OriginPolicy = {
    allowedHosts: list('allowedHosts', options.allowedHosts),
    allowedOrigins: list('allowedOrigins', options.allowedOrigins),
  };
  const streamWindowBytes = int(
    'streamWindowBytes',
    options.streamWindowBytes,
    SESSION_BROKER_DEFAULTS.streamWindowBytes,
  );
  const maxBufferedBytes = int(
    'maxStreamBufferBytes',
    options.maxStreamBufferBytes,
    SESSION_BROKER_DEFAULTS.maxStreamBufferBytes,
  );
  let eventStore: EventStoreLimits | undefined;
  if (options.resumability !== false) {
    const r = options.resumability ?? {};
    if (typeof r !== 'object' || r === null) throw new TypeError('options.resumability must be an object or false');
    const maxTotalBytes = int('resumability.maxTotalBytes', r.maxTotalBytes, DEFAULT_EVENT_STORE_LIMITS.maxTotalBytes);
    const maxBytesPerSession = int(
      'resumability.maxBytesPerSession',
      r.maxBytesPerSession,
      Math.min(DEFAULT_EVENT_STORE_LIMITS.maxBytesPerSession, maxTotalBytes),
    );
    if (maxBytesPerSession > maxTotalBytes) {
      throw new RangeError(
        'options.resumability.maxBytesPerSession must not exceed options.resumability.maxTotalBytes',
      );
    }
    eventStore = {
      maxEventsPerStream: int(
        'resumability.maxEventsPerStream',
        r.maxEventsPerStream,
        DEFAULT_EVENT_STORE_LIMITS.maxEventsPerStream,
      ),
      maxStreams: int('resumability.maxStreams', r.maxStreams, DEFAULT_EVENT_STORE_LIMITS.maxStreams),
      maxBytesPerSession,
      maxTotalBytes,
    };
  }
  return {
    admission,
    module,
    factory: options.factory,
    threads,
    maxBodyBytes: int('maxBodyBytes', options.maxBodyBytes, SESSION_BROKER_DEFAULTS.maxBodyBytes),
    jsonResponse: bool('jsonResponse', options.jsonResponse, SESSION_BROKER_DEFAULTS.jsonResponse),
    factoryTimeoutMs: duration(
      'factoryTimeoutMs',
      options.factoryTimeoutMs,
      SESSION_BROKER_DEFAULTS.factoryTimeoutMs,
      false,
    ),
    maxPendingPerThread: int(
      'maxPendingPerThread',
      options.maxPendingPerThread,
      SESSION_BROKER_DEFAULTS.maxPendingPerThread,
    ),
    streamLimits: { windowBytes: streamWindowBytes, maxBufferedBytes },
    cors: options.cors,
    eventStore,
    clientKey: options.clientKey,
    trustProxy,
    auth: options.auth,
    originPolicy,
    manualClock: bool('manualClock', options.manualClock, false),
  };
}

export interface ServeOptions extends SessionBrokerOptions {
  /** Interface to listen on. @default '127.0.0.1' */
  host?: string;
  /** Port to listen on; 0 picks a free port. @default 3000 */
  port?: number;
  /** Path of the MCP endpoint. @default '/mcp' */
  path?: string;
  /** How long shutdown lets in-flight requests finish before closing sessions, ms. @default 10_000 */
  shutdownTimeoutMs?: number;
  /** Serve `/metrics` on this port instead of the main one. */
  metricsPort?: number;
  /** Where lifecycle lines go (`created` / `closed`); `false` for none. @default console.error */
  log?: ((line: string) => void) | false;
  /** Time allowed to receive a request's headers (slow-header attacks), ms. @default 10_000 */
  headersTimeoutMs?: number;
  /** Time allowed to receive a whole request, headers and body, ms. @default 30_000 */
  requestTimeoutMs?: number;
  /** Largest request head (request line and headers), bytes; larger gets 431. @default 16 KiB */
  maxHeaderBytes?: number;
}

export interface ResolvedServeOptions {
  readonly host: string;
  readonly port: number;
  readonly path: string;
  readonly shutdownTimeoutMs: number;
  readonly metricsPort: number | undefined;
  readonly log: ((line: string) => void) | undefined;
  readonly headersTimeoutMs: number;
  readonly requestTimeoutMs: number;
  readonly maxHeaderBytes: number;
}

export const SERVE_DEFAULTS = {
  host: '127.0.0.1',
  port: 3000,
  path: '/mcp',
  shutdownTimeoutMs: 10_000,
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 30_000,
  maxHeaderBytes: 16 * 1024,
} as const;

export function resolveServeOptions(options: ServeOptions): ResolvedServeOptions {
  const port = (name: string, value: unknown, fallback: number | undefined) => {
    if (value === undefined) return fallback;
    if (typeof value !== 'number') throw new TypeError(`options.${name} must be a port number`);
    if (!Number.isInteger(value) || value < 0 || value > 65535)
      throw new RangeError(`options.${name} must be an integer from 0 to 65535`);
    return value;
  };
  const host = options.host ?? SERVE_DEFAULTS.host;
  if (typeof host !== 'string' || host.length === 0) throw new TypeError('options.host must be a non-empty string');
  const path = options.path ?? SERVE_DEFAULTS.path;
  if (typeof path !== 'string' || !path.startsWith('/'))
    throw new TypeError('options.path must be a string starting with /');
  if (options.log !== undefined && options.log !== false && typeof options.log !== 'function') {
    throw new TypeError('options.log must be a function or false');
  }
  return {
    host,
    port: port('port', options.port, SERVE_DEFAULTS.port) as number,
    path,
    shutdownTimeoutMs: duration('shutdownTimeoutMs', options.shutdownTimeoutMs, SERVE_DEFAULTS.shutdownTimeoutMs, true),
    metricsPort: port('metricsPort', options.metricsPort, undefined),
    log: options.log === false ? undefined : (options.log ?? ((line: string) => console.error(line))),
    headersTimeoutMs: duration('headersTimeoutMs', options.headersTimeoutMs, SERVE_DEFAULTS.headersTimeoutMs, false),
    requestTimeoutMs: duration('requestTimeoutMs', options.requestTimeoutMs, SERVE_DEFAULTS.requestTimeoutMs, false),
    maxHeaderBytes:
      options.maxHeaderBytes === undefined
        ? SERVE_DEFAULTS.maxHeaderBytes
        : positiveInteger('maxHeaderBytes', options.maxHeaderBytes, 1024 * 1024),
  };
}
