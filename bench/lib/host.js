/**
 * A server under test, in a process of its own (forked by procs.js with an IPC
 * channel and --expose-gc). Commands arrive as { id, cmd, args } and are
 * answered { id, result } or { id, error }:
 *
 *   start { system, options }  start the system; { url }
 *   mem                        GC, then RSS and JS heap (main thread + handler threads)
 *   cpu                        CPU time of the whole process (all threads), microseconds
 *   live / stats / byThread    what the system reports
 *   resumeBytes                bytes its resumability stores hold, if it counts them
 *   sample:start / sample:stop sample live() every few ms (and, for the broker, replay
 *                              its admission events to count over-cap admissions)
 *   stop                       close the system and exit
 *
 * The process exits when its parent goes away.
 */
import { getHeapStatistics } from 'node:v8';
import { BroadcastChannel } from 'node:worker_threads';
import { HEAP_CHANNEL } from './broker-module.js';
import { startSystem } from './systems.js';

let served;
let systemName;
let sampler;

const gc = () => {
  if (typeof globalThis.gc === 'function') {
    globalThis.gc();
    globalThis.gc();
  }
};

async function threadHeaps(expected) {
  if (!expected) return [];
  const channel = new BroadcastChannel(HEAP_CHANNEL);
  try {
    return await new Promise((resolve) => {
      const heaps = [];
      const timer = setTimeout(() => resolve(heaps), 3000);
      channel.onmessage = ({ data }) => {
        if (data?.type !== 'heap') return;
        heaps.push(data);
        if (heaps.length === expected) {
          clearTimeout(timer);
          resolve(heaps);
        }
      };
      channel.postMessage({ type: 'heap?', gc: true });
    });
  } finally {
    channel.close();
  }
}

const handlers = {
  async start({ system, options }) {
    systemName = system;
    served = await startSystem(system, options);
    return { url: served.url, pid: process.pid };
  },
  async mem() {
    const threads = await threadHeaps(systemName === 'broker' ? served.threads : 0);
    gc();
    const heap = getHeapStatistics();
    const { rss, external, arrayBuffers } = process.memoryUsage();
    const threadUsed = threads.reduce((sum, t) => sum + t.used, 0);
    return {
      rss,
      external,
      arrayBuffers,
      mainHeapUsed: heap.used_heap_size,
      mainHeapTotal: heap.total_heap_size,
      threadHeapUsed: threadUsed,
      threadHeapTotal: threads.reduce((sum, t) => sum + t.total, 0),
      threadsReporting: threads.length,
      heapUsed: heap.used_heap_size + threadUsed,
      live: await served.live(),
    };
  },
  cpu() {
    const { user, system } = process.cpuUsage();
    return { us: user + system };
  },
  async live() {
    return served.live();
  },
  async stats() {
    return (await served.stats?.()) ?? {};
  },
  byThread() {
    return served.byThread?.() ?? {};
  },
  resumeBytes() {
    return served.resumeBytes?.() ?? null;
  },
  'sample:start'({ intervalMs = 2, max }) {
    const state = { maxLive: 0, samples: 0, overCapSamples: 0, eventLive: 0, eventMax: 0, overCapAdmissions: 0 };
    const timer = setInterval(() => {
      const live = served.live();
      state.samples++;
      if (live > state.maxLive) state.maxLive = live;
      if (max !== undefined && live > max) state.overCapSamples++;
    }, intervalMs);
    const off = [];
    if (served.broker) {
      // The broker posts admission events in order from its one thread: replaying
      // them gives the admitted-and-not-yet-freed count at every admission.
      const created = () => {
        state.eventLive++;
        if (state.eventLive > state.eventMax) state.eventMax = state.eventLive;
        if (max !== undefined && state.eventLive > max) state.overCapAdmissions++;
      };
      const closed = () => {
        state.eventLive--;
      };
      served.broker.on('created', created);
      served.broker.on('closed', closed);
      off.push(
        () => served.broker.off('created', created),
        () => served.broker.off('closed', closed),
      );
    }
    sampler = { state, timer, off };
    return {};
  },
  async 'sample:stop'() {
    clearInterval(sampler.timer);
    // Let the last events arrive.
    await new Promise((resolve) => setTimeout(resolve, 100));
    for (const f of sampler.off) f();
    const { state } = sampler;
    sampler = undefined;
    return state;
  },
  async stop() {
    // A graceful close, for at most 2 s (closing tens of thousands of sessions one
    // by one is not what is measured); the process exits right after either way.
    const closed = Promise.resolve(served?.close()).then(
      () => true,
      () => false,
    );
    const graceful = await Promise.race([closed, new Promise((resolve) => setTimeout(() => resolve(false), 2000))]);
    return { graceful };
  },
};

process.on('message', async ({ id, cmd, args }) => {
  try {
    const handler = handlers[cmd];
    if (!handler) throw new Error(`unknown command ${cmd}`);
    const result = await handler(args ?? {});
    process.send({ id, result });
    if (cmd === 'stop') setImmediate(() => process.exit(0));
  } catch (error) {
    process.send({ id, error: error instanceof Error ? (error.stack ?? error.message) : String(error) });
  }
});
process.on('disconnect', () => process.exit(0));
