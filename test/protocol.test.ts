/**
 * The authority protocol's decoder (ADR 20), fuzzed: valid messages survive
 * any chunking; random, truncated, mutated or oversized input yields only
 * `ProtocolError` (never another exception, never a message that fails the
 * field checks), and the decoder never holds more than one frame.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  encodeFrame,
  FrameDecoder,
  MAX_BATCH,
  MAX_CAPACITY,
  MAX_FRAME_BYTES,
  type Message,
  ProtocolError,
  parseMessage,
} from '../dist/broker/remote/protocol.js';
import { CLOSE_REASONS, REJECT_REASONS } from '../dist/shared/types.js';

const u32 = fc.integer({ min: 0, max: 0xffff_ffff });
const i32 = fc.integer({ min: -0x8000_0000, max: 0x7fff_ffff });
const seq = fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER });
const ms = fc.double({ min: 0, max: 1e13, noNaN: true, noDefaultInfinity: true });
const key = fc.string({ maxLength: 64 });
const rand = fc.tuple(i32, i32, i32, i32);
const bindingArb = fc.option(
  fc.tuple(i32, i32).filter(([a, b]) => (a | b) !== 0),
  { nil: undefined },
);
const closeReason = fc.constantFrom(...CLOSE_REASONS);

/** Drops undefined optional fields, as JSON would. */
function clean<T extends object>(value: T): T {
  return JSON.parse(JSON.stringify(value)) as T;
}

const message: fc.Arbitrary<Message> = fc
  .oneof(
    fc.record({
      type: fc.constant('hello'),
      version: u32,
      pid: u32,
      secret: fc.option(key, { nil: undefined }),
      want: fc.option(fc.integer({ min: 0, max: 255 }), { nil: undefined }),
    }),
    fc.record({ type: fc.constant('admit'), seq, clientKey: key, owner: u32, binding: bindingArb }),
    fc.record({
      type: fc.constant('closed'),
      slot: u32,
      gen: u32,
      reason: closeReason,
      refund: fc.option(fc.boolean(), { nil: undefined }),
    }),
    fc.record({
      type: fc.constant('veto'),
      slot: u32,
      gen: u32,
      seenAgoMs: ms,
      busyForMs: fc.option(ms, { nil: undefined }),
    }),
    fc.record({
      type: fc.constant('register'),
      sessions: fc.array(
        fc.record({
          slot: u32,
          gen: u32,
          rand,
          clientKey: key,
          createdAgoMs: ms,
          seenAgoMs: ms,
          binding: bindingArb,
        }),
        { maxLength: 8 },
      ),
    }),
    fc.record({ type: fc.constant('stats'), seq }),
    fc.record({ type: fc.constant('sweep') }),
    fc.record({
      type: fc.constant('seen'),
      entries: fc.array(fc.tuple(u32, u32, ms, fc.constantFrom(0 as const, 1 as const)), { maxLength: 20 }),
    }),
    fc.record({
      type: fc.constant('welcome'),
      process: fc.integer({ min: 0, max: 255 }),
      capacity: fc.integer({ min: 0, max: MAX_CAPACITY }),
      idleTimeoutMs: ms,
      maxLifetimeMs: ms,
      busyTimeoutMs: ms,
      routes: key,
      routeSecret: key,
    }),
    fc.record({ type: fc.constant('admitted'), seq, slot: u32, gen: u32, rand }),
    fc.record({ type: fc.constant('refused'), seq, reason: fc.constantFrom(...REJECT_REASONS), retryAfterMs: ms }),
    fc.record({
      type: fc.constant('close'),
      slot: u32,
      gen: u32,
      reason: closeReason,
      seenAgoMs: fc.option(ms, { nil: undefined }),
    }),
    fc.record({
      type: fc.constant('stats-result'),
      seq,
      stats: fc.dictionary(fc.string({ minLength: 1, maxLength: 16 }), ms, { maxKeys: 8 }),
    }),
  )
  .map((m) => clean(m) as Message);

/** Splits bytes at the given cut points. */
function chunked(bytes: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let at = 0;
  for (const p of points) {
    out.push(bytes.subarray(at, p));
    at = p;
  }
  out.push(bytes.subarray(at));
  return out;
}

/** Feeds chunks; returns the messages, or the error (anything but ProtocolError fails the test). */
function feed(chunks: Buffer[]): { messages: Message[]; error?: ProtocolError } {
  const decoder = new FrameDecoder();
  const messages: Message[] = [];
  for (const chunk of chunks) {
    try {
      messages.push(...decoder.push(chunk));
    } catch (error) {
      if (!(error instanceof ProtocolError)) throw error;
      expect(() => decoder.push(Buffer.alloc(1))).toThrow(ProtocolError);
      return { messages, error };
    }
    expect(decoder.buffered).toBeLessThanOrEqual(4 + MAX_FRAME_BYTES + chunk.length);
  }
  return { messages };
}

describe('authority protocol', () => {
  it('valid messages come out as they went in, however the bytes are split', () => {
    fc.assert(
      fc.property(
        fc.array(message, { minLength: 1, maxLength: 6 }),
        fc.array(fc.nat(), { maxLength: 12 }),
        (ms, cuts) => {
          const bytes = Buffer.concat(ms.map(encodeFrame));
          const out = feed(chunked(bytes, cuts));
          expect(out.error).toBeUndefined();
          expect(out.messages).toEqual(ms.map(parseMessage));
        },
      ),
      { numRuns: 300 },
    );
  });

  it('random bytes give only ProtocolError or checked messages', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.array(fc.nat(), { maxLength: 6 }), (raw, cuts) => {
        const out = feed(chunked(Buffer.from(raw), cuts));
        for (const m of out.messages) expect(parseMessage(m)).toEqual(m);
      }),
      { numRuns: 500 },
    );
  });

  it('valid frames with bytes changed give only ProtocolError or checked messages', () => {
    fc.assert(
      fc.property(
        message,
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }),
        (m, changes) => {
          const frame = Buffer.from(encodeFrame(m));
          for (const [at, byte] of changes) frame[at % frame.length] = byte;
          const out = feed([frame]);
          for (const decoded of out.messages) expect(parseMessage(decoded)).toEqual(decoded);
        },
      ),
      { numRuns: 500 },
    );
  });

  it('refuses an oversized frame from its length, before its body arrives', () => {
    const decoder = new FrameDecoder();
    const head = Buffer.alloc(4);
    head.writeUInt32BE(MAX_FRAME_BYTES + 1, 0);
    expect(() => decoder.push(head)).toThrow(/over 65536/);
    expect(decoder.buffered).toBe(0);
    expect(() => encodeFrame({ type: 'hello', version: 1, pid: 1, secret: 'x'.repeat(200) })).not.toThrow();
    const session = { slot: 0, gen: 1, rand: [1, 2, 3, 4] as const, clientKey: 'k', createdAgoMs: 0, seenAgoMs: 0 };
    const many = Array.from({ length: MAX_BATCH + 1 }, () => session);
    expect(() => encodeFrame({ type: 'register', sessions: many })).toThrow(ProtocolError);
  });

  it('takes a stream a byte at a time', () => {
    const frames = Array.from({ length: 50 }, (_, i) => encodeFrame({ type: 'veto', slot: i, gen: 1, seenAgoMs: 0 }));
    const bytes = Buffer.concat(frames);
    const decoder = new FrameDecoder();
    const out: Message[] = [];
    for (const byte of bytes) out.push(...decoder.push(Buffer.of(byte)));
    expect(out.map((m) => (m as { slot: number }).slot)).toEqual(Array.from({ length: 50 }, (_, i) => i));
  });

  it.each([
    ['an unknown type', { type: 'evict-everything' }],
    ['an extra field', { type: 'veto', slot: 1, gen: 1, seenAgoMs: 0, all: true }],
    ['an unknown reason', { type: 'close', slot: 1, gen: 1, reason: 'because' }],
    ['a negative slot', { type: 'veto', slot: -1, gen: 1, seenAgoMs: 0 }],
    ['a fractional slot', { type: 'veto', slot: 1.5, gen: 1, seenAgoMs: 0 }],
    ['a zero binding', { type: 'admit', seq: 1, clientKey: 'k', owner: 1, binding: [0, 0] }],
    ['a process index over 255', { type: 'hello', version: 1, pid: 1, want: 256 }],
    ['a rand of three words', { type: 'admitted', seq: 1, slot: 1, gen: 1, rand: [1, 2, 3] }],
    ['a non-object', ['veto', 1, 1]],
    ['null', null],
    ['a __proto__ field', JSON.parse('{"type":"veto","slot":1,"gen":1,"seenAgoMs":0,"__proto__":{"x":1}}')],
  ])('refuses %s', (_what, value) => {
    expect(() => parseMessage(value)).toThrow(ProtocolError);
    const body = Buffer.from(JSON.stringify(value));
    const frame = Buffer.concat([Buffer.alloc(4), body]);
    frame.writeUInt32BE(body.length, 0);
    expect(feed([frame]).error).toBeInstanceOf(ProtocolError);
  });

  it('refuses a frame that is not UTF-8 JSON', () => {
    for (const body of [Buffer.from('{"type":'), Buffer.from([0xff, 0xfe, 0x7b, 0x7d])]) {
      const frame = Buffer.concat([Buffer.alloc(4), body]);
      frame.writeUInt32BE(body.length, 0);
      expect(feed([frame]).error?.message).toMatch(/not UTF-8 JSON/);
    }
  });
});
