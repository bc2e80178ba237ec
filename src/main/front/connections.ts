/**
 * Connection limits of the HTTP front. Runs inside `serve()`'s node:http
 * server: on the main thread, or on every handler thread with per-thread
 * listeners (then the server-wide count is shared: `FrontTally`).
 *
 * Open connections are bounded server-wide (`maxConnections`) and, optionally,
 * per client address (`maxConnectionsPerAddress`). When a new connection would
 * pass a bound, the connection idle the longest (no request in progress) is
 * closed to make room; when none is idle, the new connection is refused: its
 * first request gets 503 (server-wide) or 429 (per address) with `Retry-After`
 * and a JSON-RPC error body, then the connection is closed.
 *
 * Behind trusted proxies (`trustProxy > 0`) every connection comes from a
 * proxy, so the per-address bound applies to requests in progress per
 * forwarded client address instead (429), not to connections.
 */
import { readFileSync } from 'node:fs';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { refusalAnswer } from '../../shared/jsonrpc.js';
import { MIN_RETRY_AFTER_MS } from '../../shared/types.js';
import { ClientKeys } from './clients.js';
import { send } from './front.js';

type ConnectionRefusal = 'connections_full' | 'address_full';

/** The server-wide bound when the process's file limit is unknown or high. */
export const DEFAULT_MAX_CONNECTIONS = 10_000;
/** Descriptors kept out of the default bound for everything else a process opens (threads' event loops, files, stdio). */
export const FILE_DESCRIPTOR_RESERVE = 128;
/** `Retry-After` of a refused connection or request. */
const RETRY_AFTER_MS = MIN_RETRY_AFTER_MS;
/** How long a refused connection may stay open waiting for its first request before it is destroyed. */
const REFUSED_LINGER_MS = 2_000;
/** Refused connections waiting for their first request at once; past this, refused connections are destroyed unanswered. */
const MAX_LINGERING = 64;

/**
 * The process's soft limit on open files (Linux: `/proc/self/limits`), or
 * undefined when it cannot be read or is unlimited.
 */
export function fileLimit(): number | undefined {
  try {
    const match = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    return match?.[1] === undefined || match[1] === 'unlimited' ? undefined : Number(match[1]);
  } catch {
    return undefined;
  }
}

/**
 * `DEFAULT_MAX_CONNECTIONS`, lowered to fit the process's file limit when that
 * is known: the limit less `FILE_DESCRIPTOR_RESERVE`, or half the limit if
 * that is more (tiny limits).
 */
export function defaultMaxConnections(limit: number | undefined = fileLimit()): number {
  if (limit === undefined) return DEFAULT_MAX_CONNECTIONS;
  const fits = Math.max(Math.floor(limit / 2), limit - FILE_DESCRIPTOR_RESERVE);
  return Math.max(1, Math.min(DEFAULT_MAX_CONNECTIONS, fits));
}

export interface ConnectionLimits {
  /** Most open connections at once. */
  readonly maxConnections: number;
  /** Most open connections per remote address (requests in progress per forwarded address with `trustProxy`); undefined: no bound. */
  readonly maxConnectionsPerAddress: number | undefined;
  /** Proxy hops whose `X-Forwarded-For` entries are trusted (0: none). */
  readonly trustProxy: number;
}

/** Counts for metrics. */
export interface ConnectionCounters {
  /** Connections open and admitted right now. */
  readonly open: number;
  readonly maxConnections: number;
  /** Idle connections closed to make room for a new one. */
  readonly closedIdle: number;
  /** Connections refused, by reason. */
  readonly refused: Readonly<Record<ConnectionRefusal, number>>;
  /** Requests refused because their forwarded address had too many in progress (`trustProxy > 0` only). */
  readonly requestsRefused: number;
}

/** The front's counters a `FrontTally` row also holds (see `FrontCounters`). */
const FRONT_FIELDS = { queueFull: 5, clientAborts: 6, inFlightLimited: 7, handedOff: 8 } as const;

/**
 * Counts shared by listeners on several threads (each handler thread listening
 * on the server's port itself): one server-wide count of open connections that
 * a listener reserves from before it admits one, so the bound holds across
 * threads; and each listener's own counters (connections and the front's) in a
 * row of its own, summed for metrics. A thread that dies takes its connections
 * with it: `reclaim(row)` returns its open count.
 *
 * Layout (Int32): [0] open, all rows; then per row: open, closedIdle, refused
 * connections_full, refused address_full, requestsRefused, and the front's
 * queueFull, clientAborts, inFlightLimited, handedOff.
 */
export class FrontTally {
  static readonly FIELDS = 9;
  readonly #counts: Int32Array;
  readonly #rows: number;

  static create(rows: number): FrontTally {
    return new FrontTally(new SharedArrayBuffer(4 * (1 + rows * FrontTally.FIELDS)));
  }

  constructor(readonly buffer: SharedArrayBuffer) {
    this.#counts = new Int32Array(buffer);
    this.#rows = (this.#counts.length - 1) / FrontTally.FIELDS;
  }

  get open(): number {
    return Atomics.load(this.#counts, 0);
  }

  /** Takes one connection of `max` for `row`: false when all are taken. */
  reserve(row: number, max: number): boolean {
    for (;;) {
      const open = Atomics.load(this.#counts, 0);
      if (open >= max) return false;
      if (Atomics.compareExchange(this.#counts, 0, open, open + 1) === open) {
        Atomics.add(this.#counts, this.#at(row, 0), 1);
        return true;
      }
    }
  }

  release(row: number): void {
    Atomics.sub(this.#counts, this.#at(row, 0), 1);
    Atomics.sub(this.#counts, 0, 1);
  }

  /** Adds one to a row's connection counter (1: closedIdle, 2: connections_full, 3: address_full, 4: requestsRefused). */
  count(row: number, field: 1 | 2 | 3 | 4): void {
    Atomics.add(this.#counts, this.#at(row, field), 1);
  }

  /** A front counter of one row (only that row's thread writes it). */
  read(row: number, name: keyof typeof FRONT_FIELDS): number {
    return Atomics.load(this.#counts, this.#at(row, FRONT_FIELDS[name]));
  }

  write(row: number, name: keyof typeof FRONT_FIELDS, value: number): void {
    Atomics.store(this.#counts, this.#at(row, FRONT_FIELDS[name]), value);
  }

  /** A row's listener is gone: the connections it held are no longer open. */
  reclaim(row: number): void {
    const held = Atomics.exchange(this.#counts, this.#at(row, 0), 0);
    Atomics.sub(this.#counts, 0, held);
  }

  /** The connection counters of every row, summed. */
  connections(maxConnections: number): ConnectionCounters {
    return {
      open: this.open,
      maxConnections,
      closedIdle: this.#sum(1),
      refused: { connections_full: this.#sum(2), address_full: this.#sum(3) },
      requestsRefused: this.#sum(4),
    };
  }

  /** The front counters of every row, summed. */
  front(): Record<keyof typeof FRONT_FIELDS, number> {
    return {
      queueFull: this.#sum(FRONT_FIELDS.queueFull),
      clientAborts: this.#sum(FRONT_FIELDS.clientAborts),
      inFlightLimited: this.#sum(FRONT_FIELDS.inFlightLimited),
      handedOff: this.#sum(FRONT_FIELDS.handedOff),
    };
  }

  #at(row: number, field: number): number {
    return 1 + row * FrontTally.FIELDS + field;
  }

  #sum(field: number): number {
    let total = 0;
    for (let row = 0; row < this.#rows; row++) total += Atomics.load(this.#counts, this.#at(row, field));
    return total;
  }
}

interface Connection {
  readonly socket: Socket;
  readonly address: string;
  /** Requests in progress: from the server's `request` event until the response's `close`. */
  active: number;
}

interface AddressEntry {
  open: number;
  /** This address's idle connections, idle the longest first. */
  readonly idle: Set<Connection>;
}

export class ConnectionLimiter {
  readonly #limits: ConnectionLimits;
  readonly #open = new Map<Socket, Connection>();
  /** Idle connections (never used, or every request answered), idle the longest first (insertion order). */
  readonly #idle = new Set<Connection>();
  /** Open connections per remote address; entries exist only while the address has one open (so at most `maxConnections`). */
  readonly #byAddress = new Map<string, AddressEntry>();
  /** Requests in progress per forwarded address (`trustProxy > 0`); entries exist only while the count is positive. */
  readonly #requestsByAddress = new Map<string, number>();
  /** Connections refused; their first request is answered with the refusal. */
  readonly #refused = new WeakMap<Socket, ConnectionRefusal>();
  readonly #clients: ClientKeys;
  #lingering = 0;
  #closedIdle = 0;
  readonly #refusedCounts = { connections_full: 0, address_full: 0 };
  #requestsRefused = 0;

  /** With several listening threads: the shared count, and this listener's row in it. */
  readonly #shared: { readonly tally: FrontTally; readonly row: number } | undefined;

  constructor(limits: ConnectionLimits, shared?: { readonly tally: FrontTally; readonly row: number }) {
    this.#limits = limits;
    this.#shared = shared;
    this.#clients = new ClientKeys({ trustProxy: limits.trustProxy, clientKey: undefined });
  }

  /** Starts counting the server's connections; runs before node:http sets a connection up. */
  attach(server: Server): void {
    server.prependListener('connection', (socket: Socket) => this.#onConnection(socket));
  }

  /**
   * Call first for every request. Returns false when the request has been
   * answered here (its connection was refused, or its forwarded address has
   * too many requests in progress) and must not be handled.
   */
  admit(req: IncomingMessage, res: ServerResponse): boolean {
    const socket = req.socket;
    const refused = this.#refused.get(socket);
    if (refused !== undefined) {
      res.shouldKeepAlive = false;
      send(res, refusalAnswer({ reason: refused, retryAfterMs: RETRY_AFTER_MS }));
      return false;
    }
    const connection = this.#open.get(socket);
    if (connection) {
      connection.active++;
      if (connection.active === 1) this.#markBusy(connection);
      res.once('close', () => {
        connection.active--;
        if (connection.active === 0) this.#markIdle(connection);
      });
    }
    const perAddress = this.#limits.maxConnectionsPerAddress;
    if (this.#limits.trustProxy === 0 || perAddress === undefined) return true;
    const address = this.#clients.address(req);
    const count = this.#requestsByAddress.get(address) ?? 0;
    // A new address when the table is as large as the connection bound: refuse
    // rather than grow (only reachable with pipelined requests).
    const tableFull = count === 0 && this.#requestsByAddress.size >= this.#limits.maxConnections;
    if (count >= perAddress || tableFull) {
      this.#requestsRefused++;
      if (this.#shared) this.#shared.tally.count(this.#shared.row, 4);
      send(res, refusalAnswer({ reason: 'address_full', retryAfterMs: RETRY_AFTER_MS }));
      return false;
    }
    this.#requestsByAddress.set(address, count + 1);
    res.once('close', () => {
      const left = (this.#requestsByAddress.get(address) ?? 1) - 1;
      if (left > 0) this.#requestsByAddress.set(address, left);
      else this.#requestsByAddress.delete(address);
    });
    return true;
  }

  counters(): ConnectionCounters {
    return {
      open: this.#open.size,
      maxConnections: this.#limits.maxConnections,
      closedIdle: this.#closedIdle,
      refused: { ...this.#refusedCounts },
      requestsRefused: this.#requestsRefused,
    };
  }

  #onConnection(socket: Socket): void {
    const address = socket.remoteAddress ?? 'unknown';
    const perAddress = this.#limits.trustProxy === 0 ? this.#limits.maxConnectionsPerAddress : undefined;
    let entry = perAddress === undefined ? undefined : this.#byAddress.get(address);
    // The address's own bound first: a client at its bound closes its own idle
    // connection, never another client's.
    if (perAddress !== undefined && entry && entry.open >= perAddress) {
      const victim = first(entry.idle);
      if (!victim) {
        this.#refuse(socket, 'address_full');
        return;
      }
      this.#closeIdle(victim);
    }
    if (!this.#take()) {
      // Room is made only from this listener's own idle connections.
      const victim = first(this.#idle);
      if (victim) this.#closeIdle(victim);
      if (!victim || !this.#take()) {
        this.#refuse(socket, 'connections_full');
        return;
      }
    }
    const connection: Connection = { socket, address, active: 0 };
    this.#open.set(socket, connection);
    this.#idle.add(connection);
    if (perAddress !== undefined) {
      entry = this.#byAddress.get(address);
      if (!entry) {
        entry = { open: 0, idle: new Set() };
        this.#byAddress.set(address, entry);
      }
      entry.open++;
      entry.idle.add(connection);
    }
    socket.once('close', () => this.#forget(connection));
  }

  /** Takes a place for a new connection, server-wide. */
  #take(): boolean {
    if (this.#shared) return this.#shared.tally.reserve(this.#shared.row, this.#limits.maxConnections);
    return this.#open.size < this.#limits.maxConnections;
  }

  #markBusy(connection: Connection): void {
    this.#idle.delete(connection);
    this.#byAddress.get(connection.address)?.idle.delete(connection);
  }

  /** Re-inserted last: the set stays ordered by how long each connection has been idle. */
  #markIdle(connection: Connection): void {
    if (!this.#open.has(connection.socket)) return;
    this.#idle.add(connection);
    this.#byAddress.get(connection.address)?.idle.add(connection);
  }

  #closeIdle(connection: Connection): void {
    this.#forget(connection);
    this.#closedIdle++;
    if (this.#shared) this.#shared.tally.count(this.#shared.row, 1);
    connection.socket.destroy();
  }

  #forget(connection: Connection): void {
    if (!this.#open.delete(connection.socket)) return;
    if (this.#shared) this.#shared.tally.release(this.#shared.row);
    this.#idle.delete(connection);
    const entry = this.#byAddress.get(connection.address);
    if (!entry) return;
    entry.idle.delete(connection);
    entry.open--;
    if (entry.open === 0) this.#byAddress.delete(connection.address);
  }

  /**
   * Refuses a connection: its first request is answered with the refusal and
   * the connection closed; one that sends nothing is destroyed after a short
   * linger. Under a flood of refusals, connections are destroyed unanswered.
   */
  #refuse(socket: Socket, reason: ConnectionRefusal): void {
    this.#refusedCounts[reason]++;
    if (this.#shared) this.#shared.tally.count(this.#shared.row, reason === 'connections_full' ? 2 : 3);
    if (this.#lingering >= MAX_LINGERING) {
      socket.destroy();
      return;
    }
    this.#refused.set(socket, reason);
    this.#lingering++;
    const timer = setTimeout(() => socket.destroy(), REFUSED_LINGER_MS);
    timer.unref();
    socket.once('close', () => {
      clearTimeout(timer);
      this.#lingering--;
    });
  }
}

function first<T>(set: Set<T>): T | undefined {
  for (const item of set) return item;
  return undefined;
}
