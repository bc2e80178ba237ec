/**
 * The HTTP front: runs on the listener thread (the main thread). It answers
 * what it can without a hop (preflight, Host/Origin, auth, limits), routes the
 * rest to the session's owner thread, and writes the answers back. `serve()`
 * puts a node:http server around it; `SessionBroker` is the embeddable handler.
 */
export { type AuthOptions, loadAuth } from './auth.js';
export type { ThreadRestarts } from './dispatch.js';
export { type BrokerMetrics, createMetrics } from './metrics.js';
export {
  resolveServeOptions,
  resolveSessionBrokerOptions,
  type ServeOptions,
  type SessionBrokerOptions,
} from './options.js';
export { type Served, serve } from './serve.js';
export { SessionBroker, type SessionBrokerEvents } from './session-broker.js';
