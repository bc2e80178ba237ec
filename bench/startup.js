/**
 * startup: time from spawning the process to "ready" (the first stdout line,
 * the URL, which the CLI prints only once an initialize can succeed) and to a
 * first answered initialize, for the broker CLI with 1, 2 and 4 handler threads
 * and for the plain SDK baseline, each a fresh `node` process, in rotation.
 *
 *   npm run bench -- startup
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { cell, REPS, ratioCell, rotate, runBenchmark, summary } from './lib/common.js';
import { initialize } from './lib/mcp.js';

const CLI = fileURLToPath(new URL('../dist/main/cli/main.js', import.meta.url));
const PLAIN = fileURLToPath(new URL('./baselines/plain-sdk.js', import.meta.url));

const SYSTEMS = [
  { name: 'plain-sdk', args: [PLAIN, '--port', '0'] },
  ...[1, 2, 4].map((threads) => ({
    name: `broker, ${threads} thread${threads > 1 ? 's' : ''}`,
    args: [CLI, 'serve', '--port', '0', '--threads', String(threads), '--max-sessions', '100', '--quiet'],
  })),
];

/** Spawns, waits for the URL line, sends one initialize; returns both times in ms and stops the process. */
async function measure(args) {
  const started = performance.now();
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'ignore'] });
  try {
    const url = await new Promise((resolve, reject) => {
      let buffer = '';
      const timer = setTimeout(() => reject(new Error('no URL within 60 s')), 60_000);
      child.stdout.on('data', (chunk) => {
        buffer += chunk.toString();
        const newline = buffer.indexOf('\n');
        if (newline >= 0) {
          clearTimeout(timer);
          resolve(buffer.slice(0, newline).trim());
        }
      });
      child.once('exit', (code) => reject(new Error(`exited with ${code} before ready`)));
    });
    const ready = performance.now() - started;
    const first = await initialize(url);
    if (first.status !== 200) throw new Error(`first initialize answered ${first.status}: ${first.text.slice(0, 200)}`);
    return { ready, firstInitialize: performance.now() - started };
  } finally {
    child.kill('SIGKILL');
    await new Promise((resolve) => (child.exitCode !== null ? resolve() : child.once('exit', resolve)));
  }
}

await runBenchmark('startup', async () => {
  const runs = Object.fromEntries(SYSTEMS.map((s) => [s.name, { ready: [], first: [], ratio: [] }]));
  const reps = Math.max(REPS, 5);
  for (let rep = 0; rep < reps; rep++) {
    const times = {};
    for (const system of rotate(SYSTEMS, rep)) times[system.name] = await measure(system.args);
    for (const system of SYSTEMS) {
      const t = times[system.name];
      runs[system.name].ready.push(t.ready);
      runs[system.name].first.push(t.firstInitialize);
      runs[system.name].ratio.push(t.ready / times['plain-sdk'].ready);
    }
  }
  const rows = SYSTEMS.map((s) => [
    s.name,
    cell(summary(runs[s.name].ready), 0, ' ms'),
    cell(summary(runs[s.name].first), 0, ' ms'),
    ratioCell(summary(runs[s.name].ratio)),
  ]);
  return {
    tables: [
      {
        title: `Time to ready: spawn to the URL line, and to a first answered initialize (${reps} runs, rotated)`,
        columns: ['system', 'ready', 'first initialize', 'ready vs plain-sdk (same rep)'],
        rows,
        notes: [
          'Each a fresh node process (module loading included). The broker prints its URL only once the broker worker and every handler thread are ready.',
        ],
      },
    ],
    runs,
  };
});
