// An existing Hono app on @hono/node-server (its own routes and middleware)
// that adds a bounded MCP endpoint at /mcp. Run: node examples/hono.js
import { serve } from '@hono/node-server';
import { RESPONSE_ALREADY_SENT } from '@hono/node-server/utils/response';
import { Hono } from 'hono';
import { SessionBroker } from 'mcp-session-broker';

const app = new Hono();
// The app's own middleware, on its own routes: a handler that answers on
// Node's response itself (the MCP endpoint below) must not be given headers after it.
app.use('/api/*', async (c, next) => {
  await next();
  c.header('x-app', 'hono-example');
});
app.get('/api/hello', (c) => c.json({ hello: 'world' }));

const broker = await SessionBroker.create({
  module: new URL('./server.js', import.meta.url),
  maxSessions: Number(process.env.MAX_SESSIONS ?? 100),
  threads: 1,
});
// The broker answers on Node's own request and response (Hono's node-server passes them in c.env).
app.all('/mcp', async (c) => {
  await broker.handle(c.env.incoming, c.env.outgoing);
  return RESPONSE_ALREADY_SENT;
});

const server = serve({ fetch: app.fetch, port: Number(process.env.PORT ?? 3000), hostname: '127.0.0.1' }, (info) => {
  console.log(`http://127.0.0.1:${info.port}`);
});
process.on('SIGTERM', async () => {
  server.close();
  await broker.close();
  server.closeAllConnections?.();
  process.exit(0);
});
