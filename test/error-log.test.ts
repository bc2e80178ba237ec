/**
 * The operator's error lines are rate-limited per kind of fault, with the count
 * of the lines not printed; the table of kinds is bounded.
 */
import { describe, expect, it } from 'vitest';
import { ErrorLog } from '../dist/main/front/log.js';

describe('the error log', () => {
  it('prints one line per kind per interval, then says how many it held back', () => {
    let now = 0;
    const lines: string[] = [];
    const log = new ErrorLog({ intervalMs: 1000, write: (line) => lines.push(line), now: () => now });
    const reset = Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' });
    for (let i = 0; i < 500; i++) log.report('request failed', reset);
    log.report('pool error', new Error('boom'));
    expect(lines).toEqual([
      '[mcp-session-broker] request failed: socket hang up (ECONNRESET)',
      '[mcp-session-broker] pool error: boom',
    ]);
    now = 999;
    log.report('request failed', reset);
    expect(lines).toHaveLength(2);
    now = 1000;
    log.report('request failed', reset);
    expect(lines[2]).toBe(
      '[mcp-session-broker] request failed: socket hang up (ECONNRESET) (500 more since the last line)',
    );
  });

  it('forgets the least recently printed kind beyond 64 kinds', () => {
    const lines: string[] = [];
    const log = new ErrorLog({ intervalMs: 60_000, write: (line) => lines.push(line), now: () => 0 });
    for (let i = 0; i <= 64; i++) log.report(`kind ${i}`, 'x');
    // kind 0 was forgotten: it prints again; kind 64, the newest, is still remembered.
    log.report('kind 0', 'x');
    log.report('kind 64', 'x');
    expect(lines.filter((l) => l.includes('kind 0:'))).toHaveLength(2);
    expect(lines.filter((l) => l.includes('kind 64:'))).toHaveLength(1);
  });
});
