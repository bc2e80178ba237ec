/**
 * hosts: the Redis store (many hosts, ADR 21) beside the memory store and a
 * host authority (the store of `--workers` and `broker`), in the same run,
 * each behind one server process with one handler thread:
 *
 *   memory      `serve --threads 1` (the default store, in the process)
 *   authority   `broker --socket` + `serve --authority --threads 1` (a unix socket round trip per decision)
 *   redis       a redis-server (127.0.0.1) + `serve --store --threads 1` (a script round trip per decision)
 *
 * For each: initialize/s at c=16 past the cap (1000: every initialize also
 * evicts the oldest), with the live count sampled from /metrics (0 over the
 * cap); admission latency, initialize at c=1 (p50, p99); the request path,
 * echo at c=16 with a session per connection (req/s, p50), and, for redis,
 * the Redis round trips (scripts and publishes) the server made per echo
 * (INFO commandstats before and after the run: the goal is no round trip per
 * request, only the batched activity reports, the heartbeat and the sweep,
 * each once a second, and the 16 sessions' admissions). Then a cross-host
 * hop: two redis hosts, one session on the first, echo at c=1 sent to its
 * owner, then to the other (every request forwarded over HTTP), p50.
 * Goals (2 cores): strict (0 over the cap); echo with redis >= 0.9x memory;
 * < 0.05 Redis round trips per request; a cross-host hop adds < 2 ms at p50.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createClient } from 'redis';
import { freePort, hopRows, MODULE, measureHop, occupied, startCli, stopCli } from './lib/cli.js';
import { cell, fmt, QUICK, REPS, ratioCell, rotate, runBenchmark, sleep, summary } from './lib/common.js';
import { startLoad } from './lib/procs.js';

const CAP = 1000;
const DURATION_S = QUICK ? 1 : 3;
const HOP_S = QUICK ? 1 : 3;

if (spawnSync('redis-server', ['--version']).status !== 0) {
  console.error('hosts: needs redis-server (apt-get install -y redis-server)');
  process.exit(1);
}

async function startRedis() {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'mcpsb-bench-redis-'));
  const child = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  await new Promise((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (chunk) => {
      out += chunk;
      if (out.includes('Ready to accept connections')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`redis-server exited with ${code}`)));
  });
  const client = createClient({ url: `redis://127.0.0.1:${port}` });
  await client.connect();
  return {
    url: `redis://127.0.0.1:${port}`,
    pid: child.pid,
    /**
     * Round trips the servers made to Redis so far: script calls (EVALSHA, EVAL) and publishes
     * (INFO commandstats; the commands a script runs inside count under their own names, so they are
     * left out: one script is one round trip).
     */
    async commands() {
      const text = await client.sendCommand(['INFO', 'commandstats']);
      let total = 0;
      for (const [, name, calls] of String(text).matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) {
        if (name === 'evalsha' || name === 'eval' || name === 'spublish') total += Number(calls);
      }
      return total;
    },
    async stop() {
      await client.close().catch(() => undefined);
      child.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

const SERVE = ['--port', '0', '--threads', '1', '--quiet', '--max-sessions', String(CAP)];

/** A host of the example server on the Redis, its private route on a free port. */
async function serveOn(redis) {
  return startCli([
    'serve',
    MODULE,
    '--store',
    redis.url,
    '--advertise',
    `http://127.0.0.1:${await freePort()}`,
    ...SERVE,
  ]);
}

/** One server of the given store, and what else it needs. */
async function start(key) {
  if (key === 'memory') {
    const { child, line } = await startCli(['serve', MODULE, ...SERVE]);
    return { url: line, stop: () => stopCli(child) };
  }
  if (key === 'authority') {
    const dir = mkdtempSync(join(tmpdir(), 'mcpsb-bench-'));
    const socket = join(dir, 'authority.sock');
    const authority = await startCli([
      'broker',
      '--socket',
      socket,
      '--rebuild-grace',
      '0ms',
      '--max-sessions',
      String(CAP),
      '--quiet',
    ]);
    const { child, line } = await startCli([
      'serve',
      MODULE,
      '--authority',
      socket,
      '--port',
      '0',
      '--threads',
      '1',
      '--quiet',
    ]);
    return {
      url: line,
      stop: async () => {
        await stopCli(child);
        await stopCli(authority.child);
        rmSync(dir, { recursive: true, force: true });
      },
    };
  }
  const redis = await startRedis();
  const { child, line } = await serveOn(redis);
  return {
    url: line,
    redis,
    stop: async () => {
      await stopCli(child);
      await redis.stop();
    },
  };
}

const KEYS = ['memory', 'authority', 'redis'];

await runBenchmark('hosts', async () => {
  const load = startLoad();
  const runs = [];
  const hops = [];
  try {
    for (let rep = 0; rep < REPS; rep++) {
      for (const key of rotate(KEYS, rep)) {
        const server = await start(key);
        try {
          await load.call('cannon', { url: server.url, kind: 'initialize', connections: 16, durationS: 0.5 });
          let sampling = true;
          let maxOccupied = 0;
          const sampler = (async () => {
            while (sampling) {
              const n = await occupied(server.url).catch(() => null);
              if (n !== null) maxOccupied = Math.max(maxOccupied, n);
              await sleep(20);
            }
          })();
          const init = await load.call('cannon', {
            url: server.url,
            kind: 'initialize',
            connections: 16,
            durationS: DURATION_S,
          });
          sampling = false;
          await sampler;
          const one = await load.call('cannon', {
            url: server.url,
            kind: 'initialize',
            connections: 1,
            durationS: DURATION_S,
          });
          const { sessions } = await load.call('open', { url: server.url, count: 16, concurrency: 8 });
          await load.call('cannon', {
            url: server.url,
            kind: 'own',
            tool: 'echo',
            sessions,
            connections: 16,
            durationS: 0.5,
          });
          const before = server.redis ? await server.redis.commands() : 0;
          const t0 = performance.now();
          const echo = await load.call('cannon', {
            url: server.url,
            kind: 'own',
            tool: 'echo',
            sessions,
            connections: 16,
            durationS: DURATION_S,
          });
          const seconds = (performance.now() - t0) / 1000;
          const after = server.redis ? await server.redis.commands() : 0;
          const requests = echo.rps * DURATION_S;
          const run = {
            rep,
            key,
            initPerSecond: init.rps,
            initP99Ms: init.latencyMs.p99,
            overCap: Math.max(0, maxOccupied - CAP),
            maxOccupied,
            admitP50Ms: one.latencyMs.p50,
            admitP99Ms: one.latencyMs.p99,
            admitPerSecond: one.rps,
            echoPerSecond: echo.rps,
            echoP50Ms: echo.latencyMs.p50,
            non2xx: init.non2xx + echo.non2xx,
            errors: init.errors + echo.errors + init.timeouts + echo.timeouts,
            redisCommands: server.redis ? after - before : null,
            redisCommandsPerRequest: server.redis ? (after - before) / Math.max(1, requests) : null,
            redisCommandsPerSecond: server.redis ? (after - before) / seconds : null,
          };
          runs.push(run);
          console.log(
            `rep ${rep + 1}/${REPS} ${key.padEnd(9)} initialize c=16 ${fmt(init.rps)}/s (max occupied ${maxOccupied} of ${CAP}), c=1 p50 ${one.latencyMs.p50} ms; echo c=16 ${fmt(echo.rps)}/s p50 ${echo.latencyMs.p50} ms` +
              (server.redis
                ? `; Redis round trips during echo: ${after - before} (${fmt(run.redisCommandsPerRequest, 4)} per request)`
                : ''),
          );
        } finally {
          await server.stop();
        }
      }
      // A cross-host hop: two hosts on one Redis, a session on the first.
      const redis = await startRedis();
      const hosts = [];
      try {
        for (let i = 0; i < 2; i++) {
          hosts.push(await serveOn(redis));
        }
        const [owner, other] = hosts;
        await sleep(1_500); // every host has learned the others' addresses (heartbeat)
        const { sessions } = await load.call('open', { url: owner.line, count: 1, concurrency: 1 });
        const result = await measureHop(owner.line, other.line, sessions[0], HOP_S);
        hops.push({ rep, ...result });
        console.log(
          `rep ${rep + 1}/${REPS} cross-host echo c=1: owner p50 ${fmt(result.owner.p50Ms, 3)} ms, forwarded p50 ${fmt(result.forwarded.p50Ms, 3)} ms`,
        );
      } finally {
        await Promise.all(hosts.map((h) => stopCli(h.child)));
        await redis.stop();
      }
    }
  } finally {
    await load.stop();
  }

  const base = (r) => runs.find((b) => b.key === 'memory' && b.rep === r.rep);
  const ratio = (r, field) => (base(r)?.[field] ? r[field] / base(r)[field] : null);
  const rows = KEYS.map((key) => {
    const mine = runs.filter((r) => r.key === key);
    return [
      key,
      cell(summary(mine.map((r) => r.initPerSecond)), 0),
      key === 'memory' ? '1.00x' : ratioCell(summary(mine.map((r) => ratio(r, 'initPerSecond')))),
      String(Math.max(...mine.map((r) => r.overCap))),
      cell(summary(mine.map((r) => r.admitP50Ms)), 1),
      cell(summary(mine.map((r) => r.admitP99Ms)), 1),
      cell(summary(mine.map((r) => r.echoPerSecond)), 0),
      key === 'memory' ? '1.00x' : ratioCell(summary(mine.map((r) => ratio(r, 'echoPerSecond')))),
      key === 'redis' ? cell(summary(mine.map((r) => r.redisCommandsPerRequest)), 4) : '',
      key === 'redis' ? cell(summary(mine.map((r) => r.redisCommandsPerSecond)), 1) : '',
      String(mine.reduce((n, r) => n + r.non2xx + r.errors, 0)),
    ];
  });
  const overCap = Math.max(0, ...runs.map((r) => r.overCap));
  const echoRatio = summary(runs.filter((r) => r.key === 'redis').map((r) => ratio(r, 'echoPerSecond')));
  const perRequest = summary(runs.filter((r) => r.key === 'redis').map((r) => r.redisCommandsPerRequest));
  const added = summary(hops.map((h) => h.addedP50Ms));
  return {
    runs,
    hops,
    tables: [
      {
        title: `hosts: admission and the request path by store (${DURATION_S} s per run, ${REPS} runs; median (min-max); ratios vs memory, same run)`,
        columns: [
          'store',
          'initialize/s c=16 (evicting)',
          'x',
          'over cap',
          'admit p50 ms c=1',
          'admit p99 ms c=1',
          'echo/s c=16',
          'x',
          'Redis round trips per echo',
          'Redis round trips/s',
          'non-2xx+errors',
        ],
        rows,
      },
      {
        title: `hosts: a cross-host hop (echo, c=1, ${HOP_S} s; two hosts on one Redis, all on this machine)`,
        columns: ['sent to', 'p50 ms', 'p99 ms', 'req/s'],
        rows: hopRows(hops, 'forwarded to the owner host'),
      },
    ],
    goals: [
      { goal: 'strict: 0 over the cap in every run', met: overCap === 0, value: `${overCap} over` },
      {
        goal: 'echo with the Redis store >= 0.9x memory (owned sessions: no Redis call per request)',
        met: echoRatio.median !== null && echoRatio.min >= 0.9,
        value: ratioCell(echoRatio),
      },
      {
        goal: '< 0.05 Redis round trips per request (only batched reports, heartbeat, sweep)',
        met: perRequest.median !== null && perRequest.max < 0.05,
        value: cell(perRequest, 4),
      },
      {
        goal: 'a cross-host hop adds < 2 ms at p50',
        met: added.median !== null && added.median < 2,
        value: `${cell(added, 3)} ms`,
      },
    ],
  };
});
