/**
 * The runnable examples in examples/, started as a user starts them (node
 * examples/NAME.js) and driven over real HTTP: the app's own route and
 * middleware still answer, the SDK client works through /mcp, the cap holds
 * (the oldest session is evicted), and SIGTERM stops it cleanly.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { initializeFresh } from './cluster-helpers.js';
import { connect, exitOf, firstLine } from './helpers.js';

let child: ChildProcess | undefined;
afterEach(async () => {
  if (child && child.exitCode === null && child.signalCode === null) {
    const exited = new Promise((resolve) => child?.once('exit', resolve));
    child.kill('SIGKILL');
    await exited;
  }
  child = undefined;
});

describe.each(['express', 'hono', 'fastify', 'cluster'])('examples/%s.js', (name) => {
  it('keeps its own routes and middleware, serves MCP with a bounded session count, stops on SIGTERM', async () => {
    const file = fileURLToPath(new URL(`../examples/${name}.js`, import.meta.url));
    child = spawn(process.execPath, [file], {
      env: { ...process.env, PORT: '0', MAX_SESSIONS: '3' },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const base = (await firstLine(child)).trim();
    expect(base).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const hello = await fetch(`${base}/api/hello`);
    expect(hello.status).toBe(200);
    expect(hello.headers.get('x-app')).toBe(`${name}-example`);
    expect(await hello.json()).toMatchObject({ hello: 'world' });

    const url = `${base}/mcp`;
    const session = await connect(url);
    expect((await session.client.listTools()).tools.map((t) => t.name)).toEqual(['echo', 'whoami']);
    expect(await session.client.callTool({ name: 'echo', arguments: { text: 'hi' } })).toMatchObject({
      content: [{ type: 'text', text: 'hi' }],
    });
    await session.client.close();
    // The cap (3): three more sessions, and the SDK client's (the oldest) is gone.
    for (let i = 0; i < 3; i++) expect((await initializeFresh(url)).status).toBe(200);
    const gone = await fetch(url, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
        'mcp-session-id': session.sessionId,
        'mcp-protocol-version': '2025-11-25',
      },
      body: JSON.stringify({ jsonrpc: '2.0', id: 9, method: 'tools/list' }),
    });
    expect(gone.status).toBe(404);
    expect(await gone.json()).toMatchObject({ error: { data: { reason: 'evicted' } } });

    child.kill('SIGTERM');
    expect(await exitOf(child)).toBe(0);
  });
});
