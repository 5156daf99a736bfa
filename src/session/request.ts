/**
 * One outgoing request, from the call to its settlement: the one object a request costs. It
 * carries the method and encoded params, its id and send order while a session carries it, its
 * deadline (one timer list shared by every request of the process) and its AbortSignal, and it
 * settles exactly once — with the decoded answer or a typed error — whoever gets there first:
 * the answer, the deadline, the signal, the connection's end, or the owner that gives up on it.
 *
 * A request outlives the session that carries it when the server hands it back on GOAWAY: the
 * reconnecting Client then queues it and sends it on the next session, deadline still running.
 */

import { AbortedError, InvalidArgumentError, LonglinkError, type LonglinkErrorOptions } from '../errors.js';
import type { PayloadCodec } from '../protocol/payload.js';
import type { Outstanding } from '../protocol/request-id.js';
import { durationOrInfinity } from '../util/check.js';
import { type Deadline, Deadlines } from '../util/deadlines.js';

/** A request's own deadline passed before its answer came. The server was asked to cancel it. */
export class RequestTimeoutError extends LonglinkError {
  static override readonly brand: string = 'RequestTimeoutError';
  constructor(method: string, timeoutMs: number, options?: LonglinkErrorOptions) {
    super('ERR_REQUEST_TIMEOUT', `request ${method} got no answer within ${timeoutMs} ms`, options);
  }
}

/** Options of one request. */
export interface RequestOptions {
  timeoutMs?: number;
  signal?: AbortSignal;
}

/** Who made a request: decodes its answer, and hears once when it settles. */
export interface RequestOwner {
  readonly codec: PayloadCodec;
  /** `r` settled (called once, before its promise settles). */
  requestSettled(r: OutgoingRequest): void;
}

/** What carries a request on the wire (a session): told when the caller gives up on it. */
export interface RequestCarrier {
  /** The caller no longer waits for `r`: tell the peer, keep its id until the answer comes. */
  cancel(r: OutgoingRequest): void;
}

/** Request deadlines of every session and client share one queue and one timer. */
const deadlines = new Deadlines();

// One executor for every request's promise: no closure per request (as the pool's waiters do).
let capturedResolve: ((value: unknown) => void) | undefined;
let capturedReject: ((err: unknown) => void) | undefined;
function captureExecutor(resolve: (value: unknown) => void, reject: (err: unknown) => void): void {
  capturedResolve = resolve;
  capturedReject = reject;
}

export class OutgoingRequest implements Outstanding {
  /** Its id and send order while a session carries it (see RequestIdAllocator). */
  id = 0;
  seq = 0;
  /** The session it was written to, until its answer, its hand-back or its connection's end. */
  carrier: RequestCarrier | undefined = undefined;
  /** The caller gave up (timeout, abort): the answer is awaited only to free the id. */
  abandoned = false;
  /** In its owner's queue, waiting for a session. */
  queued = false;
  done = false;
  deadline: Deadline | undefined = undefined;
  /** Made only for requests that carry a signal: most do not, and a closure each is not free. */
  onAbort: (() => void) | undefined = undefined;
  readonly promise: Promise<unknown>;
  private readonly resolve: (value: unknown) => void;
  private readonly reject: (err: unknown) => void;

  constructor(
    readonly owner: RequestOwner,
    readonly method: string,
    readonly payload: Buffer,
    readonly timeoutMs: number,
    readonly signal: AbortSignal | undefined,
  ) {
    this.promise = new Promise(captureExecutor);
    this.resolve = capturedResolve as (value: unknown) => void;
    this.reject = capturedReject as (err: unknown) => void;
  }

  /** Settles the caller's promise: the first call wins, later ones do nothing. */
  settle(error: unknown, payload: Buffer | undefined): void {
    if (this.done) return;
    this.done = true;
    if (this.deadline !== undefined) deadlines.cancel(this.deadline);
    if (this.onAbort !== undefined) this.signal?.removeEventListener('abort', this.onAbort);
    this.owner.requestSettled(this);
    if (error !== undefined) {
      this.reject(error);
      return;
    }
    try {
      this.resolve(this.owner.codec.decode(payload as Buffer));
    } catch (err) {
      this.reject(
        new LonglinkError('ERR_BAD_PAYLOAD', 'response payload could not be decoded', { cause: err }),
      );
    }
  }
}

/**
 * A request from a caller's arguments, its deadline and signal armed: checks the method and the
 * timeout, encodes the params. Throws (InvalidArgumentError, AbortedError, the codec's error)
 * before anything is armed, so a refused call leaves nothing behind.
 */
export function newRequest(
  owner: RequestOwner,
  method: string,
  params: unknown,
  options: RequestOptions,
  defaultTimeoutMs: number,
): OutgoingRequest {
  if (typeof method !== 'string' || method.length === 0) {
    throw new InvalidArgumentError('method must be a non-empty string');
  }
  const signal = options.signal;
  if (signal?.aborted) throw new AbortedError(`request ${method} aborted`, { cause: signal.reason });
  const timeoutMs = durationOrInfinity('timeoutMs', options.timeoutMs, defaultTimeoutMs);
  const r = new OutgoingRequest(owner, method, owner.codec.encode(params), timeoutMs, signal);
  if (timeoutMs > 0 && Number.isFinite(timeoutMs)) r.deadline = deadlines.add(timeoutMs, onRequestTimeout, r);
  if (signal !== undefined) {
    r.onAbort = () => giveUp(r, new AbortedError(`request ${r.method} aborted`, { cause: signal.reason }));
    signal.addEventListener('abort', r.onAbort, { once: true });
  }
  return r;
}

function onRequestTimeout(arg: unknown): void {
  const r = arg as OutgoingRequest;
  r.deadline = undefined;
  giveUp(r, new RequestTimeoutError(r.method, r.timeoutMs));
}

/** The caller stops waiting for `r` (its deadline, its signal): CANCEL on the wire, then settle. */
export function giveUp(r: OutgoingRequest, error: LonglinkError): void {
  r.carrier?.cancel(r);
  r.settle(error, undefined);
}
