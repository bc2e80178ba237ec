/**
 * `/metrics` and the probes (`/livez`, `/readyz`, `/healthz`) obey the same Host/Origin policy as the MCP
 * endpoint; with auth on, `/metrics` on the main port needs a valid token; a
 * separate metrics port serves scrapers without one.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { loadAuth } from '../dist/main/front/auth.js';
import type { Served } from '../dist/main/index.js';
import { rawExchange, start } from './helpers.js';

let served: Served | undefined;
afterEach(async () => {
  await served?.close();
  served = undefined;
});

function get(url: string, headers: Record<string, string> = {}): Promise<{ text: string }> {
  const { host, pathname } = new URL(url);
  const all = { host, connection: 'close', ...headers };
  const lines = Object.entries(all).map(([name, value]) => `${name}: ${value}`);
  return rawExchange(url, `GET ${pathname} HTTP/1.1\r\n${lines.join('\r\n')}\r\n\r\n`);
}

const status = (text: string) => Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1]);

describe('/metrics and the probes', () => {
  it('refuse a foreign Host or Origin with 403, like the MCP endpoint', async () => {
    served = await start({ maxSessions: 2, threads: 1 });
    const base = new URL(served.url);
    for (const path of ['/metrics', '/healthz', '/livez', '/readyz']) {
      const url = `${base.origin}${path}`;
      expect(status((await get(url)).text)).toBe(200);
      expect(status((await get(url, { host: 'evil.example' })).text)).toBe(403);
      expect(status((await get(url, { origin: 'http://evil.example' })).text)).toBe(403);
    }
  });

  it('needs a bearer token on the main port when auth is on', async () => {
    served = await start({
      maxSessions: 2,
      threads: 1,
      auth: await loadAuth(new URL('./fixtures/auth.js', import.meta.url).pathname),
    });
    const metrics = served.metricsUrl;
    const anonymous = await get(metrics);
    expect(status(anonymous.text)).toBe(401);
    expect(anonymous.text).not.toContain('mcp_sessions_max');
    expect(status((await get(metrics, { host: 'evil.example', origin: 'http://evil.example' })).text)).toBe(403);
    const authorized = await get(metrics, { authorization: 'Bearer token-alice' });
    expect(status(authorized.text)).toBe(200);
    expect(authorized.text).toContain('mcp_sessions_max 2');
  });

  it('are served without a token on a separate metrics port, loopback Host names only', async () => {
    served = await start({
      maxSessions: 2,
      threads: 1,
      metricsPort: 0,
      auth: await loadAuth(new URL('./fixtures/auth.js', import.meta.url).pathname),
    });
    const metrics = served.metricsUrl;
    expect(new URL(metrics).port).not.toBe(new URL(served.url).port);
    const scraped = await get(metrics);
    expect(status(scraped.text)).toBe(200);
    expect(scraped.text).toContain('mcp_client_aborts_total');
    expect(status((await get(metrics, { host: 'evil.example' })).text)).toBe(403);
  });
});
