// A node:cluster app: the primary holds the host's session authority, and
// each worker process runs the app (express here) with a bounded MCP endpoint
// under it, so the cap holds for every process together. Run: node examples/cluster.js
import cluster from 'node:cluster';
import express from 'express';
import { clusterAuthority, SessionBroker, startClusterBroker } from 'mcp-session-broker';

const WORKERS = Number(process.env.WORKERS ?? 2);

if (cluster.isPrimary) {
  // Every limit lives here, for all workers together.
  const authority = await startClusterBroker({ maxSessions: Number(process.env.MAX_SESSIONS ?? 100) });
  let ready = 0;
  cluster.on('message', (_worker, message) => {
    if (message.listening && ++ready === WORKERS) console.log(message.listening);
  });
  for (let i = 0; i < WORKERS; i++) cluster.fork();
  process.on('SIGTERM', () => {
    for (const worker of Object.values(cluster.workers)) worker.process.kill('SIGTERM');
    cluster.on('exit', async () => {
      if (Object.keys(cluster.workers).length === 0) {
        await authority.close();
        process.exit(0);
      }
    });
  });
} else {
  const app = express();
  app.use(express.json());
  app.get('/api/hello', (req, res) => {
    res.setHeader('x-app', 'cluster-example');
    res.json({ hello: 'world', pid: process.pid });
  });
  const broker = await SessionBroker.create({
    module: new URL('./server.js', import.meta.url),
    authority: clusterAuthority(),
    threads: 1,
  });
  app.all('/mcp', (req, res) => void broker.handle(req, res, req.body));
  const server = app.listen(Number(process.env.PORT ?? 3000), '127.0.0.1', () => {
    process.send({ listening: `http://127.0.0.1:${server.address().port}` });
  });
  process.on('SIGTERM', async () => {
    server.close();
    await broker.close();
    server.closeAllConnections();
    process.exit(0);
  });
}
