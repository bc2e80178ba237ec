/**
 * `recoveringFetch`: a `fetch` for any MCP client library that takes one. It
 * remembers the `initialize` exchange it carried; when the server answers 404
 * to a request that named a session (the session was evicted, expired or
 * deleted: the request reached no session, so nothing ran), it starts a new
 * session by replaying that initialize and `notifications/initialized`, sends
 * the failed request once more with the new id, and from then on puts the new
 * id on every request that still carries an old one (the library keeps its own
 * copy of the id and never learns of the new one).
 *
 * What a new session cannot restore: anything the server kept for the old one
 * (state a tool built, resource subscriptions, a logging level set), and a
 * request that was in flight when its session closed (it failed with "Session
 * closed": it may have run, so it is not sent again).
 */

const SESSION_HEADER = 'mcp-session-id';
/** Old session ids remembered (each is rewritten to the current one); the oldest is forgotten first. */
const MAX_STALE_IDS = 64;

export interface RecoveringFetchOptions {
  /** The fetch to wrap. @default globalThis.fetch */
  readonly fetch?: typeof fetch;
  /**
   * On 429 or 503 to an initialize (the library's own or a replay), wait out
   * `Retry-After` and try again, for at most this many ms in all per
   * initialize; 0: never wait (the answer goes to the library as it came).
   * @default 0
   */
  readonly maxRetryWaitMs?: number;
  /** Called when a new session has replaced one the server no longer knew. */
  readonly onRecover?: (event: RecoverEvent) => void;
}

export interface RecoverEvent {
  /** The id the server answered 404 for. */
  readonly oldSessionId: string;
  readonly newSessionId: string;
  /** Why the server closed it (`data.reason` of its 404: evicted, idle, lifetime, deleted, ...), if it said. */
  readonly reason: string | undefined;
}

/** A request as this wrapper needs it: everything it may have to send again. */
interface Outgoing {
  readonly url: string;
  readonly init: RequestInit;
  readonly headers: Headers;
  readonly body: string | undefined;
}

/** The initialize exchange the wrapper carried last. */
interface Remembered {
  readonly url: string;
  readonly headers: Headers;
  readonly body: string;
  /** `notifications/initialized` as the library sent it (undefined until it has). */
  initialized: string | undefined;
}

const INITIALIZED = JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' });

/** Refused answers an initialize may be retried after (`Retry-After`). */
const RETRYABLE = new Set([429, 503]);

/**
 * Returns a `fetch` that recovers from 404s for sessions the server closed.
 * Use one per client (it follows one session at a time).
 */
export function recoveringFetch(options: RecoveringFetchOptions = {}): typeof fetch {
  const base = options.fetch ?? globalThis.fetch;
  const maxRetryWaitMs = options.maxRetryWaitMs ?? 0;
  if (!Number.isFinite(maxRetryWaitMs) || maxRetryWaitMs < 0) {
    throw new RangeError(`maxRetryWaitMs must be a number >= 0, got ${String(options.maxRetryWaitMs)}`);
  }
  let remembered: Remembered | undefined;
  let current: string | undefined;
  /** Old ids the library may still send, each answered by the current id. */
  const stale = new Set<string>();
  /** A recovery in progress, per old id: concurrent 404s for one session start one new session. */
  const recovering = new Map<string, Promise<string | Response>>();

  const send = (out: Outgoing, headers = out.headers) => base(out.url, { ...out.init, headers, body: out.body });

  /** Sends an initialize, waiting out Retry-After on 429/503 within the budget. */
  async function initialize(out: Outgoing): Promise<Response> {
    const deadline = Date.now() + maxRetryWaitMs;
    for (;;) {
      const response = await send(out);
      if (!RETRYABLE.has(response.status) || maxRetryWaitMs === 0) return response;
      const waitMs = retryAfterMs(response.headers.get('retry-after'));
      if (waitMs === undefined || Date.now() + waitMs > deadline || out.init.signal?.aborted) return response;
      await response.body?.cancel().catch(() => undefined);
      await sleep(waitMs, out.init.signal ?? undefined);
    }
  }

  /** Starts a new session in place of `oldId`: the new id, or the answer that refused it. */
  async function replace(oldId: string, failed: Outgoing, reason: string | undefined): Promise<string | Response> {
    const init = remembered as Remembered;
    const headers = new Headers(init.headers);
    // A credential refreshed since the first initialize is the one to use.
    const authorization = failed.headers.get('authorization');
    if (authorization) headers.set('authorization', authorization);
    const post: RequestInit = { ...failed.init, method: 'POST' };
    const replay = await initialize({ url: init.url, init: post, headers, body: init.body });
    const newId = replay.headers.get(SESSION_HEADER);
    const text = await replay.text();
    if (!replay.ok || !newId || !carriesResult(text)) {
      return new Response(text, { status: replay.status, statusText: replay.statusText, headers: replay.headers });
    }
    const notify = new Headers(headers);
    notify.set(SESSION_HEADER, newId);
    const version = failed.headers.get('mcp-protocol-version');
    if (version) notify.set('mcp-protocol-version', version);
    // As the library sent it (or the bare notification if it has not yet). A
    // failure here shows on the next request, which the new session answers.
    const initialized = await send({
      url: init.url,
      init: post,
      headers: notify,
      body: init.initialized ?? INITIALIZED,
    }).catch(() => undefined);
    await initialized?.body?.cancel().catch(() => undefined);
    current = newId;
    stale.add(oldId);
    if (stale.size > MAX_STALE_IDS) stale.delete(stale.values().next().value as string);
    options.onRecover?.({ oldSessionId: oldId, newSessionId: newId, reason });
    return newId;
  }

  return async function fetchWithRecovery(input: string | URL | Request, init?: RequestInit): Promise<Response> {
    const out = await outgoing(input, init);
    const named = out.headers.get(SESSION_HEADER);
    if (named && stale.has(named) && current) out.headers.set(SESSION_HEADER, current);
    const message = out.body === undefined ? undefined : parseMessage(out.body);
    if (message?.method === 'initialize' && !out.headers.has(SESSION_HEADER) && out.body !== undefined) {
      const response = await initialize(out);
      const id = response.headers.get(SESSION_HEADER);
      if (response.ok && id) {
        remembered = { url: out.url, headers: new Headers(out.headers), body: out.body, initialized: undefined };
        current = id;
      }
      return response;
    }
    if (message?.method === 'notifications/initialized' && remembered) remembered.initialized = out.body;
    const response = await send(out);
    const sentId = out.headers.get(SESSION_HEADER);
    if (response.status !== 404 || !sentId || !remembered || out.init.method === 'DELETE') return response;
    // The server no longer knows the session: nothing of this request ran.
    const reason = reasonOf(await response.text());
    let replacing = recovering.get(sentId);
    if (!replacing) {
      // Replaced while this request was on its way (an id turns stale only once `current` is its successor).
      replacing = stale.has(sentId) && current !== undefined ? Promise.resolve(current) : replace(sentId, out, reason);
      recovering.set(sentId, replacing);
      void replacing.finally(() => recovering.delete(sentId)).catch(() => undefined);
    }
    const next = await replacing;
    if (typeof next !== 'string') return next.clone();
    const headers = new Headers(out.headers);
    headers.set(SESSION_HEADER, next);
    return send(out, headers);
  };
}

/** The request's URL, init, headers and body as text (so that it can be sent again). */
async function outgoing(input: string | URL | Request, init: RequestInit | undefined): Promise<Outgoing> {
  if (input instanceof Request) {
    const body = input.body ? await input.text() : undefined;
    const headers = new Headers(input.headers);
    if (init?.headers) {
      for (const [name, value] of new Headers(init.headers)) headers.set(name, value);
    }
    return {
      url: input.url,
      init: { method: input.method, signal: input.signal, ...init },
      headers,
      body: init?.body !== undefined ? await bodyText(init.body) : body,
    };
  }
  return {
    url: String(input),
    init: { ...init },
    headers: new Headers(init?.headers),
    body: init?.body === undefined || init.body === null ? undefined : await bodyText(init.body),
  };
}

async function bodyText(body: RequestInit['body']): Promise<string | undefined> {
  if (body === null || body === undefined) return undefined;
  if (typeof body === 'string') return body;
  return new Response(body).text();
}

/** The JSON-RPC message's method, if the body is one message with a method. */
function parseMessage(body: string): { method?: unknown } | undefined {
  try {
    const value: unknown = JSON.parse(body);
    return typeof value === 'object' && value !== null && !Array.isArray(value)
      ? (value as { method?: unknown })
      : undefined;
  } catch {
    return undefined;
  }
}

/** `data.reason` of a JSON-RPC error body, if there is one. */
function reasonOf(text: string): string | undefined {
  try {
    const reason = (JSON.parse(text) as { error?: { data?: { reason?: unknown } } }).error?.data?.reason;
    return typeof reason === 'string' ? reason : undefined;
  } catch {
    return undefined;
  }
}

/** Whether an initialize answer (JSON, or SSE events) carries a JSON-RPC result. */
function carriesResult(text: string): boolean {
  const candidates = text.trimStart().startsWith('{')
    ? [text]
    : text
        .split('\n')
        .filter((line) => line.startsWith('data:'))
        .map((line) => line.slice(5).trim());
  for (const candidate of candidates) {
    try {
      const message = JSON.parse(candidate) as { result?: unknown };
      if (message && typeof message === 'object' && 'result' in message) return true;
    } catch {
      // Not JSON (an empty priming event): look at the next one.
    }
  }
  return false;
}

/** `Retry-After` (seconds, or an HTTP date) in ms; undefined when absent or unreadable. */
function retryAfterMs(value: string | null): number | undefined {
  if (!value) return undefined;
  const seconds = Number(value);
  if (Number.isFinite(seconds) && seconds >= 0) return seconds * 1000;
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, date - Date.now());
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener(
      'abort',
      () => {
        clearTimeout(timer);
        reject(signal.reason);
      },
      { once: true },
    );
  });
}
