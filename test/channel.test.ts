import { once } from 'node:events';
import { MessageChannel } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { Channel, ChannelClosedError, type ChannelTask, localPair, type StreamPort } from '../src/shared/channel.js';
import type { TaskResult } from '../src/shared/messages.js';

const task = (sessionId: string): ChannelTask => ({
  kind: 'session',
  sessionId,
  ref: { slot: 1, gen: 1 },
  request: { method: 'POST', url: 'http://localhost/mcp', headers: [] },
});

const head = (ended: boolean): TaskResult => ({ kind: 'head', status: 200, headers: [], hasBody: true, ended });

/** Two channels on the two ends of one MessagePort pair, counting the frames each side posts. */
function pair(serve: (task: ChannelTask, port: StreamPort) => Promise<TaskResult>) {
  const { port1, port2 } = new MessageChannel();
  const frames = { caller: 0, owner: 0 };
  const count = (port: typeof port1, side: keyof typeof frames) => {
    const post = port.postMessage.bind(port);
    port.postMessage = (value: unknown, transfer?: never) => {
      frames[side]++;
      post(value, transfer);
    };
  };
  count(port1, 'caller');
  count(port2, 'owner');
  return { caller: new Channel(port1), owner: new Channel(port2, serve), frames };
}

const collect = (port: StreamPort) =>
  new Promise<unknown[]>((resolve) => {
    const got: unknown[] = [];
    port.on('message', (m) => got.push(m));
    port.on('close', () => resolve(got));
  });

describe('a channel between two threads', () => {
  it('answers a whole answer with one frame each way, and keeps no entry', async () => {
    const { caller, frames } = pair(async (_task, port) => {
      port.close();
      return head(true);
    });
    const { result, port } = await caller.call(task('a'));
    expect(result).toMatchObject({ kind: 'head', ended: true });
    port.close();
    await new Promise((resolve) => setImmediate(resolve));
    expect(frames).toEqual({ caller: 1, owner: 1 });
    expect(caller.open).toBe(0);
  });

  it('streams a body both ways in order, tagged per call, many calls at once', async () => {
    const { caller } = pair(async (t, port) => {
      const name = t.kind === 'session' ? t.sessionId : '';
      port.on('message', (m) => {
        if ((m as { type: string }).type === 'credit')
          port.postMessage({ type: 'chunk', data: `${name}-after-credit` });
      });
      setImmediate(() => {
        for (let i = 0; i < 3; i++) port.postMessage({ type: 'chunk', data: `${name}-${i}` });
        port.postMessage({ type: 'credit-please' });
      });
      return head(false);
    });
    const calls = await Promise.all(['a', 'b', 'c'].map((name) => caller.call(task(name))));
    expect(caller.open).toBe(3);
    const bodies = await Promise.all(
      calls.map(
        ({ port }) =>
          new Promise<string[]>((resolve) => {
            const got: string[] = [];
            port.on('message', (m) => {
              const message = m as { type: string; data?: string };
              if (message.type === 'credit-please') port.postMessage({ type: 'credit', bytes: 1 });
              else got.push(message.data as string);
              if (got.length === 4) {
                port.close();
                resolve(got);
              }
            });
          }),
      ),
    );
    expect(bodies).toEqual(
      ['a', 'b', 'c'].map((name) => [`${name}-0`, `${name}-1`, `${name}-2`, `${name}-after-credit`]),
    );
    expect(caller.open).toBe(0);
  });

  it('keeps what arrives before the receiver listens, and the close behind it', async () => {
    const { caller } = pair(async (_task, port) => {
      setImmediate(() => {
        port.postMessage({ type: 'chunk', data: 'x' });
        port.postMessage({ type: 'end' });
        port.close();
      });
      return head(false);
    });
    const { port } = await caller.call(task('a'));
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(await collect(port)).toEqual([{ type: 'chunk', data: 'x' }, { type: 'end' }]);
    expect(caller.open).toBe(0);
  });

  it('tells the owner when the caller closes a stream (the client left)', async () => {
    let ownerPort: StreamPort | undefined;
    const { caller } = pair(async (_task, port) => {
      ownerPort = port;
      return head(false);
    });
    const { port } = await caller.call(task('a'));
    const closed = once(ownerPort as unknown as NodeJS.EventEmitter, 'close');
    port.close();
    await closed;
  });

  it('rejects a call whose serve throws, and the next call still works', async () => {
    let first = true;
    const { caller } = pair(async (_task, port) => {
      if (first) {
        first = false;
        throw new Error('boom');
      }
      port.close();
      return head(true);
    });
    await expect(caller.call(task('a'))).rejects.toThrow('boom');
    await expect(caller.call(task('b'))).resolves.toMatchObject({ result: { kind: 'head' } });
    expect(caller.open).toBe(0);
  });

  it('fails every waiting call and closes every open stream when the other end goes', async () => {
    const { caller, owner } = pair(async (t) => {
      if (t.kind === 'session' && t.sessionId === 'slow') return new Promise<never>(() => undefined);
      return head(false);
    });
    const { port } = await caller.call(task('streaming'));
    const streamClosed = collect(port);
    const waiting = caller.call(task('slow'));
    await new Promise((resolve) => setImmediate(resolve));
    owner.close();
    await expect(waiting).rejects.toBeInstanceOf(ChannelClosedError);
    await expect(streamClosed).resolves.toEqual([]);
    expect(caller.open).toBe(0);
    await expect(caller.call(task('after'))).rejects.toBeInstanceOf(ChannelClosedError);
  });

  it('has a same-thread pair: messages arrive in order, later, and a close reaches the other end', async () => {
    const [a, b] = localPair();
    const got: unknown[] = [];
    const back: unknown[] = [];
    b.on('message', (m) => got.push(m));
    a.on('message', (m) => back.push(m));
    a.postMessage(1);
    a.postMessage(2);
    expect(got).toEqual([]);
    const closed = once(b as unknown as NodeJS.EventEmitter, 'close');
    a.close();
    await closed;
    expect(got).toEqual([1, 2]);
    // Closed at both ends now: nothing crosses any more.
    b.postMessage('after close');
    await new Promise((resolve) => setImmediate(resolve));
    expect(back).toEqual([]);
  });
});
