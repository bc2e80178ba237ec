/**
 * Raw MCP over HTTP for the benchmarks: request bodies and headers, a session
 * handshake (initialize + notifications/initialized), and tools/call with the
 * answer read from JSON or SSE. No SDK client: every byte sent is visible here.
 */
import { LATEST_PROTOCOL_VERSION } from '@modelcontextprotocol/sdk/types.js';

export const PROTOCOL_VERSION = LATEST_PROTOCOL_VERSION;
export const ACCEPT = 'application/json, text/event-stream';

export const INITIALIZE_BODY = JSON.stringify({
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: { protocolVersion: PROTOCOL_VERSION, capabilities: {}, clientInfo: { name: 'bench', version: '1' } },
});
export const INITIALIZED_BODY = JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' });

export const POST_HEADERS = { 'content-type': 'application/json', accept: ACCEPT };

export function sessionHeaders(sessionId) {
  return { ...POST_HEADERS, 'mcp-session-id': sessionId, 'mcp-protocol-version': PROTOCOL_VERSION };
}

/** The tool calls the benchmarks make, by tool name. */
export const CALLS = {
  echo: { name: 'echo', arguments: { text: 'hello' } },
  add: { name: 'add', arguments: { a: 2, b: 3 } },
  sha: { name: 'sha', arguments: {} },
};

export function callBody(tool, id = 2) {
  return JSON.stringify({ jsonrpc: '2.0', id, method: 'tools/call', params: CALLS[tool] });
}

/** Reads a JSON-RPC message from a JSON or SSE response body (the last `data:` line of SSE). */
export function messageOf(text) {
  const trimmed = text.trim();
  if (trimmed.startsWith('{')) return JSON.parse(trimmed);
  const data = trimmed
    .split('\n')
    .filter((line) => line.startsWith('data:'))
    .map((line) => line.slice(5).trim())
    .filter((line) => line.length > 0);
  if (data.length === 0) throw new Error(`no JSON-RPC message in: ${text.slice(0, 200)}`);
  return JSON.parse(data[data.length - 1]);
}

/** One raw initialize; the status, session id, and elapsed ms. */
export async function initialize(url) {
  const t0 = performance.now();
  const res = await fetch(url, { method: 'POST', headers: POST_HEADERS, body: INITIALIZE_BODY });
  const text = await res.text();
  return {
    status: res.status,
    sessionId: res.headers.get('mcp-session-id') ?? undefined,
    ms: performance.now() - t0,
    retryAfter: res.headers.get('retry-after'),
    text,
  };
}

/** initialize + notifications/initialized: a session a well-behaved client would have. */
export async function openSession(url) {
  const init = await initialize(url);
  if (init.status !== 200 || !init.sessionId)
    throw new Error(`initialize failed: ${init.status} ${init.text.slice(0, 200)}`);
  const res = await fetch(url, { method: 'POST', headers: sessionHeaders(init.sessionId), body: INITIALIZED_BODY });
  await res.text();
  if (res.status !== 202 && res.status !== 200) throw new Error(`notifications/initialized failed: ${res.status}`);
  return init.sessionId;
}

/** tools/call through raw HTTP; the result's first text content. */
export async function callTool(url, sessionId, tool) {
  const res = await fetch(url, { method: 'POST', headers: sessionHeaders(sessionId), body: callBody(tool) });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`tools/call ${tool}: HTTP ${res.status} ${text.slice(0, 200)}`);
  const message = messageOf(text);
  const first = message.result?.content?.[0]?.text;
  if (typeof first !== 'string') throw new Error(`tools/call ${tool}: unexpected answer ${text.slice(0, 200)}`);
  return { text: first, contentType: res.headers.get('content-type') ?? '' };
}
