/**
 * Experiment (not part of `npm run bench`): this build's broker against the
 * broker of another built checkout, in the same repetitions, with plain-sdk
 * as the common baseline. When the machine itself is slower than on the day
 * a result was recorded, the broker's ratio to plain-sdk can move without any
 * change to the code; running the other build beside this one tells the two
 * apart.
 *
 *   mkdir DIR && git archive COMMIT | tar -x -C DIR && ln -s "$PWD/node_modules" DIR/node_modules
 *   (cd DIR && npx tsc -p tsconfig.build.json)
 *   node bench/experiments/ab-build.js DIR [reps] [requests|initialize]
 *
 * DIR must hold that commit's bench/lib/host.js (same command protocol) and
 * its dist/. Per repetition (order rotated): plain-sdk, this broker and the
 * other broker (2 threads), each in a fresh server process, SSE and JSON;
 * echo at c=1, 16 and 64 (1.5 s), sha at c=16 and 64 (2 s); and initialize at
 * c=16 and 64 (3 s, a fresh server, cap 1000); the last argument keeps only
 * one of the two. Prints each run and, per cell, the median (min-max) of each
 * broker's req/s and server CPU per request as ratios to plain-sdk in the
 * same repetition.
 */
import { fork } from 'node:child_process';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { fmt, rotate, summary } from '../lib/common.js';
import { cpuSnapshot, otherCores, waitForQuiet } from '../lib/cpu.js';
import { startLoad, startServer } from '../lib/procs.js';

const otherDir = process.argv[2];
const REPS = Number(process.argv[3] ?? 3);
const only = process.argv[4];
if (!otherDir || (only && only !== 'requests' && only !== 'initialize')) {
  throw new Error('usage: ab-build.js OTHER_CHECKOUT_DIR [reps] [requests|initialize]');
}
const otherHost = pathToFileURL(resolve(otherDir, 'bench/lib/host.js'));

/** A server from the other checkout: its own host.js, the same commands. */
async function startOther(system, options) {
  const child = fork(otherHost, [], { execArgv: ['--expose-gc'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const exited = new Promise((done) => child.once('exit', done));
  let next = 0;
  const pending = new Map();
  child.on('message', (m) => {
    const entry = pending.get(m.id);
    pending.delete(m.id);
    if (m.error) entry?.reject(new Error(m.error));
    else entry?.resolve(m.result);
  });
  const call = (cmd, args = {}) =>
    new Promise((ok, fail) => {
      const id = ++next;
      pending.set(id, { resolve: ok, reject: fail });
      child.send({ id, cmd, args });
    });
  const { url, pid } = await call('start', { system, options });
  return {
    url,
    pid,
    call,
    async stop() {
      await Promise.race([call('stop').catch(() => undefined), new Promise((r) => setTimeout(r, 10_000))]);
      const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
      await exited;
      clearTimeout(timer);
    },
  };
}

const SYSTEMS = [
  { key: 'plain-sdk', start: (o) => startServer('plain-sdk', o) },
  { key: 'broker (this build)', start: (o) => startServer('broker', { threads: 2, maxSessions: 1000, ...o }) },
  { key: 'broker (other build)', start: (o) => startOther('broker', { threads: 2, maxSessions: 1000, ...o }) },
];
const CELLS = [
  { tool: 'echo', connections: 1, durationS: 1.5 },
  { tool: 'echo', connections: 16, durationS: 1.5 },
  { tool: 'echo', connections: 64, durationS: 1.5 },
  { tool: 'sha', connections: 16, durationS: 2 },
  { tool: 'sha', connections: 64, durationS: 2 },
];

const load = startLoad();
const runs = [];
const record = (run) => {
  runs.push(run);
  console.log(
    `rep ${run.rep + 1}/${REPS} ${run.key.padEnd(20)} ${run.cell.padEnd(16)} ${fmt(run.perSecond)}/s p99 ${run.p99Ms} ms` +
      ` cpu ${fmt(run.cpuMs, 2)} ms each, other load ${fmt(run.other, 2)}`,
  );
};
try {
  for (let rep = 0; rep < REPS; rep++) {
    for (const system of rotate(SYSTEMS, rep)) {
      for (const mode of only === 'initialize' ? [] : ['sse', 'json']) {
        const server = await system.start(mode === 'json' ? { jsonResponse: true } : {});
        try {
          const { sessions } = await load.call('open', { url: server.url, count: 16, concurrency: 8 });
          for (const tool of ['echo', 'sha']) {
            const warm = { url: server.url, kind: 'call', tool, sessions, connections: 16 };
            await load.call('cannon', { ...warm, durationS: tool === 'echo' ? 2 : 0.5 });
          }
          const pids = [server.pid, load.child.pid];
          await waitForQuiet(pids);
          for (const { tool, connections, durationS } of CELLS) {
            const c0 = await server.call('cpu');
            const s0 = cpuSnapshot(pids);
            const r = await load.call('cannon', {
              url: server.url,
              kind: 'call',
              tool,
              sessions,
              connections,
              durationS,
            });
            const s1 = cpuSnapshot(pids);
            const c1 = await server.call('cpu');
            record({
              rep,
              key: system.key,
              cell: `${tool} ${mode} c=${connections}`,
              perSecond: r.rps,
              p99Ms: r.latencyMs.p99,
              cpuMs: r.ok > 0 ? (c1.us - c0.us) / 1000 / r.ok : null,
              other: otherCores(s0, s1),
            });
          }
        } finally {
          await server.stop();
        }
      }
      for (const connections of only === 'requests' ? [] : [16, 64]) {
        const server = await system.start({});
        try {
          await load.call('cannon', { url: server.url, kind: 'initialize', connections: 16, durationS: 1 });
          const pids = [server.pid, load.child.pid];
          await waitForQuiet(pids);
          const c0 = await server.call('cpu');
          const s0 = cpuSnapshot(pids);
          const r = await load.call('cannon', { url: server.url, kind: 'initialize', connections, durationS: 3 });
          const s1 = cpuSnapshot(pids);
          const c1 = await server.call('cpu');
          record({
            rep,
            key: system.key,
            cell: `initialize c=${connections}`,
            perSecond: r.rps,
            p99Ms: r.latencyMs.p99,
            cpuMs: r.ok > 0 ? (c1.us - c0.us) / 1000 / r.ok : null,
            other: otherCores(s0, s1),
          });
        } finally {
          await server.stop();
        }
      }
    }
  }
} finally {
  await load.stop();
}

const cells = [...new Set(runs.map((r) => r.cell))];
const show = (s) => `${fmt(s.median, 2)} (${fmt(s.min, 2)}-${fmt(s.max, 2)})`;
for (const field of ['perSecond', 'cpuMs']) {
  console.log(
    `\n${field === 'perSecond' ? 'req/s (sessions/s)' : 'server CPU per request'} ratio to plain-sdk, same repetition: median (min-max)`,
  );
  for (const cell of cells) {
    const ratio = (key) =>
      summary(
        runs
          .filter((r) => r.key === key && r.cell === cell)
          .map((r) => r[field] / runs.find((b) => b.key === 'plain-sdk' && b.cell === cell && b.rep === r.rep)[field]),
      );
    const mine = ratio('broker (this build)');
    const other = ratio('broker (other build)');
    console.log(`${cell.padEnd(16)} this ${show(mine).padEnd(18)} other ${show(other)}`);
  }
}
process.exit(0);
