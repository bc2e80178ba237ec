/**
 * Many processes on one host under one admission authority (ADR 20):
 * `startClusterBroker` in a `node:cluster` primary, `startAuthority` for a
 * standalone authority process (`mcp-session-broker broker`), and
 * `clusterAuthority()` for a cluster worker to find its primary's.
 */
import cluster from 'node:cluster';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import {
  type AdmissionOptions,
  Authority,
  type AuthorityAddress,
  MAX_CAPACITY,
  resolveAdmissionOptions,
} from '../../broker/index.js';
import type { BrokerStats, SessionEvent } from '../../shared/types.js';

/** The variable a cluster primary puts its authority's address in, for its workers. */
export const AUTHORITY_ENV = 'MCP_SESSION_BROKER_AUTHORITY';

export interface AuthorityServerOptions extends AdmissionOptions {
  /** Every session created and closed on the host (owner: the process index). */
  onEvent?: (event: SessionEvent) => void;
  /** Where fault lines go (a peer dropped for breaking the protocol, say). @default console.error */
  log?: (line: string) => void;
}

/** A running authority. */
export interface AuthorityHandle {
  /** Where processes connect: the socket path, or `HOST:PORT`. */
  readonly address: string;
  /** Processes connected now. */
  readonly processes: number;
  /** The host's session counts and totals. */
  stats(): BrokerStats;
  /** Stops it: every process then refuses new sessions (503) until an authority is back. */
  close(): Promise<void>;
}

function handle(authority: Authority, cleanup?: () => void): AuthorityHandle {
  return {
    get address() {
      return authority.address;
    },
    get processes() {
      return authority.processes;
    },
    stats: () => authority.stats(),
    async close() {
      await authority.close();
      cleanup?.();
    },
  };
}

function checkCap(admission: ReturnType<typeof resolveAdmissionOptions>): void {
  if (admission.maxSessions > MAX_CAPACITY) {
    throw new RangeError(`options.maxSessions must be at most ${MAX_CAPACITY} under an authority`);
  }
}

/**
 * Starts the host's admission authority in a `node:cluster` primary, on a
 * private unix socket (owner-only, in a fresh 0700 directory), and puts its
 * address in `process.env.MCP_SESSION_BROKER_AUTHORITY`, which workers forked
 * after this inherit (`clusterAuthority()` reads it). Every limit is set
 * here; workers pass `authority` and no admission options.
 */
export async function startClusterBroker(options: AuthorityServerOptions): Promise<AuthorityHandle> {
  if (!cluster.isPrimary) throw new Error('startClusterBroker() runs in the cluster primary');
  const admission = resolveAdmissionOptions(options);
  checkCap(admission);
  const dir = mkdtempSync(join(tmpdir(), 'mcp-session-broker-'));
  const remove = () => rmSync(dir, { recursive: true, force: true });
  let authority: Authority;
  try {
    authority = await Authority.start({
      admission,
      listen: { socket: join(dir, 'authority.sock') },
      routes: join(dir, 'routes'),
      ...(options.onEvent ? { onEvent: options.onEvent } : {}),
      ...(options.log ? { log: options.log } : {}),
    });
  } catch (error) {
    remove();
    throw error;
  }
  process.env[AUTHORITY_ENV] = authority.address;
  return handle(authority, remove);
}

/** The authority of this `node:cluster` worker's primary (set by `startClusterBroker`). */
export function clusterAuthority(): string {
  const address = process.env[AUTHORITY_ENV];
  if (!address) {
    throw new Error(
      `no session authority: call startClusterBroker() in the primary before forking (${AUTHORITY_ENV} is unset)`,
    );
  }
  return address;
}

export interface StandaloneAuthorityOptions extends AuthorityServerOptions {
  /** Listen on this unix socket (created 0600). One of `socket` and `port`. */
  socket?: string;
  /** Listen on this TCP port (needs `secret`). */
  port?: number;
  /** With `port`: the interface. @default '127.0.0.1' */
  host?: string;
  /** What every process must present (required with `port`). */
  secret?: string;
  /** The processes' private sockets' directory. @default beside the socket: `<socket>.routes` (TCP: a fresh temp dir) */
  routes?: string;
  /**
   * After start, admissions wait this long (refused with 503) so that
   * processes holding sessions from before re-register them first.
   * @default 2_000
   */
  rebuildGraceMs?: number;
}

/** Starts a standalone authority (`mcp-session-broker broker`): PM2 cluster mode, several services. */
export async function startAuthority(options: StandaloneAuthorityOptions): Promise<AuthorityHandle> {
  const admission = resolveAdmissionOptions(options);
  checkCap(admission);
  if ((options.socket === undefined) === (options.port === undefined)) {
    throw new TypeError('options.socket or options.port (one of them) says where the authority listens');
  }
  let listen: AuthorityAddress;
  let routes = options.routes;
  let cleanup: (() => void) | undefined;
  if (options.socket !== undefined) {
    const socket = resolve(options.socket);
    listen = { socket };
    routes ??= `${socket}.routes`;
  } else {
    if (!options.secret) throw new TypeError('options.secret is required on TCP');
    listen = { host: options.host ?? '127.0.0.1', port: options.port as number };
    if (routes === undefined) {
      const dir = mkdtempSync(join(tmpdir(), 'mcp-session-broker-'));
      routes = join(dir, 'routes');
      cleanup = () => rmSync(dir, { recursive: true, force: true });
    }
  }
  const authority = await Authority.start({
    admission,
    listen,
    routes,
    rebuildGraceMs: options.rebuildGraceMs ?? 2_000,
    ...(options.secret ? { secret: options.secret } : {}),
    ...(options.onEvent ? { onEvent: options.onEvent } : {}),
    ...(options.log ? { log: options.log } : {}),
  });
  return handle(authority, cleanup);
}
