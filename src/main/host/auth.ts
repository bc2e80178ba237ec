/**
 * Auth info as the SDK expects it, rebuilt in the session's thread from the
 * plain copy the listener sent (`front/auth.ts` makes it). Runs where a session lives.
 */
import type { AuthInfo } from '@modelcontextprotocol/sdk/server/auth/types.js';

/** AuthInfo back from plain data. */
export function restoreAuth(value: unknown): AuthInfo {
  const auth = value as AuthInfo & { resource?: URL | string };
  return typeof auth.resource === 'string' ? { ...auth, resource: new URL(auth.resource) } : auth;
}
