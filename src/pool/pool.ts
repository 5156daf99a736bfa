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
 *
 * Its parts: pool-options.ts (types, settings), lease.ts (Slot, Lease), waiters.ts (the wait
 * queue), breaker.ts (backoff and circuit breaker); this file lends, creates, destroys and keeps
 * house.
 */

import { EventEmitter } from 'node:events';
import { AbortedError, InvalidArgumentError } from '../errors.js';
import { nonNegativeOrInfinity } from '../util/check.js';
import { now as clock } from '../util/clock.js';
import { CreateBreaker } from './breaker.js';
import {
  AcquireTimeoutError,
  EndpointUnavailableError,
  LeaseReclaimedError,
  PoolClosedError,
  PoolFullError,
} from './errors.js';
import {
  captureTrace,
  cleanStack,
  LEASE_ACTIVE,
  LEASE_RELEASED,
  LEASE_REVOKED,
  Lease,
  SLOT_BORROWED,
  SLOT_CLOSED,
  SLOT_IDLE,
  SLOT_VALIDATING,
  Slot,
  type Trace,
} from './lease.js';
import {
  type AcquireOptions,
  type BreakerState,
  type DestroyDetail,
  DestroyReason,
  GRACEFUL_REASONS,
  type PoolEvents,
  type PoolFactory,
  type PoolOptions,
  type PoolSettings,
  type PoolStats,
  poolSettings,
} from './pool-options.js';
import { Waiter, WaitQueue } from './waiters.js';

const POOL_OPEN = 0;
const POOL_DRAINING = 1;
const POOL_CLOSED = 2;

const CHECK_READY = 0;
const CHECK_GONE = 1;
const CHECK_PENDING = 2;

interface CreateAttempt {
  readonly deadline: number;
  readonly ac: AbortController;
  done: boolean;
  /** Why we stopped waiting for it: what a late resource is destroyed with. */
  abandoned: string;
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
  private readonly s: PoolSettings;
  private readonly isUsable: ((resource: T) => boolean) | undefined;
  private readonly validate: ((resource: T) => Promise<boolean> | boolean) | undefined;

  private readonly slots = new Map<T, Slot<T>>();
  /** Idle resources, most recently returned last (LIFO: pop() takes the warmest). */
  private readonly idle: Slot<T>[] = [];
  private readonly waiters = new WaitQueue<T>();
  private readonly breaker: CreateBreaker;
  private total = 0;
  private borrowed = 0;
  private validating = 0;
  private creating = 0;
  private poolState = POOL_OPEN;
  private paused = false;

  private timer: NodeJS.Timeout | undefined;
  private timerAt = Number.POSITIVE_INFINITY;
  private timerDelay = -1;
  private timerRefed = false;
  private nextHousekeepingAt: number;

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
    this.s = poolSettings(options);
    this.name = this.s.name;
    this.min = this.s.min;
    this.max = this.s.max;
    this.breaker = new CreateBreaker(this.s);
    this.isUsable = factory.isUsable?.bind(factory);
    this.validate = factory.validate?.bind(factory);
    super.on('newListener', (event: string) => {
      if (event === 'acquire') this.emitAcquire = true;
      else if (event === 'release') this.emitRelease = true;
    });
    super.on('removeListener', (event: string) => {
      if (event === 'acquire') this.emitAcquire = this.listenerCount('acquire') > 0;
      else if (event === 'release') this.emitRelease = this.listenerCount('release') > 0;
    });

    this.nextHousekeepingAt = clock() + this.s.housekeepingMs;
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
    const trace = this.s.leakDetectionMs > 0 ? captureTrace(Pool.prototype.acquire) : undefined;
    // Fast path: nobody waits and an idle resource is ready. One lease, one resolved promise.
    if (this.waiters.live === 0 && !this.paused && this.idle.length > 0) {
      const now = clock();
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
    const now = clock();
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
    const timeoutMs = nonNegativeOrInfinity('timeoutMs', options.timeoutMs, Number.POSITIVE_INFINITY);
    this.poolState = POOL_DRAINING;
    this.drainPromise = new Promise<void>((resolve) => {
      this.resolveDrain = resolve;
    });
    this.waiters.rejectAll(() => new PoolClosedError('the pool is draining'));
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
    const n = this.waiters.live;
    this.waiters.rejectAll(() => error);
    return n;
  }

  /** A snapshot of sizes, queue, breaker and totals. */
  stats(): PoolStats {
    const now = clock();
    return {
      size: this.total,
      idle: this.idle.length,
      borrowed: this.borrowed,
      validating: this.validating,
      pending: this.waiters.live,
      creating: this.creating,
      state: this.poolState === POOL_OPEN ? 'open' : this.poolState === POOL_DRAINING ? 'draining' : 'closed',
      paused: this.paused,
      breaker: {
        state: this.breaker.state,
        consecutiveFailures: this.breaker.failures,
        retryInMs: this.breaker.state === 'open' ? Math.max(0, this.breaker.openUntil - now) : 0,
        lastError: this.breaker.lastError,
      },
      totals: { ...this.totals },
    };
  }

  /** @internal The breaker's state (cheap; for load balancers choosing among pools). */
  get breakerState(): BreakerState {
    return this.breaker.state;
  }

  /** @internal Borrowed + waiting: how busy the pool is (cheap; for least-loaded selection). */
  get load(): number {
    return this.borrowed + this.waiters.live;
  }

  /** @internal Idle resources ready to lend. */
  get idleCount(): number {
    return this.idle.length;
  }

  /** @internal The error the breaker would report, or undefined when it is closed. */
  unavailableError(): EndpointUnavailableError | undefined {
    if (this.breaker.state !== 'open') return undefined;
    return new EndpointUnavailableError(this.name, this.breaker.openUntil - clock(), {
      cause: this.breaker.lastError,
    });
  }

  // -------------------------------------------------------------------------------------------
  // Internals: lending

  private enqueue(options: AcquireOptions | undefined, trace: Trace | undefined): Promise<Lease<T>> {
    if (this.breaker.state === 'open') {
      return Promise.reject(
        new EndpointUnavailableError(this.name, this.breaker.openUntil - clock(), {
          cause: this.breaker.lastError,
        }),
      );
    }
    if (this.waiters.live >= this.s.maxWaiters) return Promise.reject(new PoolFullError(this.s.maxWaiters));
    let timeoutMs = this.s.acquireTimeoutMs;
    let priority = 0;
    let signal: AbortSignal | undefined;
    if (options !== undefined) {
      if (options.timeoutMs !== undefined)
        timeoutMs = nonNegativeOrInfinity('timeoutMs', options.timeoutMs, 0);
      if (options.priority !== undefined) priority = options.priority;
      signal = options.signal;
      if (signal?.aborted)
        return Promise.reject(new AbortedError('acquire aborted', { cause: signal.reason }));
    }
    const now = clock();
    const deadline = now + timeoutMs;
    const w = new Waiter<T>(deadline, timeoutMs, now, trace);
    const promise = this.waiters.add(w, priority);
    if (signal !== undefined) {
      w.signal = signal;
      w.onAbort = () => this.abortWaiter(w);
      signal.addEventListener('abort', w.onAbort, { once: true });
    }
    if (deadline < this.timerAt) this.schedule(deadline);
    if (!this.timerRefed && this.timer !== undefined) {
      // Someone waits on us: keep the process alive until their deadline.
      this.timer.ref();
      this.timerRefed = true;
    }
    this.pump();
    return promise;
  }

  private abortWaiter(w: Waiter<T>): void {
    if (w.settled) return;
    this.waiters.drop(w);
    w.reject(new AbortedError('acquire aborted', { cause: w.signal?.reason }));
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
    if (this.validate !== undefined && now - slot.lastAliveAt > this.s.validateAfterIdleMs) {
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
    const now = clock();
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
    if (this.waiters.live > 0 && !this.paused) {
      const w = this.waiters.take();
      if (w !== undefined) {
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
      const now = clock();
      while (this.waiters.live > this.validating && this.idle.length > 0) {
        const slot = this.idle.pop() as Slot<T>;
        if (this.checkIdle(slot, now) !== CHECK_READY) continue;
        const w = this.waiters.take() as Waiter<T>;
        w.resolve(this.lend(slot, now, w.trace));
      }
    }
    if (this.poolState !== POOL_OPEN) return;
    let want = this.waiters.live - this.validating - this.creating - this.idle.length;
    const refill = this.min - this.total - this.creating;
    if (refill > want) want = refill;
    if (want <= 0) return;
    want = Math.min(want, this.max - this.total - this.creating, this.s.maxConcurrentCreates - this.creating);
    if (want <= 0) return;
    if (this.breaker.state === 'open') return; // the timer lets a probe through at openUntil
    if (this.breaker.state === 'half-open') {
      if (this.creating > 0) return; // the probe is in flight
      want = 1;
    }
    if (this.breaker.failures > 0) {
      // After a failure: one attempt at a time, spaced by the backoff, until one succeeds.
      if (this.creating > 0) return;
      const now = clock();
      if (now < this.breaker.nextCreateAt) {
        this.schedule(this.breaker.nextCreateAt);
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
      deadline: clock() + this.s.createTimeoutMs,
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
      const err = new AbortedError(`create did not finish within ${this.s.createTimeoutMs} ms`);
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
    if (this.breaker.succeeded()) this.emit('breakerClose');
    if (this.poolState !== POOL_OPEN) {
      this.destroyOrphan(resource, DestroyReason.DRAIN);
      this.checkDrained();
      return;
    }
    const now = clock();
    const life =
      this.s.maxLifetimeMs > 0
        ? now + this.s.maxLifetimeMs * (1 - this.s.maxLifetimeJitter * this.s.random())
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
    const now = clock();
    this.breaker.failed(error, now);
    this.emit('createError', error, this.breaker.failures);
    if (this.poolState !== POOL_OPEN) {
      this.checkDrained();
      return;
    }
    const cooldown = this.breaker.backOff(now);
    if (cooldown === undefined) {
      this.pump();
      return;
    }
    this.emit('breakerOpen', { error, consecutiveFailures: this.breaker.failures, retryInMs: cooldown });
    // Fail fast: nobody waits out their timeout for an endpoint that is down.
    this.waiters.rejectAll(() => new EndpointUnavailableError(this.name, cooldown, { cause: error }));
    this.schedule(this.breaker.openUntil);
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
    const now = clock();
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
    const now = clock();
    if (now >= this.waiters.nextDeadline) this.expireWaiters(now);
    if (this.attempts.size > 0) this.abandonCreates(now, false);
    if (this.breaker.probeDue(now)) {
      // Cooldown over: let exactly one probe through, whether or not anyone is waiting, so an
      // endpoint that came back is noticed even by an idle pool with min 0.
      this.emit('breakerHalfOpen');
      if (this.poolState === POOL_OPEN && this.creating === 0 && this.total < this.max) this.startCreate();
    }
    if (now >= this.nextHousekeepingAt) {
      this.nextHousekeepingAt = now + this.s.housekeepingMs;
      this.housekeep(now);
    }
    if (this.breaker.failures > 0 && this.breaker.state === 'closed') this.pump();
    if (this.waiters.live === 0 && this.timerRefed && this.timer !== undefined) {
      this.timer.unref();
      this.timerRefed = false;
    }
    let next = this.nextHousekeepingAt;
    if (this.waiters.nextDeadline < next) next = this.waiters.nextDeadline;
    if (this.breaker.state === 'open' && this.breaker.openUntil < next) next = this.breaker.openUntil;
    if (this.attempts.size > 0) next = Math.min(next, this.nextCreateDeadline());
    this.schedule(next);
  }

  private expireWaiters(now: number): void {
    this.waiters.expire(now, (w) => {
      this.totals.timeouts++;
      const cause = this.breaker.lastErrorAt >= w.enqueuedAt ? this.breaker.lastError : undefined;
      w.reject(new AcquireTimeoutError(w.timeoutMs, cause === undefined ? undefined : { cause }));
    });
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
          this.s.idleTimeoutMs > 0 &&
          now - slot.lastUsedAt >= this.s.idleTimeoutMs &&
          this.total > this.min
        ) {
          this.destroySlot(slot, DestroyReason.IDLE_TIMEOUT, undefined);
        } else if (
          this.s.keepaliveIntervalMs > 0 &&
          this.validate !== undefined &&
          now - slot.lastAliveAt >= this.s.keepaliveIntervalMs
        ) {
          this.keepalive(slot, now);
        }
      } else if (slot.state === SLOT_BORROWED && this.s.leakDetectionMs > 0 && !slot.leakReported) {
        const lease = slot.lease;
        if (lease !== undefined && now - lease.acquiredAt >= this.s.leakDetectionMs)
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
    this.emit('leak', { resource: slot.resource, heldMs, stack, reclaimed: this.s.reclaimLeaked });
    if (this.s.reclaimLeaked && slot.state === SLOT_BORROWED && slot.lease === lease) {
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

function safeBool<T>(fn: (r: T) => boolean, r: T): boolean {
  try {
    return fn(r) === true;
  } catch {
    return false;
  }
}
