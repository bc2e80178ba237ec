/**
 * Experiment (not part of `npm run bench`): does the broker's RSS keep growing
 * under a flood of initializes that never DELETE, or level off? The broker
 * (the CLI, 2 handler threads, `--max-sessions 1000`, so every initialize past
 * the first 1,000 evicts one) runs in a child process on the Node given by
 * SERVER_NODE (default this one); this process sends raw initializes, 32 at a
 * time, and reads the child's VmRSS after each step.
 *
 *   node bench/experiments/rss-plateau.js [threads|main|auto] [total] [step]
 *   SERVER_NODE=$(npx -y node@24 -e 'console.log(process.execPath)') node bench/experiments/rss-plateau.js threads 100000 20000
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { INITIALIZE_BODY, POST_HEADERS } from '../lib/mcp.js';

const [listeners = 'auto', totalArg = '60000', stepArg = '10000'] = process.argv.slice(2);
const total = Number(totalArg);
const step = Number(stepArg);
const CONCURRENCY = 32;
const CLI = fileURLToPath(new URL('../../dist/main/cli/main.js', import.meta.url));
const exe = process.env.SERVER_NODE ?? process.execPath;
const args = [
  CLI,
  'serve',
  '--port',
  '0',
  '--threads',
  '2',
  '--max-sessions',
  '1000',
  '--quiet',
  '--listeners',
  listeners,
];
const child = spawn(exe, args, { stdio: ['ignore', 'pipe', 'inherit'] });
const url = await new Promise((resolve, reject) => {
  child.stdout.once('data', (data) => resolve(data.toString().trim()));
  child.once('exit', (code) => reject(new Error(`server exited with ${code}`)));
});
const rssMiB = () =>
  Math.round(Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))?.[1] ?? 0) / 1024);
const version = await new Promise((resolve) => {
  const probe = spawn(exe, ['--version'], { stdio: ['ignore', 'pipe', 'ignore'] });
  probe.stdout.once('data', (data) => resolve(data.toString().trim()));
});
let sent = 0;
async function sender(count) {
  for (let i = 0; i < count; i++) {
    const response = await fetch(url, { method: 'POST', headers: POST_HEADERS, body: INITIALIZE_BODY });
    await response.text();
    if (response.status !== 200) throw new Error(`initialize answered ${response.status}`);
    sent++;
  }
}
try {
  console.log(`server node ${version}, listeners ${listeners}: RSS at start ${rssMiB()} MiB`);
  while (sent < total) {
    await Promise.all(Array.from({ length: CONCURRENCY }, () => sender(Math.ceil(step / CONCURRENCY))));
    await new Promise((resolve) => setTimeout(resolve, 1500));
    console.log(`${sent} initializes: RSS ${rssMiB()} MiB`);
  }
} finally {
  child.kill('SIGKILL');
}
