/**
 * Property-based fuzzing of the HTTP front with fast-check: valid `initialize`
 * and `tools/call` requests, mutated, and random ones (methods, headers,
 * bodies, session ids). After every request: no crash, no 5xx but 503 by
 * policy, every error body a JSON-RPC error. Afterwards: counters consistent,
 * and once every session is closed, every slot and thread map is clean.
 * FUZZ_RUNS=N runs more cases; FUZZ_SEED=N replays a seed. Under CI the seed
 * is fixed, so main stays reproducible; elsewhere each run explores new cases.
 */
import { LATEST_PROTOCOL_VERSION } from '@modelcontextprotocol/sdk/types.js';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Served } from '../dist/main/index.js';
import { ACCEPT, initializeBody, until } from './helpers.js';

const RUNS = Number(process.env.FUZZ_RUNS ?? 200);
const SEED = process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) : process.env.CI ? 20_261_126 : undefined;

let served: Served;
const created = new Set<string>();

beforeAll(async () => {
  const { start } = await import('./helpers.js');
  served = await start({ maxSessions: 8, threads: 2, maxBodyBytes: 16 * 1024, perClient: { maxSessions: 6 } });
});
afterAll(async () => {
  await served.close();
});

const hex48 = fc.stringMatching(/^[0-9a-f]{48}$/);
const sessionIdArb = fc.oneof(
  fc.constant(undefined),
  fc.constant('known'),
  fc.constant('known-flipped'),
  hex48,
  fc.string({ maxLength: 80 }),
);
const acceptArb = fc.oneof(
  fc.constant(ACCEPT),
  fc.constant('application/json'),
  fc.constant('text/event-stream'),
  fc.constant(undefined),
  fc.string({ maxLength: 40 }),
);
const contentTypeArb = fc.oneof(
  fc.constant('application/json'),
  fc.constant('application/json; charset=utf-8'),
  fc.constant('text/plain'),
  fc.constant(undefined),
  fc.string({ maxLength: 40 }),
);
const versionArb = fc.oneof(fc.constant(undefined), fc.constant(LATEST_PROTOCOL_VERSION), fc.string({ maxLength: 20 }));
const idArb = fc.oneof(fc.integer(), fc.string({ maxLength: 10 }), fc.constant(null), fc.constant(undefined));

/** A valid message, then maybe a field dropped or replaced by random JSON. */
function mutated(base: Record<string, unknown>) {
  return fc
    .tuple(fc.constantFrom('keep', 'drop', 'replace'), fc.constantFrom(...Object.keys(base)), fc.jsonValue())
    .map(([how, key, value]) => {
      if (how === 'keep') return base;
      const copy: Record<string, unknown> = { ...base };
      if (how === 'drop') delete copy[key];
      else copy[key] = value;
      return copy;
    });
}

const callArb = fc.tuple(fc.constantFrom('echo', 'whoami', 'nope'), fc.jsonValue(), idArb).map(([name, args, id]) => ({
  jsonrpc: '2.0',
  id: id ?? 7,
  method: 'tools/call',
  params: { name, arguments: args },
}));
const messageArb = fc.oneof(
  mutated(initializeBody(1)),
  callArb.chain((call) => mutated(call)),
  fc.constant({ jsonrpc: '2.0', method: 'notifications/initialized' }),
  fc.constant({ jsonrpc: '2.0', id: 3, method: 'ping' }),
);
const bodyArb = fc.oneof(
  messageArb.map((m) => JSON.stringify(m)),
  fc.array(messageArb, { minLength: 0, maxLength: 3 }).map((batch) => JSON.stringify(batch)),
  fc.jsonValue().map((v) => JSON.stringify(v)),
  fc.string({ maxLength: 200 }),
  fc.constant('x'.repeat(20 * 1024)),
  fc.constant(undefined),
);
const randomArb = fc.record({
  method: fc.constantFrom('POST', 'POST', 'POST', 'GET', 'DELETE', 'PUT', 'OPTIONS', 'PATCH'),
  sessionId: sessionIdArb,
  accept: acceptArb,
  contentType: contentTypeArb,
  version: versionArb,
  body: bodyArb,
});
/** Well-formed requests with at most one field of the body mutated: they reach sessions and tools. */
const initializeArb = mutated(initializeBody(1)).map((body) => ({
  method: 'POST',
  sessionId: undefined,
  accept: ACCEPT,
  contentType: 'application/json',
  version: undefined,
  body: JSON.stringify(body),
}));
const sessionCallArb = fc
  .tuple(
    fc.oneof(
      callArb.chain((call) => mutated(call)),
      fc.constant({ jsonrpc: '2.0', id: 5, method: 'tools/list' }),
    ),
    fc.constantFrom('known', 'known-flipped'),
  )
  .map(([body, sessionId]) => ({
    method: 'POST',
    sessionId,
    accept: ACCEPT,
    contentType: 'application/json',
    version: LATEST_PROTOCOL_VERSION,
    body: JSON.stringify(body),
  }));
const sessionOtherArb = fc.constantFrom('GET', 'DELETE').map((method) => ({
  method,
  sessionId: 'known',
  accept: method === 'GET' ? 'text/event-stream' : ACCEPT,
  contentType: undefined,
  version: LATEST_PROTOCOL_VERSION,
  body: undefined,
}));
const requestArb = fc.oneof(
  { weight: 3, arbitrary: initializeArb },
  { weight: 4, arbitrary: sessionCallArb },
  { weight: 1, arbitrary: sessionOtherArb },
  { weight: 4, arbitrary: randomArb },
);
type FuzzRequest = {
  method: string;
  sessionId: string | undefined;
  accept: string | undefined;
  contentType: string | undefined;
  version: string | undefined;
  body: string | undefined;
};

function pickKnown(flip: boolean): string | undefined {
  const ids = [...created];
  const id = ids[ids.length - 1];
  if (!id) return undefined;
  if (!flip) return id;
  const last = id.at(-1) === '0' ? '1' : '0';
  return id.slice(0, -1) + last;
}

async function send(r: FuzzRequest): Promise<{ status: number; type: string; text: string }> {
  const headers: Record<string, string> = {};
  if (r.accept !== undefined) headers.accept = r.accept;
  if (r.contentType !== undefined) headers['content-type'] = r.contentType;
  if (r.version !== undefined) headers['mcp-protocol-version'] = r.version;
  const sessionId =
    r.sessionId === 'known' ? pickKnown(false) : r.sessionId === 'known-flipped' ? pickKnown(true) : r.sessionId;
  if (sessionId !== undefined) headers['mcp-session-id'] = sessionId;
  const abort = new AbortController();
  // A GET stream stays open for the session's life: read what comes first, then hang up.
  const timer = setTimeout(() => abort.abort(), r.method === 'GET' ? 200 : 10_000);
  try {
    const res = await fetch(served.url, {
      method: r.method,
      headers,
      signal: abort.signal,
      ...(r.body !== undefined && r.method !== 'GET' ? { body: r.body } : {}),
    }).catch((error: unknown) => {
      if (abort.signal.aborted) return undefined;
      throw error;
    });
    if (!res) return { status: 0, type: '', text: '' };
    const text = await res.text().catch(() => '');
    const id = res.headers.get('mcp-session-id');
    if (res.status === 200 && id) created.add(id);
    return { status: res.status, type: res.headers.get('content-type') ?? '', text };
  } finally {
    clearTimeout(timer);
  }
}

function isValidHeader(value: string | undefined): boolean {
  return value === undefined || /^[\t\x20-\x7e]*$/.test(value);
}

describe('fuzzing the HTTP front', () => {
  it('answers every request within policy and never disturbs the server', async () => {
    await fc.assert(
      fc.asyncProperty(requestArb, async (r) => {
        // fetch itself refuses header values it cannot send: skip those cases.
        fc.pre([r.accept, r.contentType, r.version, r.sessionId].every(isValidHeader));
        const { status, type, text } = await send(r);
        if (status === 0) return; // a GET stream we hung up on
        expect(status >= 500 && status !== 503).toBe(false);
        if (status >= 400 && status !== 401) {
          expect(type).toMatch(/application\/json/);
          const body = JSON.parse(text) as { jsonrpc?: string; error?: { code?: unknown } };
          expect(body.jsonrpc).toBe('2.0');
          expect(typeof body.error?.code).toBe('number');
        }
      }),
      { numRuns: RUNS, endOnFailure: true, ...(SEED === undefined ? {} : { seed: SEED }) },
    );
    // The server is still healthy and serves a fresh client.
    expect((await fetch(served.url.replace(/\/mcp$/, '/healthz'))).status).toBe(200);
    const stats = await served.broker.stats();
    const closedTotal = Object.values(stats.closedTotal).reduce((a, b) => a + b, 0);
    expect(stats.createdTotal - closedTotal).toBe(stats.occupied);
    expect(stats.occupied).toBeLessThanOrEqual(8);
    // Close every session the fuzzer created; then everything is clean.
    for (const id of created) {
      await fetch(served.url, {
        method: 'DELETE',
        headers: { 'mcp-session-id': id, 'mcp-protocol-version': LATEST_PROTOCOL_VERSION },
      });
    }
    await until(async () => (await served.broker.stats()).occupied === 0, 10_000, 'every session to close').catch(
      async (error: unknown) => {
        throw new Error(`${String(error)}: ${JSON.stringify(await served.broker.stats())}`);
      },
    );
    const after = await served.broker.stats();
    expect(after).toMatchObject({ occupied: 0, live: 0, closing: 0, fifoLength: 0, transports: 0, waiting: 0 });
    expect(Object.values(after.transportsByThread).every((n) => n === 0)).toBe(true);
  }, 120_000);
});
