/**
 * Routing between the processes of one host (ADR 20). A session id names
 * its owner process in its first two hex digits (the top 8 bits of its slot
 * word); a request for a session of another process is passed to that
 * process's private unix socket as HTTP, with every header (Mcp-Session-Id,
 * Last-Event-ID, Authorization, ...) and its body, and the answer (SSE
 * included) is streamed back with the backpressure of a pipe. The owner
 * checks everything again (Host/Origin, auth, binding, the id), so a
 * forwarded request is refused exactly as it would be there.
 *
 * Each process also listens on its own private socket (`<routes>/<process>.sock`,
 * owner-only) and accepts a request there only with the route secret the
 * authority gave every process.
 */
import { timingSafeEqual } from 'node:crypto';
import { existsSync, unlinkSync } from 'node:fs';
import { Agent, createServer, type IncomingMessage, request, type Server, type ServerResponse } from 'node:http';
import { join } from 'node:path';
import { pipeline } from 'node:stream';
import { listenOwnerOnly, type RouteInfo, removeStaleSocket } from '../../broker/index.js';
import { Answers } from '../../shared/jsonrpc.js';
import { send } from './front.js';
import { ErrorLog } from './log.js';

/** The header a forwarded request carries its route secret in (removed before the front sees it). */
export const ROUTE_HEADER = 'x-mcp-session-broker-route';

/** How long a connection to another process may sit idle, on each side, ms. */
const IDLE_CLIENT_MS = 30_000;
const IDLE_SERVER_MS = 65_000;

/** Headers of one hop only: not forwarded, not copied back. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'upgrade', 'proxy-connection', 'te']);

export class PeerRouter {
  readonly #route: RouteInfo;
  /** Across hosts (ADR 21): another host's private route URL, from the store's directory. */
  readonly #resolve: ((process: number) => Promise<string | undefined>) | undefined;
  /**
   * Keeps connections to the other processes open between requests. No
   * queue: every forwarded request has its own connection while it runs, so
   * they are bounded by the public requests in progress (the front's limits).
   */
  readonly #agent = new Agent({
    keepAlive: true,
    maxSockets: Number.POSITIVE_INFINITY,
    maxFreeSockets: 64,
    // An idle connection is closed here first (the owner keeps them longer): a request is
    // never sent on a connection the owner is closing at that moment.
    timeout: IDLE_CLIENT_MS,
  });
  readonly #log = new ErrorLog();
  /** Requests passed to another process, for metrics. */
  forwarded = 0;

  constructor(route: RouteInfo, resolve?: (process: number) => Promise<string | undefined>) {
    this.#route = route;
    this.#resolve = resolve;
  }

  get process(): number {
    return this.#route.process;
  }

  /**
   * The process an id names when it is not this one (1..255), else undefined
   * (this process's, or not an id: the local lookup answers those).
   */
  ownerOf(sessionId: string): number | undefined {
    if (sessionId.length < 2) return undefined;
    const hi = hexDigit(sessionId.charCodeAt(0));
    const lo = hexDigit(sessionId.charCodeAt(1));
    if (hi < 0 || lo < 0) return undefined;
    const process = hi * 16 + lo;
    return process === 0 || process === this.#route.process ? undefined : process;
  }

  /** Passes the request to its owner process (or host) and streams the answer back; 404 when the owner is gone. */
  forward(req: IncomingMessage, res: ServerResponse, process: number, parsedBody: unknown): void {
    this.forwarded++;
    if (this.#route.routes !== '' || !this.#resolve) {
      this.#pass(req, res, { socketPath: join(this.#route.routes, `${process}.sock`) }, parsedBody);
      return;
    }
    this.#resolve(process).then(
      (base) => {
        if (res.closed) return;
        if (base === undefined) send(res, Answers.sessionNotFound(null));
        else this.#pass(req, res, { base }, parsedBody);
      },
      () => send(res, Answers.internal('the session owner could not be looked up')),
    );
  }

  #pass(
    req: IncomingMessage,
    res: ServerResponse,
    target: { readonly socketPath: string } | { readonly base: string },
    parsedBody: unknown,
  ): void {
    // The front's, the pipe's and ours: more than the default 10 'close' listeners, all ending with the response.
    res.setMaxListeners(32);
    const headers: Record<string, string | string[]> = {};
    for (const [name, value] of Object.entries(req.headers)) {
      if (value !== undefined && !HOP_BY_HOP.has(name) && name !== ROUTE_HEADER) headers[name] = value;
    }
    let body: Buffer | undefined;
    if (parsedBody !== undefined) {
      body = Buffer.from(JSON.stringify(parsedBody));
      headers['content-length'] = String(body.length);
    }
    headers[ROUTE_HEADER] = this.#route.secret;
    const where =
      'socketPath' in target
        ? { socketPath: target.socketPath }
        : (() => {
            const url = new URL(target.base);
            return { host: url.hostname.replace(/^\[|\]$/g, ''), port: Number(url.port) };
          })();
    const out = request({ ...where, method: req.method, path: req.url, headers, agent: this.#agent });
    out.on('response', (answer) => {
      if (res.closed) {
        answer.destroy();
        return;
      }
      const back: Record<string, string | string[]> = {};
      for (const [name, value] of Object.entries(answer.headers)) {
        if (value !== undefined && !HOP_BY_HOP.has(name)) back[name] = value;
      }
      res.writeHead(answer.statusCode ?? 502, back);
      // SSE: each event goes out as it arrives.
      res.flushHeaders();
      pipeline(answer, res, () => undefined);
    });
    out.on('error', (error: NodeJS.ErrnoException) => {
      // The client left first (its request to the owner was cancelled with it): nothing to answer, nothing to log.
      if (res.closed) return;
      if (res.headersSent) {
        res.destroy();
        return;
      }
      // No process listens there: the owner is gone, and its sessions with it.
      if (error.code === 'ENOENT' || error.code === 'ECONNREFUSED' || error.code === 'EHOSTUNREACH')
        send(res, Answers.sessionNotFound(null));
      else {
        this.#log.report('forwarding to another process failed', error);
        send(res, Answers.internal('the session owner could not be reached'));
      }
    });
    // The client left: the owner's request is cancelled with it.
    res.once('close', () => {
      if (!res.writableFinished) out.destroy();
    });
    if (body !== undefined) out.end(body);
    else pipeline(req, out, () => undefined);
  }

  /** Whether a request on the private socket carries the route secret. */
  accepts(req: IncomingMessage): boolean {
    const given = req.headers[ROUTE_HEADER];
    if (typeof given !== 'string') return false;
    const a = Buffer.from(given);
    const b = Buffer.from(this.#route.secret);
    return a.length === b.length && timingSafeEqual(a, b);
  }

  /**
   * Listens on this process's private socket (across hosts: on its
   * advertised address); `handle` gets every request that carries the route
   * secret (others get 403).
   */
  async listen(handle: (req: IncomingMessage, res: ServerResponse) => void): Promise<PrivateListener> {
    const server = createServer((req, res) => {
      if (!this.accepts(req)) {
        send(res, Answers.forbidden('not a forwarded request'));
        return;
      }
      delete req.headers[ROUTE_HEADER];
      handle(req, res);
    });
    server.keepAliveTimeout = IDLE_SERVER_MS;
    const tcp = this.#route.listen;
    if (tcp) {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(tcp.port, tcp.host, () => {
          server.off('error', reject);
          resolve();
        });
      });
      return new PrivateListener(server, undefined);
    }
    const path = join(this.#route.routes, `${this.#route.process}.sock`);
    await removeStaleSocket(path);
    await listenOwnerOnly(server, path);
    return new PrivateListener(server, path);
  }

  close(): void {
    this.#agent.destroy();
  }
}

export class PrivateListener {
  readonly #server: Server;
  readonly #path: string | undefined;

  constructor(server: Server, path: string | undefined) {
    this.#server = server;
    this.#path = path;
  }

  /** Stops accepting forwarded requests (those running finish); the socket file is removed. */
  close(): void {
    this.#server.close();
    this.#server.closeIdleConnections();
    if (this.#path && existsSync(this.#path)) unlinkSync(this.#path);
  }

  /** Ends every forwarded request still open. */
  destroy(): void {
    this.#server.closeAllConnections();
  }
}

function hexDigit(c: number): number {
  return c >= 48 && c <= 57 ? c - 48 : c >= 97 && c <= 102 ? c - 87 : -1;
}
