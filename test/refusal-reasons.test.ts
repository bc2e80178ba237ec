/**
 * Refusals are named for what happened: an admission refused because the
 * server is shutting down is `shutting_down`, one whose thread is gone is
 * `owner_gone` (both 503 + Retry-After), neither is `full`, and each is counted
 * under its own reason.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { MemoryStore, resolveAdmissionOptions } from '../dist/broker/index.js';
import type { Served } from '../dist/main/index.js';
import { inFlight, initializeBody, post, rawCall, rawInitialize, settled, start, until } from './helpers.js';

/** A store at capacity 1 whose owners never confirm a close: an admission beyond it waits. */
function storeOfOne() {
  return new MemoryStore({
    admission: resolveAdmissionOptions({ maxSessions: 1, idleTimeoutMs: 0, closeTimeoutMs: 60_000 }),
    lanes: 2,
    closer: () => new Promise<void>(() => {}),
  });
}

describe('the memory store names a refusal for what happened', () => {
  it('refuses an admission after shutdown began as shutting_down, and counts it so', async () => {
    const store = storeOfOne();
    await store.shutdown(0);
    const decision = await store.admit({ clientKey: 'a', owner: 1 });
    expect(decision).toMatchObject({ ok: false, reason: 'shutting_down' });
    const { rejectedTotal } = store.stats();
    expect(rejectedTotal.shutting_down).toBe(1);
    expect(rejectedTotal.full).toBe(0);
  });

  it('refuses an admission waiting for an evicted session as shutting_down when shutdown begins', async () => {
    const store = storeOfOne();
    const first = await store.admit({ clientKey: 'a', owner: 1 });
    if (!first.ok) throw new Error(`refused: ${first.reason}`);
    store.table.leave(first);
    const waiting = store.admit({ clientKey: 'b', owner: 2 });
    expect(store.stats().waiting).toBe(1);
    await store.shutdown(0);
    expect(await waiting).toMatchObject({ ok: false, reason: 'shutting_down' });
    expect(store.stats().rejectedTotal).toMatchObject({ shutting_down: 1, full: 0 });
  });

  it('refuses as owner_gone an admission waiting when its thread dies, and one arriving from a dead thread', async () => {
    const store = storeOfOne();
    const first = await store.admit({ clientKey: 'a', owner: 1 });
    if (!first.ok) throw new Error(`refused: ${first.reason}`);
    store.table.leave(first);
    const waiting = store.admit({ clientKey: 'b', owner: 2 });
    store.ownerGone(2);
    expect(await waiting).toMatchObject({ ok: false, reason: 'owner_gone' });
    expect(await store.admit({ clientKey: 'c', owner: 2 })).toMatchObject({ ok: false, reason: 'owner_gone' });
    expect(store.stats().rejectedTotal).toMatchObject({ owner_gone: 2, full: 0 });
    await store.shutdown(0);
  });
});

let served: Served | undefined;
afterEach(async () => {
  await served?.close();
  served = undefined;
});

async function initialize(url: string) {
  const res = await post(url, initializeBody(7));
  const body = (await res.json()) as { error?: { message: string; data?: { reason?: string } }; id: unknown };
  return { status: res.status, retryAfter: res.headers.get('retry-after'), body };
}

describe('the HTTP answers of those refusals', () => {
  it('answers an initialize admitted just before shutdown 503 shutting_down, not 404 or full', async () => {
    // The factory takes 700 ms; shutdown stops waiting for in-flight requests after 200 ms.
    served = await start({
      maxSessions: 2,
      threads: 1,
      module: new URL('./fixtures/slow-factory.js', import.meta.url),
      shutdownTimeoutMs: 200,
    });
    const s = served;
    const answer = initialize(s.url);
    await until(async () => (await s.broker.stats()).occupied === 1, 5000, 'the admission');
    const closing = s.close();
    const { status, retryAfter, body } = await answer;
    await closing;
    expect(status).toBe(503);
    expect(Number(retryAfter)).toBeGreaterThanOrEqual(1);
    expect(body.error?.message).toBe('Server is shutting down');
    expect(body.error?.data?.reason).toBe('shutting_down');
    expect(body.id).toBe(7);
  });

  it('answers an initialize whose thread dies before answering 503 owner_gone with Retry-After', async () => {
    // With per-thread listeners the initialize's connection dies with its thread: nobody is left to answer.
    served = await start({
      listeners: 'main',
      maxSessions: 2,
      threads: 1,
      module: new URL('./fixtures/exiting-factory.js', import.meta.url),
    });
    const { status, retryAfter, body } = await initialize(served.url);
    expect(status).toBe(503);
    expect(Number(retryAfter)).toBeGreaterThanOrEqual(1);
    expect(body.error?.data?.reason).toBe('owner_gone');
    expect(body.error?.message).toMatch(/gone/);
  });

  it('answers every request 503 shutting_down once a shutdown was asked for, and names both reasons in /metrics', async () => {
    served = await start({ maxSessions: 2, threads: 1 });
    const text = await (await fetch(served.metricsUrl)).text();
    expect(text).toContain('mcp_session_admissions_rejected_total{reason="shutting_down"} 0');
    expect(text).toContain('mcp_session_admissions_rejected_total{reason="owner_gone"} 0');
    // A call in flight holds the shutdown in its drain, so the listener is certainly still up (with no
    // request in flight the shutdown can end, and close the connections, before the initialize arrives).
    const s = served;
    const { sessionId } = await rawInitialize(s.url);
    if (!sessionId) throw new Error('no session id');
    // The initialize's own request may still count as in flight just after its answer was read.
    await settled(s, sessionId);
    const call = rawCall(s.url, sessionId, 'sleep', { ms: 1500 });
    await inFlight(s, sessionId);
    const closing = s.broker.close({ timeoutMs: 5000 });
    const { status, retryAfter, body } = await initialize(s.url);
    expect(status).toBe(503);
    expect(retryAfter).toBe('1');
    expect(body.error?.data?.reason).toBe('shutting_down');
    // The call that held the drain was answered, not cut off.
    expect((await call).status).toBe(200);
    await closing;
  });
});
