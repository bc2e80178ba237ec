/**
 * Shared by the benchmark scripts: repetitions and scale from the environment,
 * medians and ranges, ratio columns, console tables, and the JSON results
 * written to bench/results/NAME.json (with the machine and the command).
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { availableParallelism, cpus, loadavg, totalmem } from 'node:os';

/** Repetitions of each measurement (BENCH_REPS, default 3). */
export const REPS = Math.max(1, Number(process.env.BENCH_REPS ?? 3));
/** BENCH_QUICK=1: shorter runs for development (results are not for the README). */
export const QUICK = process.env.BENCH_QUICK === '1';

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export function summary(values) {
  const xs = values.filter((v) => typeof v === 'number' && Number.isFinite(v)).sort((a, b) => a - b);
  if (xs.length === 0) return { median: null, min: null, max: null, n: 0, values };
  const mid = Math.floor(xs.length / 2);
  const median = xs.length % 2 ? xs[mid] : (xs[mid - 1] + xs[mid]) / 2;
  return { median, min: xs[0], max: xs[xs.length - 1], n: xs.length, values };
}

export function fmt(value, digits = 0) {
  if (value === null || value === undefined || Number.isNaN(value)) return 'n/a';
  if (!Number.isFinite(value)) return String(value);
  const abs = Math.abs(value);
  if (digits === 'auto') digits = abs >= 100 ? 0 : abs >= 10 ? 1 : abs >= 1 ? 2 : 3;
  return value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

/** "median (min-max)" of a summary; just the median when all runs agree or there is one run. */
export function cell(s, digits = 'auto', suffix = '') {
  if (!s || s.n === 0) return 'n/a';
  const m = `${fmt(s.median, digits)}${suffix}`;
  if (s.n === 1 || fmt(s.min, digits) === fmt(s.max, digits)) return m;
  return `${m} (${fmt(s.min, digits)}-${fmt(s.max, digits)})`;
}

export function ratioCell(s) {
  return cell(s, 2, 'x');
}

/** Rotates `items` by `rep` so each system takes each position in turn across repetitions. */
export function rotate(items, rep) {
  const k = rep % items.length;
  return [...items.slice(k), ...items.slice(0, k)];
}

export function printTable({ title, columns, rows, notes = [] }) {
  const widths = columns.map((c, i) => Math.max(c.length, ...rows.map((r) => String(r[i] ?? '').length)));
  const line = (cells) => cells.map((c, i) => String(c ?? '').padEnd(widths[i])).join('  ');
  console.log(`\n${title}`);
  console.log(line(columns));
  console.log(line(widths.map((w) => '-'.repeat(w))));
  for (const row of rows) console.log(line(row));
  for (const note of notes) console.log(`  ${note}`);
}

export function machine() {
  return {
    date: new Date().toISOString(),
    node: process.version,
    cores: availableParallelism(),
    cpu: cpus()[0]?.model ?? 'unknown',
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    loadavgAtStart: loadavg().map((x) => Math.round(x * 100) / 100),
    reps: REPS,
    quick: QUICK,
    command: process.env.BENCH_COMMAND ?? `node ${process.argv.slice(1).join(' ')}`,
  };
}

/**
 * Where this Node's results go, under bench/results/: the machine's default
 * Node (20) writes to the top, any other Node to `nodeNN/` (so a run with
 * `npx -y node@24 bench/run.js` keeps the Node 20 results beside its own).
 */
export const RESULTS_SUBDIR = (() => {
  const major = Number(process.versions.node.split('.')[0]);
  return major === 20 ? '' : `node${major}/`;
})();

/** Writes bench/results/[nodeNN/]NAME.json (QUICK runs go to bench/results/tmp/, which git ignores). */
export async function writeResults(name, data) {
  const dir = new URL(QUICK ? '../results/tmp/' : `../results/${RESULTS_SUBDIR}`, import.meta.url);
  await mkdir(dir, { recursive: true });
  const file = new URL(`${name}.json`, dir);
  await writeFile(file, `${JSON.stringify({ benchmark: name, ...data }, null, 2)}\n`);
  // The repository's formatter checks bench/**: leave the file as it would.
  const biome = new URL('../../node_modules/.bin/biome', import.meta.url).pathname;
  if (existsSync(biome)) spawnSync(biome, ['format', '--write', file.pathname], { stdio: 'ignore' });
  console.log(`\nresults: ${file.pathname}`);
}

/** Runs a benchmark's main function, printing and saving its tables; exits non-zero on failure. */
export async function runBenchmark(name, main) {
  const meta = machine();
  console.log(`== ${name}  (node ${meta.node}, ${meta.cores} cores, reps ${REPS}${QUICK ? ', QUICK' : ''})`);
  const started = Date.now();
  try {
    const { tables, ...rest } = await main();
    for (const table of tables) printTable(table);
    await writeResults(name, { ...meta, elapsedS: Math.round((Date.now() - started) / 100) / 10, tables, ...rest });
    process.exit(0);
  } catch (error) {
    console.error(`${name} failed:`, error);
    process.exit(1);
  }
}
