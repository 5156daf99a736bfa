/**
 * A pool's loans: the Slot that holds one resource and its bookkeeping, the Lease a borrower
 * holds, and the borrower's stack captured for leak reports.
 */

/** @internal Slot states. */
export const SLOT_IDLE = 0;
export const SLOT_BORROWED = 1;
export const SLOT_VALIDATING = 2;
export const SLOT_CLOSED = 3;
export type SlotState = 0 | 1 | 2 | 3;

/** @internal Lease states. */
export const LEASE_ACTIVE = 0;
export const LEASE_RELEASED = 1;
export const LEASE_REVOKED = 2;

/** @internal A captured stack, formatted only when read (V8 formats `stack` lazily). */
export interface Trace {
  stack?: string;
}

/** @internal What a Lease returns itself to: the Pool that lent it. */
export interface LeaseOwner<T> {
  release(lease: Lease<T>): boolean;
  destroy(lease: Lease<T>, reason?: string, error?: Error): boolean;
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

/**
 * An exclusive loan of one resource. Release it exactly once (later calls are no-ops), or
 * destroy it when it is broken. A lease the pool reclaimed (leak) or destroyed (drain timeout)
 * is no longer `active`; releasing it then does nothing.
 */
export class Lease<T> {
  /** @internal */ _state = LEASE_ACTIVE;
  /** @internal Leases are made by the pool. */
  constructor(
    /** @internal */ readonly _pool: LeaseOwner<T>,
    /** @internal */ readonly _slot: Slot<T>,
    readonly resource: T,
    /** Monotonic time of the loan (util/clock.ts). */
    readonly acquiredAt: number,
  ) {}

  /** True until released, destroyed or reclaimed. */
  get active(): boolean {
    return this._state === LEASE_ACTIVE;
  }

  /** When the pool retires the resource (its jittered max lifetime), monotonic time; Infinity for never. */
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

/** @internal The stack of the caller of `above` (the borrower of a lease), for a leak report. */
export function captureTrace(above: (...args: never[]) => unknown): Trace {
  const t: Trace = {};
  Error.captureStackTrace(t, above);
  return t;
}

/** @internal The borrower's frames, without the "Error" header line. */
export function cleanStack(stack: string | undefined): string {
  if (stack === undefined) return '';
  const nl = stack.indexOf('\n');
  return nl < 0 ? stack : `Lease acquired at:${stack.slice(nl)}`;
}
