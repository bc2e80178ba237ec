/**
 * The load generator, in a process of its own (forked by procs.js with an IPC
 * channel), so it never shares an event loop with the server under test.
 * Every job is bounded in count and time. Jobs, as { id, cmd, args }:
 *
 *   cannon { url, kind: 'initialize' | 'call' | 'own', connections, durationS, amount?, tool?, sessions? }
 *            autocannon: initialize floods (no session id, never DELETE),
 *            tools/call spread round-robin over the given sessions, or
 *            ('own') each connection initializes a session of its own on
 *            itself and then calls with it, as a client with a keep-alive
 *            connection does (its initialize and initialized are not counted)
 *   open   { url, count, concurrency }   sessions a client would hold (initialize + initialized)
 *   check  { url, sessionId, tool }      one tools/call, its text (a correctness check)
 *   clients { url, clients, perClient }  N clients, each M sequential raw initializes (fetch)
 *   fresh  { url, windowMs, intervalMs } a new client trying to start a session until it gets one
 */
import autocannon from 'autocannon';
import {
  CALLS,
  callBody,
  callTool,
  INITIALIZE_BODY,
  INITIALIZED_BODY,
  initialize,
  openSession,
  POST_HEADERS,
  sessionHeaders,
} from './mcp.js';

function summarize(result, extra = {}) {
  const statusCodes = {};
  for (const [code, stat] of Object.entries(result.statusCodeStats ?? {})) statusCodes[code] = stat.count;
  return {
    ok: result['2xx'],
    non2xx: result.non2xx,
    errors: result.errors,
    timeouts: result.timeouts,
    durationS: result.duration,
    rps: result['2xx'] / result.duration,
    latencyMs: {
      p50: result.latency.p50,
      p90: result.latency.p90,
      p99: result.latency.p99,
      mean: result.latency.average,
      max: result.latency.max,
    },
    statusCodes,
    ...extra,
  };
}

function cannon({ url, kind, connections, durationS = 3, amount, tool, sessions, timeoutS = 30, maxDurationS }) {
  // Requests that set a connection up ('own': initialize, initialized), not counted as calls.
  let setupCount = 0;
  const options = {
    url,
    connections: amount === undefined ? connections : Math.min(connections, amount),
    timeout: timeoutS,
    method: 'POST',
  };
  if (amount !== undefined) options.amount = amount;
  else options.duration = durationS;
  if (kind === 'initialize') {
    options.headers = POST_HEADERS;
    options.body = INITIALIZE_BODY;
  } else if (kind === 'call') {
    if (!CALLS[tool]) throw new Error(`unknown tool ${tool}`);
    if (!sessions?.length) throw new Error('call needs sessions');
    let next = 0;
    options.requests = [
      {
        method: 'POST',
        setupRequest: (request) => {
          const sessionId = sessions[next % sessions.length];
          next++;
          request.headers = sessionHeaders(sessionId);
          request.body = callBody(tool, next);
          return request;
        },
      },
    ];
  } else if (kind === 'own') {
    if (!CALLS[tool]) throw new Error(`unknown tool ${tool}`);
    let next = 0;
    const calls = {
      method: 'POST',
      setupRequest: (request, context) => {
        next++;
        request.headers = sessionHeaders(context.sessionId);
        request.body = callBody(tool, next);
        return request;
      },
    };
    // A connection runs through the list once per run: its session, then calls on it.
    options.requests = [
      {
        method: 'POST',
        headers: POST_HEADERS,
        body: INITIALIZE_BODY,
        onResponse: (_status, _body, context, headers) => {
          context.sessionId = headers['mcp-session-id'] ?? headers['Mcp-Session-Id'];
        },
      },
      {
        method: 'POST',
        setupRequest: (request, context) => {
          request.headers = sessionHeaders(context.sessionId);
          request.body = INITIALIZED_BODY;
          return request;
        },
      },
      ...Array.from({ length: 200_000 }, () => calls),
    ];
    setupCount = 2 * options.connections;
  } else throw new Error(`unknown kind ${kind}`);
  return new Promise((resolve, reject) => {
    let stopped = false;
    const instance = autocannon(options, (error, result) => {
      clearTimeout(guard);
      if (error) reject(error);
      else if (setupCount > 0) {
        // Calls only, per second of the run asked for: autocannon's own duration also counts the
        // wait for a few requests still open when the run ends (seconds, with these connections).
        result['2xx'] -= setupCount;
        const summary = summarize(result, { stoppedByGuard: stopped, setupRequests: setupCount });
        resolve({ ...summary, rps: result['2xx'] / durationS, autocannonDurationS: result.duration });
      } else resolve(summarize(result, { stoppedByGuard: stopped }));
    });
    // A count-bounded run is also bounded in time.
    const guard = setTimeout(
      () => {
        stopped = true;
        instance.stop();
      },
      (maxDurationS ?? (amount !== undefined ? 120 : durationS + 30)) * 1000,
    );
  });
}

async function open({ url, count, concurrency = 8 }) {
  const ids = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, count) }, async () => {
      while (next < count) {
        next++;
        ids.push(await openSession(url));
      }
    }),
  );
  return { sessions: ids };
}

async function clients({ url, clients: n, perClient }) {
  const statuses = {};
  const start = performance.now();
  await Promise.all(
    Array.from({ length: n }, async () => {
      for (let i = 0; i < perClient; i++) {
        const { status } = await initialize(url);
        statuses[status] = (statuses[status] ?? 0) + 1;
      }
    }),
  );
  return { statuses, ms: performance.now() - start };
}

async function fresh({ url, windowMs = 10_000, intervalMs = 1000 }) {
  const attempts = [];
  const start = performance.now();
  for (;;) {
    const at = performance.now() - start;
    const r = await initialize(url);
    attempts.push({ atMs: at, status: r.status, ms: r.ms, retryAfter: r.retryAfter });
    if (r.status === 200) {
      return { admitted: true, firstOkAtMs: at, firstOkLatencyMs: r.ms, attempts };
    }
    if (performance.now() - start + intervalMs > windowMs) return { admitted: false, attempts, windowMs };
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

const handlers = {
  cannon,
  open,
  clients,
  fresh,
  check: ({ url, sessionId, tool }) => callTool(url, sessionId, tool),
};

process.on('message', async ({ id, cmd, args }) => {
  try {
    const handler = handlers[cmd];
    if (!handler) throw new Error(`unknown command ${cmd}`);
    process.send({ id, result: await handler(args ?? {}) });
  } catch (error) {
    process.send({ id, error: error instanceof Error ? (error.stack ?? error.message) : String(error) });
  }
});
process.on('disconnect', () => process.exit(0));
