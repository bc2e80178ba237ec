/**
 * Options of the public API, their defaults, and eager validation.
 */

import type { IncomingMessage } from 'node:http';
import { isAbsolute, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { DEFAULT_MAX_REQUEST_BODY_SIZE } from '@modelcontextprotocol/sdk/server/requestBody.js';
import {
  type AdmissionOptions,
  checkRedisOptions,
  duration,
  MEMORY_STORE_MODULE,
  positiveInteger,
  REDIS_STORE_MODULE,
  REMOTE_STORE_MODULE,
  type RedisStoreOptions,
  type RemoteStoreOptions,
  type ResolvedAdmissionOptions,
  resolveAdmissionOptions,
} from '../../broker/index.js';
import type { StreamLimits } from '../../shared/messages.js';
import { DEFAULT_EVENT_STORE_LIMITS, type EventStoreLimits } from '../../shared/resume-budget.js';
import type { ServerFactory } from '../host/index.js';
import type { AuthOptions } from './auth.js';
import { defaultMaxConnections } from './connections.js';
import { defaultThreads } from './dispatch.js';
import type { OriginPolicy } from './origin.js';

/** The admission options, which belong to the authority when one is used (`authority`). */
const ADMISSION_KEYS = [
  'maxSessions',
  'evict',
  'rate',
  'idleTimeoutMs',
  'maxLifetimeMs',
  'busyTimeoutMs',
  'perClient',
  'closeTimeoutMs',
] as const satisfies readonly (keyof AdmissionOptions)[];

export interface SessionBrokerOptions extends Omit<AdmissionOptions, 'maxSessions'> {
  /**
   * Most sessions alive at once, across all threads. A session counts from its
   * admission until its transport is closed. Required (a positive integer),
   * except under a host's authority (`authority`), which holds the cap.
   */
  maxSessions?: number;
  /**
   * The host's admission authority (many processes, one limit; ADR 20): a
   * unix socket path, or `HOST:PORT` on TCP. Every admission limit is the
   * authority's (set them where it starts: `startClusterBroker(options)` or
   * `mcp-session-broker broker`), so the admission options must not be set
   * here. Sessions of other processes reach their owner through this one.
   * `clusterAuthority()` gives the address in a `node:cluster` worker.
   */
  authority?: string;
  /** The authority's shared secret (required when it listens on TCP). */
  authoritySecret?: string;
  /**
   * Many hosts, one limit (ADR 21): the Redis every host of the service
   * shares, and this host's private route. The admission options stay here,
   * and every host of a namespace must be given the same ones (a host whose
   * limits differ from what the namespace enforces refuses to start).
   * Needs the `redis` package (or `ioredis`, with `client: 'ioredis'`).
   */
  redis?: RedisStoreOptions;
  /**
   * The server module (path or file URL) whose default export builds one
   * `McpServer` per session; it runs in the handler threads. Relative paths
   * resolve against the current directory.
   * @default the built-in example server (tools echo, add, sha)
   */
  module?: string | URL;
  /**
   * The admission store: a module (path or file URL) exporting
   * `createStore(context)` (see `StoreFactory`). It runs where admission is
   * decided (the broker worker, or this thread with `threads: 0`).
   * @default the built-in memory store: strict, in this process's shared table
   */
  store?: string | URL;
  /** A factory function instead of a module; only with `threads: 0` (functions cannot cross threads). */
  factory?: ServerFactory;
  /**
   * Handler threads in the pool; 0 runs everything on the calling thread
   * (no broker worker, no pool: for embedding in an existing app). With 0 there
   * is no isolation: a tool that loops forever or calls `process.exit` takes
   * the whole server down, and `stallTimeoutMs` does not apply.
   * @default os.availableParallelism()
   */
  threads?: number;
  /**
   * Watchdog: a handler thread whose event loop has not turned for this many
   * milliseconds (a tool in an endless synchronous loop, say) is terminated and
   * replaced. Its sessions close with reason `error`, their requests in flight
   * get a JSON-RPC error, and their capacity is free at once. Long before that,
   * after half of it (at most 1 s) without a heartbeat, the thread gets no new
   * sessions and none of its sessions is picked for eviction, so an admission
   * at capacity never waits on it (it evicts elsewhere, or gets 503 with
   * `Retry-After` at once). Every session of the thread is lost with it: set
   * this above the longest synchronous stretch a tool may legitimately run.
   * 0 turns the watchdog off (a stuck thread then stays stuck, though admission
   * still avoids it). Ignored with `threads: 0`. At least 100 ms.
   * @default 30_000
   */
  stallTimeoutMs?: number;
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
  /**
   * Requests in flight in one session at once (POSTs and DELETEs, from
   * dispatch until the response has ended; the standalone GET stream is not in
   * flight). Beyond it the session's next request gets 429 with
   * `Retry-After: 1`; other sessions are not affected. At most
   * `maxPendingPerThread`; keep it well below, so that one session can never
   * fill its thread's queue alone.
   * @default 64 (or `maxPendingPerThread`, if smaller)
   */
  maxInFlightPerSession?: number;
  /** Bytes of a response the listener may hold unacknowledged per stream. @default 256 KiB */
  streamWindowBytes?: number;
  /**
   * Bytes an SSE response stream may hold for a client that reads slower than
   * the server writes; past it, the server's sends to that stream (the tool's
   * notifications, its result) wait until the client has read. Nothing is
   * dropped. A single message larger than this is still sent whole.
   * @default 1 MiB
   */
  maxStreamBufferBytes?: number;
  /**
   * How long a response may wait for its client to read anything, ms: a
   * stream with bytes waiting whose client has taken none for this long is
   * aborted (the session itself is untouched). A client that reads, however
   * slowly, is never cut off.
   * @default 60_000
   */
  streamStallTimeoutMs?: number;
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
  /** The store module's URL. */
  readonly store: string;
  /** What the store is configured with (the authority's address with `authority`, Redis with `redis`). */
  readonly storeOptions: RemoteStoreOptions | RedisStoreOptions | undefined;
  readonly factory: ServerFactory | undefined;
  readonly threads: number;
  readonly stallTimeoutMs: number;
  readonly maxBodyBytes: number;
  readonly jsonResponse: boolean;
  readonly factoryTimeoutMs: number;
  readonly maxPendingPerThread: number;
  readonly maxInFlightPerSession: number;
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
  stallTimeoutMs: 30_000,
  /** The SDK's own default body limit (4 MiB). */
  maxBodyBytes: DEFAULT_MAX_REQUEST_BODY_SIZE,
  jsonResponse: false,
  factoryTimeoutMs: 30_000,
  maxPendingPerThread: 1024,
  maxInFlightPerSession: 64,
  streamWindowBytes: 256 * 1024,
  maxStreamBufferBytes: 1024 * 1024,
  streamStallTimeoutMs: 60_000,
} as const;

const MAX_THREADS = 256;
/** The shortest stall timeout: below it, heartbeats would cost more than they tell. */
const MIN_STALL_TIMEOUT_MS = 100;

export function resolveSessionBrokerOptions(options: SessionBrokerOptions): ResolvedSessionBrokerOptions {
  if (options.authority !== undefined) {
    if (typeof options.authority !== 'string' || options.authority.length === 0) {
      throw new TypeError('options.authority must be a socket path or HOST:PORT');
    }
    const set = ADMISSION_KEYS.filter((key) => options[key] !== undefined);
    if (set.length > 0) {
      throw new TypeError(
        `options.${set[0]} belongs to the authority: with options.authority, set admission limits where the authority starts`,
      );
    }
    if (options.store !== undefined) throw new TypeError('options.store and options.authority are mutually exclusive');
  }
  if (options.redis !== undefined) {
    if (typeof options.redis !== 'object' || options.redis === null) {
      throw new TypeError('options.redis must be an object { url, advertise, namespace?, client? }');
    }
    checkRedisOptions(options.redis);
    if (options.authority !== undefined)
      throw new TypeError('options.redis and options.authority are mutually exclusive');
    if (options.store !== undefined) throw new TypeError('options.redis and options.store are mutually exclusive');
  }
  if (options.authoritySecret !== undefined && typeof options.authoritySecret !== 'string') {
    throw new TypeError('options.authoritySecret must be a string');
  }
  // Under an authority the process's own table takes the authority's sizes; these are placeholders.
  const admission = resolveAdmissionOptions(
    options.authority === undefined ? { ...options, maxSessions: options.maxSessions as number } : { maxSessions: 1 },
  );
  let threads = defaultThreads();
  if (options.threads !== undefined) {
    if (typeof options.threads !== 'number') throw new TypeError('options.threads must be a non-negative integer');
    if (!Number.isInteger(options.threads) || options.threads < 0 || options.threads > MAX_THREADS) {
      throw new RangeError(`options.threads must be an integer from 0 to ${MAX_THREADS}`);
    }
    threads = options.threads;
  }
  const stallTimeoutMs = duration(
    'stallTimeoutMs',
    options.stallTimeoutMs,
    SESSION_BROKER_DEFAULTS.stallTimeoutMs,
    true,
  );
  if (stallTimeoutMs > 0 && stallTimeoutMs < MIN_STALL_TIMEOUT_MS) {
    throw new RangeError(`options.stallTimeoutMs must be 0 (off) or at least ${MIN_STALL_TIMEOUT_MS} ms`);
  }
  if (options.factory !== undefined) {
    if (typeof options.factory !== 'function') throw new TypeError('options.factory must be a function');
    if (threads !== 0)
      throw new RangeError('options.factory needs threads: 0 (use options.module with handler threads)');
    if (options.module !== undefined) throw new TypeError('options.module and options.factory are mutually exclusive');
  }
  const module = moduleUrl('module', options.module);
  const store =
    options.authority !== undefined
      ? REMOTE_STORE_MODULE
      : options.redis !== undefined
        ? REDIS_STORE_MODULE
        : (moduleUrl('store', options.store) ?? MEMORY_STORE_MODULE);
  const storeOptions: RemoteStoreOptions | RedisStoreOptions | undefined =
    options.authority !== undefined
      ? {
          address: options.authority,
          ...(options.authoritySecret === undefined ? {} : { secret: options.authoritySecret }),
        }
      : options.redis !== undefined
        ? { ...options.redis }
        : undefined;
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
  const maxPendingPerThread = int(
    'maxPendingPerThread',
    options.maxPendingPerThread,
    SESSION_BROKER_DEFAULTS.maxPendingPerThread,
  );
  const maxInFlightPerSession =
    options.maxInFlightPerSession === undefined
      ? Math.min(SESSION_BROKER_DEFAULTS.maxInFlightPerSession, maxPendingPerThread)
      : positiveInteger('maxInFlightPerSession', options.maxInFlightPerSession);
  if (maxInFlightPerSession > maxPendingPerThread) {
    throw new RangeError(
      `options.maxInFlightPerSession must be at most options.maxPendingPerThread (${maxPendingPerThread})`,
    );
  }
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
    store,
    storeOptions,
    factory: options.factory,
    threads,
    stallTimeoutMs,
    maxBodyBytes: int('maxBodyBytes', options.maxBodyBytes, SESSION_BROKER_DEFAULTS.maxBodyBytes),
    jsonResponse: bool('jsonResponse', options.jsonResponse, SESSION_BROKER_DEFAULTS.jsonResponse),
    factoryTimeoutMs: duration(
      'factoryTimeoutMs',
      options.factoryTimeoutMs,
      SESSION_BROKER_DEFAULTS.factoryTimeoutMs,
      false,
    ),
    maxPendingPerThread,
    maxInFlightPerSession,
    streamLimits: {
      windowBytes: streamWindowBytes,
      maxBufferedBytes,
      stallTimeoutMs: duration(
        'streamStallTimeoutMs',
        options.streamStallTimeoutMs,
        SESSION_BROKER_DEFAULTS.streamStallTimeoutMs,
        false,
      ),
    },
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
  /**
   * Most open connections at once, server-wide (each holds a file
   * descriptor). When a new connection would pass it, the connection idle the
   * longest (no request in progress; the SSE streams of GETs and POSTs are in
   * progress) is closed; when none is idle, the new connection's request gets
   * 503 with `Retry-After` and the connection is closed. Keep it below the
   * process's open-file limit (`ulimit -n`), which must also cover the
   * process's own descriptors.
   * @default 10_000, lowered to the process's open-file limit minus 128 when that is known (Linux; half the limit if that is more)
   */
  maxConnections?: number;
  /**
   * Most open connections per remote address; past it the address's own
   * connection idle the longest is closed, else the new one gets 429 with
   * `Retry-After`. With `trustProxy > 0` every connection comes from a proxy,
   * so the bound applies instead to requests in progress (GET streams
   * included) per forwarded client address (429). At most `maxConnections`.
   * Clients behind one NAT share an address: size it for them.
   * @default no bound
   */
  maxConnectionsPerAddress?: number;
  /**
   * Who accepts connections. `threads`: every handler thread listens on the
   * port itself (`reusePort`; Node >= 22.12 on Linux): a request of a session
   * the receiving thread owns, and every initialize, is served with no hop
   * between threads; a request of a session another thread owns is passed to
   * it. `main`: the main thread accepts every connection and passes each
   * request to its session's thread. `auto`: `threads` where it is available
   * and the options allow it (handler threads, no `auth` object (use
   * `authModule`), `clientKey` or `maxConnectionsPerAddress`: these need one
   * place that sees every connection, or functions that cannot cross
   * threads), else `main`.
   * @default 'auto'
   */
  listeners?: 'auto' | 'threads' | 'main';
  /**
   * Like `auth`, from a module (path or file URL) whose default export is the
   * verifier (`{ verifyAccessToken(token) }` or `(token) => AuthInfo`): every
   * handler thread loads it, so per-thread listeners stay available (`auth`,
   * an object with functions, cannot cross threads). Not with `auth`.
   */
  authModule?: string | URL;
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
  readonly maxConnections: number;
  readonly maxConnectionsPerAddress: number | undefined;
  /** Whether the handler threads listen themselves (resolved from `listeners`). */
  readonly threadListeners: boolean;
  /** `authModule` as a file path. */
  readonly authModule: string | undefined;
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

/** The largest `maxConnections` accepted. */
const MAX_CONNECTIONS_LIMIT = 1_000_000;

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
  const maxConnections =
    options.maxConnections === undefined
      ? defaultMaxConnections()
      : positiveInteger('maxConnections', options.maxConnections, MAX_CONNECTIONS_LIMIT);
  const maxConnectionsPerAddress =
    options.maxConnectionsPerAddress === undefined
      ? undefined
      : positiveInteger('maxConnectionsPerAddress', options.maxConnectionsPerAddress, maxConnections);
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
    maxConnections,
    maxConnectionsPerAddress,
    threadListeners: resolveListeners(options, maxConnectionsPerAddress),
    authModule: resolveAuthModule(options),
  };
}

function resolveAuthModule(options: ServeOptions): string | undefined {
  const module = options.authModule;
  if (module === undefined) return undefined;
  if (options.auth !== undefined) throw new TypeError('options.auth and options.authModule are mutually exclusive');
  if (module instanceof URL) {
    if (module.protocol !== 'file:') throw new TypeError('options.authModule must be a path or a file: URL');
    return fileURLToPath(module);
  }
  if (typeof module !== 'string' || module.length === 0) {
    throw new TypeError('options.authModule must be a path or a file: URL');
  }
  return module.startsWith('file:') ? fileURLToPath(module) : module;
}

/**
 * Whether this Node can spread one port's connections over several listening
 * threads: `reusePort` (SO_REUSEPORT) from Node 22.12 and 23.1 (Node 20
 * ignores the option), balanced by the kernel on Linux.
 */
export function reusePortAvailable(version = process.versions.node, platform = process.platform): boolean {
  const [major = 0, minor = 0] = version.split('.').map(Number);
  // 22.12 on the 22 line, 23.1 on the 23 line, and every later major.
  const since = major >= 24 || (major === 23 && minor >= 1) || (major === 22 && minor >= 12);
  return platform === 'linux' && since;
}

function resolveListeners(options: ServeOptions, maxConnectionsPerAddress: number | undefined): boolean {
  const listeners = options.listeners ?? 'auto';
  if (listeners !== 'auto' && listeners !== 'threads' && listeners !== 'main') {
    throw new TypeError("options.listeners must be 'auto', 'threads' or 'main'");
  }
  if (listeners === 'main') return false;
  const obstacle =
    options.threads === 0
      ? 'threads: 0 (no handler threads)'
      : options.auth !== undefined
        ? 'auth (its verifier cannot cross threads: use authModule)'
        : options.clientKey !== undefined
          ? 'clientKey (a function cannot cross threads)'
          : maxConnectionsPerAddress !== undefined
            ? 'maxConnectionsPerAddress (it needs one listener that sees every connection)'
            : options.authority !== undefined || options.redis !== undefined
              ? "authority or redis (requests for other processes' sessions are routed from the main thread)"
              : !reusePortAvailable()
                ? `Node ${process.versions.node} on ${process.platform} (reusePort needs Node >= 22.12 on Linux)`
                : undefined;
  if (obstacle === undefined) return true;
  if (listeners === 'threads') throw new RangeError(`options.listeners 'threads' is not possible with ${obstacle}`);
  return false;
}

/** A module option (path or URL) as a URL string; relative paths resolve against the current directory. */
function moduleUrl(name: string, value: unknown): string | undefined {
  if (value === undefined) return undefined;
  if (value instanceof URL) return value.href;
  if (typeof value !== 'string' || value.length === 0) throw new TypeError(`options.${name} must be a path or a URL`);
  return /^[a-z][a-z0-9+.-]*:/i.test(value) && !isAbsolute(value) ? value : pathToFileURL(resolve(value)).href;
}
