/**
 * Heartbeat settings: presets from the sources, and the path's idle budget.
 *
 * The sources ask for a dead peer to be noticed within 30–40 s normally and 6–9 s where it
 * matters. The peer is declared dead `timeoutMs` after the last byte read, so the presets' bound
 * is their timeout (plus timer slack): standard 30 s, strict 6 s.
 */

import { InvalidArgumentError } from '../errors.js';

/** Heartbeat timing: PING after `intervalMs` without reading; dead after `timeoutMs` without reading. */
export interface HeartbeatTiming {
  intervalMs: number;
  timeoutMs: number;
}

/** A heartbeat setting: explicit timing, a preset, or false (answer PINGs, send none, never time out). */
export type HeartbeatSetting = HeartbeatTiming | 'standard' | 'strict' | false;

export const HEARTBEAT_PRESETS: Readonly<Record<'standard' | 'strict', HeartbeatTiming>> = {
  standard: { intervalMs: 10_000, timeoutMs: 30_000 },
  strict: { intervalMs: 2_000, timeoutMs: 6_000 },
};

/** The result of {@link resolveHeartbeat}. */
export interface ResolvedHeartbeat {
  timing: HeartbeatTiming | undefined;
  /** Set when the settings contradict the path's idle budget. */
  warning: string | undefined;
}

/**
 * Turns a setting (and optionally the path's idle budget: the idle time after which a middlebox
 * on the path drops a flow — nginx's proxy_timeout 60 s, AWS NLB's 350 s) into timing.
 *
 * With a budget and no explicit setting, the interval is a third of the budget (at least 1 s), so
 * an idle connection carries a PING well before the middlebox gives up, and the timeout is three
 * intervals. An explicit interval at or above the budget is kept but reported as a warning: the
 * middlebox would drop the idle connection between two heartbeats.
 */
export function resolveHeartbeat(
  setting: HeartbeatSetting | undefined,
  idleBudgetMs?: number,
): ResolvedHeartbeat {
  if (idleBudgetMs !== undefined && !(Number.isFinite(idleBudgetMs) && idleBudgetMs > 0)) {
    throw new InvalidArgumentError(`idleBudgetMs must be a positive number, got ${String(idleBudgetMs)}`);
  }
  if (setting === false) {
    return {
      timing: undefined,
      warning:
        idleBudgetMs === undefined
          ? undefined
          : `heartbeat is off but the path drops idle connections after ${idleBudgetMs} ms`,
    };
  }
  let timing: HeartbeatTiming;
  if (setting === undefined && idleBudgetMs !== undefined) {
    const intervalMs = Math.max(1000, Math.floor(idleBudgetMs / 3));
    timing = { intervalMs, timeoutMs: intervalMs * 3 };
  } else if (setting === undefined || setting === 'standard' || setting === 'strict') {
    timing = { ...HEARTBEAT_PRESETS[setting ?? 'standard'] };
  } else {
    if (typeof setting !== 'object' || setting === null) {
      throw new InvalidArgumentError(
        "heartbeat must be { intervalMs, timeoutMs }, 'standard', 'strict' or false",
      );
    }
    const { intervalMs, timeoutMs } = setting;
    if (
      !(Number.isFinite(intervalMs) && intervalMs > 0 && Number.isFinite(timeoutMs) && timeoutMs > intervalMs)
    ) {
      throw new InvalidArgumentError(
        `heartbeat needs 0 < intervalMs < timeoutMs, got ${String(intervalMs)} / ${String(timeoutMs)}`,
      );
    }
    timing = { intervalMs, timeoutMs };
  }
  const warning =
    idleBudgetMs !== undefined && timing.intervalMs >= idleBudgetMs
      ? `heartbeat interval ${timing.intervalMs} ms is not below the path's idle budget ${idleBudgetMs} ms: the path will drop idle connections`
      : undefined;
  return { timing, warning };
}
