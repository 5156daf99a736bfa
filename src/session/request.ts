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
import { channels, type RequestTrace } from '../util/channels.js';
import { durationOrInfinity, timerLimit } from '../util/check.js';
import { now } from '../util/clock.js';
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
  /**
   * Sent with the request (protocol 1.1; a `traceparent`, a tenant): lowercase keys of
   * `[a-z0-9._-]`, string values, at most 32 entries (PROTOCOL.md §3.2.1). The handler sees it as
   * `ctx.metadata`. On a connection that agreed on 1.0 it is not sent. Its entries are read
   * once, when the request is made (a later change to the object is not sent).
   */
  metadata?: Readonly<Record<string, string>>;
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
  /** What it carries besides its params (1.1), if anything. */
  metadata: Readonly<Record<string, string>> | undefined = undefined;
  /** The tracing channel's message, while someone subscribes to `longlink:client:request`. */
  trace: RequestTrace | undefined = undefined;
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
    let value: unknown;
    if (error === undefined) {
      try {
        value = this.owner.codec.decode(payload as Buffer);
      } catch (err) {
        error = new LonglinkError('ERR_BAD_PAYLOAD', 'response payload could not be decoded', { cause: err });
      }
    }
    const trace = this.trace;
    if (trace !== undefined) traceSettled(trace, error, value);
    if (error !== undefined) this.reject(error);
    else this.resolve(value);
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
  const timeoutMs = timerLimit(
    'timeoutMs',
    durationOrInfinity('timeoutMs', options.timeoutMs, defaultTimeoutMs),
  );
  const metadata = options.metadata;
  if (metadata !== undefined && (typeof metadata !== 'object' || metadata === null)) {
    throw new InvalidArgumentError('metadata must be an object of strings');
  }
  const r = new OutgoingRequest(owner, method, owner.codec.encode(params), timeoutMs, signal);
  if (metadata !== undefined) r.metadata = metadata;
  if (channels.clientRequest.hasSubscribers) traceStart(r);
  // What the caller passed, as it is now: a getter or a Proxy runs here, once, and not later
  // while the request is being encoded into the connection's output (slab.ts), nor again when a
  // reconnecting client sends it on its next connection.
  if (r.metadata !== undefined) r.metadata = snapshot(r.metadata);
  if (timeoutMs > 0 && Number.isFinite(timeoutMs)) r.deadline = deadlines.add(timeoutMs, onRequestTimeout, r);
  if (signal !== undefined) {
    r.onAbort = () => giveUp(r, new AbortedError(`request ${r.method} aborted`, { cause: signal.reason }));
    signal.addEventListener('abort', r.onAbort, { once: true });
  }
  return r;
}

/** Own enumerable entries, copied into a plain object without a prototype. */
function snapshot(m: Readonly<Record<string, string>>): Readonly<Record<string, string>> {
  const out: Record<string, string> = Object.create(null);
  for (const [k, v] of Object.entries(m)) out[k] = v;
  return out;
}

/**
 * The tracing channel (util/channels.ts): `start` when the request is made — a subscriber may add
 * entries to `metadata` there (OpenTelemetry injects `traceparent`), and they are sent — `end` right
 * after (the call returned), then `error` / `asyncStart` / `asyncEnd` when it settles.
 */
function traceStart(r: OutgoingRequest): void {
  const trace: RequestTrace = {
    side: 'client',
    method: r.method,
    requestId: 0,
    connectionId: undefined,
    metadata: r.metadata === undefined ? {} : { ...r.metadata },
    // Settles later, at asyncEnd: subscribers that finish a request at `end` unless it is marked
    // async (the server's convention, read by observe/recorder.ts) must not count it done here.
    async: true,
  };
  r.trace = trace;
  const tc = channels.clientRequest;
  tc.start.publish(trace);
  tc.end.publish(trace);
  const m = trace.metadata;
  if (m !== undefined && Object.keys(m).length > 0) r.metadata = m;
}

function traceSettled(trace: RequestTrace, error: unknown, value: unknown): void {
  const tc = channels.clientRequest;
  if (error !== undefined) {
    trace.error = error;
    tc.error.publish(trace);
  } else trace.result = value;
  tc.asyncStart.publish(trace);
  tc.asyncEnd.publish(trace);
}

function onRequestTimeout(arg: unknown): void {
  const r = arg as OutgoingRequest;
  r.deadline = undefined;
  giveUp(r, new RequestTimeoutError(r.method, r.timeoutMs));
}

/**
 * What the server is told of `r`'s deadline (protocol 1.1): the ms the caller still waits, rounded
 * up (a caller with 0.3 ms left still waits); undefined without a deadline.
 *
 * `fresh`: `r` is being sent in the same synchronous call that made it (request() → send), so
 * what is left is its whole timeout less the microseconds since its deadline was set: the timeout
 * rounded up is that figure (or, for a fractional timeout, at most 1 ms above it — never below,
 * so the server never gives up before the caller), without a second clock reading per request.
 */
export function remainingMs(r: OutgoingRequest, fresh: boolean): number | undefined {
  const d = r.deadline;
  if (d === undefined) return undefined;
  return Math.min(0xffff_ffff, Math.max(1, Math.ceil(fresh ? r.timeoutMs : d.at - now())));
}

/** The caller stops waiting for `r` (its deadline, its signal): CANCEL on the wire, then settle. */
export function giveUp(r: OutgoingRequest, error: LonglinkError): void {
  r.carrier?.cancel(r);
  r.settle(error, undefined);
}
