/**
 * The sending end of response bodies (runs where a session lives: a handler
 * thread, or the main thread with `threads: 0`). The owner reads the SDK's
 * body and sends it on the call's stream as the receiving thread grants
 * credit (the receiving end is `front/receive.ts`).
 *
 * Nothing is dropped on the way: a stream that cannot send holds its bytes, up
 * to `maxBufferedBytes`, and then the producer itself waits (`StreamGate`: the
 * SDK transport's sends for this stream). Only a client that has taken no bytes
 * for `stallTimeoutMs` while bytes were waiting is cut off.
 */
import type { ReadableStreamDefaultReader, ReadableStreamReadResult } from 'node:stream/web';
import type { StreamPort } from './channel.js';
import type { StreamControl, StreamLimits, StreamMessage, TaskResult } from './messages.js';

type ReadResult = ReadableStreamReadResult<Uint8Array>;

/**
 * Backpressure for one response stream, on the producer's side: sends wait
 * their turn (in order) and, while the stream holds more than `limit` bytes
 * it could not send yet, wait for room. Once the stream is over, sends pass.
 */
export class StreamGate {
  readonly #limit: number;
  #buffered = 0;
  #closed = false;
  #tail: Promise<unknown> = Promise.resolve();
  #wake: (() => void) | undefined;

  constructor(limit: number) {
    this.#limit = limit;
  }

  /** Bytes the stream holds that its client has not been sent yet. */
  get buffered(): number {
    return this.#buffered;
  }

  /** Runs `send` after every earlier send through this gate, once the stream has room. */
  run<T>(send: () => Promise<T>): Promise<T> {
    const result = this.#tail.then(() => this.#room()).then(send);
    this.#tail = result.catch(() => undefined);
    return result;
  }

  #room(): Promise<void> | undefined {
    if (this.#closed || this.#buffered === 0) return undefined;
    if (this.#buffered <= this.#limit) {
      // The client is behind: let the reader account for the previous send before the next.
      return new Promise((resolve) => setImmediate(resolve));
    }
    return new Promise((resolve) => {
      this.#wake = resolve;
    });
  }

  /** The reader took `bytes` from the producer. */
  add(bytes: number): void {
    this.#buffered += bytes;
  }

  /** `bytes` left for the client. */
  sub(bytes: number): void {
    this.#buffered -= bytes;
    if (this.#buffered <= this.#limit) this.#release();
  }

  /** The stream is over (ended, aborted or cancelled): nothing waits on it any more. */
  close(): void {
    this.#closed = true;
    this.#buffered = 0;
    this.#release();
  }

  #release(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }
}

/** What a body had ready at once: sent with the response head, saving the port round trips. */
export interface Prefetched {
  readonly reader: ReadableStreamDefaultReader<Uint8Array>;
  readonly head: Uint8Array | undefined;
  /** Bytes read beyond what the head may carry; the pump sends them first. */
  readonly rest: Uint8Array | undefined;
  readonly done: boolean;
  /** A read still under way when prefetching stopped; the pump continues with it. */
  readonly pending: Promise<ReadResult> | undefined;
}

const LATER = Symbol('later');

/**
 * Reads what the body produces before the next macrotask, up to `limit` bytes.
 * A fast tool's whole SSE answer usually is: then it travels with the head and
 * the port carries nothing.
 */
export async function prefetch(body: ReadableStream<Uint8Array>, limit: number): Promise<Prefetched> {
  const reader = body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  let pending: Promise<ReadResult> | undefined;
  let rest: Uint8Array | undefined;
  let done = false;
  while (size < limit) {
    const read = reader.read();
    const result = await Promise.race([read, new Promise<typeof LATER>((resolve) => setImmediate(resolve, LATER))]);
    if (result === LATER) {
      pending = read;
      break;
    }
    if (result.done) {
      done = true;
      break;
    }
    let chunk = result.value;
    if (size + chunk.byteLength > limit) {
      // The head carries at most `limit` bytes; the rest waits for credit like any chunk.
      rest = chunk.subarray(limit - size);
      chunk = chunk.slice(0, limit - size);
    }
    chunks.push(chunk);
    size += chunk.byteLength;
  }
  const head = chunks.length === 0 ? undefined : chunks.length === 1 ? chunks[0] : Buffer.concat(chunks);
  return { reader, head, rest, done: done && rest === undefined, pending };
}

/**
 * Sends the rest of a prefetched body over `port` as credit allows. The source
 * is read eagerly (the SDK's own stream does not bound what it holds); what
 * cannot be sent yet is held here and counted by `gate`, whose producer waits
 * past `maxBufferedBytes`. The prefetched head counts against the window.
 */
export function pumpToPort(
  prefetched: Prefetched,
  port: StreamPort,
  limits: StreamLimits,
  gate: StreamGate | undefined,
): void {
  const reader = prefetched.reader;
  const queue: Uint8Array[] = [];
  let credit = limits.windowBytes - (prefetched.head?.byteLength ?? 0);
  let sourceDone = false;
  let finished = false;
  let stall: NodeJS.Timeout | undefined;

  const post = (message: StreamMessage, transfer?: ArrayBuffer[]) => {
    if (!finished) port.postMessage(message, transfer);
  };
  const finish = () => {
    if (finished) return;
    finished = true;
    clearTimeout(stall);
    gate?.close();
    port.close();
  };
  const abort = (reason: string) => {
    post({ type: 'abort', reason });
    finish();
    reader.cancel(reason).catch(() => undefined);
  };
  const take = (chunk: Uint8Array) => {
    queue.push(chunk);
    gate?.add(chunk.byteLength);
  };
  const flush = () => {
    while (queue.length > 0 && credit > 0) {
      let chunk = queue[0] as Uint8Array;
      if (chunk.byteLength > credit) {
        // Send what the window allows; a copy, since a posted view would clone its whole buffer.
        queue[0] = chunk.subarray(credit);
        chunk = chunk.slice(0, credit);
      } else {
        queue.shift();
      }
      credit -= chunk.byteLength;
      gate?.sub(chunk.byteLength);
      const whole = chunk.byteOffset === 0 && chunk.byteLength === chunk.buffer.byteLength;
      if (whole && chunk.buffer instanceof ArrayBuffer) post({ type: 'chunk', data: chunk }, [chunk.buffer]);
      else post({ type: 'chunk', data: chunk.slice() });
    }
    if (sourceDone && queue.length === 0) {
      post({ type: 'end' });
      finish();
      return;
    }
    if (queue.length > 0 && stall === undefined) {
      // Bytes wait and the client has taken none of the window: it has this long to read.
      stall = setTimeout(
        () => abort(`client is not reading: no bytes taken for ${limits.stallTimeoutMs} ms`),
        limits.stallTimeoutMs,
      );
    }
  };

  port.on('message', (value) => {
    const message = value as StreamControl;
    if (message.type === 'credit') {
      credit += message.bytes;
      clearTimeout(stall);
      stall = undefined;
      flush();
    } else {
      finish();
      reader.cancel('client disconnected').catch(() => undefined);
    }
  });
  port.on('close', () => {
    if (!finished) {
      finish();
      reader.cancel('receiver gone').catch(() => undefined);
    }
  });

  if (prefetched.rest) take(prefetched.rest);
  void (async () => {
    try {
      let next = prefetched.pending;
      for (;;) {
        const { done, value } = await (next ?? reader.read());
        next = undefined;
        if (done) break;
        if (finished) return;
        take(value);
        flush();
      }
      sourceDone = true;
      flush();
    } catch (error) {
      abort(error instanceof Error ? error.message : String(error));
    }
  })();
}

/**
 * Answers a dispatched request: the head (with what the body had ready), and
 * the rest of the body, if any, over `port`.
 */
export async function deliver(
  result: TaskResult,
  body: ReadableStream<Uint8Array> | null,
  port: StreamPort,
  limits: StreamLimits,
  gate?: StreamGate,
): Promise<TaskResult> {
  if (!body || result.kind !== 'head') {
    gate?.close();
    port.close();
    return result;
  }
  const prefetched = await prefetch(body, limits.windowBytes);
  const withHead = { ...result, ...(prefetched.head ? { body: prefetched.head } : {}), ended: prefetched.done };
  if (prefetched.done) {
    gate?.close();
    port.close();
  } else pumpToPort(prefetched, port, limits, gate);
  return withHead;
}
