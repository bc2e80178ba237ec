/**
 * requests: tools/call on established sessions (initialize + initialized
 * first), spread round-robin over at least 8 x threads sessions (one session
 * only ever runs on its owner thread), at concurrency 1, 16 and 64, for a
 * trivial tool (echo) and a CPU-heavy one (sha: SHA-256 over 64 KiB, 50
 * times), with SSE and with JSON responses. The broker runs with 2 handler
 * threads; 1 and 4 show how it scales with threads (c=64, SSE). Load is
 * autocannon in its own process on the same 2 cores. Runs are 1.5 s (echo)
 * and 2 s (sha), 5 s for sha at c=64 so that queueing tails can show; every
 * server is warmed up first (2 s of echo, 0.5 s of sha at c=16).
 * Goals (2 cores): echo >= 0.7x plain-sdk req/s; sha >= 1.6x plain-sdk
 * req/s with 2 threads, and sha p99 at c=64 <= 0.5x plain-sdk's.
 */
import { cell, fmt, QUICK, REPS, ratioCell, rotate, runBenchmark, summary } from './lib/common.js';
import { cpuSnapshot, otherCores, waitForQuiet } from './lib/cpu.js';
import { startLoad, startServer } from './lib/procs.js';

const TOOLS = ['echo', 'sha'];
const CONCURRENCY = [1, 16, 64];
const DURATION_S = {
  echo: QUICK ? 1 : Number(process.env.BENCH_REQ_ECHO_S ?? 1.5),
  sha: QUICK ? 1 : Number(process.env.BENCH_REQ_SHA_S ?? 2),
  // Long enough for plain-sdk's queueing tail to show: a request still waiting when a run ends is never counted.
  sha64: QUICK ? 1 : Number(process.env.BENCH_REQ_SHA64_S ?? 5),
};
const durationOf = (tool, connections) => (tool === 'sha' && connections === 64 ? DURATION_S.sha64 : DURATION_S[tool]);
const WARMUP_S = { echo: 2, sha: 0.5 };
const BASELINE = 'plain-sdk';

// Each server configuration and the cells it runs.
const FULL = TOOLS.flatMap((tool) => CONCURRENCY.map((connections) => ({ tool, connections })));
const C64 = TOOLS.map((tool) => ({ tool, connections: 64 }));
const CONFIGS = [
  { key: 'plain-sdk sse', system: 'plain-sdk', mode: 'sse', threads: 1, options: {}, cells: FULL },
  {
    key: 'plain-sdk json',
    system: 'plain-sdk',
    mode: 'json',
    threads: 1,
    options: { jsonResponse: true },
    cells: FULL,
  },
  { key: 'broker t2 sse', system: 'broker', mode: 'sse', threads: 2, options: { threads: 2 }, cells: FULL },
  {
    key: 'broker t2 json',
    system: 'broker',
    mode: 'json',
    threads: 2,
    options: { threads: 2, jsonResponse: true },
    cells: FULL,
  },
  { key: 'fastmcp sse', system: 'fastmcp', mode: 'sse', threads: 1, options: {}, cells: FULL },
  { key: 'tmcp sse', system: 'tmcp', mode: 'sse', threads: 1, options: {}, cells: FULL },
  { key: 'broker t1 sse', system: 'broker', mode: 'sse', threads: 1, options: { threads: 1 }, cells: C64 },
  { key: 'broker t4 sse', system: 'broker', mode: 'sse', threads: 4, options: { threads: 4 }, cells: C64 },
];

await runBenchmark('requests', async () => {
  const load = startLoad();
  const runs = [];
  const distributions = [];
  // At most this much waiting, in all, for other work on the machine to calm down.
  const budget = { ms: QUICK ? 0 : 45_000 };
  try {
    for (let rep = 0; rep < REPS; rep++) {
      for (const config of rotate(CONFIGS, rep)) {
        const server = await startServer(config.system, { maxSessions: 1000, ...config.options });
        try {
          const count = Math.max(16, 8 * config.threads);
          const { sessions } = await load.call('open', { url: server.url, count, concurrency: 8 });
          for (const tool of TOOLS) {
            const answer = await load.call('check', { url: server.url, sessionId: sessions[0], tool });
            const wanted = config.mode === 'json' ? 'application/json' : 'text/event-stream';
            if (!answer.contentType.includes(wanted))
              throw new Error(`${config.key}: ${tool} answered ${answer.contentType}`);
          }
          if (config.system === 'broker') {
            const byThread = await server.call('byThread');
            distributions.push({ rep, key: config.key, sessions: count, byThread });
            console.log(`  ${config.key}: ${count} sessions per thread ${JSON.stringify(byThread)}`);
          }
          // Warm up every thread's JIT (the broker has three isolates to warm, the others one).
          for (const tool of TOOLS) {
            await load.call('cannon', {
              url: server.url,
              kind: 'call',
              tool,
              sessions,
              connections: 16,
              durationS: QUICK ? 0.5 : WARMUP_S[tool],
            });
          }
          const pids = [server.pid, load.child.pid];
          await waitForQuiet(pids, { budget });
          for (const { tool, connections } of config.cells) {
            const cpu0 = await server.call('cpu');
            const snap0 = cpuSnapshot(pids);
            const r = await load.call('cannon', {
              url: server.url,
              kind: 'call',
              tool,
              sessions,
              connections,
              durationS: durationOf(tool, connections),
            });
            const snap1 = cpuSnapshot(pids);
            const cpu1 = await server.call('cpu');
            runs.push({
              rep,
              key: config.key,
              system: config.system,
              mode: config.mode,
              threads: config.threads,
              tool,
              connections,
              perSecond: r.rps,
              p50Ms: r.latencyMs.p50,
              p99Ms: r.latencyMs.p99,
              ok: r.ok,
              non2xx: r.non2xx,
              errors: r.errors + r.timeouts,
              cpuMsPerRequest: r.ok > 0 ? (cpu1.us - cpu0.us) / 1000 / r.ok : null,
              otherLoadCores: otherCores(snap0, snap1),
            });
            console.log(
              `rep ${rep + 1}/${REPS} ${config.key.padEnd(14)} ${tool.padEnd(4)} c=${String(connections).padEnd(2)}: ${fmt(r.rps)} req/s` +
                ` p50 ${r.latencyMs.p50} ms p99 ${r.latencyMs.p99} ms non2xx ${r.non2xx} errors ${r.errors + r.timeouts}` +
                ` other load ${fmt(runs.at(-1).otherLoadCores, 2)} cores`,
            );
          }
        } finally {
          await server.stop();
        }
      }
    }
  } finally {
    await load.stop();
  }

  const baselineKey = (mode) => `${BASELINE} ${mode}`;
  const ratio = (rows, key, mode) =>
    summary(
      rows.map((r) => {
        const base = runs.find(
          (b) => b.key === baselineKey(mode) && b.rep === r.rep && b.tool === r.tool && b.connections === r.connections,
        );
        return base?.[key] ? r[key] / base[key] : null;
      }),
    );
  const tables = [];
  for (const tool of TOOLS) {
    const rows = [];
    for (const config of CONFIGS.filter((c) => c.cells === FULL)) {
      for (const connections of CONCURRENCY) {
        const mine = runs.filter((r) => r.key === config.key && r.tool === tool && r.connections === connections);
        if (mine.length === 0) continue;
        // Peers run SSE only: compare them with plain-sdk's SSE.
        const isBase = config.system === BASELINE;
        rows.push([
          config.key,
          connections,
          cell(summary(mine.map((r) => r.perSecond)), 0),
          cell(summary(mine.map((r) => r.p50Ms)), 0),
          cell(summary(mine.map((r) => r.p99Ms)), 0),
          cell(summary(mine.map((r) => r.cpuMsPerRequest)), 2),
          isBase ? '1.00x' : ratioCell(ratio(mine, 'perSecond', config.mode)),
          isBase ? '1.00x' : ratioCell(ratio(mine, 'p99Ms', config.mode)),
          String(mine.reduce((n, r) => n + r.non2xx + r.errors, 0)),
          cell(summary(mine.map((r) => r.otherLoadCores)), 2),
        ]);
      }
    }
    tables.push({
      title: `requests: tools/call ${tool} (${DURATION_S[tool]} s per run${tool === 'sha' ? `, ${DURATION_S.sha64} s at c=64` : ''}, ${REPS} runs; median (min-max); ratios vs plain-sdk, same response mode, same run)`,
      columns: [
        'system',
        'conc.',
        'req/s',
        'p50 ms',
        'p99 ms',
        'server CPU ms/req',
        'x req/s',
        'x p99',
        'non-2xx+errors',
        'other load (cores)',
      ],
      rows,
    });
  }
  // Threads: the broker at c=64, SSE.
  const scaling = [];
  for (const tool of TOOLS) {
    for (const threads of [1, 2, 4]) {
      const mine = runs.filter(
        (r) =>
          r.system === 'broker' && r.mode === 'sse' && r.threads === threads && r.tool === tool && r.connections === 64,
      );
      const t1 = (r) =>
        runs.find((b) => b.key === 'broker t1 sse' && b.rep === r.rep && b.tool === tool && b.connections === 64)
          ?.perSecond;
      scaling.push([
        tool,
        threads,
        cell(summary(mine.map((r) => r.perSecond)), 0),
        cell(summary(mine.map((r) => r.p99Ms)), 0),
        ratioCell(summary(mine.map((r) => (t1(r) ? r.perSecond / t1(r) : null)))),
        ratioCell(ratio(mine, 'perSecond', 'sse')),
        cell(summary(mine.map((r) => r.otherLoadCores)), 2),
      ]);
    }
  }
  tables.push({
    title: 'requests: broker throughput by handler threads (c=64, SSE; 2 cores shared with the load generator)',
    columns: ['tool', 'threads', 'req/s', 'p99 ms', 'x 1 thread', 'x plain-sdk', 'other load (cores)'],
    rows: scaling,
  });
  // Goals: the broker with 2 threads against plain-sdk, per concurrency and response mode.
  const brokerRatio = (tool, connections, mode, key) =>
    ratio(
      runs.filter((r) => r.key === `broker t2 ${mode}` && r.tool === tool && r.connections === connections),
      key,
      mode,
    );
  const each = (tool, concurrency, key) =>
    concurrency.flatMap((connections) =>
      ['sse', 'json'].map((mode) => ({ connections, mode, ratio: brokerRatio(tool, connections, mode, key) })),
    );
  const list = (entries) => entries.map((e) => `c=${e.connections} ${e.mode} ${ratioCell(e.ratio)}`).join('; ');
  const echo = each('echo', CONCURRENCY, 'perSecond');
  const sha = each('sha', CONCURRENCY, 'perSecond');
  const shaConcurrent = sha.filter((e) => e.connections > 1);
  const shaP99 = each('sha', [64], 'p99Ms');
  const goals = {
    echoThroughput: { entries: echo, met: echo.every((e) => e.ratio.median >= 0.7) },
    shaThroughput: { entries: sha, met: shaConcurrent.every((e) => e.ratio.median >= 1.6) },
    shaP99C64: { entries: shaP99, met: shaP99.every((e) => e.ratio.median <= 0.5) },
  };
  const verdict = (entries, test) => {
    const missed = entries.filter((e) => !test(e.ratio.median));
    return missed.length === 0 ? 'met' : `MISSED at ${missed.map((e) => `c=${e.connections} ${e.mode}`).join(', ')}`;
  };
  tables[tables.length - 1].notes = [
    `goal echo >= 0.7x plain-sdk req/s: ${verdict(echo, (m) => m >= 0.7)} (${list(echo)})`,
    `goal sha >= 1.6x plain-sdk req/s with 2 threads (concurrent load, c=16 and 64): ${verdict(shaConcurrent, (m) => m >= 1.6)} (${list(sha)}; at c=1 one request at a time can use one core only)`,
    `goal sha p99 at c=64 <= 0.5x plain-sdk's: ${verdict(shaP99, (m) => m <= 0.5)} (${list(shaP99)})`,
  ];
  return {
    config: {
      tools: TOOLS,
      concurrency: CONCURRENCY,
      durationS: DURATION_S,
      configs: CONFIGS.map(({ cells, ...c }) => ({ ...c, cells: cells.length })),
    },
    runs,
    distributions,
    goals,
    tables,
  };
});
