/**
 * Servers started as users start them (the built CLI, `serve` and `broker`),
 * and the measurements of a request sent to the process or host that does
 * not own its session (one call after another, timed here), for the
 * many-processes and many-hosts benchmarks.
 */
import { spawn } from 'node:child_process';
import { Agent, request } from 'node:http';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { cell, summary } from './common.js';

export const CLI = fileURLToPath(new URL('../../dist/main/cli/main.js', import.meta.url));
/** The built-in example server, as the benchmarks serve it. */
export const MODULE = fileURLToPath(new URL('./broker-module.js', import.meta.url));

/** A CLI process; resolves once it printed its first line (the URL or the socket). */
export function startCli(args) {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (chunk) => {
      out += chunk;
      const newline = out.indexOf('\n');
      if (newline >= 0) resolve({ child, line: out.slice(0, newline) });
    });
    child.once('exit', (code) => reject(new Error(`${args[0]} exited with ${code}`)));
  });
}

/** SIGTERM (a graceful stop), SIGKILL after 10 s. */
export async function stopCli(child) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** The server's occupied slots, as /metrics reports them (the authority's or Redis's count under one). */
export async function occupied(url) {
  const text = await (await fetch(new URL('/metrics', url))).text();
  const match = /^mcp_sessions_occupied(?:\{[^}]*\})? (\d+)/m.exec(text);
  return match ? Number(match[1]) : null;
}

/**
 * tools/call echo one after another for `seconds` on one keep-alive
 * connection, timed in this process: p50, p99 (ms) and calls per second.
 */
export async function sequentialCalls(url, sessionId, seconds) {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const body = JSON.stringify({
    jsonrpc: '2.0',
    id: 1,
    method: 'tools/call',
    params: { name: 'echo', arguments: { text: 'hello' } },
  });
  const headers = {
    'content-type': 'application/json',
    accept: 'application/json, text/event-stream',
    'mcp-session-id': sessionId,
    'mcp-protocol-version': '2025-11-25',
    'content-length': String(Buffer.byteLength(body)),
  };
  const one = () =>
    new Promise((resolve, reject) => {
      const req = request(url, { method: 'POST', headers, agent }, (res) => {
        res.resume();
        res.on('end', () => (res.statusCode === 200 ? resolve() : reject(new Error(`status ${res.statusCode}`))));
      });
      req.on('error', reject);
      req.end(body);
    });
  const times = [];
  const until = performance.now() + seconds * 1000;
  while (performance.now() < until) {
    const t0 = performance.now();
    await one();
    times.push(performance.now() - t0);
  }
  agent.destroy();
  times.sort((a, b) => a - b);
  const at = (q) => times[Math.min(times.length - 1, Math.floor(q * times.length))];
  return { p50Ms: at(0.5), p99Ms: at(0.99), perSecond: times.length / seconds, calls: times.length };
}

/**
 * One session's echo sent to its owner's URL, then to another's (every
 * request forwarded), twice each (the second of a pair is the one kept: the
 * first warms both ends), timed call by call (autocannon reports whole ms).
 */
export async function measureHop(ownerUrl, otherUrl, sessionId, seconds) {
  const result = {};
  for (const [where, url] of [
    ['owner', ownerUrl],
    ['forwarded', otherUrl],
    ['owner', ownerUrl],
    ['forwarded', otherUrl],
  ]) {
    result[where] = await sequentialCalls(url, sessionId, seconds);
  }
  return { ...result, addedP50Ms: result.forwarded.p50Ms - result.owner.p50Ms };
}

/** The table rows of `measureHop` results: owner, forwarded (p50, p99, req/s), and what the hop added at p50. */
export function hopRows(hops, forwardedLabel) {
  const row = (label, where) => [
    label,
    cell(summary(hops.map((h) => h[where].p50Ms)), 3),
    cell(summary(hops.map((h) => h[where].p99Ms)), 3),
    cell(summary(hops.map((h) => h[where].perSecond)), 0),
  ];
  return [
    row('owner (no hop)', 'owner'),
    row(forwardedLabel, 'forwarded'),
    ['added at p50', cell(summary(hops.map((h) => h.addedP50Ms)), 3), '', ''],
  ];
}
