/**
 * mcp-session-broker: strict, bounded MCP Streamable HTTP sessions across worker threads.
 */
export type { AdmissionOptions, RateLimit, RedisStoreOptions } from '../broker/index.js';
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
export { parseDuration, parseRate } from './cli/index.js';
export {
  AUTHORITY_ENV,
  type AuthorityHandle,
  type AuthorityServerOptions,
  clusterAuthority,
  type StandaloneAuthorityOptions,
  startAuthority,
  startClusterBroker,
} from './cluster/index.js';
export {
  type BrokerMetrics,
  createMetrics,
  type Served,
  type ServeOptions,
  SessionBroker,
  type SessionBrokerEvents,
  type SessionBrokerOptions,
  serve,
  type ThreadRestarts,
} from './front/index.js';
export { type ServerFactory, type SessionContext, sharedJsonSchemaValidator } from './host/index.js';
