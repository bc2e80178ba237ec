/**
 * A client-side helper for servers behind the broker (`mcp-session-broker/client`).
 *
 * When the broker evicts or expires a session, the client's next request gets
 * 404. The SDK 1.x client then keeps its stale session id, so every later
 * request fails too; recovery is a new transport and a new `initialize`.
 * `ReconnectingClient.run()` does that once and retries, so recovery is one line.
 */
import { Client, type ClientOptions } from '@modelcontextprotocol/sdk/client/index.js';
import {
  StreamableHTTPClientTransport,
  type StreamableHTTPClientTransportOptions,
  StreamableHTTPError,
} from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { Implementation } from '@modelcontextprotocol/sdk/types.js';

/** Whether an error means the server no longer knows the session (HTTP 404: evicted, expired, deleted). */
export function isSessionNotFound(error: unknown): boolean {
  return error instanceof StreamableHTTPError && error.code === 404;
}

export interface ReconnectingClientOptions {
  readonly clientInfo?: Implementation;
  readonly clientOptions?: ClientOptions;
  readonly transportOptions?: StreamableHTTPClientTransportOptions;
  /** Called after a new session replaced one the server no longer knew. */
  readonly onReconnect?: (sessionId: string | undefined) => void;
}

export class ReconnectingClient {
  readonly #url: URL;
  readonly #options: ReconnectingClientOptions;
  #client: Client;
  #transport: StreamableHTTPClientTransport;

  /** Connects (initialize) and returns the helper. */
  static async connect(url: string | URL, options: ReconnectingClientOptions = {}): Promise<ReconnectingClient> {
    const rc = new ReconnectingClient(new URL(url), options);
    await rc.#client.connect(rc.#transport);
    return rc;
  }

  private constructor(url: URL, options: ReconnectingClientOptions) {
    this.#url = url;
    this.#options = options;
    [this.#client, this.#transport] = this.#fresh();
  }

  #fresh(): [Client, StreamableHTTPClientTransport] {
    const client = new Client(
      this.#options.clientInfo ?? { name: 'mcp-session-broker-client', version: '1.0.0' },
      this.#options.clientOptions,
    );
    return [client, new StreamableHTTPClientTransport(this.#url, this.#options.transportOptions)];
  }

  /** The current SDK client (replaced after a reconnect). */
  get client(): Client {
    return this.#client;
  }

  get sessionId(): string | undefined {
    return this.#transport.sessionId;
  }

  /**
   * Runs `operation` on the client. If the server answers 404 (the session was
   * evicted or expired before the request reached it, so nothing ran), opens a
   * new session and runs it once more.
   */
  async run<T>(operation: (client: Client) => Promise<T>): Promise<T> {
    try {
      return await operation(this.#client);
    } catch (error) {
      if (!isSessionNotFound(error)) throw error;
      await this.reconnect();
      return operation(this.#client);
    }
  }

  /** Drops the current session (without DELETE: the server no longer knows it) and opens a new one. */
  async reconnect(): Promise<void> {
    const old = this.#client;
    [this.#client, this.#transport] = this.#fresh();
    await old.close().catch(() => undefined);
    await this.#client.connect(this.#transport);
    this.#options.onReconnect?.(this.#transport.sessionId);
  }

  /** Ends the session (DELETE) and closes the client. */
  async close(): Promise<void> {
    await this.#transport.terminateSession().catch(() => undefined);
    await this.#client.close();
  }
}
