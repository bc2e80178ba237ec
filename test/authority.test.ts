/**
 * A standalone authority (`mcp-session-broker broker`) and unrelated server
 * processes under it (`serve --authority`), as PM2 cluster mode or several
 * services run them: one cap across them, fail closed while the authority
 * is gone, a rebuild from re-registered sessions when it is back, and
 * hostile or broken peers that change nothing. Also `serve --workers N`.
 */
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { callFresh, initializeFresh } from './cluster-helpers.js';
import { CliChildren, connect, exitOf, firstLine, until } from './helpers.js';

const cli = new CliChildren();
const run = (args: string[]) => cli.run(args);
const dirs: string[] = [];

afterEach(async () => {
  await cli.killAll();
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'mcpsb-test-'));
  dirs.push(dir);
  return dir;
}

async function startBroker(socket: string, extra: string[] = []) {
  const broker = run(['broker', '--socket', socket, '--rebuild-grace', '300ms', ...extra]);
  expect(await firstLine(broker)).toBe(socket);
  return broker;
}

async function startServer(authority: string, extra: string[] = []) {
  const server = run(['serve', '--authority', authority, '--port', '0', '--threads', '1', '--quiet', ...extra]);
  return { server, url: await firstLine(server) };
}

/** Sends raw bytes to a socket and resolves when the other side closes it (or after `ms`: still open). */
function sendRaw(path: string, bytes: Buffer, ms = 3000): Promise<'closed' | 'open'> {
  return new Promise((resolve) => {
    const socket = netConnect(path, () => socket.write(bytes));
    const timer = setTimeout(() => {
      socket.destroy();
      resolve('open');
    }, ms);
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve('closed');
    });
    socket.resume();
  });
}

async function alive(url: string, id: string): Promise<number> {
  return (await callFresh(url, id, 'echo', { text: 'x' })).status;
}

describe('a standalone authority', () => {
  it('holds one cap over unrelated processes, on an owner-only socket', async () => {
    const socket = join(tempDir(), 'authority.sock');
    await startBroker(socket, ['--max-sessions', '3']);
    expect(statSync(socket).mode & 0o777).toBe(0o600);
    const a = await startServer(socket);
    const b = await startServer(socket);
    expect(a.url).not.toBe(b.url);
    await until(async () => (await initializeFresh(a.url)).status === 200, 5000, 'the grace to end');
    const first = (await initializeFresh(a.url)).sessionId as string;
    const onB = (await initializeFresh(b.url)).sessionId as string;
    // At the cap (3): the next, on B, evicts the oldest of the host, on A.
    const admitted = await initializeFresh(b.url);
    expect(admitted.status).toBe(200);
    // The very first session (made while polling for the grace) went; `first` is next.
    expect(await alive(a.url, first)).toBe(200);
    expect((await initializeFresh(b.url)).status).toBe(200);
    const evicted = await callFresh(a.url, first, 'echo', { text: 'x' });
    expect(evicted.status).toBe(404);
    expect(JSON.parse(evicted.text)).toMatchObject({ error: { data: { reason: 'evicted' } } });
    expect(await alive(b.url, onB)).toBe(200);
    // B's session named on A: A forwards it to B, its owner.
    expect(await alive(a.url, onB)).toBe(200);
    expect(await alive(a.url, admitted.sessionId as string)).toBe(200);
  });

  it('fails closed while it is gone, keeps existing sessions served, and rebuilds from them when back', async () => {
    const socket = join(tempDir(), 'authority.sock');
    const broker = await startBroker(socket, ['--max-sessions', '3']);
    const a = await startServer(socket);
    const b = await startServer(socket);
    await until(async () => (await initializeFresh(a.url)).status === 200, 5000, 'the grace to end');
    const ids = [(await initializeFresh(a.url)).sessionId, (await initializeFresh(b.url)).sessionId] as string[];
    // Three live (the grace probe, and two): at the cap.
    broker.kill('SIGKILL');
    await exitOf(broker);
    for (const url of [a.url, b.url]) {
      await until(async () => (await initializeFresh(url)).status === 503, 5000, 'the refusal');
      const refused = await initializeFresh(url);
      expect(refused.status).toBe(503);
      expect(Number(refused.headers['retry-after'])).toBeGreaterThanOrEqual(1);
      expect(JSON.parse(refused.text)).toMatchObject({ error: { data: { reason: 'unavailable' } } });
    }
    for (const id of ids) expect(await alive(a.url, id)).toBe(200);
    expect(a.server.stderrText()).toContain('lost the session authority');

    // Back, empty: the processes re-register their three sessions (the cap) before it admits
    // anything (the grace), so each new session evicts one of them, oldest first.
    await startBroker(socket, ['--max-sessions', '3', '--rebuild-grace', '2s']);
    await until(async () => (await initializeFresh(b.url)).status === 200, 10_000, 'admissions again');
    expect(a.server.stderrText()).toContain('re-registering sessions');
    const fresh = [(await initializeFresh(a.url)).sessionId, (await initializeFresh(b.url)).sessionId] as string[];
    for (const id of ids) {
      const gone = await callFresh(b.url, id, 'echo', { text: 'x' });
      expect(gone.status).toBe(404);
      expect(JSON.parse(gone.text)).toMatchObject({ error: { data: { reason: 'evicted' } } });
    }
    for (const id of fresh) expect(await alive(a.url, id)).toBe(200);
  });

  it('closes a connection that sends garbage, an oversized frame or no hello, and changes no count', async () => {
    const socket = join(tempDir(), 'authority.sock');
    const broker = await startBroker(socket, ['--max-sessions', '2', '--evict', 'none']);
    const a = await startServer(socket);
    await until(async () => (await initializeFresh(a.url)).status === 200, 5000, 'the grace to end');
    const oversized = Buffer.alloc(4);
    oversized.writeUInt32BE(10 * 1024 * 1024, 0);
    const json = Buffer.from(JSON.stringify({ type: 'closed', slot: 0, gen: 1, reason: 'deleted' }));
    const unknownFirst = Buffer.concat([Buffer.alloc(4), json]);
    unknownFirst.writeUInt32BE(json.length, 0);
    expect(await sendRaw(socket, Buffer.from('GET / HTTP/1.1\r\n\r\n'))).toBe('closed');
    expect(await sendRaw(socket, oversized)).toBe('closed');
    // A message before hello (here: a close of someone else's session).
    expect(await sendRaw(socket, unknownFirst)).toBe('closed');
    expect(broker.stderrText()).toMatch(/authority: closing a connection: /);
    expect(broker.exitCode).toBeNull();
    // The one session is still there and still counted: one more fits, then 503.
    expect((await initializeFresh(a.url)).status).toBe(200);
    expect((await initializeFresh(a.url)).status).toBe(503);
  });

  it('on TCP needs its secret; a process without it cannot start', async () => {
    const noSecret = run(['broker', '--tcp', '127.0.0.1:0']);
    expect(await exitOf(noSecret)).toBe(2);
    const broker = run(['broker', '--tcp', '127.0.0.1:0', '--secret', 's3cret', '--rebuild-grace', '0ms']);
    const address = await firstLine(broker);
    expect(address).toMatch(/^127\.0\.0\.1:\d+$/);
    const stranger = run(['serve', '--authority', address, '--port', '0', '--threads', '1', '--quiet']);
    expect(await exitOf(stranger)).toBe(1);
    expect(stranger.stderrText().trim().split('\n')).toHaveLength(1);
    expect(stranger.stderrText()).toMatch(/cannot reach the session authority/);
    const { url } = await startServer(address, ['--authority-secret', 's3cret']);
    expect((await initializeFresh(url)).status).toBe(200);
  });
});

describe('a process that cannot reach its authority at start', () => {
  it('exits with one line and a non-zero status', async () => {
    const server = run(['serve', '--authority', join(tempDir(), 'nobody.sock'), '--port', '0', '--threads', '1']);
    expect(await exitOf(server)).toBe(1);
    const lines = server.stderrText().trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^mcp-session-broker: .*cannot reach the session authority at .*nobody\.sock/);
  });

  it('refuses limit flags with --authority (they are the authority’s)', async () => {
    const server = run(['serve', '--authority', '/tmp/x.sock', '--max-sessions', '5']);
    expect(await exitOf(server)).toBe(2);
    expect(server.stderrText()).toMatch(/--max-sessions belongs to the authority/);
  });
});

describe('serve --workers', () => {
  it('runs node:cluster workers under one authority, serves the SDK client, and stops on SIGTERM', async () => {
    const server = run(['serve', '--workers', '2', '--threads', '1', '--port', '0', '--max-sessions', '2', '--quiet']);
    const url = await firstLine(server);
    const session = await connect(url);
    expect((await session.client.callTool({ name: 'echo', arguments: { text: 'hi' } })).content).toEqual([
      { type: 'text', text: 'hi' },
    ]);
    // The cap is the host's: two more sessions evict the SDK client's.
    for (let i = 0; i < 2; i++) expect((await initializeFresh(url)).status).toBe(200);
    expect(await alive(url, session.sessionId)).toBe(404);
    server.kill('SIGTERM');
    expect(await exitOf(server)).toBe(0);
  });
});
