/**
 * Many processes on one host (ADR 20), with real processes: a node:cluster
 * primary holding the authority (startClusterBroker) and workers forked by
 * cluster.fork() serving one port under it.
 */
import { LATEST_PROTOCOL_VERSION } from '@modelcontextprotocol/sdk/types.js';
import { afterEach, describe, expect, it } from 'vitest';
import {
  ClusterApp,
  callFresh,
  fresh,
  initializeFresh,
  ownerPid,
  processOf,
  streamAndResume,
} from './cluster-helpers.js';
import { connect, initializeBody, until } from './helpers.js';

let app: ClusterApp | undefined;
afterEach(async () => {
  await app?.stop();
  app = undefined;
});

describe('node:cluster workers under one authority', () => {
  it('admit no more than the cap across every process, however the initializes interleave', async () => {
    app = await ClusterApp.start({ admission: { maxSessions: 6, evict: 'none' } });
    const a = app;
    const answers = await Promise.all(Array.from({ length: 40 }, () => initializeFresh(a.url)));
    const admitted = answers.filter((x) => x.status === 200);
    expect(admitted).toHaveLength(6);
    expect(answers.filter((x) => x.status === 503).every((x) => /"reason":"full"/.test(x.text))).toBe(true);
    expect(answers.filter((x) => x.status !== 200 && x.status !== 503)).toEqual([]);
    // Whichever processes the six landed on, the authority never counted more.
    expect(a.maxLive()).toBe(6);
    const indexes = a.workers.map((w) => w.process);
    for (const x of admitted) expect(indexes).toContain(processOf(x.sessionId as string));
    expect((await a.stats()).stats.occupied).toBe(6);
  });

  it('hold the cap with eviction under a flood over three workers: sampled in every process, replayed from the authority', async () => {
    app = await ClusterApp.start({ admission: { maxSessions: 5, evict: 'oldest' } }, 3);
    const a = app;
    a.command('sample start');
    let admitted = 0;
    for (let wave = 0; wave < 3; wave++) {
      const answers = await Promise.all(Array.from({ length: 24 }, () => initializeFresh(a.url)));
      admitted += answers.filter((x) => x.status === 200).length;
      // Refused only as full (every candidate busy: its initialize still in flight), never anything else.
      expect(answers.filter((x) => x.status !== 200 && !/"reason":"full"/.test(x.text))).toEqual([]);
    }
    a.command('sample stop');
    await until(() => a.samples.length === 3, 5000, 'every worker to report');
    expect(admitted).toBeGreaterThan(5);
    for (const sample of a.samples) {
      expect(sample.samples).toBeGreaterThan(10);
      expect(sample.maxOccupied).toBeLessThanOrEqual(5);
      expect(sample.maxTransports).toBeLessThanOrEqual(5);
    }
    expect(a.maxLive()).toBe(5);
    expect(a.events.filter((e) => e.type === 'created')).toHaveLength(admitted);
  });

  it('hold the creation rate exactly across processes', async () => {
    app = await ClusterApp.start({ admission: { maxSessions: 100, rate: { max: 7, windowMs: 60_000 } } }, 3);
    const a = app;
    const answers = await Promise.all(Array.from({ length: 40 }, () => initializeFresh(a.url)));
    expect(answers.filter((x) => x.status === 200)).toHaveLength(7);
    const limited = answers.filter((x) => x.status === 429);
    expect(limited).toHaveLength(33);
    for (const x of limited) {
      expect(JSON.parse(x.text)).toMatchObject({ error: { data: { reason: 'rate_limited' } } });
      expect(Number(x.headers['retry-after'])).toBeGreaterThan(50);
    }
  });

  it('hold per-client limits across processes', async () => {
    app = await ClusterApp.start(
      { admission: { maxSessions: 100, evict: 'none', perClient: { maxSessions: 2 } }, serve: { trustProxy: 1 } },
      3,
    );
    const a = app;
    const clients = ['10.0.0.1', '10.0.0.2', '10.0.0.3'];
    const answers = await Promise.all(
      clients.flatMap((address) =>
        Array.from({ length: 8 }, async () => ({
          address,
          answer: await fresh(a.url, { headers: { 'x-forwarded-for': address }, body: initializeBody() }),
        })),
      ),
    );
    for (const address of clients) {
      const mine = answers.filter((x) => x.address === address);
      expect(mine.filter((x) => x.answer.status === 200)).toHaveLength(2);
      expect(mine.filter((x) => x.answer.status === 429 && /client_full/.test(x.answer.text))).toHaveLength(6);
    }
  });

  it('serve every session from whichever process a request lands on, always on its owner', async () => {
    app = await ClusterApp.start({ admission: { maxSessions: 10 } });
    const a = app;
    const ids: string[] = [];
    for (let i = 0; i < 4; i++) ids.push((await initializeFresh(a.url)).sessionId as string);
    const pids = new Map(a.workers.map((w) => [w.process, w.pid]));
    for (const id of ids) {
      // Consecutive connections go to different workers: one of each pair is forwarded.
      for (let i = 0; i < 4; i++) expect(await ownerPid(a.url, id)).toBe(pids.get(processOf(id)));
    }
    // A made-up id of either process, and of a process that does not exist: 404 wherever it lands.
    for (const prefix of ['01', '02', '07']) {
      const fake = `${prefix}${'0'.repeat(14)}01${'ab'.repeat(16)}`;
      for (let i = 0; i < 2; i++) expect((await callFresh(a.url, fake, 'echo', { text: 'x' })).status).toBe(404);
    }
  });

  it('evict the oldest session of the whole host, whichever process owns it, and say why on any process', async () => {
    app = await ClusterApp.start({ admission: { maxSessions: 4, evict: 'oldest' } });
    const a = app;
    const first: string[] = [];
    for (let i = 0; i < 4; i++) first.push((await initializeFresh(a.url)).sessionId as string);
    const second: string[] = [];
    for (let i = 0; i < 4; i++) {
      const answer = await initializeFresh(a.url);
      expect(answer.status).toBe(200);
      second.push(answer.sessionId as string);
    }
    for (const id of first) {
      const answer = await callFresh(a.url, id, 'echo', { text: 'x' });
      expect(answer.status).toBe(404);
      expect(JSON.parse(answer.text)).toMatchObject({ error: { data: { reason: 'evicted' } } });
    }
    for (const id of second) expect((await callFresh(a.url, id, 'echo', { text: 'x' })).status).toBe(200);
    const evicted = a.events.filter((e) => e.type === 'closed' && e.reason === 'evicted').map((e) => e.id);
    expect(evicted).toEqual(first);
    expect(a.maxLive()).toBe(4);
  });

  it('never evict a session with a request in flight in its process: the owner vetoes, the next oldest goes', async () => {
    app = await ClusterApp.start({ admission: { maxSessions: 3, evict: 'oldest' } });
    const a = app;
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push((await initializeFresh(a.url)).sessionId as string);
    const [busy, next, last] = ids as [string, string, string];
    // This process cannot see the owner's table: a wide margin stands in for "the call is in flight there".
    const slow = callFresh(a.url, busy, 'sleep', { ms: 4000 });
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const fourth = await initializeFresh(a.url);
    expect(fourth.status).toBe(200);
    expect((await slow).status).toBe(200);
    expect((await callFresh(a.url, busy, 'echo', { text: 'x' })).status).toBe(200);
    expect((await callFresh(a.url, next, 'echo', { text: 'x' })).status).toBe(404);
    expect((await callFresh(a.url, last, 'echo', { text: 'x' })).status).toBe(200);
    expect(a.maxLive()).toBe(3);
  });

  it('stream SSE through another process: notifications on the GET stream, and a resumption after Last-Event-ID', async () => {
    app = await ClusterApp.start({ admission: { maxSessions: 10 } });
    const a = app;
    // The SDK's own client, its connections spread over both workers.
    const session = await connect(a.url);
    expect((await session.client.listTools()).tools.map((t) => t.name)).toContain('whoami');
    await session.client.close();
    const { sessionId } = await initializeFresh(a.url);
    const id = sessionId as string;
    // Calls on new connections alternate between the workers; each SSE answer arrives whole.
    for (let i = 0; i < 4; i++) {
      const answer = await callFresh(a.url, id, 'echo', { text: `n${i}` });
      expect(answer.headers['content-type']).toMatch(/text\/event-stream/);
      expect(answer.text).toContain(`"text":"n${i}"`);
      expect(answer.headers['mcp-session-id'] ?? id).toBe(id);
    }
    // A GET stream on one connection, its notifications sent through others; then a resumption, twice.
    await streamAndResume({ sessionId: id, streamUrl: a.url, firstUrl: a.url, secondUrl: a.url, resumes: 2 });
  });

  it('free the sessions of a worker killed with SIGKILL at once, with reason error; the others keep serving', async () => {
    app = await ClusterApp.start({ admission: { maxSessions: 6, evict: 'none' } });
    const a = app;
    const answers = await Promise.all(Array.from({ length: 6 }, () => initializeFresh(a.url)));
    const ids = answers.map((x) => x.sessionId as string);
    const victim = a.workers[0] as (typeof a.workers)[number];
    const doomed = ids.filter((id) => processOf(id) === victim.process);
    const survivors = ids.filter((id) => processOf(id) !== victim.process);
    expect(doomed.length).toBeGreaterThan(0);
    expect(survivors.length).toBeGreaterThan(0);
    expect((await initializeFresh(a.url)).status).toBe(503);
    const killedAt = Date.now();
    a.command(`kill ${victim.pid}`);
    await until(
      () => doomed.every((id) => a.events.some((e) => e.type === 'closed' && e.id === id && e.reason === 'error')),
      5000,
      "the killed worker's sessions to close",
    );
    // Bounded: the authority sees the connection drop (no timeout involved).
    expect(Date.now() - killedAt).toBeLessThan(3000);
    expect((await a.stats()).stats.occupied).toBe(survivors.length);
    for (const id of survivors) {
      for (let i = 0; i < 2; i++) expect((await callFresh(a.url, id, 'echo', { text: 'x' })).status).toBe(200);
    }
    // Its sessions are 404 from the survivor (the owner's socket is gone); the capacity is back.
    for (const id of doomed) expect((await callFresh(a.url, id, 'echo', { text: 'x' })).status).toBe(404);
    const fresh = await Promise.all(doomed.map(() => initializeFresh(a.url)));
    expect(fresh.map((x) => x.status)).toEqual(doomed.map(() => 200));
    expect((await initializeFresh(a.url)).status).toBe(503);
    expect(a.maxLive()).toBe(6);
  });

  it('answer a bad request 400 on whichever process without disturbing a session', async () => {
    app = await ClusterApp.start({ admission: { maxSessions: 4 } });
    const a = app;
    const id = (await initializeFresh(a.url)).sessionId as string;
    for (let i = 0; i < 2; i++) {
      const bad = await fresh(a.url, {
        headers: { 'mcp-session-id': id, 'mcp-protocol-version': LATEST_PROTOCOL_VERSION },
        body: { not: 'json-rpc' },
      });
      expect(bad.status).toBe(400);
    }
    expect((await callFresh(a.url, id, 'echo', { text: 'still' })).text).toContain('still');
  });
});
