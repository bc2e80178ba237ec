/**
 * Error lines for the operator, rate-limited: at most one line per kind of
 * fault per interval (with the count of the ones not printed), never a stack
 * per request. Runs on the listener thread. The table of kinds is bounded.
 */

/** Kinds remembered at once; beyond, the least recently printed is forgotten. */
const MAX_KINDS = 64;

export class ErrorLog {
  readonly #intervalMs: number;
  readonly #write: (line: string) => void;
  readonly #now: () => number;
  /** Per kind: when it was last printed, and how many were suppressed since. */
  readonly #kinds = new Map<string, { printedAt: number; suppressed: number }>();

  constructor(options: { intervalMs?: number; write?: (line: string) => void; now?: () => number } = {}) {
    this.#intervalMs = options.intervalMs ?? 60_000;
    this.#write = options.write ?? ((line) => console.error(line));
    this.#now = options.now ?? Date.now;
  }

  /** Reports a fault of `kind`; prints it unless one of that kind was printed within the interval. */
  report(kind: string, error: unknown): void {
    const now = this.#now();
    const seen = this.#kinds.get(kind);
    if (seen && now - seen.printedAt < this.#intervalMs) {
      seen.suppressed++;
      return;
    }
    const more = seen && seen.suppressed > 0 ? ` (${seen.suppressed} more since the last line)` : '';
    this.#kinds.delete(kind);
    this.#kinds.set(kind, { printedAt: now, suppressed: 0 });
    if (this.#kinds.size > MAX_KINDS) {
      const oldest = this.#kinds.keys().next().value;
      if (oldest !== undefined) this.#kinds.delete(oldest);
    }
    this.#write(`[mcp-session-broker] ${kind}: ${describe(error)}${more}`);
  }
}

function describe(error: unknown): string {
  if (error instanceof Error) {
    const code = (error as NodeJS.ErrnoException).code;
    return code ? `${error.message} (${code})` : error.message;
  }
  return String(error);
}
