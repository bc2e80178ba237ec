/**
 * What every store built here does alike: hand lifecycle events to their
 * listener outside its own bookkeeping, and wait at shutdown until its last
 * session is closed.
 */
import type { SessionEvent } from '../../shared/types.js';
import type { SessionEventListener } from '../store.js';

/** Listeners run outside the store's bookkeeping: a throwing listener cannot leave it half-done. */
export function emitLater(listener: SessionEventListener | undefined, event: SessionEvent): void {
  if (!listener) return;
  queueMicrotask(() => {
    try {
      listener(event);
    } catch (error) {
      console.error('[mcp-session-broker] session event listener failed:', error);
    }
  });
}

/** Waits at shutdown until a store holds no session, for at most a timeout. One entry per pending shutdown call. */
export class EmptyWait {
  readonly #waiters = new Set<() => void>();

  /** Resolves once `settled` is called with an empty store, or after `timeoutMs`. */
  wait(timeoutMs: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#waiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      timer.unref();
      this.#waiters.add(done);
    });
  }

  /** A session was freed; `empty`: none is left. */
  settled(empty: boolean): void {
    if (empty) for (const done of this.#waiters) done();
  }
}
