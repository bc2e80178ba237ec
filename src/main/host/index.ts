/**
 * The session host: what runs where sessions live (the handler threads, or
 * the main thread with `threads: 0`): the SDK transports and the user's
 * servers, the resumability stores, and the sending end of response bodies.
 * The thread entry is `handler.ts` (piscina loads it by path).
 */

export { deliver } from '../../shared/deliver.js';
export {
  DEFAULT_EVENT_STORE_LIMITS,
  type EventStoreLimits,
  eventStoreFactory,
  ResumeBudget,
} from './event-store.js';
export { loadFactory } from './factory.js';
export { type ServerFactory, type SessionContext, SessionHost } from './host.js';
export { sharedJsonSchemaValidator } from './validator.js';
