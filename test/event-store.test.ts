/**
 * The resumability event store stays bounded and replays in order.
 */
import type { JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';
import { describe, expect, it } from 'vitest';
import { BoundedEventStore } from '../dist/main/event-store.js';

const note = (n: number): JSONRPCMessage => ({ jsonrpc: '2.0', method: 'notifications/message', params: { n } });

async function replay(store: BoundedEventStore, after: string) {
  const sent: Array<[string, JSONRPCMessage]> = [];
  const stream = await store.replayEventsAfter(after, {
    send: async (id, message) => {
      sent.push([id, message]);
    },
  });
  return { stream, sent };
}

describe('the bounded event store', () => {
  it('keeps the last K events of the S most recently written streams', async () => {
    const store = new BoundedEventStore({ maxEventsPerStream: 5, maxStreams: 3 });
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
    const store = new BoundedEventStore({ maxEventsPerStream: 10, maxStreams: 4 });
    const first = await store.storeEvent('a', note(1));
    await store.storeEvent('b', note(2));
    await store.storeEvent('a', {} as JSONRPCMessage); // a priming event: nothing to replay
    await store.storeEvent('a', note(3));
    await store.storeEvent('a', note(4));
    const { stream, sent } = await replay(store, first);
    expect(stream).toBe('a');
    expect(sent.map(([, m]) => (m as unknown as { params: { n: number } }).params.n)).toEqual([3, 4]);
    await expect(replay(store, 'nope#1')).rejects.toThrow(/unknown event id/);
  });
});
