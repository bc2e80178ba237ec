/**
 * The compatibility table in the README, row by row: each popular client
 * library (pinned in devDependencies) through the CLI's server over real
 * HTTP: it initializes, lists and calls tools; whether it recovers from
 * eviction by itself, and with `recoveringFetch` where it takes a fetch;
 * whether it deletes its session on close; how a full server's 503 reaches it.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { recoveringFetch } from '../dist/main/client/index.js';
import type { Served, SessionClosedEvent, SessionCreatedEvent } from '../dist/main/index.js';
import { DRIVERS, type Driver } from './client-libraries.js';
import { rawInitialize, start, until } from './helpers.js';

let served: Served | undefined;
afterEach(async () => {
  await served?.close();
  served = undefined;
});

const NODE_MAJOR = Number(process.versions.node.split('.')[0]);

/** What the README's table says of each library (every field asserted below). */
interface Row {
  /** Sends DELETE for its session when closed. */
  readonly deletes: boolean;
  /** After its session is evicted, its next call succeeds with no help. */
  readonly recoversAlone: boolean;
  /** Sessions it opens per start. */
  readonly sessionsPerStart: number;
  /** How a full server's 503 reaches the caller: the connect fails, or the library connects with no tools. */
  readonly fullShowsAs: 'error' | 'no tools';
  /** What its failed call after eviction says (libraries that do not recover alone). */
  readonly evictedSays?: RegExp;
}

const TABLE: Record<string, Row> = {
  'MCP TypeScript SDK 1.x Client': {
    deletes: false,
    recoversAlone: false,
    sessionsPerStart: 1,
    fullShowsAs: 'error',
    evictedSays: /Session not found: it was evicted/,
  },
  'MCP TypeScript SDK 2.x client': {
    deletes: false,
    recoversAlone: false,
    sessionsPerStart: 1,
    fullShowsAs: 'error',
    evictedSays: /Session not found: it was evicted/,
  },
  'Vercel AI SDK MCP client': {
    deletes: true,
    recoversAlone: false,
    sessionsPerStart: 1,
    fullShowsAs: 'error',
    evictedSays: /MCP session expired/,
  },
  'OpenAI Agents SDK': {
    deletes: true,
    recoversAlone: false,
    sessionsPerStart: 1,
    fullShowsAs: 'error',
    evictedSays: /Session not found: it was evicted/,
  },
  'LangChain MCP adapters': {
    deletes: false,
    recoversAlone: false,
    sessionsPerStart: 1,
    fullShowsAs: 'error',
    evictedSays: /Session not found: it was evicted/,
  },
  'Mastra MCP client 2.x': {
    deletes: false,
    recoversAlone: false,
    sessionsPerStart: 1,
    fullShowsAs: 'no tools',
    evictedSays: /no echo tool/,
  },
  'Mastra MCP client 1.x': { deletes: false, recoversAlone: true, sessionsPerStart: 1, fullShowsAs: 'no tools' },
  'mcp-remote (stdio proxy)': { deletes: false, recoversAlone: true, sessionsPerStart: 2, fullShowsAs: 'error' },
};

function record(s: Served) {
  const created: SessionCreatedEvent[] = [];
  const closed: SessionClosedEvent[] = [];
  s.broker.on('created', (e) => created.push(e));
  s.broker.on('closed', (e) => closed.push(e));
  return { created, closed };
}

const outcome = (p: Promise<unknown>) =>
  p.then(
    (v) => ({ ok: true as const, value: v }),
    (e: unknown) => ({ ok: false as const, error: e instanceof Error ? e.message : String(e) }),
  );

describe.each(DRIVERS.map((d) => [d.name, d] as const))('%s', (_name, driver: Driver) => {
  const runs = NODE_MAJOR >= driver.minNode;
  const row = TABLE[driver.name] as Row;

  it.runIf(runs)(
    'initializes, lists and calls tools; deletes its session on close or not, as the table says',
    async () => {
      served = await start({ maxSessions: 10 });
      const events = record(served);
      const client = await driver.connect(served.url);
      expect(await client.list()).toEqual(expect.arrayContaining([expect.stringMatching(/echo$/)]));
      expect(await client.echo('hello')).toBe('hello');
      expect(events.created).toHaveLength(row.sessionsPerStart);
      const ids = events.created.map((e) => e.id);
      await client.close();
      const deleted = () => events.closed.some((e) => ids.includes(e.id) && e.reason === 'deleted');
      if (row.deletes) await until(deleted, 5_000, 'its DELETE');
      else {
        await new Promise((resolve) => setTimeout(resolve, 1_000));
        expect(deleted()).toBe(false);
      }
    },
  );

  it.runIf(runs)('after eviction: its next call fails or recovers by itself, as the table says', async () => {
    served = await start({ maxSessions: 2 });
    const client = await driver.connect(served.url);
    expect(await client.echo('before')).toBe('before');
    // Two more sessions evict every session it holds.
    await rawInitialize(served.url);
    await rawInitialize(served.url);
    const after = await outcome(client.echo('after'));
    if (row.recoversAlone) expect(after).toEqual({ ok: true, value: 'after' });
    else {
      expect(after.ok).toBe(false);
      expect(after.ok ? '' : after.error).toMatch(row.evictedSays ?? /./);
      // And it stays that way: the next call fails too.
      expect((await outcome(client.echo('still'))).ok).toBe(false);
    }
    await client.close().catch(() => undefined);
  });

  it.runIf(runs && driver.takesFetch)('with recoveringFetch: after eviction the next call succeeds', async () => {
    served = await start({ maxSessions: 2 });
    const recovered: string[] = [];
    const client = await driver.connect(
      served.url,
      recoveringFetch({ onRecover: (e) => recovered.push(e.reason ?? '') }),
    );
    expect(await client.echo('before')).toBe('before');
    await rawInitialize(served.url);
    await rawInitialize(served.url);
    expect(await client.echo('after')).toBe('after');
    expect(await client.echo('again')).toBe('again');
    expect(recovered).toEqual(['evicted']);
    await client.close().catch(() => undefined);
  });

  it.runIf(runs)('a full server (evict none): the connect fails and the 503 reaches the caller', async () => {
    served = await start({ maxSessions: 1, evict: 'none' });
    await rawInitialize(served.url);
    const refused = await outcome(driver.connect(served.url).then((client) => client.list()));
    if (row.fullShowsAs === 'error') {
      expect(refused.ok).toBe(false);
      console.log(`[${driver.name}] full: ${refused.ok ? '' : refused.error}`);
    } else expect(refused).toEqual({ ok: true, value: [] });
  });
});

describe('the SSE priming event and the Vercel AI SDK client (why `resumability: false` is documented for it)', () => {
  it.runIf(NODE_MAJOR >= 22)(
    'reports "Failed to parse message" for priming events; with resumability off it does not',
    async () => {
      const { createMCPClient } = await import('@ai-sdk/mcp');
      const parseErrors: Record<string, number> = {};
      for (const [mode, options] of [
        ['default', {}],
        ['off', { resumability: false as const }],
      ] as const) {
        const s = await start({ maxSessions: 10, ...options });
        const errors: string[] = [];
        const client = await createMCPClient({
          transport: { type: 'http', url: s.url },
          onUncaughtError: (error) => errors.push(error instanceof Error ? error.message : String(error)),
        });
        // The call itself succeeds either way.
        expect(await client.callTool({ name: 'echo', arguments: { text: mode } })).toMatchObject({
          content: [{ text: mode }],
        });
        await client.close();
        await s.close();
        parseErrors[mode] = errors.filter((e) => /Failed to parse message/.test(e)).length;
      }
      expect(parseErrors.default).toBeGreaterThan(0);
      expect(parseErrors.off).toBe(0);
    },
  );
});
