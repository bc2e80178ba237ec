// The conformance fixture served by the plain SDK, without the broker, for comparison:
// one thread, a StreamableHTTPServerTransport per session kept in a Map, as the SDK's
// examples do (createMcpExpressApp, an in-memory event store for resumability).
//
//   node test/conformance/plain-sdk.js [--port N] [--module PATH]
//
// Prints the endpoint URL (http://127.0.0.1:PORT/mcp) as its first stdout line; exits
// on SIGINT/SIGTERM after closing every transport.
import { randomUUID } from 'node:crypto';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { InMemoryEventStore } from '@modelcontextprotocol/sdk/examples/shared/inMemoryEventStore.js';
import { createMcpExpressApp } from '@modelcontextprotocol/sdk/server/express.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { isInitializeRequest } from '@modelcontextprotocol/sdk/types.js';

const { values } = parseArgs({
  options: {
    port: { type: 'string', default: '0' },
    module: { type: 'string', default: new URL('../fixtures/conformance-server.js', import.meta.url).href },
  },
});
const { default: createServer } = await import(
  values.module.startsWith('file:') ? values.module : pathToFileURL(resolve(values.module)).href
);

const HOST = '127.0.0.1';
/** Live transports by session id. */
const transports = new Map();

const jsonRpcError = (res, status, code, message) =>
  res.status(status).json({ jsonrpc: '2.0', error: { code, message }, id: null });

const app = createMcpExpressApp({ host: HOST });

app.post('/mcp', async (req, res) => {
  try {
    const sessionId = req.headers['mcp-session-id'];
    if (sessionId !== undefined) {
      const transport = transports.get(sessionId);
      if (!transport) return jsonRpcError(res, 404, -32001, 'Session not found');
      return await transport.handleRequest(req, res, req.body);
    }
    if (!isInitializeRequest(req.body))
      return jsonRpcError(res, 400, -32000, 'Bad Request: No valid session ID provided');
    const id = randomUUID();
    const transport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => id,
      eventStore: new InMemoryEventStore(),
      onsessioninitialized: (sid) => transports.set(sid, transport),
    });
    transport.onclose = () => transports.delete(id);
    const server = await createServer({ sessionId: id, clientKey: req.socket.remoteAddress ?? '', threadId: 0 });
    await server.connect(transport);
    await transport.handleRequest(req, res, req.body);
  } catch (error) {
    console.error('plain-sdk: error handling POST', error);
    if (!res.headersSent) jsonRpcError(res, 500, -32603, 'Internal server error');
  }
});

// GET (the standalone SSE stream, and resumption with Last-Event-ID) and DELETE.
const bySession = async (req, res) => {
  const sessionId = req.headers['mcp-session-id'];
  if (sessionId === undefined) return jsonRpcError(res, 400, -32000, 'Bad Request: Mcp-Session-Id header is required');
  const transport = transports.get(sessionId);
  if (!transport) return jsonRpcError(res, 404, -32001, 'Session not found');
  try {
    await transport.handleRequest(req, res);
  } catch (error) {
    console.error(`plain-sdk: error handling ${req.method}`, error);
    if (!res.headersSent) jsonRpcError(res, 500, -32603, 'Internal server error');
  }
};
app.get('/mcp', bySession);
app.delete('/mcp', bySession);

const listener = app.listen(Number(values.port), HOST, (error) => {
  if (error) {
    console.error('plain-sdk: cannot listen', error);
    process.exit(1);
  }
  const { port } = listener.address();
  console.log(`http://${HOST}:${port}/mcp`);
});

let stopping = false;
const stop = async () => {
  if (stopping) process.exit(1);
  stopping = true;
  await Promise.allSettled([...transports.values()].map((t) => t.close()));
  listener.closeAllConnections();
  listener.close(() => process.exit(0));
};
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
