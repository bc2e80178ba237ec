/**
 * Preflight: everything the SDK transport would reject, answered on the
 * listener thread before any session is touched, any rate token spent or
 * anything evicted. Pure functions over the request's method, headers and body.
 */

import { MAX_BATCH_SIZE } from '@modelcontextprotocol/sdk/server/requestBody.js';
import {
  isInitializeRequest,
  isJSONRPCRequest,
  JSONRPCMessageSchema,
  SUPPORTED_PROTOCOL_VERSIONS,
} from '@modelcontextprotocol/sdk/types.js';
import { Answers, type HttpAnswer, type JsonRpcId } from '../../shared/jsonrpc.js';

/** The SDK's limit on messages in one batch (its own constant). */
export { MAX_BATCH_SIZE };

/**
 * Deepest nesting of arrays and objects accepted in a POST body (the message
 * itself is level 1). Deeper bodies are refused here: copying them to a
 * handler thread would overflow the stack.
 */
export const MAX_JSON_DEPTH = 128;

export type PostCheck =
  | { readonly ok: false; readonly answer: HttpAnswer }
  | { readonly ok: true; readonly body: unknown; readonly isInitialize: boolean; readonly id: JsonRpcId };

type Headers = Readonly<Record<string, string | string[] | undefined>>;

function header(headers: Headers, name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value.join(', ') : value;
}

/** Accept for a POST must list both application/json and text/event-stream. */
export function checkPostHeaders(headers: Headers): HttpAnswer | undefined {
  const accept = header(headers, 'accept') ?? '';
  if (!accept.includes('application/json') || !accept.includes('text/event-stream')) {
    return Answers.notAcceptable('both application/json and text/event-stream');
  }
  if (!isJsonContentType(header(headers, 'content-type'))) return Answers.unsupportedMediaType();
  return undefined;
}

/** Accept for a GET must list text/event-stream. */
export function checkGetHeaders(headers: Headers): HttpAnswer | undefined {
  const accept = header(headers, 'accept') ?? '';
  if (!accept.includes('text/event-stream')) return Answers.notAcceptable('text/event-stream');
  return undefined;
}

/** The protocol version header, when present, must be one the SDK supports. */
export function checkProtocolVersion(headers: Headers): HttpAnswer | undefined {
  const version = header(headers, 'mcp-protocol-version');
  if (version !== undefined && !SUPPORTED_PROTOCOL_VERSIONS.includes(version)) {
    return Answers.badRequest(
      `Unsupported protocol version: ${version} (supported versions: ${SUPPORTED_PROTOCOL_VERSIONS.join(', ')})`,
    );
  }
  return undefined;
}

/** `application/json` as a parsed media type (parameters allowed), never a substring. */
export function isJsonContentType(value: string | undefined): boolean {
  if (!value) return false;
  const type = value.split(';', 1)[0]?.trim().toLowerCase();
  return type === 'application/json';
}

/**
 * Parses and checks a POST body. `hasSession` says whether the request named a
 * (valid) session: without one, the body must be exactly one initialize request.
 */
export function checkPostBody(text: string, hasSession: boolean, headers: Headers): PostCheck {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return { ok: false, answer: Answers.parseError() };
  }
  return checkPostMessage(raw, hasSession, headers);
}

/** Checks an already-parsed POST body (see `checkPostBody`). */
export function checkPostMessage(raw: unknown, hasSession: boolean, headers: Headers): PostCheck {
  if (deeperThan(raw, MAX_JSON_DEPTH)) return { ok: false, answer: Answers.tooDeep(MAX_JSON_DEPTH) };
  const messages = Array.isArray(raw) ? raw : [raw];
  if (Array.isArray(raw) && (raw.length === 0 || raw.length > MAX_BATCH_SIZE)) {
    return { ok: false, answer: Answers.invalidMessage(`a batch must hold 1 to ${MAX_BATCH_SIZE} messages`) };
  }
  // With a session, the SDK transport validates every message itself (same
  // answer: 400 -32700); only session-less requests need it here.
  for (const message of hasSession ? [] : messages) {
    if (!JSONRPCMessageSchema.safeParse(message).success) {
      return { ok: false, answer: Answers.invalidJsonRpc(idOf(message)) };
    }
  }
  // An initialize must be a request (with an id): as a notification it would
  // create a session whose id the client never receives.
  // The full initialize schema check is costly when it fails: run it only on
  // messages that name the method.
  const named = messages.filter((m) => (m as { method?: unknown }).method === 'initialize' && isInitializeRequest(m));
  const initializes = named.filter((m) => isJSONRPCRequest(m)).length;
  if (!hasSession && initializes < named.length) {
    return { ok: false, answer: Answers.invalidMessage('initialize must be a request with an id') };
  }
  const id = Array.isArray(raw) ? null : idOf(raw);
  if (hasSession) return { ok: true, body: raw, isInitialize: false, id };
  if (initializes === 0) return { ok: false, answer: Answers.missingSessionId(id) };
  if (messages.length > 1) {
    return { ok: false, answer: Answers.invalidMessage('Only one initialization request is allowed') };
  }
  const versionError = checkProtocolVersion(headers);
  if (versionError) return { ok: false, answer: versionError };
  return { ok: true, body: raw, isInitialize: true, id };
}

/** Whether arrays and objects nest deeper than `max` levels in `value` (iterative: no recursion to overflow). */
export function deeperThan(value: unknown, max: number): boolean {
  if (typeof value !== 'object' || value === null) return false;
  const stack: object[] = [value];
  const depths: number[] = [1];
  while (stack.length > 0) {
    const node = stack.pop() as object;
    const depth = depths.pop() as number;
    const children: unknown[] = Array.isArray(node) ? node : Object.values(node);
    for (const child of children) {
      if (typeof child !== 'object' || child === null) continue;
      if (depth + 1 > max) return true;
      stack.push(child);
      depths.push(depth + 1);
    }
  }
  return false;
}

function idOf(message: unknown): JsonRpcId {
  if (typeof message === 'object' && message !== null) {
    const id = (message as { id?: unknown }).id;
    if (typeof id === 'string' || typeof id === 'number') return id;
  }
  return null;
}
