/**
 * `serve()`: a node:http server in front of a `SessionBroker`, with `/metrics`
 * (Prometheus) and `/healthz`, and graceful shutdown.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { BrokerError } from '../shared/errors.js';
import { Answers } from '../shared/jsonrpc.js';
import { createMetrics } from './metrics.js';
import { resolveServeOptions, type ServeOptions } from './options.js';
import { SessionBroker, send } from './session-broker.js';

export interface Served {
  /** `http://HOST:PORT/PATH` of the MCP endpoint. */
  readonly url: string;
  /** `http://HOST:PORT/metrics` (on `metricsPort` when set). */
  readonly metricsUrl: string;
  readonly broker: SessionBroker;
  readonly server: Server;
  /** Graceful shutdown (see `SessionBroker.close`); resolves when everything has stopped. */
  close(): Promise<void>;
}

export async function serve(options: ServeOptions): Promise<Served> {
  const opts = resolveServeOptions(options);
  const broker = await SessionBroker.create(options);
  const log = opts.log;
  if (log) {
    broker.on('created', (e) => log(`session created id=${e.id} client=${e.clientKey} thread=${e.owner}`));
    broker.on('closed', (e) =>
      log(
        `session closed id=${e.id} client=${e.clientKey} thread=${e.owner} reason=${e.reason} durationMs=${e.durationMs}`,
      ),
    );
  }
  const metrics = createMetrics(broker);
  const serveMetrics = (res: ServerResponse) => {
    metrics.render().then(
      (text) => {
        res.writeHead(200, { 'content-type': metrics.contentType });
        res.end(text);
      },
      () => send(res, Answers.internal('metrics unavailable')),
    );
  };
  const onRequest = (req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? '/').split('?', 1)[0];
    if (path === opts.path) {
      void broker.handle(req, res);
    } else if (path === '/healthz' && req.method === 'GET') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('ok\n');
    } else if (path === '/metrics' && req.method === 'GET' && opts.metricsPort === undefined) {
      serveMetrics(res);
    } else {
      send(res, Answers.notFound());
    }
  };
  const server = createServer(onRequest);
  let metricsServer: Server | undefined;
  try {
    await listen(server, opts.port, opts.host);
    if (opts.metricsPort !== undefined) {
      metricsServer = createServer((req, res) => {
        if ((req.url ?? '/').split('?', 1)[0] === '/metrics') serveMetrics(res);
        else send(res, Answers.notFound());
      });
      await listen(metricsServer, opts.metricsPort, opts.host);
    }
  } catch (error) {
    server.close();
    await broker.close({ timeoutMs: 0 });
    throw error;
  }
  const hostForUrl = (s: Server) => {
    const address = s.address() as AddressInfo;
    const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
    return `http://${host}:${address.port}`;
  };
  let closing: Promise<void> | undefined;
  return {
    url: `${hostForUrl(server)}${opts.path}`,
    metricsUrl: `${hostForUrl(metricsServer ?? server)}/metrics`,
    broker,
    server,
    close() {
      closing ??= (async () => {
        server.close();
        metricsServer?.close();
        server.closeIdleConnections();
        await broker.close({ timeoutMs: opts.shutdownTimeoutMs });
        server.closeAllConnections();
        metricsServer?.closeAllConnections();
      })();
      return closing;
    },
  };
}

function listen(server: Server, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (cause: Error) =>
      reject(new BrokerError('ERR_LISTEN', `cannot listen on ${host}:${port}: ${cause.message}`, { cause }));
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolve();
    });
  });
}
