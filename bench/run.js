/**
 * Runs the benchmarks, each in a process group of its own with a time limit,
 * then renders bench/README.md's results section from bench/results/*.json.
 *
 *   npm run bench                  all of them (builds first)
 *   npm run bench -- NAME [NAME]   some of them
 *   node bench/run.js --list
 *
 * Environment: BENCH_REPS (default 3), BENCH_QUICK=1 (short runs, results to
 * bench/results/tmp/, README untouched).
 */
import { spawn } from 'node:child_process';
import { QUICK } from './lib/common.js';
import { renderReadme } from './report.js';

/** name -> time limit in seconds (the whole benchmark, all repetitions). */
export const BENCHMARKS = {
  'hot-path': 180,
  'rate-window': 180,
  strictness: 420,
  initialize: 480,
  'initialize-caps': 1500,
  lockout: 480,
  requests: 900,
  'flood-memory': 900,
  'large-results-memory': 600,
  startup: 300,
  cluster: 1500,
  hosts: 900,
};

const args = process.argv.slice(2);
if (args.includes('--list')) {
  console.log(Object.keys(BENCHMARKS).join('\n'));
  process.exit(0);
}
const names = args.filter((a) => !a.startsWith('-'));
for (const name of names) {
  if (!(name in BENCHMARKS)) {
    console.error(`unknown benchmark "${name}"; one of: ${Object.keys(BENCHMARKS).join(', ')}`);
    process.exit(2);
  }
}
const selected = names.length > 0 ? names : Object.keys(BENCHMARKS);
const viaNpm = process.env.npm_lifecycle_event === 'bench';
const command = viaNpm
  ? `npm run bench${names.length ? ` -- ${names.join(' ')}` : ''}`
  : `node bench/run.js${names.length ? ` ${names.join(' ')}` : ''}`;

let current;
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    if (current?.pid) {
      try {
        process.kill(-current.pid, 'SIGKILL');
      } catch {}
    }
    process.exit(130);
  });
}

function runOne(name, limitS) {
  return new Promise((resolve) => {
    const started = Date.now();
    const child = spawn(process.execPath, ['--expose-gc', new URL(`./${name}.js`, import.meta.url).pathname], {
      stdio: 'inherit',
      detached: true, // its own process group: the time limit kills its servers and load generator too
      env: { ...process.env, BENCH_COMMAND: command },
    });
    current = child;
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      console.error(`\n${name}: over its ${limitS} s limit, stopped`);
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {}
    }, limitS * 1000);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      // Whatever the benchmark left behind in its group goes too.
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {}
      current = undefined;
      resolve({ name, ok: code === 0 && !timedOut, code, signal, timedOut, seconds: (Date.now() - started) / 1000 });
    });
  });
}

const outcomes = [];
const t0 = Date.now();
for (const name of selected) outcomes.push(await runOne(name, BENCHMARKS[name]));
console.log('\n== summary');
for (const o of outcomes) {
  console.log(
    `${o.name.padEnd(13)} ${o.ok ? 'ok    ' : 'FAILED'} ${o.seconds.toFixed(0).padStart(4)} s${o.timedOut ? ' (time limit)' : ''}`,
  );
}
console.log(`total ${((Date.now() - t0) / 1000).toFixed(0)} s`);
if (!QUICK) {
  await renderReadme();
  console.log('bench/README.md results updated from bench/results/*.json');
}
process.exit(outcomes.every((o) => o.ok) ? 0 : 1);
