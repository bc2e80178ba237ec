/**
 * Honest startup and shutdown probes: from the moment the port accepts a
 * connection, no answer says "shutting down" unless a shutdown was asked for;
 * with a known port the port opens only once an initialize can succeed; with
 * port 0 everything but `/livez` answers 503 "starting" until then; a 200 from
 * `/readyz` is always followed by a working initialize. During a shutdown
 * `/readyz` answers 503 while `/livez` still answers 200.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { createServer as createNetServer, Server as NetServer, connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LATEST_PROTOCOL_VERSION } from '@modelcontextprotocol/sdk/types.js';
import { afterEach, describe, expect, it } from 'vitest';
import { type Served, serve } from '../dist/main/index.js';
import { ACCEPT, FIXTURE, inFlight, initializeBody, rawInitialize, settled, start } from './helpers.js';

let served: Served | undefined;
afterEach(async () => {
  await served?.close();
  served = undefined;
});

type Outcome =
  | { readonly path: string; readonly refused: true }
  | { readonly path: string; readonly refused: false; status: number; retryAfter: string | null; text: string };

const INITIALIZE = JSON.stringify(initializeBody());

/** One request on a connection of its own: its answer, or `refused` when the port does not accept. */
function ask(port: number, path: string): Promise<Outcome> {
  const post = path === '/mcp';
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        path,
        method: post ? 'POST' : 'GET',
        agent: false,
        headers: post ? { 'content-type': 'application/json', accept: ACCEPT } : {},
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          text += chunk;
        });
        res.on('end', () =>
          resolve({
            path,
            refused: false,
            status: res.statusCode ?? 0,
            retryAfter: res.headers['retry-after'] ?? null,
            text,
          }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code === 'ECONNREFUSED') resolve({ path, refused: true });
      else reject(error);
    });
    req.end(post ? INITIALIZE : undefined);
  });
}

const PATHS = ['/readyz', '/mcp', '/livez', '/healthz', '/metrics'];

/**
 * Polls the port (once known) round the paths, each on a new connection, until
 * `/readyz` answers 200; then sends one initialize at once and returns everything.
 */
async function pollUntilReady(port: () => number | undefined) {
  const outcomes: Outcome[] = [];
  const deadline = Date.now() + 25_000;
  for (let i = 0; ; i++) {
    if (Date.now() > deadline) throw new Error(`/readyz never answered 200 (${outcomes.length} requests)`);
    const known = port();
    if (known === undefined) {
      await new Promise((resolve) => setTimeout(resolve, 1));
      continue;
    }
    const outcome = await ask(known, PATHS[i % PATHS.length] as string);
    outcomes.push(outcome);
    if (outcome.path === '/readyz' && !outcome.refused && outcome.status === 200) {
      return { outcomes, initialize: await ask(known, '/mcp') };
    }
    if (outcome.refused) await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

async function freePort(): Promise<number> {
  const probe = createNetServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address() as { port: number };
  await new Promise((resolve) => probe.close(resolve));
  return port;
}

const options = { log: false as const, module: FIXTURE, threads: 4, maxSessions: 50, host: '127.0.0.1' };

describe('startup', () => {
  it('with a known port, does not accept a connection before an initialize can succeed', async () => {
    const port = await freePort();
    const polling = pollUntilReady(() => port);
    served = await serve({ ...options, port });
    const { outcomes, initialize } = await polling;
    expect(initialize).toMatchObject({ refused: false, status: 200 });
    expect(outcomes.some((o) => o.refused)).toBe(true);
    for (const o of outcomes) {
      if (o.refused) continue;
      // Accepted means ready: every probe, the metrics and every initialize answer 200.
      expect({ path: o.path, status: o.status }).toEqual({ path: o.path, status: 200 });
    }
  });

  it('with port 0, answers everything but /livez 503 starting with Retry-After until ready, never "shutting down"', async () => {
    let port: number | undefined;
    // The port is chosen by the system when serve() listens: learn it from the listening event.
    const listen = NetServer.prototype.listen;
    NetServer.prototype.listen = function (this: NetServer, ...args: unknown[]) {
      this.once('listening', () => {
        const address = this.address();
        if (port === undefined && address && typeof address === 'object') port = address.port;
      });
      return (listen as (...a: unknown[]) => NetServer).apply(this, args);
    } as typeof listen;
    let polling: ReturnType<typeof pollUntilReady>;
    try {
      polling = pollUntilReady(() => port);
      // The listener thread's window: with per-thread listeners nothing listens before the threads are ready.
      served = await serve({ ...options, port: 0, listeners: 'main' });
    } finally {
      NetServer.prototype.listen = listen;
    }
    const { outcomes, initialize } = await polling;
    expect(initialize).toMatchObject({ refused: false, status: 200 });
    let starting = 0;
    for (const o of outcomes) {
      if (o.refused) throw new Error(`${o.path}: connection refused after listening`);
      expect(o.text).not.toMatch(/shutting down/i);
      if (o.path === '/livez') {
        expect(o.status).toBe(200);
      } else if (o.status !== 200) {
        expect({ path: o.path, status: o.status, retryAfter: o.retryAfter, text: o.text }).toMatchObject({
          status: 503,
          retryAfter: '1',
          text: expect.stringContaining('Server is starting'),
        });
        starting++;
      }
    }
    // The window was seen: the pool of 4 threads is not started in the time of one poll.
    expect(starting).toBeGreaterThan(0);
  });
});

describe('shutdown probes', () => {
  it('answers /readyz 503 shutting down and /livez 200 on a connection still open during a shutdown', async () => {
    served = await start({ maxSessions: 2, threads: 1, shutdownTimeoutMs: 5_000 });
    const s = served;
    const { sessionId } = await rawInitialize(s.url);
    if (!sessionId) throw new Error('no session');
    // The initialize's own request may still count as in flight just after its answer was read.
    await settled(s, sessionId);
    const url = new URL(s.url);
    const socket = netConnect(Number(url.port), url.hostname);
    await once(socket, 'connect');
    let received = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      received += chunk;
    });
    const ended = once(socket, 'close');
    const call = JSON.stringify({
      jsonrpc: '2.0',
      id: 1,
      method: 'tools/call',
      params: { name: 'sleep', arguments: { ms: 500 } },
    });
    socket.write(
      `POST /mcp HTTP/1.1\r\nhost: ${url.host}\r\ncontent-type: application/json\r\naccept: ${ACCEPT}\r\n` +
        `mcp-session-id: ${sessionId}\r\nmcp-protocol-version: ${LATEST_PROTOCOL_VERSION}\r\n` +
        `content-length: ${Buffer.byteLength(call)}\r\n\r\n${call}`,
    );
    await inFlight(s, sessionId);
    const closing = s.close();
    // Pipelined behind the call in flight, so the connection is not idle when the shutdown begins.
    socket.write(`GET /livez HTTP/1.1\r\nhost: ${url.host}\r\n\r\nGET /readyz HTTP/1.1\r\nhost: ${url.host}\r\n\r\n`);
    await closing;
    await ended;
    const statuses = [...received.matchAll(/^HTTP\/1\.1 (\d{3})/gm)].map((m) => Number(m[1]));
    expect(statuses).toEqual([200, 200, 503]);
    expect(received).toMatch(/slept 500/);
    expect(received.slice(received.lastIndexOf('HTTP/1.1 503'))).toMatch(/Server is shutting down/);
  });
});

describe('threads and broker start together', () => {
  const GATED_STORE = new URL('./fixtures/gated-store.js', import.meta.url);
  const MARKING = new URL('./fixtures/marking-factory.js', import.meta.url);

  afterEach(() => {
    delete process.env.MCPSB_TEST_GATE;
    delete process.env.MCPSB_TEST_STORE_FAILS;
  });

  it('handler threads load their server module while the broker starts (a store that waits for one starts)', async () => {
    // The store starts only once a handler thread has loaded the factory module:
    // were the threads started after the broker, this start would fail after 20 s.
    const dir = await mkdtemp(join(tmpdir(), 'mcpsb-gate-'));
    process.env.MCPSB_TEST_GATE = join(dir, 'loaded');
    served = await serve({ ...options, port: 0, threads: 2, module: MARKING, store: GATED_STORE });
    const first = await rawInitialize(served.url);
    expect(first.status).toBe(200);
    expect(first.sessionId).toBeDefined();
    await rm(dir, { recursive: true, force: true });
  });

  /** Runs a start that must fail in a fresh process: its error code, and that the process then exits by itself. */
  async function failedStartInProcess(options: Record<string, unknown>, env: Record<string, string> = {}) {
    const script = `
      import { SessionBroker } from ${JSON.stringify(new URL('../dist/main/index.js', import.meta.url).href)};
      try {
        await SessionBroker.create(${JSON.stringify(options)});
        console.log('started');
      } catch (error) {
        console.log(error.code ?? String(error));
        console.error(error.message, error.cause?.message ?? '');
      }`;
    // A file, not --input-type (worker threads inherit the flag and fail on it).
    const dir = await mkdtemp(join(tmpdir(), 'mcpsb-start-'));
    const file = join(dir, 'start.mjs');
    await writeFile(file, script);
    const child = spawn(process.execPath, [file], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString();
    });
    child.stderr.on('data', (chunk: Buffer) => {
      err += chunk.toString();
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    const [code, signal] = (await once(child, 'exit')) as [number | null, string | null];
    clearTimeout(timer);
    await rm(dir, { recursive: true, force: true });
    // Killed means a thread or the broker was left running after the failed start.
    return { printed: out.trim(), code, signal, stderr: err };
  }

  it('a store that fails to start fails the start, and no handler thread is left running', async () => {
    const result = await failedStartInProcess(
      { maxSessions: 4, threads: 2, module: MARKING.href, store: GATED_STORE.href },
      { MCPSB_TEST_STORE_FAILS: '1' },
    );
    expect(result).toMatchObject({ printed: 'ERR_BROKER_START', code: 0, signal: null });
    expect(result.stderr).toMatch(/fixture: the store failed to start/);
  });

  it('a server module that fails to load fails the start, and the broker is not left running', async () => {
    const bad = new URL('./fixtures/bad-module.js', import.meta.url).href;
    const result = await failedStartInProcess({ maxSessions: 4, threads: 2, module: bad });
    expect(result).toMatchObject({ printed: 'ERR_INVALID_MODULE', code: 0, signal: null });
    expect(result.stderr).toMatch(/bad-module\.js/);
  });
});
