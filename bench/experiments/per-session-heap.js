/**
 * Experiment (not part of `npm run bench`): what one live session costs, in JS
 * heap and in RSS, on plain-sdk and on the broker (one handler thread) with
 * the same factory (`per-session-heap-server.js`: the example server's tools),
 * once with the SDK's default validator (a new Ajv per server) and once with
 * `sharedJsonSchemaValidator()`; and, from heap snapshots, where the heap goes,
 * by constructor.
 *
 *   npm run build
 *   node bench/experiments/per-session-heap.js [--sessions 2000] [--warmup 200] [--reps 1]
 *        [--systems plain-sdk,broker,plain-sdk-shared,broker-shared] [--snapshots DIR [--keep]] [--top 30]
 *
 * The figures in bench/README.md (finding 7) come from
 *
 *   node bench/experiments/per-session-heap.js --sessions 4000 --reps 3 \
 *        --systems plain-sdk,broker,broker-noresume,plain-sdk-shared,broker-shared
 *   node bench/experiments/per-session-heap.js --sessions 1000 --systems plain-sdk,broker,broker-shared --snapshots DIR
 *
 * Each system runs in a process of its own (with --expose-gc), the load (raw
 * initialize POSTs that never DELETE, autocannon at concurrency 16) in
 * another. After `warmup` sessions (so one-off lazy work is done), the server
 * collects garbage and reports RSS and JS heap (main thread + handler thread;
 * the broker worker's heap is not included, RSS is the whole process); then
 * `sessions` more, and the same again. Per session = growth / sessions.
 * With `--snapshots DIR` the server also writes a heap snapshot of each
 * thread at both points (files of tens to hundreds of MiB) and the experiment
 * prints the growth per session by node type and constructor, per thread,
 * and the broker's minus plain-sdk's. The broker runs at --max-sessions far
 * above what is sent (no eviction), resumability at its defaults; the
 * systems `broker-noresume` and `broker-noresume-shared` run it with
 * `resumability: false` (plain-sdk keeps no events either).
 */
import { fork } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { getHeapStatistics, writeHeapSnapshot } from 'node:v8';
import { BroadcastChannel } from 'node:worker_threads';

const SERVER_MODULE = new URL('./per-session-heap-server.js', import.meta.url).href;

if (process.argv.includes('--child')) {
  await child();
} else {
  await parent();
}

// ---- the server process ------------------------------------------------------

async function child() {
  const { startSystem } = await import('../lib/systems.js');
  const { CHANNEL, collect } = await import(SERVER_MODULE);
  let served;
  let threads = 0;

  /** Asks every handler thread for `type`, resolves with their answers. */
  async function ask(type, extra = {}) {
    if (threads === 0) return [];
    const channel = new BroadcastChannel(CHANNEL);
    try {
      return await new Promise((resolve, reject) => {
        const answers = [];
        const timer = setTimeout(() => reject(new Error(`${type}: ${answers.length} of ${threads} threads`)), 120_000);
        channel.onmessage = ({ data }) => {
          if (`${data?.type}?` !== type) return;
          answers.push(data);
          if (answers.length === threads) {
            clearTimeout(timer);
            resolve(answers);
          }
        };
        channel.postMessage({ type, ...extra });
      });
    } finally {
      channel.close();
    }
  }

  const commands = {
    async start({ system, resumability }) {
      const options = { module: SERVER_MODULE };
      if (system === 'broker') Object.assign(options, { threads: 1, maxSessions: 100_000 });
      if (resumability === false) options.resumability = false;
      served = await startSystem(system, options);
      threads = served.threads ?? 0;
      return { url: served.url };
    },
    async mem() {
      const thread = await ask('heap?');
      collect();
      const { used_heap_size: main, total_heap_size: mainTotal } = getHeapStatistics();
      const threadUsed = thread.reduce((sum, t) => sum + t.used, 0);
      const { rss, external } = process.memoryUsage();
      return {
        rss,
        external,
        main,
        thread: threadUsed,
        heap: main + threadUsed,
        mainCommitted: mainTotal,
        threadCommitted: thread.reduce((sum, t) => sum + t.total, 0),
        committed: mainTotal + thread.reduce((sum, t) => sum + t.total, 0),
        live: await served.live(),
      };
    },
    async snapshot({ prefix }) {
      const thread = await ask('snapshot?', { prefix });
      collect();
      const main = writeHeapSnapshot(`${prefix}-main.heapsnapshot`);
      return { main, threads: thread.map((t) => t.file) };
    },
  };
  process.on('message', async ({ id, cmd, args }) => {
    try {
      process.send({ id, result: await commands[cmd](args ?? {}) });
    } catch (error) {
      process.send({ id, error: String(error?.stack ?? error) });
    }
  });
  process.on('disconnect', () => process.exit(0));
}

// ---- the experiment ----------------------------------------------------------

async function parent() {
  const { values } = parseArgs({
    options: {
      sessions: { type: 'string', default: '2000' },
      warmup: { type: 'string', default: '200' },
      reps: { type: 'string', default: '1' },
      systems: { type: 'string', default: 'plain-sdk,broker,plain-sdk-shared,broker-shared' },
      snapshots: { type: 'string' },
      top: { type: 'string', default: '30' },
      keep: { type: 'boolean', default: false },
    },
    strict: true,
  });
  const N = Number(values.sessions);
  const WARMUP = Number(values.warmup);
  const TOP = Number(values.top);
  const names = values.systems.split(',');
  const { startLoad } = await import('../lib/procs.js');
  const load = startLoad();
  const KiB = 1024;
  const results = {};
  const profiles = {};
  try {
    for (let rep = 0; rep < Number(values.reps); rep++) {
      for (const name of names) {
        const system = name.replace(/(-noresume)?(-shared)?$/, '');
        const server = startChild(name.endsWith('-shared') ? 'shared' : 'own');
        try {
          const { url } = await server.call('start', { system, resumability: !name.includes('-noresume') });
          const flood = async (amount) => {
            const r = await load.call(
              'cannon',
              { url, kind: 'initialize', connections: 16, amount, maxDurationS: 240 },
              300_000,
            );
            if (r.ok !== amount) throw new Error(`${name}: ${r.ok} of ${amount} initializes answered 2xx`);
          };
          await flood(WARMUP);
          const m0 = await server.call('mem');
          let s0;
          if (values.snapshots) {
            mkdirSync(values.snapshots, { recursive: true });
            s0 = await server.call('snapshot', { prefix: join(values.snapshots, `${name}-0`) });
          }
          await flood(N);
          const m1 = await server.call('mem');
          let s1;
          if (values.snapshots) s1 = await server.call('snapshot', { prefix: join(values.snapshots, `${name}-1`) });
          await flood(N);
          const m2 = await server.call('mem');
          const per = (key) => [(m1[key] - m0[key]) / N / KiB, (m2[key] - m1[key]) / N / KiB];
          const row = {
            live: [m0.live, m1.live, m2.live],
            heap: per('heap'),
            main: per('main'),
            thread: per('thread'),
            committed: per('committed'),
            mainCommitted: per('mainCommitted'),
            threadCommitted: per('threadCommitted'),
            external: per('external'),
            rss: per('rss'),
          };
          results[name] ??= [];
          results[name].push(row);
          console.log(
            `${name} rep ${rep}: live ${row.live.join(' -> ')}; per session (first ${N}, second ${N}): ` +
              `heap ${f(row.heap[0])} / ${f(row.heap[1])} KiB (main ${f(row.main[0])}, handler thread ${f(row.thread[0])}), ` +
              `committed ${f(row.committed[0])} / ${f(row.committed[1])} (main ${f(row.mainCommitted[0])} / ${f(row.mainCommitted[1])}), external ${f(row.external[0])} / ${f(row.external[1])}, ` +
              `RSS ${f(row.rss[0])} / ${f(row.rss[1])} KiB`,
          );
          if (s0 && s1 && rep === 0) {
            const roles = [['main', s0.main, s1.main]];
            s0.threads.forEach((file, i) => {
              roles.push([`thread${i}`, file, s1.threads[i]]);
            });
            profiles[name] = {};
            for (const [role, before, after] of roles) {
              profiles[name][role] = diff(aggregate(before), aggregate(after), N);
              if (!values.keep) {
                rmSync(before);
                rmSync(after);
              }
            }
          }
        } finally {
          server.kill();
        }
      }
    }
  } finally {
    load.kill();
  }

  console.log(
    `\nper live session, KiB, median over reps: sessions 1-${N} after the warm-up | sessions ${N + 1}-${2 * N}; ratios vs plain-sdk (own validator)`,
  );
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)];
  const summary = {};
  for (const [name, rows] of Object.entries(results)) {
    summary[name] = {};
    for (const key of ['heap', 'committed', 'rss']) {
      summary[name][key] = [0, 1].map((half) => median(rows.map((r) => r[key][half])));
    }
  }
  const base = summary['plain-sdk'];
  for (const [name, s] of Object.entries(summary)) {
    const cells = ['heap', 'committed', 'rss'].map((key) => {
      const halves = [0, 1].map((h) => `${f(s[key][h])}${base ? ` (${(s[key][h] / base[key][h]).toFixed(2)}x)` : ''}`);
      return `${key} ${halves.join(' | ')}`;
    });
    const runs = results[name].map((r) => `${f(r.heap[0])}/${f(r.heap[1])}`).join(', ');
    console.log(`  ${name.padEnd(22)} ${cells.join('   ')}   [heap runs: ${runs}]`);
  }

  for (const [name, roles] of Object.entries(profiles)) {
    for (const [role, rows] of Object.entries(roles)) {
      printTop(`${name} ${role}: heap snapshot growth per session (${N} sessions)`, rows, TOP);
    }
  }
  const plain = profiles['plain-sdk']?.main;
  for (const variant of Object.keys(profiles).filter((name) => name.startsWith('broker'))) {
    const broker = profiles[variant];
    if (!plain || !broker) continue;
    const merged = new Map();
    for (const rows of Object.values(broker)) {
      for (const [key, v] of rows) add(merged, key, v.bytes, v.count);
    }
    for (const [key, v] of plain) add(merged, key, -v.bytes, -v.count);
    printTop(`${variant} (all threads) minus plain-sdk, per session`, merged, TOP);
  }
}

function f(x) {
  return x.toFixed(1);
}

function add(map, key, bytes, count) {
  const e = map.get(key) ?? { bytes: 0, count: 0 };
  e.bytes += bytes;
  e.count += count;
  map.set(key, e);
}

function printTop(title, rows, top) {
  const list = [...rows].sort((a, b) => Math.abs(b[1].bytes) - Math.abs(a[1].bytes));
  let total = 0;
  for (const [, v] of list) total += v.bytes;
  console.log(`\n${title}: total ${(total / 1024).toFixed(2)} KiB`);
  console.log('  bytes/session  count/session  type: name');
  for (const [key, v] of list.slice(0, top)) {
    console.log(`  ${v.bytes.toFixed(0).padStart(13)}  ${v.count.toFixed(2).padStart(13)}  ${key}`);
  }
}

function diff(before, after, n) {
  const out = new Map();
  for (const [key, v] of after) add(out, key, v.bytes / n, v.count / n);
  for (const [key, v] of before) add(out, key, -v.bytes / n, -v.count / n);
  return out;
}

/** Self size and count by `type: name` from a .heapsnapshot, read without parsing the whole file as one JSON text. */
function aggregate(file) {
  const buf = readFileSync(file);
  const nodesAt = buf.indexOf('"nodes":[');
  const meta = JSON.parse(`${buf.subarray(0, buf.lastIndexOf(',', nodesAt)).toString()}}`).snapshot.meta;
  const fields = meta.node_fields;
  const types = meta.node_types[0];
  const width = fields.length;
  const iType = fields.indexOf('type');
  const iName = fields.indexOf('name');
  const iSize = fields.indexOf('self_size');
  const stringsAt = buf.indexOf('"strings":[');
  const end = buf.lastIndexOf(']');
  const strings = JSON.parse(buf.subarray(stringsAt + '"strings":'.length, end + 1).toString());
  const byKey = new Map();
  let field = 0;
  let type = 0;
  let name = 0;
  let num = 0;
  let inNum = false;
  for (let i = nodesAt + '"nodes":['.length; ; i++) {
    const c = buf[i];
    if (c >= 48 && c <= 57) {
      num = num * 10 + (c - 48);
      inNum = true;
      continue;
    }
    if (inNum) {
      if (field === iType) type = num;
      else if (field === iName) name = num;
      else if (field === iSize) {
        const typeName = types[type];
        const grouped = ['string', 'concatenated string', 'sliced string', 'number', 'code', 'regexp'].includes(
          typeName,
        );
        const key = grouped ? `${typeName}` : `${typeName}: ${strings[name]}`;
        add(byKey, key, num, 1);
      }
      field = (field + 1) % width;
      num = 0;
      inNum = false;
    }
    if (c === 93) break; // ']'
  }
  return byKey;
}

function startChild(validator) {
  const proc = fork(fileURLToPath(import.meta.url), ['--child'], {
    execArgv: ['--expose-gc'],
    env: { ...process.env, HEAP_VALIDATOR: validator },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  let next = 0;
  const pending = new Map();
  proc.on('message', ({ id, result, error }) => {
    const p = pending.get(id);
    pending.delete(id);
    if (error) p?.reject(new Error(error));
    else p?.resolve(result);
  });
  proc.on('exit', (code) => {
    for (const p of pending.values()) p.reject(new Error(`server exited (${code})`));
  });
  return {
    call: (cmd, args) =>
      new Promise((resolve, reject) => {
        const id = ++next;
        pending.set(id, { resolve, reject });
        proc.send({ id, cmd, args });
      }),
    kill: () => proc.kill('SIGKILL'),
  };
}
