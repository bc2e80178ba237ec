/**
 * Bearer-token authentication in front of the MCP endpoint, with the SDK's own
 * `requireBearerAuth` (token checks, expiry, scopes, `WWW-Authenticate`). It is
 * express middleware; a small adapter lets it answer on a plain ServerResponse.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { requireBearerAuth } from '@modelcontextprotocol/sdk/server/auth/middleware/bearerAuth.js';
import type { OAuthTokenVerifier } from '@modelcontextprotocol/sdk/server/auth/provider.js';
import type { AuthInfo } from '@modelcontextprotocol/sdk/server/auth/types.js';
import { BrokerError } from '../../shared/errors.js';

export interface AuthOptions {
  /** Verifies a bearer token and returns the SDK's `AuthInfo` (it must carry `expiresAt`). */
  readonly verifier: OAuthTokenVerifier;
  /** Scopes every token must have (403 otherwise). */
  readonly requiredScopes?: string[];
  /** Advertised in `WWW-Authenticate` (OAuth protected resource metadata). */
  readonly resourceMetadataUrl?: string;
}

export type Authenticate = (req: IncomingMessage, res: ServerResponse) => Promise<boolean>;

/**
 * Builds the check: resolves true with `req.auth` set, or false once it has
 * answered (401 with `WWW-Authenticate`, 403 for missing scopes).
 */
export function bearerAuth(options: AuthOptions): Authenticate {
  const middleware = requireBearerAuth({
    verifier: options.verifier,
    ...(options.requiredScopes ? { requiredScopes: options.requiredScopes } : {}),
    ...(options.resourceMetadataUrl ? { resourceMetadataUrl: options.resourceMetadataUrl } : {}),
  });
  return (req, res) =>
    new Promise<boolean>((resolve, reject) => {
      const adapter = {
        set(name: string, value: string) {
          res.setHeader(name, value);
          return adapter;
        },
        status(code: number) {
          return {
            json(body: unknown) {
              res.writeHead(code, { 'content-type': 'application/json' });
              res.end(JSON.stringify(body));
              resolve(false);
            },
          };
        },
      };
      Promise.resolve(
        (middleware as unknown as (req: unknown, res: unknown, next: (error?: unknown) => void) => unknown)(
          req,
          adapter,
          (error?: unknown) => (error ? reject(error) : resolve(true)),
        ),
      ).catch(reject);
    });
}

/** AuthInfo as plain data (a `URL` does not cross threads). */
export function cloneableAuth(auth: AuthInfo): Record<string, unknown> {
  const { resource, ...rest } = auth;
  return resource ? { ...rest, resource: resource.href } : rest;
}

/**
 * Loads `--auth MODULE`: its default export is a verifier (`{ verifyAccessToken }`)
 * or a function `(token) => AuthInfo | Promise<AuthInfo>`.
 */
export async function loadAuth(path: string): Promise<AuthOptions> {
  const url = pathToFileURL(resolve(path)).href;
  let mod: { default?: unknown };
  try {
    mod = (await import(url)) as { default?: unknown };
  } catch (cause) {
    throw new BrokerError('ERR_INVALID_MODULE', `cannot load auth module ${path}: ${String(cause)}`, { cause });
  }
  const exported = mod.default;
  if (typeof exported === 'function') {
    return { verifier: { verifyAccessToken: async (token) => (exported as (t: string) => AuthInfo)(token) } };
  }
  if (typeof (exported as OAuthTokenVerifier | undefined)?.verifyAccessToken === 'function') {
    return { verifier: exported as OAuthTokenVerifier };
  }
  throw new BrokerError(
    'ERR_INVALID_MODULE',
    `auth module ${path} must default-export { verifyAccessToken(token) } or (token) => AuthInfo`,
  );
}
