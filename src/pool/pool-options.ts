/**
 * The generic pool's public types (factory, options, stats, events, destroy reasons) and its
 * options resolved once into settings: every number checked, every default applied (docs/pool.md
 * has the same table).
 */

import { InvalidArgumentError } from '../errors.js';
import { finiteAtLeast, nonNegativeOrInfinity } from '../util/check.js';

/** How the pool makes, checks and ends its resources. */
export interface PoolFactory<T> {
  /**
   * Makes one resource. `signal` aborts when `createTimeoutMs` passes or the pool drains; a
   * resource that arrives after that is destroyed (reason `create-timeout`, or `drain`).
   */
  create(signal: AbortSignal): Promise<T>;
  /**
   * Ends a resource. `reason` says why (the `DestroyReason` values; release checks may add their
   * own); `graceful` is false when the resource is known or suspected broken.
   */
  destroy(resource: T, reason: string, detail: DestroyDetail): Promise<void> | void;
  /**
   * A round-trip check, run on borrow when the resource has been idle longer than
   * `validateAfterIdleMs`, and every `keepaliveIntervalMs` on idle resources. False (or a
   * throw/rejection) destroys the resource.
   */
  validate?(resource: T): Promise<boolean> | boolean;
  /**
   * A cheap synchronous check run on every borrow and release (e.g. "the socket has not seen
   * the peer's FIN"). False destroys the resource with reason `unusable`.
   */
  isUsable?(resource: T): boolean;
  /**
   * Run on release: return a reason (e.g. `'unread-frames'`) when the resource must not be
   * handed to the next borrower as clean; it is destroyed with that reason. Undefined = clean.
   */
  inspectRelease?(resource: T): string | undefined;
  /**
   * After `use(fn)` threw: whether the error means the resource is broken (destroy it) rather
   * than an application error (release it).
   */
  isBroken?(error: unknown, resource: T): boolean;
}

/** Extra facts about a destroy. */
export interface DestroyDetail {
  /** True for an orderly retirement (idle, lifetime, drain, clear); false for a broken resource. */
  graceful: boolean;
  /** For a reclaimed lease or a forced drain: the error the late borrower should see. */
  error: Error | undefined;
}

/** The reasons the pool itself destroys a resource for. Release checks may report others. */
export const DestroyReason = {
  /** Idle longer than `idleTimeoutMs` while the pool was above `min`. */
  IDLE_TIMEOUT: 'idle-timeout',
  /** Reached its (jittered) `maxLifetimeMs`; retired when idle or on release, never while borrowed. */
  MAX_LIFETIME: 'max-lifetime',
  /** `drain()`: returned or idle resources closed gracefully. */
  DRAIN: 'drain',
  /** `drain({ timeoutMs })` expired with the resource still borrowed. */
  DRAIN_TIMEOUT: 'drain-timeout',
  /** `clear()`. */
  CLEAR: 'clear',
  /** `isUsable` returned false (e.g. the peer closed it while idle). */
  UNUSABLE: 'unusable',
  /** `validate` on borrow returned false or threw. */
  VALIDATION_FAILED: 'validation-failed',
  /** `validate` on an idle resource (keepalive) returned false or threw. */
  KEEPALIVE_FAILED: 'keepalive-failed',
  /** The borrower called `lease.destroy()` without a reason of its own. */
  DESTROYED_BY_BORROWER: 'destroyed-by-borrower',
  /** `use(fn)`: fn threw an error the factory's `isBroken` classed as fatal. */
  BROKEN: 'broken',
  /** Held past `leakDetectionMs` with `reclaimLeaked` on. */
  LEAK_RECLAIMED: 'leak-reclaimed',
  /** create() settled after `createTimeoutMs` had given up on it. */
  CREATE_TIMEOUT: 'create-timeout',
} as const;
export type DestroyReason = (typeof DestroyReason)[keyof typeof DestroyReason];

/** Reasons that retire a resource in good order (`DestroyDetail.graceful`, unless an error came with it). */
export const GRACEFUL_REASONS: ReadonlySet<string> = new Set([
  DestroyReason.IDLE_TIMEOUT,
  DestroyReason.MAX_LIFETIME,
  DestroyReason.DRAIN,
  DestroyReason.CLEAR,
  DestroyReason.CREATE_TIMEOUT,
]);

/** Options of a {@link Pool}. Defaults in docs/pool.md. */
export interface PoolOptions {
  /** Resources kept open even when idle; refilled in the background. Default 0. */
  min?: number;
  /** Most resources open at once (idle + borrowed + being checked). Default 10. */
  max?: number;
  /** How long `acquire()` waits before AcquireTimeoutError. Finite by default: 10 000 ms. */
  acquireTimeoutMs?: number;
  /** Most acquirers waiting at once; one more is refused with PoolFullError. Default 10 000. */
  maxWaiters?: number;
  /** Most create() calls in flight at once. Default min(max, 4). */
  maxConcurrentCreates?: number;
  /** A create() slower than this is abandoned (its signal aborts) and counted a failure. Default 10 000 ms. */
  createTimeoutMs?: number;
  /** Skip `validate` on borrow for a resource used or validated within this many ms. Default 500. */
  validateAfterIdleMs?: number;
  /** Destroy resources idle this long while the pool is above `min`. 0 = never. Default 30 000 ms. */
  idleTimeoutMs?: number;
  /** Run `validate` on resources idle this long, again every interval. 0 = off (default). */
  keepaliveIntervalMs?: number;
  /** Retire a resource this long after its creation (on release if borrowed). 0 = never. Default 1 800 000 ms (30 min). */
  maxLifetimeMs?: number;
  /** Each resource's lifetime is shortened by a random fraction up to this, so they do not all retire at once. Default 0.1. */
  maxLifetimeJitter?: number;
  /** Emit `'leak'` for a lease held longer than this. 0 = off (default); when on, acquire captures a stack. */
  leakDetectionMs?: number;
  /** With leak detection: also take the resource back (destroy it, free the slot). Default false. */
  reclaimLeaked?: boolean;
  /** First create retry delay bound after a failure; full jitter: random(0, min(max, initial·2^n)). Default 50 ms. */
  createRetryInitialMs?: number;
  /** Upper bound of the create retry delay. Default 5 000 ms. */
  createRetryMaxMs?: number;
  /** Consecutive create failures that open the circuit breaker. 0 = no breaker. Default 5. */
  breakerThreshold?: number;
  /** How long the breaker stays open before one probe create is let through (+ up to 25 % jitter). Default 5 000 ms. */
  breakerCooldownMs?: number;
  /** Period of the housekeeping pass (eviction, keepalive, lifetime, leaks, refill). Default: derived, ≤ 1 000 ms. */
  housekeepingIntervalMs?: number;
  /** A label used in errors (e.g. the endpoint's `host:port`). */
  name?: string;
  /** Random numbers in [0, 1) for jitter. Default Math.random. */
  random?: () => number;
}

/** Options of one `acquire()`. */
export interface AcquireOptions {
  /** Overrides `acquireTimeoutMs`. */
  timeoutMs?: number;
  /** Higher is served first; equal priorities are FIFO. Default 0. */
  priority?: number;
  /** Abort the wait (rejects with AbortedError). */
  signal?: AbortSignal;
}

/** The breaker's state: closed (normal), open (failing fast), half-open (one probe in flight). */
export type BreakerState = 'closed' | 'open' | 'half-open';

/** A snapshot of the pool. */
export interface PoolStats {
  /** Resources open: idle + borrowed + validating. */
  size: number;
  idle: number;
  borrowed: number;
  validating: number;
  /** Acquirers waiting. */
  pending: number;
  /** create() calls in flight. */
  creating: number;
  state: 'open' | 'draining' | 'closed';
  paused: boolean;
  breaker: {
    state: BreakerState;
    consecutiveFailures: number;
    /** Milliseconds until the next probe when open. */
    retryInMs: number;
    lastError: unknown;
  };
  totals: {
    created: number;
    createErrors: number;
    destroyed: number;
    acquired: number;
    timeouts: number;
    leaks: number;
  };
}

/** What `'leak'` reports. */
export interface LeakInfo<T> {
  resource: T;
  heldMs: number;
  /** The stack of the `acquire()` call that took the lease. */
  stack: string;
  /** True when `reclaimLeaked` took the resource back. */
  reclaimed: boolean;
}

/** The events a Pool emits. */
export interface PoolEvents<T> {
  acquire: [resource: T];
  release: [resource: T];
  create: [resource: T];
  destroy: [resource: T, reason: string, detail: DestroyDetail];
  createError: [error: unknown, consecutiveFailures: number];
  leak: [info: LeakInfo<T>];
  breakerOpen: [info: { error: unknown; consecutiveFailures: number; retryInMs: number }];
  breakerHalfOpen: [];
  breakerClose: [];
  /** `drain()` finished: every resource destroyed. */
  drained: [];
}

/** @internal PoolOptions with every default applied and every value checked. */
export interface PoolSettings {
  readonly name: string | undefined;
  readonly min: number;
  readonly max: number;
  readonly acquireTimeoutMs: number;
  readonly maxWaiters: number;
  readonly maxConcurrentCreates: number;
  readonly createTimeoutMs: number;
  readonly validateAfterIdleMs: number;
  readonly idleTimeoutMs: number;
  readonly keepaliveIntervalMs: number;
  readonly maxLifetimeMs: number;
  readonly maxLifetimeJitter: number;
  readonly leakDetectionMs: number;
  readonly reclaimLeaked: boolean;
  readonly retryInitialMs: number;
  readonly retryMaxMs: number;
  readonly breakerThreshold: number;
  readonly breakerCooldownMs: number;
  readonly housekeepingMs: number;
  readonly random: () => number;
}

/** @internal Checks `options` and applies the defaults; InvalidArgumentError names the bad one. */
export function poolSettings(options: PoolOptions): PoolSettings {
  const max = finiteAtLeast('max', options.max, 10);
  const min = finiteAtLeast('min', options.min, 0);
  if (!Number.isInteger(max) || max < 1) throw new InvalidArgumentError('max must be an integer >= 1');
  if (!Number.isInteger(min) || min > max) {
    throw new InvalidArgumentError('min must be an integer between 0 and max');
  }
  const idleTimeoutMs = finiteAtLeast('idleTimeoutMs', options.idleTimeoutMs, 30_000);
  const keepaliveIntervalMs = finiteAtLeast('keepaliveIntervalMs', options.keepaliveIntervalMs, 0);
  const maxLifetimeMs = finiteAtLeast('maxLifetimeMs', options.maxLifetimeMs, 30 * 60_000);
  const maxLifetimeJitter = finiteAtLeast('maxLifetimeJitter', options.maxLifetimeJitter, 0.1);
  if (maxLifetimeJitter >= 1) throw new InvalidArgumentError('maxLifetimeJitter must be < 1');
  const leakDetectionMs = finiteAtLeast('leakDetectionMs', options.leakDetectionMs, 0);
  // Housekeeping often enough for the finest of its thresholds: ¼ of the idle, keepalive or
  // leak threshold, ⅛ of the lifetime; at most 1 s, at least 10 ms.
  let hk = 1000;
  for (const [ms, div] of [
    [idleTimeoutMs, 4],
    [keepaliveIntervalMs, 4],
    [leakDetectionMs, 4],
    [maxLifetimeMs, 8],
  ] as const) {
    if (ms > 0) hk = Math.min(hk, ms / div);
  }
  const housekeepingMs = finiteAtLeast(
    'housekeepingIntervalMs',
    options.housekeepingIntervalMs,
    Math.max(10, Math.round(hk)),
  );
  if (housekeepingMs < 1) throw new InvalidArgumentError('housekeepingIntervalMs must be >= 1');
  return {
    name: options.name,
    min,
    max,
    acquireTimeoutMs: nonNegativeOrInfinity('acquireTimeoutMs', options.acquireTimeoutMs, 10_000),
    maxWaiters: nonNegativeOrInfinity('maxWaiters', options.maxWaiters, 10_000),
    maxConcurrentCreates: Math.max(
      1,
      finiteAtLeast('maxConcurrentCreates', options.maxConcurrentCreates, Math.min(max, 4)),
    ),
    createTimeoutMs: nonNegativeOrInfinity('createTimeoutMs', options.createTimeoutMs, 10_000),
    validateAfterIdleMs: finiteAtLeast('validateAfterIdleMs', options.validateAfterIdleMs, 500),
    idleTimeoutMs,
    keepaliveIntervalMs,
    maxLifetimeMs,
    maxLifetimeJitter,
    leakDetectionMs,
    reclaimLeaked: options.reclaimLeaked === true,
    retryInitialMs: finiteAtLeast('createRetryInitialMs', options.createRetryInitialMs, 50),
    retryMaxMs: finiteAtLeast('createRetryMaxMs', options.createRetryMaxMs, 5_000),
    breakerThreshold: finiteAtLeast('breakerThreshold', options.breakerThreshold, 5),
    breakerCooldownMs: finiteAtLeast('breakerCooldownMs', options.breakerCooldownMs, 5_000),
    housekeepingMs,
    random: options.random ?? Math.random,
  };
}
