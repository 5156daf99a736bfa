/**
 * Errors of the pool: one base class so callers can catch every pool failure at once, a stable
 * `code` per subclass (docs/pool.md has the table), and the brand of src/errors.ts so `instanceof`
 * holds across two copies of the package.
 */

import { LonglinkError, type LonglinkErrorOptions } from '../errors.js';

/** Base of every error the pool itself raises (not the errors of the resources it lends). */
export class PoolError extends LonglinkError {
  static override readonly brand: string = 'PoolError';
}

/**
 * `acquire()` waited `timeoutMs` without getting a resource. `cause` is the last create error
 * when creates were failing while it waited.
 */
export class AcquireTimeoutError extends PoolError {
  static override readonly brand: string = 'AcquireTimeoutError';
  readonly timeoutMs: number;
  constructor(timeoutMs: number, options?: LonglinkErrorOptions) {
    super('ERR_ACQUIRE_TIMEOUT', `no resource became available within ${timeoutMs} ms`, options);
    this.timeoutMs = timeoutMs;
  }
}

/** The queue of waiting acquirers is at `maxWaiters`: refused at once, nothing was queued. */
export class PoolFullError extends PoolError {
  static override readonly brand: string = 'PoolFullError';
  readonly maxWaiters: number;
  constructor(maxWaiters: number, options?: LonglinkErrorOptions) {
    super('ERR_POOL_FULL', `${maxWaiters} acquirers are already waiting (maxWaiters)`, options);
    this.maxWaiters = maxWaiters;
  }
}

/**
 * The endpoint cannot be reached: its circuit breaker is open after consecutive create failures,
 * so `acquire()` fails at once instead of waiting for its timeout. `cause` is the last create
 * error (e.g. a ConnectError whose cause is ECONNREFUSED); `retryInMs` says when the breaker
 * lets the next probe through.
 */
export class EndpointUnavailableError extends PoolError {
  static override readonly brand: string = 'EndpointUnavailableError';
  /** The endpoint's label (`host:port` for connection pools), if known. */
  readonly endpoint: string | undefined;
  /** Milliseconds until the breaker admits a probe (0 when a probe is already allowed). */
  readonly retryInMs: number;
  constructor(endpoint: string | undefined, retryInMs: number, options?: LonglinkErrorOptions) {
    const where = endpoint === undefined ? 'endpoint' : `endpoint ${endpoint}`;
    super(
      'ERR_ENDPOINT_UNAVAILABLE',
      `${where} unavailable (circuit breaker open, next probe in ${Math.max(0, Math.round(retryInMs))} ms)`,
      options,
    );
    this.endpoint = endpoint;
    this.retryInMs = Math.max(0, retryInMs);
  }
}

/** The pool is draining or drained: it lends nothing more. */
export class PoolClosedError extends PoolError {
  static override readonly brand: string = 'PoolClosedError';
  constructor(message = 'the pool is draining or closed', options?: LonglinkErrorOptions) {
    super('ERR_POOL_CLOSED', message, options);
  }
}

/**
 * The pool took the resource back from a borrower that held it past `leakDetectionMs` with
 * `reclaimLeaked` on. A reclaimed connection is aborted with this error, so the late borrower's
 * operations fail with it as their cause.
 */
export class LeaseReclaimedError extends PoolError {
  static override readonly brand: string = 'LeaseReclaimedError';
  readonly heldMs: number;
  constructor(heldMs: number, options?: LonglinkErrorOptions) {
    super(
      'ERR_LEASE_RECLAIMED',
      `lease reclaimed by the pool after being held ${Math.round(heldMs)} ms`,
      options,
    );
    this.heldMs = heldMs;
  }
}
