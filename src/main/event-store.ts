/**
 * A bounded in-memory event store for SSE resumability (the SDK's `EventStore`):
 * per session, the last `maxEventsPerStream` events of at most `maxStreams`
 * streams (the least recently written stream goes first). One store per
 * transport, dropped with it when the session closes.
 */
import type { EventId, EventStore, StreamId } from '@modelcontextprotocol/sdk/server/webStandardStreamableHttp.js';
import type { JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';

export interface EventStoreLimits {
  /** Events kept per stream (the newest). */
  readonly maxEventsPerStream: number;
  /** Streams kept per session (the most recently written). */
  readonly maxStreams: number;
}

export const DEFAULT_EVENT_STORE_LIMITS: EventStoreLimits = { maxEventsPerStream: 32, maxStreams: 8 };

interface StoredEvent {
  readonly seq: number;
  readonly message: JSONRPCMessage;
}

/** Event ids are `STREAM#SEQ`; the SDK's stream ids never contain `#`. */
const SEPARATOR = '#';

export class BoundedEventStore implements EventStore {
  readonly #limits: EventStoreLimits;
  /** Map order is recency of writes: the first entry is the stream to drop. */
  readonly #streams = new Map<StreamId, StoredEvent[]>();
  #seq = 0;

  constructor(limits: EventStoreLimits) {
    this.#limits = limits;
  }

  async storeEvent(streamId: StreamId, message: JSONRPCMessage): Promise<EventId> {
    let events = this.#streams.get(streamId);
    if (events) this.#streams.delete(streamId);
    else events = [];
    this.#streams.set(streamId, events);
    const seq = ++this.#seq;
    events.push({ seq, message });
    if (events.length > this.#limits.maxEventsPerStream) events.shift();
    if (this.#streams.size > this.#limits.maxStreams) {
      const oldest = this.#streams.keys().next().value;
      if (oldest !== undefined) this.#streams.delete(oldest);
    }
    return `${streamId}${SEPARATOR}${seq}`;
  }

  async getStreamIdForEventId(eventId: EventId): Promise<StreamId | undefined> {
    const parsed = parse(eventId);
    return parsed && this.#streams.has(parsed.streamId) ? parsed.streamId : undefined;
  }

  async replayEventsAfter(
    lastEventId: EventId,
    { send }: { send: (eventId: EventId, message: JSONRPCMessage) => Promise<void> },
  ): Promise<StreamId> {
    const parsed = parse(lastEventId);
    const events = parsed ? this.#streams.get(parsed.streamId) : undefined;
    if (!parsed || !events) throw new Error(`unknown event id ${lastEventId}`);
    for (const event of events) {
      // Priming events carry no message: nothing to replay.
      if (event.seq > parsed.seq && 'jsonrpc' in event.message) {
        await send(`${parsed.streamId}${SEPARATOR}${event.seq}`, event.message);
      }
    }
    return parsed.streamId;
  }

  /** Events held, across streams (for tests and memory accounting). */
  get size(): number {
    let n = 0;
    for (const events of this.#streams.values()) n += events.length;
    return n;
  }
}

function parse(eventId: EventId): { streamId: StreamId; seq: number } | undefined {
  const at = eventId.lastIndexOf(SEPARATOR);
  if (at <= 0) return undefined;
  const seq = Number(eventId.slice(at + 1));
  if (!Number.isSafeInteger(seq) || seq < 1) return undefined;
  return { streamId: eventId.slice(0, at), seq };
}

/** Host option: a fresh store per session, or none. */
export function eventStoreFactory(limits: EventStoreLimits | undefined): { eventStore?: () => EventStore } {
  return limits ? { eventStore: () => new BoundedEventStore(limits) } : {};
}
