/**
 * When a pool may try create() again: full-jitter backoff after each failure, and a circuit
 * breaker that opens after `breakerThreshold` consecutive failures (acquire() then fails fast
 * instead of waiting out its timeout), lets one probe through after a jittered cooldown
 * (half-open), and closes on the first success. Pure state: the Pool emits the events and runs
 * the one timer.
 *
 *   closed ──(threshold failures)──▶ open ──(cooldown passes)──▶ half-open ──(probe ok)──▶ closed
 *                                     ▲                              │
 *                                     └────────(probe fails)─────────┘
 */

import { type BackoffPolicy, fullJitter } from '../util/backoff.js';
import type { BreakerState, PoolSettings } from './pool-options.js';

/** @internal */
export class CreateBreaker {
  state: BreakerState = 'closed';
  /** Consecutive create failures. */
  failures = 0;
  lastError: unknown = undefined;
  lastErrorAt = Number.NEGATIVE_INFINITY;
  /** No create before this (monotonic ms): the backoff after the last failure. */
  nextCreateAt = 0;
  /** While open: when the probe may go (monotonic ms). */
  openUntil = 0;

  private readonly policy: BackoffPolicy;

  constructor(private readonly settings: PoolSettings) {
    this.policy = { initialDelayMs: settings.retryInitialMs, multiplier: 2, maxDelayMs: settings.retryMaxMs };
  }

  /** A create succeeded. True when the breaker was open or half-open and closes now. */
  succeeded(): boolean {
    this.failures = 0;
    this.nextCreateAt = 0;
    if (this.state === 'closed') return false;
    this.state = 'closed';
    return true;
  }

  /** A create failed at `now`: counted, remembered (its error is the cause of later refusals). */
  failed(error: unknown, now: number): void {
    this.failures++;
    this.lastError = error;
    this.lastErrorAt = now;
  }

  /**
   * After a failure, while the pool is open: sets the backoff, and opens the breaker when the
   * threshold is reached or the half-open probe failed. Returns the cooldown when it opened.
   */
  backOff(now: number): number | undefined {
    const s = this.settings;
    // Full jitter spreads the retries of many pools instead of synchronising them (util/backoff.ts).
    this.nextCreateAt = now + fullJitter(this.policy, this.failures, s.random);
    if (this.state !== 'half-open' && !(s.breakerThreshold > 0 && this.failures >= s.breakerThreshold)) {
      return undefined;
    }
    // 100 % … 125 % of the cool-down, so breakers opened together do not probe together.
    const cooldown = s.breakerCooldownMs * (1 + 0.25 * s.random());
    this.state = 'open';
    this.openUntil = now + cooldown;
    return cooldown;
  }

  /** True (and half-open now) when the breaker is open and its cooldown has passed at `now`. */
  probeDue(now: number): boolean {
    if (this.state !== 'open' || now < this.openUntil) return false;
    this.state = 'half-open';
    return true;
  }
}
