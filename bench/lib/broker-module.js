/**
 * The server module the benchmarks give the broker: the built-in example
 * server (echo, add, sha), unchanged, plus a heap reporter in each handler
 * thread, so a memory benchmark can add the handler threads' JS heaps to the
 * main thread's (each worker thread has a heap of its own). It answers on a
 * BroadcastChannel; with --expose-gc it collects garbage first.
 */
import { getHeapStatistics } from 'node:v8';
import { BroadcastChannel, isMainThread, threadId } from 'node:worker_threads';

export { default } from '../../dist/main/host/example-server.js';

export const HEAP_CHANNEL = 'mcp-bench-heap';

if (!isMainThread) {
  const channel = new BroadcastChannel(HEAP_CHANNEL);
  channel.onmessage = ({ data }) => {
    if (data?.type !== 'heap?') return;
    if (data.gc && typeof globalThis.gc === 'function') {
      globalThis.gc();
      globalThis.gc();
    }
    const heap = getHeapStatistics();
    channel.postMessage({ type: 'heap', threadId, used: heap.used_heap_size, total: heap.total_heap_size });
  };
  channel.unref();
}
