/**
 * The shared session table's lock-free transitions (lookup, enter, leave,
 * touch, expiry) on a table created in this thread. Slots are published and
 * recycled here the way the broker does it, through the layout's named words.
 */
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import {
  INFLIGHT_MASK,
  S_CLIENT_HASH,
  S_GEN,
  S_RAND,
  S_STATE,
  SLOT_I32,
  SLOT_I64,
  ST_CLOSING,
  ST_FREE,
  ST_LIVE,
  STATE_MASK,
  stateWord,
  T_BUSY_SINCE,
  T_CREATED,
  T_LAST_SEEN,
  TAG_MASK,
  wordInflight,
  wordState,
  wordTag,
} from '../dist/shared/layout.js';
import { formatSessionId } from '../dist/shared/session-id.js';
import { SessionTable, type TableInit } from '../dist/shared/table.js';
import type { SessionRef } from '../dist/shared/types.js';

const INIT: TableInit = {
  capacity: 4,
  lanes: 1,
  rateMax: 0,
  idleTimeoutMs: 1000,
  maxLifetimeMs: 10_000,
  busyTimeoutMs: 500,
  manualClock: false,
  unresponsiveMs: 1000,
  stallTimeoutMs: 0,
};

const RAND = [0x12345678, -0x1234568, 0x0badf00d, -1] as const;

/** A table on a fake clock, and the broker's writes: publish a slot, begin its close, free it. */
function fixture(init: Partial<TableInit> = {}) {
  let clock = 0;
  const table = new SessionTable(SessionTable.create({ ...INIT, ...init }).buffer, () => clock);
  const { words, times } = table.views;
  const stateOf = (slot: number) => Atomics.load(words, slot * SLOT_I32 + S_STATE);
  return {
    table,
    stateOf,
    advance: (ms: number) => {
      clock += ms;
    },
    /** Publishes a live session in `slot` (as an admission does, minus the initialize's own place). */
    publish(
      slot: number,
      options: { rand?: readonly number[]; binding?: readonly [number, number]; inflight?: number } = {},
    ): { id: string; ref: SessionRef } {
      const base = slot * SLOT_I32;
      const gen = Atomics.load(words, base + S_GEN) >>> 0;
      const rand = options.rand ?? RAND;
      for (let i = 0; i < 4; i++) Atomics.store(words, base + S_RAND + i, rand[i] ?? 0);
      Atomics.store(words, base + S_CLIENT_HASH, options.binding?.[0] ?? 0);
      Atomics.store(words, base + S_CLIENT_HASH + 1, options.binding?.[1] ?? 0);
      const stamp = BigInt(clock);
      for (const t of [T_CREATED, T_LAST_SEEN, T_BUSY_SINCE]) Atomics.store(times, slot * SLOT_I64 + t, stamp);
      Atomics.store(words, base + S_STATE, stateWord(gen, ST_LIVE, options.inflight ?? 0));
      return { id: formatSessionId(slot, gen, rand), ref: { slot, gen } };
    },
    /** Moves a live slot to closing, keeping its in-flight count. */
    beginClose(slot: number) {
      const base = slot * SLOT_I32;
      const word = Atomics.load(words, base + S_STATE);
      Atomics.store(words, base + S_STATE, stateWord(wordTag(word), ST_CLOSING, wordInflight(word)));
    },
    /** Frees a slot with the next generation (`step` generations on, to reach a tag collision). */
    free(slot: number, step = 1) {
      const base = slot * SLOT_I32;
      const gen = ((Atomics.load(words, base + S_GEN) >>> 0) + step) >>> 0;
      Atomics.store(words, base + S_GEN, gen | 0);
      Atomics.store(words, base + S_STATE, stateWord(gen, ST_FREE, 0));
    },
    lastSeen: (slot: number) => Number(Atomics.load(times, slot * SLOT_I64 + T_LAST_SEEN)),
    busySince: (slot: number) => Number(Atomics.load(times, slot * SLOT_I64 + T_BUSY_SINCE)),
  };
}

describe('a new session table', () => {
  it('starts with every slot free at generation 1', () => {
    const { table, stateOf } = fixture();
    for (let slot = 0; slot < INIT.capacity; slot++) {
      expect(wordState(stateOf(slot))).toBe(ST_FREE);
      expect(wordInflight(stateOf(slot))).toBe(0);
      expect(Atomics.load(table.views.words, slot * SLOT_I32 + S_GEN)).toBe(1);
    }
  });

  it('refuses a buffer that is not a session table', () => {
    expect(() => new SessionTable(new SharedArrayBuffer(4096))).toThrow(TypeError);
  });

  it('packs the state word without the fields overlapping', () => {
    const word = stateWord(0x1ff, ST_CLOSING, INFLIGHT_MASK);
    expect(wordTag(word)).toBe(0xff);
    expect(wordState(word)).toBe(ST_CLOSING);
    expect(wordInflight(word)).toBe(INFLIGHT_MASK);
    expect(TAG_MASK & STATE_MASK).toBe(0);
    expect(STATE_MASK & INFLIGHT_MASK).toBe(0);
    expect(word).toBeGreaterThan(0);
  });
});

describe('lookup', () => {
  it('finds a published session by its id', () => {
    const f = fixture();
    const { id, ref } = f.publish(2);
    expect(f.table.lookup(id)).toEqual({ ok: true, ref });
  });

  it('answers malformed for an id that does not parse, unknown for a slot beyond the table', () => {
    const f = fixture();
    f.publish(0);
    expect(f.table.lookup('not-an-id')).toEqual({ ok: false, miss: 'malformed' });
    expect(f.table.lookup(formatSessionId(INIT.capacity, 1, RAND))).toEqual({ ok: false, miss: 'unknown' });
    expect(f.table.lookup(formatSessionId(0xffffffff, 1, RAND))).toEqual({ ok: false, miss: 'unknown' });
  });

  it('answers unknown for a free slot, a closing slot, or a wrong random word', () => {
    const f = fixture();
    expect(f.table.lookup(formatSessionId(1, 1, RAND))).toEqual({ ok: false, miss: 'unknown' });
    const { id } = f.publish(1);
    for (let i = 0; i < 4; i++) {
      const rand: number[] = [...RAND];
      rand[i] = (rand[i] ?? 0) ^ 1;
      expect(f.table.lookup(formatSessionId(1, 1, rand))).toEqual({ ok: false, miss: 'unknown' });
    }
    f.beginClose(1);
    expect(f.table.lookup(id)).toEqual({ ok: false, miss: 'unknown' });
  });

  it('refuses an old id once its slot is reused by a new generation', () => {
    const f = fixture();
    const old = f.publish(3);
    f.free(3);
    const fresh = f.publish(3);
    expect(fresh.ref.gen).toBe(old.ref.gen + 1);
    expect(f.table.lookup(old.id)).toEqual({ ok: false, miss: 'unknown' });
    expect(f.table.lookup(fresh.id)).toEqual({ ok: true, ref: fresh.ref });
  });

  it('refuses an old id whose generation differs only above the tag bits', () => {
    const f = fixture();
    const old = f.publish(0);
    f.free(0, 256);
    const fresh = f.publish(0);
    expect(wordTag(f.stateOf(0))).toBe(old.ref.gen & 0xff);
    expect(f.table.lookup(old.id)).toEqual({ ok: false, miss: 'unknown' });
    expect(f.table.lookup(fresh.id)).toEqual({ ok: true, ref: fresh.ref });
  });

  it('answers a bound session only with the same binding', () => {
    const f = fixture();
    const { id, ref } = f.publish(1, { binding: [7, -9] });
    expect(f.table.lookup(id, [7, -9])).toEqual({ ok: true, ref });
    expect(f.table.lookup(id)).toEqual({ ok: false, miss: 'unknown' });
    expect(f.table.lookup(id, [7, 9])).toEqual({ ok: false, miss: 'unknown' });
    expect(f.table.lookup(id, [8, -9])).toEqual({ ok: false, miss: 'unknown' });
  });

  it('answers an unbound session whatever binding the request carries', () => {
    const f = fixture();
    const { id, ref } = f.publish(1);
    expect(f.table.lookup(id, [7, -9])).toEqual({ ok: true, ref });
  });

  it('answers idle once a session has had no request for the idle timeout', () => {
    const f = fixture();
    const { id } = f.publish(0);
    f.advance(INIT.idleTimeoutMs - 1);
    expect(f.table.lookup(id).ok).toBe(true);
    f.advance(1);
    expect(f.table.lookup(id)).toEqual({ ok: false, miss: 'idle' });
  });

  it('does not answer idle while a request is in flight, until the busy timeout has passed', () => {
    const f = fixture({ busyTimeoutMs: 5000 });
    const { id, ref } = f.publish(0);
    expect(f.table.enter(ref)).toBe('entered');
    f.advance(INIT.idleTimeoutMs * 2);
    expect(f.table.lookup(id).ok).toBe(true);
    f.advance(5000);
    expect(f.table.lookup(id)).toEqual({ ok: false, miss: 'idle' });
  });

  it('answers lifetime past the max lifetime, busy or not', () => {
    const f = fixture({ idleTimeoutMs: 0, busyTimeoutMs: 60_000 });
    const { id, ref } = f.publish(0);
    expect(f.table.enter(ref)).toBe('entered');
    f.advance(INIT.maxLifetimeMs);
    expect(f.table.lookup(id)).toEqual({ ok: false, miss: 'lifetime' });
  });
});

describe('enter', () => {
  it('adds one request in flight to a live session and stamps busySince and lastSeen', () => {
    const f = fixture();
    const { ref } = f.publish(1);
    f.advance(40);
    expect(f.table.enter(ref)).toBe('entered');
    expect(wordInflight(f.stateOf(1))).toBe(1);
    expect(wordState(f.stateOf(1))).toBe(ST_LIVE);
    expect(f.busySince(1)).toBe(40);
    expect(f.lastSeen(1)).toBe(40);
    f.advance(10);
    expect(f.table.enter(ref)).toBe('entered');
    expect(f.table.inflight(ref)).toBe(2);
    // Overlapping requests do not extend the busy period.
    expect(f.busySince(1)).toBe(40);
    expect(f.lastSeen(1)).toBe(50);
  });

  it('answers limited at the limit and leaves the count unchanged', () => {
    const f = fixture();
    const { ref } = f.publish(0);
    for (let i = 0; i < 3; i++) expect(f.table.enter(ref, 3)).toBe('entered');
    expect(f.table.enter(ref, 3)).toBe('limited');
    expect(f.table.inflight(ref)).toBe(3);
    f.table.leave(ref);
    expect(f.table.enter(ref, 3)).toBe('entered');
  });

  it('never carries the count into the state bits: the limit is capped at the count width', () => {
    const f = fixture();
    const { ref } = f.publish(0, { inflight: INFLIGHT_MASK });
    expect(f.table.enter(ref, INFLIGHT_MASK + 10)).toBe('limited');
    expect(f.table.enter(ref)).toBe('limited');
    expect(wordState(f.stateOf(0))).toBe(ST_LIVE);
    expect(wordInflight(f.stateOf(0))).toBe(INFLIGHT_MASK);
  });

  it('answers gone for a closing slot and a free slot, even below the limit', () => {
    const f = fixture();
    const { ref } = f.publish(2, { inflight: 1 });
    f.beginClose(2);
    expect(f.table.enter(ref)).toBe('gone');
    expect(wordInflight(f.stateOf(2))).toBe(1);
    f.free(2);
    expect(f.table.enter(ref)).toBe('gone');
    expect(f.table.enter({ slot: 3, gen: 1 })).toBe('gone');
  });

  it('answers gone for a ref of an earlier generation, even one with the same tag', () => {
    const f = fixture();
    const old = f.publish(1);
    f.free(1, 256);
    const fresh = f.publish(1);
    expect(f.table.enter(old.ref)).toBe('gone');
    expect(f.table.inflight(fresh.ref)).toBe(0);
    expect(f.table.enter(fresh.ref)).toBe('entered');
  });
});

describe('leave', () => {
  it('takes one request out of flight and touches lastSeen', () => {
    const f = fixture();
    const { ref } = f.publish(0);
    f.table.enter(ref);
    f.table.enter(ref);
    f.advance(25);
    f.table.leave(ref);
    expect(f.table.inflight(ref)).toBe(1);
    expect(f.lastSeen(0)).toBe(25);
  });

  it('never goes below zero', () => {
    const f = fixture();
    const { ref } = f.publish(0);
    const before = f.stateOf(0);
    f.table.leave(ref);
    expect(f.stateOf(0)).toBe(before);
  });

  it('still decrements a closing slot of its generation, so its close sees the request end', () => {
    const f = fixture();
    const { ref } = f.publish(0, { inflight: 2 });
    f.beginClose(0);
    f.table.leave(ref);
    expect(wordState(f.stateOf(0))).toBe(ST_CLOSING);
    expect(wordInflight(f.stateOf(0))).toBe(1);
  });

  it('is a no-op on a slot reused by a later session, whatever its tag', () => {
    for (const step of [1, 256]) {
      const f = fixture();
      const old = f.publish(1, { inflight: 1 });
      f.free(1, step);
      const fresh = f.publish(1);
      f.table.enter(fresh.ref);
      f.table.leave(old.ref);
      expect(f.table.inflight(fresh.ref)).toBe(1);
    }
  });
});

describe('touch', () => {
  it('stamps lastSeen of a live session of its generation only', () => {
    const f = fixture();
    const old = f.publish(0);
    f.advance(30);
    f.table.touch(old.ref);
    expect(f.lastSeen(0)).toBe(30);
    f.free(0);
    const fresh = f.publish(0);
    f.advance(30);
    f.table.touch(old.ref);
    expect(f.lastSeen(0)).toBe(30);
    f.table.touch(fresh.ref);
    expect(f.lastSeen(0)).toBe(60);
  });
});

describe('enter and leave from several threads at once', () => {
  /** Runs `threads` racers on one session, started together; resolves with what each reports. */
  async function race(
    threads: number,
    limit: number,
    rounds: number,
    during?: (id: string, table: SessionTable) => Promise<unknown>,
  ) {
    const f = fixture();
    const { ref, id } = f.publish(1);
    // [0]: the start signal; [1]: requests inside the session right now, counted by the racers.
    const shared = new SharedArrayBuffer(8);
    const workerData = { buffer: f.table.buffer, shared, ref, limit, rounds };
    const ready: Promise<void>[] = [];
    const results = Array.from({ length: threads }, () => {
      const worker = new Worker(new URL('./fixtures/table-racer.js', import.meta.url), { workerData });
      const report = new Promise<{ entered: number; limited: number; most: number }>((resolve, reject) => {
        worker.on('message', (message) => {
          if (message !== 'ready') resolve(message);
        });
        worker.once('error', reject);
      });
      ready.push(new Promise((resolve) => worker.once('message', () => resolve())));
      return report;
    });
    await Promise.all(ready);
    const counts = new Int32Array(shared);
    Atomics.store(counts, 0, 1);
    Atomics.notify(counts, 0);
    const seen = await during?.(id, f.table);
    return { f, ref, results: await Promise.all(results), seen };
  }

  it('loses no update: every enter is matched by its leave and the count returns to 0', async () => {
    const { f, ref, results } = await race(3, INFLIGHT_MASK, 200_000);
    for (const r of results) expect(r.entered).toBe(200_000);
    expect(f.table.inflight(ref)).toBe(0);
    expect(wordState(f.stateOf(1))).toBe(ST_LIVE);
  });

  it('never fails a lookup of the session while other threads enter and leave it', async () => {
    // Per-thread listeners look sessions up on one thread while requests enter and leave on others.
    const { results, seen } = await race(2, INFLIGHT_MASK, 300_000, async (id, table) => {
      let misses = 0;
      let lookups = 0;
      const deadline = Date.now() + 400;
      while (Date.now() < deadline) {
        for (let i = 0; i < 1000; i++, lookups++) if (!table.lookup(id).ok) misses++;
        await new Promise((resolve) => setImmediate(resolve));
      }
      return { misses, lookups };
    });
    expect(results.every((r) => r.entered === 300_000)).toBe(true);
    expect(seen).toMatchObject({ misses: 0 });
    expect((seen as { lookups: number }).lookups).toBeGreaterThan(10_000);
  });

  it('never lets the count past the limit, however the enters interleave', async () => {
    const { f, ref, results } = await race(3, 1, 200_000);
    // A racer may be refused every time while another holds the one place; none ever sees two inside.
    expect(Math.max(...results.map((r) => r.most))).toBe(1);
    expect(results.reduce((sum, r) => sum + r.entered + r.limited, 0)).toBe(600_000);
    expect(f.table.inflight(ref)).toBe(0);
  });
});
