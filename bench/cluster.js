/**
 * cluster: many processes under one host authority (ADR 20), measured beside
 * one process with threads and the plain SDK, in the same run.
 *
 *   plain-sdk        one process, one thread, unbounded Map
 *   broker t2        one process, 2 handler threads (`serve --threads 2`)
 *   broker w2        2 worker processes x 1 handler thread (`serve --workers 2 --threads 1`):
 *                    node:cluster hands connections round robin, so about half of the
 *                    requests land on the process that does not own their session
 *   broker w2 t0     2 worker processes, each serving on its main thread (`--threads 0`)
 *
 * For each: initialize/s at c=16 (cap 1000: past it every initialize also
 * evicts the oldest), with the host's live count sampled from /metrics every
 * 20 ms during the flood (0 over the cap, or the run says how many); echo and
 * sha (SHA-256 over 64 KiB, 50 times) tools/call at c=16 and c=64, each
 * connection with its session (and sha with 16 sessions shared by every
 * connection: see CALLS), req/s and p99; memory per live session (RSS of every process of
 * the server, 2,000 sessions). Then the added latency of a misrouted request:
 * a standalone authority (`broker`) and two processes under it on two ports,
 * one session on the first; echo at c=1 sent to its owner's port, then to the
 * other's (every request forwarded), p50 and p99.
 * Goals (2 cores): strict (0 over the cap) in every run; sha >= 1.6x
 * plain-sdk with 2 processes; a misrouted request adds < 0.3 ms at p50.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hopRows, MODULE, measureHop, occupied, startCli, stopCli } from './lib/cli.js';
import { cell, fmt, QUICK, REPS, ratioCell, rotate, runBenchmark, sleep, summary } from './lib/common.js';
import { cpuSnapshot, otherCores, waitForQuiet } from './lib/cpu.js';
import { startLoad, startServer } from './lib/procs.js';

const CAP = 1000;
const DURATION_S = QUICK ? 1 : 2;
const MEMORY_SESSIONS = QUICK ? 300 : 2000;
const MISROUTE_S = QUICK ? 1 : 3;

/** The process and every process below it (Linux /proc). */
function tree(root) {
  const parents = new Map();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      parents.set(Number(name), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
    } catch {}
  }
  const out = [root];
  for (let i = 0; i < out.length; i++) {
    for (const [pid, ppid] of parents) if (ppid === out[i]) out.push(pid);
  }
  return out;
}

function rssBytes(pids) {
  let kib = 0;
  for (const pid of pids) {
    try {
      kib += Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
    } catch {}
  }
  return kib * 1024;
}

const ALL_CONFIGS = [
  { key: 'plain-sdk', kind: 'host', system: 'plain-sdk', options: {} },
  { key: 'broker t2', kind: 'host', system: 'broker', options: { threads: 2 } },
  { key: 'broker w2', kind: 'cli', args: ['--workers', '2', '--threads', '1'] },
  // Processes instead of threads: each worker serves on its main thread (no thread hop, no watchdog).
  { key: 'broker w2 t0', kind: 'cli', args: ['--workers', '2', '--threads', '0'] },
];

/**
 * The calls: each connection with a session of its own, initialized on it (as a
 * client with a keep-alive connection does: under node:cluster its requests stay
 * on the process that owns the session), and, for sha, 16 sessions shared by
 * every connection round robin (about half the requests land on the process
 * that does not own their session: the worst case for many processes).
 */
const CALLS = [
  { tool: 'echo', connections: 16, kind: 'own' },
  { tool: 'echo', connections: 64, kind: 'own' },
  { tool: 'sha', connections: 16, kind: 'own' },
  { tool: 'sha', connections: 64, kind: 'own' },
  { tool: 'sha', connections: 16, kind: 'call' },
  { tool: 'sha', connections: 64, kind: 'call' },
];
const whatOf = (tool, kind) => (kind === 'own' ? tool : `${tool} shared`);

// BENCH_CLUSTER_ONLY=key,key: a subset (plain-sdk is needed for the ratios).
const ONLY = process.env.BENCH_CLUSTER_ONLY?.split(',');
const CONFIGS = ONLY ? ALL_CONFIGS.filter((c) => ONLY.includes(c.key)) : ALL_CONFIGS;

async function start(config, maxSessions) {
  if (config.kind === 'host') {
    const server = await startServer(config.system, { maxSessions, ...config.options });
    return {
      url: server.url,
      pids: () => [server.pid],
      stop: () => server.stop(),
      bounded: config.system === 'broker',
    };
  }
  const { child, line } = await startCli([
    'serve',
    MODULE,
    ...config.args,
    '--port',
    '0',
    '--max-sessions',
    String(maxSessions),
    '--quiet',
  ]);
  return { url: line, pids: () => tree(child.pid), stop: () => stopCli(child), bounded: true };
}

await runBenchmark('cluster', async () => {
  const load = startLoad();
  const runs = [];
  const memory = [];
  const misroutes = [];
  const budget = { ms: QUICK ? 0 : 45_000 };
  try {
    for (let rep = 0; rep < REPS; rep++) {
      for (const config of rotate(CONFIGS, rep)) {
        const server = await start(config, CAP);
        try {
          await load.call('cannon', { url: server.url, kind: 'initialize', connections: 16, durationS: 0.5 });
          await waitForQuiet(server.pids(), { budget });
          // initialize/s, with the host's live count sampled meanwhile.
          let sampling = server.bounded;
          let maxOccupied = 0;
          let samples = 0;
          const sampler = (async () => {
            while (sampling) {
              const n = await occupied(server.url).catch(() => null);
              if (n !== null) {
                maxOccupied = Math.max(maxOccupied, n);
                samples++;
              }
              await sleep(20);
            }
          })();
          const pids = [...server.pids(), load.child.pid];
          const snap0 = cpuSnapshot(pids);
          const init = await load.call('cannon', {
            url: server.url,
            kind: 'initialize',
            connections: 16,
            durationS: DURATION_S,
          });
          const snap1 = cpuSnapshot(pids);
          sampling = false;
          await sampler;
          runs.push({
            rep,
            key: config.key,
            what: 'initialize',
            connections: 16,
            perSecond: init.rps,
            p50Ms: init.latencyMs.p50,
            p99Ms: init.latencyMs.p99,
            non2xx: init.non2xx,
            errors: init.errors + init.timeouts,
            maxOccupied: server.bounded ? maxOccupied : null,
            overCap: server.bounded ? Math.max(0, maxOccupied - CAP) : null,
            samples,
            otherLoadCores: otherCores(snap0, snap1),
          });
          console.log(
            `rep ${rep + 1}/${REPS} ${config.key.padEnd(10)} initialize c=16: ${fmt(init.rps)}/s p99 ${init.latencyMs.p99} ms` +
              (server.bounded ? ` max occupied ${maxOccupied} of ${CAP} (${samples} samples)` : ''),
          );
          // The sessions the calls use, opened after the flood (which filled the cap: these evict its oldest).
          const { sessions } = await load.call('open', { url: server.url, count: 16, concurrency: 8 });
          for (const tool of ['echo', 'sha']) {
            await load.call('cannon', {
              url: server.url,
              kind: 'call',
              tool,
              sessions,
              connections: 16,
              durationS: 0.5,
            });
          }
          for (const { tool, connections, kind } of CALLS) {
            const a = cpuSnapshot(pids);
            const r = await load.call('cannon', {
              url: server.url,
              kind,
              tool,
              sessions,
              connections,
              durationS: DURATION_S,
            });
            const b = cpuSnapshot(pids);
            runs.push({
              rep,
              key: config.key,
              what: whatOf(tool, kind),
              connections,
              perSecond: r.rps,
              p50Ms: r.latencyMs.p50,
              // A connection's first requests (its initialize and initialized) are timed with its calls,
              // and each run starts with all of them at once: with a session per connection, p99 says
              // more about that start than about the calls.
              p99Ms: kind === 'own' ? null : r.latencyMs.p99,
              non2xx: r.non2xx,
              errors: r.errors + r.timeouts,
              otherLoadCores: otherCores(a, b),
            });
            console.log(
              `rep ${rep + 1}/${REPS} ${config.key.padEnd(12)} ${whatOf(tool, kind)} c=${connections}: ${fmt(r.rps)} req/s p50 ${r.latencyMs.p50} ms p99 ${r.latencyMs.p99} ms statuses ${JSON.stringify(r.statusCodes)}`,
            );
          }
        } finally {
          await server.stop();
        }
        // Memory per live session: a fresh server with room for all of them.
        const fresh = await start(config, 100_000);
        try {
          await load.call('open', { url: fresh.url, count: 16, concurrency: 8 });
          await sleep(500);
          const before = rssBytes(fresh.pids());
          await load.call('open', { url: fresh.url, count: MEMORY_SESSIONS, concurrency: 16 }, 300_000);
          await sleep(1000);
          const after = rssBytes(fresh.pids());
          memory.push({ rep, key: config.key, kibPerSession: (after - before) / 1024 / MEMORY_SESSIONS });
          console.log(
            `rep ${rep + 1}/${REPS} ${config.key.padEnd(10)} ${fmt((after - before) / 1024 / MEMORY_SESSIONS, 1)} KiB RSS per session`,
          );
        } finally {
          await fresh.stop();
        }
      }
      // A misrouted request: two processes under one standalone authority, on two ports.
      const dir = mkdtempSync(join(tmpdir(), 'mcpsb-bench-'));
      const socket = join(dir, 'authority.sock');
      const authority = await startCli(['broker', '--socket', socket, '--rebuild-grace', '0ms', '--quiet']);
      const serveUnder = () =>
        startCli(['serve', MODULE, '--authority', socket, '--port', '0', '--threads', '1', '--quiet']);
      const owner = await serveUnder();
      const other = await serveUnder();
      try {
        const { sessions } = await load.call('open', { url: owner.line, count: 1, concurrency: 1 });
        const result = await measureHop(owner.line, other.line, sessions[0], MISROUTE_S);
        misroutes.push({ rep, ...result });
        console.log(
          `rep ${rep + 1}/${REPS} misrouted echo c=1: owner p50 ${fmt(result.owner.p50Ms, 3)} ms, forwarded p50 ${fmt(result.forwarded.p50Ms, 3)} ms (p99 ${fmt(result.owner.p99Ms, 3)} / ${fmt(result.forwarded.p99Ms, 3)} ms)`,
        );
      } finally {
        await Promise.all([stopCli(owner.child), stopCli(other.child)]);
        await stopCli(authority.child);
        rmSync(dir, { recursive: true, force: true });
      }
    }
  } finally {
    await load.stop();
  }

  const base = (r) =>
    runs.find((b) => b.key === 'plain-sdk' && b.rep === r.rep && b.what === r.what && b.connections === r.connections);
  const rows = [];
  for (const what of ['initialize', 'echo', 'sha', 'sha shared']) {
    for (const connections of what === 'initialize' ? [16] : [16, 64]) {
      for (const { key } of CONFIGS) {
        const mine = runs.filter((r) => r.key === key && r.what === what && r.connections === connections);
        if (mine.length === 0) continue;
        rows.push([
          what,
          key,
          connections,
          cell(summary(mine.map((r) => r.perSecond)), 0),
          cell(summary(mine.map((r) => r.p99Ms)), 0),
          key === 'plain-sdk'
            ? '1.00x'
            : ratioCell(summary(mine.map((r) => (base(r)?.perSecond ? r.perSecond / base(r).perSecond : null)))),
          key === 'plain-sdk'
            ? '1.00x'
            : ratioCell(summary(mine.map((r) => (base(r)?.p99Ms ? r.p99Ms / base(r).p99Ms : null)))),
          what === 'initialize' && key !== 'plain-sdk' ? String(Math.max(...mine.map((r) => r.overCap ?? 0))) : '',
          String(mine.reduce((n, r) => n + r.non2xx + r.errors, 0)),
          cell(summary(mine.map((r) => r.otherLoadCores)), 2),
        ]);
      }
    }
  }
  const memRows = CONFIGS.map(({ key }) => {
    const mine = memory.filter((m) => m.key === key);
    return [key, cell(summary(mine.map((m) => m.kibPerSession)), 1)];
  });
  const misRows = hopRows(misroutes, 'forwarded');
  const shaW2 = summary(
    runs
      .filter((r) => r.key === 'broker w2' && r.what === 'sha')
      .map((r) => (base(r)?.perSecond ? r.perSecond / base(r).perSecond : null)),
  );
  const overCap = Math.max(0, ...runs.map((r) => r.overCap ?? 0));
  const addedP50 = summary(misroutes.map((m) => m.addedP50Ms));
  return {
    runs,
    memory,
    misroutes,
    tables: [
      {
        title: `cluster: initialize, echo and sha (${DURATION_S} s per run, ${REPS} runs; median (min-max); ratios vs plain-sdk, same run)`,
        columns: [
          'what',
          'system',
          'conc.',
          'per s',
          'p99 ms',
          'x per s',
          'x p99',
          'over cap',
          'non-2xx+errors',
          'other load (cores)',
        ],
        rows,
      },
      {
        title: `cluster: RSS per live session (every process of the server, ${MEMORY_SESSIONS} sessions)`,
        columns: ['system', 'KiB per session'],
        rows: memRows,
      },
      {
        title: `cluster: a misrouted request (echo, c=1, ${MISROUTE_S} s; two processes under one standalone authority)`,
        columns: ['sent to', 'p50 ms', 'p99 ms', 'req/s'],
        rows: misRows,
      },
    ],
    goals: [
      { goal: 'strict: 0 over the cap in every run', met: overCap === 0, value: `${overCap} over` },
      {
        goal: 'sha >= 1.6x plain-sdk with 2 processes (c=16 and 64)',
        met: shaW2.median !== null && shaW2.min >= 1.6,
        value: ratioCell(shaW2),
      },
      {
        goal: 'a misrouted request adds < 0.3 ms at p50',
        met: addedP50.median !== null && addedP50.median < 0.3,
        value: `${cell(addedP50, 3)} ms`,
      },
    ],
  };
});
