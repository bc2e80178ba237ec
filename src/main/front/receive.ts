/**
 * The receiving end of response bodies (runs on the thread that received the
 * request): writes what a session's owner sends on the call's stream (a
 * channel stream, `shared/channel.ts`) to the HTTP response, and
 * grants credit back once the socket has taken the bytes (the sending end is
 * `shared/deliver.ts`).
 */
import type { ServerResponse } from 'node:http';
import type { StreamPort } from '../../shared/channel.js';
import type { StreamControl, StreamMessage } from '../../shared/messages.js';

/**
 * Writes what arrives on `port` to `res`, acknowledging bytes once the socket
 * has taken them. Resolves when the response is over, however it ended.
 * `onSenderGone` gives the last bytes of a body whose sender vanished (its
 * thread died) before ending it; without them, the response is destroyed.
 */
export function pipePortToResponse(
  port: StreamPort,
  res: ServerResponse,
  head?: Uint8Array,
  onSenderGone?: () => Uint8Array | undefined,
): Promise<void> {
  return new Promise((resolve) => {
    let settled = false;
    // The sender ended the body: its port closing next is expected, and the response flushes on its own.
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
      if (!settled && !ended) port.postMessage({ type: 'credit', bytes } satisfies StreamControl);
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
    port.on('message', (value) => {
      const message = value as StreamMessage;
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
      if (!settled && !ended) {
        const tail = onSenderGone?.();
        if (tail) res.end(tail);
        else res.destroy();
        settle();
      }
    });
    res.on('close', () => {
      if (!settled) {
        if (!res.writableFinished && !ended) port.postMessage({ type: 'cancel' } satisfies StreamControl);
        settle();
      }
    });
  });
}
