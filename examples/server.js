// The MCP server the examples serve: one McpServer per session, built by
// this module's default export (it runs in the broker's handler threads).
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { z } from 'zod';

export default function createServer(ctx) {
  const server = new McpServer({ name: 'example-app', version: '1.0.0' });
  server.registerTool('echo', { description: 'Echoes its text', inputSchema: { text: z.string() } }, async ({ text }) => ({
    content: [{ type: 'text', text }],
  }));
  server.registerTool('whoami', { description: 'This session and the process serving it' }, async () => ({
    content: [{ type: 'text', text: JSON.stringify({ sessionId: ctx.sessionId, pid: process.pid }) }],
  }));
  return server;
}
