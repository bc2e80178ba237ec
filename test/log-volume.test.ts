/**
 * Clients that go away are not errors: a thousand aborted uploads are counted
 * (`mcp_client_aborts_total`) and write nothing to stderr, quiet or not.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { connect as netConnect } from 'node:net';
import { describe, expect, it } from 'vitest';
import { CLI, firstLine, until } from './helpers.js';

/** Sends headers and part of a body, then resets the connection. */
function abortedUpload(url: URL): Promise<void> {
  return new Promise((resolve) => {
    const socket = netConnect(Number(url.port), url.hostname);
    socket.on('error', () => resolve());
    socket.on('close', () => resolve());
    socket.write(
      `POST ${url.pathname} HTTP/1.1\r\nhost: ${url.host}\r\ncontent-type: application/json\r\n` +
        'accept: application/json, text/event-stream\r\ncontent-length: 100000\r\n\r\n{"jsonrpc":"2.0",',
      () => setTimeout(() => socket.resetAndDestroy(), 5),
    );
  });
}

describe('aborted uploads', () => {
  it('are counted, not logged', async () => {
    const child = spawn(process.execPath, [CLI, 'serve', '--port', '0', '--threads', '1', '--max-sessions', '10'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr?.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    try {
      const url = new URL(await firstLine(child));
      const metricsUrl = `${url.origin}/metrics`;
      const aborts = async () => {
        const text = await (await fetch(metricsUrl)).text();
        return Number(/^mcp_client_aborts_total (\d+)$/m.exec(text)?.[1] ?? 0);
      };
      const total = 1000;
      for (let i = 0; i < total; i += 50) {
        await Promise.all(Array.from({ length: 50 }, () => abortedUpload(url)));
      }
      await until(async () => (await aborts()) === total, 10_000, 'every abort to be counted');
      expect(stderr.split('\n').filter((line) => line.length > 0)).toEqual([]);
      child.kill('SIGTERM');
      await once(child, 'exit');
    } finally {
      child.kill('SIGKILL');
    }
  });
});
