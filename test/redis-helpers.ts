/**
 * A real redis-server for the tests: the one `.ci/run` started
 * (MCP_SESSION_BROKER_TEST_REDIS), or one started here from `redis-server` on
 * PATH on a free port of 127.0.0.1. Without either, the Redis tests are
 * skipped with a message saying how to run them (never a false pass).
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const REDIS_BINARY = spawnSync('redis-server', ['--version']).status === 0 ? 'redis-server' : undefined;
export const SHARED_REDIS = process.env.MCP_SESSION_BROKER_TEST_REDIS;
/** Why the Redis tests are skipped here, or undefined when they run. */
export const REDIS_MISSING =
  REDIS_BINARY || SHARED_REDIS
    ? undefined
    : 'no redis-server here: install it (apt-get install -y redis-server) or set MCP_SESSION_BROKER_TEST_REDIS=redis://HOST:PORT, then run the tests again';
if (REDIS_MISSING) console.warn(`[redis tests skipped] ${REDIS_MISSING}`);
else if (!REDIS_BINARY) {
  console.warn(
    '[redis fault and cluster tests skipped] they start servers of their own: install redis-server to run them',
  );
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

/** A redis-server of this test's own (it can be stopped and restarted, empty). */
export class RedisServer {
  readonly port: number;
  readonly #dir: string;
  readonly #args: string[];
  #child: ChildProcess | undefined;

  private constructor(port: number, args: string[]) {
    this.port = port;
    this.#dir = mkdtempSync(join(tmpdir(), 'mcpsb-redis-'));
    this.#args = args;
  }

  static async start(args: string[] = []): Promise<RedisServer> {
    if (!REDIS_BINARY) throw new Error('redis-server is not installed');
    const server = new RedisServer(await freePort(), args);
    await server.restart();
    return server;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  /** Starts it again (empty: no persistence) after `stop`. */
  async restart(): Promise<void> {
    const child = spawn(
      REDIS_BINARY as string,
      [
        '--port',
        String(this.port),
        '--bind',
        '127.0.0.1',
        '--save',
        '',
        '--appendonly',
        'no',
        '--dir',
        this.#dir,
        ...this.#args,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    this.#child = child;
    await new Promise<void>((resolve, reject) => {
      let out = '';
      const timer = setTimeout(() => reject(new Error(`redis-server did not start: ${out}`)), 10_000);
      child.stdout?.on('data', (chunk: Buffer) => {
        out += chunk.toString();
        if (out.includes('Ready to accept connections')) {
          clearTimeout(timer);
          resolve();
        }
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`redis-server exited with ${code}: ${out}`));
      });
    });
  }

  /** Kills it (SIGKILL: nothing saved, connections dropped). */
  async stop(): Promise<void> {
    const child = this.#child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      child.once('exit', () => resolve());
      child.kill('SIGKILL');
    });
  }

  async dispose(): Promise<void> {
    await this.stop();
    rmSync(this.#dir, { recursive: true, force: true });
  }
}

let namespaces = 0;
/** A namespace no other test uses (tests can share one Redis). */
export function uniqueNamespace(label: string): string {
  return `t-${label}-${process.pid}-${Date.now().toString(36)}-${++namespaces}`;
}

/** What the tests' Redis probes need of a client: one raw command. */
export interface RedisProbe {
  sendCommand(args: string[]): Promise<unknown>;
}

/**
 * Writes into Redis, in one step (no script of the store's runs between),
 * live sessions that `host` never heard of (as lost grants would leave them)
 * in `slots`, born a minute ago by Redis time: only a reconcile can free
 * them. Answers the namespace's live count right after.
 */
export async function injectGhosts(
  probe: RedisProbe,
  namespace: string,
  host: number,
  slots: number[],
): Promise<number> {
  const key = (name: string) => `{mcpsb:${namespace}}:${name}`;
  const script = `
local t = redis.call('TIME')
local born = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - 60000
local host = tonumber(ARGV[1])
for i = 2, #ARGV do
  local slot = tonumber(ARGV[i])
  local order = 1000000 + slot
  redis.call('HSET', KEYS[1], slot, cjson.encode({ g = 1, h = host, o = 0, c = 'Z2hvc3Q', b = born, s = born, st = 'L', q = order }))
  redis.call('ZREM', KEYS[3], slot)
  if slot >= tonumber(redis.call('HGET', KEYS[2], 'next') or '0') then redis.call('HSET', KEYS[2], 'next', slot + 1) end
  redis.call('HINCRBY', KEYS[2], 'live', 1)
  redis.call('ZADD', KEYS[4], order, slot)
  redis.call('ZADD', KEYS[5], born, slot)
  redis.call('ZADD', KEYS[6], 0, string.format('%03d:%08d', host, slot))
end
return tonumber(redis.call('HGET', KEYS[2], 'live'))`;
  const keys = ['sess', 'meta', 'free', 'fifo', 'seen', 'hsess'].map(key);
  return Number(
    await probe.sendCommand(['EVAL', script, String(keys.length), ...keys, String(host), ...slots.map(String)]),
  );
}

/** Sessions Redis counts in the namespace (live and closing). */
export async function occupiedIn(probe: RedisProbe, namespace: string): Promise<number> {
  const values = (await probe.sendCommand(['HMGET', `{mcpsb:${namespace}}:meta`, 'live', 'closing'])) as (
    | string
    | null
  )[];
  return values.reduce((sum, v) => sum + Number(v ?? 0), 0);
}

/**
 * A Redis Cluster of `size` primaries (no replicas) on free ports of
 * 127.0.0.1, each a redis-server of its own, the 16384 slots split evenly.
 * Formed with CLUSTER ADDSLOTSRANGE and MEET (no redis-cli needed).
 */
export class RedisCluster {
  readonly nodes: RedisServer[];

  private constructor(nodes: RedisServer[]) {
    this.nodes = nodes;
  }

  static async start(size = 3): Promise<RedisCluster> {
    const nodes: RedisServer[] = [];
    const cluster = new RedisCluster(nodes);
    try {
      for (let i = 0; i < size; i++) {
        nodes.push(await RedisServer.start(['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf']));
      }
      const { createClient } = await import('redis');
      const clients = await Promise.all(nodes.map((n) => createClient({ url: n.url }).connect()));
      try {
        const per = Math.ceil(16384 / size);
        for (const [i, client] of clients.entries()) {
          await client.sendCommand([
            'CLUSTER',
            'ADDSLOTSRANGE',
            String(i * per),
            String(Math.min(16383, (i + 1) * per - 1)),
          ]);
        }
        for (const node of nodes.slice(1))
          await clients[0]?.sendCommand(['CLUSTER', 'MEET', '127.0.0.1', String(node.port)]);
        const deadline = Date.now() + 20_000;
        for (const client of clients) {
          for (;;) {
            const info = String(await client.sendCommand(['CLUSTER', 'INFO']));
            const known = Number(/cluster_known_nodes:(\d+)/.exec(info)?.[1]);
            if (info.includes('cluster_state:ok') && known === size) break;
            if (Date.now() > deadline) throw new Error(`the cluster did not form: ${info}`);
            await new Promise((resolve) => setTimeout(resolve, 100));
          }
        }
      } finally {
        for (const client of clients) client.destroy();
      }
      return cluster;
    } catch (error) {
      await cluster.dispose();
      throw error;
    }
  }

  /** The seed node's URL (the one a user would give). */
  get url(): string {
    return (this.nodes[0] as RedisServer).url;
  }

  /** The node serving a key's slot. */
  async nodeOf(key: string): Promise<RedisServer> {
    const { createClient } = await import('redis');
    const client = await createClient({ url: this.url }).connect();
    try {
      const slot = Number(await client.sendCommand(['CLUSTER', 'KEYSLOT', key]));
      const per = Math.ceil(16384 / this.nodes.length);
      return this.nodes[Math.floor(slot / per)] as RedisServer;
    } finally {
      client.destroy();
    }
  }

  async dispose(): Promise<void> {
    await Promise.all(this.nodes.map((n) => n.dispose()));
  }
}
