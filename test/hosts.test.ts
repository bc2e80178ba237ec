/**
 * Many hosts, one limit (ADR 21): server processes started as users start
 * them (`serve --store redis://... --advertise http://...`), each on its own
 * ports, sharing one real redis-server. One cap and one creation rate over
 * all of them, eviction across hosts, requests routed to the owner host, and
 * the faults: Redis unreachable at start, Redis lost while serving (and back
 * empty), a host that dies.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { callFresh, fresh, initializeFresh, ownerPid, streamAndResume } from './cluster-helpers.js';
import { type CliChild, CliChildren, exitOf, FIXTURE, firstLine, until } from './helpers.js';
import {
  freePort,
  injectGhosts,
  occupiedIn,
  REDIS_BINARY,
  REDIS_MISSING,
  RedisCluster,
  RedisServer,
  uniqueNamespace,
} from './redis-helpers.js';

const OPENSSL = spawnSync('openssl', ['version']).status === 0;
const cli = new CliChildren();
const run = (args: string[], env?: NodeJS.ProcessEnv) => cli.run(args, env);
const servers: RedisServer[] = [];

afterEach(() => cli.killAll());

afterAll(async () => {
  for (const server of servers.splice(0)) await server.dispose();
});

type Host = CliChild & { url: string; advertise: string };

/**
 * `serve` on the Redis at `store`, its private route on a free port, one
 * handler thread, with `flags` (not waited for: a host that fails to start
 * is a test too).
 */
async function serveStore(store: string, flags: string[], env?: NodeJS.ProcessEnv) {
  const advertise = `http://127.0.0.1:${await freePort()}`;
  const child = run(
    ['serve', '--store', store, '--advertise', advertise, '--port', '0', '--threads', '1', ...flags],
    env,
  );
  return Object.assign(child, { advertise });
}

/** A host of the test server in `namespace`, once it is ready. */
async function startHost(
  redis: string,
  namespace: string,
  limits: string[],
  env: NodeJS.ProcessEnv = {},
): Promise<Host> {
  const child = await serveStore(redis, [FIXTURE.pathname, '--namespace', namespace, '--quiet', ...limits], env);
  return Object.assign(child, { url: await firstLine(child) });
}

async function startHosts(redis: string, count: number, limits: string[]): Promise<Host[]> {
  const namespace = uniqueNamespace('hosts');
  const hosts: Host[] = [];
  for (let i = 0; i < count; i++) hosts.push(await startHost(redis, namespace, limits));
  return hosts;
}

/** The namespace's occupied count, straight from Redis (live + closing). */
async function status(url: string, id: string): Promise<number> {
  return (await callFresh(url, id, 'echo', { text: 'x' })).status;
}

describe.skipIf(REDIS_MISSING !== undefined || !REDIS_BINARY)('many hosts over Redis', () => {
  let shared: RedisServer;
  beforeAll(async () => {
    shared = await RedisServer.start();
    servers.push(shared);
  });

  it('holds one cap over three hosts under a concurrent flood, sampled in Redis, and routes every session to its owner', async () => {
    const namespace = uniqueNamespace('flood');
    const hosts: Host[] = [];
    for (let i = 0; i < 3; i++)
      hosts.push(await startHost(shared.url, namespace, ['--max-sessions', '6', '--evict', 'none']));
    const { createClient } = await import('redis');
    const probe = createClient({ url: shared.url });
    await probe.connect();
    let most = 0;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        most = Math.max(most, await occupiedIn(probe, namespace));
        await new Promise((resolve) => setTimeout(resolve, 2));
      }
    })();
    const answers = await Promise.all(
      Array.from({ length: 45 }, (_, i) => initializeFresh((hosts[i % 3] as Host).url)),
    );
    sampling = false;
    await sampler;
    const admitted = answers.filter((a) => a.status === 200);
    expect(admitted).toHaveLength(6);
    expect(answers.filter((a) => a.status === 503)).toHaveLength(39);
    for (const refused of answers.filter((a) => a.status === 503)) {
      expect(JSON.parse(refused.text)).toMatchObject({ error: { data: { reason: 'full' } } });
    }
    expect(most).toBeLessThanOrEqual(6);
    expect(await occupiedIn(probe, namespace)).toBe(6);
    await probe.close();

    // Every session, named on every host, is served by its owner (the same process each time).
    for (const { sessionId } of admitted) {
      const owners = new Set<number | undefined>();
      for (const host of hosts) owners.add(await ownerPid(host.url, sessionId as string));
      expect(owners.size).toBe(1);
      expect([...owners][0]).toBeGreaterThan(0);
    }
    // Made-up ids of a host that exists and of one that does not: 404 on every host.
    const real = admitted[0]?.sessionId as string;
    for (const host of hosts) {
      expect(await status(host.url, `${real.slice(0, 2)}${'0'.repeat(real.length - 2)}`)).toBe(404);
      expect(await status(host.url, `fe${real.slice(2)}`)).toBe(404);
    }
    // Each host's private route takes only forwarded requests (with the namespace's secret).
    for (const owner of hosts) {
      const direct = await callFresh(owner.advertise, real, 'echo', { text: 'x' });
      expect(direct.status).toBe(403);
      const forged = await fresh(owner.advertise, {
        headers: { 'x-mcp-session-broker-route': 'guess', 'mcp-session-id': real },
        body: { jsonrpc: '2.0', id: 2, method: 'tools/list' },
      });
      expect(forged.status).toBe(403);
    }
  });

  it('streams SSE through another host: the GET stream on a non-owner, notifications, and a resumption after Last-Event-ID', async () => {
    const [a, b] = (await startHosts(shared.url, 2, ['--max-sessions', '10'])) as [Host, Host];
    const id = (await initializeFresh(a.url)).sessionId as string;
    // The GET stream opened on B (not the owner): the owner's notifications arrive through it; resumed on B.
    await streamAndResume({ sessionId: id, streamUrl: b.url, firstUrl: b.url, secondUrl: a.url, resumes: 1 });
  });

  it('limits the creation rate exactly across hosts', async () => {
    const hosts = await startHosts(shared.url, 3, ['--max-sessions', '100', '--rate', '7/1m']);
    const answers = await Promise.all(
      Array.from({ length: 30 }, (_, i) => initializeFresh((hosts[i % 3] as Host).url)),
    );
    expect(answers.filter((a) => a.status === 200)).toHaveLength(7);
    const limited = answers.filter((a) => a.status === 429);
    expect(limited).toHaveLength(23);
    expect(Number(limited[0]?.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect(JSON.parse(limited[0]?.text ?? '{}')).toMatchObject({ error: { data: { reason: 'rate_limited' } } });
  });

  it('loads its scripts again after Redis forgot them (SCRIPT FLUSH: a restart or a failover)', async () => {
    const [a, b] = (await startHosts(shared.url, 2, ['--max-sessions', '3'])) as [Host, Host];
    const first = (await initializeFresh(a.url)).sessionId as string;
    const { createClient } = await import('redis');
    const probe = createClient({ url: shared.url });
    await probe.connect();
    await probe.sendCommand(['SCRIPT', 'FLUSH']);
    await probe.close();
    // Every decision still works: admissions, eviction across hosts, routing.
    expect((await initializeFresh(b.url)).status).toBe(200);
    expect((await initializeFresh(a.url)).status).toBe(200);
    expect((await initializeFresh(b.url)).status).toBe(200);
    const gone = await callFresh(b.url, first, 'echo', { text: 'x' });
    expect(gone.status).toBe(404);
    expect(JSON.parse(gone.text)).toMatchObject({ error: { data: { reason: 'evicted' } } });
  });

  it('evicts the oldest session of all hosts, on whichever host it lives', async () => {
    const [a, b, c] = (await startHosts(shared.url, 3, ['--max-sessions', '3'])) as [Host, Host, Host];
    const onA = (await initializeFresh(a.url)).sessionId as string;
    const onB = (await initializeFresh(b.url)).sessionId as string;
    const onC = (await initializeFresh(c.url)).sessionId as string;
    // At the cap: a new one on C evicts the oldest, A's; then B's.
    expect((await initializeFresh(c.url)).status).toBe(200);
    const gone = await callFresh(b.url, onA, 'echo', { text: 'x' });
    expect(gone.status).toBe(404);
    expect(JSON.parse(gone.text)).toMatchObject({ error: { data: { reason: 'evicted' } } });
    expect(await status(a.url, onB)).toBe(200);
    expect(await status(a.url, onC)).toBe(200);
    expect((await initializeFresh(a.url)).status).toBe(200);
    expect(await status(c.url, onB)).toBe(404);
    expect(await status(b.url, onC)).toBe(200);
  });

  it('runs on a Redis Cluster given one node: a namespace on another node, one cap, eviction across hosts, routing', async () => {
    const cluster = await RedisCluster.start(3);
    servers.push(...cluster.nodes);
    // A namespace whose slot another node than the one in the URL serves: reached only by following the cluster.
    let namespace = uniqueNamespace('cluster');
    while ((await cluster.nodeOf(`{mcpsb:${namespace}}`)) === cluster.nodes[0]) namespace = uniqueNamespace('cluster');
    const [a, b] = [
      await startHost(cluster.url, namespace, ['--max-sessions', '2']),
      await startHost(cluster.url, namespace, ['--max-sessions', '2']),
    ];
    const onA = (await initializeFresh(a.url)).sessionId as string;
    const onB = (await initializeFresh(b.url)).sessionId as string;
    expect(await ownerPid(a.url, onB)).toBe(b.pid);
    expect(await ownerPid(b.url, onA)).toBe(a.pid);
    // At the cap: a new one on B evicts the oldest of both, A's (the close is published to A on the cluster).
    expect((await initializeFresh(b.url)).status).toBe(200);
    const gone = await callFresh(b.url, onA, 'echo', { text: 'x' });
    expect(gone.status).toBe(404);
    expect(JSON.parse(gone.text)).toMatchObject({ error: { data: { reason: 'evicted' } } });
    const node = await cluster.nodeOf(`{mcpsb:${namespace}}`);
    const { createClient } = await import('redis');
    const probe = await createClient({ url: node.url }).connect();
    try {
      expect(await occupiedIn(probe, namespace)).toBe(2);
    } finally {
      probe.destroy();
    }
  });

  it("fails closed while its namespace's cluster shard is down, and re-registers when the shard is back empty", async () => {
    const cluster = await RedisCluster.start(3);
    servers.push(...cluster.nodes);
    const namespace = uniqueNamespace('shard');
    const host = await startHost(cluster.url, namespace, ['--max-sessions', '3']);
    const kept = (await initializeFresh(host.url)).sessionId as string;
    const shard = await cluster.nodeOf(`{mcpsb:${namespace}}`);
    await shard.stop();
    await until(async () => (await initializeFresh(host.url)).status === 503, 10_000, 'the refusal');
    const refused = await initializeFresh(host.url);
    expect(JSON.parse(refused.text)).toMatchObject({ error: { data: { reason: 'unavailable' } } });
    expect(Number(refused.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    await until(() => host.stderrText().includes('new sessions are refused'), 10_000, 'the lost line');
    expect(await status(host.url, kept)).toBe(200);
    // Back with its slots and no data: the host registers its session again, and admits.
    await shard.restart();
    await until(async () => (await initializeFresh(host.url)).status === 200, 30_000, 'admissions again');
    expect(host.stderrText()).toContain('re-registering sessions');
    expect(await status(host.url, kept)).toBe(200);
  });

  it('cannot reach Redis at start: one line, exit 1, no credentials shown', async () => {
    const port = await freePort();
    const child = await serveStore(`redis://someone:s3cret-pass@127.0.0.1:${port}/0`, []);
    expect(await exitOf(child)).toBe(1);
    const err = child.stderrText().trim();
    expect(err.split('\n')).toHaveLength(1);
    expect(err).toContain('cannot reach Redis at redis://***:***@127.0.0.1');
    expect(err).not.toContain('s3cret-pass');
    expect(err).not.toContain('someone');
  });

  it('refuses to join a namespace that enforces other limits', async () => {
    const namespace = uniqueNamespace('mismatch');
    await startHost(shared.url, namespace, ['--max-sessions', '3']);
    const child = await serveStore(shared.url, ['--namespace', namespace, '--max-sessions', '4']);
    expect(await exitOf(child)).toBe(1);
    expect(child.stderrText()).toContain('enforces other limits');
  });

  it('connects with credentials in the URL (an ACL user), and never shows them', async () => {
    const redis = await RedisServer.start([
      '--user',
      'mcp',
      'on',
      '>s3cret-pass',
      '~*',
      '&*',
      '+@all',
      '--user',
      'default',
      'off',
    ]);
    servers.push(redis);
    const url = `redis://mcp:s3cret-pass@127.0.0.1:${redis.port}/0`;
    const [a, b] = (await startHosts(url, 2, ['--max-sessions', '2', '--evict', 'none'])) as [Host, Host];
    const id = (await initializeFresh(a.url)).sessionId as string;
    expect((await initializeFresh(b.url)).status).toBe(200);
    expect((await initializeFresh(b.url)).status).toBe(503);
    expect(await status(b.url, id)).toBe(200);
    // A wrong password: one line, exit 1, neither password shown.
    const wrong = await serveStore(`redis://mcp:not-the-pass@127.0.0.1:${redis.port}/0`, []);
    expect(await exitOf(wrong)).toBe(1);
    expect(wrong.stderrText().trim().split('\n')).toHaveLength(1);
    for (const text of [wrong.stderrText(), a.stderrText(), b.stderrText()]) {
      expect(text).not.toContain('s3cret-pass');
      expect(text).not.toContain('not-the-pass');
    }
    const metrics = await (await fetch(new URL('/metrics', a.url))).text();
    expect(metrics).not.toContain('s3cret-pass');
  });

  it.skipIf(!OPENSSL)('connects over TLS (rediss://)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mcpsb-tls-'));
    const cert = join(dir, 'cert.pem');
    const key = join(dir, 'key.pem');
    const made = spawnSync('openssl', [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      key,
      '-out',
      cert,
      '-days',
      '1',
      '-subj',
      '/CN=127.0.0.1',
      '-addext',
      'subjectAltName=IP:127.0.0.1',
    ]);
    expect(made.status).toBe(0);
    const tlsPort = await freePort();
    const redis = await RedisServer.start([
      '--tls-port',
      String(tlsPort),
      '--tls-cert-file',
      cert,
      '--tls-key-file',
      key,
      '--tls-ca-cert-file',
      cert,
      '--tls-auth-clients',
      'no',
    ]);
    servers.push(redis);
    try {
      const namespace = uniqueNamespace('tls');
      const env = { NODE_EXTRA_CA_CERTS: cert };
      const url = `rediss://127.0.0.1:${tlsPort}`;
      const a = await startHost(url, namespace, ['--max-sessions', '1', '--evict', 'none'], env);
      const b = await startHost(url, namespace, ['--max-sessions', '1', '--evict', 'none'], env);
      const id = (await initializeFresh(a.url)).sessionId as string;
      expect((await initializeFresh(b.url)).status).toBe(503);
      expect(await status(b.url, id)).toBe(200);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('frees a session Redis holds for a host that does not own it (a lost message), by the reconcile', async () => {
    const namespace = uniqueNamespace('reconcile');
    const host = await startHost(shared.url, namespace, ['--max-sessions', '2', '--evict', 'none']);
    const real = (await initializeFresh(host.url)).sessionId as string;
    const index = Number.parseInt(real.slice(0, 2), 16);
    const { createClient } = await import('redis');
    const probe = createClient({ url: shared.url });
    await probe.connect();
    // A session Redis counts for this host in slot 1 that the host never heard of (its grant was lost).
    expect(await injectGhosts(probe, namespace, index, [1])).toBe(2);
    expect((await initializeFresh(host.url)).status).toBe(503);
    // Within one reconcile (every 5 s) the ghost is freed; the host's own session stays.
    await until(async () => (await occupiedIn(probe, namespace)) === 1, 8_000, 'the reconcile');
    expect(await probe.sendCommand(['HEXISTS', `{mcpsb:${namespace}}:sess`, '1'])).toBe(0);
    await probe.close();
    expect(await status(host.url, real)).toBe(200);
    expect((await initializeFresh(host.url)).status).toBe(200);
  });

  it('fails closed while Redis is gone, serves existing sessions, and re-registers them when it is back empty', async () => {
    const redis = await RedisServer.start();
    servers.push(redis);
    const [a, b] = (await startHosts(redis.url, 2, ['--max-sessions', '3'])) as [Host, Host];
    const ids = [
      (await initializeFresh(a.url)).sessionId,
      (await initializeFresh(b.url)).sessionId,
      (await initializeFresh(a.url)).sessionId,
    ] as string[];
    await redis.stop();
    for (const host of [a, b]) {
      await until(async () => (await initializeFresh(host.url)).status === 503, 5000, 'the refusal');
      const refused = await initializeFresh(host.url);
      expect(refused.status).toBe(503);
      expect(Number(refused.headers['retry-after'])).toBeGreaterThanOrEqual(1);
      expect(JSON.parse(refused.text)).toMatchObject({ error: { data: { reason: 'unavailable' } } });
    }
    // Sessions of this host keep working; those of the other need no Redis either (the id names the host,
    // whose address this host learned while Redis was up).
    expect(await status(a.url, ids[0] as string)).toBe(200);
    expect(await status(b.url, ids[1] as string)).toBe(200);
    expect(await status(b.url, ids[2] as string)).toBe(200);

    // Back, empty: the hosts register their three sessions again; the cap holds, so each new one evicts one.
    await redis.restart();
    await until(async () => (await initializeFresh(a.url)).status === 200, 15_000, 'admissions again');
    expect(a.stderrText()).toContain('re-registering sessions');
    expect((await initializeFresh(b.url)).status).toBe(200);
    const { createClient } = await import('redis');
    const probe = createClient({ url: redis.url });
    await probe.connect();
    const namespaces = (await probe.sendCommand(['KEYS', '{mcpsb:*}:meta'])) as string[];
    expect(namespaces).toHaveLength(1);
    const namespace = /^\{mcpsb:(.*)\}:meta$/.exec(namespaces[0] as string)?.[1] as string;
    expect(await occupiedIn(probe, namespace)).toBeLessThanOrEqual(3);
    await probe.close();
    let evicted = 0;
    for (const id of ids) {
      const answer = await callFresh(a.url, id, 'echo', { text: 'x' });
      if (answer.status === 404) {
        evicted++;
        expect(JSON.parse(answer.text)).toMatchObject({ error: { data: { reason: 'evicted' } } });
      }
    }
    // Two admitted after the rebuild (one while polling, one more): two of the three re-registered went.
    expect(evicted).toBe(2);
  });

  it('returns the capacity of a host that dies within its liveness (5 s) and a sweep', async () => {
    const [a, b] = (await startHosts(shared.url, 2, ['--max-sessions', '2', '--evict', 'none'])) as [Host, Host];
    expect((await initializeFresh(a.url)).status).toBe(200);
    expect((await initializeFresh(a.url)).status).toBe(200);
    expect((await initializeFresh(b.url)).status).toBe(503);
    const killed = Date.now();
    a.kill('SIGKILL');
    await exitOf(a);
    await until(async () => (await initializeFresh(b.url)).status === 200, 10_000, 'the capacity back');
    const elapsed = Date.now() - killed;
    // Liveness 5 s, then the next sweep (every second) frees them.
    expect(elapsed).toBeLessThan(8_000);
    expect(elapsed).toBeGreaterThan(3_000);
  });
});
