/**
 * `longlink probe`, the plan: pure functions of what the probe connections have seen so far — the
 * ladder of idle targets, the bracket that closes in on the path's idle timeout, and the heartbeat
 * recommended for it. No sockets here (the connections are in probe.ts, the command in
 * probe-command.ts), so the tests drive it with made-up outcomes.
 */

import { resolveHeartbeat } from '../session/heartbeat.js';
import { duration } from './args.js';

// ---------------------------------------------------------------------------------------------
// The plan: pure functions of what has been seen so far

/** `n` idle targets from `minMs` to `maxMs`, each the same factor above the one before. */
export function ladder(minMs: number, maxMs: number, n: number): number[] {
  if (n <= 1 || maxMs <= minMs) return [Math.max(minMs, maxMs)];
  const r = (maxMs / minMs) ** (1 / (n - 1));
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(Math.round(minMs * r ** i));
  out[n - 1] = maxMs;
  return [...new Set(out)];
}

/** `k` targets evenly inside (lo, hi), excluding both ends. */
export function between(lo: number, hi: number, k: number): number[] {
  const out: number[] = [];
  for (let i = 1; i <= k; i++) out.push(Math.round(lo + ((hi - lo) * i) / (k + 1)));
  return [...new Set(out)].filter((t) => t > lo && t < hi);
}

export type Outcome =
  | { kind: 'survived'; idleMs: number }
  | { kind: 'closed'; idleMs: number; how: string }
  | { kind: 'cut'; idleMs: number; how: string }
  | { kind: 'spoke'; idleMs: number; what: string }
  | { kind: 'failed'; error: string }
  | { kind: 'cancelled' };

/**
 * What the results so far say about the path's idle timeout T. `lo`: the longest idle time a
 * connection survived (T > lo). `hi`: the shortest idle time after which a connection was found
 * dead (T ≤ hi). `closes`: idle times at which the path itself ended a connection (T exactly).
 */
export class Bracket {
  lo = 0;
  hi = Number.POSITIVE_INFINITY;
  readonly closes: number[] = [];
  readonly cuts: Array<{ idleMs: number; how: string }> = [];
  readonly survivors: number[] = [];
  /** The shortest silence after which the peer spoke (its own PING …), if it ever did. */
  peerSpoke: { idleMs: number; what: string } | undefined;
  /** Cuts below a survivor: a probe answer that came too late, or a path that is not monotonic. */
  inconsistent = 0;

  add(o: Outcome): void {
    switch (o.kind) {
      case 'survived':
        if (o.idleMs >= this.hi) this.inconsistent++;
        this.survivors.push(o.idleMs);
        this.lo = Math.max(this.lo, o.idleMs);
        break;
      case 'closed':
        this.closes.push(o.idleMs);
        this.hi = Math.min(this.hi, o.idleMs);
        break;
      case 'cut':
        if (o.idleMs <= this.lo) this.inconsistent++;
        this.cuts.push({ idleMs: o.idleMs, how: o.how });
        this.hi = Math.min(this.hi, o.idleMs);
        break;
      case 'spoke':
        if (this.peerSpoke === undefined || o.idleMs < this.peerSpoke.idleMs) {
          this.peerSpoke = { idleMs: o.idleMs, what: o.what };
        }
        break;
      default:
        break;
    }
  }

  /** Whether anything was learnt about the path (a survivor, a close, a cut, the peer speaking). */
  get informed(): boolean {
    return this.survivors.length + this.closes.length + this.cuts.length > 0 || this.peerSpoke !== undefined;
  }

  /** Whether (lo, hi] is narrow enough: `precision` of hi, or 50 ms. */
  narrow(precision: number): boolean {
    return this.closes.length > 0 || this.hi - this.lo <= Math.max(precision * this.hi, 50);
  }

  /** The finding so far. */
  estimate(): Finding {
    if (this.closes.length > 0) {
      const sorted = [...this.closes].sort((a, b) => a - b);
      return {
        how: 'closed',
        timeoutMs: sorted[Math.floor((sorted.length - 1) / 2)] as number,
        lowerMs: sorted[0] as number,
        upperMs: sorted[sorted.length - 1] as number,
      };
    }
    if (Number.isFinite(this.hi)) {
      const lower = Math.min(this.lo, this.hi);
      return {
        how: this.cuts.some((c) => c.how === 'reset') ? 'reset' : 'silent',
        timeoutMs: Math.round((lower + this.hi) / 2),
        lowerMs: lower,
        upperMs: this.hi,
      };
    }
    return {
      how: 'none',
      timeoutMs: undefined,
      lowerMs: this.lo,
      upperMs: undefined,
      ...(this.peerSpoke === undefined ? {} : { peerSpokeMs: this.peerSpoke.idleMs }),
    };
  }
}

export interface Finding {
  /** closed: the path ends idle flows itself; silent/reset: found dead on the next write; none: no cut seen. */
  how: 'closed' | 'silent' | 'reset' | 'none';
  /** The estimate (median close, or the bracket's middle); undefined when nothing was cut. */
  timeoutMs: number | undefined;
  /** Idle time known to be survivable (or the earliest close). */
  lowerMs: number;
  upperMs: number | undefined;
  /** The far end spoke on its own after this much silence (its heartbeat): nothing past it was measured. */
  peerSpokeMs?: number;
}

export interface Recommendation {
  /** For connect()/createServer(): the path's idle budget, with a 10 % margin below what was found. */
  idleBudgetMs: number | undefined;
  heartbeat: { intervalMs: number; timeoutMs: number } | 'standard';
  /** What the settings do, in words. */
  text: string;
  warning: string | undefined;
}

/** Heartbeat settings for a path whose idle time is safe up to `lowerMs` (undefined: no cut found). */
export function recommend(f: Finding): Recommendation {
  if (f.timeoutMs === undefined && f.peerSpokeMs !== undefined) {
    return {
      idleBudgetMs: undefined,
      heartbeat: 'standard',
      text:
        `the path was not measured past ${duration(f.peerSpokeMs)}, where the far end's own PING ends the silence: ` +
        'a heartbeat at least that frequent keeps the path open as far as this probe can tell',
      warning: undefined,
    };
  }
  if (f.timeoutMs === undefined) {
    return {
      idleBudgetMs: undefined,
      heartbeat: 'standard',
      text:
        `no cut up to ${duration(f.lowerMs)} of silence: heartbeat 'standard' (PING after 10 s of silence, a dead ` +
        'peer found within 30 s) is for finding dead peers; the path itself needs none that short',
      warning: undefined,
    };
  }
  const budget = Math.max(1, Math.floor((f.lowerMs * 0.9) / 100) * 100 || Math.floor(f.lowerMs * 0.9));
  const derived = resolveHeartbeat(undefined, budget);
  const timing = derived.timing as { intervalMs: number; timeoutMs: number };
  if (budget >= 15_000) {
    return {
      idleBudgetMs: budget,
      heartbeat: 'standard',
      text:
        `heartbeat 'standard' (PING after 10 s of silence) keeps this path open; idleBudgetMs: ${budget} makes ` +
        `longlink warn about a heartbeat slower than the path allows (derived alone: PING after ${duration(timing.intervalMs)}, ` +
        `dead after ${duration(timing.timeoutMs)})`,
      warning: undefined,
    };
  }
  return {
    idleBudgetMs: budget,
    heartbeat: timing,
    text:
      derived.warning === undefined
        ? `PING after ${duration(timing.intervalMs)} of silence keeps this path open; a dead peer is found within ` +
          `${duration(timing.timeoutMs)}`
        : `a PING at most once a second (the server's floor) cannot keep a path this short open: keep the ` +
          'connection busy otherwise, or lengthen the timeout on the path',
    warning:
      derived.warning ??
      (timing.intervalMs * 2 > budget
        ? `the path allows less than two heartbeat intervals of silence (the server's PING floor is 1 s): one late PING and the path drops the connection`
        : undefined),
  };
}
