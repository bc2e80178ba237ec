/**
 * initialize-caps: sessions created per second by the broker with the table
 * full, at a small and a large cap, in the same run: does admission at
 * capacity cost more when the table is larger? Each server (2 handler
 * threads, the default 30 min idle timeout, so the expiry index is on) is
 * first flooded with raw initialize POSTs that never DELETE until its table is
 * full and the flood has gone past the cap (so every further initialize
 * evicts, or with `--evict none` is refused), then measured with autocannon
 * at concurrency 16 and 64, 3 s per run. A fresh server per cap, eviction
 * policy and repetition; the order of caps rotates.
 *
 * Environment: BENCH_CAPS (default "1000,100000"), BENCH_CAPS_EVICT (default
 * "oldest,idlest"; "none" measures refusals per second instead), BENCH_REPS
 * (each large table takes about a minute to fill).
 * Goal: sessions/s at the large cap within 15% of the rate at the small one
 * (ratio >= 0.85), per policy and concurrency.
 */
import { cell, fmt, QUICK, REPS, ratioCell, rotate, runBenchmark, summary } from './lib/common.js';
import { cpuSnapshot, otherCores, waitForQuiet } from './lib/cpu.js';
import { startLoad, startServer } from './lib/procs.js';

const CAPS = (process.env.BENCH_CAPS ?? (QUICK ? '1000,10000' : '1000,100000')).split(',').map(Number);
const POLICIES = (process.env.BENCH_CAPS_EVICT ?? 'oldest,idlest').split(',');
const CONCURRENCY = [16, 64];
const DURATION_S = QUICK ? 1 : 3;
/** Initializes sent past the cap before measuring: every slot taken, and the JIT warm on the evicting path. */
const PAST_CAP = QUICK ? 500 : 2000;
/** Heap limit for every thread of the server (V8 flags are per process): 100,000 SDK sessions take about 4 GiB. */
const HEAP_MB = 8192;
const MB = 2 ** 20;

await runBenchmark('initialize-caps', async () => {
  const load = startLoad();
  const runs = [];
  const fills = [];
  const budget = { ms: QUICK ? 0 : 20_000 };
  try {
    for (let rep = 0; rep < REPS; rep++) {
      for (const evict of POLICIES) {
        for (const cap of rotate(CAPS, rep)) {
          const server = await startServer('broker', { threads: 2, maxSessions: cap, evict }, { heapMb: HEAP_MB });
          try {
            const t0 = performance.now();
            const fill = await load.call(
              'cannon',
              { url: server.url, kind: 'initialize', connections: 64, amount: cap + PAST_CAP, maxDurationS: 400 },
              450_000,
            );
            const fillS = (performance.now() - t0) / 1000;
            const stats = await server.call('stats');
            fills.push({ rep, evict, cap, seconds: fillS, ok: fill.ok, non2xx: fill.non2xx, occupied: stats.occupied });
            console.log(
              `rep ${rep + 1}/${REPS} evict ${evict} cap ${fmt(cap)}: filled with ${fmt(fill.ok)} sessions in ${fmt(fillS, 1)} s, occupied ${fmt(stats.occupied)}`,
            );
            if (stats.occupied < cap) throw new Error(`the table is not full (${stats.occupied} of ${cap})`);
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
              // With eviction off every initialize at a full table is refused: what is measured is refusals.
              const counted = evict === 'none' ? r.non2xx : r.ok;
              const run = {
                rep,
                evict,
                cap,
                connections,
                perSecond: counted / DURATION_S,
                p50Ms: r.latencyMs.p50,
                p99Ms: r.latencyMs.p99,
                created: r.ok,
                non2xx: r.non2xx,
                errors: r.errors + r.timeouts,
                cpuMsPerAnswer: counted > 0 ? (cpu1.us - cpu0.us) / 1000 / counted : null,
                otherLoadCores: otherCores(snap0, snap1),
              };
              runs.push(run);
              console.log(
                `  c=${connections}: ${fmt(run.perSecond)}/s ${evict === 'none' ? 'refused' : 'created'} p50 ${r.latencyMs.p50} ms p99 ${r.latencyMs.p99} ms` +
                  ` cpu ${fmt(run.cpuMsPerAnswer, 2)} ms each, non2xx ${r.non2xx} errors ${run.errors} other load ${fmt(run.otherLoadCores, 2)} cores`,
              );
            }
            const mem = await server.call('mem', {}, 60_000);
            fills[fills.length - 1].rssMiB = mem.rss / MB;
          } finally {
            await server.stop();
          }
        }
      }
    }
  } finally {
    await load.stop();
  }

  const small = Math.min(...CAPS);
  const rows = [];
  const goals = [];
  for (const evict of POLICIES) {
    for (const connections of CONCURRENCY) {
      for (const cap of CAPS) {
        const mine = runs.filter((r) => r.evict === evict && r.cap === cap && r.connections === connections);
        const ratio = summary(
          mine.map((r) => {
            const base = runs.find(
              (b) => b.evict === evict && b.cap === small && b.rep === r.rep && b.connections === connections,
            );
            return base?.perSecond ? r.perSecond / base.perSecond : null;
          }),
        );
        const filled = fills.filter((f) => f.evict === evict && f.cap === cap);
        rows.push([
          evict,
          connections,
          fmt(cap),
          cell(summary(mine.map((r) => r.perSecond)), 0),
          cell(summary(mine.map((r) => r.p50Ms)), 0),
          cell(summary(mine.map((r) => r.p99Ms)), 0),
          cell(summary(mine.map((r) => r.cpuMsPerAnswer)), 2),
          cap === small ? '1.00x' : ratioCell(ratio),
          String(mine.reduce((n, r) => n + r.errors + (evict === 'none' ? r.created : r.non2xx), 0)),
          cell(summary(filled.map((f) => f.seconds)), 1),
          cell(summary(filled.map((f) => f.rssMiB)), 0),
          cell(summary(mine.map((r) => r.otherLoadCores)), 2),
        ]);
        if (cap !== small)
          goals.push({ evict, connections, cap, ratio, met: ratio.median !== null && ratio.median >= 0.85 });
      }
    }
  }
  return {
    config: {
      caps: CAPS,
      policies: POLICIES,
      reps: REPS,
      durationS: DURATION_S,
      concurrency: CONCURRENCY,
      pastCap: PAST_CAP,
    },
    runs,
    fills,
    goals,
    tables: [
      {
        title: `initialize-caps: broker with a full table, sessions/s (refusals/s with evict none) at each cap (${DURATION_S} s per run, ${REPS} runs; median (min-max); ratios vs cap ${fmt(small)} in the same repetition)`,
        columns: [
          'evict',
          'conc.',
          'cap',
          'per second',
          'p50 ms',
          'p99 ms',
          'server CPU ms each',
          `x cap ${fmt(small)}`,
          'other answers+errors',
          'fill s',
          'RSS MiB',
          'other load (cores)',
        ],
        rows,
        notes: goals.map(
          (g) =>
            `goal: evict ${g.evict} c=${g.connections}: cap ${fmt(g.cap)} >= 0.85x cap ${fmt(small)}: ${g.met ? 'met' : 'MISSED'} (${ratioCell(g.ratio)})`,
        ),
      },
    ],
  };
});
