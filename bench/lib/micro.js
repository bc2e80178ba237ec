/**
 * Timing loops for in-process micro-benchmarks: ns per operation, median of
 * several batches after a warm-up batch, so the JIT has settled and one
 * noisy batch does not decide the figure.
 */
import { summary } from './common.js';

/** Runs `fn(iterations)` (which performs that many operations) `batches` times; ns/op per batch. */
export function nsPerOp(fn, { iterations, batches = 7 }) {
  fn(Math.max(1, Math.floor(iterations / 4)));
  const perBatch = [];
  for (let b = 0; b < batches; b++) {
    const t0 = process.hrtime.bigint();
    fn(iterations);
    perBatch.push(Number(process.hrtime.bigint() - t0) / iterations);
  }
  return summary(perBatch);
}

/** The async variant: `fn(iterations)` returns a promise. */
export async function nsPerOpAsync(fn, { iterations, batches = 5 }) {
  await fn(Math.max(1, Math.floor(iterations / 4)));
  const perBatch = [];
  for (let b = 0; b < batches; b++) {
    const t0 = process.hrtime.bigint();
    await fn(iterations);
    perBatch.push(Number(process.hrtime.bigint() - t0) / iterations);
  }
  return summary(perBatch);
}

/** Keeps a value observable so the JIT cannot drop the work that made it. */
export let sink = 0;
export function consume(value) {
  sink = (sink + (typeof value === 'number' ? value : value ? 1 : 0)) | 0;
}
