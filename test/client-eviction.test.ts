/**
 * What the SDK client does when its session is evicted, and how an app recovers.
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { afterEach, describe, expect, it } from 'vitest';
import { isSessionNotFound } from '../dist/main/client/index.js';
import type { Served } from '../dist/main/index.js';
import { connect, start } from './helpers.js';

let served: Served | undefined;
afterEach(async () => {
  await served?.close();
  served = undefined;
});

describe('a client whose session was evicted', () => {
  it('gets 404 on every request and keeps its stale session id (SDK 1.32); a new transport recovers', async () => {
    served = await start({ maxSessions: 1 });
    const evicted = await connect(served.url);
    await connect(served.url); // evicts the first
    const first = await evicted.client.callTool({ name: 'echo', arguments: { text: 'x' } }).catch((e: unknown) => e);
    expect(isSessionNotFound(first)).toBe(true);
    expect(evicted.transport.sessionId).toBe(evicted.sessionId);
    const second = await evicted.client.listTools().catch((e: unknown) => e);
    expect(isSessionNotFound(second)).toBe(true);
    // Recovery: a new transport (and initialize) for the same client code.
    const client = new Client({ name: 'recovered', version: '1.0.0' });
    const transport = new StreamableHTTPClientTransport(new URL(served.url));
    await client.connect(transport);
    expect(transport.sessionId).not.toBe(evicted.sessionId);
    expect(await client.callTool({ name: 'echo', arguments: { text: 'back' } })).toMatchObject({
      content: [{ text: 'back' }],
    });
  });
});
