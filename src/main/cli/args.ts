/**
 * Command-line arguments of `mcp-session-broker serve`, parsed to serve() options.
 */
import { parseArgs } from 'node:util';
import type { AdmissionOptions } from '../../broker/index.js';
import type { EvictionPolicy } from '../../shared/types.js';
import type { StandaloneAuthorityOptions } from '../cluster/index.js';
import type { ServeOptions } from '../front/index.js';
import { parseBytes, parseDuration, parseRate } from './units.js';

/** The cap the CLI uses when `--max-sessions` is not given (the API has no default). */
export const CLI_DEFAULT_MAX_SESSIONS = 1000;

export const USAGE = `Usage: mcp-session-broker serve [module] [flags]
       mcp-session-broker broker (--socket PATH | --tcp HOST:PORT --secret SECRET) [limits]

Serves an MCP server over Streamable HTTP with bounded sessions. [module] is a
JavaScript module whose default export is (ctx) => McpServer; without it the
built-in example server (tools echo, add, sha) is served.

Flags:
  --host HOST              interface to listen on (default 127.0.0.1)
  --port N                 port; 0 picks a free one (default 3000)
  --path PATH              MCP endpoint path (default /mcp)
  --threads N              handler threads (default: available cores); 0 = main thread only, with
                           no isolation: a tool that loops forever or calls process.exit takes
                           the whole server down (--stall-timeout needs threads)
  --stall-timeout DURATION replace a handler thread whose event loop is blocked this long; its
                           sessions close with reason error; 0 = off (default 30s)
  --listeners WHO          threads: every handler thread accepts connections itself (reusePort,
                           Node >= 22.12 on Linux); main: the main thread accepts them all; auto:
                           threads where possible (not with --max-connections-per-address or
                           --threads 0), else main (default auto)
  --max-sessions N         most live sessions (default ${CLI_DEFAULT_MAX_SESSIONS})
  --evict POLICY           oldest | idlest | none (default oldest)
  --rate N/DURATION        most sessions created per window, e.g. 20/1m (default: no limit)
  --idle-timeout DURATION  close sessions idle this long; 0 = off (default 30m)
  --max-lifetime DURATION  close sessions this old; 0 = off (default off)
  --busy-timeout DURATION  longest a request in flight protects its session (default 5m)
  --max-body BYTES         largest request body, e.g. 4m (default 4 MiB)
  --max-in-flight N        most requests in flight per session; beyond, 429 for that session (default 64)
  --max-connections N      most open connections; the longest idle is closed first, else 503
                           (default 10000, lowered to fit the open-file limit: see ulimit -n)
  --max-connections-per-address N  most open connections per client address (with --trust-proxy:
                           requests in progress per forwarded address); beyond, 429 (default: no bound)
  --json-response          answer POSTs with JSON instead of SSE
  --stream-stall-timeout DURATION  cut off a response whose client reads nothing this long (default 60s)
  --shutdown-timeout DURATION  grace for in-flight requests on SIGINT/SIGTERM (default 10s)
  --metrics-port N         serve /metrics on this port instead of the main one
  --cors ORIGIN            allow this CORS origin ("*" for any); off by default
  --auth MODULE            require bearer tokens: MODULE default-exports a verifier
                           ({ verifyAccessToken(token) } or (token) => AuthInfo); sessions are
                           bound to the principal that created them
  --per-client-max N       most live sessions per client (its own oldest is evicted first)
  --per-client-rate N/DURATION  most sessions created per client per window
  --trust-proxy N          proxy hops whose X-Forwarded-For is trusted for the client address (default 0)
  --allowed-hosts LIST     comma-separated Host values accepted (default: loopback names when bound to loopback)
  --allowed-origins LIST   comma-separated Origin values accepted (default: loopback origins when bound to loopback)
  --resume-events N        SSE events kept per stream for Last-Event-ID resumption; 0 = off (default 32)
  --resume-bytes BYTES     bytes of SSE events kept per session for resumption, e.g. 1m (default 1 MiB)
  --resume-total BYTES     bytes of SSE events kept by all sessions together, e.g. 64m (default 64 MiB)
  --quiet                  no session lifecycle lines on stderr

Many processes, one limit (the limits above are then held by the authority):
  --workers N              run N worker processes (node:cluster) on the port, under one session
                           authority in the primary; each has --threads handler threads (default:
                           cores / N, at least 1)
  --authority ADDRESS      serve under a standalone authority (mcp-session-broker broker): its
                           socket path, or HOST:PORT; no limit flags then (they are the authority's)
  --authority-secret S     the authority's secret (TCP); or MCP_SESSION_BROKER_SECRET

Many hosts, one limit (every host sharing the Redis must be given the same limit flags):
  --store URL              redis://[user:password@]HOST[:PORT][/DB] or rediss:// (TLS); or
                           MCP_SESSION_BROKER_STORE (keeps credentials out of the process list)
  --advertise URL          this host's private route, http://HOST:PORT, as the other hosts reach it;
                           requests for its sessions are forwarded there (with the namespace's secret)
  --namespace NAME         several services can share one Redis, each in its own namespace (default: default)
  --redis-client NAME      redis (node-redis, default) or ioredis; the package must be installed

broker: one session authority for several processes (PM2 cluster mode, several services):
  --socket PATH            listen on this unix socket (created 0600: only this user's processes)
  --tcp HOST:PORT          listen on TCP instead (loopback by default; needs --secret)
  --secret S               what every process must present; or MCP_SESSION_BROKER_SECRET
  --rebuild-grace DURATION after a restart, refuse new sessions this long while processes
                           re-register theirs (default 2s)
  with --max-sessions, --evict, --rate, --idle-timeout, --max-lifetime, --busy-timeout,
  --per-client-max, --per-client-rate as for serve

  -h, --help               this text
  -v, --version            the version

Durations: 500ms, 2s, 1m, 4h, 1d.`;

export class UsageError extends Error {}

/** Turns argv (after the command name) into serve() options. Throws UsageError or RangeError/TypeError. */
/** serve() options (`--auth MODULE` is `authModule`), and `--workers`. */
export type CliServeOptions = ServeOptions & { workers?: number };

/** The admission limit flags, which `serve` and `broker` share. */
const ADMISSION_FLAGS = {
  'max-sessions': { type: 'string' },
  evict: { type: 'string' },
  rate: { type: 'string' },
  'idle-timeout': { type: 'string' },
  'max-lifetime': { type: 'string' },
  'busy-timeout': { type: 'string' },
  'per-client-max': { type: 'string' },
  'per-client-rate': { type: 'string' },
} as const;

export function parseServeArgs(argv: string[]): CliServeOptions | 'help' | 'version' {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      host: { type: 'string' },
      port: { type: 'string' },
      path: { type: 'string' },
      threads: { type: 'string' },
      'stall-timeout': { type: 'string' },
      listeners: { type: 'string' },
      ...ADMISSION_FLAGS,
      'max-body': { type: 'string' },
      'max-in-flight': { type: 'string' },
      'max-connections': { type: 'string' },
      'max-connections-per-address': { type: 'string' },
      'json-response': { type: 'boolean' },
      'shutdown-timeout': { type: 'string' },
      'stream-stall-timeout': { type: 'string' },
      'metrics-port': { type: 'string' },
      cors: { type: 'string' },
      'resume-events': { type: 'string' },
      'resume-bytes': { type: 'string' },
      'resume-total': { type: 'string' },
      auth: { type: 'string' },
      'trust-proxy': { type: 'string' },
      'allowed-hosts': { type: 'string' },
      'allowed-origins': { type: 'string' },
      quiet: { type: 'boolean' },
      workers: { type: 'string' },
      authority: { type: 'string' },
      'authority-secret': { type: 'string' },
      store: { type: 'string' },
      advertise: { type: 'string' },
      namespace: { type: 'string' },
      'redis-client': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
      version: { type: 'boolean', short: 'v' },
    },
  });
  if (values.help) return 'help';
  if (values.version) return 'version';
  const [command, module, ...extra] = positionals;
  if (command !== 'serve') throw new UsageError(command ? `unknown command "${command}"` : 'missing command "serve"');
  if (extra.length > 0) throw new UsageError(`unexpected argument "${extra[0]}"`);
  const underAuthority = values.authority !== undefined;
  const maxSessions = nonNegative('max-sessions', values['max-sessions']);
  const options: CliServeOptions = underAuthority ? {} : { maxSessions: maxSessions ?? CLI_DEFAULT_MAX_SESSIONS };
  if (underAuthority) {
    if (maxSessions !== undefined) options.maxSessions = maxSessions;
    options.authority = values.authority;
    const secret = values['authority-secret'] ?? process.env.MCP_SESSION_BROKER_SECRET;
    if (secret !== undefined) options.authoritySecret = secret;
  } else if (values['authority-secret'] !== undefined) {
    throw new UsageError('--authority-secret needs --authority');
  }
  const storeUrl = values.store ?? process.env.MCP_SESSION_BROKER_STORE;
  if (storeUrl !== undefined) {
    if (underAuthority) throw new UsageError('--store and --authority are mutually exclusive');
    if (values.workers !== undefined) throw new UsageError('--store and --workers are mutually exclusive');
    if (values.advertise === undefined) throw new UsageError('--store needs --advertise http://HOST:PORT');
    const client = values['redis-client'];
    if (client !== undefined && client !== 'redis' && client !== 'ioredis') {
      throw new UsageError('--redis-client must be redis or ioredis');
    }
    options.redis = {
      url: storeUrl,
      advertise: values.advertise,
      ...(values.namespace === undefined ? {} : { namespace: values.namespace }),
      ...(client === undefined ? {} : { client }),
    };
  } else {
    for (const flag of ['advertise', 'namespace', 'redis-client'] as const) {
      if (values[flag] !== undefined) throw new UsageError(`--${flag} needs --store`);
    }
  }
  const workers = nonNegative('workers', values.workers);
  if (workers !== undefined) {
    if (workers < 1 || workers > 255) throw new UsageError('--workers must be from 1 to 255');
    if (underAuthority) throw new UsageError('--workers and --authority are mutually exclusive');
    options.workers = workers;
  }
  if (module !== undefined) options.module = module;
  if (values.host !== undefined) options.host = values.host;
  const port = nonNegative('port', values.port);
  if (port !== undefined) options.port = port;
  if (values.path !== undefined) options.path = values.path;
  const threads = nonNegative('threads', values.threads);
  if (threads !== undefined) options.threads = threads;
  if (values['stall-timeout'] !== undefined) options.stallTimeoutMs = parseDuration(values['stall-timeout']);
  if (values.listeners !== undefined) options.listeners = values.listeners as 'auto' | 'threads' | 'main';
  Object.assign(options, admissionFlags(values));
  if (values['max-body'] !== undefined) options.maxBodyBytes = parseBytes(values['max-body']);
  const maxInFlight = nonNegative('max-in-flight', values['max-in-flight']);
  if (maxInFlight !== undefined) options.maxInFlightPerSession = maxInFlight;
  const maxConnections = nonNegative('max-connections', values['max-connections']);
  if (maxConnections !== undefined) options.maxConnections = maxConnections;
  const perAddress = nonNegative('max-connections-per-address', values['max-connections-per-address']);
  if (perAddress !== undefined) options.maxConnectionsPerAddress = perAddress;
  if (values['json-response']) options.jsonResponse = true;
  if (values['stream-stall-timeout'] !== undefined) {
    options.streamStallTimeoutMs = parseDuration(values['stream-stall-timeout']);
  }
  if (values['shutdown-timeout'] !== undefined) options.shutdownTimeoutMs = parseDuration(values['shutdown-timeout']);
  const metricsPort = nonNegative('metrics-port', values['metrics-port']);
  if (metricsPort !== undefined) options.metricsPort = metricsPort;
  if (values.cors !== undefined) options.cors = values.cors;
  const resumeEvents = nonNegative('resume-events', values['resume-events']);
  const resumeBytes = values['resume-bytes'];
  const resumeTotal = values['resume-total'];
  if (resumeEvents === 0) {
    if (resumeBytes !== undefined || resumeTotal !== undefined) {
      throw new UsageError('--resume-bytes and --resume-total need resumability (--resume-events is 0)');
    }
    options.resumability = false;
  } else if (resumeEvents !== undefined || resumeBytes !== undefined || resumeTotal !== undefined) {
    options.resumability = {
      ...(resumeEvents !== undefined ? { maxEventsPerStream: resumeEvents } : {}),
      ...(resumeBytes !== undefined ? { maxBytesPerSession: parseBytes(resumeBytes) } : {}),
      ...(resumeTotal !== undefined ? { maxTotalBytes: parseBytes(resumeTotal) } : {}),
    };
  }
  const trustProxy = nonNegative('trust-proxy', values['trust-proxy']);
  if (trustProxy !== undefined) options.trustProxy = trustProxy;
  const list = (value: string) =>
    value
      .split(',')
      .map((v) => v.trim())
      .filter((v) => v.length > 0);
  if (values['allowed-hosts'] !== undefined) options.allowedHosts = list(values['allowed-hosts']);
  if (values['allowed-origins'] !== undefined) options.allowedOrigins = list(values['allowed-origins']);
  if (values.quiet) options.log = false;
  return values.auth === undefined ? options : { ...options, authModule: values.auth };
}

function nonNegative(flag: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value)) throw new UsageError(`--${flag} must be a non-negative integer, got "${value}"`);
  return Number(value);
}

/** The admission limits among parsed flags (all but `--max-sessions`), as options. */
function admissionFlags(values: Record<string, string | boolean | undefined>): Partial<AdmissionOptions> {
  const text = (flag: string) => values[flag] as string | undefined;
  const out: Partial<AdmissionOptions> = {};
  if (text('evict') !== undefined) out.evict = text('evict') as EvictionPolicy;
  if (text('rate') !== undefined) out.rate = parseRate(text('rate') as string);
  if (text('idle-timeout') !== undefined) out.idleTimeoutMs = parseDuration(text('idle-timeout') as string);
  if (text('max-lifetime') !== undefined) out.maxLifetimeMs = parseDuration(text('max-lifetime') as string);
  if (text('busy-timeout') !== undefined) out.busyTimeoutMs = parseDuration(text('busy-timeout') as string);
  const perClientMax = nonNegative('per-client-max', text('per-client-max'));
  if (perClientMax !== undefined || text('per-client-rate') !== undefined) {
    out.perClient = {
      ...(perClientMax !== undefined ? { maxSessions: perClientMax } : {}),
      ...(text('per-client-rate') !== undefined ? { rate: parseRate(text('per-client-rate') as string) } : {}),
    };
  }
  return out;
}

/** `mcp-session-broker broker` options. */
export interface CliBrokerOptions extends StandaloneAuthorityOptions {
  readonly quiet: boolean;
}

/** Turns argv after `broker` into the standalone authority's options. */
export function parseBrokerArgs(argv: string[]): CliBrokerOptions | 'help' {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      ...ADMISSION_FLAGS,
      socket: { type: 'string' },
      tcp: { type: 'string' },
      secret: { type: 'string' },
      routes: { type: 'string' },
      'rebuild-grace': { type: 'string' },
      quiet: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) return 'help';
  if (positionals.length > 0) throw new UsageError(`unexpected argument "${positionals[0]}"`);
  const options: CliBrokerOptions = {
    maxSessions: nonNegative('max-sessions', values['max-sessions']) ?? CLI_DEFAULT_MAX_SESSIONS,
    quiet: values.quiet === true,
    ...admissionFlags(values),
  };
  if ((values.socket === undefined) === (values.tcp === undefined)) {
    throw new UsageError('broker needs --socket PATH or --tcp HOST:PORT (one of them)');
  }
  if (values.socket !== undefined) options.socket = values.socket;
  if (values.tcp !== undefined) {
    const tcp = /^(\[[^\]]+\]|[^:[\]]+):(\d{1,5})$/.exec(values.tcp);
    if (!tcp) throw new UsageError(`--tcp must be HOST:PORT, got "${values.tcp}"`);
    options.host = (tcp[1] as string).replace(/^\[|\]$/g, '');
    options.port = Number(tcp[2]);
  }
  const secret = values.secret ?? process.env.MCP_SESSION_BROKER_SECRET;
  if (secret !== undefined) options.secret = secret;
  if (values.tcp !== undefined && !secret) {
    throw new UsageError('--tcp needs --secret (or MCP_SESSION_BROKER_SECRET): any local user could connect');
  }
  if (values.routes !== undefined) options.routes = values.routes;
  if (values['rebuild-grace'] !== undefined) options.rebuildGraceMs = parseDuration(values['rebuild-grace']);
  return options;
}

const FLAG_OF_OPTION: Record<string, string> = {
  maxSessions: '--max-sessions',
  evict: '--evict',
  'rate.max': '--rate',
  'rate.windowMs': '--rate',
  idleTimeoutMs: '--idle-timeout',
  maxLifetimeMs: '--max-lifetime',
  busyTimeoutMs: '--busy-timeout',
  threads: '--threads',
  stallTimeoutMs: '--stall-timeout',
  listeners: '--listeners',
  maxBodyBytes: '--max-body',
  maxInFlightPerSession: '--max-in-flight',
  maxConnections: '--max-connections',
  maxConnectionsPerAddress: '--max-connections-per-address',
  shutdownTimeoutMs: '--shutdown-timeout',
  streamStallTimeoutMs: '--stream-stall-timeout',
  metricsPort: '--metrics-port',
  port: '--port',
  host: '--host',
  path: '--path',
  cors: '--cors',
  'resumability.maxEventsPerStream': '--resume-events',
  'resumability.maxBytesPerSession': '--resume-bytes',
  'resumability.maxTotalBytes': '--resume-total',
  module: '[module]',
  'perClient.maxSessions': '--per-client-max',
  'perClient.rate.max': '--per-client-rate',
  'perClient.rate.windowMs': '--per-client-rate',
  trustProxy: '--trust-proxy',
  authority: '--authority',
  authoritySecret: '--authority-secret',
  redis: '--store',
  'redis.url': '--store',
  'redis.advertise': '--advertise',
  'redis.namespace': '--namespace',
  socket: '--socket',
  secret: '--secret',
  rebuildGraceMs: '--rebuild-grace',
  allowedHosts: '--allowed-hosts',
  allowedOrigins: '--allowed-origins',
  auth: '--auth',
  authModule: '--auth',
};

/** Rewrites an option validation message (`options.maxSessions ...`) in terms of the flags (`--max-sessions ...`). */
export function flagMessage(message: string): string {
  return message.replace(/options\.([\w.]+)/g, (whole, name: string) => FLAG_OF_OPTION[name] ?? whole);
}
