/**
 * Client keys: the peer address, the address `trustProxy` hops back in
 * X-Forwarded-For, or the authenticated principal with its session binding.
 */
import type { IncomingMessage } from 'node:http';
import type { AuthInfo } from '@modelcontextprotocol/sdk/server/auth/types.js';
import { describe, expect, it } from 'vitest';
import { ClientKeys, principalOf } from '../dist/main/front/clients.js';

/** The parts of a request the client keys read: the socket's peer, the headers, and `auth` set by the auth layer. */
function request(peer: string | undefined, forwardedFor?: string | string[], auth?: AuthInfo): IncomingMessage {
  const headers = forwardedFor === undefined ? {} : { 'x-forwarded-for': forwardedFor };
  return { socket: { remoteAddress: peer }, headers, ...(auth ? { auth } : {}) } as unknown as IncomingMessage;
}

const keys = (trustProxy: number, clientKey?: (req: IncomingMessage) => string) =>
  new ClientKeys({ trustProxy, clientKey });

const token = (clientId: string, sub?: unknown): AuthInfo => ({
  token: 't',
  clientId,
  scopes: [],
  ...(sub === undefined ? {} : { extra: { sub } }),
});

describe('the client address without trusted proxies', () => {
  it('is the socket peer, whatever X-Forwarded-For says', () => {
    expect(keys(0).address(request('10.0.0.1', '203.0.113.9'))).toBe('10.0.0.1');
    expect(keys(0).address(request('::1', '203.0.113.9, 198.51.100.2'))).toBe('::1');
  });

  it('is "unknown" when the socket has no peer address any more', () => {
    expect(keys(0).address(request(undefined))).toBe('unknown');
  });
});

describe('the client address behind one trusted proxy', () => {
  it('is the last X-Forwarded-For entry, the one the proxy appended', () => {
    expect(keys(1).address(request('10.0.0.1', '203.0.113.9'))).toBe('203.0.113.9');
  });

  it('ignores entries the client wrote itself in front of the proxy', () => {
    expect(keys(1).address(request('10.0.0.1', '1.2.3.4, 5.6.7.8, 203.0.113.9'))).toBe('203.0.113.9');
  });

  it('is the peer when the header is missing or empty', () => {
    expect(keys(1).address(request('10.0.0.1'))).toBe('10.0.0.1');
    expect(keys(1).address(request('10.0.0.1', ''))).toBe('10.0.0.1');
    expect(keys(1).address(request('10.0.0.1', ' , '))).toBe('10.0.0.1');
  });

  it('is the peer when the proxy appended something that is not an address', () => {
    expect(keys(1).address(request('10.0.0.1', '203.0.113.9, not-an-ip'))).toBe('10.0.0.1');
    expect(keys(1).address(request('10.0.0.1', '203.0.113.9:4711'))).toBe('10.0.0.1');
  });

  it('reads IPv6 entries, with spaces around them', () => {
    expect(keys(1).address(request('::ffff:10.0.0.1', ' 2001:db8::1 '))).toBe('2001:db8::1');
  });

  it('joins a header sent on several lines in order', () => {
    expect(keys(1).address(request('10.0.0.1', ['1.2.3.4', '203.0.113.9']))).toBe('203.0.113.9');
  });
});

describe('the client address behind two trusted proxies', () => {
  it('is the entry two hops back, past the inner proxy', () => {
    expect(keys(2).address(request('10.0.0.1', '198.51.100.7, 10.0.0.2'))).toBe('198.51.100.7');
  });

  it('ignores what the client prepended', () => {
    expect(keys(2).address(request('10.0.0.1', '6.6.6.6, 198.51.100.7, 10.0.0.2'))).toBe('198.51.100.7');
  });

  it('stops at the nearest well-formed entry when one further back is malformed', () => {
    expect(keys(2).address(request('10.0.0.1', 'bogus, 10.0.0.2'))).toBe('10.0.0.2');
  });

  it('is the deepest entry there is when fewer hops are present than trusted', () => {
    expect(keys(2).address(request('10.0.0.1', '198.51.100.7'))).toBe('198.51.100.7');
    expect(keys(2).address(request('10.0.0.1'))).toBe('10.0.0.1');
  });

  it('reads IPv6 entries at every hop', () => {
    expect(keys(2).address(request('fd00::1', '2001:db8::7, fd00::2'))).toBe('2001:db8::7');
  });
});

describe('a client identity', () => {
  it('is the address, unbound, without a verified token', () => {
    expect(keys(1).identify(request('10.0.0.1', '203.0.113.9'))).toEqual({ key: '203.0.113.9', binding: undefined });
    expect(keys(0).bindingOf(request('10.0.0.1'))).toBeUndefined();
  });

  it('is the principal, bound, with a verified token: the subject, else the OAuth client id', () => {
    const k = keys(0);
    expect(principalOf(token('app', 'alice'))).toBe('alice');
    expect(principalOf(token('app', ''))).toBe('app');
    expect(principalOf(token('app', 42))).toBe('app');
    const alice = k.identify(request('10.0.0.1', undefined, token('app', 'alice')));
    expect(alice.key).toBe('principal:alice');
    expect(alice.binding).toHaveLength(2);
    expect(k.identify(request('10.0.0.1', undefined, token('app'))).key).toBe('principal:app');
  });

  it('binds one principal to one value, different from another principal and never 0, 0', () => {
    const k = keys(0);
    const alice = k.bindingOf(request('10.0.0.1', undefined, token('app', 'alice')));
    const again = k.bindingOf(request('10.9.9.9', undefined, token('other-app', 'alice')));
    const bob = k.bindingOf(request('10.0.0.1', undefined, token('app', 'bob')));
    expect(again).toEqual(alice);
    expect(bob).not.toEqual(alice);
    for (const b of [alice, bob]) expect(b?.[0] === 0 && b?.[1] === 0).toBe(false);
    expect(k.identify(request('10.0.0.1', undefined, token('app', 'alice'))).binding).toEqual(alice);
  });

  it('binds with a per-instance secret: another instance gives another value', () => {
    const req = request('10.0.0.1', undefined, token('app', 'alice'));
    expect(keys(0).bindingOf(req)).not.toEqual(keys(0).bindingOf(req));
  });

  it("uses the app's own key, still bound to a verified principal", () => {
    const k = keys(1, () => 'tenant-7');
    expect(k.identify(request('10.0.0.1', '203.0.113.9'))).toEqual({ key: 'tenant-7', binding: undefined });
    const withToken = k.identify(request('10.0.0.1', undefined, token('app', 'alice')));
    expect(withToken.key).toBe('tenant-7');
    expect(withToken.binding).toEqual(k.bindingOf(request('10.0.0.1', undefined, token('app', 'alice'))));
  });
});
