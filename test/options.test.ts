/**
 * Options are validated eagerly: TypeError for wrong types, RangeError for bad
 * ranges, messages naming the option.
 */
import { describe, expect, it } from 'vitest';
import { resolveAdmissionOptions } from '../dist/broker/index.js';
import { DEFAULT_MAX_CONNECTIONS, defaultMaxConnections, fileLimit } from '../dist/main/front/connections.js';
import { resolveServeOptions, resolveSessionBrokerOptions, reusePortAvailable } from '../dist/main/front/options.js';
import { parseDuration, parseRate, SessionBroker, serve } from '../dist/main/index.js';

describe('option validation', () => {
  it.each([
    [{}, TypeError, 'options.maxSessions must be a positive integer'],
    [{ maxSessions: '10' }, TypeError, 'options.maxSessions must be a positive integer'],
    [{ maxSessions: 0 }, RangeError, 'options.maxSessions must be a positive integer'],
    [{ maxSessions: 1.5 }, RangeError, 'options.maxSessions must be a positive integer'],
    [{ maxSessions: 2_000_000 }, RangeError, 'options.maxSessions must be at most 1000000'],
    [{ maxSessions: 5, evict: 'lru' }, RangeError, 'options.evict must be one of oldest, idlest, none'],
    [{ maxSessions: 5, evict: 3 }, TypeError, 'options.evict must be one of oldest, idlest, none'],
    [{ maxSessions: 5, rate: 10 }, TypeError, 'options.rate must be an object { max, windowMs }'],
    [{ maxSessions: 5, rate: { max: 0, windowMs: 1000 } }, RangeError, 'options.rate.max must be a positive integer'],
    [{ maxSessions: 5, rate: { max: 5 } }, TypeError, 'options.rate.windowMs must be a number of milliseconds'],
    [{ maxSessions: 5, rate: { max: 5, windowMs: 0 } }, RangeError, 'options.rate.windowMs must be a positive'],
    [{ maxSessions: 5, idleTimeoutMs: -1 }, RangeError, 'options.idleTimeoutMs must be a non-negative'],
    [{ maxSessions: 5, idleTimeoutMs: '30m' }, TypeError, 'options.idleTimeoutMs must be a number of milliseconds'],
    [
      { maxSessions: 5, maxLifetimeMs: Number.POSITIVE_INFINITY },
      RangeError,
      'options.maxLifetimeMs must be a non-negative',
    ],
    [{ maxSessions: 5, busyTimeoutMs: 0 }, RangeError, 'options.busyTimeoutMs must be a positive'],
    [{ maxSessions: 5, idleTimeoutMs: 2 ** 40 }, RangeError, 'options.idleTimeoutMs must be at most'],
  ])('refuses admission options %j', (options, type, message) => {
    expect(() => resolveAdmissionOptions(options as never)).toThrow(type);
    expect(() => resolveAdmissionOptions(options as never)).toThrow(message);
  });

  it('fills in documented defaults', () => {
    expect(resolveAdmissionOptions({ maxSessions: 7 })).toEqual({
      maxSessions: 7,
      evict: 'oldest',
      rate: undefined,
      idleTimeoutMs: 1_800_000,
      maxLifetimeMs: 0,
      busyTimeoutMs: 300_000,
      closeTimeoutMs: 10_000,
    });
  });

  it.each([
    [{ maxSessions: 5, threads: -1 }, RangeError, 'options.threads must be an integer from 0 to 256'],
    [{ maxSessions: 5, threads: '2' }, TypeError, 'options.threads must be a non-negative integer'],
    [{ maxSessions: 5, factory: () => null }, RangeError, 'options.factory needs threads: 0'],
    [{ maxSessions: 5, threads: 0, factory: 'x' }, TypeError, 'options.factory must be a function'],
    [{ maxSessions: 5, module: 42 }, TypeError, 'options.module must be a path or a URL'],
    [{ maxSessions: 5, maxBodyBytes: 0 }, RangeError, 'options.maxBodyBytes must be a positive integer'],
    [{ maxSessions: 5, jsonResponse: 'yes' }, TypeError, 'options.jsonResponse must be a boolean'],
    [{ maxSessions: 5, cors: '' }, TypeError, 'options.cors must be an origin string'],
    [{ maxSessions: 5, clientKey: 'ip' }, TypeError, 'options.clientKey must be a function'],
    [{ maxSessions: 5, streamStallTimeoutMs: 0 }, RangeError, 'options.streamStallTimeoutMs must be a positive'],
    [{ maxSessions: 5, maxStreamBufferBytes: -1 }, RangeError, 'options.maxStreamBufferBytes must be a positive'],
    [{ maxSessions: 5, maxInFlightPerSession: '8' }, TypeError, 'options.maxInFlightPerSession must be a positive'],
    [{ maxSessions: 5, maxInFlightPerSession: 0 }, RangeError, 'options.maxInFlightPerSession must be a positive'],
    [
      { maxSessions: 5, maxInFlightPerSession: 2000 },
      RangeError,
      'options.maxInFlightPerSession must be at most options.maxPendingPerThread (1024)',
    ],
    [
      { maxSessions: 5, maxPendingPerThread: 16, maxInFlightPerSession: 17 },
      RangeError,
      'options.maxInFlightPerSession must be at most options.maxPendingPerThread (16)',
    ],
    [{ maxSessions: 5, stallTimeoutMs: '30s' }, TypeError, 'options.stallTimeoutMs must be a number of milliseconds'],
    [{ maxSessions: 5, stallTimeoutMs: -1 }, RangeError, 'options.stallTimeoutMs must be a non-negative'],
    [{ maxSessions: 5, stallTimeoutMs: 50 }, RangeError, 'options.stallTimeoutMs must be 0 (off) or at least 100 ms'],
    [{ maxSessions: 5, stallTimeoutMs: 2 ** 40 }, RangeError, 'options.stallTimeoutMs must be at most'],
    [
      { maxSessions: 5, resumability: { maxBytesPerSession: 0 } },
      RangeError,
      'options.resumability.maxBytesPerSession must be a positive integer',
    ],
    [
      { maxSessions: 5, resumability: { maxBytesPerSession: '1m' } },
      TypeError,
      'options.resumability.maxBytesPerSession must be a positive integer',
    ],
    [
      { maxSessions: 5, resumability: { maxTotalBytes: 1.5 } },
      RangeError,
      'options.resumability.maxTotalBytes must be a positive integer',
    ],
    [
      { maxSessions: 5, resumability: { maxBytesPerSession: 2048, maxTotalBytes: 1024 } },
      RangeError,
      'options.resumability.maxBytesPerSession must not exceed options.resumability.maxTotalBytes',
    ],
  ])('refuses broker options %j', (options, type, message) => {
    expect(() => resolveSessionBrokerOptions(options as never)).toThrow(type);
    expect(() => resolveSessionBrokerOptions(options as never)).toThrow(message);
  });

  it('defaults the stall timeout to 30 s, and accepts 0 (off)', () => {
    expect(resolveSessionBrokerOptions({ maxSessions: 1 }).stallTimeoutMs).toBe(30_000);
    expect(resolveSessionBrokerOptions({ maxSessions: 1, stallTimeoutMs: 0 }).stallTimeoutMs).toBe(0);
    expect(resolveSessionBrokerOptions({ maxSessions: 1, stallTimeoutMs: 100 }).stallTimeoutMs).toBe(100);
  });

  it('bounds the resumability stores in bytes by default, per session and in total', () => {
    expect(resolveSessionBrokerOptions({ maxSessions: 1 }).eventStore).toEqual({
      maxEventsPerStream: 32,
      maxStreams: 8,
      maxBytesPerSession: 1024 * 1024,
      maxTotalBytes: 64 * 1024 * 1024,
    });
    // A total below the per-session default lowers the per-session default with it.
    expect(
      resolveSessionBrokerOptions({ maxSessions: 1, resumability: { maxTotalBytes: 4096 } }).eventStore,
    ).toMatchObject({ maxBytesPerSession: 4096, maxTotalBytes: 4096 });
  });

  it.each([
    [{ port: 70_000 }, RangeError, 'options.port must be an integer from 0 to 65535'],
    [{ port: '80' }, TypeError, 'options.port must be a port number'],
    [{ path: 'mcp' }, TypeError, 'options.path must be a string starting with /'],
    [{ host: '' }, TypeError, 'options.host must be a non-empty string'],
    [{ log: 'stderr' }, TypeError, 'options.log must be a function or false'],
    [{ maxConnections: '100' }, TypeError, 'options.maxConnections must be a positive integer'],
    [{ maxConnections: 0 }, RangeError, 'options.maxConnections must be a positive integer'],
    [{ maxConnections: 2_000_000 }, RangeError, 'options.maxConnections must be at most 1000000'],
    [{ maxConnectionsPerAddress: 1.5 }, RangeError, 'options.maxConnectionsPerAddress must be a positive integer'],
    [
      { maxConnections: 10, maxConnectionsPerAddress: 11 },
      RangeError,
      'options.maxConnectionsPerAddress must be at most 10',
    ],
  ])('refuses serve options %j', (options, type, message) => {
    expect(() => resolveServeOptions({ maxSessions: 1, ...(options as object) })).toThrow(type);
    expect(() => resolveServeOptions({ maxSessions: 1, ...(options as object) })).toThrow(message);
  });

  it('bounds requests in flight per session by default, never above the per-thread queue', () => {
    expect(resolveSessionBrokerOptions({ maxSessions: 5 }).maxInFlightPerSession).toBe(64);
    expect(resolveSessionBrokerOptions({ maxSessions: 5, maxPendingPerThread: 16 }).maxInFlightPerSession).toBe(16);
    expect(resolveSessionBrokerOptions({ maxSessions: 5, maxInFlightPerSession: 8 }).maxInFlightPerSession).toBe(8);
  });

  it('bounds open connections by default, below the open-file limit when it is known', () => {
    expect(defaultMaxConnections(1024)).toBe(896);
    expect(defaultMaxConnections(1_048_576)).toBe(DEFAULT_MAX_CONNECTIONS);
    expect(defaultMaxConnections(undefined)).toBe(DEFAULT_MAX_CONNECTIONS);
    expect(defaultMaxConnections(100)).toBe(50);
    const resolved = resolveServeOptions({ maxSessions: 1 });
    expect(resolved.maxConnections).toBe(defaultMaxConnections(fileLimit()));
    expect(resolved.maxConnectionsPerAddress).toBeUndefined();
    expect(resolveServeOptions({ maxSessions: 1, maxConnections: 50 }).maxConnections).toBe(50);
  });

  it('rejects from serve() and SessionBroker.create() before starting anything', async () => {
    await expect(serve({ maxSessions: 0 })).rejects.toThrow(RangeError);
    await expect(SessionBroker.create({ maxSessions: 1, threads: 1.5 })).rejects.toThrow(RangeError);
  });

  it('parses durations and rates', () => {
    expect(parseDuration('500ms')).toBe(500);
    expect(parseDuration('2s')).toBe(2_000);
    expect(parseDuration('1m')).toBe(60_000);
    expect(parseDuration('4h')).toBe(14_400_000);
    expect(parseDuration('1.5s')).toBe(1_500);
    expect(parseDuration('250')).toBe(250);
    expect(() => parseDuration('-1s')).toThrow(RangeError);
    expect(() => parseDuration('1 week')).toThrow(RangeError);
    expect(parseRate('20/1m')).toEqual({ max: 20, windowMs: 60_000 });
    expect(() => parseRate('0/1m')).toThrow(RangeError);
    expect(() => parseRate('20')).toThrow(RangeError);
  });
});

describe('who accepts connections', () => {
  it('knows which Node versions and platforms spread one port over several listeners', () => {
    expect(reusePortAvailable('20.20.2', 'linux')).toBe(false);
    expect(reusePortAvailable('22.11.0', 'linux')).toBe(false);
    expect(reusePortAvailable('22.12.0', 'linux')).toBe(true);
    expect(reusePortAvailable('23.0.0', 'linux')).toBe(false);
    expect(reusePortAvailable('23.1.0', 'linux')).toBe(true);
    expect(reusePortAvailable('24.21.0', 'linux')).toBe(true);
    expect(reusePortAvailable('24.21.0', 'darwin')).toBe(false);
  });

  it('refuses a bad listeners value, and listeners: threads where an option needs one listener', () => {
    expect(() => resolveServeOptions({ maxSessions: 1, listeners: 'all' as 'auto' })).toThrow(
      "options.listeners must be 'auto', 'threads' or 'main'",
    );
    expect(() => resolveServeOptions({ maxSessions: 1, listeners: 'threads', maxConnectionsPerAddress: 4 })).toThrow(
      /not possible with maxConnectionsPerAddress/,
    );
    expect(() => resolveServeOptions({ maxSessions: 1, listeners: 'threads', clientKey: () => 'k' })).toThrow(
      /not possible with clientKey/,
    );
    expect(resolveServeOptions({ maxSessions: 1, listeners: 'main' }).threadListeners).toBe(false);
    expect(resolveServeOptions({ maxSessions: 1, threads: 0 }).threadListeners).toBe(false);
  });
});
