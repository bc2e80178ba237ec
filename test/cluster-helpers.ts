/**
 * Drivers for the many-processes tests: a node:cluster app (fixtures/cluster-primary.js)
 * as a child process, and HTTP requests each on a connection of its own (so
 * node:cluster's round robin spreads them over the workers).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { request } from 'node:http';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { LATEST_PROTOCOL_VERSION } from '@modelcontextprotocol/sdk/types.js';
import { expect } from 'vitest';
import type { SessionEvent } from '../dist/main/index.js';
import { ACCEPT, initializeBody, until } from './helpers.js';

const PRIMARY = fileURLToPath(new URL('./fixtures/cluster-primary.js', import.meta.url));

export interface Worker {
  readonly url: string;
  readonly pid: number;
  readonly process: number;
}

/** A running cluster app: what it reported, and its commands. */
export class ClusterApp {
  readonly child: ChildProcess;
  readonly events: SessionEvent[] = [];
  readonly workers: Worker[] = [];
  readonly exits: { pid: number; code: number | null; signal: string | null }[] = [];
  readonly logs: string[] = [];
  readonly samples: { pid: number; maxOccupied: number; maxTransports: number; samples: number }[] = [];
  #statsWaits: ((value: unknown) => void)[] = [];

  private constructor(child: ChildProcess) {
    this.child = child;
    const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
    lines.on('line', (line) => {
      const message = JSON.parse(line) as Record<string, unknown>;
      if (message.event) this.events.push(message.event as SessionEvent);
      if (message.worker) this.workers.push(message.worker as Worker);
      if (message.exit) this.exits.push(message.exit as ClusterApp['exits'][number]);
      if (message.log) this.logs.push(message.log as string);
      if (message.sample) this.samples.push(message.sample as ClusterApp['samples'][number]);
      if (message.stats) this.#statsWaits.shift()?.(message);
    });
  }

  static async start(config: Record<string, unknown>, workers = 2): Promise<ClusterApp> {
    const child = spawn(process.execPath, [PRIMARY], {
      env: { ...process.env, CLUSTER_TEST: JSON.stringify({ workers, ...config }) },
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    const app = new ClusterApp(child);
    await until(() => app.workers.length >= workers, 30_000, 'the workers to serve');
    return app;
  }

  get url(): string {
    return (this.workers[0] as Worker).url;
  }

  async stats(): Promise<{ stats: { occupied: number; live: number; closing: number }; processes: number }> {
    const answer = new Promise((resolve) => this.#statsWaits.push(resolve));
    this.child.stdin?.write('stats\n');
    return answer as never;
  }

  command(line: string): void {
    this.child.stdin?.write(`${line}\n`);
  }

  /** The most sessions alive at once, in the order the authority decided (created and closed events). */
  maxLive(): number {
    let live = 0;
    let most = 0;
    for (const event of this.events) {
      live += event.type === 'created' ? 1 : -1;
      most = Math.max(most, live);
    }
    return most;
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise((resolve) => this.child.once('exit', resolve));
    this.child.stdin?.end();
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  }
}

export interface Answer {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly text: string;
}

/** One HTTP request on a new connection (closed after). */
export function fresh(
  url: string,
  options: { method?: string; headers?: Record<string, string>; body?: unknown } = {},
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const body = options.body === undefined ? undefined : JSON.stringify(options.body);
    const req = request(
      url,
      {
        method: options.method ?? 'POST',
        agent: false,
        headers: {
          accept: ACCEPT,
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
          ...options.headers,
        },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          text += chunk;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** An initialize on a new connection: the session id, or the refusal. */
export async function initializeFresh(url: string): Promise<Answer & { sessionId: string | undefined }> {
  const answer = await fresh(url, { body: initializeBody() });
  const id = answer.headers['mcp-session-id'];
  return { ...answer, sessionId: typeof id === 'string' ? id : undefined };
}

/** A tool call on a new connection. */
export function callFresh(url: string, sessionId: string, name: string, args: Record<string, unknown> = {}) {
  return fresh(url, {
    headers: { 'mcp-session-id': sessionId, 'mcp-protocol-version': LATEST_PROTOCOL_VERSION },
    body: { jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name, arguments: args } },
  });
}

/** The process id that served a session's `whoami`, or undefined with the failed answer. */
export async function ownerPid(url: string, sessionId: string): Promise<number | undefined> {
  const answer = await callFresh(url, sessionId, 'whoami');
  const match = /\\"pid\\":(\d+)/.exec(answer.text);
  return match ? Number(match[1]) : undefined;
}

/** The process index an id carries (its first two hex digits). */
export function processOf(sessionId: string): number {
  return Number.parseInt(sessionId.slice(0, 2), 16);
}

/**
 * The GET stream of a session, opened on `streamUrl` (a process or host that
 * need not own it): notification "one", sent through `firstUrl`, arrives on
 * it; then "two" is sent through `secondUrl`, and the stream is resumed on
 * `streamUrl` `resumes` times after the id of the event that carried "one":
 * each replay has "two" and not "one".
 */
export async function streamAndResume(options: {
  readonly sessionId: string;
  readonly streamUrl: string;
  readonly firstUrl: string;
  readonly secondUrl: string;
  readonly resumes: number;
}): Promise<void> {
  const { sessionId, streamUrl } = options;
  const headers = { 'mcp-session-id': sessionId, 'mcp-protocol-version': LATEST_PROTOCOL_VERSION };
  const stream = new AbortController();
  const get = await fetch(streamUrl, { headers: { ...headers, accept: 'text/event-stream' }, signal: stream.signal });
  expect(get.status).toBe(200);
  expect(get.headers.get('content-type')).toMatch(/text\/event-stream/);
  const reader = (get.body as ReadableStream<Uint8Array>).getReader();
  expect((await callFresh(options.firstUrl, sessionId, 'notify', { text: 'one' })).status).toBe(200);
  let text = '';
  while (!text.includes('one')) text += new TextDecoder().decode((await reader.read()).value);
  stream.abort();
  // The id of the event that carried "one" (not of a priming event before it).
  const carrying = text.split('\n\n').find((event) => event.includes('one')) ?? '';
  const lastId = /^id: (.+)$/m.exec(carrying)?.[1];
  expect(lastId, text).toBeTruthy();
  expect((await callFresh(options.secondUrl, sessionId, 'notify', { text: 'two' })).status).toBe(200);
  for (let i = 0; i < options.resumes; i++) {
    const resumed = new AbortController();
    // The stream just aborted ends at its owner a moment later, one hop away: until then the
    // owner answers 409 (one GET stream per session), and a client tries again, as this does.
    let again: Response | undefined;
    for (let attempt = 0; attempt < 40; attempt++) {
      again = await fetch(streamUrl, {
        headers: { ...headers, accept: 'text/event-stream', 'last-event-id': lastId as string, connection: 'close' },
        signal: resumed.signal,
      });
      if (again.status !== 409) break;
      await again.body?.cancel();
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    if (!again) throw new Error('no answer');
    expect(again.status).toBe(200);
    const r = (again.body as ReadableStream<Uint8Array>).getReader();
    let replay = '';
    while (!replay.includes('two')) replay += new TextDecoder().decode((await r.read()).value);
    expect(replay, replay).not.toContain('"one"');
    resumed.abort();
  }
}
