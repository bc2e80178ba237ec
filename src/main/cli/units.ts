/**
 * Parsing of human units used by the CLI: durations (`500ms`, `2s`, `1m`, `4h`, `1d`) and rates (`20/1m`).
 */
const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Parses a duration to milliseconds. A bare number means milliseconds. Throws RangeError. */
export function parseDuration(text: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/.exec(text.trim());
  if (!match) throw new RangeError(`invalid duration "${text}" (use e.g. 500ms, 2s, 1m, 4h)`);
  const ms = Number(match[1]) * (UNITS[match[2] ?? 'ms'] ?? 1);
  if (!Number.isFinite(ms)) throw new RangeError(`invalid duration "${text}"`);
  return Math.round(ms);
}

/** Parses `N/DURATION` (e.g. `20/1m`, `100/10s`) to `{ max, windowMs }`. Throws RangeError. */
export function parseRate(text: string): { max: number; windowMs: number } {
  const match = /^(\d+)\/(.+)$/.exec(text.trim());
  if (!match) throw new RangeError(`invalid rate "${text}" (use N/DURATION, e.g. 20/1m)`);
  const max = Number(match[1]);
  const windowMs = parseDuration(match[2] ?? '');
  if (max < 1 || windowMs < 1) throw new RangeError(`invalid rate "${text}": both parts must be positive`);
  return { max, windowMs };
}

/** Parses a byte size: a number with an optional k/m/g (binary) suffix. Throws RangeError. */
export function parseBytes(text: string): number {
  const match = /^(\d+)([kmg]i?b?)?$/i.exec(text.trim());
  if (!match) throw new RangeError(`invalid size "${text}" (use e.g. 4194304, 512k, 4m)`);
  const factor = { k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[(match[2] ?? '').charAt(0).toLowerCase()] ?? 1;
  return Number(match[1]) * factor;
}
