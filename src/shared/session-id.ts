/**
 * Session ids: 48 lowercase hex characters, `SSSSSSSS GGGGGGGG RRRR...` with
 * no spaces: the slot index (32 bits), the slot's generation (32 bits) and 128
 * random bits from a CSPRNG. The slot gives O(1) lookup without a hash table,
 * the generation makes a reused slot refuse an old id, and the random bits are
 * the secret a client must present.
 */

export const SESSION_ID_LENGTH = 48;

export interface ParsedSessionId {
  readonly slot: number;
  readonly gen: number;
  /** The four random words, as signed 32-bit integers (as stored in the table). */
  readonly rand: readonly [number, number, number, number];
}

function hex8(n: number): string {
  return (n >>> 0).toString(16).padStart(8, '0');
}

export function formatSessionId(slot: number, gen: number, rand: ArrayLike<number>): string {
  return hex8(slot) + hex8(gen) + hex8(rand[0] ?? 0) + hex8(rand[1] ?? 0) + hex8(rand[2] ?? 0) + hex8(rand[3] ?? 0);
}

/** Parses an id, or returns undefined for anything that is not exactly our format (lowercase hex only). */
export function parseSessionId(id: string): ParsedSessionId | undefined {
  if (id.length !== SESSION_ID_LENGTH) return undefined;
  // Decoded by hand: this runs on every request, and a regex plus slices costs more than the rest of the lookup.
  const words = [0, 0, 0, 0, 0, 0];
  for (let w = 0; w < 6; w++) {
    let value = 0;
    for (let i = w * 8; i < w * 8 + 8; i++) {
      const c = id.charCodeAt(i);
      const digit = c >= 48 && c <= 57 ? c - 48 : c >= 97 && c <= 102 ? c - 87 : -1;
      if (digit < 0) return undefined;
      value = (value << 4) | digit;
    }
    words[w] = value;
  }
  return {
    slot: (words[0] ?? 0) >>> 0,
    gen: (words[1] ?? 0) >>> 0,
    rand: [words[2] ?? 0, words[3] ?? 0, words[4] ?? 0, words[5] ?? 0],
  };
}
