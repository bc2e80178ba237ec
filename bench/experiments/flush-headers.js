/**
 * Experiment (not part of `npm run bench`): what the broker's separate write
 * of each response head costs. Runs the broker (2 threads) in this process,
 * either as built or with ServerResponse#flushHeaders made a no-op (the head
 * then leaves with the first body chunk; acceptable for POST-only load, not a
 * fix), and autocannon (echo, c=16, 3 x 2 s after a warm-up) from a child.
 * Run each variant a few times, alternating.
 *
 *   node bench/experiments/flush-headers.js asbuilt|noflush
 */
import { ServerResponse } from 'node:http';
import { startLoad } from '../lib/procs.js';
import { startSystem } from '../lib/systems.js';

const variant = process.argv[2];
if (variant !== 'asbuilt' && variant !== 'noflush') throw new Error('usage: flush-headers.js asbuilt|noflush');
if (variant === 'noflush') ServerResponse.prototype.flushHeaders = () => undefined;
const served = await startSystem('broker', { threads: 2, maxSessions: 1000 });
const load = startLoad();
try {
  const { sessions } = await load.call('open', { url: served.url, count: 16, concurrency: 8 });
  const job = { url: served.url, kind: 'call', tool: 'echo', sessions, connections: 16 };
  await load.call('cannon', { ...job, durationS: 3 });
  const out = [];
  for (let i = 0; i < 3; i++) {
    const c0 = process.cpuUsage();
    const r = await load.call('cannon', { ...job, durationS: 2 });
    const c1 = process.cpuUsage(c0);
    out.push(`${Math.round(r.rps)} req/s, ${((c1.user + c1.system) / 1000 / r.ok).toFixed(2)} ms CPU/req`);
  }
  console.log(`${variant}: ${out.join(' | ')}`);
} finally {
  await load.stop();
  await served.close();
}
process.exit(0);
