/**
 * The server module of `per-session-heap.js` (not run on its own): the tools
 * of the built-in example server (echo, add, sha), built per session with the
 * SDK's default validator (a new Ajv per server) or, with
 * `HEAP_VALIDATOR=shared`, with this package's `sharedJsonSchemaValidator()`.
 * The same module is given to plain-sdk and to the broker, so both run the
 * same factory.
 *
 * In a handler thread it also answers on a BroadcastChannel: `heap?` (GC, then
 * this thread's JS heap) and `snapshot?` (GC, then a heap snapshot of this
 * thread written to `prefix-thread<id>.heapsnapshot`).
 */
import { getHeapStatistics, writeHeapSnapshot } from 'node:v8';
import { BroadcastChannel, isMainThread, threadId } from 'node:worker_threads';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { z } from 'zod';
import { shaWork } from '../../dist/main/host/example-server.js';

export const CHANNEL = 'mcp-bench-per-session-heap';
// Imported only when asked for, so the module also runs against builds without it.
const shared =
  process.env.HEAP_VALIDATOR === 'shared'
    ? (await import('../../dist/main/index.js')).sharedJsonSchemaValidator
    : undefined;

export default function createServer(context) {
  const server = new McpServer(
    { name: 'mcp-session-broker-example', version: '1.0.0' },
    shared ? { jsonSchemaValidator: shared() } : {},
  );
  server.registerTool(
    'echo',
    { description: 'Echoes the text back.', inputSchema: { text: z.string() } },
    async ({ text }) => ({ content: [{ type: 'text', text }] }),
  );
  server.registerTool(
    'add',
    { description: 'Adds two numbers.', inputSchema: { a: z.number(), b: z.number() } },
    async ({ a, b }) => ({ content: [{ type: 'text', text: String(a + b) }] }),
  );
  server.registerTool(
    'sha',
    { description: 'CPU-heavy: SHA-256 over 64 KiB, 50 times. Returns the final digest and the thread that ran it.' },
    async () => ({ content: [{ type: 'text', text: `${shaWork()} thread=${context.threadId}` }] }),
  );
  return server;
}

export function collect() {
  if (typeof globalThis.gc !== 'function') return;
  for (let i = 0; i < 3; i++) globalThis.gc();
}

if (!isMainThread) {
  const channel = new BroadcastChannel(CHANNEL);
  channel.onmessage = ({ data }) => {
    if (data?.type === 'heap?') {
      collect();
      const heap = getHeapStatistics();
      channel.postMessage({ type: 'heap', threadId, used: heap.used_heap_size, total: heap.total_heap_size });
    } else if (data?.type === 'snapshot?') {
      collect();
      const file = writeHeapSnapshot(`${data.prefix}-thread${threadId}.heapsnapshot`);
      channel.postMessage({ type: 'snapshot', threadId, file });
    }
  };
  channel.unref();
}
