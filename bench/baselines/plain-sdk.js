/**
 * plain-sdk: the MCP TypeScript SDK (1.32.x) as its examples use it: one
 * thread, `createMcpExpressApp()`, one `McpServer` + `StreamableHTTPServerTransport`
 * per session, and an unbounded Map of transports (no cap, no rate limit, no
 * idle expiry). The examples' per-request console.log lines are left out.
 * Serves the built-in example server of this package (echo, add, sha), or the
 * factory `module` (a URL) default-exports. With `eventStore: 'in-memory'`,
 * every transport gets the SDK examples' `InMemoryEventStore` (resumability
 * with `Last-Event-ID`, as `simpleStreamableHttp.ts` sets it up; it keeps
 * every event until the session closes).
 *
 *   node bench/baselines/plain-sdk.js [--port N] [--json-response]
 */
import { randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import { InMemoryEventStore } from '@modelcontextprotocol/sdk/examples/shared/inMemoryEventStore.js';
import { createMcpExpressApp } from '@modelcontextprotocol/sdk/server/express.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { isInitializeRequest } from '@modelcontextprotocol/sdk/types.js';
import createExampleServer from '../../dist/main/host/example-server.js';
import { closeHttp, HOST, INTERNAL, listen, NO_SESSION, NOT_FOUND, PATH, runIfMain, urlOf } from './common.js';

export async function start({ port = 0, host = HOST, jsonResponse = false, module, eventStore } = {}) {
  const createMcpServer = module ? (await import(module)).default : createExampleServer;
  const app = createMcpExpressApp({ host });
  const transports = new Map();

  app.post(PATH, async (req, res) => {
    try {
      const sessionId = req.headers['mcp-session-id'];
      let transport = sessionId ? transports.get(sessionId) : undefined;
      if (!transport) {
        if (sessionId) return void res.status(404).json(NOT_FOUND);
        if (!isInitializeRequest(req.body)) return void res.status(400).json(NO_SESSION);
        const created = new StreamableHTTPServerTransport({
          sessionIdGenerator: () => randomUUID(),
          enableJsonResponse: jsonResponse,
          ...(eventStore === 'in-memory' ? { eventStore: new InMemoryEventStore() } : {}),
          onsessioninitialized: (id) => {
            transports.set(id, created);
          },
        });
        created.onclose = () => {
          if (created.sessionId) transports.delete(created.sessionId);
        };
        const server = createMcpServer({ sessionId: '', clientKey: req.socket.remoteAddress ?? '', threadId: 0 });
        await server.connect(created);
        transport = created;
      }
      await transport.handleRequest(req, res, req.body);
    } catch {
      if (!res.headersSent) res.status(500).json(INTERNAL);
    }
  });

  const existing = async (req, res) => {
    const sessionId = req.headers['mcp-session-id'];
    if (!sessionId) return void res.status(400).send('Missing session ID');
    const transport = transports.get(sessionId);
    if (!transport) return void res.status(404).json(NOT_FOUND);
    await transport.handleRequest(req, res);
  };
  app.get(PATH, existing);
  app.delete(PATH, existing);

  const http = await listen(createServer(app), port, host);
  return {
    url: urlOf(http),
    /** Transports alive right now. */
    live: () => transports.size,
    async close() {
      await Promise.allSettled([...transports.values()].map((t) => t.close()));
      await closeHttp(http);
    },
  };
}

await runIfMain(import.meta.url, start);
