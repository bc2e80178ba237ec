/**
 * The handler threads: their entry (`handler.ts`, loaded by path by the
 * pool), and, with per-thread listeners, the listener each of them runs.
 * Other folders take only types from here.
 */
export type { HandlerWorkerData } from './handler.js';
export type { MainControl, ThreadControl, ThreadListenConfig } from './listen.js';
