#!/usr/bin/env node
/**
 * The command line: `mcp-session-broker serve [module] [flags]`.
 */
import { readFileSync } from 'node:fs';
import { resolveServeOptions, resolveSessionBrokerOptions, serve } from '../front/index.js';
import { flagMessage, parseServeArgs, USAGE } from './args.js';

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as {
    version: string;
  };
  return pkg.version;
}

async function main(argv: string[]): Promise<void> {
  let parsed: ReturnType<typeof parseServeArgs>;
  try {
    parsed = parseServeArgs(argv);
    if (typeof parsed === 'object') {
      // Validate everything before starting anything, so a bad flag never leaves threads behind.
      resolveSessionBrokerOptions(parsed);
      resolveServeOptions(parsed);
    }
  } catch (error) {
    const message = flagMessage(error instanceof Error ? error.message : String(error));
    process.stderr.write(`mcp-session-broker: ${message}\nTry 'mcp-session-broker --help'.\n`);
    process.exit(2);
  }
  if (parsed === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  if (parsed === 'version') {
    process.stdout.write(`${version()}\n`);
    return;
  }
  let served: Awaited<ReturnType<typeof serve>>;
  try {
    served = await serve(parsed);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    process.stderr.write(`mcp-session-broker: ${message}\n`);
    process.exit(1);
  }
  served.broker.on('error', (error) => {
    process.stderr.write(`mcp-session-broker: ${error.message}\n`);
    process.exit(1);
  });
  process.stdout.write(`${served.url}\n`);
  let signals = 0;
  const stop = (signal: NodeJS.Signals) => {
    signals++;
    if (signals > 1) process.exit(130);
    process.stderr.write(`mcp-session-broker: ${signal}: shutting down\n`);
    served.close().then(
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

await main(process.argv.slice(2));
