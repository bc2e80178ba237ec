/**
 * The link of a host's store to Redis (ADR 21): what a host's authority
 * decides over a socket, Redis decides in Lua scripts (`scripts.ts`), and
 * what the authority would send a process (a close to confirm or veto, the
 * answer to an admission that waited for its victim) is published on the
 * owner host's shard channel. The store above is the one of ADR 20.
 *
 * Lost messages only delay: a close not confirmed within 2 s is asked again
 * (by any host's sweep), an admission that waited past `closeTimeoutMs` is
 * abandoned (its tokens go back), and every host reconciles what it owns
 * with Redis every few seconds (sessions Redis has and it does not are
 * freed; sessions it has and Redis does not are registered again).
 */
import { randomBytes, randomFillSync } from 'node:crypto';
import { isIP } from 'node:net';
import { withTimeout } from '../../../shared/timeout.js';
import type { ResolvedAdmissionOptions } from '../../options.js';
import { type AuthorityMessage, type ProcessMessage, parseMessage } from '../../remote/protocol.js';
import type { AuthorityLink, LinkPeer, Welcome } from '../remote/link.js';
import { checkRedisUrl, connectRedis, type RedisClientName, type RedisConnection, redactUrl, scrub } from './client.js';
import { KEY_NAMES, SCRIPT_SHAS, SCRIPTS, type ScriptName } from './scripts.js';

/** What the Redis store is configured with (`StoreContext.storeOptions`; plain data). */
export interface RedisStoreOptions {
  /** `redis://[user:password@]host[:port][/db]`, or `rediss://` for TLS. */
  readonly url: string;
  /**
   * This host's private route, as the other hosts reach it: `http://HOST:PORT`.
   * The host listens there for requests forwarded to its sessions (with the
   * namespace's route secret); HOST is listened on if it is an IP address,
   * else every interface.
   */
  readonly advertise: string;
  /** Several services can share one Redis, each in its own namespace. @default 'default' */
  readonly namespace?: string;
  /** The client library. @default 'redis' (node-redis) */
  readonly client?: RedisClientName;
  /** How long to wait for Redis at start, ms. @default 5_000 */
  readonly connectTimeoutMs?: number;
  /** A host whose liveness is not refreshed for this long is gone; its sessions are freed. @default 5_000 */
  readonly livenessMs?: number;
  /** How often this host runs the shared sweep (expiry, lapsed hosts, closes asked again), ms. @default 1_000 */
  readonly sweepIntervalMs?: number;
  /** How often this host reconciles what it owns with Redis, ms. @default 5_000 */
  readonly reconcileMs?: number;
}

const HEARTBEAT_MS = 1_000;
/** A script Redis has not answered within this long fails, and the link counts as down (fail closed), ms. */
const COMMAND_TIMEOUT_MS = 5_000;
/** An admission whose wait was abandoned but whose answer may be on its way gets this long more, ms. */
const LATE_ANSWER_MS = 2_000;
/** The errors of a connection (or a cluster's shard) that is down, as both client libraries word them. */
const CONNECTION_ERROR =
  /connection|closed|offline|ECONN|EPIPE|ETIMEDOUT|CLUSTERDOWN|writeable|startup nodes|slots cache|socket/i;
/** Sessions per reconcile script (each page also names the slots it covers). */
const RECONCILE_PAGE = 256;
const NAMESPACE = /^[A-Za-z0-9_.-]{1,64}$/;

/** Checks the Redis store's options (before a worker is started with them). */
export function checkRedisOptions(options: RedisStoreOptions): void {
  checkRedisUrl(options.url);
  parseAdvertise(options.advertise);
  if (options.namespace !== undefined && !NAMESPACE.test(options.namespace)) {
    throw new TypeError('the Redis namespace must be 1..64 characters of A-Z a-z 0-9 _ . -');
  }
  if (options.client !== undefined && options.client !== 'redis' && options.client !== 'ioredis') {
    throw new TypeError("the Redis client must be 'redis' or 'ioredis'");
  }
}

/** `http://HOST:PORT`: where this host listens for forwarded requests, and the URL others use. */
export function parseAdvertise(advertise: unknown): { host: string; port: number; url: string } {
  if (typeof advertise !== 'string') throw new TypeError('the advertised URL must be a string: http://HOST:PORT');
  let url: URL;
  try {
    url = new URL(advertise);
  } catch {
    throw new TypeError(`the advertised URL is not a URL: ${advertise} (expected http://HOST:PORT)`);
  }
  if (url.protocol !== 'http:' || url.port === '' || (url.pathname !== '/' && url.pathname !== '')) {
    throw new TypeError(`the advertised URL must be http://HOST:PORT with an explicit port (got ${advertise})`);
  }
  const bare = url.hostname.replace(/^\[|\]$/g, '');
  return { host: isIP(bare) ? bare : '0.0.0.0', port: Number(url.port), url: `http://${url.host}` };
}

export class RedisLink implements AuthorityLink {
  readonly label: string;
  readonly listen: { readonly host: string; readonly port: number; readonly url: string };
  readonly #options: RedisStoreOptions;
  readonly #admission: ResolvedAdmissionOptions;
  readonly #now: (() => number) | undefined;
  readonly #prefix: string;
  readonly #keys: string[];
  readonly #config: string;
  readonly #livenessMs: number;
  #conn: RedisConnection | undefined;
  #peer: LinkPeer | undefined;
  #host = 0;
  #channel: string | undefined;
  #up = false;
  #reconciling = false;
  #closed = false;
  /** This connection's epoch: waiting admissions are named with it (a host index taken again never meets them). */
  #epoch = '';
  /** The namespace's route secret once known (a Redis restarted empty is given it again, not a new one). */
  #secret = randomBytes(24).toString('base64url');
  /** Admissions waiting for their victim's close: their wait's end. Bounded by the store's pending admissions. */
  readonly #waits = new Map<number, NodeJS.Timeout>();
  /** Every host's advertised URL, as of the last heartbeat. At most 255 entries. */
  readonly #directory = new Map<number, string>();
  readonly #timers: NodeJS.Timeout[] = [];
  /** Scripts sent and not yet answered (awaited on close, so closes reach Redis before this host leaves). */
  readonly #inflight = new Set<Promise<unknown>>();

  constructor(options: RedisStoreOptions, admission: ResolvedAdmissionOptions, now?: () => number) {
    checkRedisOptions(options);
    this.#options = options;
    this.#admission = admission;
    this.#now = now;
    this.label = `Redis at ${redactUrl(options.url)}`;
    this.listen = parseAdvertise(options.advertise);
    this.#prefix = `{mcpsb:${options.namespace ?? 'default'}}:`;
    this.#keys = KEY_NAMES.map((name) => this.#prefix + name);
    this.#livenessMs = options.livenessMs ?? 5_000;
    const a = admission;
    // Every host of a namespace must enforce the same limits: compared as this exact string.
    this.#config = JSON.stringify({
      max: a.maxSessions,
      evict: a.evict,
      ...(a.rate ? { rmax: a.rate.max, rwin: a.rate.windowMs } : {}),
      idle: a.idleTimeoutMs,
      life: a.maxLifetimeMs,
      busy: a.busyTimeoutMs,
      ...(a.perClient?.maxSessions !== undefined ? { cmax: a.perClient.maxSessions } : {}),
      ...(a.perClient?.rate ? { crmax: a.perClient.rate.max, crwin: a.perClient.rate.windowMs } : {}),
    });
  }

  // ---- connection -----------------------------------------------------------------

  async open(want: number | undefined, timeoutMs: number, peer: LinkPeer): Promise<Welcome> {
    this.#peer = peer;
    if (!this.#conn) {
      const url = this.#options.url;
      try {
        this.#conn = await connectRedis(url, this.#options.client ?? 'redis', timeoutMs, this.#prefix);
      } catch (error) {
        throw new Error(scrub((error as Error).message, url));
      }
      this.#conn.onStatus((ready) => {
        if (!ready) this.#down();
      });
    }
    if (!this.#conn.ready) throw new Error('Redis is not reachable');
    this.#epoch = randomBytes(6).toString('hex');
    const result = await this.#run('hello', {
      url: this.listen.url,
      ttl: this.#livenessMs,
      config: this.#config,
      secret: this.#secret,
      ...(want === undefined ? {} : { want }),
    }).catch((error: Error) => {
      // A cluster node taken for a single Redis: its INFO (how a cluster is recognized) was refused.
      if (/^MOVED /.test(error.message)) {
        throw fatal(
          `${this.label} is a Redis Cluster node, but did not answer INFO cluster (an ACL may deny it): allow INFO for this user`,
        );
      }
      throw error;
    });
    switch (result.t) {
      case 'welcome':
        break;
      case 'mismatch':
        throw fatal(
          `the namespace ${JSON.stringify(this.#options.namespace ?? 'default')} in Redis enforces other limits (${String(result.config)}) than this host (${this.#config}): give every host the same admission options, or use another namespace`,
        );
      case 'taken':
        throw fatal(`host index ${want} was taken by another host while this one was away`);
      default:
        throw new Error('255 hosts are registered in this namespace: no host index is free');
    }
    const { t: _t, hosts, ...fields } = result;
    this.#learn(hosts as string[]);
    const welcome = parseMessage({ ...fields, type: 'welcome' }) as Welcome;
    this.#secret = welcome.routeSecret;
    this.#host = welcome.process;
    const channel = `${this.#prefix}h:${this.#host}`;
    if (this.#channel !== channel) {
      if (this.#channel) await this.#conn.unsubscribe(this.#channel).catch(() => undefined);
      await this.#conn.subscribe(channel, (message) => this.#fromChannel(message));
      this.#channel = channel;
    }
    this.#up = true;
    this.#startTimers();
    peer.welcomed();
    return welcome;
  }

  #startTimers(): void {
    if (this.#timers.length > 0) return;
    const every = (ms: number, fn: () => void) => {
      const timer = setInterval(() => {
        if (this.#up) fn();
      }, ms);
      timer.unref();
      this.#timers.push(timer);
    };
    every(HEARTBEAT_MS, () => void this.#heartbeat());
    every(this.#options.sweepIntervalMs ?? 1_000, () => this.#fire('sweep', { h: this.#host }));
    every(this.#options.reconcileMs ?? 5_000, () => this.#track(this.#reconcile()));
  }

  /** The connection dropped, or Redis forgot this host: the store fails closed and reconnects. */
  #down(): void {
    if (!this.#up) return;
    this.#up = false;
    for (const timer of this.#waits.values()) clearTimeout(timer);
    this.#waits.clear();
    this.#peer?.lost();
  }

  /**
   * #down, for an answer (or a failure) of a call sent under `epoch`: one
   * sent before this connection's hello is about a connection already ended.
   */
  #downUnder(epoch: string): void {
    if (epoch === this.#epoch) this.#down();
  }

  async #heartbeat(): Promise<void> {
    const epoch = this.#epoch;
    try {
      const result = await this.#run('heartbeat', { h: this.#host, url: this.listen.url, ttl: this.#livenessMs });
      if (result.t === 'gone') {
        if (epoch !== this.#epoch) return;
        this.#peer?.log(
          '[mcp-session-broker] Redis no longer knows this host (restarted, or its liveness lapsed): registering again',
        );
        this.#down();
        return;
      }
      this.#learn(result.hosts as string[]);
    } catch {
      // The connection's status says when Redis is gone.
    }
  }

  /** Every host's URL, as Redis has them now (a flat HGETALL). */
  #learn(hosts: readonly string[]): void {
    this.#directory.clear();
    for (let i = 0; i + 1 < hosts.length; i += 2) this.#directory.set(Number(hosts[i]), String(hosts[i + 1]));
  }

  /**
   * "This is all I own", page by page: each script gets at most
   * RECONCILE_PAGE sessions and the range of slots they cover (the last page
   * runs to the end), so no script holds Redis for long and no argument
   * grows with the cap. Each page is read just before its script runs (a
   * session closed meanwhile is not listed, and not registered again). One
   * reconcile at a time.
   */
  async #reconcile(): Promise<void> {
    const peer = this.#peer;
    if (!peer || this.#reconciling) return;
    this.#reconciling = true;
    const epoch = this.#epoch;
    const grace = this.#options.reconcileMs ?? 5_000;
    try {
      for (let from = 0; ; ) {
        const page = peer.owned(from, RECONCILE_PAGE);
        const last = page.length < RECONCILE_PAGE;
        const to = last ? undefined : (page[page.length - 1] as { slot: number }).slot;
        const sessions = page.map((s) => ({
          slot: s.slot,
          gen: s.gen,
          c: clientField(s.clientKey),
          createdAgoMs: s.createdAgoMs,
          seenAgoMs: s.seenAgoMs,
        }));
        const result = await this.#run('register', { h: this.#host, sessions, complete: true, from, to, grace });
        if (result.t === 'gone') {
          this.#downUnder(epoch);
          return;
        }
        if (to === undefined || !this.#up || this.#closed || epoch !== this.#epoch) return;
        from = to + 1;
      }
    } catch (error) {
      this.#report('register', error as Error);
    } finally {
      this.#reconciling = false;
    }
  }

  // ---- scripts --------------------------------------------------------------------

  /**
   * Runs a script by SHA; after NOSCRIPT (a restart or failover empties the
   * cache) by its source, which Redis caches again. The command goes to the
   * node that holds the namespace's keys (on a Redis Cluster too).
   */
  async #run(name: ScriptName, args: Record<string, unknown>): Promise<Record<string, unknown>> {
    const conn = this.#conn;
    if (!conn) throw new Error('Redis is not connected');
    // A connection that does not answer, or that a cluster's shard lost, is as good as gone: fail closed
    // (the store reconnects).
    const epoch = this.#epoch;
    const lost = () => this.#downUnder(epoch);
    const argv = [this.#now ? String(Math.floor(this.#now())) : '', JSON.stringify(args)];
    const call = (command: 'EVALSHA' | 'EVAL', script: string) =>
      withTimeout(
        conn.call([command, script, String(this.#keys.length), ...this.#keys, ...argv]),
        COMMAND_TIMEOUT_MS,
        () => {
          lost();
          return new Error(`Redis did not answer within ${COMMAND_TIMEOUT_MS} ms`);
        },
        { unref: true },
      );
    let reply: unknown;
    try {
      try {
        reply = await call('EVALSHA', SCRIPT_SHAS[name]);
      } catch (error) {
        if (!/NOSCRIPT/.test(String((error as Error).message))) throw error;
        reply = await call('EVAL', SCRIPTS[name]);
      }
    } catch (error) {
      if (CONNECTION_ERROR.test(String((error as Error).message))) lost();
      throw error;
    }
    const parts = (reply as unknown[]).map(String);
    // [result, host, message, host, message, ...]: each message goes to its host's channel (to this one directly).
    for (let i = 1; i + 1 < parts.length; i += 2) {
      const host = Number(parts[i]);
      const json = parts[i + 1] as string;
      if (host === this.#host) this.#fromChannel(json);
      else void conn.call(['SPUBLISH', `${this.#prefix}h:${host}`, json]).catch(() => undefined);
    }
    return JSON.parse(parts[0] as string) as Record<string, unknown>;
  }

  /** Runs a script whose answer nobody waits for; a failure is the connection's (its status says so). */
  #fire(name: ScriptName, args: Record<string, unknown>): void {
    const epoch = this.#epoch;
    const running = this.#run(name, args).then(
      (result) => {
        if (result.t === 'gone') this.#downUnder(epoch);
      },
      (error: Error) => this.#report(name, error),
    );
    this.#track(running);
  }

  /** Work that close() waits for (bounded) before this host says bye. */
  #track(running: Promise<unknown>): void {
    this.#inflight.add(running);
    void running.finally(() => this.#inflight.delete(running));
  }

  /** A script that failed while Redis is reachable is a bug or a misconfigured Redis: one line (not the connection's errors). */
  #report(name: string, error: Error): void {
    if (this.#conn?.ready && !/NOSCRIPT|did not answer/.test(error.message) && !CONNECTION_ERROR.test(error.message)) {
      this.#peer?.log(
        `[mcp-session-broker] a Redis script failed (${name}): ${scrub(error.message, this.#options.url)}`,
      );
    }
  }

  /** A message for this host (published by another host's script, or by one of ours). */
  #fromChannel(json: string): void {
    let message: AuthorityMessage;
    try {
      const { e: epoch, ...raw } = JSON.parse(json) as Record<string, unknown>;
      if (epoch !== undefined && epoch !== this.#epoch) {
        // The answer to an admission of this host index's previous connection: nobody waits for it.
        if (raw.type === 'admitted') {
          this.#fire('closed', { h: this.#host, slot: raw.slot, gen: raw.gen, reason: 'error', refund: true });
        }
        return;
      }
      if (raw.type === 'admitted') raw.rand = randomWords();
      message = parseMessage(raw) as AuthorityMessage;
    } catch (error) {
      this.#peer?.log(
        `[mcp-session-broker] ignored a bad message on this host's Redis channel: ${(error as Error).message}`,
      );
      return;
    }
    if (message.type === 'admitted' || message.type === 'refused') {
      const timer = this.#waits.get(message.seq);
      if (timer) clearTimeout(timer);
      this.#waits.delete(message.seq);
    }
    if (this.#up || message.type === 'close') this.#peer?.receive(message);
  }

  // ---- messages from the store ------------------------------------------------------

  send(message: ProcessMessage): void {
    if (!this.#up) return;
    const h = this.#host;
    switch (message.type) {
      case 'admit':
        void this.#admit(message);
        return;
      case 'closed':
        this.#fire('closed', {
          h,
          slot: message.slot,
          gen: message.gen,
          reason: message.reason,
          refund: message.refund === true,
        });
        return;
      case 'veto':
        this.#fire('veto', {
          h,
          slot: message.slot,
          gen: message.gen,
          seenAgoMs: message.seenAgoMs,
          ...(message.busyForMs === undefined ? {} : { busyForMs: message.busyForMs }),
        });
        return;
      case 'seen':
        this.#fire('seen', { h, entries: message.entries });
        return;
      case 'register':
        this.#fire('register', {
          h,
          sessions: message.sessions.map((s) => ({
            slot: s.slot,
            gen: s.gen,
            c: clientField(s.clientKey),
            createdAgoMs: s.createdAgoMs,
            seenAgoMs: s.seenAgoMs,
          })),
        });
        return;
      case 'stats':
        void this.#stats(message.seq);
        return;
      case 'sweep':
        this.#fire('sweep', { h });
        return;
      default:
        return;
    }
  }

  async #admit(message: Extract<ProcessMessage, { type: 'admit' }>): Promise<void> {
    const { seq } = message;
    const epoch = this.#epoch;
    const answer = (m: AuthorityMessage) => this.#peer?.receive(m);
    let result: Record<string, unknown>;
    try {
      result = await this.#run('admit', {
        h: this.#host,
        e: epoch,
        seq,
        c: clientField(message.clientKey),
        o: message.owner,
      });
    } catch (error) {
      this.#report('admit', error as Error);
      answer({ type: 'refused', seq, reason: 'unavailable', retryAfterMs: 1_000 });
      return;
    }
    switch (result.t) {
      case 'admitted':
        answer({ type: 'admitted', seq, slot: Number(result.slot), gen: Number(result.gen), rand: randomWords() });
        return;
      case 'refused':
        answer({ type: 'refused', seq, reason: result.reason as never, retryAfterMs: Number(result.retryAfterMs) });
        return;
      case 'wait': {
        // The victim's owner confirms (the grant is published here) or vetoes (another victim, or a refusal).
        const timer = setTimeout(() => void this.#abandon(seq), this.#admission.closeTimeoutMs);
        timer.unref();
        this.#waits.set(seq, timer);
        return;
      }
      default:
        answer({ type: 'refused', seq, reason: 'unavailable', retryAfterMs: 1_000 });
        this.#downUnder(epoch);
    }
  }

  /** The wait ran out: refused here unless Redis decided it meanwhile (then its answer is on its way). */
  async #abandon(seq: number): Promise<void> {
    if (!this.#waits.has(seq)) return;
    let result: Record<string, unknown> = { t: 'gone' };
    try {
      result = await this.#run('abandon', { h: this.#host, e: this.#epoch, seq });
    } catch {
      // Unreachable now: the store refused it already (fail closed), or will below.
    }
    if (result.t === 'refused') {
      this.#waits.delete(seq);
      this.#peer?.receive({
        type: 'refused',
        seq,
        reason: result.reason as never,
        retryAfterMs: Number(result.retryAfterMs),
      });
      return;
    }
    // The answer may have arrived while the abandon ran: then there is nothing more to wait for.
    if (!this.#waits.has(seq)) return;
    const timer = setTimeout(() => {
      if (!this.#waits.has(seq)) return;
      this.#waits.delete(seq);
      // A grant that never arrives is freed by the reconcile (this host does not own it).
      this.#peer?.receive({ type: 'refused', seq, reason: 'unavailable', retryAfterMs: 1_000 });
    }, LATE_ANSWER_MS);
    timer.unref();
    this.#waits.set(seq, timer);
  }

  async #stats(seq: number): Promise<void> {
    let stats: Record<string, number> = {};
    try {
      const result = await this.#run('stats', { h: this.#host });
      if (result.t === 'stats') stats = result.stats as Record<string, number>;
    } catch {
      // Answered empty: the store falls back to its own counts.
    }
    this.#peer?.receive({ type: 'stats-result', seq, stats });
  }

  // ---- routing and shutdown -----------------------------------------------------------

  async peer(process: number): Promise<string | undefined> {
    const known = this.#directory.get(process);
    if (known) return known;
    if (!this.#conn?.ready) return undefined;
    try {
      const url = await this.#conn.call(['HGET', `${this.#prefix}hosts`, String(process)]);
      if (typeof url !== 'string' || url.length === 0) return undefined;
      this.#directory.set(process, url);
      return url;
    } catch {
      return undefined;
    }
  }

  end(): void {
    this.#down();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const timer of this.#timers) clearInterval(timer);
    for (const timer of this.#waits.values()) clearTimeout(timer);
    this.#waits.clear();
    const conn = this.#conn;
    if (!conn) return;
    if (this.#up && conn.ready) {
      // Leaves now if it holds nothing (the closes were sent first); else its liveness lapses.
      await withTimeout(
        Promise.allSettled([...this.#inflight]),
        COMMAND_TIMEOUT_MS,
        () => new Error('scripts still running'),
        { unref: true },
      ).catch(() => undefined);
      await this.#run('bye', { h: this.#host, url: this.listen.url }).catch(() => undefined);
    }
    this.#up = false;
    await conn.close();
  }
}

/** Client keys as Redis members: base64url, so no key can read as another's prefix. */
function clientField(clientKey: string): string {
  return Buffer.from(clientKey).toString('base64url');
}

function randomWords(): [number, number, number, number] {
  const words = new Int32Array(4);
  randomFillSync(words);
  return [words[0] ?? 0, words[1] ?? 0, words[2] ?? 0, words[3] ?? 0];
}

/** An error the store must not retry: it logs it and stops admitting (the process must be restarted). */
function fatal(message: string): Error {
  return Object.assign(new Error(message), { fatal: true });
}
