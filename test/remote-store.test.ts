/**
 * The store contract, run against the cross-process store: a process's
 * remote store connected over a real unix socket to an authority (both on
 * the suite's fake clock, in this process).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Authority, type StoreFactory } from '../dist/broker/index.js';
import { createStore as createRemoteStore } from '../dist/broker/stores/remote/index.js';
import { runStoreSuite } from './store.case.js';

const createStore: StoreFactory = async (context) => {
  const dir = mkdtempSync(join(tmpdir(), 'mcpsb-contract-'));
  const authority = await Authority.start({
    admission: context.admission,
    listen: { socket: join(dir, 'authority.sock') },
    routes: join(dir, 'routes'),
    ...(context.now ? { now: context.now } : {}),
    // The suite sweeps when it means to (on its fake clock): the timer never fires on its own.
    sweepIntervalMs: 3_600_000,
    log: () => undefined,
  });
  const store = await createRemoteStore({ ...context, storeOptions: { address: authority.address } });
  const shutdown = store.shutdown.bind(store);
  store.shutdown = async (timeoutMs: number) => {
    await shutdown(timeoutMs);
    await authority.close();
    rmSync(dir, { recursive: true, force: true });
  };
  return store;
};

runStoreSuite({
  name: 'remote (a process under a host authority)',
  createStore,
  // Every decision crosses a socket and back; the end of a busy request is reported every 50 ms.
  settle: () => new Promise((resolve) => setTimeout(resolve, 80)),
});
