/**
 * A handler thread of the best-effort baseline (a piscina worker). It owns the
 * sessions it creates (SDK WebStandardStreamableHTTPServerTransport + the
 * built-in example McpServer) and runs the Rust crate `mcp-session`'s
 * admission (BoundedSessionManager::create_session) for each initialize:
 *
 *   1. under the queue lock: if live >= max, take the front of the creation queue;
 *   2. no lock held: close that session (awaiting its owner thread);
 *   3. no lock held: create the new session (live += 1 once it exists);
 *   4. under the queue lock: drop the evicted entry, push the new one.
 *
 * Nothing serialises steps 1-4 across concurrent initializes (in this thread
 * or others), so the live count can exceed max by the number of concurrent
 * creators, as the crate documents. No delays are injected.
 */
import { randomUUID } from 'node:crypto';
import { BroadcastChannel, parentPort, threadId, workerData } from 'node:worker_threads';
import { WebStandardStreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/webStandardStreamableHttp.js';
import createExampleServer from '../../../dist/main/host/example-server.js';
import { Shared } from './shared.js';

const { i32, maxSessions, jsonResponse, instance } = workerData;
const shared = new Shared(i32, maxSessions);
/** This thread's sessions: the crate's inner sessions map, split by owner. */
const sessions = new Map();
const bySerial = new Map();

// Close requests between threads (an eviction picks a session another thread may own).
const control = new BroadcastChannel(`best-effort-control:${instance}`);
control.unref();
const waiting = new Map();
let nextRequest = 0;
control.onmessage = ({ data }) => {
  if (data.type === 'close' && data.owner === threadId) {
    closeSession(bySerial.get(data.serial)).finally(() =>
      control.postMessage({ type: 'closed', to: data.from, request: data.request }),
    );
  } else if (data.type === 'closed' && data.to === threadId) {
    waiting.get(data.request)?.();
    waiting.delete(data.request);
  }
};

parentPort.postMessage({ type: 'best-effort-hello', threadId });

/** close_session_impl: remove the session from the map (live -= 1) and the queue, then close it. */
async function closeSession(session) {
  if (!session || bySerial.get(session.serial) !== session) return;
  forget(session);
  await session.server.close().catch(() => undefined);
}

function forget(session) {
  if (bySerial.get(session.serial) !== session) return;
  bySerial.delete(session.serial);
  sessions.delete(session.id);
  shared.removed();
  shared.locked(() => shared.remove(threadId, session.serial));
}

/** Closes (owner, serial), here or in its owner thread; resolves when done (or the owner never answers). */
function requestClose(owner, serial) {
  if (owner === threadId) return closeSession(bySerial.get(serial));
  const request = ++nextRequest;
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      waiting.delete(request);
      resolve();
    }, 5000);
    waiting.set(request, () => {
      clearTimeout(timer);
      resolve();
    });
    control.postMessage({ type: 'close', owner, serial, from: threadId, request });
  });
}

/** inner.create_session(): a new transport and server; counted live once it exists. */
async function createSession(clientKey) {
  const serial = shared.nextSerial();
  const id = `${threadId}.${serial}.${randomUUID()}`;
  const server = createExampleServer({ sessionId: id, clientKey, threadId });
  const transport = new WebStandardStreamableHTTPServerTransport({
    sessionIdGenerator: () => id,
    enableJsonResponse: jsonResponse,
  });
  const session = { id, serial, server, transport };
  transport.onclose = () => forget(session);
  await server.connect(transport);
  sessions.set(id, session);
  bySerial.set(serial, session);
  shared.inserted();
  return session;
}

async function initialize(task) {
  // 1. Eviction candidate (short critical section).
  const candidate = shared.locked(() => (shared.live() >= maxSessions ? shared.front() : undefined));
  // 2. Evict the oldest (no lock held across this await).
  if (candidate) {
    shared.evicting();
    await requestClose(candidate.owner, candidate.serial);
  }
  // 3. Create the new session (no lock held across this await).
  const session = await createSession(task.clientKey);
  // 4. Update the creation order.
  shared.locked(() => {
    if (candidate) shared.remove(candidate.owner, candidate.serial);
    if (bySerial.get(session.serial) === session) shared.pushBack(threadId, session.serial);
  });
  return handle(session, task);
}

async function handle(session, task) {
  const request = new Request(task.url, { method: task.method, headers: task.headers });
  const response = await session.transport.handleRequest(
    request,
    task.body === undefined ? undefined : { parsedBody: task.body },
  );
  const headers = [];
  response.headers.forEach((value, name) => {
    headers.push([name, value]);
  });
  if (response.body) pump(response.body, task.port);
  else task.port.close();
  return { status: response.status, headers, hasBody: response.body !== null };
}

function pump(body, port) {
  const reader = body.getReader();
  let done = false;
  port.on('message', (message) => {
    if (message.type === 'cancel' && !done) {
      done = true;
      reader.cancel().catch(() => undefined);
      port.close();
    }
  });
  void (async () => {
    try {
      for (;;) {
        const { done: ended, value } = await reader.read();
        if (ended || done) break;
        port.postMessage({ type: 'chunk', data: value });
      }
      if (!done) port.postMessage({ type: 'end' });
    } catch {
      if (!done) port.postMessage({ type: 'abort' });
    } finally {
      done = true;
      port.close();
    }
  })();
}

const notFound = JSON.stringify({ jsonrpc: '2.0', error: { code: -32001, message: 'Session not found' }, id: null });

export default async function run(task) {
  if (task.kind === 'initialize') return initialize(task);
  const session = sessions.get(task.sessionId);
  if (!session) {
    task.port.close();
    return { status: 404, headers: [['content-type', 'application/json']], hasBody: false, text: notFound };
  }
  return handle(session, task);
}
