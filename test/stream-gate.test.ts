/**
 * StreamGate: a stream's sends run in order, and wait while the stream holds
 * more than its limit of bytes not yet sent, until the reader sends some or
 * the stream is over.
 */
import { setImmediate as tick } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { StreamGate } from '../dist/shared/deliver.js';

/** Lets every pending promise and immediate run. */
async function settle(rounds = 5): Promise<void> {
  for (let i = 0; i < rounds; i++) await tick();
}

describe('a stream gate', () => {
  it('runs a send at once while the stream holds nothing', async () => {
    const gate = new StreamGate(100);
    let ran = false;
    const done = gate.run(async () => {
      ran = true;
      return 'sent';
    });
    await expect(done).resolves.toBe('sent');
    expect(ran).toBe(true);
  });

  it('runs sends in the order they were made, each after the previous one finished', async () => {
    const gate = new StreamGate(100);
    const events: string[] = [];
    const slow = gate.run(async () => {
      events.push('a start');
      await new Promise((resolve) => setTimeout(resolve, 20));
      events.push('a end');
    });
    const fast = gate.run(async () => {
      events.push('b');
    });
    await Promise.all([slow, fast]);
    expect(events).toEqual(['a start', 'a end', 'b']);
  });

  it('lets a later send run after an earlier one failed', async () => {
    const gate = new StreamGate(100);
    const failed = gate.run(async () => {
      throw new Error('boom');
    });
    await expect(failed).rejects.toThrow('boom');
    await expect(gate.run(async () => 'next')).resolves.toBe('next');
  });

  it('lets a send through while the stream holds up to its limit', async () => {
    const gate = new StreamGate(100);
    gate.add(100);
    await expect(gate.run(async () => 'sent')).resolves.toBe('sent');
  });

  it('holds a send while the stream holds more than its limit, and releases it once it is back within', async () => {
    const gate = new StreamGate(100);
    gate.add(150);
    expect(gate.buffered).toBe(150);
    let ran = false;
    const send = gate.run(async () => {
      ran = true;
    });
    await settle();
    expect(ran).toBe(false);
    gate.sub(40);
    await settle();
    expect(ran).toBe(false);
    gate.sub(10);
    await send;
    expect(ran).toBe(true);
    expect(gate.buffered).toBe(100);
  });

  it('keeps later sends behind a held one', async () => {
    const gate = new StreamGate(10);
    gate.add(11);
    const order: number[] = [];
    const sends = [1, 2, 3].map((n) => gate.run(async () => order.push(n)));
    await settle();
    expect(order).toEqual([]);
    gate.sub(11);
    await Promise.all(sends);
    expect(order).toEqual([1, 2, 3]);
  });

  it('waits again when a send brings the stream past its limit', async () => {
    const gate = new StreamGate(100);
    const order: string[] = [];
    const first = gate.run(async () => {
      // What the reader takes from this send: more than the limit.
      gate.add(500);
      order.push('first');
    });
    const second = gate.run(async () => {
      order.push('second');
    });
    await first;
    await settle();
    expect(order).toEqual(['first']);
    gate.sub(400);
    await second;
    expect(order).toEqual(['first', 'second']);
  });

  it('releases a held send when the stream is closed, and lets every later send pass', async () => {
    const gate = new StreamGate(1);
    gate.add(1_000_000);
    let ran = false;
    const held = gate.run(async () => {
      ran = true;
    });
    await settle();
    expect(ran).toBe(false);
    gate.close();
    await held;
    expect(ran).toBe(true);
    expect(gate.buffered).toBe(0);
    gate.add(1_000_000);
    await expect(gate.run(async () => 'after close')).resolves.toBe('after close');
  });
});
