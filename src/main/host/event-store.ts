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
import type { ByteAccount, EventStoreLimits } from '../../shared/resume-budget.js';

export {
  type ByteAccount,
  DEFAULT_EVENT_STORE_LIMITS,
  type EventStoreLimits,
  ResumeBudget,
} from '../../shared/resume-budget.js';

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
