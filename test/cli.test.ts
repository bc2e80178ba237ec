/**
 * The command line: serves the built-in example to the SDK's client through
 * the threads, prints its URL, refuses bad flags with one line, and shuts down
 * on SIGTERM.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parseServeArgs } from '../dist/main/cli/args.js';
import { CLI, connect, firstLine } from './helpers.js';

function run(args: string[]): ChildProcess {
  return spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
}

async function outcome(args: string[]) {
  const child = run(args);
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const [code] = (await once(child, 'exit')) as [number];
  return { code, stderr };
}

describe('mcp-session-broker serve', () => {
  it('serves the built-in example server through two threads and stops on SIGTERM', async () => {
    const child = run(['serve', '--port', '0', '--threads', '2', '--max-sessions', '10', '--quiet']);
    try {
      const url = await firstLine(child);
      expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/mcp$/);
      const { client } = await connect(url);
      const tools = await client.listTools();
      expect(tools.tools.map((t) => t.name).sort()).toEqual(['add', 'echo', 'sha']);
      expect(await client.callTool({ name: 'add', arguments: { a: 2, b: 40 } })).toMatchObject({
        content: [{ type: 'text', text: '42' }],
      });
      const sha = await client.callTool({ name: 'sha', arguments: {} });
      expect(JSON.stringify(sha.content)).toMatch(/[0-9a-f]{64} thread=\d+/);
      const metrics = await (await fetch(url.replace(/\/mcp$/, '/metrics'))).text();
      expect(metrics).toMatch(/^mcp_sessions_created_total 1$/m);
      child.kill('SIGTERM');
      const [code] = (await once(child, 'exit')) as [number];
      expect(code).toBe(0);
    } finally {
      child.kill('SIGKILL');
    }
  });

  it.each([
    [['serve', '--max-sessions', 'abc'], /--max-sessions must be a non-negative integer/],
    [['serve', '--max-sessions', '0'], /--max-sessions must be a positive integer/],
    [['serve', '--rate', 'fast'], /invalid rate "fast"/],
    [['serve', '--idle-timeout', '5 minutes'], /invalid duration/],
    [['serve', '--evict', 'random'], /--evict must be one of oldest, idlest, none/],
    [['serve', '--busy-timeout', '0'], /--busy-timeout must be a positive/],
    [['serve', '--frobnicate'], /Unknown option '--frobnicate'/],
    [['launch'], /unknown command "launch"/],
    [['serve', '--per-client-max', '5000'], /--per-client-max must be at most 1000/],
    [['serve', '--trust-proxy', '99'], /--trust-proxy must be an integer from 0 to 16/],
    [['serve', '--max-in-flight', '0'], /--max-in-flight must be a positive integer/],
    [['serve', '--max-in-flight', '5000'], /--max-in-flight must be at most options.maxPendingPerThread \(1024\)/],
    [['serve', '--max-connections', '0'], /--max-connections must be a positive integer/],
    [
      ['serve', '--max-connections', '10', '--max-connections-per-address', '20'],
      /--max-connections-per-address must be at most 10/,
    ],
    [['serve', '--stall-timeout', '50ms'], /--stall-timeout must be 0 \(off\) or at least 100 ms/],
    [['serve', '--stall-timeout', 'forever'], /invalid duration "forever"/],
    [['serve', '--listeners', 'all'], /--listeners must be 'auto', 'threads' or 'main'/],
    [['serve', '--listeners', 'threads', '--threads', '0'], /--listeners 'threads' is not possible with threads: 0/],
    [['serve', '--resume-bytes', '0'], /--resume-bytes must be a positive integer/],
    [['serve', '--resume-bytes', '2m', '--resume-total', '1m'], /--resume-bytes must not exceed --resume-total/],
    [['serve', '--resume-events', '0', '--resume-total', '1m'], /--resume-bytes and --resume-total need resumability/],
    [['serve', '--store', 'redis://127.0.0.1:6379'], /--store needs --advertise http:\/\/HOST:PORT/],
    [['serve', '--advertise', 'http://127.0.0.1:4001'], /--advertise needs --store/],
    [
      ['serve', '--store', 'ftp://127.0.0.1', '--advertise', 'http://127.0.0.1:4001'],
      /must start with redis:\/\/ or rediss:\/\//,
    ],
    [
      ['serve', '--store', 'redis://127.0.0.1:6379/0?password=hunter2', '--advertise', 'http://127.0.0.1:4001'],
      /must not have a query or a fragment/,
    ],
    [
      ['serve', '--store', 'redis://127.0.0.1', '--advertise', 'http://127.0.0.1'],
      /advertised URL must be http:\/\/HOST:PORT with an explicit port/,
    ],
    [
      ['serve', '--store', 'redis://127.0.0.1', '--advertise', 'http://127.0.0.1:4001', '--namespace', 'a b'],
      /namespace must be 1\.\.64 characters/,
    ],
    [
      ['serve', '--store', 'redis://127.0.0.1', '--advertise', 'http://127.0.0.1:4001', '--workers', '2'],
      /--store and --workers are mutually exclusive/,
    ],
  ])('exits 2 with one line for %j', async (args, message) => {
    const { code, stderr } = await outcome(args);
    expect(code).toBe(2);
    expect(stderr.split('\n')[0]).toMatch(message);
  });

  it('exits 1 with a clear message for a module without a default factory', async () => {
    const bad = fileURLToPath(new URL('./fixtures/bad-module.js', import.meta.url));
    const { code, stderr } = await outcome(['serve', bad, '--port', '0', '--threads', '1']);
    expect(code).toBe(1);
    expect(stderr).toMatch(/must default-export a function/);
  });

  it('parses the abuse-resistance flags', () => {
    expect(
      parseServeArgs([
        'serve',
        '--auth',
        './verify.js',
        '--per-client-max',
        '5',
        '--per-client-rate',
        '3/10s',
        '--trust-proxy',
        '1',
        '--allowed-hosts',
        'mcp.example.com, localhost',
        '--allowed-origins',
        'https://app.example.com',
        '--resume-events',
        '0',
        '--max-in-flight',
        '16',
        '--max-connections',
        '5000',
        '--max-connections-per-address',
        '50',
      ]),
    ).toEqual({
      maxSessions: 1000,
      authModule: './verify.js',
      perClient: { maxSessions: 5, rate: { max: 3, windowMs: 10_000 } },
      trustProxy: 1,
      allowedHosts: ['mcp.example.com', 'localhost'],
      allowedOrigins: ['https://app.example.com'],
      resumability: false,
      maxInFlightPerSession: 16,
      maxConnections: 5000,
      maxConnectionsPerAddress: 50,
    });
  });

  it('parses every flag into serve() options', () => {
    expect(
      parseServeArgs([
        'serve',
        './server.js',
        '--host',
        '0.0.0.0',
        '--port',
        '8080',
        '--path',
        '/x',
        '--threads',
        '3',
        '--stall-timeout',
        '5s',
        '--max-sessions',
        '500',
        '--rate',
        '20/1m',
        '--idle-timeout',
        '30m',
        '--max-lifetime',
        '4h',
        '--busy-timeout',
        '2s',
        '--evict',
        'idlest',
        '--max-body',
        '1m',
        '--json-response',
        '--shutdown-timeout',
        '500ms',
        '--stream-stall-timeout',
        '20s',
        '--metrics-port',
        '9100',
        '--cors',
        '*',
        '--resume-events',
        '16',
        '--resume-bytes',
        '512k',
        '--resume-total',
        '32m',
      ]),
    ).toEqual({
      module: './server.js',
      host: '0.0.0.0',
      port: 8080,
      path: '/x',
      threads: 3,
      stallTimeoutMs: 5_000,
      maxSessions: 500,
      rate: { max: 20, windowMs: 60_000 },
      idleTimeoutMs: 1_800_000,
      maxLifetimeMs: 14_400_000,
      busyTimeoutMs: 2_000,
      evict: 'idlest',
      maxBodyBytes: 1_048_576,
      jsonResponse: true,
      shutdownTimeoutMs: 500,
      streamStallTimeoutMs: 20_000,
      metricsPort: 9100,
      cors: '*',
      resumability: { maxEventsPerStream: 16, maxBytesPerSession: 524_288, maxTotalBytes: 33_554_432 },
    });
  });
});
