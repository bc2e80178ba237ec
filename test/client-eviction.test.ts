/**
 * What the SDK client does when its session is evicted, and how an app recovers.
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { afterEach, describe, expect, it } from 'vitest';
import { isSessionNotFound, ReconnectingClient } from '../dist/main/client/index.js';
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

  it('recovers in one line with ReconnectingClient.run', async () => {
    served = await start({ maxSessions: 1 });
    const reconnects: Array<string | undefined> = [];
    const rc = await ReconnectingClient.connect(served.url, { onReconnect: (id) => reconnects.push(id) });
    const before = rc.sessionId;
    await connect(served.url); // evicts rc's session
    const result = await rc.run((client) => client.callTool({ name: 'echo', arguments: { text: 'again' } }));
    expect(result).toMatchObject({ content: [{ text: 'again' }] });
    expect(rc.sessionId).toBeDefined();
    expect(rc.sessionId).not.toBe(before);
    expect(reconnects).toEqual([rc.sessionId]);
    // Errors that are not "session not found" are not retried.
    await expect(rc.run((client) => client.callTool({ name: 'no-such-tool', arguments: {} }))).resolves.toMatchObject({
      isError: true,
    });
    await rc.close();
  });
});
