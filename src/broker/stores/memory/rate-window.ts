/**
 * An exact sliding window over session creations: the times of the last `max`
 * creations in a ring (in the shared buffer, so `stats()` and tools can read
 * it). A creation at time t counts while `now - t < windowMs`. A decision is
 * O(1): the window is full only when the ring is full and its oldest entry is
 * still inside the window. Only the broker thread touches it.
 */
export type RateCheck = { readonly ok: true } | { readonly ok: false; readonly retryAfterMs: number };

export class RateWindow {
  readonly max: number;
  readonly windowMs: number;
  readonly #ring: Float64Array;
  /** Token (sequence number) of each ring entry, for refunds. Broker-local. */
  readonly #tokens: Float64Array;
  #head = 0;
  #count = 0;
  #nextToken = 1;

  constructor(ring: Float64Array, windowMs: number) {
    this.max = ring.length;
    this.windowMs = windowMs;
    this.#ring = ring;
    this.#tokens = new Float64Array(ring.length);
  }

  /** Would a creation at `now` fit? Spends nothing. */
  check(now: number): RateCheck {
    if (this.#count < this.max) return { ok: true };
    const oldest = this.#ring[this.#head] ?? 0;
    const age = now - oldest;
    if (age >= this.windowMs) return { ok: true };
    return { ok: false, retryAfterMs: this.windowMs - age };
  }

  /** Records a creation at `now` (call only after `check` said ok); returns a token for `refund`. */
  spend(now: number): number {
    if (this.#count === this.max) {
      // The oldest entry has left the window (check() said so): drop it.
      this.#head = (this.#head + 1) % this.max;
      this.#count--;
    }
    const pos = (this.#head + this.#count) % this.max;
    const token = this.#nextToken++;
    this.#ring[pos] = now;
    this.#tokens[pos] = token;
    this.#count++;
    return token;
  }

  /**
   * Takes back a creation that did not happen (the session failed before it
   * existed). O(n) in the ring size, and rare. A token already pushed out of
   * the ring is a no-op: it no longer counts anyway.
   */
  refund(token: number): void {
    let k = -1;
    for (let i = 0; i < this.#count; i++) {
      if (this.#tokens[(this.#head + i) % this.max] === token) {
        k = i;
        break;
      }
    }
    if (k < 0) return;
    for (let i = k; i < this.#count - 1; i++) {
      const to = (this.#head + i) % this.max;
      const from = (this.#head + i + 1) % this.max;
      this.#ring[to] = this.#ring[from] ?? 0;
      this.#tokens[to] = this.#tokens[from] ?? 0;
    }
    this.#count--;
  }

  /**
   * Moves a creation to `now` (an admission that waited for a slot is created
   * later than it was decided). Keeps every window at most `max`: the entry
   * leaves its old place and is appended as the newest. Returns the new token.
   */
  restamp(token: number, now: number): number {
    const before = this.#count;
    this.refund(token);
    // A token no longer in the ring was pushed out by newer creations: its
    // creation is outside every window that matters; record the real one only if it fits.
    if (this.#count === before && !this.check(now).ok) return 0;
    return this.spend(now);
  }

  /** Creations inside the window at `now`. */
  countAt(now: number): number {
    let n = 0;
    for (let i = 0; i < this.#count; i++) {
      if (now - (this.#ring[(this.#head + i) % this.max] ?? 0) < this.windowMs) n++;
    }
    return n;
  }
}
