/**
 * sdk-example: the session policy the MCP TypeScript SDK 1.32.x examples ship
 * (examples/server/simpleStreamableHttp and jsonResponseStreamableHttp): at
 * most 1000 sessions, the next initialize answered 503 "Too many open
 * sessions"; a sweep every 60 s closes sessions with no open response and no
 * activity for 30 minutes. Every response of a session (POST, DELETE and the
 * standalone GET stream) counts as open until it closes. Otherwise as
 * plain-sdk: one thread, express, one McpServer + transport per session.
 *
 *   node bench/baselines/sdk-example.js [--port N] [--json-response] [--max-sessions N]
 */
import { randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import { createMcpExpressApp } from '@modelcontextprotocol/sdk/server/express.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { isInitializeRequest } from '@modelcontextprotocol/sdk/types.js';
import createExampleServer from '../../dist/main/host/example-server.js';
import {
  closeHttp,
  HOST,
  INTERNAL,
  listen,
  NO_SESSION,
  NOT_FOUND,
  PATH,
  rpcError,
  runIfMain,
  urlOf,
} from './common.js';

/** The examples' constants. */
export const EXAMPLE_POLICY = { maxSessions: 1000, idleMs: 30 * 60_000, sweepMs: 60_000 };

export async function start({
  port = 0,
  host = HOST,
  jsonResponse = false,
  maxSessions = EXAMPLE_POLICY.maxSessions,
  idleMs = EXAMPLE_POLICY.idleMs,
  sweepMs = EXAMPLE_POLICY.sweepMs,
} = {}) {
  const app = createMcpExpressApp({ host });
  const sessions = new Map();
  let refused = 0;

  // Count open responses so a long-running request or a listening SSE stream is not treated as idle.
  const trackResponse = (session, res) => {
    if (!res.socket || res.destroyed) return;
    session.open++;
    res.on('close', () => {
      session.open--;
      session.lastActive = Date.now();
    });
  };
  const sweep = setInterval(() => {
    const cutoff = Date.now() - idleMs;
    for (const { transport, open, lastActive } of sessions.values()) {
      if (open === 0 && lastActive < cutoff) transport.close().catch(() => undefined);
    }
  }, sweepMs);
  sweep.unref();

  app.post(PATH, async (req, res) => {
    try {
      const sessionId = req.headers['mcp-session-id'];
      const session = sessionId ? sessions.get(sessionId) : undefined;
      let transport;
      if (session) {
        transport = session.transport;
        trackResponse(session, res);
      } else if (!sessionId && isInitializeRequest(req.body)) {
        if (sessions.size >= maxSessions) {
          refused++;
          return void res.status(503).json(rpcError(-32000, 'Too many open sessions'));
        }
        const created = new StreamableHTTPServerTransport({
          sessionIdGenerator: () => randomUUID(),
          enableJsonResponse: jsonResponse,
          onsessioninitialized: (id) => {
            sessions.set(id, { transport: created, open: 0, lastActive: Date.now() });
          },
        });
        created.onclose = () => {
          const sid = created.sessionId;
          if (sid && sessions.has(sid)) sessions.delete(sid);
        };
        const server = createExampleServer({ sessionId: '', clientKey: req.socket.remoteAddress ?? '', threadId: 0 });
        await server.connect(created);
        await created.handleRequest(req, res, req.body);
        return;
      } else if (sessionId) {
        return void res.status(404).json(NOT_FOUND);
      } else {
        return void res.status(400).json(NO_SESSION);
      }
      await transport.handleRequest(req, res, req.body);
    } catch {
      if (!res.headersSent) res.status(500).json(INTERNAL);
    }
  });

  const existing = async (req, res) => {
    const sessionId = req.headers['mcp-session-id'];
    if (!sessionId) return void res.status(400).send('Missing session ID');
    const session = sessions.get(sessionId);
    if (!session) return void res.status(404).json(NOT_FOUND);
    trackResponse(session, res);
    await session.transport.handleRequest(req, res);
  };
  app.get(PATH, existing);
  app.delete(PATH, existing);

  const http = await listen(createServer(app), port, host);
  return {
    url: urlOf(http),
    live: () => sessions.size,
    stats: () => ({ refused }),
    async close() {
      clearInterval(sweep);
      await Promise.allSettled([...sessions.values()].map((s) => s.transport.close()));
      await closeHttp(http);
    },
  };
}

await runIfMain(import.meta.url, start);
