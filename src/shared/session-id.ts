/**
 * Session ids: 48 lowercase hex characters, `SSSSSSSS GGGGGGGG RRRR...` with
 * no spaces: the slot index (32 bits), the slot's generation (32 bits) and 128
 * random bits from a CSPRNG. The slot gives O(1) lookup without a hash table,
 * the generation makes a reused slot refuse an old id, and the random bits are
 * the secret a client must present.
 */

export const SESSION_ID_LENGTH = 48;
const ID_PATTERN = /^[0-9a-f]{48}$/;

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

/** Parses an id, or returns undefined for anything that is not exactly our format. */
export function parseSessionId(id: string): ParsedSessionId | undefined {
  if (id.length !== SESSION_ID_LENGTH || !ID_PATTERN.test(id)) return undefined;
  const word = (i: number) => Number.parseInt(id.slice(i * 8, i * 8 + 8), 16);
  return {
    slot: word(0),
    gen: word(1),
    rand: [word(2) | 0, word(3) | 0, word(4) | 0, word(5) | 0],
  };
}
