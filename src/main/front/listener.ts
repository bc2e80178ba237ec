/**
 * The HTTP listener around a request front: the MCP path goes to the front;
 * the probes `/livez`, `/readyz` and `/healthz`, and `/metrics` (when it is
 * served on the main port) are answered here; every path obeys the Host/Origin
 * policy. Limits against slow and oversized requests, connection limits, and
 * JSON-RPC bodies for the errors Node's parser raises. The same code runs on
 * the listener thread, or on every handler thread when they listen themselves.
 */
import { createServer, type IncomingMessage, type Server, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { BrokerError } from '../../shared/errors.js';
import { Answers, type HttpAnswer } from '../../shared/jsonrpc.js';
import type { Authenticate } from './auth.js';
import type { ConnectionLimiter } from './connections.js';
import { send } from './front.js';
import type { ResolvedServeOptions } from './options.js';
import { checkOrigin, type OriginPolicy } from './origin.js';

/** `starting` until the broker and every thread are ready; then as `SessionBroker.status`. */
export type ListenerStatus = 'starting' | 'open' | 'closing' | 'failed';

export type ListenerOptions = Pick<
  ResolvedServeOptions,
  'path' | 'metricsPort' | 'maxHeaderBytes' | 'headersTimeoutMs' | 'requestTimeoutMs'
>;

export interface ListenerParts {
  readonly opts: ListenerOptions;
  readonly connections: ConnectionLimiter;
  /** The front for the MCP path, once ready (until then: 503 starting). */
  readonly front: () => { handle(req: IncomingMessage, res: ServerResponse): Promise<void> } | undefined;
  readonly policy: () => OriginPolicy;
  readonly status: () => ListenerStatus;
  /** Answers `/metrics` on this port (only asked when `metricsPort` is unset). */
  readonly metrics: (res: ServerResponse) => void;
  /** With auth on, `/metrics` on the main port needs the bearer token too. */
  readonly authenticate: Authenticate | undefined;
}

/** A node:http server (not yet listening) that answers as described above. */
export function createListener(parts: ListenerParts): Server {
  const { opts, connections } = parts;
  const onRequest = (req: IncomingMessage, res: ServerResponse) => {
    if (!connections.admit(req, res)) return;
    const path = (req.url ?? '/').split('?', 1)[0];
    const front = parts.front();
    if (path === opts.path && front) {
      void front.handle(req, res);
      return;
    }
    const forbidden = checkOrigin(req, parts.policy());
    const probe = req.method === 'GET' ? health(path, front ? parts.status() : 'starting') : undefined;
    if (forbidden) {
      send(res, forbidden);
    } else if (probe) {
      sendProbe(res, probe);
    } else if (!front) {
      send(res, Answers.starting());
    } else if (path === '/metrics' && req.method === 'GET' && opts.metricsPort === undefined) {
      const authenticate = parts.authenticate;
      if (!authenticate) parts.metrics(res);
      else
        authenticate(req, res).then(
          (ok) => ok && parts.metrics(res),
          () => send(res, Answers.internal('authentication failed')),
        );
    } else {
      send(res, Answers.notFound());
    }
  };
  const server = harden(createServer(serverOptions(opts), onRequest), opts);
  connections.attach(server);
  return server;
}

/**
 * The probes, for a `GET` of `path`: undefined for other paths, `'ok'` for 200,
 * else the 503 answer. `/livez`: the process serves HTTP and can recover on its
 * own (503 only once the broker worker has died: restart it). `/readyz` (and
 * `/healthz`, the same): an initialize sent now can be admitted, so 503 while
 * starting and from the moment a shutdown is asked for.
 */
function health(path: string | undefined, status: ListenerStatus): HttpAnswer | 'ok' | undefined {
  if (path === '/livez') return status === 'failed' ? Answers.brokerFailed() : 'ok';
  if (path !== '/readyz' && path !== '/healthz') return undefined;
  if (status === 'open') return 'ok';
  return status === 'starting'
    ? Answers.starting()
    : status === 'closing'
      ? Answers.shuttingDown()
      : Answers.brokerFailed();
}

function sendProbe(res: ServerResponse, probe: HttpAnswer | 'ok'): void {
  if (probe !== 'ok') {
    send(res, probe);
    return;
  }
  res.writeHead(200, { 'content-type': 'text/plain' });
  res.end('ok\n');
}

/** Node checks the header and request timeouts on an interval: make it fine enough for them. */
export function serverOptions(opts: ListenerOptions) {
  const shortest = Math.min(opts.headersTimeoutMs, opts.requestTimeoutMs);
  return {
    maxHeaderSize: opts.maxHeaderBytes,
    connectionsCheckingInterval: Math.min(5_000, Math.max(50, Math.floor(shortest / 4))),
  };
}

/**
 * Limits against slow and oversized requests; the errors Node's parser raises
 * are answered with JSON-RPC bodies (400, 408, 431) like every other error.
 */
export function harden(server: Server, opts: ListenerOptions): Server {
  server.headersTimeout = opts.headersTimeoutMs;
  server.requestTimeout = opts.requestTimeoutMs;
  server.keepAliveTimeout = 5_000;
  server.maxHeadersCount = 100;
  server.on('clientError', (error: NodeJS.ErrnoException, socket: Socket) => {
    const pending = (socket as Socket & { _httpMessage?: unknown })._httpMessage;
    if (
      error.code === 'ERR_HTTP_REQUEST_TIMEOUT' &&
      pending instanceof ServerResponse &&
      !pending.headersSent &&
      socket.writable
    ) {
      // A body that did not arrive within the request timeout: answered like slow headers.
      send(pending, Answers.requestTimeout());
      pending.once('finish', () => socket.destroySoon());
      return;
    }
    if (!socket.writable || pending) {
      socket.destroy();
      return;
    }
    const answer =
      error.code === 'HPE_HEADER_OVERFLOW'
        ? Answers.headersTooLarge()
        : error.code === 'ERR_HTTP_REQUEST_TIMEOUT'
          ? Answers.requestTimeout()
          : Answers.badRequest('malformed HTTP request');
    socket.end(rawResponse(answer));
  });
  return server;
}

function rawResponse(answer: HttpAnswer): string {
  const reason =
    { 400: 'Bad Request', 408: 'Request Timeout', 431: 'Request Header Fields Too Large' }[answer.status] ?? '';
  const headers = { ...answer.headers, connection: 'close', 'content-length': String(Buffer.byteLength(answer.body)) };
  const lines = Object.entries(headers).map(([name, value]) => `${name}: ${value}`);
  return `HTTP/1.1 ${answer.status} ${reason}\r\n${lines.join('\r\n')}\r\n\r\n${answer.body}`;
}

export function listen(server: Server, port: number, host: string, reusePort = false): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (cause: Error) =>
      reject(new BrokerError('ERR_LISTEN', `cannot listen on ${host}:${port}: ${cause.message}`, { cause }));
    server.once('error', onError);
    server.listen({ port, host, ...(reusePort ? { reusePort: true } : {}) }, () => {
      server.off('error', onError);
      resolve();
    });
  });
}
