/**
 * Graceful shutdown: new requests get 503, in-flight requests finish, open GET
 * streams end, and every session closes with reason `shutdown`.
 */
import { LATEST_PROTOCOL_VERSION } from '@modelcontextprotocol/sdk/types.js';
import { describe, expect, it } from 'vitest';
import { inFlight, initializeBody, post, rawCall, rawInitialize, recordClosed, start } from './helpers.js';

describe('graceful shutdown', () => {
  it('refuses new work, lets an in-flight request finish, ends the open GET stream, closes sessions as shutdown', async () => {
    const served = await start({ maxSessions: 5, threads: 2, shutdownTimeoutMs: 5_000 });
    const closed = recordClosed(served);
    const streaming = (await rawInitialize(served.url)).sessionId as string;
    const busy = (await rawInitialize(served.url)).sessionId as string;
    const stream = await fetch(served.url, {
      headers: {
        accept: 'text/event-stream',
        'mcp-session-id': streaming,
        'mcp-protocol-version': LATEST_PROTOCOL_VERSION,
      },
    });
    expect(stream.status).toBe(200);
    const reader = stream.body?.getReader();
    if (!reader) throw new Error('no GET body');
    const streamEnded = (async () => {
      for (;;) if ((await reader.read()).done) return true;
    })();
    const slow = rawCall(served.url, busy, 'sleep', { ms: 400 });
    await inFlight(served, busy);

    const closing = served.close();
    // While draining, the endpoint refuses new work (the listener may also have stopped accepting).
    const refused = await post(served.url, initializeBody()).then(
      (r) => r.status,
      () => 'connection refused',
    );
    expect([503, 'connection refused']).toContain(refused);
    const finished = await slow;
    expect(finished.status).toBe(200);
    expect(finished.text).toMatch(/slept 400/);
    await closing;
    expect(await streamEnded).toBe(true);
    expect(closed.map((e) => e.reason)).toEqual(['shutdown', 'shutdown']);
  });
});
