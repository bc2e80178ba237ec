/**
 * Experiment (not part of `npm run bench`): where the ~0.8 us of a table
 * lookup + touch goes: parseSessionId, its regex alone, the clock, touch.
 *
 *   node bench/experiments/session-id-parse.js
 */
import { resolveAdmissionOptions, startInProcessBroker } from '../../dist/broker/index.js';
import { parseSessionId } from '../../dist/shared/session-id.js';
import { consume, nsPerOp } from '../lib/micro.js';

const local = startInProcessBroker({
  admission: resolveAdmissionOptions({ maxSessions: 1000 }),
  lanes: 2,
  manualClock: false,
  onEvent: () => undefined,
  closer: async () => undefined,
});
const table = local.table;
const ids = [];
for (let i = 0; i < 1000; i++) {
  const d = await local.api.admit({ clientKey: 'bench', owner: 0 });
  table.leave({ slot: d.slot, gen: d.gen });
  ids.push(d.id);
}
const refs = ids.map((id) => table.lookup(id).ref);
const pattern = /^[0-9a-f]{48}$/;
const cases = {
  'parseSessionId(id)': (n) => {
    for (let i = 0; i < n; i++) consume(parseSessionId(ids[i % 1000]).slot);
  },
  'its regex test alone': (n) => {
    for (let i = 0; i < n; i++) consume(pattern.test(ids[i % 1000]));
  },
  'table.now()': (n) => {
    for (let i = 0; i < n; i++) consume(table.now());
  },
  'table.touch(ref)': (n) => {
    for (let i = 0; i < n; i++) table.touch(refs[i % 1000]);
  },
  'table.lookup(id)': (n) => {
    for (let i = 0; i < n; i++) consume(table.lookup(ids[i % 1000]).ok);
  },
};
for (const [name, fn] of Object.entries(cases)) {
  console.log(`${name.padEnd(22)} ${nsPerOp(fn, { iterations: 500_000 }).median.toFixed(0)} ns`);
}
