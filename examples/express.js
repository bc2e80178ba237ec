// An existing express app (its own routes and middleware) that adds a
// bounded MCP endpoint at /mcp. Run: node examples/express.js (PORT=0 picks a port).
import express from 'express';
import { SessionBroker } from 'mcp-session-broker';

const app = express();
// The app's own middleware and routes, untouched.
app.use((req, res, next) => {
  res.setHeader('x-app', 'express-example');
  next();
});
app.use(express.json());
app.get('/api/hello', (req, res) => {
  res.json({ hello: 'world' });
});

// The MCP endpoint: at most 100 live sessions, the oldest evicted first.
const broker = await SessionBroker.create({
  module: new URL('./server.js', import.meta.url),
  maxSessions: Number(process.env.MAX_SESSIONS ?? 100),
  threads: 1,
});
app.all('/mcp', (req, res) => void broker.handle(req, res, req.body));

const server = app.listen(Number(process.env.PORT ?? 3000), '127.0.0.1', () => {
  console.log(`http://127.0.0.1:${server.address().port}`);
});
process.on('SIGTERM', async () => {
  server.close();
  await broker.close();
  server.closeAllConnections();
  process.exit(0);
});
