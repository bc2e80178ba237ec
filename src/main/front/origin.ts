/**
 * Host and Origin validation against DNS rebinding: a server bound to a
 * loopback address answers only requests addressed to a loopback name, and
 * only from loopback (or configured) origins.
 */
import type { IncomingMessage } from 'node:http';
import { Answers, type HttpAnswer } from '../../shared/jsonrpc.js';

const LOOPBACK_NAMES = new Set(['localhost', '127.0.0.1', '[::1]', '::1']);

export interface OriginPolicy {
  /** Accepted `Host` values: `name:port` matches exactly, `name` any port; undefined: any. */
  readonly allowedHosts: readonly string[] | undefined;
  /** Accepted `Origin` values (exact); undefined: any. Requests without `Origin` always pass. */
  readonly allowedOrigins: readonly string[] | undefined;
}

/** Whether `host` names a loopback interface (the default-protected case). */
export function isLoopback(host: string): boolean {
  return LOOPBACK_NAMES.has(host) || host.startsWith('127.');
}

/** The policy a server bound to a loopback address gets by default. */
export function loopbackPolicy(port: number): OriginPolicy {
  const names = ['localhost', '127.0.0.1', '[::1]'];
  return {
    allowedHosts: names.map((name) => `${name}:${port}`).concat(names),
    allowedOrigins: names.flatMap((name) => [`http://${name}:${port}`, `https://${name}:${port}`]),
  };
}

/** Checks a request; returns the 403 answer, or undefined when it may pass. */
export function checkOrigin(req: IncomingMessage, policy: OriginPolicy): HttpAnswer | undefined {
  if (policy.allowedHosts) {
    const host = req.headers.host?.toLowerCase();
    if (!host || !(policy.allowedHosts.includes(host) || policy.allowedHosts.includes(hostname(host)))) {
      return Answers.forbidden(`Invalid Host: ${req.headers.host ?? '(none)'}`);
    }
  }
  if (policy.allowedOrigins) {
    const origin = req.headers.origin;
    if (origin !== undefined && !policy.allowedOrigins.includes(origin))
      return Answers.forbidden(`Invalid Origin: ${origin}`);
  }
  return undefined;
}

/** The name part of a Host header (`[::1]:80` -> `[::1]`, `a:80` -> `a`). */
function hostname(host: string): string {
  const bracket = host.startsWith('[') ? host.indexOf(']') : -1;
  if (bracket >= 0) return host.slice(0, bracket + 1);
  const colon = host.lastIndexOf(':');
  return colon >= 0 ? host.slice(0, colon) : host;
}
