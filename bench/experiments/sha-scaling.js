/**
 * Experiment (not part of `npm run bench`): how the sha tool's raw work
 * (SHA-256 over 64 KiB, 50 times) scales from 1 to 2 worker threads on this
 * machine, with no HTTP, MCP or load generator: the ceiling for the
 * requests benchmark's CPU-heavy goal.
 *
 *   node bench/experiments/sha-scaling.js
 */
import { Worker } from 'node:worker_threads';

const body = `
const { parentPort, workerData } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const input = Buffer.alloc(64 * 1024, 0x61);
const work = () => { let d = Buffer.alloc(0); for (let i = 0; i < 50; i++) d = createHash('sha256').update(d).update(input).digest(); return d; };
for (let i = 0; i < 50; i++) work();
const t0 = performance.now();
for (let i = 0; i < workerData.n; i++) work();
parentPort.postMessage(performance.now() - t0);
`;
const run = (threads, n) =>
  Promise.all(
    Array.from(
      { length: threads },
      () =>
        new Promise((resolve) => {
          const worker = new Worker(body, { eval: true, workerData: { n } });
          worker.once('message', (ms) => {
            resolve(ms);
            void worker.terminate();
          });
        }),
    ),
  );
const N = 600;
for (let k = 0; k < 3; k++) {
  const t1 = performance.now();
  await run(1, N);
  const one = performance.now() - t1;
  const t2 = performance.now();
  await run(2, N);
  const two = performance.now() - t2;
  console.log(
    `1 thread ${((N / one) * 1000).toFixed(0)}/s (${(one / N).toFixed(2)} ms each); 2 threads ${(((2 * N) / two) * 1000).toFixed(0)}/s: ${((2 * one) / two).toFixed(2)}x`,
  );
}
