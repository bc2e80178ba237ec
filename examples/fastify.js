// An existing Fastify app (its own routes and hooks) that adds a bounded MCP
// endpoint at /mcp. Run: node examples/fastify.js
import Fastify from 'fastify';
import { SessionBroker } from 'mcp-session-broker';

const app = Fastify();
app.addHook('onSend', async (request, reply) => {
  reply.header('x-app', 'fastify-example');
});
app.get('/api/hello', async () => ({ hello: 'world' }));

const broker = await SessionBroker.create({
  module: new URL('./server.js', import.meta.url),
  maxSessions: Number(process.env.MAX_SESSIONS ?? 100),
  threads: 1,
});
// Fastify has parsed a JSON body already: pass it on; hijack, so Fastify leaves the response to the broker.
app.all('/mcp', (request, reply) => {
  reply.hijack();
  void broker.handle(request.raw, reply.raw, request.body);
});

const address = await app.listen({ port: Number(process.env.PORT ?? 3000), host: '127.0.0.1' });
console.log(address);
process.on('SIGTERM', async () => {
  // The broker first: it lets requests in flight finish and closes every session (reason shutdown).
  await broker.close();
  // Connections whose reply the broker took over are not Fastify's to wait for.
  app.server.closeAllConnections();
  await app.close();
  process.exit(0);
});
