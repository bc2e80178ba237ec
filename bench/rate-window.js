/**
 * rate window: what the sliding-window creation rate limit adds to an
 * admission decision, measured on the decision itself: RateWindow
 * check + spend at exactly 10,000 per minute (the ring full and sliding: a
 * fake clock advancing 6 ms per decision), a refusal (window full), and the
 * memory store's whole admit() with rate 10,000/min vs no rate limit (fake
 * clock, a fresh store per batch, below capacity so nothing is evicted).
 * Its share of one initialize is against the broker's server CPU per
 * session created, measured in the same run (2 handler threads, c=16).
 * All through dist/.
 */
import { MemoryStore, resolveAdmissionOptions } from '../dist/broker/index.js';
import { RateWindow } from '../dist/broker/stores/memory/rate-window.js';
import { cell, fmt, QUICK, REPS, runBenchmark, summary } from './lib/common.js';
import { consume, nsPerOp } from './lib/micro.js';
import { startLoad, startServer } from './lib/procs.js';

const RATE = { max: 10_000, windowMs: 60_000 };
const STEP_MS = RATE.windowMs / RATE.max; // exactly at the limit
const DECISIONS = QUICK ? 200_000 : 2_000_000;
const ADMITS = QUICK ? 10_000 : 40_000;

function admitLoop(withRate) {
  let clock = 0;
  return (n) => {
    const store = new MemoryStore({
      admission: resolveAdmissionOptions({
        maxSessions: n,
        idleTimeoutMs: 0,
        ...(withRate ? { rate: RATE } : {}),
      }),
      lanes: 1,
      closer: async () => undefined,
      now: () => clock,
    });
    const request = { clientKey: 'bench', owner: 0 };
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < n; i++) {
      clock += STEP_MS;
      consume(store.admit(request) !== undefined);
    }
    return Number(process.hrtime.bigint() - t0);
  };
}

/**
 * ns per admit() (the synchronous decision; its promise is already resolved),
 * without and with the rate limit, in alternating batches after a GC each
 * (run with --expose-gc, as run.js does), so both see the same machine state.
 */
function admitPairs(batches = 8) {
  const loops = { noRate: admitLoop(false), rate: admitLoop(true) };
  loops.noRate(Math.floor(ADMITS / 4));
  loops.rate(Math.floor(ADMITS / 4));
  const out = { noRate: [], rate: [], diff: [] };
  for (let b = 0; b < batches; b++) {
    const order = b % 2 ? ['rate', 'noRate'] : ['noRate', 'rate'];
    const ns = {};
    for (const key of order) {
      globalThis.gc?.();
      ns[key] = loops[key](ADMITS) / ADMITS;
    }
    out.noRate.push(ns.noRate);
    out.rate.push(ns.rate);
    out.diff.push(ns.rate - ns.noRate);
  }
  return { noRate: summary(out.noRate).median, rate: summary(out.rate).median, diff: summary(out.diff).median };
}

await runBenchmark('rate-window', async () => {
  const results = { decision: [], refused: [], admitNoRate: [], admitRate: [], admitAdded: [] };
  for (let rep = 0; rep < REPS; rep++) {
    const ring = new Float64Array(RATE.max);
    const window = new RateWindow(ring, RATE.windowMs);
    let now = 0;
    results.decision.push(
      nsPerOp(
        (n) => {
          for (let i = 0; i < n; i++) {
            now += STEP_MS;
            const check = window.check(now);
            if (check.ok) window.spend(now);
            consume(check.ok);
          }
        },
        { iterations: DECISIONS },
      ).median,
    );
    const full = new RateWindow(new Float64Array(RATE.max), RATE.windowMs);
    for (let i = 0; i < RATE.max; i++) full.spend(i);
    results.refused.push(
      nsPerOp(
        (n) => {
          for (let i = 0; i < n; i++) consume(full.check(RATE.max).ok);
        },
        { iterations: DECISIONS },
      ).median,
    );
    const pairs = admitPairs();
    const a = pairs.rate;
    const b = pairs.noRate;
    results.admitRate.push(a);
    results.admitNoRate.push(b);
    results.admitAdded.push(pairs.diff);
    console.log(
      `rep ${rep + 1}/${REPS}: check+spend ${fmt(results.decision.at(-1), 1)} ns, refusal ${fmt(results.refused.at(-1), 1)} ns,` +
        ` admit ${fmt(b, 0)} ns without rate, ${fmt(a, 0)} ns with`,
    );
  }

  // One initialize on the broker, in server CPU time, measured now on this machine.
  const load = startLoad();
  let cpuNsPerSession;
  try {
    const server = await startServer('broker', { threads: 2, maxSessions: 1000 });
    try {
      await load.call('cannon', { url: server.url, kind: 'initialize', connections: 16, durationS: QUICK ? 0.5 : 1 });
      const cpu0 = await server.call('cpu');
      const r = await load.call('cannon', {
        url: server.url,
        kind: 'initialize',
        connections: 16,
        durationS: QUICK ? 1 : 3,
      });
      const cpu1 = await server.call('cpu');
      cpuNsPerSession = ((cpu1.us - cpu0.us) * 1000) / r.ok;
    } finally {
      await server.stop();
    }
  } finally {
    await load.stop();
  }
  const s = Object.fromEntries(Object.entries(results).map(([k, v]) => [k, summary(v)]));
  const added = s.admitAdded;
  const shareOfInitialize = s.decision.median / cpuNsPerSession;
  return {
    config: { rate: RATE, stepMs: STEP_MS, decisions: DECISIONS, admits: ADMITS },
    results,
    cpuNsPerSession,
    shareOfInitialize,
    tables: [
      {
        title: `rate window: cost per admission decision, rate ${RATE.max}/min vs none (${REPS} runs; median (min-max))`,
        columns: ['measure', 'ns', 'share of one initialize'],
        rows: [
          [
            'RateWindow check + spend at 10,000/min (admitted)',
            cell(s.decision, 1),
            `${fmt(shareOfInitialize * 100, 4)} %`,
          ],
          ['RateWindow check (window full: refused)', cell(s.refused, 1), ''],
          [
            'store.admit() without rate limit',
            cell(s.admitNoRate, 0),
            `${fmt((s.admitNoRate.median / cpuNsPerSession) * 100, 3)} %`,
          ],
          [
            'store.admit() with rate 10,000/min',
            cell(s.admitRate, 0),
            `${fmt((s.admitRate.median / cpuNsPerSession) * 100, 3)} %`,
          ],
          [
            'difference, paired batches (what the rate limit adds to admit)',
            cell(added, 0),
            `${fmt((added.median / cpuNsPerSession) * 100, 4)} %`,
          ],
          ['one initialize on the broker (server CPU, all threads, c=16)', fmt(cpuNsPerSession, 0), '100 %'],
        ],
      },
    ],
  };
});
