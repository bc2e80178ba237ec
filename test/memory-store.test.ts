import { MemoryStore, resolveAdmissionOptions } from '../dist/broker/index.js';
import { runStoreSuite } from './store.case.js';

runStoreSuite({
  name: 'memory',
  newStore: ({ admission, now, closer, onEvent }) => {
    const store = new MemoryStore({ admission: resolveAdmissionOptions(admission), lanes: 1, now, closer, onEvent });
    return {
      store,
      enter: (ref) => store.table.enter(ref),
      leave: (ref) => store.table.leave(ref),
      lookup: (id) => store.table.lookup(id),
      dispose: () => store.shutdown(0),
    };
  },
});
