/**
 * The SDK's own client against the broker, with one and with several handler
 * threads: the whole session life, notifications on the standalone GET
 * stream, and resumption with Last-Event-ID after a dropped stream.
 */
import { LATEST_PROTOCOL_VERSION, LoggingMessageNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import { afterEach, describe, expect, it } from 'vitest';
import type { Served } from '../dist/main/index.js';
import { connect, rawCall, rawInitialize, start, until } from './helpers.js';

let served: Served | undefined;
afterEach(async () => {
  await served?.close();
  served = undefined;
});

describe.each([1, 3])('the SDK client with %i handler thread(s)', (threads) => {
  it('initializes, lists and calls tools, reads resources, gets prompts, receives notifications, deletes', async () => {
    served = await start({ maxSessions: 20, threads });
    const sessions = await Promise.all(Array.from({ length: 6 }, () => connect(served!.url)));
    const owners = new Set<number>();
    for (const { client, sessionId } of sessions) {
      const notes: string[] = [];
      client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => {
        notes.push(String(n.params.data));
      });
      expect((await client.listTools()).tools.map((t) => t.name)).toContain('echo');
      const who = await client.callTool({ name: 'whoami', arguments: {} });
      const me = JSON.parse((who.content as [{ text: string }])[0].text);
      expect(me.sessionId).toBe(sessionId);
      owners.add(me.threadId);
      // Every request of a session reaches its owner thread.
      for (let i = 0; i < 3; i++) {
        const again = await client.callTool({ name: 'whoami', arguments: {} });
        expect(JSON.parse((again.content as [{ text: string }])[0].text).threadId).toBe(me.threadId);
      }
      const resource = await client.readResource({ uri: 'test://hello' });
      expect(resource.contents[0]).toMatchObject({ text: `hello from thread ${me.threadId}` });
      const prompt = await client.getPrompt({ name: 'greet', arguments: { name: 'Ada' } });
      expect(prompt.messages[0]?.content).toMatchObject({ text: 'Say hello to Ada' });
      // A notification unrelated to any request arrives on the standalone GET stream.
      await client.callTool({ name: 'notify', arguments: { text: `hi ${sessionId}` } });
      await until(() => notes.includes(`hi ${sessionId}`), 5000, 'the notification');
    }
    // The listener thread puts new sessions on the thread with the fewest; with
    // per-thread listeners a session lives where the kernel sent its initialize.
    if (served.listeners === 'main') expect(owners.size).toBe(threads);
    else expect(owners.size).toBeGreaterThanOrEqual(1);
    for (const { transport } of sessions) await transport.terminateSession();
    await until(async () => (await served!.broker.stats()).occupied === 0, 5000, 'all sessions deleted');
    expect(served.broker.transports()).toBe(0);
  });
});

describe('resumability', () => {
  it('replays what was sent while the GET stream was down, after Last-Event-ID', async () => {
    served = await start({ maxSessions: 5, threads: 2 });
    const { sessionId } = await rawInitialize(served.url);
    if (!sessionId) throw new Error('no session');
    const headers = {
      accept: 'text/event-stream',
      'mcp-session-id': sessionId,
      'mcp-protocol-version': LATEST_PROTOCOL_VERSION,
    };
    const first = new AbortController();
    const stream = await fetch(served.url, { headers, signal: first.signal });
    expect(stream.status).toBe(200);
    const reader = stream.body!.getReader();
    expect((await rawCall(served.url, sessionId, 'notify', { text: 'one' })).status).toBe(200);
    let text = '';
    while (!text.includes('"one"')) text += new TextDecoder().decode((await reader.read()).value);
    const lastEventId = /id: (\S+)\n[^\n]*"one"/.exec(text)?.[1] ?? /id: (\S+)/.exec(text)?.[1];
    expect(lastEventId).toBeTruthy();
    first.abort();
    await reader.cancel().catch(() => undefined);
    // Sent while nobody listens: stored, not lost.
    await until(async () => (await rawCall(served!.url, sessionId, 'notify', { text: 'two' })).status === 200, 5000);
    // Until the server has seen the old stream go (the client's hang-up travels
    // through two threads), a resume is refused with 409, as the SDK does.
    let resumed = await fetch(served.url, { headers: { ...headers, 'last-event-id': lastEventId as string } });
    for (let tries = 0; resumed.status === 409 && tries < 50; tries++) {
      await resumed.body?.cancel();
      await new Promise((resolve) => setTimeout(resolve, 20));
      resumed = await fetch(served.url, { headers: { ...headers, 'last-event-id': lastEventId as string } });
    }
    expect(resumed.status).toBe(200);
    const r2 = resumed.body!.getReader();
    let replay = '';
    while (!replay.includes('"two"')) replay += new TextDecoder().decode((await r2.read()).value);
    expect(replay).not.toContain('"one"');
    await r2.cancel();
  });

  it('answers an unknown Last-Event-ID with 400 and keeps the session', async () => {
    served = await start({ maxSessions: 5, threads: 1 });
    const { sessionId } = await rawInitialize(served.url);
    if (!sessionId) throw new Error('no session');
    const res = await fetch(served.url, {
      headers: { accept: 'text/event-stream', 'mcp-session-id': sessionId, 'last-event-id': 'nope#1' },
    });
    expect(res.status).toBe(400);
    expect((await rawCall(served.url, sessionId, 'echo', { text: 'ok' })).status).toBe(200);
  });
});
