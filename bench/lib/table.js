/**
 * A shared session table filled with idle sessions, from the in-process store,
 * for microbenchmarks of the request hot path.
 */
import { resolveAdmissionOptions, startInProcessBroker } from '../../dist/broker/index.js';

/** Admits `sessions` sessions (default options: 30 min idle timeout) and ends their initialize. */
export async function populatedTable(sessions) {
  const local = await startInProcessBroker({
    admission: resolveAdmissionOptions({ maxSessions: sessions }),
    lanes: 2,
    manualClock: false,
    onEvent: () => undefined,
    closer: async () => undefined,
  });
  const table = local.index;
  const ids = [];
  for (let i = 0; i < sessions; i++) {
    const d = await local.api.admit({ clientKey: 'bench', owner: 0 });
    table.leave({ slot: d.slot, gen: d.gen });
    ids.push(d.id);
  }
  return { local, table, ids };
}
