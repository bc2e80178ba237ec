/**
 * Experiment (not part of `npm run bench`): heap and time per McpServer, with
 * the SDK's default (a new Ajv per server) and with one shared
 * jsonSchemaValidator. Needs --expose-gc.
 *
 *   node --expose-gc bench/experiments/ajv-per-session.js
 */
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { AjvJsonSchemaValidator } from '@modelcontextprotocol/sdk/validation/ajv';
import createExampleServer from '../../dist/main/host/example-server.js';

if (typeof globalThis.gc !== 'function') throw new Error('run with --expose-gc');
const N = 2000;
function measure(label, make) {
  globalThis.gc();
  const before = process.memoryUsage().heapUsed;
  const t0 = performance.now();
  const kept = [];
  for (let i = 0; i < N; i++) kept.push(make());
  const us = ((performance.now() - t0) / N) * 1000;
  globalThis.gc();
  const kib = (process.memoryUsage().heapUsed - before) / N / 1024;
  console.log(`${label.padEnd(44)} ${kib.toFixed(1)} KiB and ${us.toFixed(0)} us per server (${kept.length} kept)`);
}
measure('built-in example server (own Ajv)', () => createExampleServer({ sessionId: '', clientKey: '', threadId: 0 }));
measure('bare McpServer (own Ajv)', () => new McpServer({ name: 'x', version: '1' }));
const shared = new AjvJsonSchemaValidator();
measure(
  'bare McpServer, one shared validator',
  () => new McpServer({ name: 'x', version: '1' }, { jsonSchemaValidator: shared }),
);
