/**
 * Pool<T>: the generic pool core. It knows nothing of sockets; a factory creates, checks and
 * destroys its resources. The connection pool (connection-pool.ts) is one factory over it.
 *
 * What it does, and which known failure of Node's pools each part answers:
 * - a finite acquire timeout by default (generic-pool waits forever unless told otherwise);
 * - a cap on waiters that refuses at once (PoolFullError) instead of queueing without bound;
 * - FIFO waiters with optional priority, LIFO among idle resources so warm ones stay warm;
 * - a cheap synchronous `isUsable` check on every borrow and release (a peer FIN/RST that arrived
 *   while the resource sat idle — stale sockets are undici's most reported pooled failure,
 *   undici#3492), and `validate` on borrow only when the resource was idle longer than
 *   `validateAfterIdleMs` (validation costs a round trip; HikariCP skips it within 500 ms);
 * - create failures back off with full jitter and open a circuit breaker, so `acquire()` fails
 *   fast with EndpointUnavailableError and create() is never retried in a tight loop
 *   (generic-pool's 100 % CPU with the server down: node-pool#175, #183);
 * - max lifetime with jitter that never retires a borrowed resource (node-pool#133), idle
 *   eviction down to `min`, keepalive validation of idle resources, leak detection with the
 *   borrower's stack (tarn#43), and a reason on every destroy.
 *
 * One timer drives everything time-based (waiter deadlines, housekeeping, backoff, breaker):
 * unref'd while nobody waits, re-armed with refresh() when its period does not change.
 */

import { EventEmitter } from 'node:events';
import { AbortedError, InvalidArgumentError } from '../errors.js';
import { now } from '../util/clock.js';
import { Deque } from './deque.js';
import {
  AcquireTimeoutError,
  EndpointUnavailableError,
  LeaseReclaimedError,
  PoolClosedError,
  PoolFullError,
} from './errors.js';

// ---------------------------------------------------------------------------------------------
// Public types

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

const GRACEFUL_REASONS: ReadonlySet<string> = new Set([
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
  /** Monotonic milliseconds. Default: the one clock (util/clock.ts). */
  clock?: () => number;
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

// ---------------------------------------------------------------------------------------------
// Internals

const SLOT_IDLE = 0;
const SLOT_BORROWED = 1;
const SLOT_VALIDATING = 2;
const SLOT_CLOSED = 3;
type SlotState = 0 | 1 | 2 | 3;

const LEASE_ACTIVE = 0;
const LEASE_RELEASED = 1;
const LEASE_REVOKED = 2;

const POOL_OPEN = 0;
const POOL_DRAINING = 1;
const POOL_CLOSED = 2;

const CHECK_READY = 0;
const CHECK_GONE = 1;
const CHECK_PENDING = 2;

/** A captured stack, formatted only when read (V8 formats `stack` lazily). */
interface Trace {
  stack?: string;
}

/** @internal One resource and its bookkeeping. */
export class Slot<T> {
  state: SlotState = SLOT_IDLE;
  lease: Lease<T> | undefined = undefined;
  /** Last release (or creation): drives idle eviction. */
  lastUsedAt: number;
  /** Last proof of life (use or validation): drives validation skipping. */
  lastAliveAt: number;
  leakReported = false;
  trace: Trace | undefined = undefined;
  /** Set by evict() while borrowed: destroy on release with this reason. */
  doomed: string | undefined = undefined;
  constructor(
    readonly resource: T,
    readonly createdAt: number,
    readonly retireAt: number,
  ) {
    this.lastUsedAt = createdAt;
    this.lastAliveAt = createdAt;
  }
}

class Waiter<T> {
  settled = false;
  resolve!: (lease: Lease<T>) => void;
  reject!: (err: unknown) => void;
  signal: AbortSignal | undefined = undefined;
  onAbort: (() => void) | undefined = undefined;
  constructor(
    readonly deadline: number,
    readonly timeoutMs: number,
    readonly enqueuedAt: number,
    readonly trace: Trace | undefined,
  ) {}
}

interface CreateAttempt {
  readonly deadline: number;
  readonly ac: AbortController;
  done: boolean;
  /** Why we stopped waiting for it: what a late resource is destroyed with. */
  abandoned: string;
}

interface Level<T> {
  priority: number;
  queue: Deque<Waiter<T>>;
}

// One executor for every waiter's promise: no closure per acquire.
let capturedResolve: ((value: never) => void) | undefined;
let capturedReject: ((err: unknown) => void) | undefined;
function captureExecutor(resolve: (value: never) => void, reject: (err: unknown) => void): void {
  capturedResolve = resolve;
  capturedReject = reject;
}

/**
 * The pool's default clock: the one clock (util/clock.ts). It used to keep a cache of its own,
 * reused for up to 8 calls per turn; a deadline set from a reading that old can fire early, so
 * every pool deadline reads the real clock now (see clock.ts).
 */
export const fastNow: () => number = now;

function option(name: string, value: number | undefined, fallback: number, allowInfinity = false): number {
  if (value === undefined) return fallback;
  if (
    typeof value !== 'number' ||
    Number.isNaN(value) ||
    value < 0 ||
    (!allowInfinity && !Number.isFinite(value))
  ) {
    throw new InvalidArgumentError(
      `${name} must be a ${allowInfinity ? '' : 'finite '}number >= 0, got ${String(value)}`,
    );
  }
  return value;
}

// ---------------------------------------------------------------------------------------------
// Lease

/**
 * An exclusive loan of one resource. Release it exactly once (later calls are no-ops), or
 * destroy it when it is broken. A lease the pool reclaimed (leak) or destroyed (drain timeout)
 * is no longer `active`; releasing it then does nothing.
 */
export class Lease<T> {
  /** @internal */ _state = LEASE_ACTIVE;
  /** @internal Leases are made by the pool. */
  constructor(
    /** @internal */ readonly _pool: Pool<T>,
    /** @internal */ readonly _slot: Slot<T>,
    readonly resource: T,
    /** Clock time of the loan (the pool's clock). */
    readonly acquiredAt: number,
  ) {}

  /** True until released, destroyed or reclaimed. */
  get active(): boolean {
    return this._state === LEASE_ACTIVE;
  }

  /** When the pool retires the resource (its jittered max lifetime), pool clock; Infinity for never. */
  get retireAt(): number {
    return this._slot.retireAt;
  }

  /** Returns the resource to the pool. Returns false when the lease was no longer active. */
  release(): boolean {
    return this._pool.release(this);
  }

  /** Destroys the resource instead of returning it (reason defaults to `destroyed-by-borrower`). */
  destroy(reason?: string, error?: Error): boolean {
    return this._pool.destroy(this, reason, error);
  }
}

// ---------------------------------------------------------------------------------------------
// Pool

/**
 * A pool of resources made by a factory.
 *
 * @example
 * ```ts
 * const pool = new Pool({ create: async () => openThing(), destroy: (t) => t.close() }, { max: 10 });
 * const lease = await pool.acquire();
 * try { await lease.resource.doWork(); } finally { lease.release(); }
 * // or: await pool.use((thing) => thing.doWork());
 * await pool.drain();
 * ```
 */
export class Pool<T> extends EventEmitter {
  readonly name: string | undefined;
  readonly min: number;
  readonly max: number;

  private readonly factory: PoolFactory<T>;
  private readonly acquireTimeoutMs: number;
  private readonly maxWaiters: number;
  private readonly maxConcurrentCreates: number;
  private readonly createTimeoutMs: number;
  private readonly validateAfterIdleMs: number;
  private readonly idleTimeoutMs: number;
  private readonly keepaliveIntervalMs: number;
  private readonly maxLifetimeMs: number;
  private readonly maxLifetimeJitter: number;
  private readonly leakDetectionMs: number;
  private readonly reclaimLeaked: boolean;
  private readonly retryInitialMs: number;
  private readonly retryMaxMs: number;
  private readonly breakerThreshold: number;
  private readonly breakerCooldownMs: number;
  private readonly housekeepingMs: number;
  private readonly clock: () => number;
  private readonly random: () => number;
  private readonly isUsable: ((resource: T) => boolean) | undefined;
  private readonly validate: ((resource: T) => Promise<boolean> | boolean) | undefined;

  private readonly slots = new Map<T, Slot<T>>();
  /** Idle resources, most recently returned last (LIFO: pop() takes the warmest). */
  private readonly idle: Slot<T>[] = [];
  /** Waiter queues by priority, highest first. levels[0] is usually the only one. */
  private levels: Level<T>[] = [];
  private pendingLive = 0;
  private tombstones = 0;
  private total = 0;
  private borrowed = 0;
  private validating = 0;
  private creating = 0;
  private poolState = POOL_OPEN;
  private paused = false;

  private breaker: BreakerState = 'closed';
  private failures = 0;
  private lastCreateError: unknown;
  private lastCreateErrorAt = Number.NEGATIVE_INFINITY;
  private nextCreateAt = 0;
  private openUntil = 0;

  private timer: NodeJS.Timeout | undefined;
  private timerAt = Number.POSITIVE_INFINITY;
  private timerDelay = -1;
  private timerRefed = false;
  private nextHousekeepingAt: number;
  private nextWaiterDeadline = Number.POSITIVE_INFINITY;

  private readonly destroying = new Set<Promise<void>>();
  /** create() calls in flight, with their deadlines (the one timer enforces them). */
  private readonly attempts = new Set<CreateAttempt>();
  private drainPromise: Promise<void> | undefined;
  private resolveDrain: (() => void) | undefined;
  private drainTimer: NodeJS.Timeout | undefined;

  /** Whether anyone listens to the per-operation events (skips emit() on the hot path). */
  private emitAcquire = false;
  private emitRelease = false;

  private readonly totals = { created: 0, createErrors: 0, destroyed: 0, acquired: 0, timeouts: 0, leaks: 0 };

  constructor(factory: PoolFactory<T>, options: PoolOptions = {}) {
    super();
    if (typeof factory?.create !== 'function' || typeof factory.destroy !== 'function') {
      throw new InvalidArgumentError('factory must have create() and destroy()');
    }
    this.factory = factory;
    this.name = options.name;
    this.max = option('max', options.max, 10);
    this.min = option('min', options.min, 0);
    if (!Number.isInteger(this.max) || this.max < 1)
      throw new InvalidArgumentError('max must be an integer >= 1');
    if (!Number.isInteger(this.min) || this.min > this.max) {
      throw new InvalidArgumentError('min must be an integer between 0 and max');
    }
    this.acquireTimeoutMs = option('acquireTimeoutMs', options.acquireTimeoutMs, 10_000, true);
    this.maxWaiters = option('maxWaiters', options.maxWaiters, 10_000, true);
    this.maxConcurrentCreates = Math.max(
      1,
      option('maxConcurrentCreates', options.maxConcurrentCreates, Math.min(this.max, 4)),
    );
    this.createTimeoutMs = option('createTimeoutMs', options.createTimeoutMs, 10_000, true);
    this.validateAfterIdleMs = option('validateAfterIdleMs', options.validateAfterIdleMs, 500);
    this.idleTimeoutMs = option('idleTimeoutMs', options.idleTimeoutMs, 30_000);
    this.keepaliveIntervalMs = option('keepaliveIntervalMs', options.keepaliveIntervalMs, 0);
    this.maxLifetimeMs = option('maxLifetimeMs', options.maxLifetimeMs, 30 * 60_000);
    this.maxLifetimeJitter = option('maxLifetimeJitter', options.maxLifetimeJitter, 0.1);
    if (this.maxLifetimeJitter >= 1) throw new InvalidArgumentError('maxLifetimeJitter must be < 1');
    this.leakDetectionMs = option('leakDetectionMs', options.leakDetectionMs, 0);
    this.reclaimLeaked = options.reclaimLeaked === true;
    this.retryInitialMs = option('createRetryInitialMs', options.createRetryInitialMs, 50);
    this.retryMaxMs = option('createRetryMaxMs', options.createRetryMaxMs, 5_000);
    this.breakerThreshold = option('breakerThreshold', options.breakerThreshold, 5);
    this.breakerCooldownMs = option('breakerCooldownMs', options.breakerCooldownMs, 5_000);
    let hk = 1000;
    for (const [ms, div] of [
      [this.idleTimeoutMs, 4],
      [this.keepaliveIntervalMs, 4],
      [this.leakDetectionMs, 4],
      [this.maxLifetimeMs, 8],
    ] as const) {
      if (ms > 0) hk = Math.min(hk, ms / div);
    }
    this.housekeepingMs = option(
      'housekeepingIntervalMs',
      options.housekeepingIntervalMs,
      Math.max(10, Math.round(hk)),
    );
    if (this.housekeepingMs < 1) throw new InvalidArgumentError('housekeepingIntervalMs must be >= 1');
    this.clock = options.clock ?? fastNow;
    this.random = options.random ?? Math.random;
    this.isUsable = factory.isUsable?.bind(factory);
    this.validate = factory.validate?.bind(factory);
    this.levels.push({ priority: 0, queue: new Deque<Waiter<T>>() });
    super.on('newListener', (event: string) => {
      if (event === 'acquire') this.emitAcquire = true;
      else if (event === 'release') this.emitRelease = true;
    });
    super.on('removeListener', (event: string) => {
      if (event === 'acquire') this.emitAcquire = this.listenerCount('acquire') > 0;
      else if (event === 'release') this.emitRelease = this.listenerCount('release') > 0;
    });

    this.nextHousekeepingAt = this.clock() + this.housekeepingMs;
    this.schedule(this.nextHousekeepingAt);
    // Let the caller attach listeners before the first create.
    if (this.min > 0) queueMicrotask(() => this.pump());
  }

  // -------------------------------------------------------------------------------------------
  // Borrowing

  /**
   * Borrows a resource: an idle one (the most recently returned that passes its checks), a new
   * one while under `max`, or the next one returned. Rejects with AcquireTimeoutError,
   * PoolFullError, EndpointUnavailableError (breaker open: at once), PoolClosedError or
   * AbortedError.
   */
  acquire(options?: AcquireOptions): Promise<Lease<T>> {
    if (this.poolState !== POOL_OPEN) return Promise.reject(new PoolClosedError());
    const trace = this.leakDetectionMs > 0 ? captureTrace() : undefined;
    // Fast path: nobody waits and an idle resource is ready. One lease, one resolved promise.
    if (this.pendingLive === 0 && !this.paused && this.idle.length > 0) {
      const now = this.clock();
      let lost = false;
      while (this.idle.length > 0) {
        const slot = this.idle.pop() as Slot<T>;
        const r = this.checkIdle(slot, now);
        if (r === CHECK_READY) {
          if (lost) this.pump();
          return Promise.resolve(this.lend(slot, now, trace));
        }
        if (r === CHECK_PENDING) break; // validating: it will serve the waiter queued below
        lost = true;
      }
    }
    return this.enqueue(options, trace);
  }

  /**
   * Borrows a resource for the duration of `fn` and always gives it back: released when `fn`
   * settles, destroyed instead when `fn` threw an error the factory's `isBroken` says broke it.
   */
  async use<R>(fn: (resource: T, lease: Lease<T>) => R | Promise<R>, options?: AcquireOptions): Promise<R> {
    const lease = await this.acquire(options);
    let result: R;
    try {
      result = await fn(lease.resource, lease);
    } catch (err) {
      if (this.factory.isBroken?.(err, lease.resource)) {
        lease.destroy(DestroyReason.BROKEN, err instanceof Error ? err : undefined);
      } else {
        lease.release();
      }
      throw err;
    }
    lease.release();
    return result;
  }

  /** Returns a lease's resource. Idempotent: false when the lease was no longer active. */
  release(lease: Lease<T>): boolean {
    if (lease._state !== LEASE_ACTIVE || lease._pool !== this) return false;
    lease._state = LEASE_RELEASED;
    const slot = lease._slot;
    slot.lease = undefined;
    slot.trace = undefined;
    this.borrowed--;
    const now = this.clock();
    slot.lastUsedAt = now;
    slot.lastAliveAt = now;
    if (this.emitRelease) this.emit('release', slot.resource);
    let why = slot.doomed;
    if (why === undefined && this.factory.inspectRelease !== undefined) {
      try {
        why = this.factory.inspectRelease(slot.resource);
      } catch {
        why = 'inspect-failed';
      }
    }
    if (why !== undefined) {
      this.destroySlot(slot, why, undefined);
      this.pump();
      return true;
    }
    if (this.poolState !== POOL_OPEN) {
      this.destroySlot(slot, DestroyReason.DRAIN, undefined);
      return true;
    }
    this.makeAvailable(slot, now);
    return true;
  }

  /** Destroys a lease's resource instead of returning it. False when the lease was no longer active. */
  destroy(lease: Lease<T>, reason: string = DestroyReason.DESTROYED_BY_BORROWER, error?: Error): boolean {
    if (lease._state !== LEASE_ACTIVE || lease._pool !== this) return false;
    this.destroySlot(lease._slot, reason, error);
    this.pump();
    return true;
  }

  /**
   * Tells the pool that a resource is dead (e.g. its socket closed while idle). An idle resource
   * is destroyed at once; a borrowed one when it is returned. False if the pool does not hold it.
   */
  evict(resource: T, reason: string): boolean {
    const slot = this.slots.get(resource);
    if (slot === undefined) return false;
    if (slot.state === SLOT_BORROWED) {
      slot.doomed ??= reason;
      return true;
    }
    this.destroySlot(slot, reason, undefined);
    this.pump();
    return true;
  }

  // -------------------------------------------------------------------------------------------
  // Control

  /** Stops lending: acquirers wait (their timeouts still run) until resume(). */
  pause(): void {
    this.paused = true;
  }

  /** Lends again, serving waiters first. */
  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    this.pump();
  }

  /** Destroys every idle resource now (reason `clear`); the pool then refills to `min`. */
  async clear(): Promise<void> {
    const promises: Promise<void>[] = [];
    for (const slot of this.idle.slice()) {
      const p = this.destroySlot(slot, DestroyReason.CLEAR, undefined);
      if (p) promises.push(p);
    }
    this.pump();
    await Promise.all(promises);
  }

  /*
   * drain(): stop lending, wait for every loan to come back, close everything gracefully.
   *
   *   drain() ── waiters rejected (ERR_POOL_CLOSED), idle destroyed ('drain')
   *      │       creates in flight: destroyed as they land
   *      ├─ each release ─▶ destroyed ('drain')          ┐
   *      └─ timeoutMs passes ─▶ borrowed destroyed       ├─ last destroy settles ─▶ 'drained', closed
   *                             ('drain-timeout', abort) ┘
   */
  /**
   * Stops lending, waits for borrowed resources to be returned and destroys everything
   * gracefully. With `timeoutMs`, resources still borrowed then are destroyed (not gracefully,
   * reason `drain-timeout`). Idempotent.
   */
  drain(options: { timeoutMs?: number } = {}): Promise<void> {
    if (this.drainPromise) return this.drainPromise;
    const timeoutMs = option('timeoutMs', options.timeoutMs, Number.POSITIVE_INFINITY, true);
    this.poolState = POOL_DRAINING;
    this.drainPromise = new Promise<void>((resolve) => {
      this.resolveDrain = resolve;
    });
    this.rejectAllWaiters(() => new PoolClosedError('the pool is draining'));
    for (const slot of this.idle.slice()) this.destroySlot(slot, DestroyReason.DRAIN, undefined);
    this.abandonCreates(0, true);
    if (Number.isFinite(timeoutMs) && this.borrowed > 0) {
      this.drainTimer = setTimeout(() => {
        for (const slot of [...this.slots.values()]) {
          if (slot.state === SLOT_BORROWED) {
            this.destroySlot(
              slot,
              DestroyReason.DRAIN_TIMEOUT,
              new PoolClosedError(`the pool drained; lease not returned within ${timeoutMs} ms`),
            );
          }
        }
      }, timeoutMs);
      this.drainTimer.unref();
    }
    this.checkDrained();
    return this.drainPromise;
  }

  /**
   * @internal Rejects everyone waiting with `error` (e.g. a load balancer that ejected this endpoint and
   * wants its waiters to retry elsewhere). Borrowed and idle resources are untouched.
   */
  rejectWaiters(error: unknown): number {
    const n = this.pendingLive;
    this.rejectAllWaiters(() => error);
    return n;
  }

  /** A snapshot of sizes, queue, breaker and totals. */
  stats(): PoolStats {
    const now = this.clock();
    return {
      size: this.total,
      idle: this.idle.length,
      borrowed: this.borrowed,
      validating: this.validating,
      pending: this.pendingLive,
      creating: this.creating,
      state: this.poolState === POOL_OPEN ? 'open' : this.poolState === POOL_DRAINING ? 'draining' : 'closed',
      paused: this.paused,
      breaker: {
        state: this.breaker,
        consecutiveFailures: this.failures,
        retryInMs: this.breaker === 'open' ? Math.max(0, this.openUntil - now) : 0,
        lastError: this.lastCreateError,
      },
      totals: { ...this.totals },
    };
  }

  /** @internal The breaker's state (cheap; for load balancers choosing among pools). */
  get breakerState(): BreakerState {
    return this.breaker;
  }

  /** @internal Borrowed + waiting: how busy the pool is (cheap; for least-loaded selection). */
  get load(): number {
    return this.borrowed + this.pendingLive;
  }

  /** @internal Idle resources ready to lend. */
  get idleCount(): number {
    return this.idle.length;
  }

  /** @internal The error the breaker would report, or undefined when it is closed. */
  unavailableError(): EndpointUnavailableError | undefined {
    if (this.breaker !== 'open') return undefined;
    return new EndpointUnavailableError(this.name, this.openUntil - this.clock(), {
      cause: this.lastCreateError,
    });
  }

  // -------------------------------------------------------------------------------------------
  // Internals: lending

  private enqueue(options: AcquireOptions | undefined, trace: Trace | undefined): Promise<Lease<T>> {
    if (this.breaker === 'open') {
      return Promise.reject(
        new EndpointUnavailableError(this.name, this.openUntil - this.clock(), {
          cause: this.lastCreateError,
        }),
      );
    }
    if (this.pendingLive >= this.maxWaiters) return Promise.reject(new PoolFullError(this.maxWaiters));
    let timeoutMs = this.acquireTimeoutMs;
    let priority = 0;
    let signal: AbortSignal | undefined;
    if (options !== undefined) {
      if (options.timeoutMs !== undefined) timeoutMs = option('timeoutMs', options.timeoutMs, 0, true);
      if (options.priority !== undefined) priority = options.priority;
      signal = options.signal;
      if (signal?.aborted)
        return Promise.reject(new AbortedError('acquire aborted', { cause: signal.reason }));
    }
    const now = this.clock();
    const deadline = now + timeoutMs;
    const w = new Waiter<T>(deadline, timeoutMs, now, trace);
    const promise = new Promise<Lease<T>>(captureExecutor);
    w.resolve = capturedResolve as (lease: Lease<T>) => void;
    w.reject = capturedReject as (err: unknown) => void;
    this.levelFor(priority).queue.push(w);
    this.pendingLive++;
    if (signal !== undefined) {
      w.signal = signal;
      w.onAbort = () => this.abortWaiter(w);
      signal.addEventListener('abort', w.onAbort, { once: true });
    }
    if (deadline < this.nextWaiterDeadline) this.nextWaiterDeadline = deadline;
    if (deadline < this.timerAt) this.schedule(deadline);
    if (!this.timerRefed && this.timer !== undefined) {
      // Someone waits on us: keep the process alive until their deadline.
      this.timer.ref();
      this.timerRefed = true;
    }
    this.pump();
    return promise;
  }

  private levelFor(priority: number): Level<T> {
    const levels = this.levels;
    const first = levels[0] as Level<T>;
    if (first.priority === priority) return first;
    let i = 0;
    while (i < levels.length && (levels[i] as Level<T>).priority > priority) i++;
    const at = levels[i];
    if (at !== undefined && at.priority === priority) return at;
    const level: Level<T> = { priority, queue: new Deque<Waiter<T>>(4) };
    levels.splice(i, 0, level);
    return level;
  }

  /** The next live waiter, highest priority first, FIFO within a priority. */
  private dequeue(): Waiter<T> | undefined {
    for (let i = 0; i < this.levels.length; i++) {
      const q = (this.levels[i] as Level<T>).queue;
      while (q.length > 0) {
        const w = q.shift() as Waiter<T>;
        if (!w.settled) return w;
        this.tombstones--;
      }
    }
    return undefined;
  }

  private settle(w: Waiter<T>): void {
    w.settled = true;
    this.pendingLive--;
    if (w.signal !== undefined && w.onAbort !== undefined) w.signal.removeEventListener('abort', w.onAbort);
  }

  /** Marks a waiter done out of order (timeout, abort); it stays in its queue as a tombstone. */
  private dropWaiter(w: Waiter<T>): void {
    this.settle(w);
    this.tombstones++;
  }

  /** Tombstones cost memory until dequeued; compact the queues once they dominate. */
  private compactWaiters(): void {
    if (this.tombstones > 64 && this.tombstones > this.pendingLive) {
      for (const level of this.levels) level.queue.filter(isLive);
      this.tombstones = 0;
    }
  }

  private abortWaiter(w: Waiter<T>): void {
    if (w.settled) return;
    this.dropWaiter(w);
    this.compactWaiters();
    w.reject(new AbortedError('acquire aborted', { cause: w.signal?.reason }));
  }

  private rejectAllWaiters(make: () => unknown): void {
    for (;;) {
      const w = this.dequeue();
      if (w === undefined) break;
      this.settle(w);
      w.reject(make());
    }
    this.tombstones = 0;
  }

  private lend(slot: Slot<T>, now: number, trace: Trace | undefined): Lease<T> {
    slot.state = SLOT_BORROWED;
    slot.leakReported = false;
    slot.trace = trace;
    this.borrowed++;
    this.totals.acquired++;
    const lease = new Lease<T>(this, slot, slot.resource, now);
    slot.lease = lease;
    if (this.emitAcquire) this.emit('acquire', slot.resource);
    return lease;
  }

  /** Checks a slot taken off the idle stack: ready to lend, gone (destroyed), or validating. */
  private checkIdle(slot: Slot<T>, now: number): number {
    if (this.isUsable !== undefined && !safeBool(this.isUsable, slot.resource)) {
      this.destroySlot(slot, DestroyReason.UNUSABLE, undefined);
      return CHECK_GONE;
    }
    if (slot.retireAt <= now) {
      this.destroySlot(slot, DestroyReason.MAX_LIFETIME, undefined);
      return CHECK_GONE;
    }
    if (this.validate !== undefined && now - slot.lastAliveAt > this.validateAfterIdleMs) {
      let r: Promise<boolean> | boolean;
      try {
        r = this.validate(slot.resource);
      } catch {
        r = false;
      }
      if (r === true) {
        slot.lastAliveAt = now;
        return CHECK_READY;
      }
      if (typeof r !== 'object' || r === null || typeof r.then !== 'function') {
        this.destroySlot(slot, DestroyReason.VALIDATION_FAILED, undefined);
        return CHECK_GONE;
      }
      this.awaitValidation(slot, r, DestroyReason.VALIDATION_FAILED);
      return CHECK_PENDING;
    }
    return CHECK_READY;
  }

  private awaitValidation(slot: Slot<T>, r: Promise<boolean>, failReason: string): void {
    slot.state = SLOT_VALIDATING;
    this.validating++;
    r.then(
      (ok) => this.validated(slot, ok === true, failReason),
      () => this.validated(slot, false, failReason),
    );
  }

  private validated(slot: Slot<T>, ok: boolean, failReason: string): void {
    if (slot.state !== SLOT_VALIDATING) return; // destroyed meanwhile (drain, evict)
    this.validating--;
    slot.state = SLOT_IDLE; // in hand, not on the idle stack
    if (!ok) {
      this.destroySlot(slot, failReason, undefined);
      this.pump();
      return;
    }
    const now = this.clock();
    slot.lastAliveAt = now;
    if (this.poolState !== POOL_OPEN) {
      this.destroySlot(slot, DestroyReason.DRAIN, undefined);
      return;
    }
    this.makeAvailable(slot, now);
    this.pump();
  }

  /** A resource is free (returned, created, validated): to the next waiter, else onto the idle stack. */
  private makeAvailable(slot: Slot<T>, now: number): void {
    if (this.isUsable !== undefined && !safeBool(this.isUsable, slot.resource)) {
      this.destroySlot(slot, DestroyReason.UNUSABLE, undefined);
      this.pump();
      return;
    }
    if (slot.retireAt <= now) {
      this.destroySlot(slot, DestroyReason.MAX_LIFETIME, undefined);
      this.pump();
      return;
    }
    if (this.pendingLive > 0 && !this.paused) {
      const w = this.dequeue();
      if (w !== undefined) {
        this.settle(w);
        w.resolve(this.lend(slot, now, w.trace));
        return;
      }
    }
    slot.state = SLOT_IDLE;
    this.idle.push(slot);
  }

  /**
   * Matches waiters with idle resources, then starts the creates that are wanted: one per
   * waiter not already covered by a create or a validation, and enough to refill to `min` —
   * within `max`, `maxConcurrentCreates`, the retry backoff and the breaker.
   */
  private pump(): void {
    if (this.poolState === POOL_CLOSED) return;
    if (!this.paused) {
      const now = this.clock();
      while (this.pendingLive > this.validating && this.idle.length > 0) {
        const slot = this.idle.pop() as Slot<T>;
        if (this.checkIdle(slot, now) !== CHECK_READY) continue;
        const w = this.dequeue() as Waiter<T>;
        this.settle(w);
        w.resolve(this.lend(slot, now, w.trace));
      }
    }
    if (this.poolState !== POOL_OPEN) return;
    let want = this.pendingLive - this.validating - this.creating - this.idle.length;
    const refill = this.min - this.total - this.creating;
    if (refill > want) want = refill;
    if (want <= 0) return;
    want = Math.min(want, this.max - this.total - this.creating, this.maxConcurrentCreates - this.creating);
    if (want <= 0) return;
    if (this.breaker === 'open') return; // the timer lets a probe through at openUntil
    if (this.breaker === 'half-open') {
      if (this.creating > 0) return; // the probe is in flight
      want = 1;
    }
    if (this.failures > 0) {
      // After a failure: one attempt at a time, spaced by the backoff, until one succeeds.
      if (this.creating > 0) return;
      const now = this.clock();
      if (now < this.nextCreateAt) {
        this.schedule(this.nextCreateAt);
        return;
      }
      want = 1;
    }
    for (let i = 0; i < want; i++) this.startCreate();
  }

  // -------------------------------------------------------------------------------------------
  // Internals: creating and destroying

  private startCreate(): void {
    this.creating++;
    const attempt: CreateAttempt = {
      deadline: this.clock() + this.createTimeoutMs,
      ac: new AbortController(),
      done: false,
      abandoned: DestroyReason.CREATE_TIMEOUT,
    };
    this.attempts.add(attempt);
    if (attempt.deadline < this.timerAt) this.schedule(attempt.deadline);
    let p: Promise<T>;
    try {
      p = Promise.resolve(this.factory.create(attempt.ac.signal));
    } catch (err) {
      p = Promise.reject(err);
    }
    p.then(
      (res) => this.createSettled(attempt, true, res),
      (err) => this.createSettled(attempt, false, err),
    );
  }

  private createSettled(attempt: CreateAttempt, ok: boolean, value: unknown): void {
    if (attempt.done) {
      // Settled after we gave up on it (timeout, drain): do not leak what it made.
      if (ok) this.destroyOrphan(value as T, attempt.abandoned);
      return;
    }
    attempt.done = true;
    this.attempts.delete(attempt);
    this.creating--;
    if (ok) this.created(value as T);
    else this.createFailed(value);
  }

  /** Gives up on creates past their deadline (from the timer) or all of them (drain). */
  private abandonCreates(now: number, all: boolean): void {
    for (const attempt of this.attempts) {
      if (all) {
        // Draining: not a failure of the endpoint; whatever it still makes is destroyed.
        attempt.done = true;
        attempt.abandoned = DestroyReason.DRAIN;
        this.attempts.delete(attempt);
        this.creating--;
        attempt.ac.abort(new PoolClosedError('the pool drained while a create was in flight'));
        continue;
      }
      if (attempt.deadline > now) continue;
      const err = new AbortedError(`create did not finish within ${this.createTimeoutMs} ms`);
      attempt.ac.abort(err);
      this.createSettled(attempt, false, err);
    }
  }

  private nextCreateDeadline(): number {
    let next = Number.POSITIVE_INFINITY;
    for (const a of this.attempts) if (a.deadline < next) next = a.deadline;
    return next;
  }

  /** Destroys a resource that never joined the pool (created too late, or while draining). */
  private destroyOrphan(resource: T, reason: string): void {
    const detail: DestroyDetail = { graceful: true, error: undefined };
    this.emit('destroy', resource, reason, detail);
    this.trackDestroy(resource, reason, detail);
  }

  private created(resource: T): void {
    this.totals.created++;
    if (this.failures > 0 || this.breaker !== 'closed') {
      this.failures = 0;
      this.nextCreateAt = 0;
      if (this.breaker !== 'closed') {
        this.breaker = 'closed';
        this.emit('breakerClose');
      }
    }
    if (this.poolState !== POOL_OPEN) {
      this.destroyOrphan(resource, DestroyReason.DRAIN);
      this.checkDrained();
      return;
    }
    const now = this.clock();
    const life =
      this.maxLifetimeMs > 0
        ? now + this.maxLifetimeMs * (1 - this.maxLifetimeJitter * this.random())
        : Number.POSITIVE_INFINITY;
    const slot = new Slot(resource, now, life);
    this.slots.set(resource, slot);
    this.total++;
    this.emit('create', resource);
    this.makeAvailable(slot, now);
    this.pump();
  }

  private createFailed(error: unknown): void {
    this.totals.createErrors++;
    this.failures++;
    this.lastCreateError = error;
    const now = this.clock();
    this.lastCreateErrorAt = now;
    this.emit('createError', error, this.failures);
    if (this.poolState !== POOL_OPEN) {
      this.checkDrained();
      return;
    }
    // Full jitter (AWS Architecture Blog, "Exponential Backoff and Jitter"): spreads retries of
    // many clients instead of synchronising them.
    const cap = Math.min(this.retryMaxMs, this.retryInitialMs * 2 ** Math.min(this.failures - 1, 30));
    this.nextCreateAt = now + this.random() * cap;
    if (
      this.breaker === 'half-open' ||
      (this.breakerThreshold > 0 && this.failures >= this.breakerThreshold)
    ) {
      this.openBreaker(error, now);
      return;
    }
    this.pump();
  }

  private openBreaker(error: unknown, now: number): void {
    const cooldown = this.breakerCooldownMs * (1 + 0.25 * this.random());
    this.breaker = 'open';
    this.openUntil = now + cooldown;
    this.emit('breakerOpen', { error, consecutiveFailures: this.failures, retryInMs: cooldown });
    // Fail fast: nobody waits out their timeout for an endpoint that is down.
    this.rejectAllWaiters(() => new EndpointUnavailableError(this.name, cooldown, { cause: error }));
    this.schedule(this.openUntil);
  }

  /** Takes a slot out of the pool and destroys its resource. Returns the destroy's promise. */
  private destroySlot(slot: Slot<T>, reason: string, error: Error | undefined): Promise<void> | undefined {
    switch (slot.state) {
      case SLOT_CLOSED:
        return undefined;
      case SLOT_IDLE: {
        const i = this.idle.lastIndexOf(slot);
        if (i >= 0) this.idle.splice(i, 1);
        break;
      }
      case SLOT_BORROWED: {
        this.borrowed--;
        const lease = slot.lease;
        if (lease !== undefined) lease._state = LEASE_REVOKED;
        slot.lease = undefined;
        break;
      }
      case SLOT_VALIDATING:
        this.validating--;
        break;
    }
    slot.state = SLOT_CLOSED;
    slot.trace = undefined;
    this.slots.delete(slot.resource);
    this.total--;
    const detail: DestroyDetail = { graceful: GRACEFUL_REASONS.has(reason) && error === undefined, error };
    this.emit('destroy', slot.resource, reason, detail);
    const p = this.trackDestroy(slot.resource, reason, detail);
    this.checkDrained();
    return p;
  }

  private trackDestroy(resource: T, reason: string, detail: DestroyDetail): Promise<void> | undefined {
    this.totals.destroyed++;
    let r: Promise<void> | void;
    try {
      r = this.factory.destroy(resource, reason, detail);
    } catch {
      return undefined;
    }
    if (r === undefined || typeof (r as Promise<void>).then !== 'function') return undefined;
    const p = (r as Promise<void>).then(
      () => {},
      () => {},
    );
    this.destroying.add(p);
    p.then(() => {
      this.destroying.delete(p);
      this.checkDrained();
    });
    return p;
  }

  private checkDrained(): void {
    if (this.poolState !== POOL_DRAINING) return;
    if (this.total > 0 || this.creating > 0 || this.destroying.size > 0) return;
    this.poolState = POOL_CLOSED;
    if (this.timer !== undefined) clearTimeout(this.timer);
    if (this.drainTimer !== undefined) clearTimeout(this.drainTimer);
    this.timer = undefined;
    this.timerAt = Number.POSITIVE_INFINITY;
    this.emit('drained');
    this.resolveDrain?.();
  }

  // -------------------------------------------------------------------------------------------
  // Internals: the one timer

  /** Makes sure the timer fires no later than `at`. */
  private schedule(at: number): void {
    if (this.poolState === POOL_CLOSED || at >= this.timerAt) return;
    const now = this.clock();
    const delay = Math.max(1, Math.ceil(at - now));
    if (this.timer !== undefined && delay === this.timerDelay) {
      this.timer.refresh();
    } else {
      if (this.timer !== undefined) clearTimeout(this.timer);
      this.timer = setTimeout(Pool.onTimer, delay, this);
      this.timerDelay = delay;
      if (!this.timerRefed) this.timer.unref();
    }
    this.timerAt = now + delay;
  }

  private onTimerFired(): void {
    this.timerAt = Number.POSITIVE_INFINITY;
    if (this.poolState === POOL_CLOSED) return;
    const now = this.clock();
    if (now >= this.nextWaiterDeadline) this.expireWaiters(now);
    if (this.attempts.size > 0) this.abandonCreates(now, false);
    if (this.breaker === 'open' && now >= this.openUntil) {
      // Cooldown over: let exactly one probe through, whether or not anyone is waiting, so an
      // endpoint that came back is noticed even by an idle pool with min 0.
      this.breaker = 'half-open';
      this.emit('breakerHalfOpen');
      if (this.poolState === POOL_OPEN && this.creating === 0 && this.total < this.max) this.startCreate();
    }
    if (now >= this.nextHousekeepingAt) {
      this.nextHousekeepingAt = now + this.housekeepingMs;
      this.housekeep(now);
    }
    if (this.failures > 0 && this.breaker === 'closed') this.pump();
    if (this.pendingLive === 0 && this.timerRefed && this.timer !== undefined) {
      this.timer.unref();
      this.timerRefed = false;
    }
    let next = this.nextHousekeepingAt;
    if (this.nextWaiterDeadline < next) next = this.nextWaiterDeadline;
    if (this.breaker === 'open' && this.openUntil < next) next = this.openUntil;
    if (this.attempts.size > 0) next = Math.min(next, this.nextCreateDeadline());
    this.schedule(next);
  }

  private expireWaiters(now: number): void {
    let next = Number.POSITIVE_INFINITY;
    for (const level of this.levels) {
      level.queue.forEach((w) => {
        if (w.settled) return;
        if (w.deadline <= now) {
          this.dropWaiter(w);
          this.totals.timeouts++;
          const cause = this.lastCreateErrorAt >= w.enqueuedAt ? this.lastCreateError : undefined;
          w.reject(new AcquireTimeoutError(w.timeoutMs, cause === undefined ? undefined : { cause }));
        } else if (w.deadline < next) {
          next = w.deadline;
        }
      });
    }
    this.nextWaiterDeadline = next;
    this.compactWaiters();
  }

  /** Eviction, keepalive, lifetime, leaks, refill: one pass over the slots. */
  private housekeep(now: number): void {
    for (const slot of this.slots.values()) {
      if (slot.state === SLOT_IDLE) {
        if (this.isUsable !== undefined && !safeBool(this.isUsable, slot.resource)) {
          this.destroySlot(slot, DestroyReason.UNUSABLE, undefined);
        } else if (slot.retireAt <= now) {
          this.destroySlot(slot, DestroyReason.MAX_LIFETIME, undefined);
        } else if (
          this.idleTimeoutMs > 0 &&
          now - slot.lastUsedAt >= this.idleTimeoutMs &&
          this.total > this.min
        ) {
          this.destroySlot(slot, DestroyReason.IDLE_TIMEOUT, undefined);
        } else if (
          this.keepaliveIntervalMs > 0 &&
          this.validate !== undefined &&
          now - slot.lastAliveAt >= this.keepaliveIntervalMs
        ) {
          this.keepalive(slot, now);
        }
      } else if (slot.state === SLOT_BORROWED && this.leakDetectionMs > 0 && !slot.leakReported) {
        const lease = slot.lease;
        if (lease !== undefined && now - lease.acquiredAt >= this.leakDetectionMs)
          this.reportLeak(slot, lease, now);
      }
    }
    this.pump();
  }

  private keepalive(slot: Slot<T>, now: number): void {
    let r: Promise<boolean> | boolean;
    try {
      r = (this.validate as (resource: T) => Promise<boolean> | boolean)(slot.resource);
    } catch {
      r = false;
    }
    if (r === true) {
      slot.lastAliveAt = now;
      return;
    }
    if (typeof r !== 'object' || r === null || typeof r.then !== 'function') {
      this.destroySlot(slot, DestroyReason.KEEPALIVE_FAILED, undefined);
      return;
    }
    const i = this.idle.lastIndexOf(slot);
    if (i >= 0) this.idle.splice(i, 1);
    this.awaitValidation(slot, r, DestroyReason.KEEPALIVE_FAILED);
  }

  private reportLeak(slot: Slot<T>, lease: Lease<T>, now: number): void {
    slot.leakReported = true;
    this.totals.leaks++;
    const heldMs = now - lease.acquiredAt;
    const stack = cleanStack(slot.trace?.stack);
    this.emit('leak', { resource: slot.resource, heldMs, stack, reclaimed: this.reclaimLeaked });
    if (this.reclaimLeaked && slot.state === SLOT_BORROWED && slot.lease === lease) {
      this.destroySlot(slot, DestroyReason.LEAK_RECLAIMED, new LeaseReclaimedError(heldMs));
    }
  }

  private static onTimer<U>(pool: Pool<U>): void {
    pool.onTimerFired();
  }
}

// Typed events: merged into the class's instance type.
export interface Pool<T> {
  on<K extends keyof PoolEvents<T>>(event: K, listener: (...args: PoolEvents<T>[K]) => void): this;
  once<K extends keyof PoolEvents<T>>(event: K, listener: (...args: PoolEvents<T>[K]) => void): this;
  off<K extends keyof PoolEvents<T>>(event: K, listener: (...args: PoolEvents<T>[K]) => void): this;
  emit<K extends keyof PoolEvents<T>>(event: K, ...args: PoolEvents<T>[K]): boolean;
}

function isLive(w: { settled: boolean }): boolean {
  return !w.settled;
}

function safeBool<T>(fn: (r: T) => boolean, r: T): boolean {
  try {
    return fn(r) === true;
  } catch {
    return false;
  }
}

function captureTrace(): Trace {
  const t: Trace = {};
  Error.captureStackTrace(t, Pool.prototype.acquire);
  return t;
}

/** The borrower's frames, without the "Error" header line. */
function cleanStack(stack: string | undefined): string {
  if (stack === undefined) return '';
  const nl = stack.indexOf('\n');
  return nl < 0 ? stack : `Lease acquired at:${stack.slice(nl)}`;
}
