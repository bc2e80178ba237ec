/**
 * A bounded in-memory event store for SSE resumability (the SDK's `EventStore`),
 * one per transport, run by the thread that owns the session. Per session it
 * keeps the last `maxEventsPerStream` events of at most `maxStreams` streams
 * (the least recently written stream goes first), and at most
 * `maxBytesPerSession` bytes of them (its oldest events go first); every
 * session of the process together holds at most `maxTotalBytes`, counted in a
 * `ResumeBudget` that all threads share. An event that does not fit is not
 * stored: it still gets an id, and a resumption from before it is refused as
 * from an unknown event id, so a replay never has a hole.
 */
import type { EventId, EventStore, StreamId } from '@modelcontextprotocol/sdk/server/webStandardStreamableHttp.js';
import type { JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';
import { R_SLOTS, R_TOTAL, RS_BYTES, RS_I64, RS_THREAD, resumeBytesWords } from '../../shared/layout.js';

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

/** The event store a host gives each transport; `dispose()` when the transport is closed. */
export interface ResumptionStore extends EventStore {
  /** Drops every event and gives their bytes back; later events are not stored. */
  dispose(): void;
}

interface StoredEvent {
  readonly seq: number;
  readonly message: JSONRPCMessage;
  readonly bytes: number;
}

interface Stream {
  /** Stored events, oldest first. */
  events: StoredEvent[];
  /**
   * The oldest cursor (sequence number) a replay can start from: every event of
   * the stream after it is still stored (priming events, which carry no
   * message, are never stored). It rises to each event dropped or not
   * stored, and starts at the stream's first event (a stream written again
   * after it was dropped starts over).
   */
  floor: number;
  /** The stream's newest sequence number. */
  last: number;
}

/** Event ids are `STREAM#SEQ`; the SDK's stream ids never contain `#`. */
const SEPARATOR = '#';

export class BoundedEventStore implements ResumptionStore {
  readonly #limits: EventStoreLimits;
  readonly #account: ByteAccount;
  /** Map order is recency of writes: the first entry is the stream to drop. */
  readonly #streams = new Map<StreamId, Stream>();
  #seq = 0;
  #bytes = 0;
  #disposed = false;

  /** `account`: where the bytes are counted against the total (`ResumeBudget.claim`). */
  constructor(limits: EventStoreLimits, account: ByteAccount) {
    this.#limits = limits;
    this.#account = account;
  }

  async storeEvent(streamId: StreamId, message: JSONRPCMessage): Promise<EventId> {
    const seq = ++this.#seq;
    const id = `${streamId}${SEPARATOR}${seq}`;
    if (this.#disposed) return id;
    let stream = this.#streams.get(streamId);
    let key = streamId;
    if (stream) this.#streams.delete(streamId);
    else {
      stream = { events: [], floor: seq, last: seq };
      // The SDK's stream ids (randomUUID) are ropes of 14 string pieces, about
      // 450 bytes; the key is kept as long as the stream is, so keep it flat.
      key = JSON.parse(JSON.stringify(streamId)) as StreamId;
    }
    this.#streams.set(key, stream);
    stream.last = seq;
    if (this.#streams.size > this.#limits.maxStreams) {
      const oldest = this.#streams.keys().next().value;
      if (oldest !== undefined) this.#dropStream(oldest);
    }
    // A priming event (the SDK's, when a stream opens) carries no message:
    // nothing to replay, so nothing to keep; its id resumes the stream as any other.
    if (!('jsonrpc' in message)) return id;
    // The size of the message as the SSE stream sends it (the SDK serializes it
    // again to write it; this is the price of counting bytes, once per event).
    const bytes = Buffer.byteLength(JSON.stringify(message));
    if (!this.#makeRoom(bytes)) {
      stream.floor = seq;
      return id;
    }
    const event: StoredEvent = { seq, message, bytes };
    // Most streams hold one event (a response) for as long as the session lives:
    // an array of one, where a push onto an empty array would reserve 17 slots.
    if (stream.events.length === 0) stream.events = [event];
    else stream.events.push(event);
    this.#bytes += bytes;
    if (stream.events.length > this.#limits.maxEventsPerStream) this.#dropFirst(stream);
    return id;
  }

  async getStreamIdForEventId(eventId: EventId): Promise<StreamId | undefined> {
    return this.#resumable(eventId)?.streamId;
  }

  async replayEventsAfter(
    lastEventId: EventId,
    { send }: { send: (eventId: EventId, message: JSONRPCMessage) => Promise<void> },
  ): Promise<StreamId> {
    const cursor = this.#resumable(lastEventId);
    if (!cursor) throw new Error(`unknown event id ${lastEventId}`);
    // A copy: events stored or dropped while a send awaits do not shift the walk.
    for (const event of [...cursor.stream.events]) {
      if (event.seq > cursor.seq) {
        await send(`${cursor.streamId}${SEPARATOR}${event.seq}`, event.message);
      }
    }
    return cursor.streamId;
  }

  dispose(): void {
    this.#disposed = true;
    for (const streamId of [...this.#streams.keys()]) this.#dropStream(streamId);
  }

  /** Events held, across streams. */
  get size(): number {
    let n = 0;
    for (const stream of this.#streams.values()) n += stream.events.length;
    return n;
  }

  /** Bytes held (the JSON size of the stored messages). */
  get bytes(): number {
    return this.#bytes;
  }

  /**
   * The stream of an event id a replay can start from: one this store issued
   * for a stream it still knows, with no event after it dropped. Anything else
   * is unknown (the SDK answers 400), never a replay with a hole.
   */
  #resumable(eventId: EventId): { streamId: StreamId; seq: number; stream: Stream } | undefined {
    const parsed = parse(eventId);
    if (!parsed) return undefined;
    const stream = this.#streams.get(parsed.streamId);
    if (!stream || parsed.seq < stream.floor || parsed.seq > stream.last) return undefined;
    return { ...parsed, stream };
  }

  /** Drops this session's oldest events until `bytes` more fit both bounds; false if they cannot. */
  #makeRoom(bytes: number): boolean {
    if (bytes > this.#limits.maxBytesPerSession) return false;
    while (this.#bytes + bytes > this.#limits.maxBytesPerSession && this.#dropOldest());
    if (this.#account.reserve(bytes)) return true;
    // Other sessions hold the rest of the total. Give up now, keeping this
    // session's events, if even all of them would not make room; else drop them
    // oldest first until it fits (another thread may take what one drop frees,
    // so this can still end with none kept).
    if (bytes > this.#account.free() + this.#bytes) return false;
    while (this.#dropOldest()) {
      if (this.#account.reserve(bytes)) return true;
    }
    return false;
  }

  /** Drops the session's oldest stored event, whatever its stream; false when none is left. */
  #dropOldest(): boolean {
    let oldest: Stream | undefined;
    for (const stream of this.#streams.values()) {
      const first = stream.events[0];
      if (first && (!oldest || first.seq < (oldest.events[0] as StoredEvent).seq)) oldest = stream;
    }
    if (!oldest) return false;
    this.#dropFirst(oldest);
    return true;
  }

  #dropFirst(stream: Stream): void {
    const event = stream.events.shift();
    if (!event) return;
    stream.floor = Math.max(stream.floor, event.seq);
    this.#release(event.bytes);
  }

  #dropStream(streamId: StreamId): void {
    const stream = this.#streams.get(streamId);
    if (!stream) return;
    this.#streams.delete(streamId);
    let bytes = 0;
    for (const event of stream.events) bytes += event.bytes;
    stream.events.length = 0;
    this.#release(bytes);
  }

  #release(bytes: number): void {
    if (bytes === 0) return;
    this.#bytes -= bytes;
    this.#account.release(bytes);
  }
}

function parse(eventId: EventId): { streamId: StreamId; seq: number } | undefined {
  const at = eventId.lastIndexOf(SEPARATOR);
  if (at <= 0) return undefined;
  const seq = Number(eventId.slice(at + 1));
  if (!Number.isSafeInteger(seq) || seq < 1) return undefined;
  return { streamId: eventId.slice(0, at), seq };
}

/** Host option: a fresh store per session, counted against the thread's share of the budget, or none. */
export function eventStoreFactory(
  limits: EventStoreLimits | undefined,
  account: ByteAccount | undefined,
): { eventStore?: () => ResumptionStore } {
  return limits && account ? { eventStore: () => new BoundedEventStore(limits, account) } : {};
}
