import { describe, expect, it } from 'vitest';
import { createMemoryStore, MemoryStore, resolveAdmissionOptions } from '../dist/broker/index.js';
import { runStoreSuite } from './store.case.js';

runStoreSuite({ name: 'memory', createStore: createMemoryStore });

describe('the memory store FIFO list', () => {
  it('is empty once every session has closed', async () => {
    let time = 1_000;
    const store = new MemoryStore({
      admission: resolveAdmissionOptions({ maxSessions: 3, idleTimeoutMs: 1_000 }),
      lanes: 1,
      now: () => time,
      closer: async () => undefined,
    });
    const refs = [];
    for (let i = 0; i < 10; i++) {
      const d = await store.admit({ clientKey: 'c', owner: 1 });
      if (!d.ok) throw new Error(`refused: ${d.reason}`);
      store.table.leave(d);
      refs.push(d);
      expect(store.stats().fifoLength).toBeLessThanOrEqual(3);
    }
    for (const r of refs) store.closed(r, 'deleted');
    time += 5_000;
    store.sweep();
    await new Promise((resolve) => setImmediate(resolve));
    expect(store.stats()).toMatchObject({ occupied: 0, fifoLength: 0 });
    await store.shutdown(0);
  });
});

describe('the memory store client table', () => {
  it('stays bounded: clients holding no session are recycled least recently used first', async () => {
    const store = new MemoryStore({
      admission: resolveAdmissionOptions({
        maxSessions: 4,
        perClient: { maxSessions: 2, rate: { max: 5, windowMs: 60_000 } },
      }),
      lanes: 1,
      now: () => 0,
      closer: async () => undefined,
    });
    for (let i = 0; i < 500; i++) {
      const d = await store.admit({ clientKey: `client-${i}`, owner: 1 });
      if (!d.ok) throw new Error(`refused: ${d.reason}`);
      store.table.leave(d);
      store.closed(d, 'deleted');
    }
    expect(store.clientEntries).toBeLessThanOrEqual(4 + 64);
    expect(store.stats().occupied).toBe(0);
    await store.shutdown(0);
  });
});

describe('the memory store at capacity with an owner thread that cannot answer', () => {
  /** Two owner threads (1 and 2) beating in the table; `silence(owner)` stops one's heartbeat. */
  function twoOwners(evict: 'oldest' | 'idlest') {
    const closes: Array<{ owner: number; ref: { slot: number; gen: number } }> = [];
    const store = new MemoryStore({
      admission: resolveAdmissionOptions({ maxSessions: 2, evict, idleTimeoutMs: 0 }),
      lanes: 2,
      unresponsiveMs: 100,
      stallTimeoutMs: 10_000,
      closer: async (owner, ref) => {
        closes.push({ owner, ref });
      },
    });
    const lanes = new Map([1, 2].map((owner) => [owner, store.table.claimLane(owner)]));
    const beating = new Set([1, 2]);
    const beat = () => {
      for (const owner of beating) store.table.beat(lanes.get(owner) as number);
    };
    beat();
    const timer = setInterval(beat, 5);
    return {
      store,
      closes,
      silence: (owner: number) => beating.delete(owner),
      dispose: async () => {
        clearInterval(timer);
        await store.shutdown(0);
      },
    };
  }

  it.each(['oldest', 'idlest'] as const)(
    'evicts (%s) a session of an owner that can answer, skipping the older one of the silent owner',
    async (evict) => {
      const h = twoOwners(evict);
      const first = await h.store.admit({ clientKey: 'a', owner: 1 });
      const second = await h.store.admit({ clientKey: 'b', owner: 2 });
      if (!first.ok || !second.ok) throw new Error('refused below capacity');
      h.store.table.leave(first);
      h.store.table.leave(second);
      h.silence(1);
      await new Promise((resolve) => setTimeout(resolve, 250));
      expect(h.store.table.unresponsiveThreads().has(1)).toBe(true);
      const admitted = h.store.admit({ clientKey: 'c', owner: 2 });
      await new Promise((resolve) => setImmediate(resolve));
      expect(h.closes).toEqual([{ owner: 2, ref: { slot: second.slot, gen: second.gen } }]);
      expect(await admitted).toMatchObject({ ok: true });
      await h.dispose();
    },
  );

  it('refuses at once, with a retry after the silent owner is due to be replaced, when only its sessions could go', async () => {
    const h = twoOwners('oldest');
    const first = await h.store.admit({ clientKey: 'a', owner: 1 });
    const second = await h.store.admit({ clientKey: 'b', owner: 1 });
    if (!first.ok || !second.ok) throw new Error('refused below capacity');
    h.store.table.leave(first);
    h.store.table.leave(second);
    h.silence(1);
    await new Promise((resolve) => setTimeout(resolve, 250));
    const decision = await h.store.admit({ clientKey: 'c', owner: 2 });
    expect(decision).toMatchObject({ ok: false, reason: 'full' });
    // The stall timeout (10 s) less the silence so far.
    expect(decision.ok ? 0 : decision.retryAfterMs).toBeGreaterThan(9_000);
    expect(decision.ok ? 0 : decision.retryAfterMs).toBeLessThanOrEqual(10_000);
    expect(h.closes).toEqual([]);
    expect(h.store.stats()).toMatchObject({ occupied: 2, live: 2, closing: 0, waiting: 0 });
    await h.dispose();
  });
});
