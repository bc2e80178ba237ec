/**
 * Embedding: the broker in an app that already has a server, on the main
 * thread (`threads: 0`), with node:http and with express (a body parser in front).
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import express from 'express';
import { afterEach, describe, expect, it } from 'vitest';
import { SessionBroker } from '../dist/main/index.js';
import { alive, connect } from './helpers.js';

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) await cleanup();
});

function listen(server: Server): Promise<string> {
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => resolve(`http://127.0.0.1:${(server.address() as AddressInfo).port}`));
  });
}

describe('embedding with threads: 0', () => {
  it('bounds sessions inside a plain node:http server with an in-process factory', async () => {
    const created: string[] = [];
    const broker = await SessionBroker.create({
      maxSessions: 2,
      threads: 0,
      factory: ({ sessionId }) => {
        created.push(sessionId);
        const server = new McpServer({ name: 'embedded', version: '1.0.0' });
        server.registerTool('hello', {}, async () => ({ content: [{ type: 'text', text: `hi from ${sessionId}` }] }));
        return server;
      },
    });
    const server = createServer((req, res) => {
      if (req.url === '/mcp') void broker.handle(req, res);
      else res.writeHead(404).end();
    });
    const base = await listen(server);
    cleanups.push(async () => {
      await broker.close();
      server.close();
      server.closeAllConnections();
    });
    const a = await connect(`${base}/mcp`);
    const b = await connect(`${base}/mcp`);
    const c = await connect(`${base}/mcp`);
    expect(await c.client.callTool({ name: 'hello', arguments: {} })).toMatchObject({
      content: [{ text: `hi from ${c.sessionId}` }],
    });
    expect(await alive(`${base}/mcp`, a.sessionId)).toBe(false);
    expect(await alive(`${base}/mcp`, b.sessionId)).toBe(true);
    expect(created).toEqual([a.sessionId, b.sessionId, c.sessionId]);
    expect(broker.threadIds).toEqual([0]);
    expect((await broker.stats()).transportsByThread).toEqual({ '0': 2 });
  });

  it('works behind express with express.json() already parsing the body', async () => {
    const broker = await SessionBroker.create({ maxSessions: 5, threads: 0 });
    const app = express();
    app.use(express.json());
    app.all('/mcp', (req, res) => {
      void broker.handle(req, res, req.body);
    });
    const server = createServer(app);
    const base = await listen(server);
    cleanups.push(async () => {
      await broker.close();
      server.close();
      server.closeAllConnections();
    });
    const { client, transport } = await connect(`${base}/mcp`);
    expect(await client.callTool({ name: 'echo', arguments: { text: 'through express' } })).toMatchObject({
      content: [{ text: 'through express' }],
    });
    await transport.terminateSession();
    expect((await broker.stats()).occupied).toBe(0);
  });
});
