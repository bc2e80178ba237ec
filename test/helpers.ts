import { type ChildProcess, spawn } from 'node:child_process';
import { connect as netConnect } from 'node:net';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { LATEST_PROTOCOL_VERSION } from '@modelcontextprotocol/sdk/types.js';
import { type Served, type ServeOptions, type SessionClosedEvent, serve } from '../dist/main/index.js';

export const FIXTURE = new URL('./fixtures/server.js', import.meta.url);

/** Starts a server on a free port with the test fixture module, quiet. */
export async function start(options: Partial<ServeOptions> & { maxSessions: number }): Promise<Served> {
  return serve({ port: 0, log: false, module: FIXTURE, threads: 2, ...options });
}

export interface Connected {
  readonly client: Client;
  readonly transport: StreamableHTTPClientTransport;
  readonly sessionId: string;
}

/**
 * Connects the SDK's own client (initialize + initialized) and waits until the
 * standalone GET stream it opens in the background is established, so tests on
 * the manual clock know when that request touched the session. Given the
 * server, it also waits until the initialize and the initialized notification
 * have left (a client can read an answer before the server ends its request):
 * the session is idle then, and the next request in flight is the test's own.
 */
export async function connect(url: string, served?: Served, freshConnections = false): Promise<Connected> {
  const client = new Client({ name: 'test-client', version: '1.0.0' });
  let streamOpened!: () => void;
  const opened = new Promise<void>((resolve) => {
    streamOpened = resolve;
  });
  const transport = new StreamableHTTPClientTransport(new URL(url), {
    fetch: async (input, init) => {
      // `Connection: close`: each request on a new TCP connection (the kernel picks its listener anew).
      const headers = new Headers(init?.headers);
      if (freshConnections) headers.set('connection', 'close');
      const response = await fetch(input, { ...init, headers });
      if ((init?.method ?? 'GET') === 'GET') streamOpened();
      return response;
    },
  });
  await client.connect(transport);
  await Promise.race([opened, new Promise((_, reject) => setTimeout(() => reject(new Error('no GET stream')), 5000))]);
  const sessionId = transport.sessionId;
  if (!sessionId) throw new Error('no session id after connect');
  if (served) await settled(served, sessionId);
  return { client, transport, sessionId };
}

export const ACCEPT = 'application/json, text/event-stream';

export function initializeBody(id: number | string = 1) {
  return {
    jsonrpc: '2.0',
    id,
    method: 'initialize',
    params: { protocolVersion: LATEST_PROTOCOL_VERSION, capabilities: {}, clientInfo: { name: 'raw', version: '1' } },
  };
}

/** POSTs JSON with the right headers unless overridden; returns the raw fetch Response. */
export function post(url: string, body: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: ACCEPT, ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

/** A raw initialize; returns the response with its body read, and the session id if one was created. */
export async function rawInitialize(url: string, headers: Record<string, string> = {}) {
  const res = await post(url, initializeBody(), headers);
  const text = await res.text();
  return { status: res.status, headers: res.headers, text, sessionId: res.headers.get('mcp-session-id') ?? undefined };
}

/** A tools/call through raw HTTP (unique request ids); returns status, body text and headers. */
let nextId = 100;

export async function rawCall(url: string, sessionId: string, name: string, args: Record<string, unknown> = {}) {
  const res = await post(
    url,
    { jsonrpc: '2.0', id: nextId++, method: 'tools/call', params: { name, arguments: args } },
    { 'mcp-session-id': sessionId, 'mcp-protocol-version': LATEST_PROTOCOL_VERSION },
  );
  return { status: res.status, text: await res.text(), headers: res.headers };
}

/** Whether a session still answers (a ping through raw HTTP returns 200). */
export async function alive(url: string, sessionId: string): Promise<boolean> {
  const res = await post(
    url,
    { jsonrpc: '2.0', id: 'ping', method: 'ping' },
    { 'mcp-session-id': sessionId, 'mcp-protocol-version': LATEST_PROTOCOL_VERSION },
  );
  await res.text();
  if (res.status !== 200 && res.status !== 404) throw new Error(`unexpected status ${res.status}`);
  return res.status === 200;
}

/** Collects closed events. */
export function recordClosed(served: Served): SessionClosedEvent[] {
  const events: SessionClosedEvent[] = [];
  served.broker.on('closed', (e) => events.push(e));
  return events;
}

/** Waits until `predicate` holds, checking on each event-loop turn for up to `ms`. */
export async function until(predicate: () => boolean | Promise<boolean>, ms = 5000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Waits until a request of the session is in flight (entered, response not yet ended). */
export async function inFlight(served: Served, sessionId: string): Promise<void> {
  const found = served.broker.index.lookup(sessionId);
  if (!found.ok) throw new Error(`session ${sessionId} not found`);
  await until(() => served.broker.index.inflight(found.ref) > 0, 5000, 'a request in flight');
}

/**
 * Waits until no request of the session is in flight: the server ends a
 * request (and touches last-seen) when the response closes, which can be just
 * after the client has read it. Tests on the manual clock wait for it before
 * moving the clock.
 */
export async function settled(served: Served, sessionId: string): Promise<void> {
  const found = served.broker.index.lookup(sessionId);
  if (!found.ok) return;
  await until(() => served.broker.index.inflight(found.ref) === 0, 5000, 'no request in flight');
}

/** A call's outcome as a string: 'answered', or the error's message (for calls expected to fail). */
export function outcomeOf(call: Promise<unknown>): Promise<string> {
  return call.then(
    () => 'answered',
    (error: Error) => error.message,
  );
}

/**
 * Writes raw bytes on one TCP connection and collects what comes back until the
 * server closes the connection or `waitMs` passes; says which happened.
 */
export function rawExchange(
  url: string,
  text: string,
  waitMs = 5000,
): Promise<{ text: string; closedByServer: boolean; elapsedMs: number }> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const started = Date.now();
    const socket = netConnect(Number(port), hostname);
    const chunks: Buffer[] = [];
    let done = false;
    const finish = (closedByServer: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve({ text: Buffer.concat(chunks).toString(), closedByServer, elapsedMs: Date.now() - started });
    };
    const timer = setTimeout(() => finish(false), waitMs);
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('end', () => finish(true));
    socket.on('close', () => finish(true));
    socket.on('error', () => finish(true));
    socket.write(text);
  });
}

/** A raw HTTP/1.1 POST of `body` to `url` (as text, for `rawExchange`). */
export function rawPost(url: string, body: string, headers: Record<string, string> = {}): string {
  const { host, pathname } = new URL(url);
  const all: Record<string, string> = {
    host,
    'content-type': 'application/json',
    accept: ACCEPT,
    'mcp-protocol-version': LATEST_PROTOCOL_VERSION,
    'content-length': String(Buffer.byteLength(body)),
    ...headers,
  };
  const lines = Object.entries(all).map(([name, value]) => `${name}: ${value}`);
  return `POST ${pathname} HTTP/1.1\r\n${lines.join('\r\n')}\r\n\r\n${body}`;
}

/** The thread that owns a session, as its `whoami` tool reports it. */
export async function threadOf(url: string, sessionId: string): Promise<number> {
  const { text } = await rawCall(url, sessionId, 'whoami');
  const match = /"threadId\\":(\d+)/.exec(text);
  if (!match) throw new Error(`no thread id in ${text}`);
  return Number(match[1]);
}

/** The built command line (`mcp-session-broker`). */
export const CLI = fileURLToPath(new URL('../dist/main/cli/main.js', import.meta.url));

/** The first line a child process prints on stdout (the CLI's URL, once it is ready). */
export async function firstLine(child: ChildProcess): Promise<string> {
  let buffer = '';
  for await (const chunk of child.stdout as AsyncIterable<Buffer>) {
    buffer += chunk.toString();
    const newline = buffer.indexOf('\n');
    if (newline >= 0) return buffer.slice(0, newline);
  }
  throw new Error(`no output; exit ${child.exitCode}`);
}

/**
 * Connects `n` sessions and makes sure every handler thread owns at least one.
 * With per-thread listeners the kernel picks the thread for each connection,
 * so all of them can land on one; a session on the busiest thread is then
 * deleted and another connected, until the spread holds.
 */
export async function connectOnEveryThread(
  served: Served,
  n: number,
): Promise<{ session: Connected; owner: number }[]> {
  const threads = served.broker.threadIds.length;
  if (n < threads) throw new Error(`${n} sessions cannot cover ${threads} threads`);
  const own = async (session: Connected) => ({ session, owner: await threadOf(served.url, session.sessionId) });
  // New connections for each session: a pooled keep-alive one stays on the thread that accepted it.
  const all = await Promise.all(Array.from({ length: n }, async () => own(await connect(served.url, undefined, true))));
  for (let attempt = 0; attempt < 50; attempt++) {
    const counts = new Map<number, number>();
    for (const { owner } of all) counts.set(owner, (counts.get(owner) ?? 0) + 1);
    if (counts.size === threads) return all;
    const busiest = [...counts.entries()].sort((a, b) => b[1] - a[1])[0]?.[0];
    const i = all.findIndex((x) => x.owner === busiest);
    const [gone] = all.splice(i, 1);
    await gone?.session.transport.terminateSession();
    await gone?.session.client.close();
    await until(async () => (await served.broker.stats()).occupied < n, 5000, 'the deleted session to close');
    all.push(await own(await connect(served.url, undefined, true)));
  }
  throw new Error(`sessions did not spread over ${threads} threads`);
}

/** A CLI process started by `CliChildren.run`, with what it wrote on stderr so far. */
export type CliChild = ChildProcess & { stderrText: () => string };

/** The CLI processes of a test file: `run` starts one; `killAll` (in afterEach) SIGKILLs those still running. */
export class CliChildren {
  readonly #children: ChildProcess[] = [];

  run(args: string[], env: NodeJS.ProcessEnv = {}): CliChild {
    const child = spawn(process.execPath, [CLI, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...env },
    });
    this.#children.push(child);
    let err = '';
    child.stderr?.on('data', (chunk: Buffer) => {
      err += chunk.toString();
    });
    return Object.assign(child, { stderrText: () => err });
  }

  async killAll(): Promise<void> {
    for (const child of this.#children.splice(0)) {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((resolve) => child.once('exit', resolve));
        child.kill('SIGKILL');
        await exited;
      }
    }
  }
}

/** A child's exit code once it has exited (null when a signal ended it). */
export function exitOf(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => child.once('exit', (code) => resolve(code)));
}
