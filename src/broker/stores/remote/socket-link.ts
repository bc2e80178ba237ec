/**
 * The link to a host's authority over a unix socket or TCP (ADR 20): frames
 * of the authority protocol, `hello` first.
 */
import { createConnection, type Socket } from 'node:net';
import {
  type AuthorityMessage,
  encodeFrame,
  FrameDecoder,
  type Message,
  PROTOCOL_VERSION,
  type ProcessMessage,
} from '../../remote/protocol.js';
import type { AuthorityLink, LinkPeer, Welcome } from './link.js';

/** Bytes queued to an authority that does not read, beyond which the connection is dropped. */
const MAX_QUEUED_BYTES = 8 * 1024 * 1024;

/** `HOST:PORT` (TCP) or a path (unix socket). */
function parseAddress(address: string): { path: string } | { host: string; port: number } {
  const tcp = /^(\[[^\]]+\]|[^/:[\]]+):(\d{1,5})$/.exec(address);
  if (!tcp) return { path: address };
  return { host: (tcp[1] as string).replace(/^\[|\]$/g, ''), port: Number(tcp[2]) };
}

export class SocketLink implements AuthorityLink {
  readonly address: string;
  readonly label: string;
  readonly #secret: string | undefined;
  #socket: Socket | undefined;
  #log: (line: string) => void = (line) => console.error(line);

  constructor(address: string, secret: string | undefined) {
    this.address = address;
    this.label = `the session authority at ${address}`;
    this.#secret = secret;
  }

  open(want: number | undefined, timeoutMs: number, peer: LinkPeer): Promise<Welcome> {
    this.#log = (line) => peer.log(line);
    return new Promise((resolve, reject) => {
      const target = parseAddress(this.address);
      const socket = 'path' in target ? createConnection(target.path) : createConnection(target.port, target.host);
      const decoder = new FrameDecoder();
      let welcomed = false;
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error(`no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      timer.unref();
      socket.setNoDelay(true);
      socket.once('connect', () => {
        const hello: ProcessMessage = {
          type: 'hello',
          version: PROTOCOL_VERSION,
          pid: process.pid,
          ...(this.#secret === undefined ? {} : { secret: this.#secret }),
          ...(want === undefined ? {} : { want }),
        };
        socket.write(encodeFrame(hello));
      });
      socket.on('data', (chunk: Buffer) => {
        let messages: Message[];
        try {
          messages = decoder.push(chunk);
        } catch (error) {
          this.#log(`[mcp-session-broker] the authority sent a bad frame: ${(error as Error).message}`);
          socket.destroy();
          return;
        }
        for (const message of messages) {
          if (!welcomed) {
            if (message.type !== 'welcome') {
              socket.destroy();
              return;
            }
            welcomed = true;
            clearTimeout(timer);
            this.#socket = socket;
            peer.welcomed();
            resolve(message);
            continue;
          }
          // A message no authority sends (a process's, a second welcome) is refused by the store, which ends the link.
          peer.receive(message as AuthorityMessage);
        }
      });
      socket.on('error', (error) => {
        if (!welcomed) {
          clearTimeout(timer);
          reject(error);
        }
      });
      socket.on('close', () => {
        clearTimeout(timer);
        if (!welcomed) {
          reject(new Error('the authority closed the connection (a wrong secret, or no process index free)'));
          return;
        }
        if (this.#socket === socket) {
          this.#socket = undefined;
          peer.lost();
        }
      });
    });
  }

  send(message: ProcessMessage): void {
    const socket = this.#socket;
    if (!socket || socket.destroyed) return;
    if (socket.writableLength > MAX_QUEUED_BYTES) {
      this.#log('[mcp-session-broker] the session authority does not read: dropping the connection');
      socket.destroy();
      return;
    }
    socket.write(encodeFrame(message));
  }

  end(): void {
    this.#socket?.destroy();
  }

  async close(): Promise<void> {
    this.#socket?.end();
  }
}
