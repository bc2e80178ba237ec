/**
 * What every baseline shares: the listen address, the JSON-RPC error bodies the
 * SDK examples answer with, the tools for servers not built on the SDK's
 * McpServer (the same work as src/main/example-server.ts, whose `shaWork` is
 * imported from dist/), and running a baseline module as a script.
 */
import { once } from 'node:events';
import { createServer } from 'node:net';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { shaWork } from '../../dist/main/host/example-server.js';

export const HOST = '127.0.0.1';
export const PATH = '/mcp';

export { shaWork };

export const rpcError = (code, message) => ({ jsonrpc: '2.0', error: { code, message }, id: null });
export const NOT_FOUND = rpcError(-32001, 'Session not found');
export const NO_SESSION = rpcError(-32000, 'Bad Request: No valid session ID provided');
export const INTERNAL = rpcError(-32603, 'Internal server error');

/** The echo/add/sha results, as text, for frameworks that register tools their own way. */
export const tools = {
  echo: ({ text }) => text,
  add: ({ a, b }) => String(a + b),
  sha: (threadId = 0) => `${shaWork()} thread=${threadId}`,
};

/** A free TCP port on HOST (for frameworks that cannot listen on port 0 and report it). */
export async function freePort(host = HOST) {
  const probe = createServer();
  probe.listen(0, host);
  await once(probe, 'listening');
  const { port } = probe.address();
  probe.close();
  await once(probe, 'close');
  return port;
}

/** Listens on port/host (0 = a free port) and resolves with the http.Server once listening. */
export async function listen(server, port, host) {
  server.listen(port, host);
  await once(server, 'listening');
  return server;
}

export function urlOf(server, path = PATH) {
  const { address, port } = server.address();
  return `http://${address}:${port}${path}`;
}

/** Closes an http.Server, cutting open connections (SSE streams would keep it open). */
export async function closeHttp(server) {
  server.closeAllConnections?.();
  await new Promise((resolve) => server.close(() => resolve()));
}

const isMain = (url) => process.argv[1] !== undefined && pathToFileURL(process.argv[1]).href === url;

/**
 * When `moduleUrl` is the script node was started with: parses
 * `--port N --json-response --max-sessions N --threads N`, starts the server,
 * prints its URL as the first line of stdout, and closes it on SIGINT/SIGTERM.
 */
export async function runIfMain(moduleUrl, start) {
  if (!isMain(moduleUrl)) return;
  const { values } = parseArgs({
    options: {
      port: { type: 'string' },
      'json-response': { type: 'boolean' },
      'max-sessions': { type: 'string' },
      threads: { type: 'string' },
    },
    strict: true,
  });
  const options = { port: Number(values.port ?? 0), jsonResponse: values['json-response'] === true };
  if (values['max-sessions'] !== undefined) options.maxSessions = Number(values['max-sessions']);
  if (values.threads !== undefined) options.threads = Number(values.threads);
  const server = await start(options);
  process.stdout.write(`${server.url}\n`);
  const stop = () => {
    const hard = setTimeout(() => process.exit(1), 5000);
    hard.unref();
    server.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}
