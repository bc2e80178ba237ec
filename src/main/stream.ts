import type { ServerResponse } from 'node:http';
import type { ReadableStreamDefaultReader, ReadableStreamReadResult } from 'node:stream/web';
import type { MessagePort } from 'node:worker_threads';
import type { StreamControl, StreamMessage, TaskResult } from '../shared/messages.js';

export interface StreamLimits {
  /** Bytes the receiver may hold unacknowledged. */
  readonly windowBytes: number;
  /** Bytes the sender buffers beyond the window before it aborts the stream. */
  readonly maxBufferedBytes: number;
}

type ReadResult = ReadableStreamReadResult<Uint8Array>;

/** What a body had ready at once: sent with the response head, saving the port round trips. */
export interface Prefetched {
  readonly reader: ReadableStreamDefaultReader<Uint8Array>;
  readonly head: Uint8Array | undefined;
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
    chunks.push(result.value);
    size += result.value.byteLength;
  }
  const head = chunks.length === 0 ? undefined : chunks.length === 1 ? chunks[0] : Buffer.concat(chunks);
  return { reader, head, done, pending };
}

/**
 * Sends the rest of a prefetched body over `port`; reads the source eagerly so
 * the SDK never buffers unboundedly. The prefetched bytes count against the window.
 */
export function pumpToPort(prefetched: Prefetched, port: MessagePort, limits: StreamLimits): void {
  const reader = prefetched.reader;
  const queue: Uint8Array[] = [];
  let queued = 0;
  let credit = limits.windowBytes - (prefetched.head?.byteLength ?? 0);
  let sourceDone = false;
  let finished = false;

  const post = (message: StreamMessage, transfer?: ArrayBuffer[]) => {
    if (!finished) port.postMessage(message, transfer);
  };
  const finish = () => {
    if (finished) return;
    finished = true;
    port.close();
  };
  const flush = () => {
    while (queue.length > 0 && credit > 0) {
      const chunk = queue.shift() as Uint8Array;
      queued -= chunk.byteLength;
      credit -= chunk.byteLength;
      const whole = chunk.byteOffset === 0 && chunk.byteLength === chunk.buffer.byteLength;
      post({ type: 'chunk', data: chunk }, whole && chunk.buffer instanceof ArrayBuffer ? [chunk.buffer] : undefined);
    }
    if (sourceDone && queue.length === 0) {
      post({ type: 'end' });
      finish();
    }
  };
  const abort = (reason: string) => {
    post({ type: 'abort', reason });
    finish();
    reader.cancel(reason).catch(() => undefined);
  };

  port.on('message', (message: StreamControl) => {
    if (message.type === 'credit') {
      credit += message.bytes;
      flush();
    } else {
      finished = true;
      port.close();
      reader.cancel('client disconnected').catch(() => undefined);
    }
  });
  port.on('close', () => {
    if (!finished) {
      finished = true;
      reader.cancel('receiver gone').catch(() => undefined);
    }
  });

  void (async () => {
    try {
      let next = prefetched.pending;
      for (;;) {
        const { done, value } = await (next ?? reader.read());
        next = undefined;
        if (done) break;
        if (finished) return;
        queue.push(value);
        queued += value.byteLength;
        if (queued > limits.maxBufferedBytes) {
          abort('client is not reading: stream buffer limit exceeded');
          return;
        }
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
  port: MessagePort,
  limits: StreamLimits,
): Promise<TaskResult> {
  if (!body || result.kind !== 'head') {
    port.close();
    return result;
  }
  const prefetched = await prefetch(body, limits.windowBytes);
  const withHead = { ...result, ...(prefetched.head ? { body: prefetched.head } : {}), ended: prefetched.done };
  if (prefetched.done) port.close();
  else pumpToPort(prefetched, port, limits);
  return withHead;
}

/**
 * Writes what arrives on `port` to `res`, acknowledging bytes once the socket
 * has taken them. Resolves when the response is over, however it ended.
 * `onSenderGone` gives the last bytes of a body whose sender vanished (its
 * thread died) before ending it; without them, the response is destroyed.
 */
export function pipePortToResponse(
  port: MessagePort,
  res: ServerResponse,
  head?: Uint8Array,
  onSenderGone?: () => Uint8Array | undefined,
): Promise<void> {
  return new Promise((resolve) => {
    let settled = false;
    let ended = false;
    const settle = () => {
      if (settled) return;
      settled = true;
      port.close();
      resolve();
    };
    // Bytes written while the socket was saturated: acknowledged together on the next 'drain'.
    let owed = 0;
    const credit = (bytes: number) => {
      if (!settled) port.postMessage({ type: 'credit', bytes } satisfies StreamControl);
    };
    const onDrain = () => {
      const bytes = owed;
      owed = 0;
      credit(bytes);
    };
    res.on('drain', onDrain);
    const write = (data: Uint8Array) => {
      const flowing = res.write(data);
      if (flowing && owed === 0) credit(data.byteLength);
      else owed += data.byteLength;
    };
    // The start of the body came with the head: it counts against the window like any chunk.
    if (head) write(head);
    else res.flushHeaders();
    port.on('message', (message: StreamMessage) => {
      if (message.type === 'chunk') {
        write(message.data);
      } else if (message.type === 'end') {
        ended = true;
        res.end(settle);
      } else {
        res.destroy(new Error(message.reason));
        settle();
      }
    });
    port.on('close', () => {
      // The sender vanished (its thread died) before ending the body.
      if (!settled) {
        const tail = ended ? undefined : onSenderGone?.();
        if (tail) res.end(tail);
        else res.destroy();
        settle();
      }
    });
    res.on('close', () => {
      if (!settled) {
        if (!res.writableFinished) port.postMessage({ type: 'cancel' } satisfies StreamControl);
        settle();
      }
    });
  });
}
