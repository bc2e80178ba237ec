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
    '[redis fault tests skipped] they stop and restart servers of their own: install redis-server to run them',
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
