/**
 * Nothing is lost on the way to a client that reads: large results and bursts
 * of notifications arrive whole, over SSE and JSON, to fast and slow readers.
 * Only a client that reads nothing for the stall timeout is cut off, and its
 * session survives.
 */
import { type ClientRequest, request } from 'node:http';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { LATEST_PROTOCOL_VERSION, LoggingMessageNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import type { Served } from '../dist/main/index.js';
import { ACCEPT, alive, connect, rawCall, rawInitialize, settled, start, until } from './helpers.js';

let served: Served | undefined;
afterEach(async () => {
  await served?.close();
  served = undefined;
});

const MiB = 1024 * 1024;

function textOf(result: unknown): string {
  const content = (result as { content: { type: string; text: string }[] }).content;
  return content[0]?.text ?? '';
}

/** A raw POST to a session, its body still to be written. */
function sessionRequest(url: string, sessionId: string): ClientRequest {
  return request(url, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      accept: ACCEPT,
      'mcp-session-id': sessionId,
      'mcp-protocol-version': LATEST_PROTOCOL_VERSION,
    },
  });
}

/** POSTs a tools/call over raw HTTP and reads the answer at about `bytesPerSecond`. */
function slowCall(
  url: string,
  sessionId: string,
  args: { name: string; arguments: Record<string, unknown> },
  bytesPerSecond: number,
): Promise<{ status: number; body: string; complete: boolean }> {
  const body = JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'tools/call', params: args });
  return new Promise((resolve, reject) => {
    const req = sessionRequest(url, sessionId);
    req.on('error', reject);
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      let received = 0;
      const started = Date.now();
      res.on('data', (chunk: Buffer) => {
        chunks.push(chunk);
        received += chunk.length;
        // Read no faster than the rate: pause until the bytes so far are "due".
        const due = (received / bytesPerSecond) * 1000 - (Date.now() - started);
        if (due > 0) {
          res.pause();
          setTimeout(() => res.resume(), due);
        }
      });
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString(), complete: true }),
      );
      res.on('aborted', () =>
        resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString(), complete: false }),
      );
      res.on('error', () =>
        resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString(), complete: false }),
      );
    });
    req.end(body);
  });
}

describe('large results', () => {
  it.each([
    ['SSE', false],
    ['JSON', true],
  ])(
    'arrive whole through the SDK client over %s (5 and 16 MiB, at once and after a while)',
    async (_mode, jsonResponse) => {
      served = await start({ maxSessions: 4, threads: 2, jsonResponse });
      const { client } = await connect(served.url);
      for (const bytes of [5 * MiB, 16 * MiB]) {
        for (const delayMs of [0, 50]) {
          const result = await client.callTool({ name: 'big', arguments: { bytes, delayMs } }, undefined, {
            timeout: 60_000,
          });
          expect(textOf(result).length).toBe(bytes);
        }
      }
      await client.close();
    },
  );

  it.each([
    ['SSE', false],
    ['JSON', true],
  ])('arrive whole to a raw client reading at full speed over %s (5, 8 and 16 MiB)', async (_mode, jsonResponse) => {
    served = await start({ maxSessions: 4, threads: 2, jsonResponse });
    const { sessionId } = await rawInitialize(served.url);
    if (!sessionId) throw new Error('no session');
    for (const bytes of [5 * MiB, 8 * MiB, 16 * MiB]) {
      const answer = await slowCall(
        served.url,
        sessionId,
        { name: 'big', arguments: { bytes, delayMs: 50 } },
        Number.POSITIVE_INFINITY,
      );
      expect(answer.complete).toBe(true);
      const json = jsonResponse ? answer.body : (/data: (.*)\n\n$/.exec(answer.body)?.[1] ?? '');
      expect(textOf(JSON.parse(json).result).length).toBe(bytes);
    }
  });

  it.each([
    ['SSE', false],
    ['JSON', true],
  ])('arrive whole to a client reading at 3 MiB/s over %s', async (_mode, jsonResponse) => {
    served = await start({ maxSessions: 4, threads: 1, jsonResponse });
    const { sessionId } = await rawInitialize(served.url);
    if (!sessionId) throw new Error('no session');
    const bytes = 6 * MiB;
    const answer = await slowCall(served.url, sessionId, { name: 'big', arguments: { bytes, delayMs: 50 } }, 3 * MiB);
    expect(answer.status).toBe(200);
    expect(answer.complete).toBe(true);
    const json = jsonResponse ? answer.body : (/data: (.*)\n\n$/.exec(answer.body)?.[1] ?? '');
    expect(textOf(JSON.parse(json).result).length).toBe(bytes);
  });
});

describe('bursts of notifications', () => {
  it.each([
    [70, 64 * 1024],
    [4000, 1024],
  ])('arrive whole (%i x %i bytes) before the result', async (count, size) => {
    served = await start({ maxSessions: 4, threads: 2 });
    const { client } = await connect(served.url);
    let received = 0;
    let bytes = 0;
    client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => {
      received++;
      bytes += String(n.params.data).length;
    });
    const result = await client.callTool({ name: 'flood', arguments: { count, size } }, undefined, {
      timeout: 60_000,
    });
    expect(textOf(result)).toBe(`sent ${count}`);
    expect(received).toBe(count);
    expect(bytes).toBe(count * size);
    await client.close();
  });
});

describe('a client that reads nothing', () => {
  it('is cut off after the stall timeout, freeing its session from busy, the session untouched', async () => {
    served = await start({
      maxSessions: 2,
      threads: 1,
      streamStallTimeoutMs: 1_000,
      maxStreamBufferBytes: 256 * 1024,
      streamWindowBytes: 64 * 1024,
    });
    const s = served;
    const { sessionId } = await rawInitialize(s.url);
    if (!sessionId) throw new Error('no session');
    const found = s.broker.index.lookup(sessionId);
    if (!found.ok) throw new Error('not found');
    // The initialize's own request may still be in flight after its answer was read: the wait below is for the call's.
    await settled(s, sessionId);
    // ~40 MB of notifications to a client that never reads.
    const body = JSON.stringify({
      jsonrpc: '2.0',
      id: 9,
      method: 'tools/call',
      params: { name: 'flood', arguments: { count: 4000, size: 10_000 } },
    });
    const started = Date.now();
    const req = sessionRequest(s.url, sessionId);
    req.on('error', () => undefined);
    let received = 0;
    let ended = false;
    req.on('response', (res) => {
      res.pause();
      res.on('error', () => undefined);
      res.on('end', () => {
        ended = true;
      });
      res.on('close', () => {
        received = res.readableLength;
      });
    });
    req.end(body);
    await until(() => s.broker.index.inflight(found.ref) > 0, 5000, 'the call to arrive');
    await until(() => s.broker.index.inflight(found.ref) === 0, 20_000, 'the stream abort');
    expect(Date.now() - started).toBeGreaterThanOrEqual(1_000);
    expect(ended).toBe(false);
    expect(received).toBeLessThan(40_000_000);
    // The session itself survives and answers other requests.
    expect(await alive(s.url, sessionId)).toBe(true);
    expect((await rawCall(s.url, sessionId, 'echo', { text: 'ok' })).status).toBe(200);
    req.destroy();
  });
});

describe('a tool sending to a client that reads nothing', () => {
  it('waits for room instead of buffering, and goes on once the stream is cut off', async () => {
    let sent = 0;
    const count = 4000;
    const factory = () => {
      const server = new McpServer({ name: 'producer', version: '1.0.0' }, { capabilities: { logging: {} } });
      server.registerTool('produce', { inputSchema: { size: z.number() } }, async ({ size }, extra) => {
        const data = 'p'.repeat(size);
        for (sent = 0; sent < count; sent++) {
          await extra.sendNotification({ method: 'notifications/message', params: { level: 'info', data } });
        }
        return { content: [{ type: 'text', text: 'done' }] };
      });
      return server;
    };
    served = await start({
      maxSessions: 2,
      threads: 0,
      module: undefined,
      factory,
      streamStallTimeoutMs: 3_000,
      maxStreamBufferBytes: 256 * 1024,
      streamWindowBytes: 64 * 1024,
    });
    const s = served;
    const { sessionId } = await rawInitialize(s.url);
    if (!sessionId) throw new Error('no session');
    const req = sessionRequest(s.url, sessionId);
    req.on('error', () => undefined);
    req.on('response', (res) => {
      res.pause();
      res.on('error', () => undefined);
    });
    req.end(
      JSON.stringify({
        jsonrpc: '2.0',
        id: 3,
        method: 'tools/call',
        params: { name: 'produce', arguments: { size: 10_000 } },
      }),
    );
    // The producer stops once the socket, the window and the buffer are full.
    await until(() => sent > 0, 5000, 'the tool to start');
    let last = -1;
    await until(
      async () => {
        const now = sent;
        const stable = now === last;
        last = now;
        await new Promise((resolve) => setTimeout(resolve, 200));
        return stable;
      },
      2_500,
      'the producer to wait',
    );
    expect(sent).toBeLessThan(count);
    // After the stall timeout the stream is aborted and the tool runs to its end.
    await until(() => sent === count, 10_000, 'the tool to finish');
    req.destroy();
  });
});
