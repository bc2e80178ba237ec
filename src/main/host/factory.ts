/**
 * Loads a server module: its default export builds one MCP server per session.
 */
import { BrokerError } from '../../shared/errors.js';
import type { ServerFactory } from './host.js';

/** Imports the module at `moduleUrl` (a file URL), or the built-in example when undefined. */
export async function loadFactory(moduleUrl: string | undefined): Promise<ServerFactory> {
  const url = moduleUrl ?? new URL('./example-server.js', import.meta.url).href;
  let mod: { default?: unknown };
  try {
    mod = (await import(url)) as { default?: unknown };
  } catch (cause) {
    throw new BrokerError('ERR_INVALID_MODULE', `cannot load server module ${url}: ${String(cause)}`, { cause });
  }
  if (typeof mod.default !== 'function') {
    throw new BrokerError(
      'ERR_INVALID_MODULE',
      `server module ${url} must default-export a function (ctx) => McpServer | Promise<McpServer>`,
    );
  }
  return mod.default as ServerFactory;
}
