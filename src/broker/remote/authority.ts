/**
 * A host's admission authority (ADR 20): the memory store's decisions for
 * every process of the host, served over a socket. Owners are processes (an
 * index 1..255 given at `hello`, carried in their sessions' ids); each
 * process keeps its own index of the sessions it owns and asks here only to
 * admit, to report closes, and to answer the closes asked of it (with a veto
 * when a session it owns is busy or was active since).
 *
 * One connection per process. A connection that breaks the protocol (a
 * malformed, oversized or unknown frame, a wrong secret, a message about a
 * session it does not own) is closed with one logged line; its sessions are
 * freed with reason `error`, as when the process dies.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { chmodSync, existsSync, lstatSync, mkdirSync, unlinkSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { isMainThread } from 'node:worker_threads';
import { S_OWNER, S_STATE, SLOT_I32, ST_FREE, wordState } from '../../shared/layout.js';
import { parseSessionId } from '../../shared/session-id.js';
import type { BrokerStats, CloseReason, SessionEvent, SessionRef } from '../../shared/types.js';
import type { ResolvedAdmissionOptions } from '../options.js';
import type { CloseVeto } from '../store.js';
import { MemoryStore } from '../stores/memory/index.js';
import {
  type AuthorityMessage,
  encodeFrame,
  FrameDecoder,
  MAX_CAPACITY,
  type Message,
  PROTOCOL_VERSION,
  type ProcessMessage,
  ProtocolError,
} from './protocol.js';

/** Where an authority listens. */
export type AuthorityAddress = { readonly socket: string } | { readonly host: string; readonly port: number };

export interface AuthorityOptions {
  readonly admission: ResolvedAdmissionOptions;
  readonly listen: AuthorityAddress;
  /**
   * What every process must present in `hello`. Required on TCP; optional on
   * a unix socket (created owner-only, 0600).
   */
  readonly secret?: string;
  /** The directory for the processes' private sockets (created 0700 if missing). */
  readonly routes: string;
  /**
   * After start, admissions are refused (`unavailable`) for this long, so that
   * processes that held sessions under a previous authority re-register them
   * first. @default 0
   */
  readonly rebuildGraceMs?: number;
  readonly onEvent?: (event: SessionEvent) => void;
  /** Clock override, ms (tests on a fake clock). */
  readonly now?: () => number;
  /** How often the idle/lifetime sweep runs, ms. @default derived from the timeouts */
  readonly sweepIntervalMs?: number;
  /** One line per fault (a peer closed for breaking the protocol, say). @default console.error */
  readonly log?: (line: string) => void;
}

/** A process must say `hello` within this long of connecting. */
const HELLO_TIMEOUT_MS = 5_000;
/** Bytes queued to a process that does not read, beyond which it is disconnected. */
const MAX_QUEUED_BYTES = 8 * 1024 * 1024;
/** Admissions one process may have waiting here at once. */
const MAX_PENDING_ADMITS = 65_536;
const MAX_PROCESSES = 255;

interface Peer {
  readonly socket: Socket;
  readonly decoder: FrameDecoder;
  process: number;
  pid: number;
  pendingAdmits: number;
  /** Closes asked of this process and not yet answered, by slot. */
  readonly closes: Map<number, { gen: number; resolve: (veto: CloseVeto | undefined) => void }>;
}

export class Authority {
  readonly store: MemoryStore;
  readonly #server: Server;
  readonly #opts: AuthorityOptions;
  readonly #peers = new Set<Peer>();
  readonly #byProcess = new Map<number, Peer>();
  readonly #routeSecret = randomBytes(24).toString('base64url');
  readonly #log: (line: string) => void;
  readonly #openAt: number;
  #nextProcess = 1;
  #closed = false;

  /** Starts an authority listening at `options.listen`. */
  static async start(options: AuthorityOptions): Promise<Authority> {
    if (options.admission.maxSessions > MAX_CAPACITY) {
      throw new RangeError(`maxSessions must be at most ${MAX_CAPACITY} with many processes`);
    }
    if ('host' in options.listen && !options.secret) {
      throw new TypeError('an authority on TCP needs a secret');
    }
    const authority = new Authority(options);
    await authority.#listen();
    return authority;
  }

  private constructor(options: AuthorityOptions) {
    this.#opts = options;
    this.#log = options.log ?? ((line) => console.error(line));
    this.#openAt = Date.now() + (options.rebuildGraceMs ?? 0);
    this.store = new MemoryStore({
      admission: options.admission,
      lanes: 1,
      closer: (owner, ref, reason, hint) => this.#askClose(owner, ref, reason, hint?.seenAgoMs),
      ...(options.onEvent ? { onEvent: options.onEvent } : {}),
      ...(options.now ? { now: options.now } : {}),
      ...(options.sweepIntervalMs ? { sweepIntervalMs: options.sweepIntervalMs } : {}),
      idTag: (owner) => owner,
    });
    this.#server = createServer((socket) => this.#accept(socket));
  }

  /** The address processes connect to: the socket path, or `HOST:PORT`. */
  get address(): string {
    const listen = this.#opts.listen;
    if ('socket' in listen) return listen.socket;
    const bound = this.#server.address();
    const port = typeof bound === 'object' && bound ? bound.port : listen.port;
    return `${listen.host.includes(':') ? `[${listen.host}]` : listen.host}:${port}`;
  }

  /** Processes connected now. */
  get processes(): number {
    return this.#byProcess.size;
  }

  stats(): BrokerStats {
    return this.store.stats();
  }

  /** Stops listening and drops every process (each fails closed until an authority is back). */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const peer of this.#peers) peer.socket.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
    await this.store.shutdown(0);
    const listen = this.#opts.listen;
    if ('socket' in listen && existsSync(listen.socket)) unlinkSync(listen.socket);
  }

  async #listen(): Promise<void> {
    mkdirSync(this.#opts.routes, { recursive: true, mode: 0o700 });
    chmodSync(this.#opts.routes, 0o700);
    const listen = this.#opts.listen;
    if ('socket' in listen) {
      await removeStaleSocket(listen.socket);
      await listenOwnerOnly(this.#server, listen.socket);
      return;
    }
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(listen.port, listen.host, () => {
        this.#server.off('error', reject);
        resolve();
      });
    });
  }

  #accept(socket: Socket): void {
    if (this.#closed) {
      socket.destroy();
      return;
    }
    const peer: Peer = { socket, decoder: new FrameDecoder(), process: 0, pid: 0, pendingAdmits: 0, closes: new Map() };
    this.#peers.add(peer);
    socket.setNoDelay(true);
    const hello = setTimeout(() => this.#drop(peer, 'no hello'), HELLO_TIMEOUT_MS);
    hello.unref();
    socket.on('data', (chunk: Buffer) => {
      let messages: Message[];
      try {
        messages = peer.decoder.push(chunk);
        for (const message of messages) {
          if (peer.process === 0) clearTimeout(hello);
          this.#receive(peer, message);
          if (socket.destroyed) return;
        }
      } catch (error) {
        this.#drop(peer, error instanceof ProtocolError ? error.message : String(error));
      }
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearTimeout(hello);
      this.#gone(peer);
    });
  }

  /** Closes a peer's connection for a fault, with one line saying why. */
  #drop(peer: Peer, why: string): void {
    if (peer.socket.destroyed) return;
    const who = peer.process ? `process ${peer.process} (pid ${peer.pid})` : 'a connection';
    this.#log(`[mcp-session-broker] authority: closing ${who}: ${why.slice(0, 200)}`);
    peer.socket.destroy();
  }

  /** A process left (or was dropped): its sessions are freed with reason `error`, its waits end. */
  #gone(peer: Peer): void {
    this.#peers.delete(peer);
    if (peer.process === 0 || this.#byProcess.get(peer.process) !== peer) return;
    this.#byProcess.delete(peer.process);
    for (const { resolve } of peer.closes.values()) resolve(undefined);
    peer.closes.clear();
    if (!this.#closed) this.store.ownerGone(peer.process);
  }

  #send(peer: Peer, message: AuthorityMessage): void {
    if (peer.socket.destroyed) return;
    if (peer.socket.writableLength > MAX_QUEUED_BYTES) {
      this.#drop(peer, `it does not read (${peer.socket.writableLength} bytes queued)`);
      return;
    }
    peer.socket.write(encodeFrame(message));
  }

  #receive(peer: Peer, message: Message): void {
    if (peer.process === 0) {
      if (message.type !== 'hello') throw new ProtocolError(`expected hello, got ${message.type}`);
      this.#hello(peer, message);
      return;
    }
    switch (message.type) {
      case 'admit':
        this.#admit(peer, message);
        return;
      case 'closed': {
        const ref = { slot: message.slot, gen: message.gen };
        this.#settleClose(peer, ref, undefined);
        if (this.#owns(peer, ref.slot)) this.store.closed(ref, message.reason, { refund: message.refund === true });
        return;
      }
      case 'veto':
        this.#settleClose(peer, message, {
          seenAgoMs: message.seenAgoMs,
          ...(message.busyForMs === undefined ? {} : { busyForMs: message.busyForMs }),
        });
        return;
      case 'register':
        for (const session of message.sessions) {
          const taken = this.store.adopt({ ...session, owner: peer.process });
          // Not taken (over the cap, or the slot went to another meanwhile): the owner closes it.
          if (!taken) this.#send(peer, { type: 'close', slot: session.slot, gen: session.gen, reason: 'evicted' });
        }
        return;
      case 'stats':
        this.#send(peer, { type: 'stats-result', seq: message.seq, stats: flatStats(this.store.stats()) });
        return;
      case 'sweep':
        this.store.sweep();
        return;
      case 'seen':
        for (const [slot, gen, seenAgoMs, busy] of message.entries) {
          if (this.#owns(peer, slot)) this.store.noteSeen({ slot, gen }, seenAgoMs, busy === 1);
        }
        return;
      default:
        throw new ProtocolError(`a process may not send ${message.type}`);
    }
  }

  #hello(peer: Peer, hello: Extract<ProcessMessage, { type: 'hello' }>): void {
    if (hello.version !== PROTOCOL_VERSION)
      throw new ProtocolError(`protocol version ${hello.version} is not ${PROTOCOL_VERSION}`);
    const secret = this.#opts.secret;
    if (secret !== undefined && !sameSecret(hello.secret ?? '', secret)) throw new ProtocolError('wrong secret');
    const process = this.#pickProcess(hello.want);
    if (process === 0) throw new ProtocolError(`no process index free (at most ${MAX_PROCESSES} processes)`);
    peer.process = process;
    peer.pid = hello.pid;
    this.#byProcess.set(process, peer);
    this.store.reviveOwner(process);
    const a = this.#opts.admission;
    this.#send(peer, {
      type: 'welcome',
      process,
      capacity: a.maxSessions,
      idleTimeoutMs: a.idleTimeoutMs,
      maxLifetimeMs: a.maxLifetimeMs,
      busyTimeoutMs: a.busyTimeoutMs,
      routes: this.#opts.routes,
      routeSecret: this.#routeSecret,
    });
  }

  /** The index a process gets: the one it asks for if free, else the next free one. */
  #pickProcess(want: number | undefined): number {
    if (want !== undefined && want > 0 && !this.#byProcess.has(want)) return want;
    for (let i = 0; i < MAX_PROCESSES; i++) {
      const candidate = ((this.#nextProcess - 1 + i) % MAX_PROCESSES) + 1;
      if (!this.#byProcess.has(candidate)) {
        this.#nextProcess = (candidate % MAX_PROCESSES) + 1;
        return candidate;
      }
    }
    return 0;
  }

  #admit(peer: Peer, message: Extract<ProcessMessage, { type: 'admit' }>): void {
    if (Date.now() < this.#openAt) {
      this.#send(peer, {
        type: 'refused',
        seq: message.seq,
        reason: 'unavailable',
        retryAfterMs: this.#openAt - Date.now(),
      });
      return;
    }
    if (++peer.pendingAdmits > MAX_PENDING_ADMITS) throw new ProtocolError('too many admissions waiting');
    const request = {
      clientKey: message.clientKey,
      owner: peer.process,
      ...(message.binding ? { binding: message.binding } : {}),
    };
    void this.store.admit(request).then((decision) => {
      peer.pendingAdmits--;
      if (!decision.ok) {
        this.#send(peer, {
          type: 'refused',
          seq: message.seq,
          reason: decision.reason,
          retryAfterMs: decision.retryAfterMs,
        });
        return;
      }
      const ref = { slot: decision.slot, gen: decision.gen };
      // Published holding its initialize request (as for a thread of this process); here no
      // request ever enters: the owner process holds it, and vetoes a close while it is busy.
      this.store.table.leave(ref);
      // The process left while this was decided: nobody will build the session.
      if (peer.socket.destroyed || this.#byProcess.get(peer.process) !== peer) {
        this.store.closed(ref, 'error', { refund: true });
        return;
      }
      const parsed = parseSessionId(decision.id);
      if (!parsed) throw new Error('the store made an id it cannot parse');
      this.#send(peer, { type: 'admitted', seq: message.seq, slot: ref.slot, gen: ref.gen, rand: parsed.rand });
    });
  }

  /** Whether this peer's process owns the (occupied) slot. */
  #owns(peer: Peer, slot: number): boolean {
    if (slot >= this.store.table.capacity) return false;
    const words = this.store.table.views.words;
    const base = slot * SLOT_I32;
    return (
      wordState(Atomics.load(words, base + S_STATE)) !== ST_FREE && Atomics.load(words, base + S_OWNER) === peer.process
    );
  }

  #settleClose(peer: Peer, ref: SessionRef, veto: CloseVeto | undefined): void {
    const pending = peer.closes.get(ref.slot);
    if (!pending || pending.gen !== ref.gen) return;
    peer.closes.delete(ref.slot);
    pending.resolve(veto);
  }

  /** The store's closer: asks the owning process; a process that is gone has nothing left to close. */
  #askClose(
    owner: number,
    ref: SessionRef,
    reason: CloseReason,
    seenAgoMs: number | undefined,
  ): Promise<CloseVeto | undefined> {
    const peer = this.#byProcess.get(owner);
    if (!peer || peer.socket.destroyed) return Promise.resolve(undefined);
    return new Promise((resolve) => {
      peer.closes.get(ref.slot)?.resolve(undefined);
      peer.closes.set(ref.slot, { gen: ref.gen, resolve });
      this.#send(peer, {
        type: 'close',
        slot: ref.slot,
        gen: ref.gen,
        reason,
        ...(seenAgoMs === undefined ? {} : { seenAgoMs }),
      });
    });
  }
}

/** Stats as the protocol carries them: one number per name (`closedTotal.idle`, ...). */
export function flatStats(stats: BrokerStats): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [name, value] of Object.entries(stats)) {
    if (typeof value === 'number') out[name] = value;
    else if (name === 'closedTotal' || name === 'rejectedTotal') {
      for (const [key, n] of Object.entries(value as Record<string, number>)) out[`${name}.${key}`] = n;
    }
  }
  return out;
}

function sameSecret(given: string, expected: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

/**
 * Removes a socket file left by an authority that died, refusing to when
 * something still listens there or the path is not a socket.
 */
export async function removeStaleSocket(path: string): Promise<void> {
  if (!existsSync(path)) return;
  if (!lstatSync(path).isSocket()) throw new Error(`${path} exists and is not a socket`);
  const live = await new Promise<boolean>((resolve) => {
    const probe = createConnection(path);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
  if (live) throw new Error(`${path} is in use by a running process`);
  unlinkSync(path);
}

/**
 * Listens on a unix socket that only this user can connect to: created under
 * a umask that leaves it 0600 (no moment when it is open to others; the umask
 * is per process, so set and restored around the synchronous bind), and
 * chmod-ed again after.
 */
export async function listenOwnerOnly(server: Server, path: string): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    // process.umask cannot be set from a worker thread: there, only the chmod below narrows it.
    const previous = isMainThread ? process.umask(0o177) : undefined;
    try {
      server.listen(path, () => {
        server.off('error', reject);
        resolve();
      });
    } finally {
      if (previous !== undefined) process.umask(previous);
    }
  });
  chmodSync(path, 0o600);
}
