/**
 * The built-in example server, served when no module is given: `echo`, `add`
 * and `sha` (a CPU-heavy tool: SHA-256 over 64 KiB, 50 times).
 */
import { createHash } from 'node:crypto';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { z } from 'zod';
import type { SessionContext } from './host.js';
import { sharedJsonSchemaValidator } from './validator.js';

const SHA_INPUT = Buffer.alloc(64 * 1024, 0x61);
const SHA_ROUNDS = 50;

/** SHA-256 of 64 KiB, 50 times, each round hashing the previous digest with the input. */
export function shaWork(): string {
  let digest = Buffer.alloc(0);
  for (let i = 0; i < SHA_ROUNDS; i++) {
    digest = createHash('sha256').update(digest).update(SHA_INPUT).digest();
  }
  return digest.toString('hex');
}

export default function createExampleServer(context: SessionContext): McpServer {
  // One validator per thread, not a new Ajv per session (see sharedJsonSchemaValidator).
  const server = new McpServer(
    { name: 'mcp-session-broker-example', version: '1.0.0' },
    { jsonSchemaValidator: sharedJsonSchemaValidator() },
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
