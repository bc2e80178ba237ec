/**
 * Strictness under contention: hundreds of concurrent initializes across
 * several handler threads never make more SDK transports live than the cap.
 * The sampled count is what the threads themselves report (their transports),
 * not the broker's admission counter.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { Served } from '../dist/main/index.js';
import { alive, initializeBody, post, start } from './helpers.js';

let served: Served | undefined;
afterEach(async () => {
  await served?.close();
  served = undefined;
});

async function flood(url: string, total: number, concurrency: number) {
  const results: { status: number; retryAfter: string | null; sessionId: string | null }[] = [];
  let next = 0;
  const worker = async () => {
    while (next < total) {
      next++;
      const res = await post(url, initializeBody());
      await res.text();
      results.push({
        status: res.status,
        retryAfter: res.headers.get('retry-after'),
        sessionId: res.headers.get('mcp-session-id'),
      });
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return results;
}

function sampler(served: Served) {
  let max = 0;
  let samples = 0;
  const timer = setInterval(() => {
    const byThread = served.broker.index.transportsByThread();
    const live = Object.values(byThread).reduce((a, b) => a + b, 0);
    max = Math.max(max, live);
    samples++;
  }, 1);
  return {
    stop() {
      clearInterval(timer);
      return { max, samples };
    },
  };
}

describe('strict limits under concurrency', () => {
  it.each(['oldest', 'none'] as const)(
    'never exceeds maxSessions with 400 concurrent initializes over 3 threads (evict %s)',
    async (evict) => {
      const max = 20;
      served = await start({ maxSessions: max, threads: 3, evict });
      const s = sampler(served);
      const results = await flood(served.url, 400, 64);
      const { max: seen, samples } = s.stop();
      expect(samples).toBeGreaterThan(10);
      expect(seen).toBeLessThanOrEqual(max);
      expect(seen).toBeGreaterThan(0);
      // Every answer is a session or a 503 with Retry-After: nothing else.
      for (const r of results) {
        if (r.status !== 200) {
          expect(r.status).toBe(503);
          expect(Number(r.retryAfter)).toBeGreaterThanOrEqual(1);
        }
      }
      const admitted = results.filter((r) => r.status === 200).map((r) => r.sessionId as string);
      if (evict === 'none') expect(admitted).toHaveLength(max);
      else expect(admitted.length).toBeGreaterThan(max);
      const answering = (await Promise.all(admitted.map((id) => alive(served!.url, id)))).filter(Boolean).length;
      expect(answering).toBe(Math.min(max, admitted.length));
      const stats = await served.broker.stats();
      expect(stats.transports).toBe(Math.min(max, admitted.length));
      expect(stats.createdTotal).toBe(admitted.length);
      const threadsUsed = Object.values(stats.transportsByThread).filter((n) => n > 0).length;
      expect(threadsUsed).toBeGreaterThan(1);
    },
    60_000,
  );
});
