/**
 * Experiment (not part of `npm run bench`): what a request handed over to
 * another thread costs, with per-thread listeners (Node >= 22.12), against
 * the same request served where it landed. One broker (2 handler threads,
 * SSE) in this process; the client is this process's main thread (idle
 * otherwise: with per-thread listeners main does not touch requests).
 *
 *   npx -y node@24 bench/experiments/handoff-latency.js [calls] [rounds]
 *
 * Per round: a keep-alive connection creates a session (its thread owns it);
 * more keep-alive connections are opened until one lands on the other thread
 * (told by the hand-off counter); then `calls` sequential echo calls of that
 * session go over each of the two connections, alternating in blocks of 50.
 * Prints p50 and p90 per connection (microseconds, from hrtime), and the p50
 * difference: the cost of the hop for an idle server.
 */
import { Agent, request } from 'node:http';
import { serve } from '../../dist/main/index.js';
import { callBody, INITIALIZE_BODY, INITIALIZED_BODY, POST_HEADERS, sessionHeaders } from '../lib/mcp.js';

const CALLS = Number(process.argv[2] ?? 2000);
const ROUNDS = Number(process.argv[3] ?? 3);

const served = await serve({
  port: 0,
  log: false,
  threads: 2,
  maxSessions: 100,
  listeners: 'threads',
  module: new URL('../lib/broker-module.js', import.meta.url).href,
});

/** One request on `agent` (a single keep-alive socket); resolves with status, headers, body. */
function send(agent, headers, body) {
  return new Promise((resolve, reject) => {
    const req = request(served.url, { method: 'POST', agent, headers }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () =>
        resolve({ status: res.statusCode, headers: res.headers, text: Buffer.concat(chunks).toString() }),
      );
    });
    req.on('error', reject);
    req.end(body);
  });
}

const agentOf = () => new Agent({ keepAlive: true, maxSockets: 1 });
const quantile = (sorted, q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];

let id = 10;
const results = [];
for (let round = 0; round < ROUNDS; round++) {
  const home = agentOf();
  const init = await send(home, POST_HEADERS, INITIALIZE_BODY);
  const sessionId = init.headers['mcp-session-id'];
  await send(home, sessionHeaders(sessionId), INITIALIZED_BODY);
  // Another connection, on the other thread.
  let away;
  const spare = [];
  for (let tries = 0; tries < 50 && !away; tries++) {
    const agent = agentOf();
    const before = served.broker.frontCounters.handedOff;
    await send(agent, sessionHeaders(sessionId), callBody('echo', id++));
    if (served.broker.frontCounters.handedOff > before) away = agent;
    else spare.push(agent);
  }
  for (const agent of spare) agent.destroy();
  if (!away) throw new Error('no connection landed on the other thread');
  const times = { local: [], handedOff: [] };
  // Warm both paths, then alternate blocks so that drift hits both alike.
  for (let i = 0; i < 200; i++) await send(i % 2 ? home : away, sessionHeaders(sessionId), callBody('echo', id++));
  const handedBefore = served.broker.frontCounters.handedOff;
  for (let block = 0; block < CALLS / 50; block++) {
    for (const [name, agent] of block % 2
      ? [
          ['local', home],
          ['handedOff', away],
        ]
      : [
          ['handedOff', away],
          ['local', home],
        ]) {
      for (let i = 0; i < 50; i++) {
        const t0 = process.hrtime.bigint();
        const r = await send(agent, sessionHeaders(sessionId), callBody('echo', id++));
        times[name].push(Number(process.hrtime.bigint() - t0) / 1000);
        if (r.status !== 200) throw new Error(`status ${r.status}`);
      }
    }
  }
  const handed = served.broker.frontCounters.handedOff - handedBefore;
  home.destroy();
  away.destroy();
  const row = { round };
  for (const name of ['local', 'handedOff']) {
    const sorted = times[name].sort((a, b) => a - b);
    row[name] = { p50: quantile(sorted, 0.5), p90: quantile(sorted, 0.9), n: sorted.length };
  }
  row.handedOffCounted = handed;
  row.p50DiffUs = row.handedOff.p50 - row.local.p50;
  results.push(row);
  console.log(
    `round ${round + 1}/${ROUNDS}: local p50 ${row.local.p50.toFixed(0)} us p90 ${row.local.p90.toFixed(0)} us;` +
      ` handed off p50 ${row.handedOff.p50.toFixed(0)} us p90 ${row.handedOff.p90.toFixed(0)} us` +
      ` (${handed} counted of ${row.handedOff.n}); p50 difference ${row.p50DiffUs.toFixed(0)} us`,
  );
}
const diffs = results.map((r) => r.p50DiffUs).sort((a, b) => a - b);
console.log(
  `p50 difference, median of ${ROUNDS} rounds: ${quantile(diffs, 0.5).toFixed(0)} us (${diffs[0].toFixed(0)}-${diffs.at(-1).toFixed(0)})`,
);
await served.close();
process.exit(0);
