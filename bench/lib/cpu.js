/**
 * CPU accounting from /proc (Linux): how much of the machine the processes of
 * a measurement used, and how much everything else used meanwhile ("other
 * load", in cores). The machine is shared: a run during which other work took
 * a core says so in its results. Elsewhere than Linux every figure is null.
 */
import { readFileSync } from 'node:fs';

const TICKS_PER_S = 100; // USER_HZ on Linux

function machineBusyTicks() {
  const [cpu] = readFileSync('/proc/stat', 'utf8').split('\n', 1);
  const [, user, nice, system, , , irq, softirq, steal] = cpu.trim().split(/\s+/).map(Number);
  return user + nice + system + irq + softirq + steal;
}

/** utime + stime of a whole process (all its threads), in ticks; 0 once it is gone. */
function processTicks(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(fields[11]) + Number(fields[12]);
  } catch {
    return 0;
  }
}

export function cpuSnapshot(pids) {
  try {
    return {
      at: performance.now(),
      busy: machineBusyTicks(),
      ours: [process.pid, ...pids].reduce((sum, pid) => sum + processTicks(pid), 0),
    };
  } catch {
    return null;
  }
}

/** Cores used by everything but `pids` (and this process) between two snapshots. */
export function otherCores(before, after) {
  if (!before || !after) return null;
  const seconds = (after.at - before.at) / 1000;
  if (seconds <= 0) return null;
  const other = after.busy - before.busy - (after.ours - before.ours);
  return Math.max(0, other / TICKS_PER_S / seconds);
}

/**
 * Waits (in 1 s steps) until other load is below `threshold` cores, for at
 * most `maxWaitMs`, drawing on a shared `budget` ({ ms }) so a busy machine
 * cannot stretch a benchmark without bound. Resolves with the last reading.
 */
export async function waitForQuiet(pids, { threshold = 0.5, maxWaitMs = 5000, budget } = {}) {
  let waited = 0;
  for (;;) {
    const a = cpuSnapshot(pids);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const other = otherCores(a, cpuSnapshot(pids));
    waited += 1000;
    if (budget) budget.ms -= 1000;
    if (other === null || other < threshold || waited >= maxWaitMs || (budget && budget.ms <= 0)) return other;
  }
}
