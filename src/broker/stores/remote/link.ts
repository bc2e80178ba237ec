/**
 * How a process's store reaches its admission authority (ADR 20, ADR 21): a
 * host's authority over a socket (`SocketLink`), or Redis, whose scripts
 * decide what the authority would (`RedisLink`). The store above a link is
 * the same: it owns the process's sessions, vetoes closes it knows better
 * about, reports activity, and fails closed while the link is down.
 */
import type { AuthorityMessage, ProcessMessage, RegisteredSession } from '../../remote/protocol.js';

export type Welcome = Extract<AuthorityMessage, { type: 'welcome' }>;

/** What a link calls back into its store with. */
export interface LinkPeer {
  /** A message from the authority, after the welcome. */
  receive(message: AuthorityMessage): void;
  /** The connection is gone (the store fails closed and reconnects with backoff). */
  lost(): void;
  /** The welcome arrived: the store is connected from now. */
  welcomed(): void;
  /**
   * The sessions this process owns (live, or still closing here), by slot:
   * from slot `from` (default 0), at most `limit` (default all). A link that
   * reconciles on its own asks, a page at a time.
   */
  owned(from?: number, limit?: number): RegisteredSession[];
  log(line: string): void;
}

export interface AuthorityLink {
  /** What the authority is and where, as logs may show it (no secrets): `the session authority at PATH`. */
  readonly label: string;
  /** Connects (or reuses the connection) and says hello; resolves with the welcome. */
  open(want: number | undefined, timeoutMs: number, peer: LinkPeer): Promise<Welcome>;
  /** Sends a message; dropped while disconnected (the store fails closed meanwhile). */
  send(message: ProcessMessage): void;
  /** Drops the connection now (the store then reconnects, unless shutting down). */
  end(): void;
  /** Leaves for good, once what was sent is out. */
  close(): Promise<void>;
  /** The URL of another process's (host's) private route, where the link knows it (Redis). */
  peer?(process: number): Promise<string | undefined>;
  /** Where this process listens for forwarded requests, when the link says (Redis: the advertised URL). */
  readonly listen?: { readonly host: string; readonly port: number; readonly url: string };
}
