/**
 * lockout: one client sends 1000 raw initializes and never deletes; then a
 * fresh client tries to start a session, retrying once a second for a
 * bounded window. Reports whether and how fast the fresh client gets a
 * session. sdk-example (cap 1000, 503 "Too many open sessions") can only
 * admit it once a session has been idle for 30 minutes and its 60 s sweep
 * has run: that is read from its code, not waited for. The broker runs at
 * --max-sessions 1000 with eviction of the oldest (the default) and, for
 * contrast, with eviction off (--evict none: 503 until a session expires).
 */
import { cell, fmt, QUICK, REPS, runBenchmark, summary } from './lib/common.js';
import { startLoad, startServer } from './lib/procs.js';

const FLOOD = 1000;
const WINDOW_MS = QUICK ? 2000 : 5000;
const RUNS = Math.min(REPS, 2);
const SYSTEMS = [
  { name: 'broker', label: 'broker (evict oldest)', options: { threads: 2, maxSessions: 1000 } },
  { name: 'broker', label: 'broker (evict none)', options: { threads: 2, maxSessions: 1000, evict: 'none' } },
  { name: 'sdk-example', label: 'sdk-example', options: {} },
  { name: 'plain-sdk', label: 'plain-sdk', options: {} },
  { name: 'best-effort', label: 'best-effort', options: { threads: 2, maxSessions: 1000 } },
  { name: 'fastmcp', label: 'fastmcp', options: {}, connections: 256 },
  { name: 'tmcp', label: 'tmcp', options: {} },
];

await runBenchmark('lockout', async () => {
  const load = startLoad();
  const runs = [];
  try {
    for (let rep = 0; rep < RUNS; rep++) {
      for (const system of SYSTEMS) {
        const server = await startServer(system.name, system.options);
        try {
          const flood = await load.call(
            'cannon',
            {
              url: server.url,
              kind: 'initialize',
              connections: system.connections ?? 16,
              amount: FLOOD,
              maxDurationS: 60,
            },
            90_000,
          );
          const liveBefore = await server.call('live');
          const fresh = await load.call(
            'fresh',
            { url: server.url, windowMs: WINDOW_MS, intervalMs: 1000 },
            WINDOW_MS + 30_000,
          );
          const run = {
            rep,
            label: system.label,
            floodStatuses: flood.statusCodes,
            liveBefore,
            liveAfter: await server.call('live'),
            admitted: fresh.admitted,
            firstOkAtMs: fresh.firstOkAtMs ?? null,
            firstOkLatencyMs: fresh.firstOkLatencyMs ?? null,
            attempts: fresh.attempts,
          };
          runs.push(run);
          const last = fresh.attempts.at(-1);
          console.log(
            `run ${rep + 1}/${RUNS} ${system.label.padEnd(22)}: flood ${JSON.stringify(flood.statusCodes)}, live ${liveBefore};` +
              ` fresh client ${fresh.admitted ? `admitted after ${fmt(fresh.firstOkAtMs, 0)} ms (request ${fmt(fresh.firstOkLatencyMs, 1)} ms)` : `refused ${fresh.attempts.length}x (${last.status}, Retry-After ${last.retryAfter ?? '-'}) for ${WINDOW_MS} ms`}`,
          );
        } finally {
          await server.stop();
        }
      }
    }
  } finally {
    await load.stop();
  }
  const byCode = {
    'sdk-example': 'after >= 30 min idle + up to 60 s sweep (by its code)',
    'broker (evict none)': 'after the idle timeout (default 30 min) frees a slot',
  };
  const rows = SYSTEMS.map(({ label }) => {
    const mine = runs.filter((r) => r.label === label);
    const admitted = mine.filter((r) => r.admitted);
    const refusedStatuses = [
      ...new Set(mine.flatMap((r) => r.attempts.filter((a) => a.status !== 200).map((a) => a.status))),
    ];
    return [
      label,
      cell(summary(mine.map((r) => r.liveBefore)), 0),
      `${admitted.length}/${mine.length}`,
      admitted.length
        ? cell(summary(admitted.map((r) => r.firstOkLatencyMs)), 1, ' ms')
        : `no (within ${WINDOW_MS / 1000} s)`,
      refusedStatuses.length ? refusedStatuses.join(', ') : '-',
      admitted.length === mine.length ? 'at once' : (byCode[label] ?? 'n/a'),
      cell(summary(mine.map((r) => r.liveAfter)), 0),
    ];
  });
  return {
    config: { flood: FLOOD, windowMs: WINDOW_MS, runs: RUNS, systems: SYSTEMS },
    runs,
    tables: [
      {
        title: `lockout: ${FLOOD} initializes never deleted, then a fresh client (retry every 1 s for ${WINDOW_MS / 1000} s; ${RUNS} runs)`,
        columns: [
          'system',
          'live after flood',
          'fresh client admitted',
          'its initialize took',
          'refusals',
          'fresh client gets a session',
          'live after',
        ],
        rows,
      },
    ],
  };
});
