/**
 * The listener's preflight: what it refuses, with which answer, before a
 * request reaches a session, and what it lets through.
 */
import { LATEST_PROTOCOL_VERSION, SUPPORTED_PROTOCOL_VERSIONS } from '@modelcontextprotocol/sdk/types.js';
import { describe, expect, it } from 'vitest';
import {
  checkGetHeaders,
  checkPostBody,
  checkPostHeaders,
  checkPostMessage,
  deeperThan,
  isJsonContentType,
  MAX_BATCH_SIZE,
  MAX_JSON_DEPTH,
  type PostCheck,
} from '../dist/main/front/preflight.js';
import type { HttpAnswer } from '../dist/shared/jsonrpc.js';

const ACCEPT = 'application/json, text/event-stream';
const POST_HEADERS = { accept: ACCEPT, 'content-type': 'application/json' };

function initialize(id: number | string = 1) {
  return {
    jsonrpc: '2.0',
    id,
    method: 'initialize',
    params: { protocolVersion: LATEST_PROTOCOL_VERSION, capabilities: {}, clientInfo: { name: 't', version: '1' } },
  };
}
const call = (id: number | string = 2) => ({ jsonrpc: '2.0', id, method: 'tools/list' });
const notification = { jsonrpc: '2.0', method: 'notifications/initialized' };

/** The refusal's status, JSON-RPC code, message and id. */
function refusal(check: PostCheck | HttpAnswer | undefined) {
  const answer = check && 'ok' in check ? (check.ok ? undefined : check.answer) : check;
  if (!answer) throw new Error('expected a refusal');
  const body = JSON.parse(answer.body) as { error: { code: number; message: string }; id: unknown };
  return { status: answer.status, code: body.error.code, message: body.error.message, id: body.id };
}

/** Nests `[...]` so that the outermost array is level 1 and the innermost value sits at `levels`. */
function nested(levels: number): unknown {
  let value: unknown = 0;
  for (let i = 0; i < levels; i++) value = [value];
  return value;
}

describe('POST headers', () => {
  it('pass with both media types accepted and a JSON body', () => {
    expect(checkPostHeaders(POST_HEADERS)).toBeUndefined();
    expect(
      checkPostHeaders({
        accept: 'text/event-stream, application/json;q=0.9',
        'content-type': 'application/json; charset=utf-8',
      }),
    ).toBeUndefined();
  });

  it('accept the Accept header sent as several lines', () => {
    expect(
      checkPostHeaders({ accept: ['application/json', 'text/event-stream'], 'content-type': 'application/json' }),
    ).toBeUndefined();
  });

  it.each([
    ['no Accept', { 'content-type': 'application/json' }],
    ['only application/json', { accept: 'application/json', 'content-type': 'application/json' }],
    ['only text/event-stream', { accept: 'text/event-stream', 'content-type': 'application/json' }],
  ])('get 406 with %s', (_, headers) => {
    expect(refusal(checkPostHeaders(headers))).toMatchObject({ status: 406, code: -32000 });
  });

  it.each([
    ['no Content-Type', { accept: ACCEPT }],
    ['text/plain', { accept: ACCEPT, 'content-type': 'text/plain' }],
    ['a type that only contains application/json', { accept: ACCEPT, 'content-type': 'application/json-seq' }],
    ['application/json as a parameter', { accept: ACCEPT, 'content-type': 'text/plain; x=application/json' }],
  ])('get 415 with %s', (_, headers) => {
    expect(refusal(checkPostHeaders(headers))).toMatchObject({ status: 415, code: -32000 });
  });

  it('read the Content-Type as a media type, case-insensitively, parameters allowed', () => {
    expect(isJsonContentType('Application/JSON ; charset=utf-8')).toBe(true);
    expect(isJsonContentType('')).toBe(false);
    expect(isJsonContentType(undefined)).toBe(false);
  });
});

describe('GET headers', () => {
  it('pass when text/event-stream is accepted', () => {
    expect(checkGetHeaders({ accept: 'text/event-stream' })).toBeUndefined();
  });

  it.each([
    ['no Accept', {}],
    ['only application/json', { accept: 'application/json' }],
  ])('get 406 with %s', (_, headers) => {
    expect(refusal(checkGetHeaders(headers))).toMatchObject({ status: 406, code: -32000 });
  });
});

describe('a POST body', () => {
  it('that is not JSON gets 400 -32700', () => {
    expect(refusal(checkPostBody('{"jsonrpc":', false, POST_HEADERS))).toMatchObject({ status: 400, code: -32700 });
    expect(refusal(checkPostBody('', true, POST_HEADERS))).toMatchObject({ status: 400, code: -32700 });
  });

  it('is parsed once and handed on as the parsed value', () => {
    const check = checkPostBody(JSON.stringify(call(7)), true, POST_HEADERS);
    expect(check).toEqual({ ok: true, body: call(7), isInitialize: false, id: 7 });
  });

  it(`nested exactly ${MAX_JSON_DEPTH} levels passes, one more gets 400 -32700 with or without a session`, () => {
    const atLimit = { ...call(), params: nested(MAX_JSON_DEPTH - 1) };
    expect(checkPostMessage(atLimit, true, POST_HEADERS).ok).toBe(true);
    const beyond = { ...call(), params: nested(MAX_JSON_DEPTH) };
    for (const hasSession of [true, false]) {
      expect(refusal(checkPostMessage(beyond, hasSession, POST_HEADERS))).toMatchObject({ status: 400, code: -32700 });
    }
  });

  it(`in a batch of 1 to ${MAX_BATCH_SIZE} messages passes; an empty or larger batch gets 400 -32600`, () => {
    const batch = (n: number) => Array.from({ length: n }, (_, i) => call(i));
    expect(checkPostMessage(batch(1), true, POST_HEADERS).ok).toBe(true);
    expect(checkPostMessage(batch(MAX_BATCH_SIZE), true, POST_HEADERS)).toMatchObject({ ok: true, id: null });
    for (const n of [0, MAX_BATCH_SIZE + 1]) {
      expect(refusal(checkPostMessage(batch(n), true, POST_HEADERS))).toMatchObject({ status: 400, code: -32600 });
    }
  });
});

describe('a POST with a session', () => {
  it('passes any message on to the SDK transport, which validates it', () => {
    expect(checkPostMessage({ not: 'json-rpc' }, true, POST_HEADERS)).toMatchObject({ ok: true, isInitialize: false });
    expect(checkPostMessage(notification, true, POST_HEADERS)).toMatchObject({ ok: true, id: null });
  });

  it('is never an initialize, even when it carries one', () => {
    expect(checkPostMessage(initialize(), true, POST_HEADERS)).toMatchObject({ ok: true, isInitialize: false });
  });
});

describe('a POST without a session', () => {
  it('passes as a single initialize request, with its id', () => {
    expect(checkPostMessage(initialize('a'), false, POST_HEADERS)).toEqual({
      ok: true,
      body: initialize('a'),
      isInitialize: true,
      id: 'a',
    });
  });

  it('passes as a batch of one initialize', () => {
    expect(checkPostMessage([initialize()], false, POST_HEADERS)).toMatchObject({ ok: true, isInitialize: true });
  });

  it('gets 400 -32700 when a message is not JSON-RPC, with its id when it has one', () => {
    expect(refusal(checkPostMessage({ id: 9, method: 'initialize' }, false, POST_HEADERS))).toMatchObject({
      status: 400,
      code: -32700,
      id: 9,
    });
    expect(refusal(checkPostMessage([initialize(), { jsonrpc: '1.0' }], false, POST_HEADERS))).toMatchObject({
      status: 400,
      code: -32700,
    });
  });

  it('gets 400 "Mcp-Session-Id header is required" when it holds no initialize', () => {
    expect(refusal(checkPostMessage(call(4), false, POST_HEADERS))).toMatchObject({
      status: 400,
      code: -32000,
      id: 4,
      message: 'Bad Request: Mcp-Session-Id header is required',
    });
  });

  it('gets 400 -32600 for an initialize without an id', () => {
    const { id: _, ...withoutId } = initialize();
    expect(refusal(checkPostMessage(withoutId, false, POST_HEADERS))).toMatchObject({ status: 400, code: -32600 });
  });

  it('gets 400 -32600 for two initializes, or an initialize with another message', () => {
    for (const batch of [
      [initialize(1), initialize(2)],
      [initialize(1), call(2)],
    ]) {
      expect(refusal(checkPostMessage(batch, false, POST_HEADERS))).toMatchObject({
        status: 400,
        code: -32600,
        message: 'Invalid Request: Only one initialization request is allowed',
      });
    }
  });

  it('passes with every protocol version the SDK supports, and gets 400 with another', () => {
    for (const version of SUPPORTED_PROTOCOL_VERSIONS) {
      const headers = { ...POST_HEADERS, 'mcp-protocol-version': version };
      expect(checkPostMessage(initialize(), false, headers).ok).toBe(true);
    }
    const headers = { ...POST_HEADERS, 'mcp-protocol-version': '1999-01-01' };
    expect(refusal(checkPostMessage(initialize(), false, headers))).toMatchObject({ status: 400, code: -32000 });
  });
});

describe('deeperThan', () => {
  it('counts the outermost array or object as level 1', () => {
    expect(deeperThan(nested(3), 3)).toBe(false);
    expect(deeperThan(nested(4), 3)).toBe(true);
    expect(deeperThan({ a: { b: { c: 1 } } }, 3)).toBe(false);
    expect(deeperThan({ a: { b: { c: {} } } }, 3)).toBe(true);
  });

  it('treats primitives and null as depth 0', () => {
    for (const value of [null, 1, 'x', true, undefined]) expect(deeperThan(value, 0)).toBe(false);
    expect(deeperThan({ a: {}, b: [] }, 2)).toBe(false);
    expect(deeperThan({ a: {} }, 1)).toBe(true);
  });

  it('finds a deep branch beside shallow ones', () => {
    // The outer array, the object and the array under `a` are levels 1 to 3.
    expect(deeperThan([1, [2], { a: [3, nested(4)] }], 6)).toBe(true);
    expect(deeperThan([1, [2], { a: [3, nested(3)] }], 6)).toBe(false);
  });

  it('walks a million levels without overflowing the stack', () => {
    expect(deeperThan(nested(1_000_000), MAX_JSON_DEPTH)).toBe(true);
  });
});
