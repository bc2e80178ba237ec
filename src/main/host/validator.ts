/**
 * One JSON-schema validator per thread, for the servers a factory builds (runs
 * wherever the factory runs: a handler thread, or the main thread with
 * `threads: 0`). The SDK's `Server` builds a new Ajv for every server unless
 * given `jsonSchemaValidator`: about 18 KiB of heap and 150 us per session,
 * for a validator a server uses only to check the answers to its own
 * `elicitInput` requests.
 */
import { AjvJsonSchemaValidator } from '@modelcontextprotocol/sdk/validation/ajv';
import type {
  JsonSchemaType,
  JsonSchemaValidator,
  jsonSchemaValidator,
} from '@modelcontextprotocol/sdk/validation/index.js';

/**
 * Schemas compiled by one Ajv before the next schema starts a fresh one. Ajv
 * keeps every schema it ever compiled (its cache and its code scope), so one
 * Ajv shared by every session of a thread, given a new schema object per
 * `elicitInput`, would grow for as long as the thread runs.
 */
const COMPILED_PER_AJV = 256;

/**
 * The SDK's Ajv validator (same options, same results), shared: schemas are
 * compiled once per distinct JSON text, and at most `COMPILED_PER_AJV` of them
 * are held before the cache and the Ajv are replaced (the old Ajv then lives
 * only as long as the validators handed out from it).
 */
class ThreadJsonSchemaValidator implements jsonSchemaValidator {
  #ajv = new AjvJsonSchemaValidator();
  /** The validators compiled by the current Ajv, by the schema's JSON text. */
  #compiled = new Map<string, JsonSchemaValidator<unknown>>();

  getValidator<T>(schema: JsonSchemaType): JsonSchemaValidator<T> {
    const key = JSON.stringify(schema);
    let validator = this.#compiled.get(key);
    if (!validator) {
      if (this.#compiled.size >= COMPILED_PER_AJV) {
        this.#ajv = new AjvJsonSchemaValidator();
        this.#compiled = new Map();
      }
      validator = this.#ajv.getValidator<unknown>(schema);
      this.#compiled.set(key, validator);
    }
    return validator as JsonSchemaValidator<T>;
  }
}

// A module-level instance, and still one per thread: every worker thread loads
// its own copy of this module, so nothing here is shared across threads.
let threadValidator: ThreadJsonSchemaValidator | undefined;

/**
 * The JSON-schema validator of the calling thread, for the SDK's
 * `jsonSchemaValidator` server option: one per thread instead of a new Ajv per
 * session's server, which saves most of a bare server's heap and creation time.
 * Validation is the SDK's own (Ajv, same options); schemas are compiled once
 * per distinct JSON text and at most 256 are kept.
 *
 * ```ts
 * import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
 * import { sharedJsonSchemaValidator } from 'mcp-session-broker';
 *
 * export default function createServer(context) {
 *   return new McpServer({ name: 'my-server', version: '1.0.0' }, { jsonSchemaValidator: sharedJsonSchemaValidator() });
 * }
 * ```
 */
export function sharedJsonSchemaValidator(): jsonSchemaValidator {
  threadValidator ??= new ThreadJsonSchemaValidator();
  return threadValidator;
}
