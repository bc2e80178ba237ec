/**
 * comlink over Node's worker_threads endpoints (Worker, parentPort, MessagePort):
 * comlink speaks the DOM `addEventListener` shape; its Node adapter bridges `.on`.
 */
import type { Endpoint } from 'comlink';
import nodeEndpoint from 'comlink/dist/esm/node-adapter.mjs';

export interface NodeMessageEndpoint {
  postMessage(message: unknown, transfer?: readonly unknown[]): void;
  on(type: 'message', listener: (value: unknown) => void): unknown;
  off(type: 'message', listener: (value: unknown) => void): unknown;
  start?: () => void;
}

export function endpoint(target: NodeMessageEndpoint): Endpoint {
  return nodeEndpoint(target as unknown as Parameters<typeof nodeEndpoint>[0]);
}
