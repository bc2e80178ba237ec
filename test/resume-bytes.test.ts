/**
 * Sessions that receive large results over SSE: every result arrives whole,
 * the resumability stores of all sessions, across handler threads, hold at
 * most `maxTotalBytes`, a resumption from before a result that was dropped is
 * refused as from an unknown event id, and the bytes come back when the
 * sessions close, or when the thread that held them dies.
 */
import { LATEST_PROTOCOL_VERSION } from '@modelcontextprotocol/sdk/types.js';
import { afterEach, describe, expect, it } from 'vitest';
import type { Served } from '../dist/main/index.js';
import { rawCall, rawInitialize, start, until } from './helpers.js';

const MiB = 1024 * 1024;

let served: Served | undefined;
afterEach(async () => {
  await served?.close();
  served = undefined;
});

/** A GET resuming after `lastEventId`; returns its status (the body, if any, is dropped). */
async function resume(url: string, sessionId: string, lastEventId: string): Promise<number> {
  const res = await fetch(url, {
    headers: {
      accept: 'text/event-stream',
      'mcp-session-id': sessionId,
      'mcp-protocol-version': LATEST_PROTOCOL_VERSION,
      'last-event-id': lastEventId,
    },
  });
  await res.body?.cancel();
  return res.status;
}

describe('large results and the resumability stores', () => {
  it('hold at most maxTotalBytes across threads and sessions, and give the bytes back when sessions close', async () => {
    const maxTotalBytes = 12 * MiB;
    served = await start({
      maxSessions: 20,
      threads: 2,
      resumability: { maxBytesPerSession: 5 * MiB, maxTotalBytes },
    });
    const url = served.url;
    const sessions: string[] = [];
    for (let i = 0; i < 6; i++) {
      const { sessionId } = await rawInitialize(url);
      if (!sessionId) throw new Error('no session');
      sessions.push(sessionId);
    }
    expect(Object.keys((await served.broker.stats()).transportsByThread)).toHaveLength(2);
    const firstIds = new Map<string, string>();
    const lastIds = new Map<string, string>();
    for (const sessionId of sessions) {
      for (let call = 0; call < 3; call++) {
        const { status, text } = await rawCall(url, sessionId, 'big', { bytes: 2 * MiB });
        // The stream is unaffected: the whole result arrives, stored or not.
        expect(status).toBe(200);
        expect(text).toContain(`"text":"${'x'.repeat(2 * MiB)}"`);
        const ids = [...text.matchAll(/^id: (\S+)$/gm)].map((m) => m[1] as string);
        expect(ids.length).toBeGreaterThan(0);
        if (call === 0) firstIds.set(sessionId, ids[0] as string);
        lastIds.set(sessionId, ids.at(-1) as string);
      }
    }
    // 6 sessions x 3 results of 2 MiB: 36 MiB sent; each session may keep 2 of
    // its 3 (5 MiB), all of them together 12 MiB, so 6 results at most.
    const held = served.broker.resumeBytes();
    expect(held).toBeLessThanOrEqual(maxTotalBytes);
    expect(held).toBeGreaterThan(4 * MiB);
    for (const sessionId of sessions) {
      // The first result of each session was dropped (or never stored): no replay with a hole.
      expect(await resume(url, sessionId, firstIds.get(sessionId) as string)).toBe(400);
      // From the newest event nothing is missing: the resumption is accepted.
      expect(await resume(url, sessionId, lastIds.get(sessionId) as string)).toBe(200);
    }
    for (const sessionId of sessions) {
      const deleted = await fetch(url, { method: 'DELETE', headers: { 'mcp-session-id': sessionId } });
      expect(deleted.status).toBe(200);
    }
    await until(async () => (await served!.broker.stats()).occupied === 0, 5000, 'all sessions closed');
    expect(served.broker.resumeBytes()).toBe(0);
  });

  it('give back the bytes of a handler thread that died', async () => {
    // The listener thread places the two sessions on the two threads (the fewest first); with
    // per-thread listeners both would follow the one keep-alive connection fetch reuses.
    served = await start({
      maxSessions: 4,
      threads: 2,
      resumability: { maxBytesPerSession: 2 * MiB },
      listeners: 'main',
    });
    const s = served;
    const sessions: string[] = [];
    for (let i = 0; i < 2; i++) {
      const { sessionId } = await rawInitialize(s.url);
      if (!sessionId) throw new Error('no session');
      sessions.push(sessionId);
    }
    const [doomed, survivor] = sessions as [string, string];
    const threadOf = async (sessionId: string) =>
      /"threadId\\":(\d+)/.exec((await rawCall(s.url, sessionId, 'whoami')).text)?.[1];
    // One session per thread (a new session goes to the thread with the fewest).
    expect(await threadOf(doomed)).not.toBe(await threadOf(survivor));
    for (const sessionId of sessions) expect((await rawCall(s.url, sessionId, 'big', { bytes: MiB })).status).toBe(200);
    expect(s.broker.resumeBytes()).toBeGreaterThan(2 * MiB);
    await rawCall(s.url, doomed, 'crash');
    // The survivor's result is still held; the dead thread's is not.
    await until(() => s.broker.resumeBytes() < 1.5 * MiB, 10_000, "the dead thread's bytes");
    expect(s.broker.resumeBytes()).toBeGreaterThan(MiB);
  });
});
