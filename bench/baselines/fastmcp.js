/**
 * fastmcp (4.20, a peer framework) with its `httpStream` transport, stateful
 * sessions (the default), serving echo, add and sha with the same work as the
 * built-in example server. Its logger is silenced (the benchmarks flood it).
 * fastmcp cannot report the port it bound, so a free port is picked first.
 *
 *   node bench/baselines/fastmcp.js [--port N] [--json-response]
 */
import { FastMCP } from 'fastmcp';
import { z } from 'zod';
import { freePort, HOST, PATH, runIfMain, tools } from './common.js';

const silent = { debug() {}, error() {}, info() {}, log() {}, warn() {} };

export async function start({ port = 0, host = HOST, jsonResponse = false } = {}) {
  const server = new FastMCP({ name: 'bench-fastmcp', version: '1.0.0', logger: silent });
  server.addTool({
    name: 'echo',
    description: 'Echoes the text back.',
    parameters: z.object({ text: z.string() }),
    execute: async (args) => tools.echo(args),
  });
  server.addTool({
    name: 'add',
    description: 'Adds two numbers.',
    parameters: z.object({ a: z.number(), b: z.number() }),
    execute: async (args) => tools.add(args),
  });
  server.addTool({
    name: 'sha',
    description: 'CPU-heavy: SHA-256 over 64 KiB, 50 times.',
    execute: async () => tools.sha(0),
  });
  const bound = port === 0 ? await freePort(host) : port;
  await server.start({
    transportType: 'httpStream',
    httpStream: { port: bound, host, endpoint: PATH, enableJsonResponse: jsonResponse },
  });
  return {
    url: `http://${host}:${bound}${PATH}`,
    live: () => server.sessions.length,
    close: () => server.stop(),
  };
}

await runIfMain(import.meta.url, start);
