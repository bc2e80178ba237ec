import type { ServerResponse } from 'node:http';
import type { MessagePort } from 'node:worker_threads';
import type { StreamControl, StreamMessage } from '../shared/messages.js';

export interface StreamLimits {
  /** Bytes the receiver may hold unacknowledged. */
  readonly windowBytes: number;
  /** Bytes the sender buffers beyond the window before it aborts the stream. */
  readonly maxBufferedBytes: number;
}

export const DEFAULT_STREAM_LIMITS: StreamLimits = { windowBytes: 256 * 1024, maxBufferedBytes: 4 * 1024 * 1024 };

/** Sends a body over `port`; reads the source eagerly so the SDK never buffers unboundedly. */
export function pumpToPort(body: ReadableStream<Uint8Array>, port: MessagePort, limits: StreamLimits): void {
  const reader = body.getReader();
  const queue: Uint8Array[] = [];
  let queued = 0;
  let credit = limits.windowBytes;
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
      for (;;) {
        const { done, value } = await reader.read();
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
 * Writes what arrives on `port` to `res`, acknowledging bytes once the socket
 * has taken them. Resolves when the response is over, however it ended.
 */
export function pipePortToResponse(port: MessagePort, res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    let settled = false;
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
    port.on('message', (message: StreamMessage) => {
      if (message.type === 'chunk') {
        const bytes = message.data.byteLength;
        const flowing = res.write(message.data);
        if (flowing && owed === 0) credit(bytes);
        else owed += bytes;
      } else if (message.type === 'end') {
        res.end(settle);
      } else {
        res.destroy(new Error(message.reason));
        settle();
      }
    });
    port.on('close', () => {
      // The sender vanished (its thread died) before ending the body.
      if (!settled) {
        res.destroy();
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
