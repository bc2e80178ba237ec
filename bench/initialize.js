/**
 * initialize: sessions created per second, with p50/p99 latency, at
 * concurrency 16 and 64, and the server's CPU time per session created.
 * Raw initialize POSTs (autocannon, in its own process) that never DELETE.
 * The broker runs with 2 handler threads at --max-sessions 1000 (so past the
 * first 1000 every initialize also evicts the oldest: its steady state under
 * a flood), and at --max-sessions 100000 (no eviction in the run: what
 * admission and the hop to a handler thread cost alone); best-effort at 1000;
 * plain-sdk, fastmcp and tmcp are unbounded.
 * A fresh server per system and repetition; the order of systems rotates.
 * Goal: broker >= 0.8x plain-sdk sessions/s, p99 <= 2x plain-sdk's.
 */
import { cell, fmt, QUICK, REPS, ratioCell, rotate, runBenchmark, summary } from './lib/common.js';
import { cpuSnapshot, otherCores, waitForQuiet } from './lib/cpu.js';
import { startLoad, startServer } from './lib/procs.js';

const SYSTEMS = [
  { key: 'plain-sdk', name: 'plain-sdk', options: {} },
  { key: 'broker', name: 'broker', options: { threads: 2, maxSessions: 1000 } },
  // The same broker with room for every session of the run: admission and the hop, without eviction.
  { key: 'broker (cap 100k)', name: 'broker', options: { threads: 2, maxSessions: 100_000 } },
  { key: 'best-effort', name: 'best-effort', options: { threads: 2, maxSessions: 1000 } },
  { key: 'fastmcp', name: 'fastmcp', options: {} },
  { key: 'tmcp', name: 'tmcp', options: {} },
];
const CONCURRENCY = [16, 64];
const DURATION_S = QUICK ? 1 : 3;
const BASELINE = 'plain-sdk';

await runBenchmark('initialize', async () => {
  const load = startLoad();
  const runs = [];
  // At most this much waiting, in all, for other work on the machine to calm down.
  const budget = { ms: QUICK ? 0 : 30_000 };
  try {
    for (let rep = 0; rep < REPS; rep++) {
      for (const system of rotate(SYSTEMS, rep)) {
        const server = await startServer(system.name, system.options);
        try {
          // Warm up the JIT of every thread, and the connections (the sessions stay: every system then holds some).
          await load.call('cannon', {
            url: server.url,
            kind: 'initialize',
            connections: 16,
            durationS: QUICK ? 0.5 : 1,
          });
          const pids = [server.pid, load.child.pid];
          await waitForQuiet(pids, { budget });
          for (const connections of CONCURRENCY) {
            const cpu0 = await server.call('cpu');
            const snap0 = cpuSnapshot(pids);
            const r = await load.call('cannon', {
              url: server.url,
              kind: 'initialize',
              connections,
              durationS: DURATION_S,
            });
            const snap1 = cpuSnapshot(pids);
            const cpu1 = await server.call('cpu');
            const run = {
              rep,
              system: system.key,
              connections,
              perSecond: r.rps,
              p50Ms: r.latencyMs.p50,
              p99Ms: r.latencyMs.p99,
              created: r.ok,
              non2xx: r.non2xx,
              errors: r.errors + r.timeouts,
              statusCodes: r.statusCodes,
              cpuMsPerSession: r.ok > 0 ? (cpu1.us - cpu0.us) / 1000 / r.ok : null,
              otherLoadCores: otherCores(snap0, snap1),
            };
            runs.push(run);
            console.log(
              `rep ${rep + 1}/${REPS} ${system.key.padEnd(17)} c=${connections}: ${fmt(r.rps)}/s p50 ${r.latencyMs.p50} ms p99 ${r.latencyMs.p99} ms` +
                ` cpu ${fmt(run.cpuMsPerSession, 2)} ms/session non2xx ${r.non2xx} errors ${run.errors} other load ${fmt(run.otherLoadCores, 2)} cores`,
            );
          }
          if (system.name === 'broker')
            console.log(`  broker sessions per thread: ${JSON.stringify(await server.call('byThread'))}`);
        } finally {
          await server.stop();
        }
      }
    }
  } finally {
    await load.stop();
  }

  const rows = [];
  for (const connections of CONCURRENCY) {
    for (const system of SYSTEMS) {
      const mine = runs.filter((r) => r.system === system.key && r.connections === connections);
      const ratio = (key) =>
        summary(
          mine.map((r) => {
            const base = runs.find((b) => b.system === BASELINE && b.rep === r.rep && b.connections === connections);
            return base?.[key] ? r[key] / base[key] : null;
          }),
        );
      rows.push([
        system.key,
        connections,
        cell(summary(mine.map((r) => r.perSecond)), 0),
        cell(summary(mine.map((r) => r.p50Ms)), 0),
        cell(summary(mine.map((r) => r.p99Ms)), 0),
        cell(summary(mine.map((r) => r.cpuMsPerSession)), 2),
        system.key === BASELINE ? '1.00x' : ratioCell(ratio('perSecond')),
        system.key === BASELINE ? '1.00x' : ratioCell(ratio('p99Ms')),
        String(mine.reduce((n, r) => n + r.non2xx + r.errors, 0)),
        cell(summary(mine.map((r) => r.otherLoadCores)), 2),
      ]);
    }
  }
  const goal = (connections) => {
    const pick = (system) => runs.filter((r) => r.system === system && r.connections === connections);
    const ratios = (key) =>
      summary(
        pick('broker').map((r) => {
          const base = pick(BASELINE).find((b) => b.rep === r.rep);
          return base?.[key] ? r[key] / base[key] : null;
        }),
      );
    return { connections, throughputRatio: ratios('perSecond'), p99Ratio: ratios('p99Ms') };
  };
  const goals = CONCURRENCY.map(goal).map((g) => ({
    ...g,
    throughputMet: g.throughputRatio.median !== null && g.throughputRatio.median >= 0.8,
    p99Met: g.p99Ratio.median !== null && g.p99Ratio.median <= 2,
  }));
  return {
    config: { durationS: DURATION_S, concurrency: CONCURRENCY, systems: SYSTEMS, baseline: BASELINE },
    runs,
    goals,
    tables: [
      {
        title: `initialize: sessions/s and latency (${DURATION_S} s per run, ${REPS} runs; median (min-max); ratios vs ${BASELINE} in the same run)`,
        columns: [
          'system',
          'conc.',
          'sessions/s',
          'p50 ms',
          'p99 ms',
          'server CPU ms/session',
          'x sessions/s',
          'x p99',
          'non-2xx+errors',
          'other load (cores)',
        ],
        rows,
        notes: goals.map(
          (g) =>
            `goal c=${g.connections}: broker >= 0.8x sessions/s: ${g.throughputMet ? 'met' : 'MISSED'} (${ratioCell(g.throughputRatio)}); p99 <= 2x: ${g.p99Met ? 'met' : 'MISSED'} (${ratioCell(g.p99Ratio)})`,
        ),
      },
    ],
  };
});
