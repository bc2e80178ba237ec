/**
 * `serve()`: a node:http server in front of a `SessionBroker`, with `/metrics`
 * (Prometheus), the probes `/livez`, `/readyz` and `/healthz`, slow-request and
 * connection limits, DNS-rebinding protection when bound to loopback, and
 * graceful shutdown.
 */
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Answers } from '../../shared/jsonrpc.js';
import { type Authenticate, bearerAuth, loadAuth } from './auth.js';
import { ConnectionLimiter, FILE_DESCRIPTOR_RESERVE, fileLimit } from './connections.js';
import { send } from './front.js';
import { createListener, harden, listen, serverOptions } from './listener.js';
import { type BrokerMetrics, createMetrics } from './metrics.js';
import { resolveServeOptions, resolveSessionBrokerOptions, type ServeOptions } from './options.js';
import { checkOrigin, isLoopback, loopbackPolicy, type OriginPolicy } from './origin.js';
import { SessionBroker, START, THREADS_LISTEN, type ThreadsListen } from './session-broker.js';

export interface Served {
  /** `http://HOST:PORT/PATH` of the MCP endpoint. */
  readonly url: string;
  /** `http://HOST:PORT/metrics` (on `metricsPort` when set). */
  readonly metricsUrl: string;
  readonly broker: SessionBroker;
  /** The main thread's HTTP server; undefined when the handler threads listen themselves. */
  readonly server: Server | undefined;
  /** Who accepts connections: each handler thread (`threads`), or the main thread (`main`). See `listeners`. */
  readonly listeners: 'threads' | 'main';
  /** Graceful shutdown (see `SessionBroker.close`); resolves when everything has stopped. */
  close(): Promise<void>;
}

export async function serve(options: ServeOptions): Promise<Served> {
  const opts = resolveServeOptions(options);
  // An auth module is loaded here too: a bad one fails before anything starts, and the
  // listener thread (when it is the front) and /metrics on the main port use it.
  const auth = options.auth ?? (opts.authModule === undefined ? undefined : await loadAuth(opts.authModule));
  // Validated once, before anything listens; the broker starts from the resolved value.
  const brokerOptions = resolveSessionBrokerOptions({ ...options, auth });
  const { trustProxy } = brokerOptions;
  // The default Host/Origin policy names the port (loopback binds).
  const policyFor = (port: number): OriginPolicy => {
    const loopback = isLoopback(opts.host) ? loopbackPolicy(port) : undefined;
    const cors = options.cors && options.cors !== '*' ? [options.cors] : [];
    const allowedHosts = options.allowedHosts ?? (loopback?.allowedHosts ? [...loopback.allowedHosts] : undefined);
    const allowedOrigins =
      options.allowedOrigins ?? (loopback?.allowedOrigins ? [...loopback.allowedOrigins, ...cors] : undefined);
    return { allowedHosts: allowedHosts?.map((h) => h.toLowerCase()), allowedOrigins };
  };
  const connections = new ConnectionLimiter({
    maxConnections: opts.maxConnections,
    maxConnectionsPerAddress: opts.maxConnectionsPerAddress,
    trustProxy,
  });
  // Set once the broker is started and the servers listen: until then (port 0
  // only: a known port is not listened on before) every request gets 503 starting.
  let broker: SessionBroker | undefined;
  let serveMetrics: ((res: ServerResponse) => void) | undefined;
  // Every path obeys the Host/Origin policy (the MCP path through the broker);
  // /metrics on the main port also needs the bearer token when auth is on.
  let policy: OriginPolicy = { allowedHosts: undefined, allowedOrigins: undefined };
  const authenticate: Authenticate | undefined = auth ? bearerAuth(auth) : undefined;
  // With per-thread listeners the handler threads accept the connections and
  // this server is never listened on.
  const server = createListener({
    opts,
    connections,
    front: () => broker,
    policy: () => policy,
    status: () => broker?.status ?? 'starting',
    metrics: (res) => serveMetrics?.(res),
    authenticate,
  });
  let metricsServer: Server | undefined;
  let started: SessionBroker | undefined;
  let url: string;
  try {
    let threads: ThreadsListen | undefined;
    if (opts.threadListeners) {
      started = await SessionBroker[START](
        { ...brokerOptions, originPolicy: policy },
        {
          // Plain data only: it crosses to the threads.
          listener: {
            path: opts.path,
            metricsPort: opts.metricsPort,
            maxHeaderBytes: opts.maxHeaderBytes,
            headersTimeoutMs: opts.headersTimeoutMs,
            requestTimeoutMs: opts.requestTimeoutMs,
          },
          maxConnections: opts.maxConnections,
          authModule: opts.authModule,
        },
      );
      threads = started[THREADS_LISTEN];
      if (!threads) throw new Error('the broker did not start its threads listening');
    } else {
      // A known port: the broker starts first and the port opens ready. Port 0:
      // the port is known only once listening, so it listens first and answers
      // 503 until ready.
      if (opts.port === 0) await listen(server, opts.port, opts.host);
      const port = opts.port === 0 ? (server.address() as AddressInfo).port : opts.port;
      policy = policyFor(port);
      started = await SessionBroker[START]({ ...brokerOptions, originPolicy: policy });
    }
    const source = started;
    // Created on the first scrape (prom-client loads then, not at startup).
    let metrics: BrokerMetrics | undefined;
    const render = async () => {
      metrics ??= createMetrics(source, {
        counters: () => (threads ? threads.connections() : connections.counters()),
      });
      return { contentType: metrics.contentType, text: await metrics.render() };
    };
    if (threads) threads.renderMetrics = render;
    serveMetrics = (res) => {
      render().then(
        ({ contentType, text }) => {
          res.writeHead(200, { 'content-type': contentType });
          res.end(text);
        },
        () => send(res, Answers.internal('metrics unavailable')),
      );
    };
    if (opts.metricsPort !== undefined) {
      // The metrics port serves scrapers without a token (bind it where only they reach it);
      // bound to loopback it accepts loopback Host names only, against DNS rebinding.
      let metricsPolicy: OriginPolicy = { allowedHosts: undefined, allowedOrigins: undefined };
      metricsServer = harden(
        createServer(serverOptions(opts), (req, res) => {
          const forbidden = checkOrigin(req, metricsPolicy);
          if (forbidden) send(res, forbidden);
          else if ((req.url ?? '/').split('?', 1)[0] === '/metrics') serveMetrics?.(res);
          else send(res, Answers.notFound());
        }),
        opts,
      );
      await listen(metricsServer, opts.metricsPort, opts.host);
      if (isLoopback(opts.host)) metricsPolicy = loopbackPolicy((metricsServer.address() as AddressInfo).port);
    }
    if (threads) {
      // A known port opens ready; port 0 is known once the first thread listens (503 until open).
      if (opts.port !== 0) await threads.open(policyFor(opts.port));
      const port = await threads.listen(opts.port, opts.host);
      if (opts.port === 0) await threads.open(policyFor(port));
      url = `${originOf(opts.host, port)}${opts.path}`;
    } else {
      if (opts.port !== 0) {
        // Ready before the port opens: the first connection it accepts can initialize.
        broker = started;
        await listen(server, opts.port, opts.host);
      }
      url = `${origin(server)}${opts.path}`;
    }
  } catch (error) {
    broker = undefined;
    server.close();
    server.closeAllConnections();
    metricsServer?.close();
    metricsServer?.closeAllConnections();
    await started?.close({ timeoutMs: 0 });
    throw error;
  }
  broker = started;
  const ready = started;
  const log = opts.log;
  const files = fileLimit();
  if (log && files !== undefined && opts.maxConnections > files - FILE_DESCRIPTOR_RESERVE) {
    log(
      `warning: maxConnections ${opts.maxConnections} is within ${FILE_DESCRIPTOR_RESERVE} of the open-file limit (${files}): connections may fail before they are counted; raise the limit (ulimit -n) or lower maxConnections`,
    );
  }
  if (log) {
    ready.on('created', (e) => log(`session created id=${e.id} client=${e.clientKey} thread=${e.owner}`));
    ready.on('closed', (e) =>
      log(
        `session closed id=${e.id} client=${e.clientKey} thread=${e.owner} reason=${e.reason} durationMs=${e.durationMs}`,
      ),
    );
  }
  const threadsListen = ready[THREADS_LISTEN];
  let closing: Promise<void> | undefined;
  return {
    url,
    metricsUrl: metricsServer ? `${origin(metricsServer)}/metrics` : `${new URL(url).origin}/metrics`,
    broker: ready,
    server: opts.threadListeners ? undefined : server,
    listeners: opts.threadListeners ? 'threads' : 'main',
    close() {
      closing ??= (async () => {
        server.close();
        metricsServer?.close();
        server.closeIdleConnections();
        // Closing from this moment (503 shutting down on every thread), while the threads stop accepting.
        const closed = ready.close({ timeoutMs: opts.shutdownTimeoutMs });
        await threadsListen?.stop();
        await closed;
        server.closeAllConnections();
        metricsServer?.closeAllConnections();
      })();
      return closing;
    },
  };
}

function origin(server: Server): string {
  const address = server.address() as AddressInfo;
  return originOf(address.address, address.port);
}

function originOf(host: string, port: number): string {
  return `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
}
