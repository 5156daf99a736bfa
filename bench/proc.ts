/**
 * CPU accounting from Linux /proc, shared by the benchmark drivers (elsewhere these read as
 * undefined), and the drivers' common way to run `main`.
 */

import { readFileSync } from 'node:fs';

const TICK_MS = 10; // USER_HZ is 100 on every Linux this runs on.

/**
 * Busy CPU, ms: user + nice + system + irq + softirq + steal from /proc/stat, of all cores or, with
 * `cpu`, of that core only (a run pinned to one core cannot be slowed by work on the others).
 */
export function machineBusyMs(cpu?: number): number | undefined {
  try {
    const text = readFileSync('/proc/stat', 'utf8');
    const tag = cpu === undefined ? 'cpu ' : `cpu${cpu} `;
    const at = text.indexOf(tag);
    if (at < 0) return undefined;
    const v = text.slice(at, text.indexOf('\n', at)).trim().split(/\s+/).slice(1).map(Number);
    return ((v[0] ?? 0) + (v[1] ?? 0) + (v[2] ?? 0) + (v[5] ?? 0) + (v[6] ?? 0) + (v[7] ?? 0)) * TICK_MS;
  } catch {
    return undefined;
  }
}

/** utime + stime of a live process, ms. */
export function processCpuMs(pid: number | undefined): number | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) * TICK_MS;
  } catch {
    return undefined;
  }
}

/** Runs a driver's main: exit 0 when it resolves, print the error and exit 1 when it throws. */
export function runMain(main: () => Promise<void>): void {
  main().then(
    () => process.exit(0),
    (err) => {
      process.stderr.write(`${String(err?.stack ?? err)}\n`);
      process.exit(1);
    },
  );
}
