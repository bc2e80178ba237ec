/**
 * sharedJsonSchemaValidator(): one validator for every server a thread builds,
 * validating as the SDK's own does, compiling each distinct schema once and
 * keeping a bounded number of them.
 */
import { AjvJsonSchemaValidator } from '@modelcontextprotocol/sdk/validation/ajv';
import type { JsonSchemaType } from '@modelcontextprotocol/sdk/validation/index.js';
import { describe, expect, it } from 'vitest';
import { sharedJsonSchemaValidator } from '../dist/main/index.js';

const person = (): JsonSchemaType => ({
  type: 'object',
  properties: {
    name: { type: 'string' },
    email: { type: 'string', format: 'email' },
    age: { type: 'integer', minimum: 0 },
  },
  required: ['name'],
});

describe('sharedJsonSchemaValidator', () => {
  it('is one validator per thread', () => {
    expect(sharedJsonSchemaValidator()).toBe(sharedJsonSchemaValidator());
  });

  it("validates as the SDK's own validator does, formats included", () => {
    const ours = sharedJsonSchemaValidator().getValidator(person());
    const sdk = new AjvJsonSchemaValidator().getValidator(person());
    for (const input of [
      { name: 'Ada', email: 'ada@example.com', age: 36 },
      { name: 'Ada', email: 'not an address' },
      { email: 'ada@example.com' },
      { name: 'Ada', age: -1 },
      'Ada',
    ]) {
      expect(ours(input)).toEqual(sdk(input));
    }
    expect(ours({ name: 'Ada' }).valid).toBe(true);
    expect(ours({ name: 'Ada', age: -1 }).valid).toBe(false);
  });

  it('compiles a schema once per distinct JSON text, whatever the object', () => {
    const validator = sharedJsonSchemaValidator();
    const first = validator.getValidator(person());
    expect(validator.getValidator(person())).toBe(first);
    expect(validator.getValidator({ ...person(), required: ['age'] })).not.toBe(first);
  });

  it('keeps validating correctly past the number of schemas it keeps', () => {
    const validator = sharedJsonSchemaValidator();
    const atMost = (n: number): JsonSchemaType => ({ type: 'integer', maximum: n });
    const first = validator.getValidator(atMost(0));
    for (let n = 1; n <= 600; n++) {
      const check = validator.getValidator(atMost(n));
      expect(check(n).valid).toBe(true);
      expect(check(n + 1).valid).toBe(false);
    }
    // Compiled before the oldest were let go: still correct, compiled again when asked anew.
    expect(first(0).valid).toBe(true);
    expect(first(1).valid).toBe(false);
    const again = validator.getValidator(atMost(0));
    expect(again).not.toBe(first);
    expect(again(1).valid).toBe(false);
  });
});
