/**
 * flood-memory: N raw initialize POSTs that never DELETE (N = 1k, 10k, 50k,
 * cumulative on one server), then the server's RSS and JS heap after a full
 * GC, and the heap per live session. What an unbounded server pays for
 * clients that never say goodbye, and whether the broker's cap bounds it.
 * Heap is the main thread's plus, for the broker, its handler threads'
 * (reported by the benchmark's server module from each thread); the broker
 * worker's own heap is not included (it holds fixed-size typed arrays and
 * per-slot metadata for at most max-sessions). RSS is the whole process.
 * Goal: broker RSS at 50k within 10% of RSS at 10k; plain-sdk grows linearly.
 * fastmcp takes about 1 s per initialize (see README), so it is flooded to
 * 1k only, at a higher concurrency.
 */
import { cell, fmt, QUICK, runBenchmark, summary } from './lib/common.js';
import { startLoad, startServer } from './lib/procs.js';

// BENCH_FLOOD_STEPS, BENCH_FLOOD_MAX_SESSIONS and BENCH_FLOOD_SYSTEMS change the run, e.g. the broker
// alone at a large cap: BENCH_FLOOD_SYSTEMS=broker BENCH_FLOOD_MAX_SESSIONS=100000 BENCH_FLOOD_STEPS=100000,150000
const STEPS = process.env.BENCH_FLOOD_STEPS
  ? process.env.BENCH_FLOOD_STEPS.split(',').map(Number)
  : QUICK
    ? [200, 1000, 2000]
    : [1_000, 10_000, 50_000];
const BROKER_CAP = Number(process.env.BENCH_FLOOD_MAX_SESSIONS ?? 1000);
const ONLY = process.env.BENCH_FLOOD_SYSTEMS?.split(',');
const SYSTEMS = [
  { name: 'plain-sdk', options: {}, steps: STEPS, connections: 32 },
  { name: 'broker', options: { threads: 2, maxSessions: BROKER_CAP }, steps: STEPS, connections: 32 },
  { name: 'tmcp', options: {}, steps: STEPS, connections: 32 },
  { name: 'fastmcp', options: {}, steps: [STEPS[0]], connections: 256 },
].filter((system) => !ONLY || ONLY.includes(system.name));
/** Heap limit for every thread of a server (V8 flags are per process): a large cap holds GiBs of sessions. */
const HEAP_MB = BROKER_CAP > 10_000 ? 8192 : undefined;
// Memory is far less noisy than throughput: one run unless BENCH_FLOOD_REPS says otherwise.
const RUNS = Math.max(1, Number(process.env.BENCH_FLOOD_REPS ?? 1));
const MB = 2 ** 20;

// A run at another cap is kept apart from the default run's results.
await runBenchmark(
  process.env.BENCH_FLOOD_MAX_SESSIONS ? `flood-memory-cap${BROKER_CAP}` : 'flood-memory',
  async () => {
    const load = startLoad();
    const runs = [];
    try {
      for (let run = 0; run < RUNS; run++) {
        for (const system of SYSTEMS) {
          const server = await startServer(system.name, system.options, { heapMb: HEAP_MB });
          try {
            const base = await server.call('mem');
            runs.push({ run, system: system.name, n: 0, ...base, sent: 0 });
            console.log(
              `${system.name}: start rss ${fmt(base.rss / MB, 1)} MiB heap ${fmt(base.heapUsed / MB, 1)} MiB`,
            );
            let sent = 0;
            for (const n of system.steps) {
              const t0 = performance.now();
              const r = await load.call(
                'cannon',
                {
                  url: server.url,
                  kind: 'initialize',
                  connections: system.connections,
                  amount: n - sent,
                  maxDurationS: 240,
                },
                300_000,
              );
              const seconds = (performance.now() - t0) / 1000;
              sent = n;
              const mem = await server.call('mem', {}, 60_000);
              const perLive = mem.live > 0 ? (mem.heapUsed - base.heapUsed) / mem.live : null;
              runs.push({
                run,
                system: system.name,
                n,
                ...mem,
                perLiveBytes: perLive,
                ok: r.ok,
                non2xx: r.non2xx,
                errors: r.errors + r.timeouts,
                stoppedByGuard: r.stoppedByGuard,
                seconds,
              });
              console.log(
                `${system.name}: N=${n} live ${mem.live} rss ${fmt(mem.rss / MB, 1)} MiB heap ${fmt(mem.heapUsed / MB, 1)} MiB` +
                  ` (${fmt(perLive ?? Number.NaN, 0)} B/live session) ok ${r.ok} non2xx ${r.non2xx} errors ${r.errors + r.timeouts} in ${fmt(seconds, 1)} s`,
              );
            }
          } finally {
            await server.stop();
          }
        }
      }
    } finally {
      await load.stop();
    }

    const rows = [];
    for (const system of SYSTEMS) {
      for (const n of system.steps) {
        const mine = runs.filter((r) => r.system === system.name && r.n === n);
        rows.push([
          system.name,
          fmt(n),
          cell(summary(mine.map((r) => r.live)), 0),
          cell(summary(mine.map((r) => r.rss / MB)), 0, ' MiB'),
          cell(summary(mine.map((r) => r.heapUsed / MB)), 1, ' MiB'),
          cell(summary(mine.map((r) => r.threadHeapUsed / MB)), 1, ' MiB'),
          cell(summary(mine.map((r) => r.perLiveBytes / 1024)), 1, ' KiB'),
          String(mine.reduce((k, r) => k + r.non2xx + r.errors, 0)),
        ]);
      }
    }
    const at = (system, n, key) => summary(runs.filter((r) => r.system === system && r.n === n).map((r) => r[key]));
    const [mid, top] = STEPS.slice(-2);
    const brokerGrowth = summary(
      runs
        .filter((r) => r.system === 'broker' && r.n === top)
        .map((r) => r.rss / runs.find((m) => m.system === 'broker' && m.n === mid && m.run === r.run).rss - 1),
    );
    const plainGrowth = summary(
      runs
        .filter((r) => r.system === 'plain-sdk' && r.n === top)
        .map((r) => r.heapUsed / runs.find((m) => m.system === 'plain-sdk' && m.n === mid && m.run === r.run).heapUsed),
    );
    const goals = {
      brokerRssGrowthMidToTop: brokerGrowth,
      brokerPlateau: brokerGrowth.median !== null && brokerGrowth.median <= 0.1,
      plainHeapRatioTopToMid: plainGrowth,
      plainLinear: plainGrowth.median !== null && plainGrowth.median > (top / mid) * 0.7,
    };
    return {
      config: { steps: STEPS, systems: SYSTEMS, runs: RUNS, brokerMaxSessions: BROKER_CAP },
      runs,
      goals,
      tables: [
        {
          title: `flood-memory: cumulative raw initializes, never deleted (${RUNS} run${RUNS > 1 ? 's' : ''}); heap after full GC`,
          columns: [
            'system',
            'N sent',
            'live sessions',
            'RSS',
            'JS heap',
            'of it in handler threads',
            'heap growth per live session',
            'non-2xx+errors',
          ],
          rows,
          notes: [
            `goal: broker RSS at ${fmt(top)} within 10% of RSS at ${fmt(mid)}: ${goals.brokerPlateau ? 'met' : 'MISSED'} (RSS ${fmt(at('broker', mid, 'rss').median / MB, 0)} -> ${fmt(at('broker', top, 'rss').median / MB, 0)} MiB, ${fmt(brokerGrowth.median * 100, 1)}%; heap ${fmt(at('broker', mid, 'heapUsed').median / MB, 1)} -> ${fmt(at('broker', top, 'heapUsed').median / MB, 1)} MiB)`,
            `plain-sdk heap ${fmt(top)}/${fmt(mid)} = ${cell(plainGrowth, 2)}x (linear would be ${fmt(top / mid, 1)}x after the fixed base)`,
          ],
        },
      ],
    };
  },
);
