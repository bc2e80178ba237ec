/**
 * Per-thread listeners (Node >= 22.12, `reusePort`): a handler thread accepts
 * connections on the server's port itself and runs the same front as the
 * listener thread (`front/`): preflight, Host/Origin, limits, probes,
 * `/metrics`. A request of a session this thread owns, and every initialize
 * (the session is created here), is served here with no hop; a request of a
 * session another thread owns is passed to it over the channel between the two
 * threads and its answer streamed back. ADR 17.
 */
import type { Server, ServerResponse } from 'node:http';
import type { MessagePort } from 'node:worker_threads';
import type { SessionIndex } from '../../broker/index.js';
import { Channel, type Serve } from '../../shared/channel.js';
import { Answers } from '../../shared/jsonrpc.js';
import { LISTEN_STATUS, type StreamLimits, type WireRequest } from '../../shared/messages.js';
import type { SessionRef } from '../../shared/types.js';
import {
  type Authenticate,
  type ClientIdentity,
  ClientKeys,
  ConnectionLimiter,
  createListener,
  type Dispatcher,
  Front,
  type FrontCounters,
  type FrontOptions,
  FrontTally,
  type ListenerOptions,
  LocalDispatcher,
  listen,
  type OriginPolicy,
  PendingCounts,
  type Routed,
  send,
} from '../front/index.js';
import type { SessionHost } from '../host/index.js';

/** What a handler thread needs to listen itself (part of its workerData). */
export interface ThreadListenConfig {
  readonly listener: ListenerOptions;
  readonly front: Omit<FrontOptions, 'originPolicy'>;
  readonly maxConnections: number;
  readonly trustProxy: number;
  readonly maxPendingPerThread: number;
  /** Int32[1], written by main: one of `LISTEN_STATUS`. */
  readonly status: SharedArrayBuffer;
  /** The `FrontTally` buffer (a row per lane), also holding the front's counters. */
  readonly tally: SharedArrayBuffer;
  /** The auth module (a path) every thread loads, when auth is on. */
  readonly authModule: string | undefined;
  /** The key of principal bindings, the same on every thread. */
  readonly bindingSecret: Uint8Array;
}

/** What main asks of a listening thread (comlink). */
export interface ThreadControl {
  /** The channel to another handler thread, for requests of sessions it owns. */
  addPeer(threadId: number, port: MessagePort): void;
  /** Listens on `port` (0: any) with `reusePort`; resolves with the port. */
  listen(port: number, host: string): Promise<number>;
  /** Starts serving the MCP path (until then: 503 starting), with the Host/Origin policy. */
  open(policy: OriginPolicy): void;
  /** Stops accepting connections and closes the idle ones. */
  stop(): void;
  /** Resolves once no POST or DELETE is in flight here (or after `timeoutMs`); new requests get 503 meanwhile. */
  drain(timeoutMs: number): Promise<void>;
  /** Lets open responses end for up to `ms`, then closes every connection. */
  flush(ms: number): Promise<void>;
}

/** What a listening thread asks of main (comlink). */
export interface MainControl {
  /** The Prometheus exposition of `/metrics`. */
  metrics(): Promise<{ readonly contentType: string; readonly text: string }>;
}

/**
 * Hands requests to their owner: this thread's host for its own sessions and
 * for every initialize; another thread's over the channel to it. A request of
 * an owner with no channel (it just died) is answered here: 404.
 */
class ThreadDispatcher implements Dispatcher {
  readonly threadIds: readonly number[];
  readonly restarts = { stalled: 0, died: 0 };
  readonly #me: number;
  /** This thread's own sessions, served here. */
  readonly #local: LocalDispatcher;
  readonly #peers: ReadonlyMap<number, Channel>;
  readonly #maxPending: number;
  readonly #counters: FrontCounters;
  /** Requests handed to each thread (this one included) and not yet answered. */
  readonly #pending = new PendingCounts();

  constructor(
    host: SessionHost,
    me: number,
    peers: ReadonlyMap<number, Channel>,
    limits: StreamLimits,
    maxPending: number,
    counters: FrontCounters,
  ) {
    this.threadIds = [me];
    this.#me = me;
    this.#local = new LocalDispatcher(host, limits);
    this.#peers = peers;
    this.#maxPending = maxPending;
    this.#counters = counters;
  }

  initialize(client: ClientIdentity, request: WireRequest): Promise<Routed> {
    return this.#counted(this.#me, () => this.#local.initialize(client, request));
  }

  session(sessionId: string, ref: SessionRef, owner: number, request: WireRequest): Promise<Routed> {
    const peer = owner === this.#me ? undefined : this.#peers.get(owner);
    if (!peer) return this.#counted(this.#me, () => this.#local.session(sessionId, ref, owner, request));
    this.#counters.handedOff++;
    return this.#counted(owner, () => peer.call({ kind: 'session', sessionId, ref, request }));
  }

  async #counted(threadId: number, run: () => Promise<Routed>): Promise<Routed> {
    if (this.#pending.of(threadId) >= this.#maxPending) return { busy: true };
    this.#pending.add(threadId);
    try {
      return await run();
    } finally {
      this.#pending.done(threadId);
    }
  }

  async close(): Promise<void> {}
}

/** Front counters kept in this thread's row of the shared tally (summed by main for metrics). */
function sharedCounters(tally: FrontTally, row: number): FrontCounters {
  const field = (name: keyof FrontCounters) => ({
    get: () => tally.read(row, name),
    set: (value: number) => tally.write(row, name, value),
    enumerable: true,
  });
  return Object.defineProperties({} as FrontCounters, {
    queueFull: field('queueFull'),
    clientAborts: field('clientAborts'),
    inFlightLimited: field('inFlightLimited'),
    handedOff: field('handedOff'),
  });
}

export interface ThreadListenerParts {
  readonly config: ThreadListenConfig;
  readonly host: SessionHost;
  readonly index: SessionIndex;
  readonly threadId: number;
  readonly streamLimits: StreamLimits;
  /** Serves a request another thread hands to this one (the same function main's channel uses). */
  readonly serve: Serve;
  readonly main: MainControl;
  /** The bearer-token check, loaded from `config.authModule`. */
  readonly authenticate: Authenticate | undefined;
}

/** The listening side of a handler thread: its server, its front, its channels to the other threads. */
export function startThreadListener(parts: ThreadListenerParts): ThreadControl {
  const { config, host } = parts;
  const status = new Int32Array(config.status);
  const tally = new FrontTally(config.tally);
  const row = host.lane;
  const counters = sharedCounters(tally, row);
  const peers = new Map<number, Channel>();
  let policy: OriginPolicy = { allowedHosts: undefined, allowedOrigins: undefined };
  const frontOptions: { -readonly [K in keyof FrontOptions]: FrontOptions[K] } = {
    ...config.front,
    originPolicy: policy,
  };
  const statusNow = () => {
    const value = Atomics.load(status, 0);
    return value === LISTEN_STATUS.failed ? 'failed' : value === LISTEN_STATUS.closing ? 'closing' : 'open';
  };
  const front = new Front({
    opts: frontOptions,
    index: parts.index,
    dispatcher: new ThreadDispatcher(
      host,
      parts.threadId,
      peers,
      parts.streamLimits,
      config.maxPendingPerThread,
      counters,
    ),
    clients: new ClientKeys({ trustProxy: config.trustProxy, clientKey: undefined, secret: config.bindingSecret }),
    authenticate: parts.authenticate,
    status: statusNow,
    counters,
  });
  const connections = new ConnectionLimiter(
    { maxConnections: config.maxConnections, maxConnectionsPerAddress: undefined, trustProxy: config.trustProxy },
    { tally, row },
  );
  let opened = false;
  const metrics = (res: ServerResponse) => {
    parts.main.metrics().then(
      ({ contentType, text }) => {
        res.writeHead(200, { 'content-type': contentType });
        res.end(text);
      },
      () => send(res, Answers.internal('metrics unavailable')),
    );
  };
  const server: Server = createListener({
    opts: config.listener,
    connections,
    front: () => (opened ? front : undefined),
    policy: () => policy,
    status: () => (opened ? statusNow() : 'starting'),
    metrics,
    authenticate: parts.authenticate,
  });
  return {
    addPeer(threadId, port) {
      const channel = new Channel(port, parts.serve);
      peers.set(threadId, channel);
      channel.onClosed(() => {
        if (peers.get(threadId) === channel) peers.delete(threadId);
      });
    },
    async listen(port, hostname) {
      await listen(server, port, hostname, true);
      const address = server.address();
      return typeof address === 'object' && address ? address.port : port;
    },
    open(next) {
      policy = next;
      frontOptions.originPolicy = next;
      opened = true;
    },
    stop() {
      server.close();
      server.closeIdleConnections();
    },
    async drain(timeoutMs) {
      await front.drain(timeoutMs);
    },
    async flush(ms) {
      await front.flush(ms);
      server.closeAllConnections();
      for (const channel of peers.values()) channel.close();
    },
  };
}
