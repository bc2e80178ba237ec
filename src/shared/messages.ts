/**
 * Messages between threads, as typed unions per direction.
 *
 *   main --HandlerTask--> handler thread   (a call on the thread's channel; result: TaskResult)
 *   handler --StreamMessage--> main        (the response body, on the call's stream)
 *   main --StreamControl--> handler        (credit for backpressure, cancel)
 *   handler --LoadedMessage--> main        (once per thread, on parentPort; main answers with the index)
 *   handler --HelloMessage--> main         (once per thread, on parentPort)
 *   broker --OwnerControl--> handler       (comlink: close a session's transport)
 */
import type { MessagePort } from 'node:worker_threads';
import type { StreamPort } from './channel.js';
import type { HttpAnswer } from './jsonrpc.js';
import type { CloseReason, Refused, SessionRef } from './types.js';

/** An HTTP request as plain data: what crosses from the listener to a handler thread. */
export interface WireRequest {
  readonly method: string;
  readonly url: string;
  readonly headers: ReadonlyArray<readonly [string, string]>;
  /** The parsed JSON body of a POST (the listener has already parsed and checked it). */
  readonly body?: unknown;
  /** The authenticated principal's info, when an auth layer supplied one. */
  readonly authInfo?: unknown;
}

/** Create a session for a preflighted `initialize` and answer it. */
export interface InitializeTask {
  readonly kind: 'initialize';
  readonly clientKey: string;
  /** The authenticated principal's binding, if any (see AdmitRequest.binding). */
  readonly binding: readonly [number, number] | undefined;
  readonly request: WireRequest;
  readonly port: StreamPort;
}

/** Hand a request to the session's owner. */
export interface SessionTask {
  readonly kind: 'session';
  readonly sessionId: string;
  readonly ref: SessionRef;
  readonly request: WireRequest;
  readonly port: StreamPort;
}

export type HandlerTask = InitializeTask | SessionTask;

/** How a handler answers a task; the body, if any, follows on the task's port. */
export type TaskResult =
  | {
      readonly kind: 'head';
      readonly status: number;
      readonly headers: ReadonlyArray<readonly [string, string]>;
      /** Present when the task created a session. */
      readonly created?: SessionRef & { readonly id: string };
      /** False when the response has no body (nothing will follow on the port). */
      readonly hasBody: boolean;
      /** The start of the body, as far as it was ready when the head was sent. */
      readonly body?: Uint8Array;
      /** True when `body` is all of it (nothing follows on the port). */
      readonly ended?: boolean;
    }
  | { readonly kind: 'refused'; readonly refused: Refused }
  | { readonly kind: 'answer'; readonly answer: HttpAnswer };

/** Handler -> main, on a task's port. */
export type StreamMessage =
  | { readonly type: 'chunk'; readonly data: Uint8Array }
  | { readonly type: 'end' }
  | { readonly type: 'abort'; readonly reason: string };

/** Flow control of response bodies between threads. */
export interface StreamLimits {
  /** Bytes the receiver may hold unacknowledged. */
  readonly windowBytes: number;
  /** Bytes the sender holds beyond the window before the producer's sends wait. */
  readonly maxBufferedBytes: number;
  /** How long a stream may wait for its client to take any byte before it is aborted, ms. */
  readonly stallTimeoutMs: number;
}

/** Main -> handler, on a task's port. */
export type StreamControl = { readonly type: 'credit'; readonly bytes: number } | { readonly type: 'cancel' };

export const HELLO = 'mcp-session-broker:hello';

/** Handler -> main on parentPort, once: the ports that connect the thread to the broker. */
export interface HelloMessage {
  readonly type: typeof HELLO;
  readonly threadId: number;
  /** The handler calls the broker's API through this port (comlink). */
  readonly brokerPort: MessagePort;
  /** The broker calls the handler's OwnerControl through this port (comlink). */
  readonly controlPort: MessagePort;
  /** The thread's channel (`shared/channel.ts`): requests for its sessions come on it. */
  readonly requestPort: MessagePort;
  /** The thread's lane in the session index (-1 when it failed to start). */
  readonly lane: number;
  /** Per-thread listeners: main controls the thread's listener through this port (comlink). */
  readonly listenerPort: MessagePort;
  /** Per-thread listeners: the thread asks main for `/metrics` through this port (comlink). */
  readonly mainPort: MessagePort;
}

export const LOADED = 'mcp-session-broker:loaded';

/**
 * Handler -> main on parentPort, once, before the hello: the thread has loaded
 * its modules and the server factory. Main answers on `setupPort` with the
 * session index's `IndexDescriptor` once the broker has started (threads load
 * while the broker starts).
 */
export interface LoadedMessage {
  readonly type: typeof LOADED;
  readonly threadId: number;
  readonly setupPort: MessagePort;
}

export function isLoadedMessage(value: unknown): value is LoadedMessage {
  return typeof value === 'object' && value !== null && (value as { type?: unknown }).type === LOADED;
}

export function isHelloMessage(value: unknown): value is HelloMessage {
  return typeof value === 'object' && value !== null && (value as { type?: unknown }).type === HELLO;
}

/** What a session owner exposes to the broker. */
export interface OwnerControl {
  /** Closes the session's transport; resolves once it is closed (or was already gone). */
  close(ref: SessionRef, reason: CloseReason): Promise<void>;
}

/** The status word main keeps for handler threads that listen themselves (Int32[0] of a SharedArrayBuffer). */
export const LISTEN_STATUS = { starting: 0, open: 1, closing: 2, failed: 3 } as const;
