/**
 * Abuse resistance end to end: per-client fairness, session binding to the
 * authenticated principal, slow and oversized requests.
 */
import { connect as netConnect } from 'node:net';
import { LATEST_PROTOCOL_VERSION } from '@modelcontextprotocol/sdk/types.js';
import { afterEach, describe, expect, it } from 'vitest';
import { loadAuth } from '../dist/main/front/auth.js';
import type { Served } from '../dist/main/index.js';
import { alive, initializeBody, post, rawInitialize, recordClosed, start } from './helpers.js';

let served: Served | undefined;
afterEach(async () => {
  await served?.close();
  served = undefined;
});

const from = (address: string) => ({ 'x-forwarded-for': address });

describe('per-client fairness', () => {
  it("a noisy client flooding at its cap never evicts another client's sessions", async () => {
    served = await start({ maxSessions: 10, threads: 2, trustProxy: 1, perClient: { maxSessions: 3 } });
    const s = served;
    const closed = recordClosed(s);
    const quiet = await Promise.all([1, 2, 3].map(() => rawInitialize(s.url, from('10.0.0.2'))));
    expect(quiet.map((q) => q.status)).toEqual([200, 200, 200]);
    let peak = 0;
    for (let i = 0; i < 30; i++) {
      const r = await rawInitialize(s.url, from('10.0.0.1'));
      expect(r.status).toBe(200);
      const stats = await s.broker.stats();
      peak = Math.max(peak, stats.occupied);
    }
    for (const q of quiet) expect(await alive(s.url, q.sessionId as string)).toBe(true);
    expect(closed.every((e) => e.clientKey === '10.0.0.1' && e.reason === 'evicted')).toBe(true);
    expect(closed).toHaveLength(27);
    expect(peak).toBeLessThanOrEqual(6);
  });

  it('limits one client by its own creation rate, with 429 and Retry-After, and counts it by reason', async () => {
    served = await start({ maxSessions: 10, trustProxy: 1, perClient: { rate: { max: 2, windowMs: 60_000 } } });
    expect((await rawInitialize(served.url, from('10.0.0.1'))).status).toBe(200);
    expect((await rawInitialize(served.url, from('10.0.0.1'))).status).toBe(200);
    const limited = await rawInitialize(served.url, from('10.0.0.1'));
    expect(limited.status).toBe(429);
    expect(Number(limited.headers.get('retry-after'))).toBeGreaterThanOrEqual(59);
    expect(JSON.parse(limited.text)).toMatchObject({
      error: { code: -32000, data: { reason: 'client_rate_limited' } },
    });
    expect((await rawInitialize(served.url, from('10.0.0.2'))).status).toBe(200);
    const metrics = await (await fetch(served.metricsUrl)).text();
    expect(metrics).toMatch(/^mcp_session_admissions_rejected_total\{reason="client_rate_limited"\} 1$/m);
  });

  it('trusts X-Forwarded-For only for the configured number of hops', async () => {
    served = await start({ maxSessions: 10, perClient: { maxSessions: 1 }, evict: 'none' });
    // trustProxy 0: the header is ignored, every request is the socket's peer.
    expect((await rawInitialize(served.url, from('10.0.0.1'))).status).toBe(200);
    const refused = await rawInitialize(served.url, from('10.0.0.2'));
    expect(refused.status).toBe(429);
    expect(JSON.parse(refused.text).error.data.reason).toBe('client_full');
  });
});

describe('session binding', () => {
  it('answers 404 to anyone but the principal who created the session, 401 without a token', async () => {
    served = await start({
      maxSessions: 10,
      auth: await loadAuth(new URL('./fixtures/auth.js', import.meta.url).pathname),
    });
    const s = served;
    const alice = { authorization: 'Bearer token-alice' };
    const bob = { authorization: 'Bearer token-bob' };
    const created = await rawInitialize(s.url, alice);
    expect(created.status).toBe(200);
    const id = created.sessionId as string;
    const ping = (headers: Record<string, string>) =>
      post(
        s.url,
        { jsonrpc: '2.0', id: 1, method: 'ping' },
        { ...headers, 'mcp-session-id': id, 'mcp-protocol-version': LATEST_PROTOCOL_VERSION },
      );
    expect((await ping(alice)).status).toBe(200);
    expect((await ping(bob)).status).toBe(404);
    const anonymous = await ping({});
    expect(anonymous.status).toBe(401);
    expect(anonymous.headers.get('www-authenticate')).toMatch(/^Bearer error="invalid_token"/);
    expect((await ping({ authorization: 'Bearer forged' })).status).toBe(401);
    expect((await ping(alice)).status).toBe(200);
    const stats = await s.broker.stats();
    expect(stats.createdTotal).toBe(1);
  });

  it('does not bind sessions to addresses (clients behind NAT or changing networks keep working)', async () => {
    served = await start({ maxSessions: 10, trustProxy: 1 });
    const { sessionId } = await rawInitialize(served.url, from('10.0.0.1'));
    const res = await post(
      served.url,
      { jsonrpc: '2.0', id: 1, method: 'ping' },
      { ...from('10.9.9.9'), 'mcp-session-id': sessionId as string, 'mcp-protocol-version': LATEST_PROTOCOL_VERSION },
    );
    expect(res.status).toBe(200);
  });
});

describe('slow and oversized requests', () => {
  it('answers a client that never finishes its headers with 408, and keeps serving others', async () => {
    served = await start({ maxSessions: 10, headersTimeoutMs: 300, requestTimeoutMs: 600 });
    const url = new URL(served.url);
    const socket = netConnect(Number(url.port), url.hostname);
    let reply = '';
    socket.on('data', (chunk) => {
      reply += chunk;
    });
    socket.write(`POST ${url.pathname} HTTP/1.1\r\nhost: ${url.host}\r\ncontent-type: application/json\r\n`);
    const ended = new Promise((resolve) => socket.on('close', resolve));
    expect((await rawInitialize(served.url)).status).toBe(200);
    await ended;
    expect(reply).toMatch(/^HTTP\/1.1 408/);
    expect(JSON.parse(reply.slice(reply.indexOf('\r\n\r\n') + 4))).toMatchObject({ error: { code: -32000 } });
  });

  it('answers oversized headers with 431 and a JSON-RPC body', async () => {
    served = await start({ maxSessions: 10, maxHeaderBytes: 4096 });
    const res = await post(served.url, initializeBody(), { 'x-padding': 'x'.repeat(8192) });
    expect(res.status).toBe(431);
    expect(await res.json()).toMatchObject({ jsonrpc: '2.0', error: { code: -32000 } });
  });
});
