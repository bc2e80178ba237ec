/**
 * Summarises V8 .cpuprofile files (from BENCH_CPU_PROF=DIR, one per thread):
 * self time by function and by source (package or dist/ file), per thread.
 *
 *   node bench/lib/profile-summary.js DIR [top]
 */
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';

const [dir, topArg] = process.argv.slice(2);
const top = Number(topArg ?? 15);

function sourceOf(url) {
  if (!url) return '(native/vm)';
  const nm = url.lastIndexOf('node_modules/');
  if (nm >= 0) {
    const rest = url.slice(nm + 'node_modules/'.length).split('/');
    return rest[0].startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0];
  }
  const dist = url.indexOf('/dist/');
  if (dist >= 0) return url.slice(dist + 1);
  if (url.startsWith('node:')) return url;
  return url.replace(/^file:\/\//, '');
}

for (const file of (await readdir(dir)).filter((f) => f.endsWith('.cpuprofile')).sort()) {
  const profile = JSON.parse(await readFile(join(dir, file), 'utf8'));
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map();
  const deltas = profile.timeDeltas;
  profile.samples.forEach((id, i) => {
    self.set(id, (self.get(id) ?? 0) + (deltas[i] ?? 0));
  });
  const total = [...self.values()].reduce((a, b) => a + b, 0);
  const byFn = new Map();
  const bySource = new Map();
  let idle = 0;
  for (const [id, us] of self) {
    const { callFrame } = byId.get(id);
    if (callFrame.functionName === '(idle)') {
      idle += us;
      continue;
    }
    const fn = `${callFrame.functionName || '(anonymous)'} ${sourceOf(callFrame.url)}:${callFrame.lineNumber + 1}`;
    byFn.set(fn, (byFn.get(fn) ?? 0) + us);
    const src = sourceOf(callFrame.url);
    bySource.set(src, (bySource.get(src) ?? 0) + us);
  }
  const busy = total - idle;
  console.log(
    `\n${file}: ${(total / 1e6).toFixed(2)} s sampled, busy ${(busy / 1e6).toFixed(2)} s (${((busy / total) * 100).toFixed(0)}%)`,
  );
  const show = (title, map) => {
    console.log(`  ${title}`);
    for (const [k, us] of [...map].sort((a, b) => b[1] - a[1]).slice(0, top)) {
      console.log(`    ${((us / busy) * 100).toFixed(1).padStart(5)}%  ${(us / 1000).toFixed(0).padStart(6)} ms  ${k}`);
    }
  };
  show('self time by source (share of busy time)', bySource);
  show('self time by function', byFn);
}
