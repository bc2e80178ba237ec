/**
 * hot path: what every request of an existing session costs on the listener
 * thread before any hop: validating its Mcp-Session-Id in the shared session
 * table and touching its last-seen time (lookup + touch, as a GET does), or
 * entering and leaving it (lookup + enter + leave, as a POST does). Against,
 * in the same run: one comlink round trip to the broker worker (a no-op
 * call, and an admit: what each initialize pays), a Map lookup (what an
 * unbounded server does per request), and JSON.parse of a tools/call body.
 * All through dist/. Goal: lookup + touch < 1 us.
 */
import { randomUUID } from 'node:crypto';
import { resolveAdmissionOptions, startBroker } from '../dist/broker/index.js';
import { cell, fmt, QUICK, REPS, runBenchmark, summary } from './lib/common.js';
import { callBody } from './lib/mcp.js';
import { consume, nsPerOp, nsPerOpAsync } from './lib/micro.js';
import { populatedTable } from './lib/table.js';

const SESSIONS = 1000;
const ITER = QUICK ? 200_000 : 300_000;
const ROUND_TRIPS = QUICK ? 1000 : 5000;

await runBenchmark('hot-path', async () => {
  const results = {};
  const add = (key, s) => {
    results[key] ??= [];
    results[key].push(s.median);
  };
  for (let rep = 0; rep < REPS; rep++) {
    // The table as served by default (30 min idle timeout: lookups check the idle deadline).
    const { table, ids } = await populatedTable(SESSIONS);
    const unknown = ids.map((id) => `${id.slice(0, 40)}00000000`);
    const map = new Map(ids.map((id) => [randomUUID(), id]));
    const mapKeys = [...map.keys()];
    const body = callBody('echo', 12345);

    add(
      'lookupTouch',
      nsPerOp(
        (n) => {
          for (let i = 0; i < n; i++) {
            const found = table.lookup(ids[i % SESSIONS]);
            if (found.ok) table.touch(found.ref);
            consume(found.ok);
          }
        },
        { iterations: ITER },
      ),
    );
    add(
      'lookupEnterLeave',
      nsPerOp(
        (n) => {
          for (let i = 0; i < n; i++) {
            const found = table.lookup(ids[i % SESSIONS]);
            if (found.ok && table.enter(found.ref) === 'entered') table.leave(found.ref);
            consume(found.ok);
          }
        },
        { iterations: ITER },
      ),
    );
    add(
      'lookupUnknown',
      nsPerOp(
        (n) => {
          for (let i = 0; i < n; i++) consume(table.lookup(unknown[i % SESSIONS]).ok);
        },
        { iterations: ITER },
      ),
    );
    add(
      'mapGet',
      nsPerOp(
        (n) => {
          for (let i = 0; i < n; i++) consume(map.get(mapKeys[i % SESSIONS]) !== undefined);
        },
        { iterations: ITER },
      ),
    );
    add(
      'jsonParse',
      nsPerOp(
        (n) => {
          for (let i = 0; i < n; i++) consume(JSON.parse(body).id);
        },
        { iterations: Math.floor(ITER / 4) },
      ),
    );

    // One comlink round trip to the broker worker: a no-op (sweep with no timeouts), and an admit.
    const worker = await startBroker({
      admission: resolveAdmissionOptions({ maxSessions: 100_000, idleTimeoutMs: 0 }),
      lanes: 2,
      manualClock: false,
      onEvent: () => undefined,
    });
    try {
      add(
        'comlinkNoop',
        await nsPerOpAsync(
          async (n) => {
            for (let i = 0; i < n; i++) await worker.api.sweep();
          },
          { iterations: ROUND_TRIPS },
        ),
      );
      add(
        'comlinkAdmit',
        await nsPerOpAsync(
          async (n) => {
            for (let i = 0; i < n; i++) consume((await worker.api.admit({ clientKey: 'bench', owner: 0 })).ok);
          },
          { iterations: ROUND_TRIPS, batches: 3 },
        ),
      );
    } finally {
      await worker.api.shutdown(100).catch(() => undefined);
      await worker.terminate();
    }
    console.log(
      `rep ${rep + 1}/${REPS}: ` +
        Object.entries(results)
          .map(([k, v]) => `${k} ${fmt(v[v.length - 1], 0)} ns`)
          .join(', '),
    );
  }
  const s = Object.fromEntries(Object.entries(results).map(([k, v]) => [k, summary(v)]));
  const labels = {
    lookupTouch: 'table.lookup(id) + touch (a GET on a session)',
    lookupEnterLeave: 'table.lookup(id) + enter + leave (a POST on a session)',
    lookupUnknown: 'table.lookup(unknown id) (answered 404 on the listener)',
    mapGet: 'Map.get(uuid) (what an unbounded server does)',
    jsonParse: 'JSON.parse of a tools/call body (for scale)',
    comlinkNoop: 'comlink round trip to the broker worker (no-op call)',
    comlinkAdmit: 'comlink admit() round trip (each initialize pays one)',
  };
  const rows = Object.entries(labels).map(([k, label]) => [
    label,
    cell(s[k], 0, ' ns'),
    cell(summary(results[k].map((v) => v / 1000)), 2, ' us'),
    fmt(s[k].median / s.lookupTouch.median, 1),
  ]);
  const goals = {
    lookupTouchNs: s.lookupTouch,
    lookupTouchUnder1us: s.lookupTouch.median < 1000,
    roundTripOverLookup: s.comlinkNoop.median / s.lookupTouch.median,
  };
  return {
    config: { sessions: SESSIONS, iterations: ITER, roundTrips: ROUND_TRIPS },
    results,
    goals,
    tables: [
      {
        title: `hot path: per operation on the listener thread (${REPS} runs; median of 7 batches each; median (min-max) over runs)`,
        columns: ['operation', 'ns/op', 'us/op', 'x lookup+touch'],
        rows,
        notes: [
          `goal: lookup + touch < 1 us: ${goals.lookupTouchUnder1us ? 'met' : 'MISSED'} (${cell(s.lookupTouch, 0, ' ns')}); one broker round trip costs ${fmt(goals.roundTripOverLookup, 0)}x as much`,
        ],
      },
    ],
  };
});
