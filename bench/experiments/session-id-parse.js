/**
 * Experiment (not part of `npm run bench`): where the time of a table
 * lookup + touch goes: parseSessionId, a regex check for scale, the clock, touch.
 * (Measured at ~0.8 us before parseSessionId stopped using a regex and slices.)
 *
 *   node bench/experiments/session-id-parse.js
 */
import { parseSessionId } from '../../dist/shared/session-id.js';
import { consume, nsPerOp } from '../lib/micro.js';
import { populatedTable } from '../lib/table.js';

const { table, ids } = await populatedTable(1000);
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
