/**
 * Popular MCP client libraries, driven as their users drive them: one driver
 * per library connects to a URL (with a `fetch` where the library takes one),
 * lists tools, calls `echo`, and closes. `client-libraries.test.ts` runs each
 * through eviction, a full server and its close.
 */
import { fileURLToPath } from 'node:url';

export interface Connected {
  /** Tool names as the library reports them. */
  list(): Promise<string[]>;
  /** Calls `echo` with `text`; resolves with the text it answered. */
  echo(text: string): Promise<string>;
  close(): Promise<void>;
}

export interface Driver {
  readonly name: string;
  /** The package and version, as pinned in devDependencies. */
  readonly version: string;
  /** The lowest Node major the library runs on (its `engines`). */
  readonly minNode: number;
  /** Whether the library takes a `fetch` (so `recoveringFetch` can be given to it). */
  readonly takesFetch: boolean;
  connect(url: string, fetchFn?: typeof fetch): Promise<Connected>;
}

/** The text of the first text content item of a tool result. */
function textOf(result: unknown): string {
  const content = (result as { content?: Array<{ type?: string; text?: string }> }).content;
  const text = content?.find((c) => c.type === 'text')?.text;
  if (text === undefined) throw new Error(`no text in the tool result: ${JSON.stringify(result).slice(0, 200)}`);
  return text;
}

/** What the MCP SDK clients (1.x and 2.x) and the AI SDK's client have in common. */
interface ListsAndCalls {
  listTools(): Promise<{ tools: Array<{ name: string }> }>;
  callTool(call: { name: string; arguments: Record<string, unknown> }): Promise<unknown>;
  close(): Promise<void>;
}

/** A client with `listTools`, `callTool` and `close`, as a `Connected`. */
function viaClient(client: ListsAndCalls): Connected {
  return {
    list: async () => (await client.listTools()).tools.map((t) => t.name),
    echo: async (text) => textOf(await client.callTool({ name: 'echo', arguments: { text } })),
    close: () => client.close(),
  };
}

const sdkV1: Driver = {
  name: 'MCP TypeScript SDK 1.x Client',
  version: '@modelcontextprotocol/sdk 1.32',
  minNode: 20,
  takesFetch: true,
  async connect(url, fetchFn) {
    const { Client } = await import('@modelcontextprotocol/sdk/client/index.js');
    const { StreamableHTTPClientTransport } = await import('@modelcontextprotocol/sdk/client/streamableHttp.js');
    const client = new Client({ name: 'compat', version: '1.0.0' });
    const transport = new StreamableHTTPClientTransport(new URL(url), fetchFn ? { fetch: fetchFn } : {});
    await client.connect(transport);
    // As its examples end: close() alone (a DELETE needs transport.terminateSession()).
    return viaClient(client);
  },
};

const sdkV2: Driver = {
  name: 'MCP TypeScript SDK 2.x client',
  version: '@modelcontextprotocol/client 2.4.0',
  minNode: 20,
  takesFetch: true,
  async connect(url, fetchFn) {
    const { Client, StreamableHTTPClientTransport } = await import('@modelcontextprotocol/client');
    const client = new Client({ name: 'compat', version: '1.0.0' });
    const transport = new StreamableHTTPClientTransport(new URL(url), fetchFn ? { fetch: fetchFn } : {});
    await client.connect(transport);
    return viaClient(client);
  },
};

const aiSdk: Driver = {
  name: 'Vercel AI SDK MCP client',
  version: '@ai-sdk/mcp 2.0.99',
  minNode: 22,
  takesFetch: true,
  async connect(url, fetchFn) {
    const { createMCPClient } = await import('@ai-sdk/mcp');
    const client = await createMCPClient({
      transport: { type: 'http', url, ...(fetchFn ? { fetch: fetchFn } : {}) },
    });
    return viaClient(client);
  },
};

const openAiAgents: Driver = {
  name: 'OpenAI Agents SDK',
  version: '@openai/agents 0.20.0',
  minNode: 20,
  takesFetch: true,
  async connect(url, fetchFn) {
    const { MCPServerStreamableHttp } = await import('@openai/agents');
    const server = new MCPServerStreamableHttp({ url, name: 'broker', ...(fetchFn ? { fetch: fetchFn } : {}) });
    await server.connect();
    return {
      list: async () => (await server.listTools()).map((t) => t.name),
      echo: async (text) => {
        const content = await server.callTool('echo', { text });
        const item = (content as Array<{ type?: string; text?: string }>).find((c) => c.type === 'text');
        if (item?.text === undefined) throw new Error(`no text in ${JSON.stringify(content).slice(0, 200)}`);
        return item.text;
      },
      close: () => server.close(),
    };
  },
};

const langChain: Driver = {
  name: 'LangChain MCP adapters',
  version: '@langchain/mcp-adapters 1.1.4',
  minNode: 20,
  takesFetch: false,
  async connect(url) {
    const { MultiServerMCPClient } = await import('@langchain/mcp-adapters');
    const client = new MultiServerMCPClient({ mcpServers: { broker: { transport: 'http', url } } });
    const tools = await client.getTools();
    const echoTool = tools.find((t) => t.name.endsWith('echo'));
    if (!echoTool) throw new Error('no echo tool');
    return {
      list: async () => (await client.getTools()).map((t) => t.name),
      echo: async (text) => {
        const out: unknown = await echoTool.invoke({ text });
        if (typeof out === 'string') return out;
        if (Array.isArray(out)) return textOf({ content: out });
        return textOf(out);
      },
      close: () => client.close(),
    };
  },
};

function mastra(name: string, pkg: string, version: string, minNode: number): Driver {
  return {
    name,
    version,
    minNode,
    takesFetch: true,
    async connect(url, fetchFn) {
      const { MCPClient } = (await import(pkg)) as typeof import('@mastra/mcp');
      const client = new MCPClient({
        id: `compat-${Math.random().toString(36).slice(2)}`,
        servers: { broker: { url: new URL(url), ...(fetchFn ? { fetch: fetchFn } : {}) } },
      });
      const tools = async () =>
        (await client.listTools()) as Record<string, { execute?: (...a: unknown[]) => unknown }>;
      const echoTool = async () => {
        const all = await tools();
        const key = Object.keys(all).find((k) => k.endsWith('echo'));
        const tool = key ? all[key] : undefined;
        if (!tool?.execute) throw new Error('no echo tool');
        return tool;
      };
      return {
        list: async () => Object.keys(await tools()),
        echo: async (text) => {
          const out = await (await echoTool()).execute?.({ text }, {});
          return textOf(out);
        },
        close: () => client.disconnect(),
      };
    },
  };
}

/** mcp-remote: a stdio proxy to the HTTP server, driven by the SDK's stdio client (as an IDE runs it). */
const mcpRemote: Driver = {
  name: 'mcp-remote (stdio proxy)',
  version: 'mcp-remote 0.15.1',
  minNode: 20,
  takesFetch: false,
  async connect(url) {
    const { Client } = await import('@modelcontextprotocol/sdk/client/index.js');
    const { StdioClientTransport } = await import('@modelcontextprotocol/sdk/client/stdio.js');
    const proxy = fileURLToPath(new URL('../node_modules/mcp-remote/dist/proxy.js', import.meta.url));
    const transport = new StdioClientTransport({
      command: process.execPath,
      args: [proxy, url, '--allow-http', '--transport', 'http-only', '--silent'],
      stderr: 'ignore',
    });
    const client = new Client({ name: 'compat', version: '1.0.0' });
    await client.connect(transport);
    return viaClient(client);
  },
};

export const DRIVERS: readonly Driver[] = [
  sdkV1,
  sdkV2,
  aiSdk,
  openAiAgents,
  langChain,
  mastra('Mastra MCP client 2.x', '@mastra/mcp', '@mastra/mcp 2.0.0', 22),
  mastra('Mastra MCP client 1.x', 'mastra-mcp-1', '@mastra/mcp 1.18.0', 20),
  mcpRemote,
];
