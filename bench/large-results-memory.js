/**
 * large-results-memory: sessions that each receive a few large tool results
 * over SSE, then the server's RSS and JS heap after a full GC, and the growth
 * per session. A resumability event store keeps what it sends for replay with
 * `Last-Event-ID`; bounded by events only, it keeps every large result of
 * every session until the session closes. The broker bounds it in bytes, per
 * session (default 1 MiB: a result larger than that is sent but not stored)
 * and in total (default 64 MiB).
 *
 * Systems, all serving the example server plus a tool `big` ({ bytes }):
 * plain-sdk (no event store, as its examples without resumability), plain-sdk
 * with the SDK examples' InMemoryEventStore (resumable, unbounded), the broker
 * with default resumability, and the broker with a per-session bound large
 * enough to keep every result (so only the total bound holds it).
 * Each session: initialize + initialized, then RESULTS calls of `big`, one
 * after another; CONCURRENT sessions at a time. The bytes the broker's stores
 * hold (`broker.resumeBytes()`) are read after the calls and again after every
 * session was deleted.
 * Memory is read before the first session, after half of them and after all:
 * growth over all sessions includes one-time growth (heap pages, allocator
 * arenas of the threads the results pass through); growth over the second
 * half is what each further session costs.
 * Goals: with default resumability the broker keeps none of these results
 * (its stores hold less than one result: the initialize answers and the
 * streams' priming events; the JS heaps grow less than 256 KiB per further
 * session),
 * and with a per-session bound that would keep them all, its stores hold at
 * most maxTotalBytes. The ratio to plain-sdk (which keeps no events) is
 * reported, not a goal.
 */
import { cell, fmt, QUICK, runBenchmark, summary } from './lib/common.js';
import { messageOf, openSession, sessionHeaders } from './lib/mcp.js';
import { startServer } from './lib/procs.js';

const MiB = 2 ** 20;
const KiB = 2 ** 10;
const SESSIONS = QUICK ? 10 : 50;
const RESULTS = 4;
const RESULT_BYTES = 2 * MiB;
const CONCURRENT = 5;
// RSS after large transient buffers is noisy (allocator high-water marks): three runs by default.
const RUNS = Math.max(1, Number(process.env.BENCH_LARGE_REPS ?? 3));
const MODULE = new URL('./lib/large-server.js', import.meta.url).href;
const TOTAL = 64 * MiB;
const MARGINAL_HEAP_GOAL = 256 * KiB;

const SYSTEMS = [
  { label: 'plain-sdk', system: 'plain-sdk', options: { module: MODULE } },
  {
    label: 'plain-sdk + InMemoryEventStore',
    system: 'plain-sdk',
    options: { module: MODULE, eventStore: 'in-memory' },
  },
  { label: 'broker (defaults: 1 MiB/session, 64 MiB total)', system: 'broker', options: { module: MODULE } },
  {
    label: 'broker --resume-bytes 16m (64 MiB total)',
    system: 'broker',
    options: { module: MODULE, resumability: { maxBytesPerSession: 16 * MiB } },
  },
];

let nextId = 10;

/** Bytes as MiB, or KiB, or bytes, whichever reads best (median (min-max) over runs). */
function bytesCell(values) {
  const top = Math.max(...values);
  const [unit, size] = top >= MiB ? [' MiB', MiB] : top >= KiB ? [' KiB', KiB] : [' B', 1];
  return cell(summary(values.map((v) => v / size)), size === 1 ? 0 : 1, unit);
}

async function callBig(url, sessionId) {
  const res = await fetch(url, {
    method: 'POST',
    headers: sessionHeaders(sessionId),
    body: JSON.stringify({
      jsonrpc: '2.0',
      id: nextId++,
      method: 'tools/call',
      params: { name: 'big', arguments: { bytes: RESULT_BYTES } },
    }),
  });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`big: HTTP ${res.status} ${text.slice(0, 200)}`);
  if (!(res.headers.get('content-type') ?? '').includes('text/event-stream')) throw new Error('big: not SSE');
  const length = messageOf(text).result?.content?.[0]?.text?.length;
  if (length !== RESULT_BYTES) throw new Error(`big: a result of ${length} bytes, not ${RESULT_BYTES}`);
}

async function deleteSession(url, sessionId) {
  const res = await fetch(url, { method: 'DELETE', headers: sessionHeaders(sessionId) });
  await res.text();
}

await runBenchmark('large-results-memory', async () => {
  const runs = [];
  for (let run = 0; run < RUNS; run++) {
    for (const { label, system, options } of SYSTEMS) {
      const server = await startServer(system, options);
      try {
        // One session through the whole path first (code loaded, buffers grown), then the base.
        const warm = await openSession(server.url);
        await callBig(server.url, warm);
        await deleteSession(server.url, warm);
        const base = await server.call('mem');
        const t0 = performance.now();
        const sessions = [];
        let mid;
        for (let i = 0; i < SESSIONS; i += CONCURRENT) {
          if (i === SESSIONS / 2) mid = await server.call('mem', {}, 60_000);
          const batch = await Promise.all(
            Array.from({ length: Math.min(CONCURRENT, SESSIONS - i) }, async () => {
              const sessionId = await openSession(server.url);
              for (let k = 0; k < RESULTS; k++) await callBig(server.url, sessionId);
              return sessionId;
            }),
          );
          sessions.push(...batch);
        }
        const seconds = (performance.now() - t0) / 1000;
        const after = await server.call('mem', {}, 60_000);
        const held = await server.call('resumeBytes');
        await Promise.all(sessions.map((id) => deleteSession(server.url, id)));
        const heldAfterDelete = await server.call('resumeBytes');
        const row = {
          run,
          label,
          system,
          baseRss: base.rss,
          baseHeap: base.heapUsed,
          baseHeapTotal: base.mainHeapTotal + base.threadHeapTotal,
          heapTotal: after.mainHeapTotal + after.threadHeapTotal,
          rss: after.rss,
          heapUsed: after.heapUsed,
          live: after.live,
          midRss: mid.rss,
          midHeap: mid.heapUsed,
          rssPerSession: (after.rss - base.rss) / SESSIONS,
          heapPerSession: (after.heapUsed - base.heapUsed) / SESSIONS,
          // The second half only: what each further session costs, past one-time growth.
          marginalRssPerSession: (after.rss - mid.rss) / (SESSIONS / 2),
          marginalHeapPerSession: (after.heapUsed - mid.heapUsed) / (SESSIONS / 2),
          resumeBytes: held,
          resumeBytesAfterDelete: heldAfterDelete,
          seconds,
        };
        runs.push(row);
        console.log(
          `${label}: ${SESSIONS} sessions x ${RESULTS} x ${fmt(RESULT_BYTES / MiB, 0)} MiB in ${fmt(seconds, 1)} s; ` +
            `RSS ${fmt(base.rss / MiB, 0)} -> ${fmt(after.rss / MiB, 0)} MiB (${fmt(row.rssPerSession / KiB, 0)} KiB/session), ` +
            `heap ${fmt(base.heapUsed / MiB, 1)} -> ${fmt(after.heapUsed / MiB, 1)} MiB` +
            (held === null
              ? ''
              : `; stores hold ${fmt(held / MiB, 1)} MiB, ${fmt(heldAfterDelete / MiB, 1)} after DELETE`),
        );
      } finally {
        await server.stop();
      }
    }
  }

  const plain = (run) => runs.find((r) => r.run === run && r.label === 'plain-sdk');
  const rows = SYSTEMS.map(({ label }) => {
    const mine = runs.filter((r) => r.label === label);
    const ratio = summary(mine.map((r) => r.rssPerSession / plain(r.run).rssPerSession));
    const held = mine[0]?.resumeBytes;
    return [
      label,
      fmt(SESSIONS),
      cell(summary(mine.map((r) => r.baseRss / MiB)), 0, ' MiB'),
      cell(summary(mine.map((r) => r.rss / MiB)), 0, ' MiB'),
      cell(summary(mine.map((r) => r.rssPerSession / KiB)), 0, ' KiB'),
      `${cell(ratio, 2)}x`,
      cell(summary(mine.map((r) => r.marginalRssPerSession / KiB)), 0, ' KiB'),
      cell(summary(mine.map((r) => r.marginalHeapPerSession / KiB)), 0, ' KiB'),
      held === null || held === undefined
        ? 'not counted'
        : `${bytesCell(mine.map((r) => r.resumeBytes))} -> ${bytesCell(mine.map((r) => r.resumeBytesAfterDelete))}`,
    ];
  });
  const ratioOf = (label) =>
    summary(runs.filter((r) => r.label === label).map((r) => r.rssPerSession / plain(r.run).rssPerSession));
  const brokerLabels = SYSTEMS.filter((s) => s.system === 'broker').map((s) => s.label);
  const [defaults, bounded] = brokerLabels;
  const ofLabel = (label) => runs.filter((r) => r.label === label);
  const keptNone = ofLabel(defaults).every(
    (r) => r.resumeBytes < RESULT_BYTES && r.marginalHeapPerSession < MARGINAL_HEAP_GOAL,
  );
  const withinTotal = ofLabel(bounded).every((r) => r.resumeBytes <= TOTAL);
  const goals = {
    brokerRatios: Object.fromEntries(brokerLabels.map((l) => [l, ratioOf(l)])),
    defaultsKeepNone: keptNone,
    storesWithinTotal: withinTotal,
  };
  const heapNote = (label) => {
    const mine = ofLabel(label);
    const growth = (f) => cell(summary(mine.map((r) => f(r) / MiB)), 0, ' MiB');
    return `${label}: RSS +${growth((r) => r.rss - r.baseRss)}; JS heaps (main + handler threads) used +${growth((r) => r.heapUsed - r.baseHeap)}, committed +${growth((r) => r.heapTotal - r.baseHeapTotal)}`;
  };
  return {
    config: { sessions: SESSIONS, results: RESULTS, resultBytes: RESULT_BYTES, concurrent: CONCURRENT, runs: RUNS },
    runs,
    goals,
    tables: [
      {
        title: `large-results-memory: ${SESSIONS} sessions, each ${RESULTS} results of ${fmt(RESULT_BYTES / MiB, 0)} MiB over SSE, sessions kept open (${RUNS} run${RUNS > 1 ? 's' : ''}); after a full GC`,
        columns: [
          'system',
          'sessions',
          'RSS before',
          'RSS after',
          'RSS growth per session',
          'x plain-sdk',
          `RSS growth per session, sessions ${SESSIONS / 2 + 1}-${SESSIONS}`,
          `JS heap growth per session, sessions ${SESSIONS / 2 + 1}-${SESSIONS}`,
          'resumability stores hold (after the calls -> after DELETE)',
        ],
        rows,
        notes: [
          `goal: with defaults the broker keeps none of the results (its stores hold less than one result; the JS heaps grow less than ${fmt(MARGINAL_HEAP_GOAL / KiB, 0)} KiB per further session): ${keptNone ? 'met' : 'MISSED'}`,
          `goal: with a per-session bound that keeps every result, the stores hold at most maxTotalBytes (${fmt(TOTAL / MiB, 0)} MiB): ${withinTotal ? 'met' : 'MISSED'}`,
          ...[...SYSTEMS.map((s) => s.label)].map(heapNote),
        ],
      },
    ],
  };
});
