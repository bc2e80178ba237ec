/**
 * Experiment (not part of `npm run bench`): microseconds per admission when
 * the table is full, by capacity and eviction policy, with the default 30 min
 * idle timeout, on the store alone (no threads, no HTTP; the closer confirms
 * at once). `oldest` and `idlest` evict one session per admission; `none`
 * refuses (the cost of a 503 at capacity); `oldest, per client` gives every
 * session its own client key (per-client limits on: the victim comes from the
 * client holding the most). The store is the one in `dist/`.
 *
 *   node bench/experiments/admit-at-capacity.js [capacities, default 1000,10000,100000]
 */
import { MemoryStore, resolveAdmissionOptions } from '../../dist/broker/index.js';

const N = 2000;
const capacities = (process.argv[2] ?? '1000,10000,100000').split(',').map(Number);
const variants = [
  { name: 'oldest', options: { evict: 'oldest' } },
  { name: 'idlest', options: { evict: 'idlest' } },
  { name: 'none (refusals)', options: { evict: 'none' } },
  { name: 'oldest, per client', options: { evict: 'oldest', perClient: { maxSessions: 10 } }, distinct: true },
];
for (const variant of variants) {
  for (const capacity of capacities) {
    const store = new MemoryStore({
      admission: resolveAdmissionOptions({ maxSessions: capacity, ...variant.options }),
      lanes: 1,
      closer: async () => undefined,
    });
    let next = 0;
    const admitOne = async () => {
      const decision = await store.admit({ clientKey: variant.distinct ? `client-${next++}` : 'bench', owner: 0 });
      if (decision.ok) store.table.leave({ slot: decision.slot, gen: decision.gen });
      return decision.ok;
    };
    for (let i = 0; i < capacity; i++) await admitOne();
    let admitted = 0;
    const t0 = performance.now();
    for (let i = 0; i < N; i++) if (await admitOne()) admitted++;
    const us = ((performance.now() - t0) / N) * 1000;
    console.log(
      `${variant.name.padEnd(18)} capacity ${String(capacity).padStart(7)}: ${us.toFixed(1).padStart(8)} us per admission at capacity (${admitted} of ${N} admitted)`,
    );
    await store.shutdown(0);
  }
}
