/**
 * The shared state of the best-effort baseline: one Int32Array over a
 * SharedArrayBuffer that every thread maps. It holds the live session count
 * (what the Rust crate reads from its inner sessions map), a few counters
 * for the benchmarks, and the creation-order queue (the crate's
 * `Mutex<VecDeque<SessionId>>`): entries (owner thread, serial) guarded by a
 * spin lock that is only ever held for a few array operations, never across
 * an await, as the crate holds its tokio mutex only for short sections.
 *
 *   [LOCK, LIVE, MAX_LIVE, OVER_CAP, CREATED, EVICTIONS, NEXT_SERIAL, QLEN, (owner, serial) * capacity]
 */
export const LOCK = 0;
export const LIVE = 1;
export const MAX_LIVE = 2;
export const OVER_CAP = 3;
export const CREATED = 4;
export const EVICTIONS = 5;
export const NEXT_SERIAL = 6;
export const QLEN = 7;
const HEADER = 8;

export function createShared(maxSessions) {
  // Room for every live session plus as many in-flight creations as the pool can hold.
  const capacity = maxSessions * 4 + 8192;
  const i32 = new Int32Array(new SharedArrayBuffer((HEADER + capacity * 2) * 4));
  return i32;
}

export class Shared {
  constructor(i32, maxSessions) {
    this.i32 = i32;
    this.max = maxSessions;
    this.capacity = (i32.length - HEADER) / 2;
  }

  live() {
    return Atomics.load(this.i32, LIVE);
  }

  nextSerial() {
    return Atomics.add(this.i32, NEXT_SERIAL, 1) + 1;
  }

  /** A session was inserted (the crate's inner sessions map grew): count it, and whether it went over the cap. */
  inserted() {
    const live = Atomics.add(this.i32, LIVE, 1) + 1;
    Atomics.add(this.i32, CREATED, 1);
    if (live > this.max) Atomics.add(this.i32, OVER_CAP, 1);
    for (let seen = Atomics.load(this.i32, MAX_LIVE); live > seen; seen = Atomics.load(this.i32, MAX_LIVE)) {
      if (Atomics.compareExchange(this.i32, MAX_LIVE, seen, live) === seen) break;
    }
  }

  removed() {
    Atomics.sub(this.i32, LIVE, 1);
  }

  evicting() {
    Atomics.add(this.i32, EVICTIONS, 1);
  }

  /** Runs `fn` holding the queue lock (a spin lock: the sections are a few array operations long). */
  locked(fn) {
    while (Atomics.compareExchange(this.i32, LOCK, 0, 1) !== 0) {
      // spin
    }
    try {
      return fn();
    } finally {
      Atomics.store(this.i32, LOCK, 0);
    }
  }

  /** With the lock held: the oldest entry, or undefined. */
  front() {
    if (Atomics.load(this.i32, QLEN) === 0) return undefined;
    return { owner: Atomics.load(this.i32, HEADER), serial: Atomics.load(this.i32, HEADER + 1) };
  }

  /** With the lock held: appends an entry. */
  pushBack(owner, serial) {
    const len = Atomics.load(this.i32, QLEN);
    if (len >= this.capacity) throw new Error('best-effort creation queue is full');
    Atomics.store(this.i32, HEADER + len * 2, owner);
    Atomics.store(this.i32, HEADER + len * 2 + 1, serial);
    Atomics.store(this.i32, QLEN, len + 1);
  }

  /** With the lock held: removes the entry of (owner, serial), keeping the order of the rest (VecDeque::retain). */
  remove(owner, serial) {
    const len = Atomics.load(this.i32, QLEN);
    let out = 0;
    for (let i = 0; i < len; i++) {
      const o = Atomics.load(this.i32, HEADER + i * 2);
      const s = Atomics.load(this.i32, HEADER + i * 2 + 1);
      if (o === owner && s === serial) continue;
      if (out !== i) {
        Atomics.store(this.i32, HEADER + out * 2, o);
        Atomics.store(this.i32, HEADER + out * 2 + 1, s);
      }
      out++;
    }
    Atomics.store(this.i32, QLEN, out);
  }

  counters() {
    return {
      live: Atomics.load(this.i32, LIVE),
      maxLive: Atomics.load(this.i32, MAX_LIVE),
      overCap: Atomics.load(this.i32, OVER_CAP),
      created: Atomics.load(this.i32, CREATED),
      evictions: Atomics.load(this.i32, EVICTIONS),
      queued: Atomics.load(this.i32, QLEN),
    };
  }
}
