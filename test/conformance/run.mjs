// MCP conformance: runs @modelcontextprotocol/conformance (pinned, server mode) against
// the broker and against the plain SDK, both serving test/fixtures/conformance-server.js,
// and compares the two.
//
//   npm run conformance            (builds, then runs this with the machine's node)
//   node test/conformance/run.mjs [--expected-failures FILE]
//
// The suite needs Node >= 22: it runs on this node when it is new enough, else on the
// node given by $CONFORMANCE_NODE, else on Node 24 fetched with `npx -y node@24`.
//
// What runs
//   - the broker: `node dist/main/cli/main.js serve <fixture> --threads 3 --max-sessions 1000`
//   - the plain SDK: `node test/conformance/plain-sdk.js` (one thread, a Map of transports)
//   - against each, the suite's active server suite (`--suite active`), plus
//     server-session-lifecycle if the active suite does not already include it: the
//     "gated" scenarios. Each scenario is bounded by the suite's --timeout
//     ($CONFORMANCE_SCENARIO_TIMEOUT_MS, default 30 s); a suite process that shows no
//     progress for that long plus 15 s is killed, and the whole run has a deadline
//     ($CONFORMANCE_DEADLINE_MS, default 15 min). Servers are killed on exit.
//   - informational only, never affecting the exit status: server-sse-polling (a
//     pending scenario: Last-Event-ID resumption).
//
// The rule (a scenario fails when any of its checks has status FAILURE; it "fails the
// same way" on both servers when the ids of its failing checks are the same)
//   - a gated scenario NOT listed in expected-failures.yml must pass against the broker;
//   - a gated scenario listed there must fail against the broker and against the plain
//     SDK, the same way. Anything else is an error: passing against the broker while the
//     plain SDK fails, failing differently, or passing on both (a stale entry);
//   - every entry must name a gated scenario and give a reason (a `#` comment).
// The exit status is 0 when every gated scenario meets the rule, 1 otherwise (and 1 when
// a server or the suite cannot be run). A gated scenario that fails against the broker
// but passes against the plain SDK is marked BROKER in the table: the broker's bug,
// never a candidate for the list.
//
// Results go to test/conformance/results/ (gitignored): the suite's checks.json per
// scenario and target, the suite and server logs, summary.txt and summary.json.
import { execFileSync, spawn } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const HERE = fileURLToPath(new URL('./', import.meta.url));
const SUITE_PACKAGE = '@modelcontextprotocol/conformance';
const SUITE_VERSION = '0.2.0-alpha.12';
const SUITE_DIR = join(ROOT, 'node_modules', SUITE_PACKAGE);
const FIXTURE = 'test/fixtures/conformance-server.js';
const RESULTS = join(HERE, 'results');
const EXTRA_GATED = ['server-session-lifecycle'];
const INFORMATIONAL = ['server-sse-polling'];
const SCENARIO_TIMEOUT_MS = Number(process.env.CONFORMANCE_SCENARIO_TIMEOUT_MS || 30_000);
const WATCHDOG_SLACK_MS = 15_000;
const DEADLINE_MS = Number(process.env.CONFORMANCE_DEADLINE_MS || 15 * 60_000);
const STARTUP_TIMEOUT_MS = 30_000;

const { values: cli } = parseArgs({
  options: { 'expected-failures': { type: 'string', default: join(HERE, 'expected-failures.yml') } },
});

// ---- child processes: every one is killed on the way out ------------------------

const children = new Set();

function track(child) {
  children.add(child);
  child.on('exit', () => children.delete(child));
  return child;
}

async function killAll() {
  const waits = [...children].map(
    (child) =>
      new Promise((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        const force = setTimeout(() => child.kill('SIGKILL'), 5000);
        child.once('exit', () => {
          clearTimeout(force);
          resolve();
        });
        child.kill('SIGTERM');
      }),
  );
  await Promise.all(waits);
}

process.on('exit', () => {
  for (const child of children) child.kill('SIGKILL');
});
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    console.error(`conformance: ${signal}, stopping`);
    killAll().finally(() => process.exit(130));
  });
}
const deadline = setTimeout(() => {
  console.error(`conformance: deadline of ${DEADLINE_MS} ms exceeded, stopping`);
  killAll().finally(() => process.exit(1));
}, DEADLINE_MS);
deadline.unref();

// ---- setup ------------------------------------------------------------------------

function fail(message) {
  console.error(`conformance: ${message}`);
  killAll().finally(() => process.exit(1));
  return new Promise(() => {});
}

function suiteNode() {
  if (process.env.CONFORMANCE_NODE) return process.env.CONFORMANCE_NODE;
  if (Number(process.versions.node.split('.')[0]) >= 22) return process.execPath;
  const out = execFileSync('npx', ['-y', 'node@24', '-p', 'process.execPath'], {
    cwd: ROOT,
    encoding: 'utf8',
    timeout: 300_000,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return out.trim().split('\n').pop();
}

/** Parses expected-failures.yml: `server:` then `- scenario  # reason` (or the reason in comments just above). */
function readExpected(file) {
  const entries = new Map();
  const errors = [];
  let inServer = false;
  let comments = [];
  readFileSync(file, 'utf8')
    .split('\n')
    .forEach((raw, index) => {
      const line = raw.trimEnd();
      const where = `${relative(ROOT, file)}:${index + 1}`;
      if (/^\s*(#.*)?$/.test(line)) {
        const comment = line.match(/^\s+#\s?(.*)$/);
        comments = comment && inServer ? [...comments, comment[1].trim()] : [];
        return;
      }
      const key = line.match(/^([A-Za-z_-]+):\s*(\[\])?\s*(#.*)?$/);
      if (key) {
        inServer = key[1] === 'server';
        comments = [];
        return;
      }
      const entry = line.match(/^\s+-\s+([A-Za-z0-9_./-]+)\s*(?:#\s*(.*))?$/);
      if (!inServer) {
        if (entry) return; // another mode's list
        errors.push(`${where}: cannot parse "${line}"`);
        return;
      }
      if (!entry) {
        errors.push(
          `${where}: expected "- scenario  # reason", got "${line.trim()}" (per-check entries are not supported)`,
        );
        return;
      }
      const reason = [...comments, entry[2] ?? ''].join(' ').trim();
      if (!reason) errors.push(`${where}: ${entry[1]} has no reason (add a # comment)`);
      entries.set(entry[1], reason);
      comments = [];
    });
  return { entries, errors };
}

function startServer(name, args) {
  const log = createWriteStream(join(RESULTS, `${name}.server.log`));
  const child = track(spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] }));
  child.stderr.pipe(log);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`${name} printed no URL within ${STARTUP_TIMEOUT_MS} ms`)),
      STARTUP_TIMEOUT_MS,
    );
    const lines = createInterface({ input: child.stdout });
    lines.once('line', (line) => {
      clearTimeout(timer);
      if (/^http:\/\/\S+$/.test(line)) resolve({ url: line, child });
      else reject(new Error(`${name} printed "${line}" instead of its URL`));
      lines.on('line', (more) => log.write(`${more}\n`));
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited (${signal ?? code}) before printing its URL; see ${relative(ROOT, log.path)}`));
    });
  });
}

// ---- the suite ----------------------------------------------------------------------

const RESULT_DIR = /^server-(.+)-\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d-\d{3}Z$/;

/**
 * Runs the suite once (`args` picks the suite or a scenario) against `url`, writing
 * checks under `outDir`; resolves with the scenarios it started and whether it was killed.
 */
function runSuite(node, url, args, outDir, logName) {
  const log = createWriteStream(join(RESULTS, logName), { flags: 'a' });
  const child = track(
    spawn(
      node,
      [
        join(SUITE_DIR, 'dist/index.js'),
        'server',
        '--url',
        url,
        '--timeout',
        String(SCENARIO_TIMEOUT_MS),
        '-o',
        outDir,
        ...args,
      ],
      { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NO_COLOR: '1', FORCE_COLOR: '0' } },
    ),
  );
  const started = [];
  let announced;
  let killed;
  let watchdog;
  const arm = () => {
    clearTimeout(watchdog);
    watchdog = setTimeout(() => {
      killed = started.at(-1) ?? args.join(' ');
      log.write(`\n[run.mjs] no progress for ${SCENARIO_TIMEOUT_MS + WATCHDOG_SLACK_MS} ms: killed\n`);
      child.kill('SIGKILL');
    }, SCENARIO_TIMEOUT_MS + WATCHDOG_SLACK_MS);
  };
  arm();
  child.stderr.pipe(log, { end: false });
  createInterface({ input: child.stdout }).on('line', (line) => {
    log.write(`${line}\n`);
    const scenario = line.match(/^=== Running scenario: (\S+) ===$/);
    if (scenario) {
      started.push(scenario[1]);
      arm();
    }
    const header = line.match(/^Running .* \((\d+) scenarios\) against /);
    if (header) announced = Number(header[1]);
  });
  return new Promise((resolve) => {
    child.once('exit', (code, signal) => {
      clearTimeout(watchdog);
      log.end();
      resolve({ started, announced, killed, code, signal });
    });
  });
}

/** The checks of every scenario with a result under `outDir`, by scenario name. */
function readChecks(outDir) {
  const byScenario = new Map();
  if (!existsSync(outDir)) return byScenario;
  for (const dir of readdirSync(outDir).sort()) {
    const match = dir.match(RESULT_DIR);
    const file = join(outDir, dir, 'checks.json');
    if (match && existsSync(file)) byScenario.set(match[1], JSON.parse(readFileSync(file, 'utf8')));
  }
  return byScenario;
}

function outcome(checks, killedHere) {
  if (!checks) return { status: killedHere ? 'killed' : 'missing', failed: ['no-result'], warnings: 0 };
  const failed = [...new Set(checks.filter((c) => c.status === 'FAILURE').map((c) => c.id))].sort();
  const warnings = checks.filter((c) => c.status === 'WARNING').length;
  return { status: failed.length > 0 ? 'fail' : 'pass', failed, warnings };
}

const sameFailure = (a, b) => a.status !== 'pass' && b.status !== 'pass' && a.failed.join() === b.failed.join();

function cell(o) {
  if (o.status === 'pass') return o.warnings ? `pass (${o.warnings} warn)` : 'pass';
  if (o.status === 'killed') return 'KILLED (timeout)';
  if (o.status === 'missing') return 'NO RESULT';
  return `FAIL ${o.failed.join(',')}`;
}

/** Runs the gated and informational scenarios against one target. */
async function runTarget(node, name, url) {
  const outDir = join(RESULTS, name);
  const suite = await runSuite(node, url, ['--suite', 'active'], outDir, `${name}.suite.log`);
  const killed = new Set(suite.killed ? [suite.killed] : []);
  const gated = [...suite.started];
  for (const scenario of EXTRA_GATED.filter((s) => !gated.includes(s))) {
    const run = await runSuite(node, url, ['--scenario', scenario], outDir, `${name}.suite.log`);
    if (run.killed) killed.add(scenario);
    gated.push(scenario);
  }
  for (const scenario of INFORMATIONAL) {
    const run = await runSuite(node, url, ['--scenario', scenario], outDir, `${name}.suite.log`);
    if (run.killed) killed.add(scenario);
  }
  return { suite, gated, killed, checks: readChecks(outDir) };
}

// ---- main ---------------------------------------------------------------------------

const installed = join(SUITE_DIR, 'package.json');
if (!existsSync(installed)) await fail(`${SUITE_PACKAGE} is not installed (npm ci)`);
const { version } = JSON.parse(readFileSync(installed, 'utf8'));
if (version !== SUITE_VERSION) await fail(`${SUITE_PACKAGE} is ${version}, this script expects ${SUITE_VERSION}`);
if (!existsSync(join(ROOT, 'dist/main/cli/main.js'))) await fail('dist/ is missing: npm run build first');

const expected = readExpected(cli['expected-failures']);
rmSync(RESULTS, { recursive: true, force: true });
mkdirSync(RESULTS, { recursive: true });

const node = suiteNode();
const nodeVersion = execFileSync(node, ['--version'], { encoding: 'utf8' }).trim();
console.log(`conformance: ${SUITE_PACKAGE}@${version} on node ${nodeVersion}; servers on node ${process.version}`);

let servers;
try {
  servers = await Promise.all([
    startServer('broker', [
      'dist/main/cli/main.js',
      'serve',
      FIXTURE,
      '--port',
      '0',
      '--threads',
      '3',
      '--max-sessions',
      '1000',
      '--quiet',
    ]),
    startServer('plain-sdk', ['test/conformance/plain-sdk.js', '--port', '0']),
  ]);
} catch (error) {
  await fail(error instanceof Error ? error.message : String(error));
}
const [broker, plain] = servers;
console.log(`conformance: broker ${broker.url} (3 handler threads), plain SDK ${plain.url}`);

const results = {};
for (const [name, server] of [
  ['broker', broker],
  ['plain-sdk', plain],
]) {
  const started = Date.now();
  results[name] = await runTarget(node, name, server.url);
  const { suite } = results[name];
  const how = suite.killed ? `killed during ${suite.killed}` : `exit ${suite.code ?? suite.signal}`;
  console.log(`conformance: ${name}: ${suite.started.length} active scenarios run, ${how}, ${Date.now() - started} ms`);
}
const exited = Object.entries({ broker, 'plain-sdk': plain }).filter(
  ([, s]) => s.child.exitCode !== null || s.child.signalCode !== null,
);
await killAll();

// ---- compare --------------------------------------------------------------------------

const problems = [...expected.errors];
for (const [name] of exited) problems.push(`${name}: the server exited during the run; see results/${name}.server.log`);
const gated = [...new Set([...results.broker.gated, ...results['plain-sdk'].gated])];
for (const [name, result] of Object.entries(results)) {
  const { announced, killed } = result.suite;
  if (killed) problems.push(`${name}: the suite was killed (no progress during ${killed})`);
  if (announced !== undefined && result.suite.started.length < announced) {
    problems.push(`${name}: the suite announced ${announced} scenarios but started ${result.suite.started.length}`);
  }
}
for (const scenario of expected.entries.keys()) {
  if (!gated.includes(scenario)) {
    problems.push(`${relative(ROOT, cli['expected-failures'])} lists ${scenario}, which is not a gated scenario`);
  }
}

const rows = [];
let expectedCount = 0;
for (const scenario of gated) {
  const b = outcome(results.broker.checks.get(scenario), results.broker.killed.has(scenario));
  const p = outcome(results['plain-sdk'].checks.get(scenario), results['plain-sdk'].killed.has(scenario));
  const listed = expected.entries.has(scenario);
  let verdict;
  let problem;
  if (!listed) {
    if (b.status === 'pass') {
      verdict = p.status === 'pass' ? 'ok' : 'ok (plain SDK fails)';
    } else if (p.status === 'pass') {
      verdict = 'BROKER';
      problem = `${scenario}: fails against the broker (${b.failed.join(', ')}) but passes against the plain SDK`;
    } else {
      verdict = 'UNEXPECTED';
      problem = `${scenario}: fails against the broker (${b.failed.join(', ')}) and is not listed as expected`;
    }
  } else if (sameFailure(b, p)) {
    verdict = 'expected';
    expectedCount++;
  } else if (b.status === 'pass' && p.status === 'pass') {
    verdict = 'STALE';
    problem = `${scenario}: listed as expected but passes on both: remove it from expected-failures.yml`;
  } else if (b.status === 'pass') {
    verdict = 'DIVERGES';
    problem = `${scenario}: listed, passes against the broker but the plain SDK fails (${p.failed.join(', ')})`;
  } else if (p.status === 'pass') {
    verdict = 'BROKER';
    problem = `${scenario}: listed, but only the broker fails (${b.failed.join(', ')}): a broker bug, not an expected failure`;
  } else {
    verdict = 'DIVERGES';
    problem = `${scenario}: listed, but fails differently: broker ${b.failed.join(', ')}; plain SDK ${p.failed.join(', ')}`;
  }
  if (problem) problems.push(problem);
  rows.push({ scenario, broker: b, plain: p, listed, verdict });
}

const info = INFORMATIONAL.map((scenario) => ({
  scenario,
  broker: outcome(results.broker.checks.get(scenario), results.broker.killed.has(scenario)),
  plain: outcome(results['plain-sdk'].checks.get(scenario), results['plain-sdk'].killed.has(scenario)),
  verdict: 'info',
}));

const count = (list, target) => list.filter((r) => r[target].status === 'pass').length;

function table(list) {
  const lines = list.map((r) => [r.scenario, cell(r.broker), cell(r.plain), r.verdict]);
  const head = ['scenario', 'broker', 'plain SDK', 'verdict'];
  const widths = head.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i].length)));
  const fmt = (l) =>
    l
      .map((c, i) => c.padEnd(widths[i]))
      .join('  ')
      .trimEnd();
  return [fmt(head), fmt(widths.map((w) => '-'.repeat(w))), ...lines.map(fmt)].join('\n');
}

const summary = [
  table(rows),
  '',
  `informational (pending scenarios, never gating):`,
  table(info),
  '',
  ...[...expected.entries].map(([scenario, reason]) => `expected failure: ${scenario}: ${reason}`),
  `${gated.length} gated scenarios: ${count(rows, 'broker')} pass against the broker, ${count(rows, 'plain')} against ` +
    `the plain SDK; ${expectedCount} expected failures; ${problems.length} problems`,
  ...problems.map((p) => `  problem: ${p}`),
].join('\n');
console.log(`\n${summary}`);
writeFileSync(join(RESULTS, 'summary.txt'), `${summary}\n`);
writeFileSync(
  join(RESULTS, 'summary.json'),
  `${JSON.stringify({ suite: `${SUITE_PACKAGE}@${version}`, node: nodeVersion, gated: rows, informational: info, problems }, null, 2)}\n`,
);
console.log(`\nresults: ${relative(ROOT, RESULTS)}/`);
process.exit(problems.length > 0 ? 1 : 0);
