import { describe, expect, it } from 'vitest';
import { formatSessionId, parseSessionId, SESSION_ID_LENGTH } from '../dist/shared/session-id.js';

const RAND = [0x00000001, -0x21524111, 0x7fffffff, -0x80000000] as const;
const VALID = formatSessionId(5, 0x1234abcd, RAND);

describe('session ids', () => {
  it('are 48 lowercase hex characters: slot, generation, then the four random words', () => {
    expect(VALID).toHaveLength(SESSION_ID_LENGTH);
    expect(VALID).toMatch(/^[0-9a-f]{48}$/);
    expect(VALID).toBe(`00000005` + `1234abcd` + `00000001` + `deadbeef` + `7fffffff` + `80000000`);
  });

  it('parse back to the slot, the generation and the random words as the table stores them', () => {
    expect(parseSessionId(VALID)).toEqual({ slot: 5, gen: 0x1234abcd, rand: [...RAND] });
  });

  it('parse the largest slot and generation as unsigned numbers', () => {
    const parsed = parseSessionId(formatSessionId(0xffffffff, 0xffffffff, [0, 0, 0, 0]));
    expect(parsed?.slot).toBe(0xffffffff);
    expect(parsed?.gen).toBe(0xffffffff);
  });

  it('round-trip for random values', () => {
    for (let i = 0; i < 200; i++) {
      const slot = Math.floor(Math.random() * 2 ** 32);
      const gen = Math.floor(Math.random() * 2 ** 32);
      const rand = Array.from({ length: 4 }, () => Math.floor(Math.random() * 2 ** 32) | 0);
      expect(parseSessionId(formatSessionId(slot, gen, rand))).toEqual({ slot, gen, rand });
    }
  });
});

describe('a malformed session id', () => {
  it.each([
    ['empty', ''],
    ['one character short', VALID.slice(0, -1)],
    ['one character long', `${VALID}0`],
    ['twice as long', VALID + VALID],
    ['a UUID', '123e4567-e89b-12d3-a456-426614174000'],
  ])('is refused when it is %s', (_, id) => {
    expect(parseSessionId(id)).toBeUndefined();
  });

  it.each([
    ['an uppercase hex digit', 'A'],
    ['a letter past f', 'g'],
    ['a dash', '-'],
    ['a space', ' '],
    ['a character just below 0', '/'],
    ['a character just past 9', ':'],
    ['a character just below a', '`'],
    ['a non-ASCII digit', '\u0660'],
  ])('is refused when any position holds %s', (_, bad) => {
    for (let i = 0; i < SESSION_ID_LENGTH; i++) {
      const id = VALID.slice(0, i) + bad + VALID.slice(i + 1);
      expect(parseSessionId(id), `position ${i}`).toBeUndefined();
    }
  });

  it('is refused with a surrogate pair in place of two characters', () => {
    expect(parseSessionId(`${VALID.slice(0, 46)}\u{1F600}`)).toBeUndefined();
  });
});
