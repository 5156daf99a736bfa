/**
 * One backoff for every retry in longlink (client reconnects, pool creates, breaker cool-downs,
 * outlier ejections): exponential growth with jitter, so that a thousand clients that lost the
 * same server do not come back in the same millisecond (AWS Architecture Blog, "Exponential
 * Backoff and Jitter", 2015; socket.io#2998 is what happens without it).
 */

/** An exponential backoff: the n-th delay is drawn below `initialDelayMs · multiplier^(n-1)`, capped. */
export interface BackoffPolicy {
  readonly initialDelayMs: number;
  readonly multiplier: number;
  readonly maxDelayMs: number;
}

/**
 * The ceiling of attempt `attempt` (1-based): `min(maxDelayMs, initialDelayMs · multiplier^(attempt−1))`.
 */
export function backoffCeiling(policy: BackoffPolicy, attempt: number): number {
  const n = Math.max(1, attempt);
  // multiplier^(n−1) overflows to Infinity after enough failures: the ceiling is then the max
  // (and 0 stays 0, where 0 · Infinity would be NaN).
  if (policy.initialDelayMs === 0) return 0;
  return Math.min(policy.maxDelayMs, policy.initialDelayMs * policy.multiplier ** (n - 1));
}

/**
 * Full jitter: a delay drawn uniformly in [0, ceiling) — the spread that ends retry storms
 * soonest. `random` returns [0, 1) (injectable for tests).
 */
export function fullJitter(
  policy: BackoffPolicy,
  attempt: number,
  random: () => number = Math.random,
): number {
  return random() * backoffCeiling(policy, attempt);
}

/**
 * `base` stretched by up to ±`spread` (0.25: 75 % … 125 %): a cool-down that many holders start
 * together ends at different times.
 */
export function spreadAround(base: number, spread: number, random: () => number = Math.random): number {
  return base * (1 - spread + 2 * spread * random());
}
