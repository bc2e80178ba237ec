/**
 * mcp-session-broker: strict, bounded MCP Streamable HTTP sessions across worker threads.
 */
export type { AdmissionOptions, RateLimit } from '../broker/index.js';
export { BrokerError, type BrokerErrorCode } from '../shared/errors.js';
export type {
  BrokerStats,
  CloseReason,
  EvictionPolicy,
  SessionClosedEvent,
  SessionCreatedEvent,
  SessionEvent,
} from '../shared/types.js';
export { CLOSE_REASONS, EVICTION_POLICIES } from '../shared/types.js';
export type { ThreadRestarts } from './dispatch.js';
export type { ServerFactory, SessionContext } from './host.js';
export { type BrokerMetrics, createMetrics } from './metrics.js';
export type { ServeOptions, SessionBrokerOptions } from './options.js';
export { type Served, serve } from './serve.js';
export { SessionBroker, type SessionBrokerEvents } from './session-broker.js';
export { parseDuration, parseRate } from './units.js';
