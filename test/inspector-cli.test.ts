/**
 * A client nobody here wrote: @modelcontextprotocol/inspector-cli, scripted,
 * against one and several handler threads.
 */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import type { Served } from '../dist/main/index.js';
import { start } from './helpers.js';

const run = promisify(execFile);
const INSPECTOR = fileURLToPath(
  new URL('../node_modules/@modelcontextprotocol/inspector-cli/build/index.js', import.meta.url),
);
// The inspector looks for its own package.json relative to the working directory's parent.
const CWD = fileURLToPath(new URL('.', import.meta.url));

async function inspector(url: string, ...args: string[]): Promise<unknown> {
  const { stdout } = await run(process.execPath, [INSPECTOR, url, '--transport', 'http', ...args], {
    cwd: CWD,
    timeout: 30_000,
  });
  return JSON.parse(stdout);
}

let served: Served | undefined;
afterEach(async () => {
  await served?.close();
  served = undefined;
});

describe.each([1, 3])('inspector-cli with %i handler thread(s)', (threads) => {
  it('lists and calls tools, reads a resource and gets a prompt', async () => {
    served = await start({ maxSessions: 10, threads });
    const tools = (await inspector(served.url, '--method', 'tools/list')) as { tools: { name: string }[] };
    expect(tools.tools.map((t) => t.name)).toEqual(expect.arrayContaining(['echo', 'whoami', 'sleep']));
    expect(
      await inspector(served.url, '--method', 'tools/call', '--tool-name', 'echo', '--tool-arg', 'text=inspected'),
    ).toMatchObject({ content: [{ type: 'text', text: 'inspected' }] });
    const resource = (await inspector(served.url, '--method', 'resources/read', '--uri', 'test://hello')) as {
      contents: { text: string }[];
    };
    expect(resource.contents[0]?.text).toMatch(/^hello from thread \d+$/);
    expect(
      await inspector(served.url, '--method', 'prompts/get', '--prompt-name', 'greet', '--prompt-args', 'name=Ada'),
    ).toMatchObject({ messages: [{ content: { text: 'Say hello to Ada' } }] });
    expect((await served.broker.stats()).createdTotal).toBe(4);
    // Four inspector processes, each loading the inspector: slow on a loaded machine.
  }, 90_000);
});
