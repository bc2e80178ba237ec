/**
 * tmcp (1.20, a peer framework) with @tmcp/transport-http (0.9) and its
 * default in-memory session managers, behind node:http through a minimal
 * IncomingMessage -> Request -> ServerResponse adapter. Serves echo, add and
 * sha with the same work as the built-in example server. tmcp answers POSTs
 * with SSE only (it has no JSON response mode).
 *
 * tmcp keeps no session object: an initialize stores the client's info and
 * capabilities under a new session id until a DELETE. `live()` counts those
 * (initializes answered minus deletes).
 *
 *   node bench/baselines/tmcp.js [--port N]
 */
import { createServer } from 'node:http';
import { ZodJsonSchemaAdapter } from '@tmcp/adapter-zod';
import { InMemoryInfoSessionManager, InMemoryStreamSessionManager } from '@tmcp/session-manager';
import { HttpTransport } from '@tmcp/transport-http';
import { McpServer } from 'tmcp';
import { z } from 'zod';
import { closeHttp, HOST, listen, PATH, runIfMain, tools, urlOf } from './common.js';

/** The default info manager, counting the sessions it holds. */
class CountingInfoSessionManager extends InMemoryInfoSessionManager {
  count = 0;
  setClientInfo(id, info) {
    this.count++;
    return super.setClientInfo(id, info);
  }
  delete(id) {
    this.count--;
    return super.delete(id);
  }
}

export async function start({ port = 0, host = HOST, jsonResponse = false } = {}) {
  if (jsonResponse) throw new TypeError('tmcp answers POSTs with SSE only: no JSON response mode');
  const server = new McpServer(
    { name: 'bench-tmcp', version: '1.0.0', description: 'benchmark peer' },
    { adapter: new ZodJsonSchemaAdapter(), capabilities: { tools: { listChanged: true } } },
  );
  server.tool(
    { name: 'echo', description: 'Echoes the text back.', schema: z.object({ text: z.string() }) },
    async (args) => ({ content: [{ type: 'text', text: tools.echo(args) }] }),
  );
  server.tool(
    { name: 'add', description: 'Adds two numbers.', schema: z.object({ a: z.number(), b: z.number() }) },
    async (args) => ({ content: [{ type: 'text', text: tools.add(args) }] }),
  );
  server.tool({ name: 'sha', description: 'CPU-heavy: SHA-256 over 64 KiB, 50 times.' }, async () => ({
    content: [{ type: 'text', text: tools.sha(0) }],
  }));
  const info = new CountingInfoSessionManager();
  const transport = new HttpTransport(server, {
    path: PATH,
    sessionManager: { streams: new InMemoryStreamSessionManager(), info },
  });
  const http = await listen(createServer(adapt(transport)), port, host);
  return {
    url: urlOf(http),
    live: () => info.count,
    async close() {
      await transport.close?.();
      await closeHttp(http);
    },
  };
}

/** node:http -> fetch Request -> transport.respond -> node:http, streaming the body. */
function adapt(transport) {
  return async (req, res) => {
    const controller = new AbortController();
    res.on('close', () => controller.abort());
    try {
      const chunks = [];
      for await (const chunk of req) chunks.push(chunk);
      const headers = new Headers();
      for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) headers.append(req.rawHeaders[i], req.rawHeaders[i + 1]);
      const hasBody = req.method !== 'GET' && req.method !== 'HEAD' && chunks.length > 0;
      const request = new Request(`http://${req.headers.host ?? 'localhost'}${req.url}`, {
        method: req.method,
        headers,
        body: hasBody ? Buffer.concat(chunks) : undefined,
        signal: controller.signal,
      });
      const response = (await transport.respond(request)) ?? new Response(null, { status: 404 });
      res.writeHead(response.status, Object.fromEntries(response.headers));
      if (!response.body) return void res.end();
      res.flushHeaders();
      const reader = response.body.getReader();
      res.on('close', () => reader.cancel().catch(() => undefined));
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        if (!res.write(value)) await new Promise((resolve) => res.once('drain', resolve));
      }
      res.end();
    } catch {
      if (!res.headersSent) res.writeHead(500).end();
      else res.destroy();
    }
  };
}

await runIfMain(import.meta.url, start);
