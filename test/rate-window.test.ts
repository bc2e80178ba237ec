/**
 * The sliding-window arithmetic on its own, on plain numbers as time.
 */
import { describe, expect, it } from 'vitest';
import { RateWindow } from '../dist/broker/stores/memory/rate-window.js';

function windowOf(max: number, windowMs: number) {
  return new RateWindow(new Float64Array(max), windowMs);
}

describe('the sliding rate window', () => {
  it('counts a creation while now - t < windowMs and frees it exactly at windowMs', () => {
    const w = windowOf(3, 1_000);
    w.spend(0);
    w.spend(10);
    w.spend(20);
    expect(w.check(999)).toEqual({ ok: false, retryAfterMs: 1 });
    expect(w.check(1_000)).toEqual({ ok: true });
    w.spend(1_000);
    expect(w.check(1_009)).toEqual({ ok: false, retryAfterMs: 1 });
    expect(w.check(1_010)).toEqual({ ok: true });
  });

  it('never allows more than max creations in any window, whatever the spacing', () => {
    const w = windowOf(5, 100);
    const times: number[] = [];
    for (let now = 0; now < 2_000; now += 7) {
      if (w.check(now).ok) {
        w.spend(now);
        times.push(now);
      }
    }
    for (const start of times) {
      expect(times.filter((t) => t >= start && t < start + 100).length).toBeLessThanOrEqual(5);
    }
    // and it is not stingy: 5 per 100 ms over 2 s, give or take the step
    expect(times.length).toBeGreaterThanOrEqual(90);
  });

  it('takes back a refunded creation from anywhere in the window', () => {
    const w = windowOf(3, 1_000);
    w.spend(0);
    const middle = w.spend(100);
    w.spend(200);
    expect(w.check(300).ok).toBe(false);
    w.refund(middle);
    expect(w.countAt(300)).toBe(2);
    expect(w.check(300).ok).toBe(true);
    w.spend(300);
    // The window now holds 0, 200, 300: the oldest leaves at 1000.
    expect(w.check(999)).toEqual({ ok: false, retryAfterMs: 1 });
    // Refunding a token that already left the ring is a no-op.
    w.refund(middle);
    expect(w.countAt(999)).toBe(3);
  });
});
