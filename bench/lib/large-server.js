/**
 * The server module of the large-results benchmark: the built-in example
 * server plus a tool `big` ({ bytes }) that answers with a text of that many
 * bytes. Importing broker-module.js installs its heap reporter in each handler
 * thread (in a main thread, as plain-sdk runs it, that does nothing).
 */
import createExampleServer from '../../dist/main/host/example-server.js';
import './broker-module.js';
import { z } from 'zod';

export default function createLargeResultsServer(context) {
  const server = createExampleServer(context);
  server.registerTool(
    'big',
    { description: 'Answers with a text of `bytes` bytes.', inputSchema: { bytes: z.number().int().min(0) } },
    async ({ bytes }) => ({ content: [{ type: 'text', text: 'x'.repeat(bytes) }] }),
  );
  return server;
}
