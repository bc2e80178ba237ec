import { describe, expect, it } from 'vitest';
import { MemoryStore, resolveAdmissionOptions } from '../dist/broker/index.js';
import { runStoreSuite } from './store.case.js';

runStoreSuite({
  name: 'memory',
  newStore: ({ admission, now, closer, onEvent }) => {
    const store = new MemoryStore({ admission: resolveAdmissionOptions(admission), lanes: 1, now, closer, onEvent });
    return {
      store,
      enter: (ref) => store.table.enter(ref) === 'entered',
      leave: (ref) => store.table.leave(ref),
      lookup: (id) => store.table.lookup(id),
      dispose: () => store.shutdown(0),
    };
  },
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
