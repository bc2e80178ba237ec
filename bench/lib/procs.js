/**
 * Child processes of a benchmark: servers under test (host.js) and the load
 * generator (load.js), each with an IPC channel and commands answered as
 * promises with a timeout. Every child is registered and killed when the
 * benchmark ends, fails or is interrupted.
 */
import { fork } from 'node:child_process';

const children = new Set();

function killAll() {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
  children.clear();
}
process.on('exit', killAll);
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    killAll();
    process.exit(130);
  });
}

function rpc(child, label) {
  let next = 0;
  const pending = new Map();
  child.on('message', (message) => {
    const entry = pending.get(message.id);
    if (!entry) return;
    pending.delete(message.id);
    if (message.error) entry.reject(new Error(`${label}: ${message.error}`));
    else entry.resolve(message.result);
  });
  child.on('exit', (code, signal) => {
    children.delete(child);
    for (const entry of pending.values()) entry.reject(new Error(`${label} exited (${code ?? signal})`));
    pending.clear();
  });
  return (cmd, args = {}, timeoutMs = 120_000) =>
    new Promise((resolve, reject) => {
      const id = ++next;
      const timer = setTimeout(() => {
        pending.delete(id);
        reject(new Error(`${label}: ${cmd} timed out after ${timeoutMs} ms`));
      }, timeoutMs);
      pending.set(id, {
        resolve: (value) => {
          clearTimeout(timer);
          resolve(value);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      });
      child.send({ id, cmd, args });
    });
}

function spawn(script, execArgv, label) {
  const child = fork(new URL(script, import.meta.url), [], {
    execArgv,
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  children.add(child);
  const call = rpc(child, label);
  const exited = new Promise((resolve) => child.once('exit', resolve));
  return {
    child,
    call,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      await Promise.race([
        call('stop', {}, 15_000).catch(() => undefined),
        new Promise((resolve) => setTimeout(resolve, 15_000)),
      ]);
      const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
      await exited;
      clearTimeout(timer);
    },
    kill() {
      child.kill('SIGKILL');
      return exited;
    },
  };
}

/**
 * Starts a system in a server process of its own; resolves with its URL and
 * command channel.
 */
export async function startServer(system, options = {}, { heapMb } = {}) {
  const execArgv = ['--expose-gc'];
  if (heapMb) execArgv.push(`--max-old-space-size=${heapMb}`);
  // BENCH_CPU_PROF=DIR: profile the server process (every thread) with V8's CPU profiler.
  if (process.env.BENCH_CPU_PROF) execArgv.push('--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_CPU_PROF}`);
  const proc = spawn('./host.js', execArgv, `server ${system}`);
  try {
    const { url, pid } = await proc.call('start', { system, options }, 60_000);
    return { ...proc, system, url, pid };
  } catch (error) {
    await proc.kill();
    throw error;
  }
}

/** Starts the load generator process. */
export function startLoad() {
  const proc = spawn('./load.js', [], 'load generator');
  return { ...proc, stop: () => proc.kill() };
}
