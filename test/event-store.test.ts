/**
 * The resumability event store stays bounded, in events and in bytes (per
 * session and across sessions), replays in order, and never replays a stream
 * with a hole: a cursor from before a dropped event is unknown.
 */
import type { JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';
import { describe, expect, it } from 'vitest';
import { BoundedEventStore, type EventStoreLimits, ResumeBudget } from '../dist/main/host/event-store.js';

const note = (n: number, size = 0): JSONRPCMessage => ({
  jsonrpc: '2.0',
  method: 'notifications/message',
  params: { n, data: 'x'.repeat(size) },
});
/** The bytes the store counts for a message: its JSON in UTF-8. */
const sizeOf = (message: JSONRPCMessage) => Buffer.byteLength(JSON.stringify(message));

const MiB = 1024 * 1024;

function newStore(limits: Partial<EventStoreLimits> = {}, budget = ResumeBudget.create(64 * MiB, 1)) {
  const full: EventStoreLimits = {
    maxEventsPerStream: 1000,
    maxStreams: 100,
    maxBytesPerSession: MiB,
    maxTotalBytes: budget.maxBytes,
    ...limits,
  };
  return new BoundedEventStore(full, budget.claim(0));
}

async function replay(store: BoundedEventStore, after: string) {
  const sent: Array<[string, JSONRPCMessage]> = [];
  const stream = await store.replayEventsAfter(after, {
    send: async (id, message) => {
      sent.push([id, message]);
    },
  });
  return { stream, sent };
}

const numbers = (sent: Array<[string, JSONRPCMessage]>) =>
  sent.map(([, m]) => (m as unknown as { params: { n: number } }).params.n);

describe('the bounded event store', () => {
  it('keeps the last K events of the S most recently written streams', async () => {
    const store = newStore({ maxEventsPerStream: 5, maxStreams: 3 });
    const ids: string[] = [];
    for (const stream of ['a', 'b', 'c', 'd']) {
      for (let i = 0; i < 30; i++) ids.push(await store.storeEvent(stream, note(i)));
    }
    expect(store.size).toBe(15);
    // A stream pushed out of the store is unknown (the SDK answers 400).
    expect(await store.getStreamIdForEventId(ids[0] as string)).toBeUndefined();
    expect(await store.getStreamIdForEventId(ids[119] as string)).toBe('d');
    // Of a kept stream only the newest K remain: replay after its oldest kept event gives K - 1.
    const { sent } = await replay(store, ids[115] as string);
    expect(sent).toHaveLength(4);
  });

  it('replays what followed an event id, in order, on its own stream only', async () => {
    const store = newStore({ maxEventsPerStream: 10, maxStreams: 4 });
    const first = await store.storeEvent('a', note(1));
    await store.storeEvent('b', note(2));
    await store.storeEvent('a', {} as JSONRPCMessage); // a priming event: nothing to replay
    await store.storeEvent('a', note(3));
    await store.storeEvent('a', note(4));
    const { stream, sent } = await replay(store, first);
    expect(stream).toBe('a');
    expect(numbers(sent)).toEqual([3, 4]);
    await expect(replay(store, 'nope#1')).rejects.toThrow(/unknown event id/);
  });

  it('keeps nothing of a priming event, yet resumes a stream from its id', async () => {
    const store = newStore({ maxEventsPerStream: 2 });
    const priming = await store.storeEvent('a', {} as JSONRPCMessage);
    expect(store.size).toBe(0);
    expect(store.bytes).toBe(0);
    expect(await store.getStreamIdForEventId(priming)).toBe('a');
    expect((await replay(store, priming)).sent).toEqual([]);
    await store.storeEvent('a', note(1));
    await store.storeEvent('a', note(2));
    // Both slots of the stream hold messages: from the priming id, nothing is missing.
    expect(numbers((await replay(store, priming)).sent)).toEqual([1, 2]);
    await store.storeEvent('a', note(3));
    await expect(replay(store, priming)).rejects.toThrow(/unknown event id/);
  });

  it('keeps at most maxBytesPerSession bytes, dropping the oldest events of any stream first', async () => {
    const size = sizeOf(note(0, 300));
    const store = newStore({ maxBytesPerSession: 3 * size + 10 });
    const ids: string[] = [];
    for (let i = 0; i < 6; i++) ids.push(await store.storeEvent(i % 2 === 0 ? 'a' : 'b', note(i, 300)));
    // Three fit; the three oldest (0 on a, 1 on b, 2 on a) went, whatever their stream.
    expect(store.size).toBe(3);
    expect(store.bytes).toBe(3 * size);
    expect(numbers((await replay(store, ids[2] as string)).sent)).toEqual([4]);
    expect(numbers((await replay(store, ids[3] as string)).sent)).toEqual([5]);
  });

  it('stores no event larger than maxBytesPerSession, but gives it an id a resumption can start from', async () => {
    const store = newStore({ maxBytesPerSession: 1000 });
    const before = await store.storeEvent('a', note(1));
    const big = await store.storeEvent('a', note(2, 2000));
    const after = await store.storeEvent('a', note(3));
    expect(big).toMatch(/^a#\d+$/);
    expect(store.size).toBe(2);
    expect(store.bytes).toBe(sizeOf(note(1)) + sizeOf(note(3)));
    // From before it: the replay would miss it, so the id is unknown.
    expect(await store.getStreamIdForEventId(before)).toBeUndefined();
    await expect(replay(store, before)).rejects.toThrow(/unknown event id/);
    // From it (the client received it live), or after it: nothing is missing.
    expect(await store.getStreamIdForEventId(big)).toBe('a');
    expect(numbers((await replay(store, big)).sent)).toEqual([3]);
    expect((await replay(store, after)).sent).toEqual([]);
  });

  it('refuses a cursor followed by a dropped event, whatever dropped it, rather than replay a hole', async () => {
    const store = newStore({ maxEventsPerStream: 3 });
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push(await store.storeEvent('a', note(i)));
    // Events 0 and 1 were dropped: a client that saw only 0 missed 1.
    expect(await store.getStreamIdForEventId(ids[0] as string)).toBeUndefined();
    // A client that saw 1 misses nothing: 2, 3 and 4 are kept.
    expect(numbers((await replay(store, ids[1] as string)).sent)).toEqual([2, 3, 4]);
    // Ids this store never issued for the stream are unknown too.
    expect(await store.getStreamIdForEventId('a#99')).toBeUndefined();
  });

  it('holds at most maxTotalBytes across the stores of every thread', async () => {
    const size = sizeOf(note(0, 500));
    const budget = ResumeBudget.create(3 * size, 2);
    const limits: EventStoreLimits = {
      maxEventsPerStream: 100,
      maxStreams: 10,
      maxBytesPerSession: 2 * size,
      maxTotalBytes: 3 * size,
    };
    // Two threads open the same buffer; each counts its sessions' stores in its own slot.
    const threadOne = new ResumeBudget(budget.buffer, 3 * size).claim(1);
    const threadTwo = new ResumeBudget(budget.buffer, 3 * size).claim(2);
    const one = new BoundedEventStore(limits, threadOne);
    const other = new BoundedEventStore(limits, threadTwo);
    const third = new BoundedEventStore(limits, threadTwo);
    for (let i = 0; i < 2; i++) await one.storeEvent('a', note(i, 500));
    await other.storeEvent('a', note(5, 500));
    expect(budget.used).toBe(3 * size);
    // Full: a store with nothing to drop stores nothing...
    await third.storeEvent('a', note(7, 500));
    expect(third.size).toBe(0);
    // ...and one that holds events makes room by dropping its own oldest.
    const last = await other.storeEvent('a', note(6, 500));
    expect(other.size).toBe(1);
    expect(numbers((await replay(other, last.replace(/\d+$/, '1'))).sent)).toEqual([6]);
    expect(budget.used).toBe(3 * size);
    expect(one.bytes + other.bytes + third.bytes).toBe(budget.used);
  });

  it('keeps its events when even all of them would not make room in the total', async () => {
    const budget = ResumeBudget.create(1000, 2);
    const limits: EventStoreLimits = {
      maxEventsPerStream: 100,
      maxStreams: 10,
      maxBytesPerSession: 1000,
      maxTotalBytes: 1000,
    };
    const small = new BoundedEventStore(limits, budget.claim(1));
    const large = new BoundedEventStore(limits, budget.claim(2));
    await large.storeEvent('a', note(1, 600));
    await small.storeEvent('a', note(2, 100));
    const held = small.bytes;
    await small.storeEvent('a', note(3, 500));
    expect(small.bytes).toBe(held);
    expect(small.size).toBe(1);
  });

  it('gives its bytes back when disposed, and stores nothing after', async () => {
    const budget = ResumeBudget.create(MiB, 1);
    const store = newStore({}, budget);
    for (let i = 0; i < 4; i++) await store.storeEvent(`s${i}`, note(i, 1000));
    expect(budget.used).toBe(store.bytes);
    expect(budget.used).toBeGreaterThan(4000);
    store.dispose();
    expect(budget.used).toBe(0);
    const id = await store.storeEvent('s0', note(9, 1000));
    expect(id).toMatch(/^s0#\d+$/);
    expect(store.size).toBe(0);
    expect(budget.used).toBe(0);
    expect(await store.getStreamIdForEventId(id)).toBeUndefined();
  });

  it("takes a dead thread's bytes back out of the total", async () => {
    const budget = ResumeBudget.create(MiB, 2);
    const limits: EventStoreLimits = {
      maxEventsPerStream: 100,
      maxStreams: 10,
      maxBytesPerSession: MiB,
      maxTotalBytes: MiB,
    };
    const dying = new BoundedEventStore(limits, budget.claim(7));
    const living = new BoundedEventStore(limits, budget.claim(8));
    await dying.storeEvent('a', note(1, 5000));
    await living.storeEvent('a', note(2, 100));
    expect(budget.reclaim(7)).toBe(dying.bytes);
    expect(budget.used).toBe(living.bytes);
    // The slot is free again for a replacement thread.
    const replacement = new BoundedEventStore(limits, budget.claim(9));
    await replacement.storeEvent('a', note(3, 100));
    expect(replacement.size).toBe(1);
  });
});
