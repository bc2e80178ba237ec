/**
 * Client-side helpers for servers behind the broker (`mcp-session-broker/client`).
 *
 * When the broker evicts or expires a session, the client's next request gets
 * 404 (saying why). `recoveringFetch` is a `fetch` for any client library that
 * takes one: it starts a new session and sends the request again.
 */
import { StreamableHTTPError } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

export { type RecoverEvent, type RecoveringFetchOptions, recoveringFetch } from './fetch.js';

/** Whether an SDK 1.x client's error means the server no longer knows the session (HTTP 404: evicted, expired, deleted). */
export function isSessionNotFound(error: unknown): boolean {
  return error instanceof StreamableHTTPError && error.code === 404;
}
