/**
 * Experiment (not part of `npm run bench`): microseconds per admission when
 * the table is full (each evicts the oldest; the closer confirms at once), by
 * capacity, with the default 30 min idle timeout (admit() then runs sweep(),
 * a scan of every slot) and with idle expiry off.
 *
 *   node bench/experiments/admit-at-capacity.js
 */
import { MemoryStore, resolveAdmissionOptions } from '../../dist/broker/index.js';

const N = 2000;
for (const idleOff of [false, true]) {
  for (const capacity of [1000, 10_000, 100_000]) {
    const store = new MemoryStore({
      admission: resolveAdmissionOptions({ maxSessions: capacity, ...(idleOff ? { idleTimeoutMs: 0 } : {}) }),
      lanes: 1,
      closer: async () => undefined,
    });
    const request = { clientKey: 'bench', owner: 0 };
    const admitOne = async () => {
      const decision = await store.admit(request);
      store.table.leave({ slot: decision.slot, gen: decision.gen });
    };
    for (let i = 0; i < capacity; i++) await admitOne();
    const t0 = performance.now();
    for (let i = 0; i < N; i++) await admitOne();
    const us = ((performance.now() - t0) / N) * 1000;
    console.log(
      `idle ${idleOff ? 'off' : '30 min (default)'}, capacity ${capacity}: ${us.toFixed(1)} us per admission at capacity`,
    );
  }
}
