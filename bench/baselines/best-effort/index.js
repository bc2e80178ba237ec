/**
 * best-effort: the admission of the Rust crate `mcp-session` (check the live
 * count, evict the front of the creation queue, create; no serialisation),
 * re-expressed over this package's thread shape: the main thread is the HTTP
 * listener; a piscina pool of handler threads owns the sessions (each runs
 * the SDK's web-standard transport and the built-in example server); the live
 * count and the creation queue are shared through a SharedArrayBuffer
 * (see shared.js, handler.js). Requests are routed to the owner thread (the
 * id starts with it); new sessions go round-robin. No cap is enforced
 * anywhere else, and no delays are injected.
 *
 *   node bench/baselines/best-effort/index.js [--port N] [--json-response] [--max-sessions N] [--threads N]
 */
import { randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import { availableParallelism } from 'node:os';
import { MessageChannel } from 'node:worker_threads';
import { isInitializeRequest } from '@modelcontextprotocol/sdk/types.js';
import { Piscina } from 'piscina';
import { closeHttp, HOST, listen, NO_SESSION, NOT_FOUND, PATH, rpcError, runIfMain, urlOf } from '../common.js';
import { createShared, Shared } from './shared.js';

export async function start({
  port = 0,
  host = HOST,
  jsonResponse = false,
  maxSessions = 1000,
  threads = availableParallelism(),
  maxBodyBytes = 4 * 1024 * 1024,
} = {}) {
  const i32 = createShared(maxSessions);
  const shared = new Shared(i32, maxSessions);
  let roundRobin = 0;
  const pool = new Piscina({
    filename: new URL('./handler.js', import.meta.url).href,
    minThreads: threads,
    maxThreads: threads,
    idleTimeout: Number.POSITIVE_INFINITY,
    atomics: 'disabled',
    concurrentTasksPerWorker: 1024,
    maxQueue: 1024 * threads,
    workerData: { i32, maxSessions, jsonResponse, instance: randomUUID() },
    loadBalancer: (task, workers) => {
      const usable = workers.filter((w) => !w.terminating && !w.destroyed);
      if (usable.length === 0) return null;
      const owner = task[Piscina.queueOptionsSymbol]?.owner;
      if (owner !== undefined) return usable.find((w) => w.id === owner) ?? usable[0];
      return usable[roundRobin++ % usable.length];
    },
  });
  await new Promise((resolve) => {
    let hello = 0;
    pool.on('message', (message) => {
      if (message?.type === 'best-effort-hello' && ++hello === threads) resolve();
    });
  });

  const send = (res, status, body) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(typeof body === 'string' ? body : JSON.stringify(body));
  };

  const forward = async (res, task, owner) => {
    const channel = new MessageChannel();
    let result;
    try {
      result = await pool.run(
        { ...task, port: channel.port2, [Piscina.queueOptionsSymbol]: owner === undefined ? {} : { owner } },
        { transferList: [channel.port2] },
      );
    } catch {
      channel.port1.close();
      return send(res, 503, rpcError(-32000, 'Server busy'));
    }
    if (result.text !== undefined) {
      channel.port1.close();
      return send(res, result.status, result.text);
    }
    res.writeHead(result.status, Object.fromEntries(result.headers));
    if (!result.hasBody) {
      channel.port1.close();
      return void res.end();
    }
    res.flushHeaders();
    const port = channel.port1;
    let finished = false;
    port.on('message', (message) => {
      if (message.type === 'chunk') res.write(message.data);
      else if (message.type === 'end') {
        finished = true;
        res.end();
        port.close();
      } else {
        finished = true;
        res.destroy();
        port.close();
      }
    });
    res.on('close', () => {
      if (!finished) {
        finished = true;
        port.postMessage({ type: 'cancel' });
        port.close();
      }
    });
  };

  const onRequest = async (req, res) => {
    try {
      if ((req.url ?? '/').split('?', 1)[0] !== PATH) return send(res, 404, NOT_FOUND);
      let body;
      if (req.method === 'POST') {
        const chunks = [];
        let size = 0;
        for await (const chunk of req) {
          size += chunk.length;
          if (size > maxBodyBytes) return send(res, 413, rpcError(-32000, 'Payload too large'));
          chunks.push(chunk);
        }
        try {
          body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
        } catch {
          return send(res, 400, rpcError(-32700, 'Parse error'));
        }
      }
      const headers = [];
      for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) headers.push([req.rawHeaders[i], req.rawHeaders[i + 1]]);
      const base = { method: req.method, url: `http://${req.headers.host ?? 'localhost'}${req.url}`, headers, body };
      const sessionId = req.headers['mcp-session-id'];
      if (typeof sessionId === 'string' && sessionId.length > 0) {
        const owner = Number(sessionId.split('.', 1)[0]);
        if (!Number.isInteger(owner)) return send(res, 404, NOT_FOUND);
        return await forward(res, { ...base, kind: 'session', sessionId }, owner);
      }
      if (req.method === 'POST' && isInitializeRequest(body)) {
        return await forward(res, { ...base, kind: 'initialize', clientKey: req.socket.remoteAddress ?? '' });
      }
      return send(res, 400, NO_SESSION);
    } catch {
      if (!res.headersSent) send(res, 500, rpcError(-32603, 'Internal server error'));
      else res.destroy();
    }
  };

  const http = await listen(createServer(onRequest), port, host);
  return {
    url: urlOf(http),
    /** Sessions alive across threads, as the threads count them. */
    live: () => shared.live(),
    stats: () => shared.counters(),
    async close() {
      http.closeAllConnections();
      await closeHttp(http);
      await pool.destroy();
    },
  };
}

await runIfMain(import.meta.url, start);
