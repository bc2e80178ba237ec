/**
 * The HTTP front: runs wherever connections are accepted (the main thread
 * with the listener-thread design, or every handler thread with per-thread
 * listeners; ADR 17). It answers what it can without a hop (preflight,
 * Host/Origin, auth, limits), routes the rest to the session's owner thread,
 * and writes the answers back. `serve()` puts a node:http server around it;
 * `SessionBroker` is the embeddable handler.
 */
export { type Authenticate, type AuthOptions, bearerAuth, loadAuth } from './auth.js';
// For the handler threads that listen themselves (src/main/thread), not part of the package's API.
export { type ClientIdentity, ClientKeys } from './clients.js';
export { ConnectionLimiter, FrontTally } from './connections.js';
export { type Dispatcher, LocalDispatcher, PendingCounts, type Routed, type ThreadRestarts } from './dispatch.js';
export { Front, type FrontCounters, type FrontOptions, send } from './front.js';
export { createListener, type ListenerOptions, listen } from './listener.js';
export { type BrokerMetrics, createMetrics } from './metrics.js';
export {
  resolveServeOptions,
  resolveSessionBrokerOptions,
  type ServeOptions,
  type SessionBrokerOptions,
} from './options.js';
export type { OriginPolicy } from './origin.js';
export { type Served, serve } from './serve.js';
export { SessionBroker, type SessionBrokerEvents } from './session-broker.js';
