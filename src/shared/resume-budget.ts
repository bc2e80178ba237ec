/**
 * The resumability limits and the process-wide byte budget of the event
 * stores: plain data and a SharedArrayBuffer, shared by the thread that
 * creates the budget (it may load no SDK at all) and the threads whose event
 * stores count their bytes in it (`main/host/event-store.ts`).
 */
import { R_SLOTS, R_TOTAL, RS_BYTES, RS_I64, RS_THREAD, resumeBytesWords } from './layout.js';

export interface EventStoreLimits {
  /** Events kept per stream (the newest). */
  readonly maxEventsPerStream: number;
  /** Streams kept per session (the most recently written). */
  readonly maxStreams: number;
  /** Bytes of stored messages kept per session (the newest events), as JSON in UTF-8. */
  readonly maxBytesPerSession: number;
  /** Bytes of stored messages kept by all sessions of the process together. */
  readonly maxTotalBytes: number;
}

export const DEFAULT_EVENT_STORE_LIMITS: EventStoreLimits = {
  maxEventsPerStream: 32,
  maxStreams: 8,
  maxBytesPerSession: 1024 * 1024,
  maxTotalBytes: 64 * 1024 * 1024,
};

/** One thread's share of a `ResumeBudget`. */
export interface ByteAccount {
  /** Takes `bytes` from the budget if they fit under its maximum; false (and nothing taken) if not. */
  reserve(bytes: number): boolean;
  /** Gives back bytes reserved earlier. */
  release(bytes: number): void;
  /** Bytes the budget has left right now, for any thread. */
  free(): number;
}

/**
 * The bytes held by every event store of the process, against one maximum, in
 * a SharedArrayBuffer (layout: `R_*` in `shared/layout.ts`) that the listener
 * creates and every handler thread opens. Each thread claims a slot recording
 * its share, so the bytes of a thread that dies can be taken back.
 */
export class ResumeBudget {
  readonly buffer: SharedArrayBuffer;
  readonly maxBytes: number;
  readonly #words: BigInt64Array;
  readonly #slots: number;

  /** A new budget with room for `slots` threads. */
  static create(maxBytes: number, slots: number): ResumeBudget {
    return new ResumeBudget(new SharedArrayBuffer(resumeBytesWords(slots) * 8), maxBytes);
  }

  /** Opens a budget created elsewhere (another thread's `buffer`). */
  constructor(buffer: SharedArrayBuffer, maxBytes: number) {
    this.buffer = buffer;
    this.maxBytes = maxBytes;
    this.#words = new BigInt64Array(buffer);
    this.#slots = (this.#words.length - R_SLOTS) / RS_I64;
  }

  /** Bytes held right now, across all threads. */
  get used(): number {
    return Number(Atomics.load(this.#words, R_TOTAL));
  }

  /** Claims a slot for a thread; a thread that finds none free gets an account that refuses every reservation. */
  claim(threadId: number): ByteAccount {
    const words = this.#words;
    for (let slot = 0; slot < this.#slots; slot++) {
      const base = R_SLOTS + slot * RS_I64;
      if (Atomics.compareExchange(words, base + RS_THREAD, 0n, BigInt(threadId + 1)) === 0n) {
        Atomics.store(words, base + RS_BYTES, 0n);
        return this.#account(base + RS_BYTES);
      }
    }
    return { reserve: () => false, release: () => undefined, free: () => 0 };
  }

  /** Takes a dead thread's bytes back out of the total and frees its slot; returns how many. */
  reclaim(threadId: number): number {
    const words = this.#words;
    for (let slot = 0; slot < this.#slots; slot++) {
      const base = R_SLOTS + slot * RS_I64;
      if (Atomics.load(words, base + RS_THREAD) !== BigInt(threadId + 1)) continue;
      // The thread is gone: nothing else writes its slot any more.
      const held = Atomics.exchange(words, base + RS_BYTES, 0n);
      Atomics.sub(words, R_TOTAL, held);
      Atomics.store(words, base + RS_THREAD, 0n);
      return Number(held);
    }
    return 0;
  }

  #account(bytesWord: number): ByteAccount {
    const words = this.#words;
    const max = BigInt(this.maxBytes);
    return {
      reserve(bytes) {
        const wanted = BigInt(bytes);
        // Compare-and-swap against the maximum: the total never exceeds it, even
        // for a moment, so no thread is refused because of another's overshoot.
        let held = Atomics.load(words, R_TOTAL);
        for (;;) {
          if (held + wanted > max) return false;
          const seen = Atomics.compareExchange(words, R_TOTAL, held, held + wanted);
          if (seen === held) break;
          held = seen;
        }
        Atomics.add(words, bytesWord, wanted);
        return true;
      },
      release(bytes) {
        const freed = BigInt(bytes);
        Atomics.sub(words, R_TOTAL, freed);
        Atomics.sub(words, bytesWord, freed);
      },
      free: () => Number(max - Atomics.load(words, R_TOTAL)),
    };
  }
}
