/**
 * Who a request comes from: its client key (the authenticated principal, or the
 * remote address, optionally through trusted proxies), and for an authenticated
 * principal the binding a session created by it is tied to.
 */
import { createHmac, randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { isIP } from 'node:net';
import type { AuthInfo } from '@modelcontextprotocol/sdk/server/auth/types.js';

export interface ClientIdentity {
  /** The key per-client limits and events use. */
  readonly key: string;
  /** A 64-bit keyed hash of the authenticated principal; absent without one. */
  readonly binding: readonly [number, number] | undefined;
}

/**
 * The principal of a verified token: its subject (`extra.sub`) when the
 * verifier provides one, else the OAuth client id.
 */
export function principalOf(auth: AuthInfo): string {
  const sub = auth.extra?.sub;
  return typeof sub === 'string' && sub.length > 0 ? sub : auth.clientId;
}

export interface ClientKeyOptions {
  /** How many proxy hops in front of the server to trust in `X-Forwarded-For` (0: none). */
  readonly trustProxy: number;
  /** The app's own key derivation; its result is a key, never a binding. */
  readonly clientKey: ((req: IncomingMessage) => string) | undefined;
  /** The key of the bindings; every thread that checks them must share it. @default 32 random bytes */
  readonly secret?: Uint8Array;
}

export class ClientKeys {
  readonly #opts: ClientKeyOptions;
  /** Per-process secret: bindings cannot be precomputed or collided from outside. */
  readonly #secret: Uint8Array;

  constructor(options: ClientKeyOptions) {
    this.#opts = options;
    this.#secret = options.secret ?? randomBytes(32);
  }

  identify(req: IncomingMessage): ClientIdentity {
    const auth = (req as { auth?: AuthInfo }).auth;
    const binding = auth ? this.#bind(principalOf(auth)) : undefined;
    const custom = this.#opts.clientKey?.(req);
    if (custom !== undefined) return { key: custom, binding };
    if (auth) return { key: `principal:${principalOf(auth)}`, binding };
    return { key: this.address(req), binding: undefined };
  }

  /** The binding a request carries (its principal's), to check against the session's. */
  bindingOf(req: IncomingMessage): readonly [number, number] | undefined {
    const auth = (req as { auth?: AuthInfo }).auth;
    return auth ? this.#bind(principalOf(auth)) : undefined;
  }

  /**
   * The client's address: the socket's peer, or with `trustProxy: N` the
   * address N hops back in `X-Forwarded-For` (each trusted proxy appends the
   * address it received from). A malformed entry is not trusted: the nearest
   * well-formed address is used instead.
   */
  address(req: IncomingMessage): string {
    const peer = req.socket.remoteAddress ?? 'unknown';
    if (this.#opts.trustProxy === 0) return peer;
    const header = req.headers['x-forwarded-for'];
    const forwarded = (Array.isArray(header) ? header.join(',') : (header ?? ''))
      .split(',')
      .map((part) => part.trim())
      .filter((part) => part.length > 0);
    const chain = [...forwarded, peer];
    let address = peer;
    for (let hop = 1; hop <= this.#opts.trustProxy && hop < chain.length; hop++) {
      const candidate = chain[chain.length - 1 - hop] ?? '';
      if (isIP(candidate) === 0) break;
      address = candidate;
    }
    return address;
  }

  #bind(principal: string): readonly [number, number] {
    const digest = createHmac('sha256', this.#secret).update(principal).digest();
    const hi = digest.readInt32LE(0);
    const lo = digest.readInt32LE(4);
    // (0, 0) means "unbound" in the table.
    return hi === 0 && lo === 0 ? [1, 0] : [hi, lo];
  }
}
