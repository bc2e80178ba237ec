/**
 * Requests pipelined on one keep-alive connection are processed in the order
 * they arrived: a DELETE behind a call never overtakes it.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { Served } from '../dist/main/index.js';
import { rawExchange, rawInitialize, rawPost, start } from './helpers.js';

let served: Served | undefined;
afterEach(async () => {
  await served?.close();
  served = undefined;
});

describe('pipelined requests', () => {
  it.each([
    ['JSON', true],
    ['SSE', false],
  ])('run in order on one connection (%s): a call, then DELETE of its session', async (_mode, jsonResponse) => {
    served = await start({ maxSessions: 4, threads: 2, jsonResponse });
    const { sessionId } = await rawInitialize(served.url);
    if (!sessionId) throw new Error('no session');
    const call = JSON.stringify({
      jsonrpc: '2.0',
      id: 41,
      method: 'tools/call',
      params: { name: 'sleep', arguments: { ms: 300 } },
    });
    const { host, pathname } = new URL(served.url);
    const del =
      `DELETE ${pathname} HTTP/1.1\r\nhost: ${host}\r\nmcp-session-id: ${sessionId}\r\n` +
      'mcp-protocol-version: 2025-11-25\r\nconnection: close\r\n\r\n';
    const { text } = await rawExchange(served.url, rawPost(served.url, call, { 'mcp-session-id': sessionId }) + del);
    const statuses = [...text.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((m) => Number(m[1]));
    expect(statuses).toEqual([200, 200]);
    expect(text).toContain('slept 300');
    expect(text).not.toContain('Session closed');
    // The DELETE ran after the call: the session is gone now.
    const after = await fetch(served.url, {
      method: 'DELETE',
      headers: { 'mcp-session-id': sessionId, 'mcp-protocol-version': '2025-11-25' },
    });
    expect(after.status).toBe(404);
  });
});
