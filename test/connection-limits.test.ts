/**
 * Open connections are bounded: server-wide, the connections idle the longest
 * make room for new ones, and when every connection is busy a new one is
 * answered 503; per address, a client at its bound closes its own idle
 * connections and is then answered 429, and behind a trusted proxy the bound
 * counts requests in progress per forwarded address.
 */
import { connect as netConnect, type Socket } from 'node:net';
import { LATEST_PROTOCOL_VERSION } from '@modelcontextprotocol/sdk/types.js';
import { afterEach, describe, expect, it } from 'vitest';
import type { Served } from '../dist/main/index.js';
import { ACCEPT, rawCall, rawInitialize, start, until } from './helpers.js';

let served: Served | undefined;
const sockets: Socket[] = [];
afterEach(async () => {
  for (const socket of sockets.splice(0)) socket.destroy();
  await served?.close();
  served = undefined;
});

/** A raw HTTP/1.1 connection: send requests, read one complete response at a time. */
interface RawConnection {
  readonly socket: Socket;
  readonly closed: () => boolean;
  /** Sends a request and resolves with the next complete response (status and body), or what came before the close. */
  request(head: string, body?: string): Promise<{ status: number; text: string }>;
}

async function open(url: string, localAddress?: string): Promise<RawConnection> {
  const { port, hostname } = new URL(url);
  const socket = netConnect({ port: Number(port), host: hostname, ...(localAddress ? { localAddress } : {}) });
  sockets.push(socket);
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  let closed = false;
  let buffer = '';
  let waiter: (() => void) | undefined;
  socket.on('data', (chunk: Buffer) => {
    buffer += chunk.toString('latin1');
    waiter?.();
  });
  socket.on('error', () => undefined);
  socket.on('close', () => {
    closed = true;
    waiter?.();
  });
  const complete = (): { status: number; text: string; rest: string } | undefined => {
    const end = buffer.indexOf('\r\n\r\n');
    if (end < 0) return undefined;
    const head = buffer.slice(0, end);
    const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1]);
    const length = /\r\ncontent-length: (\d+)/i.exec(head)?.[1];
    const bodyStart = end + 4;
    if (length !== undefined) {
      if (buffer.length < bodyStart + Number(length)) return undefined;
      return {
        status,
        text: buffer.slice(bodyStart, bodyStart + Number(length)),
        rest: buffer.slice(bodyStart + Number(length)),
      };
    }
    // Chunked: size line, data, CRLF, until the zero-size chunk.
    let text = '';
    let at = bodyStart;
    for (;;) {
      const lineEnd = buffer.indexOf('\r\n', at);
      if (lineEnd < 0) return undefined;
      const size = Number.parseInt(buffer.slice(at, lineEnd), 16);
      if (size === 0) {
        if (buffer.length < lineEnd + 4) return undefined;
        return { status, text, rest: buffer.slice(lineEnd + 4) };
      }
      if (buffer.length < lineEnd + 2 + size + 2) return undefined;
      text += buffer.slice(lineEnd + 2, lineEnd + 2 + size);
      at = lineEnd + 2 + size + 2;
    }
  };
  return {
    socket,
    closed: () => closed,
    request(head, body = '') {
      socket.write(`${head}\r\n${body ? `content-length: ${Buffer.byteLength(body)}\r\n` : ''}\r\n${body}`);
      return new Promise((resolve) => {
        const check = () => {
          const done = complete();
          if (done) {
            buffer = done.rest;
            waiter = undefined;
            resolve({ status: done.status, text: done.text });
          } else if (closed) {
            waiter = undefined;
            resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(buffer)?.[1] ?? 0), text: buffer });
          }
        };
        waiter = check;
        check();
      });
    },
  };
}

const healthz = (url: string) => `GET /healthz HTTP/1.1\r\nhost: ${new URL(url).host}`;

/** A connection that has completed one request and stays open, idle (keep-alive). */
async function idleConnection(url: string, localAddress?: string): Promise<RawConnection> {
  const connection = await open(url, localAddress);
  const { status } = await connection.request(healthz(url));
  if (status !== 200) throw new Error(`healthz answered ${status}`);
  return connection;
}

let nextId = 1;

/** A connection holding a tools/call `sleep` in progress (the response does not come before `ms`). */
async function busyConnection(url: string, sessionId: string, ms: number, localAddress?: string) {
  const connection = await open(url, localAddress);
  const body = JSON.stringify({
    jsonrpc: '2.0',
    id: nextId++,
    method: 'tools/call',
    params: { name: 'sleep', arguments: { ms } },
  });
  const head = [
    `POST ${new URL(url).pathname} HTTP/1.1`,
    `host: ${new URL(url).host}`,
    'content-type: application/json',
    `accept: ${ACCEPT}`,
    `mcp-session-id: ${sessionId}`,
    `mcp-protocol-version: ${LATEST_PROTOCOL_VERSION}`,
  ].join('\r\n');
  return { connection, response: connection.request(head, body) };
}

async function metric(s: Served, pattern: RegExp): Promise<number> {
  const text = await (await fetch(s.metricsUrl)).text();
  return Number(pattern.exec(text)?.[1] ?? Number.NaN);
}

describe('open connections, server-wide', () => {
  it('close the connections idle the longest to serve fresh clients, oldest first', async () => {
    served = await start({ maxSessions: 10, threads: 1, maxConnections: 20 });
    const s = served;
    const idle: RawConnection[] = [];
    for (let i = 0; i < 20; i++) idle.push(await idleConnection(s.url));
    const fresh = await Promise.all(Array.from({ length: 10 }, () => rawInitialize(s.url)));
    expect(fresh.map((r) => r.status)).toEqual(Array(10).fill(200));
    // Well within the keep-alive timeout (5 s), which would close them too.
    await until(() => idle.some((c) => c.closed()), 1000, 'an idle connection closed');
    // Closed in the order they became idle: the closed ones are a prefix.
    const closed = idle.map((c) => c.closed());
    const count = closed.filter(Boolean).length;
    expect(closed).toEqual([...Array(count).fill(true), ...Array(20 - count).fill(false)]);
    expect(await metric(s, /^mcp_connections_open (\d+)$/m)).toBeLessThanOrEqual(20);
    expect(await metric(s, /^mcp_connections_closed_idle_total (\d+)$/m)).toBeGreaterThanOrEqual(count);
  });

  it('answer a new connection 503 with Retry-After when every connection is busy, and serve it once one is free', async () => {
    served = await start({ maxSessions: 10, threads: 1, jsonResponse: true, maxConnections: 20 });
    const s = served;
    const id = (await rawInitialize(s.url)).sessionId as string;
    const found = s.broker.index.lookup(id);
    if (!found.ok) throw new Error('no session');
    const busy: Awaited<ReturnType<typeof busyConnection>>[] = [];
    for (let i = 0; i < 20; i++) busy.push(await busyConnection(s.url, id, 1500));
    await until(() => s.broker.index.inflight(found.ref) === 20, 5000, 'every connection busy');
    const refused = await fetch(new URL('/healthz', s.url));
    expect(refused.status).toBe(503);
    expect(refused.headers.get('retry-after')).toBe('1');
    expect(refused.headers.get('connection')).toBe('close');
    expect(await refused.json()).toMatchObject({
      jsonrpc: '2.0',
      error: { code: -32000, message: 'Server busy: too many open connections', data: { reason: 'connections_full' } },
      id: null,
    });
    // The busy connections were not disturbed: each call is answered.
    const answers = await Promise.all(busy.map((b) => b.response));
    expect(answers.map((a) => a.status)).toEqual(Array(20).fill(200));
    // Now idle, they make room again.
    expect((await fetch(new URL('/healthz', s.url))).status).toBe(200);
    expect(await metric(s, /^mcp_connections_refused_total\{reason="connections_full"\} (\d+)$/m)).toBe(1);
  });
});

describe('open connections per address', () => {
  it("close a client's own idle connections at its bound, never another address's", async () => {
    served = await start({ maxSessions: 10, threads: 1, maxConnectionsPerAddress: 3 });
    const s = served;
    const other = [await idleConnection(s.url, '127.0.0.2'), await idleConnection(s.url, '127.0.0.2')];
    const mine: RawConnection[] = [];
    for (let i = 0; i < 3; i++) mine.push(await idleConnection(s.url, '127.0.0.3'));
    const fourth = await idleConnection(s.url, '127.0.0.3');
    await until(() => mine[0]?.closed() === true, 5000, 'the oldest idle connection of the address closed');
    expect(mine.map((c) => c.closed())).toEqual([true, false, false]);
    expect(fourth.closed()).toBe(false);
    expect(other.map((c) => c.closed())).toEqual([false, false]);
  });

  it('answer a new connection 429 when every connection of its address is busy, and serve other addresses', async () => {
    served = await start({ maxSessions: 10, threads: 1, jsonResponse: true, maxConnectionsPerAddress: 3 });
    const s = served;
    const id = (await rawInitialize(s.url)).sessionId as string;
    const found = s.broker.index.lookup(id);
    if (!found.ok) throw new Error('no session');
    const busy: Awaited<ReturnType<typeof busyConnection>>[] = [];
    for (let i = 0; i < 3; i++) busy.push(await busyConnection(s.url, id, 1000, '127.0.0.3'));
    await until(() => s.broker.index.inflight(found.ref) === 3, 5000, 'three calls in flight');
    const refused = await (await open(s.url, '127.0.0.3')).request(healthz(s.url));
    expect(refused.status).toBe(429);
    expect(JSON.parse(refused.text)).toMatchObject({ error: { code: -32000, data: { reason: 'address_full' } } });
    expect((await (await open(s.url, '127.0.0.2')).request(healthz(s.url))).status).toBe(200);
    expect((await Promise.all(busy.map((b) => b.response))).map((a) => a.status)).toEqual([200, 200, 200]);
    expect(await metric(s, /^mcp_connections_refused_total\{reason="address_full"\} (\d+)$/m)).toBe(1);
  });

  it('behind a trusted proxy, bound the requests in progress per forwarded address instead', async () => {
    served = await start({
      maxSessions: 10,
      threads: 1,
      jsonResponse: true,
      trustProxy: 1,
      maxConnectionsPerAddress: 2,
    });
    const s = served;
    const from = (address: string) => ({ 'x-forwarded-for': address });
    const id = (await rawInitialize(s.url, from('10.0.0.1'))).sessionId as string;
    const found = s.broker.index.lookup(id);
    if (!found.ok) throw new Error('no session');
    const slow = [1, 2].map((n) =>
      fetch(s.url, {
        method: 'POST',
        headers: {
          ...from('10.0.0.1'),
          'content-type': 'application/json',
          accept: ACCEPT,
          'mcp-session-id': id,
          'mcp-protocol-version': LATEST_PROTOCOL_VERSION,
        },
        body: JSON.stringify({
          jsonrpc: '2.0',
          id: n,
          method: 'tools/call',
          params: { name: 'sleep', arguments: { ms: 1000 } },
        }),
      }),
    );
    await until(() => s.broker.index.inflight(found.ref) === 2, 5000, 'two calls in flight');
    const third = await rawInitialize(s.url, from('10.0.0.1'));
    expect(third.status).toBe(429);
    expect(third.headers.get('retry-after')).toBe('1');
    expect(JSON.parse(third.text)).toMatchObject({ error: { code: -32000, data: { reason: 'address_full' } } });
    // Every request came through one peer address (the proxy's): other forwarded addresses are served.
    expect((await rawInitialize(s.url, from('10.0.0.2'))).status).toBe(200);
    expect((await Promise.all(slow)).map((r) => r.status)).toEqual([200, 200]);
    expect((await rawCall(s.url, id, 'echo', { text: 'after' })).status).toBe(200);
    expect(await metric(s, /^mcp_requests_rejected_total\{reason="address_full"\} (\d+)$/m)).toBe(1);
  });
});
