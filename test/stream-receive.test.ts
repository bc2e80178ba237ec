/**
 * The receiving end of a response body: the listener grants credit only for
 * bytes the socket has taken, so a client that does not read stops the sender.
 * The response here is a stand-in with the socket's write/drain contract.
 */
import { EventEmitter } from 'node:events';
import type { ServerResponse } from 'node:http';
import { MessageChannel, type MessagePort } from 'node:worker_threads';
import { afterEach, describe, expect, it } from 'vitest';
import { pipePortToResponse } from '../dist/main/front/receive.js';
import type { StreamControl, StreamMessage } from '../dist/shared/messages.js';

/** A response whose socket accepts writes while `flowing`, and says so on `drain`, as node:http does. */
class Socket extends EventEmitter {
  flowing = true;
  written: Uint8Array[] = [];
  ended = false;
  destroyed = false;
  writableFinished = false;
  headersFlushed = false;

  write(data: Uint8Array): boolean {
    this.written.push(data);
    return this.flowing;
  }
  end(data?: Uint8Array | (() => void), done?: () => void): this {
    if (data instanceof Uint8Array) this.written.push(data);
    this.ended = true;
    this.writableFinished = true;
    const callback = typeof data === 'function' ? data : done;
    setImmediate(() => {
      callback?.();
      this.emit('close');
    });
    return this;
  }
  flushHeaders(): void {
    this.headersFlushed = true;
  }
  destroy(): this {
    this.destroyed = true;
    setImmediate(() => this.emit('close'));
    return this;
  }
  /** The socket took everything written so far. */
  drain(): void {
    this.flowing = true;
    this.emit('drain');
  }
  get bytes(): number {
    return this.written.reduce((sum, chunk) => sum + chunk.byteLength, 0);
  }
}

const ports: MessagePort[] = [];
afterEach(() => {
  for (const port of ports.splice(0)) port.close();
});

/** A channel whose sending end records the control messages the listener sends back. */
function channel() {
  const { port1: sender, port2: receiver } = new MessageChannel();
  ports.push(sender, receiver);
  const controls: StreamControl[] = [];
  sender.on('message', (message: StreamControl) => controls.push(message));
  const credited = () => controls.reduce((sum, c) => sum + (c.type === 'credit' ? c.bytes : 0), 0);
  const send = (message: StreamMessage) => sender.postMessage(message);
  return { sender, receiver, controls, credited, send };
}

async function until(done: () => boolean, what: string, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const asResponse = (socket: Socket) => socket as unknown as ServerResponse;

describe('a response fed from a port', () => {
  it('grants credit for each chunk the socket takes at once, the head included', async () => {
    const c = channel();
    const res = new Socket();
    const done = pipePortToResponse(c.receiver, asResponse(res), new Uint8Array(300));
    c.send({ type: 'chunk', data: new Uint8Array(200) });
    await until(() => c.credited() === 500, 'the credit');
    expect(c.controls).toEqual([
      { type: 'credit', bytes: 300 },
      { type: 'credit', bytes: 200 },
    ]);
    c.send({ type: 'end' });
    await done;
    expect(res.ended).toBe(true);
    expect(res.bytes).toBe(500);
  });

  it('flushes the headers when no body came with them', async () => {
    const c = channel();
    const res = new Socket();
    const done = pipePortToResponse(c.receiver, asResponse(res));
    expect(res.headersFlushed).toBe(true);
    c.send({ type: 'end' });
    await done;
  });

  it('withholds credit while the socket is saturated, and grants it all on drain', async () => {
    const c = channel();
    const res = new Socket();
    const done = pipePortToResponse(c.receiver, asResponse(res));
    res.flowing = false;
    c.send({ type: 'chunk', data: new Uint8Array(100) });
    c.send({ type: 'chunk', data: new Uint8Array(50) });
    await until(() => res.bytes === 150, 'the writes');
    await sleep(20);
    expect(c.credited()).toBe(0);
    res.drain();
    await until(() => c.credited() === 150, 'the credit on drain');
    expect(c.controls).toEqual([{ type: 'credit', bytes: 150 }]);
    c.send({ type: 'end' });
    await done;
  });

  it('keeps later bytes owed behind bytes already owed, even when the socket takes them', async () => {
    const c = channel();
    const res = new Socket();
    const done = pipePortToResponse(c.receiver, asResponse(res));
    res.flowing = false;
    c.send({ type: 'chunk', data: new Uint8Array(100) });
    await until(() => res.bytes === 100, 'the first write');
    res.flowing = true;
    c.send({ type: 'chunk', data: new Uint8Array(10) });
    await until(() => res.bytes === 110, 'the second write');
    await sleep(20);
    // Crediting the second write before the drain would grant bytes the socket has not taken.
    expect(c.credited()).toBe(0);
    res.drain();
    await until(() => c.credited() === 110, 'the credit on drain');
    c.send({ type: 'end' });
    await done;
  });

  it('destroys the response on an abort', async () => {
    const c = channel();
    const res = new Socket();
    const done = pipePortToResponse(c.receiver, asResponse(res));
    c.send({ type: 'abort', reason: 'client is not reading' });
    await done;
    expect(res.destroyed).toBe(true);
    expect(res.ended).toBe(false);
  });

  it('asks the sender to cancel when the client goes away first', async () => {
    const c = channel();
    const res = new Socket();
    const done = pipePortToResponse(c.receiver, asResponse(res));
    res.emit('close');
    await done;
    await until(() => c.controls.some((m) => m.type === 'cancel'), 'the cancel');
  });

  it('ends normally when the sender closes its port right after the end', async () => {
    const c = channel();
    const res = new Socket();
    const done = pipePortToResponse(c.receiver, asResponse(res));
    c.send({ type: 'chunk', data: new Uint8Array(5) });
    c.send({ type: 'end' });
    c.sender.close();
    await done;
    expect(res.ended).toBe(true);
    expect(res.destroyed).toBe(false);
  });

  it('destroys the response when the sender vanishes before the end, unless it left a tail', async () => {
    const gone = channel();
    const res = new Socket();
    const done = pipePortToResponse(gone.receiver, asResponse(res));
    gone.sender.close();
    await done;
    expect(res.destroyed).toBe(true);

    const tailed = channel();
    const res2 = new Socket();
    const tail = new TextEncoder().encode('event: message\ndata: {}\n\n');
    const done2 = pipePortToResponse(tailed.receiver, asResponse(res2), undefined, () => tail);
    tailed.sender.close();
    await done2;
    expect(res2.destroyed).toBe(false);
    expect(res2.ended).toBe(true);
    expect(res2.written.at(-1)).toBe(tail);
  });
});
