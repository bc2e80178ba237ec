/**
 * The authority protocol (ADR 20): the messages between a host's admission
 * authority and the server processes that own sessions, one closed set for
 * both carriers (the cluster IPC channel carries the objects; a socket
 * carries frames). Nothing acts on a message before `parseMessage` has
 * checked it field by field; a socket's bytes go through `FrameDecoder`,
 * which refuses a frame that is too large, not JSON, or not a message with a
 * `ProtocolError` (the connection is then closed; no count changes).
 *
 * Frame: a 4-byte big-endian length, then that many bytes of UTF-8 JSON.
 */
import { CLOSE_REASONS, type CloseReason, REJECT_REASONS, type RejectReason } from '../../shared/types.js';

/** Protocol version sent in `hello`; a peer with another is refused. */
export const PROTOCOL_VERSION = 1;
/** Largest frame body, bytes (a `register` of many sessions is split across frames). */
export const MAX_FRAME_BYTES = 64 * 1024;
/** Most sessions in one `register` frame, and most entries in one `seen` frame. */
export const MAX_BATCH = 256;
/** The most slots an authority may have: the top 8 bits of an id's slot word name the process. */
export const MAX_CAPACITY = 0xff_ffff;
/** Longest client key, characters (longer keys are refused by the front before admission). */
const MAX_KEY_LENGTH = 1024;

type Words4 = readonly [number, number, number, number];

/** Process -> authority. */
export type ProcessMessage =
  | {
      readonly type: 'hello';
      readonly version: number;
      readonly pid: number;
      readonly secret?: string;
      /** The process index it had before (a reconnect): its sessions' ids carry it. */
      readonly want?: number;
    }
  | {
      readonly type: 'admit';
      readonly seq: number;
      readonly clientKey: string;
      readonly owner: number;
      readonly binding?: readonly [number, number];
    }
  | {
      readonly type: 'closed';
      readonly slot: number;
      readonly gen: number;
      readonly reason: CloseReason;
      readonly refund?: boolean;
    }
  | {
      /**
       * The owner will not close the session now (the answer to a `close`
       * that was not forced): a request is in flight (`busyForMs`: since
       * when), its thread cannot answer, or it was active more recently
       * than the authority knew (`seenAgoMs`).
       */
      readonly type: 'veto';
      readonly slot: number;
      readonly gen: number;
      readonly seenAgoMs: number;
      readonly busyForMs?: number;
    }
  | {
      /**
       * What the owner saw since it last said: per session, how long ago it
       * was last active and whether a request is in flight now (so the
       * authority's idle and idlest decisions, and a veto's busy mark, catch up).
       */
      readonly type: 'seen';
      readonly entries: ReadonlyArray<readonly [slot: number, gen: number, seenAgoMs: number, busy: 0 | 1]>;
    }
  | { readonly type: 'register'; readonly sessions: readonly RegisteredSession[] }
  | { readonly type: 'stats'; readonly seq: number }
  /** Run the idle/lifetime sweep now (`SessionBroker.sweep()`). */
  | { readonly type: 'sweep' };

/** A session a process owns, as it tells a (restarted) authority. Times are ages, ms (clocks differ). */
export interface RegisteredSession {
  readonly slot: number;
  readonly gen: number;
  readonly rand: Words4;
  readonly clientKey: string;
  readonly createdAgoMs: number;
  readonly seenAgoMs: number;
  readonly binding?: readonly [number, number];
}

/** Authority -> process. */
export type AuthorityMessage =
  | {
      readonly type: 'welcome';
      readonly process: number;
      readonly capacity: number;
      readonly idleTimeoutMs: number;
      readonly maxLifetimeMs: number;
      readonly busyTimeoutMs: number;
      /** The directory of the processes' private sockets (`<process>.sock`). */
      readonly routes: string;
      /** What a forwarded request carries to be accepted by its owner. */
      readonly routeSecret: string;
    }
  | {
      readonly type: 'admitted';
      readonly seq: number;
      readonly slot: number;
      readonly gen: number;
      readonly rand: Words4;
    }
  | { readonly type: 'refused'; readonly seq: number; readonly reason: RejectReason; readonly retryAfterMs: number }
  | {
      readonly type: 'close';
      readonly slot: number;
      readonly gen: number;
      readonly reason: CloseReason;
      /** For eviction of the idlest: how long ago the authority believes the session was last active. */
      readonly seenAgoMs?: number;
    }
  | { readonly type: 'stats-result'; readonly seq: number; readonly stats: Readonly<Record<string, number>> };

export type Message = ProcessMessage | AuthorityMessage;

/** A frame or message that breaks the protocol: the connection that sent it is closed. */
export class ProtocolError extends Error {
  override readonly name = 'ProtocolError';
}

// ---- field checks -------------------------------------------------------------

type Fields = Record<string, unknown>;

function fail(message: string): never {
  throw new ProtocolError(message);
}

function uint(value: unknown, what: string, max = 0xffff_ffff): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > max) {
    fail(`${what} must be an integer from 0 to ${max}`);
  }
  return value;
}

function time(value: unknown, what: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) fail(`${what} must be a time in ms`);
  return value;
}

function int32(value: unknown, what: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < -0x8000_0000 || value > 0x7fff_ffff) {
    fail(`${what} must be a 32-bit integer`);
  }
  return value;
}

function words(value: unknown, count: number, what: string): number[] {
  if (!Array.isArray(value) || value.length !== count) fail(`${what} must be ${count} integers`);
  return value.map((w, i) => int32(w, `${what}[${i}]`));
}

function binding(value: unknown): readonly [number, number] | undefined {
  if (value === undefined) return undefined;
  const [a, b] = words(value, 2, 'binding') as [number, number];
  if ((a | b) === 0) fail('binding must not be 0, 0');
  return [a, b];
}

function text(value: unknown, what: string, max: number): string {
  if (typeof value !== 'string' || value.length > max) fail(`${what} must be a string of at most ${max} characters`);
  return value;
}

function oneOf<T extends string>(value: unknown, allowed: readonly T[], what: string): T {
  if (typeof value !== 'string' || !(allowed as readonly string[]).includes(value)) fail(`${what} is not known`);
  return value as T;
}

function list(value: unknown, what: string): unknown[] {
  if (!Array.isArray(value) || value.length > MAX_BATCH) fail(`${what} must be a list of at most ${MAX_BATCH}`);
  return value;
}

/** Refuses fields a message type does not have (a peer of another version, or garbage). */
function only(fields: Fields, allowed: readonly string[]): void {
  for (const key of Object.keys(fields)) if (!allowed.includes(key)) fail(`unexpected field ${key.slice(0, 40)}`);
}

function registered(value: unknown): RegisteredSession {
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    fail('a registered session must be an object');
  const f = value as Fields;
  only(f, ['slot', 'gen', 'rand', 'clientKey', 'createdAgoMs', 'seenAgoMs', 'binding']);
  const session: RegisteredSession = {
    slot: uint(f.slot, 'slot'),
    gen: uint(f.gen, 'gen'),
    rand: words(f.rand, 4, 'rand') as unknown as Words4,
    clientKey: text(f.clientKey, 'clientKey', MAX_KEY_LENGTH),
    createdAgoMs: time(f.createdAgoMs, 'createdAgoMs'),
    seenAgoMs: time(f.seenAgoMs, 'seenAgoMs'),
  };
  const bound = binding(f.binding);
  return bound ? { ...session, binding: bound } : session;
}

/**
 * Checks a decoded value field by field and returns it as a message (a new
 * object: nothing of the input is kept beyond the checked fields). Throws
 * `ProtocolError` for anything else.
 */
export function parseMessage(value: unknown): Message {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) fail('a message must be an object');
  const f = value as Fields;
  switch (f.type) {
    case 'hello': {
      only(f, ['type', 'version', 'pid', 'secret', 'want']);
      const hello: Extract<ProcessMessage, { type: 'hello' }> = {
        type: 'hello',
        version: uint(f.version, 'version'),
        pid: uint(f.pid, 'pid'),
        ...(f.secret === undefined ? {} : { secret: text(f.secret, 'secret', 256) }),
        ...(f.want === undefined ? {} : { want: uint(f.want, 'want', 255) }),
      };
      return hello;
    }
    case 'admit': {
      only(f, ['type', 'seq', 'clientKey', 'owner', 'binding']);
      const admit = {
        type: 'admit' as const,
        seq: uint(f.seq, 'seq', Number.MAX_SAFE_INTEGER),
        clientKey: text(f.clientKey, 'clientKey', MAX_KEY_LENGTH),
        owner: uint(f.owner, 'owner'),
      };
      const bound = binding(f.binding);
      return bound ? { ...admit, binding: bound } : admit;
    }
    case 'closed': {
      only(f, ['type', 'slot', 'gen', 'reason', 'refund']);
      const closed = {
        type: 'closed' as const,
        slot: uint(f.slot, 'slot'),
        gen: uint(f.gen, 'gen'),
        reason: oneOf(f.reason, CLOSE_REASONS, 'reason'),
      };
      if (f.refund === undefined) return closed;
      if (typeof f.refund !== 'boolean') fail('refund must be a boolean');
      return { ...closed, refund: f.refund };
    }
    case 'veto': {
      only(f, ['type', 'slot', 'gen', 'seenAgoMs', 'busyForMs']);
      const veto = {
        type: 'veto' as const,
        slot: uint(f.slot, 'slot'),
        gen: uint(f.gen, 'gen'),
        seenAgoMs: time(f.seenAgoMs, 'seenAgoMs'),
      };
      return f.busyForMs === undefined ? veto : { ...veto, busyForMs: time(f.busyForMs, 'busyForMs') };
    }
    case 'seen':
      only(f, ['type', 'entries']);
      return {
        type: 'seen',
        entries: list(f.entries, 'entries').map((entry, i) => {
          if (!Array.isArray(entry) || entry.length !== 4) fail(`entries[${i}] must be [slot, gen, seenAgoMs, busy]`);
          const busy = entry[3];
          if (busy !== 0 && busy !== 1) fail(`entries[${i}] busy must be 0 or 1`);
          return [uint(entry[0], 'slot'), uint(entry[1], 'gen'), time(entry[2], 'seenAgoMs'), busy] as const;
        }),
      };
    case 'register':
      only(f, ['type', 'sessions']);
      return { type: 'register', sessions: list(f.sessions, 'sessions').map(registered) };
    case 'stats':
      only(f, ['type', 'seq']);
      return { type: 'stats', seq: uint(f.seq, 'seq', Number.MAX_SAFE_INTEGER) };
    case 'sweep':
      only(f, ['type']);
      return { type: 'sweep' };
    case 'welcome':
      only(f, [
        'type',
        'process',
        'capacity',
        'idleTimeoutMs',
        'maxLifetimeMs',
        'busyTimeoutMs',
        'routes',
        'routeSecret',
      ]);
      return {
        type: 'welcome',
        process: uint(f.process, 'process', 255),
        capacity: uint(f.capacity, 'capacity', MAX_CAPACITY),
        idleTimeoutMs: time(f.idleTimeoutMs, 'idleTimeoutMs'),
        maxLifetimeMs: time(f.maxLifetimeMs, 'maxLifetimeMs'),
        busyTimeoutMs: time(f.busyTimeoutMs, 'busyTimeoutMs'),
        routes: text(f.routes, 'routes', 4096),
        routeSecret: text(f.routeSecret, 'routeSecret', 256),
      };
    case 'admitted':
      only(f, ['type', 'seq', 'slot', 'gen', 'rand']);
      return {
        type: 'admitted',
        seq: uint(f.seq, 'seq', Number.MAX_SAFE_INTEGER),
        slot: uint(f.slot, 'slot'),
        gen: uint(f.gen, 'gen'),
        rand: words(f.rand, 4, 'rand') as unknown as Words4,
      };
    case 'refused':
      only(f, ['type', 'seq', 'reason', 'retryAfterMs']);
      return {
        type: 'refused',
        seq: uint(f.seq, 'seq', Number.MAX_SAFE_INTEGER),
        reason: oneOf(f.reason, REJECT_REASONS, 'reason'),
        retryAfterMs: time(f.retryAfterMs, 'retryAfterMs'),
      };
    case 'close': {
      only(f, ['type', 'slot', 'gen', 'reason', 'seenAgoMs']);
      const close = {
        type: 'close' as const,
        slot: uint(f.slot, 'slot'),
        gen: uint(f.gen, 'gen'),
        reason: oneOf(f.reason, CLOSE_REASONS, 'reason'),
      };
      return f.seenAgoMs === undefined ? close : { ...close, seenAgoMs: time(f.seenAgoMs, 'seenAgoMs') };
    }
    case 'stats-result': {
      only(f, ['type', 'seq', 'stats']);
      const stats = f.stats;
      if (typeof stats !== 'object' || stats === null || Array.isArray(stats)) fail('stats must be an object');
      const entries = Object.entries(stats as Fields);
      if (entries.length > MAX_BATCH) fail('stats has too many fields');
      return {
        type: 'stats-result',
        seq: uint(f.seq, 'seq', Number.MAX_SAFE_INTEGER),
        stats: Object.fromEntries(
          entries.map(([k, v]) => [text(k, 'stats key', 64), time(v, `stats.${k.slice(0, 40)}`)]),
        ),
      };
    }
    default:
      return fail(`unknown message type ${typeof f.type === 'string' ? f.type.slice(0, 40) : typeof f.type}`);
  }
}

// ---- frames ---------------------------------------------------------------------

/** One message as a frame: its JSON, preceded by its length. */
export function encodeFrame(message: Message): Buffer {
  const body = Buffer.from(JSON.stringify(parseMessage(message)), 'utf8');
  if (body.length > MAX_FRAME_BYTES)
    throw new ProtocolError(`a frame of ${body.length} bytes is over ${MAX_FRAME_BYTES}`);
  const frame = Buffer.allocUnsafe(4 + body.length);
  frame.writeUInt32BE(body.length, 0);
  body.copy(frame, 4);
  return frame;
}

/**
 * Turns a stream's chunks into messages. Holds at most one frame's bytes plus
 * the chunk that completes it (the length is checked before the body is
 * waited for). After a `ProtocolError` the decoder is spent: every later
 * `push` throws too, and messages completed earlier in the failing `push` are
 * not returned (the connection is closed; its peer starts over).
 */
export class FrameDecoder {
  #chunks: Buffer[] = [];
  #buffered = 0;
  #failed: ProtocolError | undefined;

  /** Adds bytes; returns every message they complete, in order. */
  push(chunk: Uint8Array): Message[] {
    if (this.#failed) throw this.#failed;
    try {
      this.#chunks.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
      this.#buffered += chunk.byteLength;
      const messages: Message[] = [];
      for (;;) {
        if (this.#buffered < 4) return messages;
        const length = this.#length();
        if (length > MAX_FRAME_BYTES) fail(`a frame of ${length} bytes is over ${MAX_FRAME_BYTES}`);
        // Joined once per complete frame (never per chunk: a peer sending a byte at a time costs linear time).
        if (this.#buffered < 4 + length) return messages;
        const all = this.#chunks.length === 1 ? (this.#chunks[0] as Buffer) : Buffer.concat(this.#chunks);
        const body = all.subarray(4, 4 + length);
        const rest = all.subarray(4 + length);
        this.#chunks = rest.length > 0 ? [Buffer.from(rest)] : [];
        this.#buffered = rest.length;
        let decoded: unknown;
        try {
          decoded = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(body));
        } catch {
          fail('a frame is not UTF-8 JSON');
        }
        messages.push(parseMessage(decoded));
      }
    } catch (error) {
      this.#failed = error instanceof ProtocolError ? error : new ProtocolError(String(error));
      this.#chunks = [];
      this.#buffered = 0;
      throw this.#failed;
    }
  }

  /** The length word at the front of what is held (at least 4 bytes). */
  #length(): number {
    const first = this.#chunks[0] as Buffer;
    if (first.length >= 4) return first.readUInt32BE(0);
    const head: number[] = [];
    for (const chunk of this.#chunks) {
      for (const byte of chunk) {
        head.push(byte);
        if (head.length === 4) return Buffer.from(head).readUInt32BE(0);
      }
    }
    return fail('fewer than 4 bytes held');
  }

  /** Bytes held for a frame not yet complete. */
  get buffered(): number {
    return this.#buffered;
  }
}
