/**
 * The memory store's indexes: the heaps on their own against a sorted
 * reference, and the store's expiry and idlest choices against a scan of
 * every slot, on a fake clock with sessions touched behind the broker's back.
 */
import { describe, expect, it } from 'vitest';
import { MemoryStore, resolveAdmissionOptions } from '../dist/broker/index.js';
import { type HeapItem, ItemHeap, SlotHeap } from '../dist/broker/stores/memory/heaps.js';
import { S_STATE, SLOT_I32, SLOT_I64, ST_LIVE, T_LAST_SEEN, wordState } from '../dist/shared/layout.js';

/** A small deterministic generator (mulberry32), so a failure replays. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('SlotHeap', () => {
  it('pops slots by key, ties by slot index, through inserts, changes and removals', () => {
    const capacity = 300;
    const heap = new SlotHeap(capacity);
    const reference = new Map<number, number>();
    const next = random(7);
    const least = () => [...reference].sort(([sa, ka], [sb, kb]) => ka - kb || sa - sb)[0]?.[0] ?? -1;
    for (let step = 0; step < 5_000; step++) {
      const slot = Math.floor(next() * capacity);
      const op = next();
      if (op < 0.5) {
        const key = Math.floor(next() * 50); // many equal keys
        heap.set(slot, key);
        reference.set(slot, key);
      } else if (op < 0.8) {
        heap.delete(slot);
        reference.delete(slot);
      } else {
        const popped = heap.pop();
        expect(popped).toBe(least());
        reference.delete(popped);
      }
      expect(heap.size).toBe(reference.size);
      expect(heap.size).toBeLessThanOrEqual(capacity);
      expect(heap.peek()).toBe(least());
      expect(heap.has(slot)).toBe(reference.has(slot));
    }
  });

  it('holds each slot once however often it is set, and is empty after popping all', () => {
    const heap = new SlotHeap(4);
    for (let i = 0; i < 100; i++) heap.set(i % 4, 100 - i);
    expect(heap.size).toBe(4);
    expect([heap.pop(), heap.pop(), heap.pop(), heap.pop(), heap.pop()]).toEqual([3, 2, 1, 0, -1]);
    expect(heap.size).toBe(0);
    expect(heap.peek()).toBe(-1);
  });
});

describe('ItemHeap', () => {
  interface Item extends HeapItem {
    id: number;
    weight: number;
  }

  it('keeps the order of mutable items through updates and removals', () => {
    const heap = new ItemHeap<Item>((a, b) => a.weight > b.weight || (a.weight === b.weight && a.id < b.id));
    const items: Item[] = Array.from({ length: 60 }, (_, id) => ({ id, weight: 0, heapIndex: -1 }));
    const inHeap = new Set<Item>();
    const best = () => [...inHeap].sort((a, b) => b.weight - a.weight || a.id - b.id)[0];
    const next = random(11);
    for (let step = 0; step < 10_000; step++) {
      const item = items[Math.floor(next() * items.length)] as Item;
      const op = next();
      if (op < 0.6) {
        item.weight += next() < 0.5 ? 1 : -1;
        heap.update(item);
        inHeap.add(item);
      } else if (op < 0.85) {
        heap.delete(item);
        inHeap.delete(item);
        expect(item.heapIndex).toBe(-1);
      } else {
        const popped = heap.pop();
        expect(popped).toBe(best());
        if (popped) inHeap.delete(popped);
      }
      expect(heap.size).toBe(inHeap.size);
      expect(heap.peek()).toBe(best());
    }
  });
});

describe('the memory store indexes against a scan of every slot', () => {
  const IDLE = 1_000;

  /** A full store whose sessions are touched at random through the table, behind the broker's back. */
  async function fullStore(evict: 'oldest' | 'idlest', capacity: number, busyTimeoutMs: number) {
    let time = 10_000;
    const closes: Array<{ slot: number; reason: string }> = [];
    const store = new MemoryStore({
      admission: resolveAdmissionOptions({ maxSessions: capacity, evict, idleTimeoutMs: IDLE, busyTimeoutMs }),
      lanes: 1,
      now: () => time,
      sweepIntervalMs: 60_000,
      closer: async (_owner, ref, reason) => {
        closes.push({ slot: ref.slot, reason });
      },
    });
    const refs: Array<{ slot: number; gen: number }> = [];
    for (let i = 0; i < capacity; i++) {
      const d = await store.admit({ clientKey: 'c', owner: 1 });
      if (!d.ok) throw new Error(`refused: ${d.reason}`);
      store.table.leave(d);
      refs.push(d);
      time += 1;
    }
    return {
      store,
      closes,
      refs,
      advance: (ms: number) => {
        time += ms;
      },
      now: () => time,
    };
  }

  it('sweeps exactly the sessions a scan finds expired, after activity the broker never saw', async () => {
    // A busy timeout longer than the idle timeout: a request that ends resets the idle clock.
    const h = await fullStore('oldest', 400, 3 * IDLE);
    const next = random(3);
    for (let round = 0; round < 12; round++) {
      // Touch some sessions, start requests in some and end others, then let time pass.
      for (const ref of h.refs) {
        const r = next();
        if (r < 0.2) h.store.table.touch(ref);
        else if (r < 0.3) h.store.table.enter(ref);
        else if (r < 0.45 && h.store.table.inflight(ref) > 0) h.store.table.leave(ref);
      }
      h.advance(Math.floor(next() * 700));
      const now = h.now();
      const { words } = h.store.table.views;
      const expected = h.refs
        .filter((ref) => h.store.table.isLive(ref))
        .filter(
          (ref) =>
            h.store.table.expiry(ref.slot, Atomics.load(words, ref.slot * SLOT_I32 + S_STATE), now) !== undefined,
        )
        .map((ref) => ref.slot)
        .sort((a, b) => a - b);
      const before = h.closes.length;
      h.store.sweep();
      const swept = h.closes
        .slice(before)
        .map((c) => c.slot)
        .sort((a, b) => a - b);
      expect(swept).toEqual(expected);
    }
    expect(h.closes.length).toBeGreaterThan(0);
    await h.store.shutdown(0);
  });

  it('evicts (idlest) the session a scan finds least recently active and not busy', async () => {
    const h = await fullStore('idlest', 300, 500);
    const next = random(5);
    const { words, times } = h.store.table.views;
    for (let round = 0; round < 20; round++) {
      for (const ref of h.refs) {
        const r = next();
        if (r < 0.3) h.store.table.touch(ref);
        else if (r < 0.35 && h.store.table.inflight(ref) === 0) h.store.table.enter(ref);
      }
      h.advance(1 + Math.floor(next() * 20));
      const now = h.now();
      let best = -1;
      let bestSeen = Number.POSITIVE_INFINITY;
      for (let slot = 0; slot < h.store.table.capacity; slot++) {
        const word = Atomics.load(words, slot * SLOT_I32 + S_STATE);
        if (wordState(word) !== ST_LIVE || h.store.table.isProtected(slot, word, now)) continue;
        const seen = Number(Atomics.load(times, slot * SLOT_I64 + T_LAST_SEEN));
        if (seen < bestSeen) {
          bestSeen = seen;
          best = slot;
        }
      }
      const before = h.closes.length;
      const pending = h.store.admit({ clientKey: 'c', owner: 1 });
      await new Promise((resolve) => setImmediate(resolve));
      expect(h.closes.slice(before)).toEqual([{ slot: best, reason: 'evicted' }]);
      const d = await pending;
      if (!d.ok) throw new Error(`refused: ${d.reason}`);
      h.store.table.leave(d);
      h.refs[h.refs.findIndex((r) => r.slot === d.slot)] = d;
    }
    await h.store.shutdown(0);
  });
});

describe('the memory store answers from its indexes', () => {
  it('refuses (evict none) with a Retry-After of the soonest idle deadline, counting activity the broker never saw', async () => {
    let time = 0;
    const store = new MemoryStore({
      admission: resolveAdmissionOptions({ maxSessions: 3, evict: 'none', idleTimeoutMs: 10_000 }),
      lanes: 1,
      now: () => time,
      closer: async () => undefined,
    });
    const refs = [];
    for (const at of [0, 1_000, 2_000]) {
      time = at;
      const d = await store.admit({ clientKey: 'c', owner: 1 });
      if (!d.ok) throw new Error(`refused: ${d.reason}`);
      store.table.leave(d);
      refs.push(d);
    }
    time = 5_000;
    store.table.touch(refs[0] as { slot: number; gen: number });
    time = 6_000;
    // The first session was active at 5,000: the second one's deadline (11,000) is the soonest.
    expect(await store.admit({ clientKey: 'c', owner: 1 })).toEqual({
      ok: false,
      reason: 'full',
      retryAfterMs: 5_000,
    });
    await store.shutdown(0);
  });

  it('evicts at the global cap from the client holding the most, ties to the one active first, as counts change', async () => {
    const closes: number[] = [];
    const store = new MemoryStore({
      admission: resolveAdmissionOptions({ maxSessions: 4, perClient: { maxSessions: 4 }, idleTimeoutMs: 0 }),
      lanes: 1,
      now: () => 0,
      closer: async (_owner, ref) => {
        closes.push(ref.slot);
      },
    });
    const slots: Record<string, number[]> = { a: [], b: [], c: [], d: [] };
    const admit = async (key: string) => {
      const d = await store.admit({ clientKey: key, owner: 1 });
      if (!d.ok) throw new Error(`refused: ${d.reason}`);
      store.table.leave(d);
      slots[key]?.push(d.slot);
    };
    for (const key of ['b', 'a', 'a', 'b']) await admit(key);
    // a and b hold two each; b became active first.
    await admit('c');
    expect(closes).toEqual([slots.b?.[0]]);
    // Now a holds two, b one, c one.
    await admit('d');
    expect(closes).toEqual([slots.b?.[0], slots.a?.[0]]);
    await store.shutdown(0);
  });
});
