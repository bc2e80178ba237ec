#!/usr/bin/env node
/**
 * The command line: `mcp-session-broker serve [module] [flags]`.
 */
import cluster from 'node:cluster';
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { AUTHORITY_ENV, startAuthority, startClusterBroker } from '../cluster/index.js';
import { resolveServeOptions, resolveSessionBrokerOptions, type ServeOptions, serve } from '../front/index.js';
import { type CliServeOptions, flagMessage, parseBrokerArgs, parseServeArgs, USAGE } from './args.js';

/** What a cluster worker tells the primary once it serves. */
const READY = 'mcp-session-broker:ready';
/** What the primary tells its workers to shut down. */
const SHUTDOWN = 'mcp-session-broker:shutdown';
/** Workers replaced after an unexpected exit, at most this many per minute (then the primary gives up). */
const MAX_RESPAWNS_PER_MINUTE = 10;

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as {
    version: string;
  };
  return pkg.version;
}

function usageError(error: unknown): never {
  const message = flagMessage(error instanceof Error ? error.message : String(error));
  process.stderr.write(`mcp-session-broker: ${message}\nTry 'mcp-session-broker --help'.\n`);
  process.exit(2);
}

function fail(message: string): never {
  process.stderr.write(`mcp-session-broker: ${message}\n`);
  process.exit(1);
}

/** The admission limits of parsed serve flags (they go to the authority with --workers). */
function splitAdmission(options: CliServeOptions): { admission: Record<string, unknown>; rest: ServeOptions } {
  const { maxSessions, evict, rate, idleTimeoutMs, maxLifetimeMs, busyTimeoutMs, perClient, workers, ...rest } =
    options;
  void workers;
  const admission = { maxSessions, evict, rate, idleTimeoutMs, maxLifetimeMs, busyTimeoutMs, perClient };
  return {
    admission: Object.fromEntries(Object.entries(admission).filter(([, v]) => v !== undefined)),
    rest,
  };
}

async function main(argv: string[]): Promise<void> {
  if (argv[0] === 'broker') return runBroker(argv.slice(1));
  let parsed: ReturnType<typeof parseServeArgs>;
  try {
    parsed = parseServeArgs(argv);
    if (typeof parsed === 'object') {
      // Validate everything before starting anything, so a bad flag never leaves threads behind.
      const { admission, rest } = splitAdmission(parsed);
      if (parsed.workers !== undefined) {
        // Each worker serves under the authority; the limits are checked where it starts.
        resolveSessionBrokerOptions({ ...rest, authority: 'check' });
        resolveServeOptions({ ...rest, authority: 'check' });
        resolveSessionBrokerOptions({ ...rest, ...admission, threads: 0 });
      } else {
        resolveSessionBrokerOptions(parsed);
        resolveServeOptions(parsed);
      }
    }
  } catch (error) {
    usageError(error);
  }
  if (parsed === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  if (parsed === 'version') {
    process.stdout.write(`${version()}\n`);
    return;
  }
  if (parsed.workers !== undefined) {
    if (cluster.isPrimary) return runPrimary(parsed, parsed.workers);
    return runWorker(parsed, parsed.workers);
  }
  const { workers: _workers, ...options } = parsed;
  let served: Awaited<ReturnType<typeof serve>>;
  try {
    served = await serve(options);
  } catch (error) {
    fail(error instanceof Error ? error.message : String(error));
  }
  served.broker.on('error', (error) => fail(error.message));
  process.stdout.write(`${served.url}\n`);
  stopOnSignals(() => served.close());
}

/** SIGINT/SIGTERM: a graceful stop; a second signal exits at once. */
function stopOnSignals(close: () => Promise<void>): void {
  let signals = 0;
  const stop = (signal: NodeJS.Signals) => {
    signals++;
    if (signals > 1) process.exit(130);
    process.stderr.write(`mcp-session-broker: ${signal}: shutting down\n`);
    close().then(
      () => process.exit(0),
      (error: unknown) => {
        process.stderr.write(`mcp-session-broker: shutdown failed: ${String(error)}\n`);
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

/** `broker`: a standalone authority, until SIGINT/SIGTERM. */
async function runBroker(argv: string[]): Promise<void> {
  let options: ReturnType<typeof parseBrokerArgs>;
  try {
    options = parseBrokerArgs(argv);
  } catch (error) {
    usageError(error);
  }
  if (options === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  const { quiet, ...rest } = options;
  let authority: Awaited<ReturnType<typeof startAuthority>>;
  try {
    authority = await startAuthority({
      ...rest,
      ...(quiet ? {} : { onEvent: (e) => process.stderr.write(`${lifecycleLine(e)}\n`) }),
    });
  } catch (error) {
    if (error instanceof TypeError || error instanceof RangeError) usageError(error);
    fail(error instanceof Error ? error.message : String(error));
  }
  process.stdout.write(`${authority.address}\n`);
  stopOnSignals(() => authority.close());
}

function lifecycleLine(e: import('../../shared/types.js').SessionEvent): string {
  return e.type === 'created'
    ? `session created id=${e.id} client=${e.clientKey} process=${e.owner}`
    : `session closed id=${e.id} client=${e.clientKey} process=${e.owner} reason=${e.reason} durationMs=${e.durationMs}`;
}

/**
 * `serve --workers N` in the primary: the authority, then N workers on the
 * port. Prints the URL once every worker serves; replaces a worker that dies
 * (its sessions close with reason error); stops them all on SIGINT/SIGTERM.
 */
async function runPrimary(parsed: CliServeOptions, workers: number): Promise<void> {
  const { admission } = splitAdmission(parsed);
  let authority: Awaited<ReturnType<typeof startClusterBroker>>;
  try {
    authority = await startClusterBroker(admission as { maxSessions: number });
  } catch (error) {
    fail(error instanceof Error ? error.message : String(error));
  }
  let stopping = false;
  const respawns: number[] = [];
  const fork = () => cluster.fork({ [AUTHORITY_ENV]: authority.address });
  let url: string | undefined;
  const ready = new Set<number>();
  cluster.on('message', (worker, message: unknown) => {
    if (typeof message !== 'object' || message === null || (message as { type?: unknown }).type !== READY) return;
    ready.add(worker.id);
    url ??= String((message as { url?: unknown }).url);
    if (ready.size === workers) process.stdout.write(`${url}\n`);
  });
  cluster.on('exit', (worker, code, signal) => {
    const wasReady = ready.delete(worker.id);
    if (stopping) {
      if (Object.keys(cluster.workers ?? {}).length === 0) void authority.close().then(() => process.exit(0));
      return;
    }
    if (!wasReady) {
      // A worker that could not start (the line it printed says why): the others would fail alike.
      void authority.close().then(() => process.exit(1));
      return;
    }
    const now = Date.now();
    respawns.push(now);
    while (respawns.length > 0 && (respawns[0] as number) < now - 60_000) respawns.shift();
    if (respawns.length > MAX_RESPAWNS_PER_MINUTE) {
      process.stderr.write(`mcp-session-broker: workers keep dying (${respawns.length} in a minute): giving up\n`);
      void authority.close().then(() => process.exit(1));
      return;
    }
    process.stderr.write(
      `mcp-session-broker: worker ${worker.process.pid} exited (${signal ?? `code ${code}`}); its sessions closed with reason error; starting another\n`,
    );
    fork();
  });
  for (let i = 0; i < workers; i++) fork();
  stopOnSignals(async () => {
    stopping = true;
    for (const worker of Object.values(cluster.workers ?? {})) worker?.send({ type: SHUTDOWN });
    // The exit handler closes the authority and exits once the last worker is gone.
    await new Promise(() => undefined);
  });
}

/** A `serve --workers N` worker: serves the port under the primary's authority. */
async function runWorker(parsed: CliServeOptions, workers: number): Promise<void> {
  const { rest } = splitAdmission(parsed);
  const threads = rest.threads ?? Math.max(1, Math.floor(availableParallelism() / workers));
  let served: Awaited<ReturnType<typeof serve>>;
  try {
    served = await serve({ ...rest, threads, authority: process.env[AUTHORITY_ENV] as string });
  } catch (error) {
    fail(error instanceof Error ? error.message : String(error));
  }
  served.broker.on('error', (error) => fail(error.message));
  const stop = () =>
    served.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  process.on('message', (message: unknown) => {
    if (typeof message === 'object' && message !== null && (message as { type?: unknown }).type === SHUTDOWN) {
      void stop();
    }
  });
  // The terminal's Ctrl-C reaches every process of the group: the primary coordinates.
  process.on('SIGINT', () => undefined);
  process.on('SIGTERM', () => void stop());
  process.send?.({ type: READY, url: served.url });
}

await main(process.argv.slice(2));
