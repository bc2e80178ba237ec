/**
 * Per-thread listeners (Node >= 22.12 on Linux): every handler thread accepts
 * connections on the port itself. A request lands on whichever thread the
 * kernel gave its connection: on the session's owner it is served there, on
 * another thread it is handed to the owner and its answer streamed back.
 * Fresh connections (no keep-alive) land on the threads at random, so each
 * test sends enough of them to see both kinds, telling them apart by the
 * hand-off counter. On Node 20 the option falls back (auto) or is refused
 * (threads); CI runs this file on both.
 */
import { request } from 'node:http';
import { type AddressInfo, createServer, connect as netConnect, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { reusePortAvailable } from '../dist/main/front/options.js';
import { type Served, serve } from '../dist/main/index.js';
import { ACCEPT, FIXTURE, initializeBody, rawInitialize, start, threadOf, until } from './helpers.js';

const AVAILABLE = reusePortAvailable();

let served: Served | undefined;
const sockets: Socket[] = [];
afterEach(async () => {
  for (const socket of sockets.splice(0)) socket.destroy();
  await served?.close();
  served = undefined;
});

interface Answer {
  readonly status: number;
  readonly text: string;
  readonly headers: Record<string, string | string[] | undefined>;
}

/** A POST on a connection of its own (no keep-alive, no pool): the kernel picks its thread. */
function freshPost(url: string, body: unknown, headers: Record<string, string> = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        method: 'POST',
        agent: false,
        headers: { 'content-type': 'application/json', accept: ACCEPT, connection: 'close', ...headers },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8'), headers: res.headers }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(JSON.stringify(body));
  });
}

let nextId = 1;
const call = (name: string, args: Record<string, unknown> = {}) => ({
  jsonrpc: '2.0',
  id: nextId++,
  method: 'tools/call',
  params: { name, arguments: args },
});

/** A session created over a fresh connection: the thread that received the initialize owns it. */
async function session(url: string): Promise<string> {
  const init = await freshPost(url, initializeBody());
  const id = init.headers['mcp-session-id'];
  if (init.status !== 200 || typeof id !== 'string') throw new Error(`initialize: ${init.status} ${init.text}`);
  const headers = { 'mcp-session-id': id, 'mcp-protocol-version': '2025-11-25' };
  const done = await freshPost(url, { jsonrpc: '2.0', method: 'notifications/initialized' }, headers);
  if (done.status !== 202) throw new Error(`initialized: ${done.status}`);
  return id;
}

const sessionHeaders = (id: string) => ({ 'mcp-session-id': id, 'mcp-protocol-version': '2025-11-25' });

describe.runIf(!AVAILABLE)('per-thread listeners where reusePort is missing (Node < 22.12)', () => {
  it('falls back to the listener thread by default, and refuses listeners: threads with the reason', async () => {
    served = await start({ maxSessions: 4 });
    expect(served.listeners).toBe('main');
    expect(served.server).toBeDefined();
    await expect(start({ maxSessions: 4, listeners: 'threads' })).rejects.toThrow(/reusePort needs Node >= 22.12/);
  });
});

describe.runIf(AVAILABLE)('per-thread listeners', () => {
  it('are the default with handler threads, and the listener thread when asked or when an option needs it', async () => {
    served = await start({ maxSessions: 4 });
    expect(served.listeners).toBe('threads');
    expect(served.server).toBeUndefined();
    await served.close();
    served = await start({ maxSessions: 4, listeners: 'main' });
    expect(served.listeners).toBe('main');
    await served.close();
    served = await start({ maxSessions: 4, maxConnectionsPerAddress: 8 });
    expect(served.listeners).toBe('main');
    await served.close();
    served = undefined;
    await expect(start({ maxSessions: 4, threads: 0, listeners: 'threads' })).rejects.toThrow(/threads: 0/);
  });

  it.each([
    ['SSE', false],
    ['JSON', true],
  ])(
    'serve a request on its session owner when it lands there and hand it over when not, whole either way (%s)',
    async (_mode, jsonResponse) => {
      served = await start({ maxSessions: 8, threads: 2, jsonResponse });
      const s = served;
      const id = await session(s.url);
      const owner = await threadOf(s.url, id);
      const seen = { local: 0, handedOff: 0 };
      // 1 MiB answers until both kinds have been seen a few times.
      for (let i = 0; i < 60 && (seen.local < 3 || seen.handedOff < 3); i++) {
        const before = s.broker.frontCounters.handedOff;
        const answer = await freshPost(s.url, call('big', { bytes: 1 << 20 }), sessionHeaders(id));
        expect(answer.status).toBe(200);
        expect(answer.headers['content-type']).toContain(jsonResponse ? 'application/json' : 'text/event-stream');
        expect(answer.text).toContain('x'.repeat(1 << 20));
        const handedOff = s.broker.frontCounters.handedOff - before;
        expect(handedOff === 0 || handedOff === 1).toBe(true);
        if (handedOff === 1) seen.handedOff++;
        else seen.local++;
        // Wherever it landed, the owner ran it.
        if (i % 10 === 0) expect(await threadOf(s.url, id)).toBe(owner);
      }
      expect(seen.local).toBeGreaterThanOrEqual(3);
      expect(seen.handedOff).toBeGreaterThanOrEqual(3);
      // The same counter, scraped from the main port (answered by a handler thread).
      const metrics = await (await fetch(s.metricsUrl)).text();
      const scraped = Number(/^mcp_requests_handed_off_total (\d+)/m.exec(metrics)?.[1]);
      expect(scraped).toBeGreaterThanOrEqual(seen.handedOff);
      for (const probe of ['/livez', '/readyz', '/healthz']) {
        expect((await fetch(new URL(probe, s.url))).status).toBe(200);
      }
    },
  );

  it('answer a made-up or closed session 404 on every thread, and a bad request 400, without disturbing a session', async () => {
    served = await start({ maxSessions: 8, threads: 2 });
    const s = served;
    const id = await session(s.url);
    for (let i = 0; i < 8; i++) {
      const unknown = await freshPost(s.url, call('echo', { text: 'a' }), sessionHeaders(`${id.slice(0, -4)}beef`));
      expect(unknown.status).toBe(404);
      const bad = await freshPost(s.url, '{"jsonrpc":', sessionHeaders(id));
      expect(bad.status).toBe(400);
    }
    const ok = await freshPost(s.url, call('echo', { text: 'still here' }), sessionHeaders(id));
    expect(ok.text).toContain('still here');
  });

  it('check bearer tokens on every thread with an auth module, and keep a session bound to its principal on all', async () => {
    const authModule = new URL('./fixtures/auth.js', import.meta.url);
    served = await start({ maxSessions: 8, threads: 2, authModule });
    const s = served;
    expect(s.listeners).toBe('threads');
    const alice = { authorization: 'Bearer token-alice' };
    const init = await freshPost(s.url, initializeBody(), alice);
    const id = init.headers['mcp-session-id'] as string;
    expect(init.status).toBe(200);
    const seen = { local: 0, handedOff: 0 };
    for (let i = 0; i < 60 && (seen.local < 2 || seen.handedOff < 2); i++) {
      const before = s.broker.frontCounters.handedOff;
      const answer = await freshPost(s.url, call('echo', { text: `a${i}` }), { ...sessionHeaders(id), ...alice });
      expect(answer.text).toContain(`a${i}`);
      if (s.broker.frontCounters.handedOff > before) seen.handedOff++;
      else seen.local++;
    }
    // Both threads checked the binding made on one of them.
    expect(seen).toMatchObject({ local: expect.any(Number), handedOff: expect.any(Number) });
    expect(Math.min(seen.local, seen.handedOff)).toBeGreaterThanOrEqual(2);
    for (let i = 0; i < 6; i++) {
      const bob = await freshPost(s.url, call('echo', { text: 'b' }), {
        ...sessionHeaders(id),
        authorization: 'Bearer token-bob',
      });
      expect(bob.status).toBe(404);
      const none = await freshPost(s.url, call('echo', { text: 'c' }), sessionHeaders(id));
      expect(none.status).toBe(401);
    }
    expect((await fetch(s.metricsUrl)).status).toBe(401);
    expect((await fetch(s.metricsUrl, { headers: alice })).status).toBe(200);
  });

  it('hold one connection bound across all threads', async () => {
    served = await start({ maxSessions: 4, threads: 2, maxConnections: 3, metricsPort: 0 });
    const s = served;
    const { port } = new URL(s.url);
    // Three connections busy with a request whose body has not arrived: none is idle, none can be closed.
    // Each asks for 100 Continue, which the server sends as it starts the request: until then a connection
    // is open but idle, and a new one may close it to make room (as it should).
    const continued: Promise<void>[] = [];
    for (let i = 0; i < 3; i++) {
      const socket = netConnect(Number(port), '127.0.0.1');
      sockets.push(socket);
      // A reset fails the test below (a 200 where 503 is expected), not as an unhandled error.
      socket.on('error', () => undefined);
      let seen = '';
      continued.push(
        new Promise((resolve) => {
          socket.on('data', (chunk: Buffer) => {
            seen += chunk.toString('latin1');
            if (seen.includes('100 Continue')) resolve();
          });
        }),
      );
      socket.write(
        `POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\ncontent-type: application/json\r\naccept: ${ACCEPT}\r\nexpect: 100-continue\r\ncontent-length: 100\r\n\r\n`,
      );
    }
    await Promise.all(continued);
    expect(await openConnections(s)).toBe(3);
    // Whichever thread gets them, more connections are refused (503), and never more than 3 are open.
    for (let i = 0; i < 6; i++) {
      const refused = await freshPost(s.url, initializeBody());
      expect(refused.status).toBe(503);
      expect(refused.text).toContain('connections_full');
      expect(await openConnections(s)).toBeLessThanOrEqual(3);
    }
    for (const socket of sockets.splice(0)) socket.destroy();
    await until(async () => (await openConnections(s)) === 0, 5000, 'the connections to close');
    expect((await rawInitialize(s.url)).status).toBe(200);
  });

  it.each([
    ['port 0', false],
    ['a known port', true],
  ])(
    'replace a blocked thread, which takes its connections with it; the others and the replacement serve (%s)',
    async (_port, known) => {
      // A known port opens the threads before they listen, port 0 after: the replacement must open either way.
      const port = known ? await freePort() : 0;
      served = await serve({ port, log: false, module: FIXTURE, threads: 2, maxSessions: 20, stallTimeoutMs: 1500 });
      const s = served;
      // Sessions on both threads.
      const byThread = new Map<number, string>();
      for (let i = 0; i < 40 && byThread.size < 2; i++) {
        const id = await session(s.url);
        byThread.set(await threadOf(s.url, id), id);
      }
      expect(byThread.size).toBe(2);
      const [[blocked, victim], [healthy, survivor]] = [...byThread] as [[number, string], [number, string]];
      const spinning = freshPost(s.url, call('spin'), sessionHeaders(victim)).catch((e: Error) => e);
      await until(() => s.broker.threadRestarts.stalled === 1, 10_000, 'the watchdog');
      await spinning;
      // Every request now reaches a live thread: the healthy one, or the replacement listening on the port.
      for (let i = 0; i < 10; i++) {
        const answer = await freshPost(s.url, call('echo', { text: `after ${i}` }), sessionHeaders(survivor));
        expect(answer.text).toContain(`after ${i}`);
      }
      expect(await threadOf(s.url, survivor)).toBe(healthy);
      const gone = await freshPost(s.url, call('echo', { text: 'x' }), sessionHeaders(victim));
      expect(gone.status).toBe(404);
      // New sessions land on the replacement too, once it has started and listens: a thread other than the two first.
      const isNew = (t: number) => t !== healthy && t !== blocked;
      await until(() => s.broker.threadIds.some(isNew), 15_000, 'the replacement thread');
      const owners = new Set<number>();
      const deadline = Date.now() + 15_000;
      while (![...owners].some(isNew) && Date.now() < deadline) {
        owners.add(await threadOf(s.url, await session(s.url)));
      }
      expect([...owners].some(isNew)).toBe(true);
    },
  );
});

/** Open connections, all threads together, from /metrics on its own port (a scrape there is not one of them). */
async function openConnections(s: Served): Promise<number> {
  const text = await (await fetch(s.metricsUrl)).text();
  return Number(/^mcp_connections_open (\d+)/m.exec(text)?.[1]);
}

/** A port free right now (the system's pick, released at once). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as AddressInfo;
      probe.close(() => resolve(port));
    });
  });
}
