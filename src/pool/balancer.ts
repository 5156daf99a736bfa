/**
 * Choosing among several endpoints: power-of-two-choices least-loaded selection and outlier
 * ejection with jittered re-admission. Independent of what an endpoint holds, so the lease-mode
 * connection pool and the shared (request-multiplexing) mode can both use it.
 *
 * Power of two choices (Mitzenmacher, "The Power of Two Choices in Randomized Load Balancing",
 * 2001): pick two endpoints at random and take the less loaded one. Nearly as good as scanning
 * for the least loaded, without the herd that scanning causes when many clients see the same
 * "best" endpoint at once.
 *
 * Outlier ejection follows Envoy's consecutive-failure detector: after N consecutive failures an
 * endpoint gets no new work for base × (number of ejections) ms, jittered, capped; never more
 * than `maxEjectedPercent` of the endpoints at once, so a fleet-wide failure cannot eject
 * everything.
 */

import { finiteAtLeast } from '../util/check.js';
import { now as clock } from '../util/clock.js';

/** What the balancer needs to know about an endpoint. */
export interface BalancedTarget {
  /** A stable label, e.g. `host:port`. */
  readonly key: string;
  /** Work on the endpoint now (borrowed + waiting, or requests in flight). */
  load(): number;
  /** Work the endpoint can take (its max size); load is compared as a fraction of this. */
  capacity(): number;
  /** Ready-to-use resources (reported in stats). */
  idle(): number;
  /** Breaker state of the endpoint: 'open' endpoints are skipped, 'half-open' only as a last resort. */
  breaker(): 'closed' | 'open' | 'half-open';
  /** False once the endpoint is draining (removed, or it announced GOAWAY): no new work. */
  accepting(): boolean;
  /**
   * Optional: true while the endpoint should only be used when nothing healthy is left (it sent
   * GOAWAY and has not been reached again, or it lost its connections and has none back). Ranked
   * with the ejected endpoints: skipped while a healthy one exists, but a pool whose only server
   * is restarting waits for it instead of failing.
   */
  degraded?(): boolean;
}

/** Outlier detection options. */
export interface OutlierOptions {
  /** Consecutive failures that eject an endpoint. 0 = never eject. Default 5. */
  consecutiveFailures?: number;
  /** First ejection length; the n-th lasts n times this (±25 % jitter). Default 10 000 ms. */
  baseEjectionMs?: number;
  /** Longest ejection. Default 300 000 ms. */
  maxEjectionMs?: number;
  /** Most endpoints ejected at once, in percent (at least one when there are two or more). Default 50. */
  maxEjectedPercent?: number;
}

interface Health {
  failures: number;
  ejections: number;
  ejectedUntil: number;
  lastEjectedAt: number;
}

/** Why an endpoint was ejected. */
export interface EjectionInfo {
  key: string;
  consecutiveFailures: number;
  ejectedForMs: number;
}

export class Balancer<E extends BalancedTarget> {
  private readonly targets: E[] = [];
  private readonly scratch: E[] = [];
  private readonly health = new Map<E, Health>();
  private readonly threshold: number;
  private readonly baseMs: number;
  private readonly maxMs: number;
  private readonly maxPercent: number;

  constructor(
    options: OutlierOptions,
    private readonly random: () => number,
    private readonly onEject: (target: E, info: EjectionInfo) => void,
    private readonly onReadmit: (target: E) => void,
  ) {
    this.threshold = finiteAtLeast('outlier.consecutiveFailures', options.consecutiveFailures, 5);
    this.baseMs = finiteAtLeast('outlier.baseEjectionMs', options.baseEjectionMs, 10_000);
    this.maxMs = finiteAtLeast('outlier.maxEjectionMs', options.maxEjectionMs, 300_000);
    this.maxPercent = finiteAtLeast('outlier.maxEjectedPercent', options.maxEjectedPercent, 50);
  }

  get size(): number {
    return this.targets.length;
  }

  list(): readonly E[] {
    return this.targets;
  }

  add(target: E): void {
    this.targets.push(target);
    this.health.set(target, { failures: 0, ejections: 0, ejectedUntil: 0, lastEjectedAt: 0 });
  }

  remove(target: E): void {
    const i = this.targets.indexOf(target);
    if (i >= 0) this.targets.splice(i, 1);
    this.health.delete(target);
  }

  /** True while the endpoint is ejected; notices (and reports) re-admission lazily. */
  isEjected(target: E, now = clock()): boolean {
    const h = this.health.get(target);
    if (h === undefined || h.ejectedUntil === 0) return false;
    if (now < h.ejectedUntil) return true;
    h.ejectedUntil = 0;
    this.onReadmit(target);
    return false;
  }

  /** Milliseconds of ejection left (0 when not ejected). */
  ejectedForMs(target: E, now = clock()): number {
    const h = this.health.get(target);
    return h === undefined || h.ejectedUntil === 0 ? 0 : Math.max(0, h.ejectedUntil - now);
  }

  /**
   * Picks an endpoint: two random candidates among the healthy ones (accepting, breaker closed,
   * not ejected, not degraded), the less loaded wins. Falls back to ejected or degraded endpoints
   * with a closed breaker, then to half-open ones, before giving up (undefined).
   */
  pick(exclude?: ReadonlySet<E>): E | undefined {
    const now = clock();
    const c = this.scratch;
    c.length = 0;
    let bestTier = 3;
    // tier 0 = healthy, 1 = ejected or degraded (breaker closed), 2 = half-open breaker.
    for (const t of this.targets) {
      if (exclude?.has(t) || !t.accepting()) continue;
      const br = t.breaker();
      if (br === 'open') continue;
      const tier = br === 'half-open' ? 2 : this.isEjected(t, now) || t.degraded?.() === true ? 1 : 0;
      if (tier < bestTier) {
        bestTier = tier;
        c.length = 0;
      }
      if (tier === bestTier) c.push(t);
    }
    const n = c.length;
    if (n <= 1) {
      const only = c[0];
      c.length = 0;
      return only;
    }
    const i = Math.floor(this.random() * n);
    let j = Math.floor(this.random() * (n - 1));
    if (j >= i) j++;
    const winner = this.lessLoaded(c[i] as E, c[j] as E);
    c.length = 0;
    return winner;
  }

  private lessLoaded(a: E, b: E): E {
    const la = a.load() / Math.max(1, a.capacity());
    const lb = b.load() / Math.max(1, b.capacity());
    if (la !== lb) return la < lb ? a : b;
    // A tie goes to chance, not to the endpoint with more idle connections: that would starve a
    // freshly added or re-admitted endpoint for as long as the load stays light.
    return this.random() < 0.5 ? a : b;
  }

  recordSuccess(target: E): void {
    const h = this.health.get(target);
    if (h !== undefined) h.failures = 0;
  }

  /** Counts a failure; ejects the endpoint at the threshold if the ejection budget allows. */
  recordFailure(target: E): void {
    const h = this.health.get(target);
    if (h === undefined || this.threshold === 0) return;
    h.failures++;
    const now = clock();
    if (h.failures < this.threshold || this.isEjected(target, now)) return;
    const n = this.targets.length;
    if (n < 2) return;
    let ejected = 0;
    for (const t of this.targets) if (this.isEjected(t, now)) ejected++;
    const budget = Math.max(1, Math.floor((n * this.maxPercent) / 100));
    if (ejected >= budget) return;
    // An endpoint that stayed healthy for the longest ejection since its last one starts over.
    if (h.lastEjectedAt > 0 && now - h.lastEjectedAt > this.maxMs + this.baseMs) h.ejections = 0;
    h.ejections++;
    const ms = Math.min(this.maxMs, this.baseMs * h.ejections) * (0.75 + 0.5 * this.random());
    const failures = h.failures;
    h.failures = 0;
    h.ejectedUntil = now + ms;
    h.lastEjectedAt = now;
    this.onEject(target, { key: target.key, consecutiveFailures: failures, ejectedForMs: ms });
  }
}
