/**
 * Hand-offs between two threads over one long-lived MessagePort: a request
 * (a `HandlerTask`) goes to the thread that owns its session, its answer's head
 * comes back, and the body streams on under the same flow control as before
 * (`shared/deliver.ts` sends, `front/receive.ts` receives), each stream a
 * `StreamPort` tagged with its call's id. No MessageChannel is made per
 * request, and an answer that is whole in its head costs two messages.
 *
 * One channel carries calls both ways: frames to the side that serves a call
 * and frames to the side that made it are told apart by their type, and each
 * side numbers its own calls.
 *
 *   caller -> owner: CALL {id, task}, CONTROL {id, m}, CALLER_CLOSED {id}
 *   owner -> caller: RESULT {id, result, closed}, FAILED {id, message},
 *                    DATA {id, m}, OWNER_CLOSED {id}
 *
 * Bounds: an entry per call in flight and per stream open, each tied to an
 * HTTP request of the caller (bounded by its connection and in-flight limits);
 * both sides drop an entry when the stream closes, and every entry when the
 * port closes (the other thread died or was stopped).
 */
import { EventEmitter } from 'node:events';
import type { MessagePort } from 'node:worker_threads';
import type { HandlerTask, TaskResult } from './messages.js';

/** What `shared/deliver.ts` and `front/receive.ts` need of a port: a MessagePort, or one stream of a channel. */
export interface StreamPort {
  postMessage(message: unknown, transfer?: readonly ArrayBuffer[]): void;
  /** 'message' (a StreamMessage or StreamControl, by direction) and 'close'. */
  on(event: 'message' | 'close', listener: (message: unknown) => void): unknown;
  close(): void;
}

/** A task as it crosses a channel: its stream is the call itself. */
export type ChannelTask = HandlerTask extends infer T ? (T extends unknown ? Omit<T, 'port'> : never) : never;

/** Serves one call: answers its head; the body, if any, goes on `port`. */
export type Serve = (task: ChannelTask, port: StreamPort) => Promise<TaskResult>;

const CALL = 0;
const CONTROL = 1;
const CALLER_CLOSED = 2;
const RESULT = 3;
const FAILED = 4;
const DATA = 5;
const OWNER_CLOSED = 6;

type Frame =
  | { readonly t: typeof CALL; readonly id: number; readonly task: ChannelTask }
  | { readonly t: typeof CONTROL | typeof DATA; readonly id: number; readonly m: unknown }
  | { readonly t: typeof CALLER_CLOSED | typeof OWNER_CLOSED; readonly id: number }
  | { readonly t: typeof RESULT; readonly id: number; readonly result: TaskResult; readonly closed: boolean }
  | { readonly t: typeof FAILED; readonly id: number; readonly message: string };

/** The error a call rejects with when the channel closes under it (the other thread is gone). */
export class ChannelClosedError extends Error {
  constructor() {
    super('the thread at the other end of the channel is gone');
    this.name = 'ChannelClosedError';
  }
}

/** One stream of a channel, from one side. */
class ChannelStream extends EventEmitter implements StreamPort {
  readonly #send: (message: unknown, transfer?: readonly ArrayBuffer[]) => void;
  readonly #onClose: () => void;
  /** Closed here (no more sends) or by the other side (no more deliveries). */
  #closed = false;
  /**
   * Messages that came before anyone listened (a MessagePort, too, queues them
   * until it is started): at most the flow-control window's worth, since the
   * sender sends no more without credit. A close from the other side waits
   * behind them.
   */
  #early: unknown[] | undefined;
  #closeAfterEarly = false;

  constructor(send: (message: unknown, transfer?: readonly ArrayBuffer[]) => void, onClose: () => void) {
    super();
    this.#send = send;
    this.#onClose = onClose;
  }

  postMessage(message: unknown, transfer?: readonly ArrayBuffer[]): void {
    if (!this.#closed) this.#send(message, transfer);
  }

  /** Closes it here: the other side hears of it (unless it closed first). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#early = undefined;
    this.#onClose();
    process.nextTick(() => this.emit('close'));
  }

  /** A message from the other side. */
  deliver(message: unknown): void {
    if (this.#closed) return;
    if (this.#early === undefined && this.listenerCount('message') > 0) {
      this.emit('message', message);
      return;
    }
    if (this.#early === undefined) {
      this.#early = [];
      const onListener = (event: string | symbol) => {
        if (event !== 'message') return;
        this.off('newListener', onListener);
        process.nextTick(() => this.#flushEarly());
      };
      this.on('newListener', onListener);
    }
    this.#early.push(message);
  }

  /** The other side closed it (or the channel is gone): 'close' fires, nothing is sent back. */
  remoteClosed(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#early) this.#closeAfterEarly = true;
    else this.emit('close');
  }

  #flushEarly(): void {
    const early = this.#early;
    if (!early) return;
    this.#early = undefined;
    for (const message of early) this.emit('message', message);
    if (this.#closeAfterEarly) this.emit('close');
  }
}

interface Call {
  readonly resolve: (routed: { result: TaskResult; port: StreamPort }) => void;
  readonly reject: (error: Error) => void;
  readonly stream: ChannelStream;
}

interface Served {
  readonly stream: ChannelStream;
  /** The head is not sent yet: a close now rides on it instead of a frame of its own. */
  answered: boolean;
  closedEarly: boolean;
}

export class Channel {
  readonly #port: MessagePort;
  readonly #serve: Serve | undefined;
  /** Calls made here: awaiting their head, then their stream until it closes. */
  readonly #calls = new Map<number, Call | ChannelStream>();
  /** Calls served here, until their stream closes. */
  readonly #served = new Map<number, Served>();
  #nextId = 0;
  #closed = false;
  #onClosed: (() => void) | undefined;

  /** `serve` answers the other side's calls; without it, a call from there fails. */
  constructor(port: MessagePort, serve?: Serve) {
    this.#port = port;
    this.#serve = serve;
    port.on('message', (frame: Frame) => this.#receive(frame));
    port.on('close', () => this.#gone());
  }

  /** Calls made here not yet closed (awaiting their head, or streaming). */
  get open(): number {
    return this.#calls.size;
  }

  /** Runs once when the channel closes (the other side's thread is gone, or `close()`). */
  onClosed(listener: () => void): void {
    if (this.#closed) listener();
    else this.#onClosed = listener;
  }

  /** Hands a task to the other side: resolves with its head and the stream its body follows on. */
  call(task: ChannelTask): Promise<{ result: TaskResult; port: StreamPort }> {
    if (this.#closed) return Promise.reject(new ChannelClosedError());
    const id = this.#nextId++;
    if (this.#nextId === Number.MAX_SAFE_INTEGER) this.#nextId = 0;
    const stream = new ChannelStream(
      (m, transfer) => this.#post({ t: CONTROL, id, m }, transfer),
      () => {
        this.#calls.delete(id);
        this.#post({ t: CALLER_CLOSED, id });
      },
    );
    return new Promise((resolve, reject) => {
      this.#calls.set(id, { resolve, reject, stream });
      this.#post({ t: CALL, id, task });
    });
  }

  close(): void {
    this.#port.close();
    this.#gone();
  }

  #post(frame: Frame, transfer?: readonly ArrayBuffer[]): void {
    if (!this.#closed) this.#port.postMessage(frame, transfer);
  }

  #receive(frame: Frame): void {
    switch (frame.t) {
      case CALL:
        this.#answer(frame.id, frame.task);
        return;
      case CONTROL:
        this.#served.get(frame.id)?.stream.deliver(frame.m);
        return;
      case CALLER_CLOSED: {
        const served = this.#served.get(frame.id);
        this.#served.delete(frame.id);
        served?.stream.remoteClosed();
        return;
      }
      case RESULT: {
        const call = this.#calls.get(frame.id);
        if (!call || call instanceof ChannelStream) return;
        if (frame.closed) {
          this.#calls.delete(frame.id);
          call.stream.remoteClosed();
        } else {
          this.#calls.set(frame.id, call.stream);
        }
        call.resolve({ result: frame.result, port: call.stream });
        return;
      }
      case FAILED: {
        const call = this.#calls.get(frame.id);
        if (!call || call instanceof ChannelStream) return;
        this.#calls.delete(frame.id);
        call.stream.remoteClosed();
        call.reject(new Error(frame.message));
        return;
      }
      case DATA: {
        const stream = this.#calls.get(frame.id);
        if (stream instanceof ChannelStream) stream.deliver(frame.m);
        return;
      }
      case OWNER_CLOSED: {
        const stream = this.#calls.get(frame.id);
        if (!(stream instanceof ChannelStream)) return;
        this.#calls.delete(frame.id);
        stream.remoteClosed();
        return;
      }
    }
  }

  async #answer(id: number, task: ChannelTask): Promise<void> {
    const served: Served = {
      answered: false,
      closedEarly: false,
      stream: new ChannelStream(
        (m, transfer) => this.#post({ t: DATA, id, m }, transfer),
        () => {
          this.#served.delete(id);
          // Closed before the head went: the head says so (one frame fewer for every whole answer).
          if (served.answered) this.#post({ t: OWNER_CLOSED, id });
          else served.closedEarly = true;
        },
      ),
    };
    this.#served.set(id, served);
    let result: TaskResult;
    try {
      if (!this.#serve) throw new Error('this side of the channel serves no calls');
      result = await this.#serve(task, served.stream);
    } catch (error) {
      served.answered = true;
      this.#served.delete(id);
      served.stream.remoteClosed();
      this.#post({ t: FAILED, id, message: error instanceof Error ? error.message : String(error) });
      return;
    }
    served.answered = true;
    this.#post({ t: RESULT, id, result, closed: served.closedEarly });
  }

  /** The port closed: every call fails or its stream closes, on both sides of the map. */
  #gone(): void {
    if (this.#closed) return;
    this.#closed = true;
    const calls = [...this.#calls.values()];
    const served = [...this.#served.values()];
    this.#calls.clear();
    this.#served.clear();
    for (const call of calls) {
      if (call instanceof ChannelStream) call.remoteClosed();
      else {
        call.stream.remoteClosed();
        call.reject(new ChannelClosedError());
      }
    }
    for (const entry of served) entry.stream.remoteClosed();
    this.#onClosed?.();
  }
}

/**
 * Two linked stream ends on one thread (a request served where it was
 * received): what one end posts arrives at the other, in order, a microtask
 * later, with no MessagePort and no wake-up of another thread.
 */
export function localPair(): [StreamPort, StreamPort] {
  let a: ChannelStream | undefined;
  let b: ChannelStream | undefined;
  a = new ChannelStream(
    (m) => queueMicrotask(() => b?.deliver(m)),
    () => queueMicrotask(() => b?.remoteClosed()),
  );
  b = new ChannelStream(
    (m) => queueMicrotask(() => a?.deliver(m)),
    () => queueMicrotask(() => a?.remoteClosed()),
  );
  return [a, b];
}
