/**
 * The sending end of a response body over a real MessageChannel: what it has
 * ready goes with the head (at most the window), the rest only as the receiver
 * grants credit, in pieces cut to the credit, and a client is cut off only when
 * bytes wait and no credit comes for the stall timeout.
 */
import { MessageChannel, type MessagePort } from 'node:worker_threads';
import { afterEach, describe, expect, it } from 'vitest';
import { deliver, prefetch, pumpToPort, StreamGate } from '../dist/shared/deliver.js';
import type { StreamLimits, StreamMessage, TaskResult } from '../dist/shared/messages.js';

/** A body the test writes to, and whether the pump cancelled it. */
function source() {
  let controller!: ReadableStreamDefaultController<Uint8Array>;
  const state = { cancelled: undefined as unknown };
  const body = new ReadableStream<Uint8Array>({
    start(c) {
      controller = c;
    },
    cancel(reason) {
      state.cancelled = reason ?? 'cancelled';
    },
  });
  return { body, controller, state };
}

/** `n` bytes counting up from `from` (mod 256), so order and slicing show in the content. */
function bytes(n: number, from = 0): Uint8Array {
  return Uint8Array.from({ length: n }, (_, i) => (from + i) % 256);
}

const ports: MessagePort[] = [];
afterEach(() => {
  for (const port of ports.splice(0)) port.close();
});

/**
 * The receiving side of the channel: records every message, grants credit on
 * demand, and checks on every chunk that the sender never has more than the
 * window outstanding.
 */
function receiver(window: number) {
  const channel = new MessageChannel();
  ports.push(channel.port1, channel.port2);
  const r = {
    sender: channel.port1,
    chunks: [] as Uint8Array[],
    received: 0,
    credited: 0,
    overshoot: 0,
    ended: false,
    aborted: undefined as string | undefined,
    closed: false,
    credit(n: number) {
      r.credited += n;
      channel.port2.postMessage({ type: 'credit', bytes: n });
    },
    cancel() {
      channel.port2.postMessage({ type: 'cancel' });
    },
    content(): Uint8Array {
      return new Uint8Array(Buffer.concat(r.chunks));
    },
  };
  channel.port2.on('message', (message: StreamMessage) => {
    if (message.type === 'chunk') {
      r.chunks.push(new Uint8Array(message.data));
      r.received += message.data.byteLength;
      r.overshoot = Math.max(r.overshoot, r.received - r.credited - window);
    } else if (message.type === 'end') r.ended = true;
    else r.aborted = message.reason;
  });
  channel.port2.on('close', () => {
    r.closed = true;
  });
  return r;
}

/** Resolves once `done()` holds; fails after `ms`. */
async function until(done: () => boolean, what: string, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const limits = (windowBytes: number, stallTimeoutMs = 10_000, maxBufferedBytes = 1 << 20): StreamLimits => ({
  windowBytes,
  maxBufferedBytes,
  stallTimeoutMs,
});

/** Pumps `body` from its start (no head sent), as after a prefetch that found nothing ready. */
function pumpFromStart(body: ReadableStream<Uint8Array>, port: MessagePort, l: StreamLimits, gate?: StreamGate) {
  pumpToPort(
    { reader: body.getReader(), head: undefined, rest: undefined, done: false, pending: undefined },
    port,
    l,
    gate,
  );
}

describe('prefetch', () => {
  it('takes everything a body has ready at once, with the end', async () => {
    const { body, controller } = source();
    for (const n of [300, 300, 300]) controller.enqueue(bytes(n));
    controller.close();
    const p = await prefetch(body, 1000);
    expect(p.head?.byteLength).toBe(900);
    expect(p.rest).toBeUndefined();
    expect(p.done).toBe(true);
  });

  it('limits the head to the window and keeps the rest of the chunk that crossed it', async () => {
    const { body, controller } = source();
    controller.enqueue(bytes(600));
    controller.enqueue(bytes(600, 600));
    controller.close();
    const p = await prefetch(body, 1000);
    expect(new Uint8Array(p.head ?? [])).toEqual(bytes(1000));
    expect(p.rest).toEqual(bytes(200, 1000));
    // Bytes remain, so the body is not over even though the source is.
    expect(p.done).toBe(false);
  });

  it('stops at what is not ready yet, and hands that read on', async () => {
    const { body, controller } = source();
    controller.enqueue(bytes(10));
    const p = await prefetch(body, 1000);
    expect(p.head?.byteLength).toBe(10);
    expect(p.done).toBe(false);
    expect(p.pending).toBeDefined();
    controller.enqueue(bytes(5, 10));
    await expect(p.pending).resolves.toEqual({ done: false, value: bytes(5, 10) });
  });

  it('has no head when nothing is ready', async () => {
    const { body } = source();
    const p = await prefetch(body, 1000);
    expect(p.head).toBeUndefined();
    expect(p.pending).toBeDefined();
  });
});

describe('pumping a body to the listener', () => {
  it('sends no more than the window before credit arrives, then as much as the credit', async () => {
    const r = receiver(1000);
    const { body, controller } = source();
    pumpFromStart(body, r.sender, limits(1000));
    for (const [n, from] of [
      [600, 0],
      [600, 600],
      [600, 1200],
    ] as const)
      controller.enqueue(bytes(n, from));
    await until(() => r.received === 1000, 'the window');
    await sleep(50);
    expect(r.received).toBe(1000);
    expect(r.chunks.map((c) => c.byteLength)).toEqual([600, 400]);
    r.credit(300);
    await until(() => r.received === 1300, 'the credit');
    await sleep(20);
    expect(r.received).toBe(1300);
    r.credit(1000);
    await until(() => r.received === 1800, 'the rest');
    expect(r.ended).toBe(false);
    controller.close();
    await until(() => r.ended && r.closed, 'the end');
    expect(r.content()).toEqual(bytes(1800));
    expect(r.overshoot).toBe(0);
  });

  it('cuts a chunk larger than the credit into pieces of the credit, in order', async () => {
    const r = receiver(1000);
    const { body, controller } = source();
    pumpFromStart(body, r.sender, limits(1000));
    controller.enqueue(bytes(5000));
    controller.close();
    await until(() => r.received === 1000, 'the window');
    for (const n of [250, 1, 749, 3000]) r.credit(n);
    await until(() => r.ended, 'the end');
    expect(r.chunks.map((c) => c.byteLength)).toEqual([1000, 250, 1, 749, 3000]);
    expect(r.content()).toEqual(bytes(5000));
    expect(r.overshoot).toBe(0);
  });

  it('never has more than the window outstanding, whatever the credit pattern', async () => {
    const window = 4096;
    const r = receiver(window);
    const { body, controller } = source();
    pumpFromStart(body, r.sender, limits(window));
    let written = 0;
    for (let i = 0; i < 16; i++) {
      const n = 1 + ((i * 7919) % 9000);
      controller.enqueue(bytes(n, written));
      written += n;
    }
    controller.close();
    while (!r.ended) {
      await until(() => r.ended || r.received - r.credited >= Math.min(window, written - r.credited), 'a full window');
      if (r.ended) break;
      r.credit(Math.min(r.received - r.credited, 1 + ((r.credited * 31) % window)));
    }
    expect(r.content()).toEqual(bytes(written));
    expect(r.overshoot).toBe(0);
  });

  it('counts the prefetched head against the window', async () => {
    const r = receiver(1000);
    const { body, controller } = source();
    controller.enqueue(bytes(600));
    controller.enqueue(bytes(600, 600));
    controller.close();
    const p = await prefetch(body, 1000);
    pumpToPort(p, r.sender, limits(1000), undefined);
    await sleep(50);
    // The head travels with the response head; the rest waits for the head's credit.
    expect(r.received).toBe(0);
    r.credit(1000);
    await until(() => r.ended, 'the end');
    expect(r.content()).toEqual(bytes(200, 1000));
  });

  it('holds what it cannot send in the gate, whose sends wait past the buffer bound until credit comes', async () => {
    const r = receiver(100);
    const { body, controller } = source();
    const gate = new StreamGate(300);
    pumpFromStart(body, r.sender, limits(100, 10_000, 300), gate);
    controller.enqueue(bytes(1000));
    await until(() => r.received === 100, 'the window');
    expect(gate.buffered).toBe(900);
    let sent = false;
    const send = gate.run(async () => {
      sent = true;
    });
    await sleep(30);
    expect(sent).toBe(false);
    r.credit(500);
    await until(() => r.received === 600, 'the credit');
    await sleep(30);
    expect(sent).toBe(false);
    r.credit(100);
    await send;
    expect(gate.buffered).toBe(300);
    controller.close();
    r.credit(300);
    await until(() => r.ended, 'the end');
    expect(gate.buffered).toBe(0);
  });
});

describe('a stalled client', () => {
  it('is cut off when bytes wait and no credit comes for the stall timeout', async () => {
    const r = receiver(100);
    const { body, controller, state } = source();
    const gate = new StreamGate(1);
    pumpFromStart(body, r.sender, limits(100, 150), gate);
    controller.enqueue(bytes(500));
    const started = Date.now();
    await until(() => r.aborted !== undefined, 'the abort');
    expect(Date.now() - started).toBeGreaterThanOrEqual(140);
    expect(r.aborted).toMatch(/not reading/);
    expect(r.received).toBe(100);
    await until(() => r.closed && state.cancelled !== undefined, 'the source cancelled');
    // The producer's sends no longer wait.
    expect(gate.buffered).toBe(0);
  });

  it('is never cut off while credit keeps coming, however slowly it reads', async () => {
    const r = receiver(100);
    const { body, controller } = source();
    // 80 credits, one every 10 ms or so: far longer than the stall timeout in all.
    pumpFromStart(body, r.sender, limits(100, 500));
    controller.enqueue(bytes(8000));
    controller.close();
    const reader = setInterval(() => {
      if (r.received > r.credited) r.credit(r.received - r.credited);
    }, 10);
    try {
      await until(() => r.ended || r.aborted !== undefined, 'the end', 20_000);
    } finally {
      clearInterval(reader);
    }
    expect(r.aborted).toBeUndefined();
    expect(r.content()).toEqual(bytes(8000));
  });

  it('is not cut off when nothing waits for it, however long it takes no bytes', async () => {
    const r = receiver(1000);
    const { body, controller } = source();
    pumpFromStart(body, r.sender, limits(1000, 50));
    controller.enqueue(bytes(1000));
    await until(() => r.received === 1000, 'the window');
    await sleep(200);
    expect(r.aborted).toBeUndefined();
    expect(r.closed).toBe(false);
    controller.close();
    await until(() => r.ended, 'the end');
  });
});

describe('the end of a pumped body', () => {
  it('comes as an abort with the reason when the source fails', async () => {
    const r = receiver(1000);
    const { body, controller } = source();
    pumpFromStart(body, r.sender, limits(1000));
    controller.enqueue(bytes(10));
    await until(() => r.received === 10, 'the first bytes');
    controller.error(new Error('transport closed'));
    await until(() => r.aborted !== undefined, 'the abort');
    expect(r.aborted).toBe('transport closed');
    expect(r.ended).toBe(false);
  });

  it('cancels the source and opens the gate when the listener cancels', async () => {
    const r = receiver(10);
    const { body, controller, state } = source();
    const gate = new StreamGate(1);
    pumpFromStart(body, r.sender, limits(10), gate);
    controller.enqueue(bytes(100));
    await until(() => r.received === 10, 'the window');
    expect(gate.buffered).toBe(90);
    r.cancel();
    await until(() => state.cancelled !== undefined && r.closed, 'the cancel');
    expect(gate.buffered).toBe(0);
  });
});

describe('delivering a response', () => {
  const head: TaskResult = { kind: 'head', status: 200, headers: [], hasBody: true };

  it('sends a body that is ready at once with the head, and closes the port', async () => {
    const r = receiver(1000);
    const { body, controller } = source();
    controller.enqueue(bytes(20));
    controller.close();
    const result = await deliver(head, body, r.sender, limits(1000));
    expect(result).toMatchObject({ kind: 'head', body: bytes(20), ended: true });
    await until(() => r.closed, 'the port closed');
    expect(r.received).toBe(0);
  });

  it('sends at most the window with the head and the rest over the port', async () => {
    const r = receiver(1000);
    const { body, controller } = source();
    controller.enqueue(bytes(1500));
    controller.close();
    const result = await deliver(head, body, r.sender, limits(1000));
    expect(result).toMatchObject({ kind: 'head', body: bytes(1000), ended: false });
    r.credit(1000);
    await until(() => r.ended, 'the end');
    expect(r.content()).toEqual(bytes(500, 1000));
  });

  it('answers without a body as it is, closing the port', async () => {
    const r = receiver(1000);
    const empty: TaskResult = { kind: 'head', status: 202, headers: [], hasBody: false };
    await expect(deliver(empty, null, r.sender, limits(1000))).resolves.toBe(empty);
    await until(() => r.closed, 'the port closed');
  });
});
