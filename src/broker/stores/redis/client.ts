/**
 * The Redis connection the store needs, over either client library: `redis`
 * (node-redis, the default) or `ioredis`. Both are optional peer
 * dependencies, loaded only when the Redis store is used. Commands fail at
 * once while the connection is down (no offline queue: the store fails
 * closed); the library reconnects by itself, and resubscribes.
 *
 * Credentials in a URL never leave this module: `redactUrl` is what logs and
 * errors show, and error messages are scrubbed of the password.
 */
import { BrokerError } from '../../../shared/errors.js';
import { withTimeout } from '../../../shared/timeout.js';

export type RedisClientName = 'redis' | 'ioredis';

export interface RedisConnection {
  /** Sends one command; rejects at once while disconnected. */
  call(args: readonly string[]): Promise<unknown>;
  /** Subscribes to a shard channel (`SSUBSCRIBE`) on the subscriber connection. */
  subscribe(channel: string, listener: (message: string) => void): Promise<void>;
  unsubscribe(channel: string): Promise<void>;
  /** Whether commands can be sent now. */
  readonly ready: boolean;
  /** Called on every loss (and every ready) of the command connection. */
  onStatus(listener: (ready: boolean) => void): void;
  close(): Promise<void>;
}

/** The URL without its password (and user name): what logs, errors and metrics may show. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.username || parsed.password) {
      parsed.username = parsed.username ? '***' : '';
      parsed.password = parsed.password ? '***' : '';
    }
    parsed.search = '';
    parsed.hash = '';
    return parsed.toString();
  } catch {
    return '<an invalid Redis URL>';
  }
}

/** A message with the URL's secrets taken out. */
export function scrub(message: string, url: string): string {
  let out = message;
  try {
    const parsed = new URL(url);
    let decoded = parsed.password;
    try {
      decoded = decodeURIComponent(parsed.password);
    } catch {
      // Not percent-encoding after all: the raw form is removed below.
    }
    for (const secret of [parsed.password, decoded, parsed.username]) {
      if (secret.length >= 3) out = out.split(secret).join('***');
    }
    out = out.split(url).join(redactUrl(url));
  } catch {
    // Not a URL: nothing in it to find.
  }
  return out;
}

/** Checks the URL's form: `redis://` or `rediss://` (TLS), host, optional port and database. */
export function checkRedisUrl(url: unknown): string {
  if (typeof url !== 'string' || url.length === 0) throw new TypeError('the Redis URL must be a non-empty string');
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new TypeError('the Redis URL is not a URL (redis://[user:password@]host[:port][/db], or rediss:// for TLS)');
  }
  if (parsed.protocol !== 'redis:' && parsed.protocol !== 'rediss:') {
    throw new TypeError(`the Redis URL must start with redis:// or rediss:// (got ${parsed.protocol}//)`);
  }
  if (!/^\/?\d*$/.test(parsed.pathname)) throw new TypeError('the Redis URL path must be a database number, e.g. /0');
  if (parsed.search !== '' || parsed.hash !== '') {
    throw new TypeError('the Redis URL must not have a query or a fragment: give credentials as user:password@');
  }
  return url;
}

async function load(name: RedisClientName): Promise<Record<string, unknown>> {
  try {
    return (await import(name)) as Record<string, unknown>;
  } catch (cause) {
    throw new BrokerError(
      'ERR_BROKER_START',
      `the Redis store needs the \`${name}\` package, an optional peer dependency: npm install ${name}`,
      { cause },
    );
  }
}

const backoff = (attempt: number) => Math.min(1_000, 50 * 2 ** Math.min(attempt, 10));

/**
 * Opens a command connection and a subscriber connection; rejects (scrubbed)
 * if Redis cannot be reached within `timeoutMs`. A Redis Cluster node (its
 * `INFO cluster` says so) is connected to as a cluster instead: every command
 * goes to the node holding `routeKey`'s slot (all the store's keys and
 * channels share it), following the cluster when slots move.
 */
export async function connectRedis(
  url: string,
  client: RedisClientName,
  timeoutMs: number,
  routeKey: string,
): Promise<RedisConnection> {
  const single = client === 'ioredis' ? await connectIoredis(url, timeoutMs) : await connectNodeRedis(url, timeoutMs);
  let info = '';
  try {
    info = String(await withTimeout(single.call(['INFO', 'cluster']), timeoutMs, () => noAnswer(timeoutMs)));
  } catch {
    // INFO refused (an ACL may deny it): taken as a single Redis.
  }
  if (!/^cluster_enabled:1\b/m.test(info)) return single;
  await single.close();
  const db = new URL(url).pathname.replace('/', '');
  if (db !== '' && db !== '0') {
    throw new Error(`${redactUrl(url)} is a Redis Cluster node: a cluster has database 0 only (drop /${db})`);
  }
  return client === 'ioredis'
    ? connectIoredisCluster(url, timeoutMs)
    : connectNodeRedisCluster(url, timeoutMs, routeKey);
}

interface NodeRedisClient {
  isReady: boolean;
  connect(): Promise<unknown>;
  sendCommand(args: readonly string[]): Promise<unknown>;
  sSubscribe(channel: string, listener: (message: string) => void): Promise<void>;
  sUnsubscribe(channel: string): Promise<void>;
  on(event: string, listener: (...args: unknown[]) => void): unknown;
  destroy(): void;
}

async function connectNodeRedis(url: string, timeoutMs: number): Promise<RedisConnection> {
  const lib = await load('redis');
  const createClient = lib.createClient as (options: unknown) => NodeRedisClient;
  let connected = false;
  const options = {
    url,
    disableOfflineQueue: true,
    socket: {
      connectTimeout: timeoutMs,
      // Before the first connection: give up (a one-line error at start); after it: retry forever.
      reconnectStrategy: (retries: number, cause: Error) => (connected ? backoff(retries) : cause),
    },
  };
  const commands = createClient(options);
  const subscriber = createClient(options);
  const listeners: Array<(ready: boolean) => void> = [];
  // Errors are the reconnect's business (and status changes are reported): never an unhandled 'error'.
  commands.on('error', () => undefined);
  subscriber.on('error', () => undefined);
  commands.on('ready', () => {
    for (const l of listeners) l(true);
  });
  const down = () => {
    for (const l of listeners) l(false);
  };
  commands.on('reconnecting', down);
  commands.on('end', down);
  await connectWithin(Promise.all([commands.connect(), subscriber.connect()]), timeoutMs, url, () => {
    commands.destroy();
    subscriber.destroy();
  });
  connected = true;
  return {
    call: (args) => commands.sendCommand(args),
    subscribe: (channel, listener) => subscriber.sSubscribe(channel, listener),
    unsubscribe: (channel) => subscriber.sUnsubscribe(channel),
    get ready() {
      return commands.isReady;
    },
    onStatus: (listener) => {
      listeners.push(listener);
    },
    close: async () => {
      commands.destroy();
      subscriber.destroy();
    },
  };
}

interface IoredisClient {
  status: string;
  connect(): Promise<unknown>;
  call(command: string, ...args: string[]): Promise<unknown>;
  ssubscribe(channel: string): Promise<unknown>;
  sunsubscribe(channel: string): Promise<unknown>;
  on(event: string, listener: (...args: unknown[]) => void): unknown;
  disconnect(): void;
}

async function connectIoredis(url: string, timeoutMs: number): Promise<RedisConnection> {
  const lib = await load('ioredis');
  const Redis = (lib.Redis ?? lib.default) as new (url: string, options: unknown) => IoredisClient;
  let connected = false;
  const options = {
    lazyConnect: true,
    enableOfflineQueue: false,
    connectTimeout: timeoutMs,
    maxRetriesPerRequest: 0,
    retryStrategy: (times: number) => (connected ? backoff(times) : null),
  };
  const commands = new Redis(url, options);
  const subscriber = new Redis(url, options);
  const listeners: Array<(ready: boolean) => void> = [];
  commands.on('error', () => undefined);
  subscriber.on('error', () => undefined);
  commands.on('ready', () => {
    for (const l of listeners) l(true);
  });
  commands.on('close', () => {
    for (const l of listeners) l(false);
  });
  await connectWithin(Promise.all([commands.connect(), subscriber.connect()]), timeoutMs, url, () => {
    commands.disconnect();
    subscriber.disconnect();
  });
  connected = true;
  return ioredisConnection(
    commands,
    subscriber,
    (listener) => {
      listeners.push(listener);
    },
    () => {
      commands.disconnect();
      subscriber.disconnect();
    },
  );
}

/** The store's connection over ioredis: commands on one client, shard subscriptions on another (or the same cluster). */
function ioredisConnection(
  commands: IoredisClient,
  subscriber: IoredisClient,
  onStatus: RedisConnection['onStatus'],
  disconnect: () => void,
): RedisConnection {
  const handlers = new Map<string, (message: string) => void>();
  subscriber.on('smessage', (channel, message) => handlers.get(String(channel))?.(String(message)));
  return {
    call: ([command, ...args]) => commands.call(command as string, ...args),
    subscribe: async (channel, listener) => {
      handlers.set(channel, listener);
      await subscriber.ssubscribe(channel);
    },
    unsubscribe: async (channel) => {
      handlers.delete(channel);
      await subscriber.sunsubscribe(channel);
    },
    get ready() {
      return commands.status === 'ready';
    },
    onStatus,
    close: async () => disconnect(),
  };
}

/** What a cluster client needs of the URL: the seed node, and the credentials and TLS every node gets. */
function clusterSeed(url: string) {
  const parsed = new URL(url);
  return {
    host: parsed.hostname.replace(/^\[|\]$/g, ''),
    port: Number(parsed.port || 6379),
    username: parsed.username ? decodeURIComponent(parsed.username) : undefined,
    password: parsed.password ? decodeURIComponent(parsed.password) : undefined,
    tls: parsed.protocol === 'rediss:',
  };
}

// A cluster has no one status to follow: its nodes come and go one by one. A script that fails fails
// closed, one that does not answer within its deadline counts as the link down, and one that says this
// host is gone (a shard restarted empty) registers it again.
const NO_STATUS = () => undefined;

interface NodeRedisCluster {
  isReady: boolean;
  connect(): Promise<unknown>;
  getNodeClientForKey(
    key: string,
    isReadonly: boolean,
  ): Promise<{ sendCommand(args: readonly string[]): Promise<unknown> }>;
  sSubscribe(channel: string, listener: (message: string) => void): Promise<void>;
  sUnsubscribe(channel: string): Promise<void>;
  on(event: string, listener: (...args: unknown[]) => void): unknown;
  destroy(): void;
}

async function connectNodeRedisCluster(url: string, timeoutMs: number, routeKey: string): Promise<RedisConnection> {
  const lib = await load('redis');
  const createCluster = lib.createCluster as (options: unknown) => NodeRedisCluster;
  const seed = clusterSeed(url);
  let connected = false;
  const cluster = createCluster({
    rootNodes: [{ socket: { host: seed.host, port: seed.port, tls: seed.tls } }],
    defaults: {
      username: seed.username,
      password: seed.password,
      disableOfflineQueue: true,
      socket: {
        tls: seed.tls,
        connectTimeout: timeoutMs,
        reconnectStrategy: (retries: number, cause: Error) => (connected ? backoff(retries) : cause),
      },
    },
  });
  cluster.on('error', () => undefined);
  cluster.on('node-error', () => undefined);
  await connectWithin(cluster.connect(), timeoutMs, url, () => cluster.destroy());
  connected = true;
  // Every command on the one client of the node holding the namespace, in the order sent (the cluster's
  // own sendCommand looks the node up per command, and two lookups can finish out of order: a close sent
  // before an admission could reach Redis after it). Looked up again after a failure (a moved slot).
  let node: ReturnType<NodeRedisCluster['getNodeClientForKey']> | undefined;
  return {
    call: async (args) => {
      node ??= cluster.getNodeClientForKey(routeKey, false);
      const current = node;
      try {
        return await (await current).sendCommand(args);
      } catch (error) {
        if (node === current) node = undefined;
        throw error;
      }
    },
    subscribe: (channel, listener) => cluster.sSubscribe(channel, listener),
    unsubscribe: (channel) => cluster.sUnsubscribe(channel),
    get ready() {
      return cluster.isReady;
    },
    onStatus: NO_STATUS,
    close: async () => {
      cluster.destroy();
    },
  };
}

async function connectIoredisCluster(url: string, timeoutMs: number): Promise<RedisConnection> {
  const lib = await load('ioredis');
  const Cluster = (lib.Cluster ?? (lib.default as Record<string, unknown>).Cluster) as new (
    nodes: unknown[],
    options: unknown,
  ) => IoredisClient;
  const seed = clusterSeed(url);
  let connected = false;
  const cluster = new Cluster([{ host: seed.host, port: seed.port }], {
    lazyConnect: true,
    enableOfflineQueue: false,
    shardedSubscribers: true,
    clusterRetryStrategy: (times: number) => (connected ? backoff(times) : null),
    // Over TLS the seed keeps its host name (its certificate names it), not the address it resolves to.
    ...(seed.tls ? { dnsLookup: (address: string, done: (e: null, a: string) => void) => done(null, address) } : {}),
    redisOptions: {
      username: seed.username,
      password: seed.password,
      connectTimeout: timeoutMs,
      maxRetriesPerRequest: 0,
      ...(seed.tls ? { tls: {} } : {}),
    },
  });
  cluster.on('error', () => undefined);
  await connectWithin(cluster.connect(), timeoutMs, url, () => cluster.disconnect());
  connected = true;
  return ioredisConnection(cluster, cluster, NO_STATUS, () => cluster.disconnect());
}

/** Waits for `connecting` within `timeoutMs`; on failure drops the clients and rejects with the URL's secrets scrubbed. */
async function connectWithin(
  connecting: Promise<unknown>,
  timeoutMs: number,
  url: string,
  drop: () => void,
): Promise<void> {
  try {
    await withTimeout(connecting, timeoutMs, () => noAnswer(timeoutMs));
  } catch (error) {
    drop();
    throw new Error(scrub((error as Error).message || String(error), url));
  }
}

function noAnswer(ms: number): Error {
  return new Error(`no answer within ${ms} ms`);
}
