/**
 * The systems under test, by name: the broker (this package, from dist/) and
 * the baselines. Each `start(options)` resolves with
 * `{ url, live(), close(), stats?(), byThread?(), threads? }`.
 */
export const SYSTEMS = {
  broker: {
    describe: 'mcp-session-broker (dist/), serve() with the built-in example server',
    async start({
      maxSessions = 1000,
      threads = 2,
      jsonResponse = false,
      evict = 'oldest',
      idleTimeoutMs,
      module = new URL('./broker-module.js', import.meta.url).href,
      resumability,
      listeners,
    } = {}) {
      const { serve } = await import('../../dist/main/index.js');
      const served = await serve({
        port: 0,
        log: false,
        maxSessions,
        threads,
        jsonResponse,
        evict,
        module,
        ...(idleTimeoutMs === undefined ? {} : { idleTimeoutMs }),
        ...(resumability === undefined ? {} : { resumability }),
        ...(listeners === undefined ? {} : { listeners }),
      });
      return {
        url: served.url,
        threads,
        broker: served.broker,
        live: () => served.broker.transports(),
        resumeBytes: () => served.broker.resumeBytes(),
        byThread: () => served.broker.index.transportsByThread(),
        stats: () => served.broker.stats(),
        close: () => served.close(),
      };
    },
  },
  'plain-sdk': { module: '../baselines/plain-sdk.js', describe: 'SDK 1.32 as its examples use it, unbounded Map' },
  'sdk-example': { module: '../baselines/sdk-example.js', describe: 'SDK 1.32 examples: cap 1000 (503), 30 min idle' },
  'best-effort': { module: '../baselines/best-effort/index.js', describe: 'Rust mcp-session admission over threads' },
  fastmcp: { module: '../baselines/fastmcp.js', describe: 'fastmcp 4.20 httpStream' },
  tmcp: { module: '../baselines/tmcp.js', describe: 'tmcp 1.20 + @tmcp/transport-http 0.9' },
};

export async function startSystem(name, options = {}) {
  const system = SYSTEMS[name];
  if (!system) throw new Error(`unknown system ${name}`);
  if (system.start) return system.start(options);
  const module = await import(new URL(system.module, import.meta.url).href);
  return module.start(options);
}
