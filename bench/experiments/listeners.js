/**
 * Experiment (not part of `npm run bench`): the two fronts of the broker side
 * by side with the plain SDK, in the same repetitions (order rotated): per-
 * thread listeners (`listeners: 'threads'`, Node >= 22.12) and the listener
 * thread (`listeners: 'main'`), 2 handler threads each, SSE.
 *
 *   npx -y node@24 bench/experiments/listeners.js [reps]
 *
 * Cells: `own`, each autocannon connection initializes a session of its own
 * on itself and then calls with it (a client with a keep-alive connection;
 * its initialize is not counted): echo at c=1, 16, 64 (1.5 s), sha at c=16
 * and 64 (2 s). `rr`: calls spread round-robin over 16 sessions opened
 * beforehand (so with per-thread listeners about half of them land on a
 * thread that does not own their session and are handed over): echo at c=1
 * and c=16. Prints each run and, per cell, the median (min-max) of each
 * front's req/s, p50 and p99 latency, and server CPU per request as ratios to
 * plain-sdk in the same repetition, and the p50 difference between the fronts.
 */
import { fmt, rotate, summary } from '../lib/common.js';
import { cpuSnapshot, otherCores, waitForQuiet } from '../lib/cpu.js';
import { startLoad, startServer } from '../lib/procs.js';

const REPS = Number(process.argv[2] ?? 3);
const SYSTEMS = [
  { key: 'plain-sdk', system: 'plain-sdk', options: {} },
  { key: 'threads', system: 'broker', options: { threads: 2, maxSessions: 1000, listeners: 'threads' } },
  { key: 'main', system: 'broker', options: { threads: 2, maxSessions: 1000, listeners: 'main' } },
];
const CELLS = [
  { kind: 'own', tool: 'echo', connections: 1, durationS: 1.5 },
  { kind: 'own', tool: 'echo', connections: 16, durationS: 1.5 },
  { kind: 'own', tool: 'echo', connections: 64, durationS: 1.5 },
  { kind: 'own', tool: 'sha', connections: 16, durationS: 2 },
  { kind: 'own', tool: 'sha', connections: 64, durationS: 2 },
  { kind: 'call', tool: 'echo', connections: 1, durationS: 1.5 },
  { kind: 'call', tool: 'echo', connections: 16, durationS: 1.5 },
];
const cellName = (c) => `${c.kind === 'own' ? 'own' : 'rr'} ${c.tool} c=${c.connections}`;

const load = startLoad();
const runs = [];
try {
  for (let rep = 0; rep < REPS; rep++) {
    for (const system of rotate(SYSTEMS, rep)) {
      const server = await startServer(system.system, system.options);
      try {
        const { sessions } = await load.call('open', { url: server.url, count: 16, concurrency: 8 });
        for (const tool of ['echo', 'sha']) {
          const warm = { url: server.url, kind: 'own', tool, connections: 16 };
          await load.call('cannon', { ...warm, durationS: tool === 'echo' ? 2 : 0.5 });
        }
        const pids = [server.pid, load.child.pid];
        await waitForQuiet(pids);
        for (const cell of CELLS) {
          const c0 = await server.call('cpu');
          const s0 = cpuSnapshot(pids);
          const r = await load.call('cannon', { url: server.url, sessions, ...cell });
          const s1 = cpuSnapshot(pids);
          const c1 = await server.call('cpu');
          const run = {
            rep,
            key: system.key,
            cell: cellName(cell),
            perSecond: r.rps,
            p50Ms: r.latencyMs.p50,
            p99Ms: r.latencyMs.p99,
            cpuMs: r.ok > 0 ? (c1.us - c0.us) / 1000 / r.ok : null,
            non2xx: r.non2xx + r.errors,
            other: otherCores(s0, s1),
          };
          runs.push(run);
          console.log(
            `rep ${rep + 1}/${REPS} ${run.key.padEnd(9)} ${run.cell.padEnd(16)} ${fmt(run.perSecond)}/s` +
              ` p50 ${run.p50Ms} ms p99 ${run.p99Ms} ms cpu ${fmt(run.cpuMs, 2)} ms each` +
              ` errors ${run.non2xx}, other load ${fmt(run.other, 2)}`,
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

const cells = CELLS.map(cellName);
const show = (s) => `${fmt(s.median, 2)} (${fmt(s.min, 2)}-${fmt(s.max, 2)})`;
const same = (r, key) => runs.find((b) => b.key === key && b.cell === r.cell && b.rep === r.rep);
for (const field of ['perSecond', 'p50Ms', 'p99Ms', 'cpuMs']) {
  console.log(`\n${field} ratio to plain-sdk, same repetition: median (min-max)`);
  for (const cell of cells) {
    const ratio = (key) =>
      summary(runs.filter((r) => r.key === key && r.cell === cell).map((r) => r[field] / same(r, 'plain-sdk')[field]));
    console.log(`${cell.padEnd(16)} threads ${show(ratio('threads')).padEnd(18)} main ${show(ratio('main'))}`);
  }
}
console.log('\np50 latency, threads minus main, same repetition (ms): median (min-max)');
for (const cell of cells) {
  const diff = summary(
    runs.filter((r) => r.key === 'threads' && r.cell === cell).map((r) => r.p50Ms - same(r, 'main').p50Ms),
  );
  console.log(`${cell.padEnd(16)} ${show(diff)}`);
}
process.exit(0);
