/**
 * Shared mode: a pool of longlink protocol clients. One connection carries many requests at
 * once (they are matched by id), so nothing is lent exclusively: `pool.request()` puts each
 * request on the connection with the fewest requests in flight, over up to N connections per
 * endpoint, and over several endpoints chosen by power of two choices.
 *
 * Who owns what:
 * - The pool owns the connections' lives. Each endpoint has a `Pool<Client>` (pool.ts) that
 *   creates Clients with backoff, full jitter and a circuit breaker; the endpoint holds every
 *   Client it uses as a lease for as long as it uses it. Clients are made with `reconnect: false`:
 *   a Client that lost its connection is replaced by the pool (which spreads the retries and
 *   fails fast while the endpoint is down), never reconnected by itself behind the pool's back.
 * - The Client owns the protocol: ids, deadlines, CANCEL, and GOAWAY's split of the outstanding
 *   requests into "the server took these" (answered on the old connection) and "the server never
 *   read these". With reconnect off, the Client fails the second kind at once with a
 *   ConnectionClosedError that carries no close reason — the one ConnectionClosedError it raises
 *   for a request that never reached a server that processes it. The pool sends exactly those
 *   again, on another connection; a request a server may have processed is never sent twice
 *   unless the caller said it is idempotent. (A typed "not processed" flag on the error, from the
 *   client layer, would make this contract explicit.)
 *
 * Endpoint health, for the balancer (balancer.ts):
 *
 *   healthy ── GOAWAY ─────────────────────────▶ degraded ── a new connection to it ──▶ healthy
 *      │   ── connections lost (RST, or FIN with requests in flight), none left ─▶ degraded
 *      │   ── N consecutive failures (failed connects, lost connections) ─▶ ejected (jittered)
 *      └── breaker open (pool.ts: consecutive failed connects) ─▶ skipped; requests fail fast
 *          with ERR_ENDPOINT_UNAVAILABLE when every endpoint is skipped
 *
 * Degraded and ejected endpoints get work only when no healthy endpoint is left, so a pool over
 * one server that rotates its connections (or restarts) waits for it rather than failing.
 */

import { EventEmitter } from 'node:events';
import { Client, type ClientOptions, RequestTimeoutError } from '../client/client.js';
import type { CloseInfo } from '../connection/close-reason.js';
import {
  AbortedError,
  ConnectionClosedError,
  InvalidArgumentError,
  LonglinkError,
  RequestNotSentError,
} from '../errors.js';
import { RemoteError } from '../protocol/errors.js';
import { type Deadline, Deadlines } from '../util/deadlines.js';
import { type BalancedTarget, Balancer, type EjectionInfo, type OutlierOptions } from './balancer.js';
import { type EndpointAddress, type EndpointEvents, EndpointRegistry } from './endpoints.js';
import { AcquireTimeoutError, EndpointUnavailableError, PoolClosedError, PoolFullError } from './errors.js';
import {
  type DestroyDetail,
  DestroyReason,
  fastNow,
  type Lease,
  Pool,
  type PoolOptions,
  type PoolStats,
} from './pool.js';

// ---------------------------------------------------------------------------------------------
// Public types

/** Options of {@link createClientPool}. Client options apply to every connection. */
export interface ClientPoolOptions
  extends Omit<ClientOptions, 'host' | 'port' | 'reconnect' | 'whenDisconnected' | 'signal'> {
  /** The server, when there is one (or use `endpoints`). Default host 127.0.0.1. */
  host?: string;
  port?: number;
  /** Several servers. Endpoints can be added and removed later. */
  endpoints?: EndpointAddress[];
  /** Connections per endpoint that take new requests (opened as load grows). Default 2. */
  connectionsPerEndpoint?: number;
  /** Connections per endpoint kept open even when idle. Default 1. */
  minConnectionsPerEndpoint?: number;
  /** How long a request waits for a connection to an endpoint that has none ready. Default 10 000 ms. */
  acquireTimeoutMs?: number;
  /** Most requests waiting for a connection, per endpoint; one more gets ERR_POOL_FULL. Default 10 000. */
  maxWaiters?: number;
  /** Close a connection with nothing in flight for this long, above the minimum. 0 = never. Default 30 000 ms. */
  idleTimeoutMs?: number;
  /** Retire a connection this long after it opened (new work moves first; in-flight finishes). 0 = never. Default 1 800 000 ms. */
  maxLifetimeMs?: number;
  /** Each lifetime is shortened by a random fraction up to this. Default 0.1. */
  maxLifetimeJitter?: number;
  /** Deadline of the graceful close of a retired connection. Default 5 000 ms. */
  retireTimeoutMs?: number;
  /** Connects (with HELLO) in flight at once, per endpoint. Default min(2 × connectionsPerEndpoint, 4). */
  maxConcurrentCreates?: number;
  /** Backoff after a failed connect: random(0, min(max, initial · 2ⁿ⁻¹)). Default 50 ms. */
  createRetryInitialMs?: number;
  /** Cap of that backoff. Default 5 000 ms. */
  createRetryMaxMs?: number;
  /** Consecutive failed connects that open an endpoint's breaker. 0 = no breaker. Default 5. */
  breakerThreshold?: number;
  /** Open time before one probe connect (+ up to 25 % jitter). Default 5 000 ms. */
  breakerCooldownMs?: number;
  /** Outlier ejection across endpoints. */
  outlier?: OutlierOptions;
  /** Period of the idle/lifetime pass. Default: derived, at most 1 000 ms. */
  housekeepingIntervalMs?: number;
  /** Monotonic milliseconds (inject for tests). Default: cached performance.now. */
  clock?: () => number;
  /** Random numbers in [0, 1) for balancing and jitter. Default Math.random. */
  random?: () => number;
}

/** Options of one pooled request. */
export interface PoolRequestOptions {
  /** The request's deadline, counted from the call (waiting for a connection included). Default `requestTimeoutMs`. */
  timeoutMs?: number;
  signal?: AbortSignal;
  /**
   * The request may run twice without harm: if its connection dies with it in flight it is sent
   * once more, to another endpoint when there is one. Default false — a request whose connection
   * died fails with the close reason, since the server may have processed it.
   */
  idempotent?: boolean;
}

/** One connection in {@link SharedEndpointStats}. */
export interface SharedConnectionStats {
  /** Requests on it now. */
  inflight: number;
  /** Requests it carried. */
  requests: number;
  ageMs: number;
  /** Why it takes no new work (`going-away`, `idle-timeout`, `max-lifetime`, `drain`), or undefined. */
  draining: string | undefined;
}

/** Per-endpoint stats of a client pool. */
export interface SharedEndpointStats {
  endpoint: string;
  /** `going-away`: it sent GOAWAY and no new connection to it has been made since. */
  state: 'open' | 'going-away' | 'removed';
  /** Connections taking new requests. */
  connections: number;
  /** Connections finishing their requests before they close. */
  draining: number;
  inflight: number;
  /** Requests waiting for a connection. */
  waiting: number;
  /** Connects in flight. */
  creating: number;
  /** Used only when no healthy endpoint is left (GOAWAY, or lost its connections). */
  degraded: boolean;
  ejected: boolean;
  ejectedForMs: number;
  breaker: PoolStats['breaker'];
  perConnection: SharedConnectionStats[];
  totals: {
    requests: number;
    /** Requests the server never processed (GOAWAY), sent again elsewhere. */
    resent: number;
    created: number;
    createErrors: number;
    destroyed: number;
  };
}

/** Totals over every endpoint, and each endpoint's own. */
export interface ClientPoolStats {
  connections: number;
  draining: number;
  inflight: number;
  waiting: number;
  creating: number;
  endpoints: SharedEndpointStats[];
  totals: { requests: number; resent: number; retried: number };
}

/** The events a ClientPool emits; `endpoint` is `host:port`. */
export interface ClientPoolEvents extends EndpointEvents {
  /** A new connection (Client) to the endpoint is up. */
  connect: [client: Client, endpoint: string];
  /** A connection closed without the pool asking (lost, or after the server's GOAWAY). */
  disconnect: [info: CloseInfo, endpoint: string];
  /** A server announced it is going away: that endpoint gets no new work until it is reached again. */
  goaway: [endpoint: string, reason: string, retryAfterMs: number];
  /** A request was sent again: the server never processed it, or it is idempotent and its connection died. */
  resend: [info: { method: string; endpoint: string; why: 'not-processed' | 'idempotent-retry' }];
  /** Every connection the pool closes, with why. */
  destroy: [client: Client, reason: string, detail: DestroyDetail, endpoint: string];
  createError: [error: unknown, consecutiveFailures: number, endpoint: string];
  /** A server push, from any connection. */
  notify: [topic: string, payload: unknown, endpoint: string];
  /** Settings that contradict each other (heartbeat vs. idle budget …). */
  warning: [message: string];
  /** close() finished. */
  close: [];
}

// ---------------------------------------------------------------------------------------------
// Internals

/** Why a held connection takes no new work. */
const Drain = {
  /** The server sent GOAWAY: the Client closes the connection once its requests are answered. */
  GOING_AWAY: 'going-away',
  /** The endpoint was removed or the pool is closing: released to its draining Pool when done. */
  DRAIN: 'drain',
} as const;

/** A request is sent again at most this often when servers keep going away under it. */
const MAX_RESENDS = 3;

const kTag = Symbol('longlink.pool.client');

/** What a pooled Client knows about its place in the pool. */
interface ClientTag {
  readonly ep: SharedEndpoint;
  member: Member | undefined;
  closingByPool: boolean;
}

type Tagged = Client & { [kTag]?: ClientTag };

function tagOf(client: Client): ClientTag | undefined {
  return (client as Tagged)[kTag];
}

// Client listeners at module scope, reaching their endpoint through the client.
function onClientGoaway(this: Client, reason: string, retryAfterMs: number): void {
  tagOf(this)?.ep.clientGoaway(this, reason, retryAfterMs);
}

function onClientDisconnect(this: Client, info: CloseInfo): void {
  tagOf(this)?.ep.clientDisconnected(this, info);
}

function onClientNotify(this: Client, topic: string, payload: unknown): void {
  const tag = tagOf(this);
  if (tag !== undefined) tag.ep.owner.emit('notify', topic, payload, tag.ep.key);
}

/** A connection the endpoint holds (a borrowed lease of its Pool). */
class Member {
  inflight = 0;
  requests = 0;
  /** `requests` at the last housekeeping pass that saw it change (idle detection without a clock read per request). */
  seenRequests = 0;
  lastUsedAt: number;
  draining: string | undefined = undefined;
  constructor(
    readonly client: Client,
    readonly lease: Lease<Client>,
    readonly createdAt: number,
    readonly retireAt: number,
  ) {
    this.lastUsedAt = createdAt;
  }
}

/** A request waiting for a connection to an endpoint that has none ready. */
class Waiter {
  settled = false;
  deadline: Deadline | undefined = undefined;
  onAbort: (() => void) | undefined = undefined;
  constructor(
    readonly ep: SharedEndpoint,
    readonly method: string,
    readonly timeoutMs: number,
    readonly signal: AbortSignal | undefined,
    readonly resolve: () => void,
    readonly reject: (err: unknown) => void,
  ) {}
}

function onWaiterTimeout(arg: unknown): void {
  const w = arg as Waiter;
  w.deadline = undefined;
  w.ep.dropWaiter(w, new RequestTimeoutError(w.method, w.timeoutMs, { cause: w.ep.lastCreateError() }));
}

/**
 * True for the error a pooled Client (reconnect off) fails a request with when no server
 * processed it: written before the server's GOAWAY was read and above its lastId, or never
 * written at all. Every ConnectionClosedError raised for a request that was on a connection
 * when it closed carries that close's reason.
 */
function notProcessed(err: unknown): boolean {
  return err instanceof RequestNotSentError;
}

/** The request was on a connection that died: the server may or may not have processed it. */
function lostInFlight(err: unknown): boolean {
  return err instanceof ConnectionClosedError && err.reason !== undefined;
}

class SharedEndpoint implements BalancedTarget {
  /** Held connections taking new requests. */
  readonly usable: Member[] = [];
  /** Every held connection, draining ones too. */
  readonly members = new Set<Member>();
  readonly waiters = new Set<Waiter>();
  pool!: Pool<Client>;
  inflight = 0;
  /** pool.acquire() calls outstanding. */
  acquiring = 0;
  removed = false;
  goingAway = false;
  /** Lost connections abnormally or failed to connect since the last successful connect. */
  suspect = false;
  /** A failure was reported to the balancer since the last success (skips the call otherwise). */
  sawFailure = false;
  private probeTimer: NodeJS.Timeout | undefined;
  readonly totals = { requests: 0, resent: 0 };

  constructor(
    readonly owner: ClientPool,
    readonly key: string,
    readonly host: string,
    readonly port: number,
  ) {}

  // BalancedTarget
  load(): number {
    return this.inflight + this.waiters.size;
  }
  capacity(): number {
    return this.owner.perEndpoint;
  }
  idle(): number {
    let n = 0;
    for (const m of this.usable) if (m.inflight === 0) n++;
    return n;
  }
  breaker(): 'closed' | 'open' | 'half-open' {
    return this.pool.breakerState;
  }
  accepting(): boolean {
    return !this.removed;
  }
  degraded(): boolean {
    return this.goingAway || (this.suspect && this.usable.length === 0);
  }

  lastCreateError(): unknown {
    return this.pool.stats().breaker.lastError;
  }

  /**
   * The connection with the fewest requests in flight; ties go to the oldest, so light load stays
   * on few connections and the surplus ones of a burst can idle out, while under load the work
   * spreads evenly. When even the chosen one is busy, another connection is opened in the
   * background while the endpoint is below N; this request does not wait for it.
   */
  choose(): Member | undefined {
    const list = this.usable;
    const n = list.length;
    if (n === 0) return undefined;
    let best = list[0] as Member;
    for (let i = 1; i < n && best.inflight > 0; i++) {
      const m = list[i] as Member;
      if (m.inflight < best.inflight) best = m;
    }
    if (best.inflight > 0 && n + this.acquiring < this.owner.perEndpoint) this.grow(false);
    return best;
  }

  /** Borrows one more Client from the endpoint's Pool (which connects, with backoff and breaker). */
  grow(replacement: boolean): void {
    if (this.removed || this.owner.closed || this.pool.breakerState === 'open') return;
    // A replacement for a connection about to retire may exceed N by one; the Pool's max (2N)
    // bounds the sockets either way.
    if (this.usable.length + this.acquiring >= this.owner.perEndpoint + (replacement ? 1 : 0)) return;
    this.acquiring++;
    this.pool.acquire().then(
      (lease) => this.adopt(lease),
      (err: unknown) => this.acquireFailed(err),
    );
  }

  private adopt(lease: Lease<Client>): void {
    this.acquiring--;
    const client = lease.resource;
    const tag = tagOf(client) as ClientTag;
    if (this.removed || this.owner.closed) {
      lease.release(); // the Pool is draining: it closes it
      return;
    }
    if (!client.connected) {
      lease.destroy('not-connected');
      if (this.waiters.size > 0 && this.usable.length === 0) this.grow(false);
      return;
    }
    const now = this.owner.clock();
    const m = new Member(client, lease, now, this.owner.retireAt(now));
    tag.member = m;
    this.members.add(m);
    this.usable.push(m);
    this.retireExpired(now);
    this.wake();
  }

  private acquireFailed(err: unknown): void {
    this.acquiring--;
    if (this.usable.length > 0 || this.acquiring > 0 || this.waiters.size === 0) return;
    // Nothing to serve the waiters with: the breaker opened (fail fast), the acquire timed out,
    // or the pool is closing. They try another endpoint, or fail with this.
    this.rejectWaiters(err);
  }

  /** A new connection to the endpoint is up: it is reachable again. */
  created(client: Client): void {
    this.goingAway = false;
    this.suspect = false;
    if (this.sawFailure) {
      this.sawFailure = false;
      this.owner.balancer.recordSuccess(this);
    }
    this.owner.emit('connect', client, this.key);
    // Made for the Pool's minimum, not for one of our acquires: take it into use.
    queueMicrotask(() => {
      if (this.pool.idleCount > 0) this.grow(false);
    });
  }

  createFailed(): void {
    this.suspect = true;
    this.recordFailure();
  }

  recordFailure(): void {
    if (this.removed) return;
    this.sawFailure = true;
    this.owner.balancer.recordFailure(this);
  }

  /** A request on `m` settled; `answered` when the server answered it (RESPONSE or ERROR). */
  settled(m: Member, answered: boolean): void {
    m.inflight--;
    this.inflight--;
    if (answered && this.sawFailure) {
      this.sawFailure = false;
      this.owner.balancer.recordSuccess(this);
    }
    if (m.draining !== undefined && m.inflight === 0) this.finish(m);
  }

  /*
   * GOAWAY on one of our connections:
   *
   *   server ── GOAWAY(lastId) ──▶ Client: ids ≤ lastId stay (answered here, then the Client
   *                                closes the connection: 'disconnect' ─▶ lease destroyed)
   *                                ids > lastId fail as not processed ─▶ pool.request sends
   *                                them again, to another connection (no duplicates: the server
   *                                promised it never ran them)
   *   endpoint ─▶ degraded (no new work while a healthy endpoint exists)
   *            ─▶ probe after retryAfterMs: a new connection succeeds ─▶ healthy again
   *                                         connects refused ─▶ backoff, breaker (pool.ts)
   */
  clientGoaway(client: Client, reason: string, retryAfterMs: number): void {
    const m = tagOf(client)?.member;
    if (m !== undefined && this.members.has(m) && m.draining === undefined) {
      m.draining = Drain.GOING_AWAY;
      this.unlist(m);
    }
    if (this.removed || this.owner.closed) return;
    this.goingAway = true;
    this.owner.emit('goaway', this.key, reason, retryAfterMs);
    if (this.probeTimer === undefined) {
      const delay = Math.max(0, retryAfterMs) + this.owner.random() * 10;
      this.probeTimer = setTimeout(SharedEndpoint.probe, delay, this);
      this.probeTimer.unref();
    }
  }

  private static probe(ep: SharedEndpoint): void {
    ep.probeTimer = undefined;
    if (ep.goingAway) ep.grow(false);
  }

  clientDisconnected(client: Client, info: CloseInfo): void {
    const tag = tagOf(client) as ClientTag;
    if (tag.closingByPool) return;
    const m = tag.member;
    if (m === undefined || !this.members.has(m)) {
      this.pool.evict(client, `closed-${info.reason}`); // idle in the Pool, not yet ours
      this.owner.emit('disconnect', info, this.key);
      return;
    }
    this.unlist(m);
    this.members.delete(m);
    const goaway = info.reason === 'going-away';
    // A reset, or the server's FIN with our requests in flight, is the endpoint's failure; a
    // graceful FIN on an idle connection is a server's idle timeout.
    if (!goaway && (!info.graceful || (info.initiator === 'remote' && m.inflight > 0))) {
      this.suspect = true;
      this.recordFailure();
    }
    m.lease.destroy(goaway ? 'going-away' : `closed-${info.reason}`);
    this.owner.emit('disconnect', info, this.key);
    if (this.usable.length === 0 && this.waiters.size > 0) this.grow(false);
  }

  /** Stops giving `m` new work; it is closed once its requests are answered. */
  retire(m: Member, reason: string): void {
    if (m.draining !== undefined) return;
    m.draining = reason;
    this.unlist(m);
    if (m.inflight === 0) this.finish(m);
  }

  private finish(m: Member): void {
    if (m.draining === Drain.GOING_AWAY) return; // the Client closes it; 'disconnect' destroys it
    if (!this.members.delete(m)) return;
    if (m.draining === Drain.DRAIN) m.lease.release();
    else m.lease.destroy(m.draining); // idle-timeout, max-lifetime: graceful
  }

  private unlist(m: Member): void {
    const i = this.usable.indexOf(m);
    if (i >= 0) this.usable.splice(i, 1);
  }

  /** Idle and lifetime pass (from the owner's one timer). */
  housekeep(now: number): void {
    const o = this.owner;
    // Made for the Pool's minimum or for an acquire that gave up meanwhile: take it into use.
    if (this.pool.idleCount > 0) this.grow(false);
    for (const m of this.usable.slice()) {
      if (m.requests !== m.seenRequests || m.inflight > 0) {
        m.seenRequests = m.requests;
        m.lastUsedAt = now;
      }
      if (m.retireAt <= now) {
        // Retire once a replacement is up, so a pool of one connection never stalls on it.
        if (this.usable.length > 1) this.retire(m, DestroyReason.MAX_LIFETIME);
        else if (this.acquiring === 0) this.grow(true);
      } else if (
        o.idleTimeoutMs > 0 &&
        m.inflight === 0 &&
        now - m.lastUsedAt >= o.idleTimeoutMs &&
        this.usable.length > this.pool.min
      ) {
        this.retire(m, DestroyReason.IDLE_TIMEOUT);
      }
    }
  }

  private retireExpired(now: number): void {
    for (const m of this.usable.slice()) {
      if (m.retireAt <= now && this.usable.length > 1) this.retire(m, DestroyReason.MAX_LIFETIME);
    }
  }

  // --- waiting for a connection

  /**
   * Resolves when a connection to this endpoint is up (the caller then chooses again); rejects
   * with the breaker's EndpointUnavailableError, AcquireTimeoutError, PoolFullError,
   * PoolClosedError, RequestTimeoutError (its own deadline) or AbortedError.
   */
  waitForConnection(
    method: string,
    timeoutMs: number,
    leftMs: number,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    if (this.owner.closed) return Promise.reject(new PoolClosedError('the client pool is closed'));
    const unavailable = this.pool.unavailableError();
    if (unavailable !== undefined) return Promise.reject(unavailable);
    if (this.removed) return Promise.reject(this.removedError());
    if (this.waiters.size >= this.owner.maxWaiters)
      return Promise.reject(new PoolFullError(this.owner.maxWaiters));
    if (signal?.aborted)
      return Promise.reject(new AbortedError(`request ${method} aborted`, { cause: signal.reason }));
    return new Promise<void>((resolve, reject) => {
      const w = new Waiter(this, method, timeoutMs, signal, resolve, reject);
      this.waiters.add(w);
      if (leftMs > 0 && Number.isFinite(leftMs))
        w.deadline = this.owner.deadlines.add(leftMs, onWaiterTimeout, w);
      if (signal !== undefined) {
        w.onAbort = () =>
          this.dropWaiter(w, new AbortedError(`request ${method} aborted`, { cause: signal.reason }));
        signal.addEventListener('abort', w.onAbort, { once: true });
      }
      if (this.acquiring === 0) this.grow(false);
    });
  }

  private settleWaiter(w: Waiter): boolean {
    if (w.settled) return false;
    w.settled = true;
    this.waiters.delete(w);
    if (w.deadline !== undefined) this.owner.deadlines.cancel(w.deadline);
    if (w.onAbort !== undefined) w.signal?.removeEventListener('abort', w.onAbort);
    return true;
  }

  dropWaiter(w: Waiter, err: unknown): void {
    if (this.settleWaiter(w)) w.reject(err);
  }

  private wake(): void {
    for (const w of [...this.waiters]) if (this.settleWaiter(w)) w.resolve();
  }

  rejectWaiters(err: unknown): void {
    for (const w of [...this.waiters]) if (this.settleWaiter(w)) w.reject(err);
  }

  removedError(): EndpointUnavailableError {
    return new EndpointUnavailableError(this.key, 0, { cause: new Error('endpoint removed') });
  }

  /** removeEndpoint() / close(): no new work; every connection closes once its requests are answered. */
  shutdown(timeoutMs: number | undefined): Promise<void> {
    if (this.probeTimer !== undefined) clearTimeout(this.probeTimer);
    this.probeTimer = undefined;
    const p = this.pool.drain(timeoutMs === undefined ? {} : { timeoutMs });
    for (const m of [...this.usable]) this.retire(m, Drain.DRAIN);
    return p;
  }

  stats(now: number): SharedEndpointStats {
    const s = this.pool.stats();
    const perConnection: SharedConnectionStats[] = [];
    let draining = 0;
    for (const m of this.members) {
      if (m.draining !== undefined) draining++;
      perConnection.push({
        inflight: m.inflight,
        requests: m.requests,
        ageMs: now - m.createdAt,
        draining: m.draining,
      });
    }
    const ejectedForMs = this.owner.balancer.ejectedForMs(this, now);
    return {
      endpoint: this.key,
      state: this.removed ? 'removed' : this.goingAway ? 'going-away' : 'open',
      connections: this.usable.length,
      draining,
      inflight: this.inflight,
      waiting: this.waiters.size,
      creating: s.creating,
      degraded: this.degraded(),
      ejected: ejectedForMs > 0,
      ejectedForMs,
      breaker: s.breaker,
      perConnection,
      totals: {
        requests: this.totals.requests,
        resent: this.totals.resent,
        created: s.totals.created,
        createErrors: s.totals.createErrors,
        destroyed: s.totals.destroyed,
      },
    };
  }
}

function count(name: string, v: number | undefined, fallback: number, min: number): number {
  if (v === undefined) return fallback;
  if (!Number.isInteger(v) || v < min) throw new InvalidArgumentError(`${name} must be an integer >= ${min}`);
  return v;
}

function ms(name: string, v: number | undefined, fallback: number): number {
  if (v === undefined) return fallback;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0)
    throw new InvalidArgumentError(`${name} must be a finite number >= 0`);
  return v;
}

// ---------------------------------------------------------------------------------------------
// ClientPool

/**
 * Shared mode: longlink requests spread over up to N connections per endpoint (fewest in flight
 * first) and over several endpoints (power of two choices, outlier ejection, drain awareness).
 * Create it with {@link createClientPool}.
 *
 * @example
 * ```ts
 * const pool = createClientPool({
 *   endpoints: [{ host: '10.0.0.5', port: 9000 }, { host: '10.0.0.6', port: 9000 }],
 *   connectionsPerEndpoint: 4,
 * });
 * try {
 *   const user = await pool.request('user.get', { id: 7 }, { timeoutMs: 2000 });
 *   await pool.request('counter.read', {}, { idempotent: true }); // may be retried once elsewhere
 * } finally {
 *   await pool.close();
 * }
 * ```
 */
export class ClientPool extends EventEmitter {
  /** @internal */ readonly balancer: Balancer<SharedEndpoint>;
  /** @internal */ readonly deadlines: Deadlines;
  /** @internal */ readonly clock: () => number;
  /** @internal */ readonly random: () => number;
  /** @internal */ readonly perEndpoint: number;
  /** @internal */ readonly idleTimeoutMs: number;
  /** @internal */ readonly maxWaiters: number;
  /** @internal */ closed = false;
  private readonly clientOptions: Omit<ClientOptions, 'port'>;
  private readonly minPerEndpoint: number;
  private readonly requestTimeoutMs: number;
  private readonly maxLifetimeMs: number;
  private readonly maxLifetimeJitter: number;
  private readonly retireTimeoutMs: number;
  private readonly poolOptions: PoolOptions;
  private readonly registry: EndpointRegistry<SharedEndpoint>;
  private readonly timer: NodeJS.Timeout;
  private closing: Promise<void> | undefined;
  private readonly totals = { requests: 0, resent: 0, retried: 0 };

  constructor(options: ClientPoolOptions) {
    super();
    const {
      host,
      port,
      endpoints,
      connectionsPerEndpoint,
      minConnectionsPerEndpoint,
      acquireTimeoutMs,
      maxWaiters,
      idleTimeoutMs,
      maxLifetimeMs,
      maxLifetimeJitter,
      retireTimeoutMs,
      maxConcurrentCreates,
      createRetryInitialMs,
      createRetryMaxMs,
      breakerThreshold,
      breakerCooldownMs,
      outlier,
      housekeepingIntervalMs,
      clock,
      random,
      ...clientOptions
    } = options ?? ({} as ClientPoolOptions);
    const list = endpoints ?? (port === undefined ? [] : [{ host: host ?? '127.0.0.1', port }]);
    if (list.length === 0) throw new InvalidArgumentError('createClientPool needs port or endpoints');
    // Fail on bad client options (codec, heartbeat …) here, not in every connect.
    const check = new Client({ ...clientOptions, port: 1 });
    check.once('warning', (message) => this.emit('warning', message));

    this.clientOptions = clientOptions;
    this.perEndpoint = count('connectionsPerEndpoint', connectionsPerEndpoint, 2, 1);
    this.minPerEndpoint = count('minConnectionsPerEndpoint', minConnectionsPerEndpoint, 1, 0);
    if (this.minPerEndpoint > this.perEndpoint)
      throw new InvalidArgumentError('minConnectionsPerEndpoint must be <= connectionsPerEndpoint');
    this.maxWaiters = count('maxWaiters', maxWaiters, 10_000, 0);
    this.idleTimeoutMs = ms('idleTimeoutMs', idleTimeoutMs, 30_000);
    this.maxLifetimeMs = ms('maxLifetimeMs', maxLifetimeMs, 30 * 60_000);
    this.maxLifetimeJitter = ms('maxLifetimeJitter', maxLifetimeJitter, 0.1);
    if (this.maxLifetimeJitter >= 1) throw new InvalidArgumentError('maxLifetimeJitter must be < 1');
    this.retireTimeoutMs = ms('retireTimeoutMs', retireTimeoutMs, 5_000);
    this.requestTimeoutMs = clientOptions.requestTimeoutMs ?? 30_000;
    this.clock = clock ?? fastNow;
    this.random = random ?? Math.random;
    this.deadlines = new Deadlines(this.clock);
    // The Pool makes and ends connections. Idle time and lifetime of the connections in use are
    // handled here (the Pool never retires a borrowed resource); the Pool applies the same limits
    // to the few it holds idle before they are taken into use. Its max is twice N: connections
    // draining after a GOAWAY or at the end of their lifetime still count against it while their
    // replacements open.
    this.poolOptions = {
      min: this.minPerEndpoint,
      max: 2 * this.perEndpoint,
      idleTimeoutMs: this.idleTimeoutMs,
      maxLifetimeMs: this.maxLifetimeMs,
      maxLifetimeJitter: this.maxLifetimeJitter,
      createTimeoutMs: clientOptions.connectTimeoutMs ?? 10_000,
      ...(acquireTimeoutMs === undefined ? {} : { acquireTimeoutMs }),
      ...(maxConcurrentCreates === undefined ? {} : { maxConcurrentCreates }),
      ...(createRetryInitialMs === undefined ? {} : { createRetryInitialMs }),
      ...(createRetryMaxMs === undefined ? {} : { createRetryMaxMs }),
      ...(breakerThreshold === undefined ? {} : { breakerThreshold }),
      ...(breakerCooldownMs === undefined ? {} : { breakerCooldownMs }),
      clock: this.clock,
      random: this.random,
    };
    this.balancer = new Balancer<SharedEndpoint>(
      outlier ?? {},
      this.clock,
      this.random,
      (ep, info) => this.ejected(ep, info),
      (ep) => this.emit('readmit', ep.key),
    );
    this.registry = new EndpointRegistry(this.balancer);
    let hk = 1000;
    if (this.idleTimeoutMs > 0) hk = Math.min(hk, this.idleTimeoutMs / 4);
    if (this.maxLifetimeMs > 0) hk = Math.min(hk, this.maxLifetimeMs / 8);
    const period = ms('housekeepingIntervalMs', housekeepingIntervalMs, Math.max(10, Math.round(hk)));
    this.timer = setTimeout(ClientPool.onTimer, Math.max(1, period), this);
    this.timer.unref();
    for (const e of list) this.addEndpoint(e);
  }

  // -------------------------------------------------------------------------------------------
  // Requests

  /**
   * Sends a request on the least busy connection of a healthy endpoint and resolves with its
   * result. When that endpoint has no connection ready yet, waits for one (within the request's
   * deadline and `acquireTimeoutMs`), moving on to another endpoint if this one turns out to be
   * down. Requests the server never processed (it sent GOAWAY first) are sent again elsewhere.
   *
   * Rejects with RemoteError (the server's answer), RequestTimeoutError, AbortedError,
   * ConnectionClosedError with the close `reason` (the connection died with the request on it:
   * it may have run), EndpointUnavailableError (every endpoint is down: at once while their
   * breakers are open), AcquireTimeoutError, PoolFullError or PoolClosedError.
   */
  request<T = unknown>(method: string, params?: unknown, options: PoolRequestOptions = {}): Promise<T> {
    if (this.closed) return Promise.reject(new PoolClosedError('the client pool is closed'));
    return this.run(method, params, options) as Promise<T>;
  }

  private async run(method: string, params: unknown, options: PoolRequestOptions): Promise<unknown> {
    this.totals.requests++;
    const timeoutMs = options.timeoutMs ?? this.requestTimeoutMs;
    const timed = timeoutMs > 0 && Number.isFinite(timeoutMs);
    const start = timed ? this.clock() : 0;
    const signal = options.signal;
    let tried: Set<SharedEndpoint> | undefined;
    /** After an idempotent request's connection died: prefer any other endpoint. */
    let avoid: SharedEndpoint | undefined;
    let lastError: unknown;
    let resends = 0;
    let mayRetry = options.idempotent === true;
    let turn = 0;
    for (;;) {
      if (this.closed) throw lastError ?? new PoolClosedError('the client pool is closed');
      let ep: SharedEndpoint | undefined;
      if (tried === undefined && avoid === undefined) ep = this.pickFirst();
      else if (avoid === undefined) ep = this.balancer.pick(tried);
      else {
        const excl = new Set(tried);
        excl.add(avoid);
        ep = this.balancer.pick(excl) ?? this.balancer.pick(tried);
        avoid = undefined;
      }
      if (ep === undefined) throw lastError ?? this.allUnavailable();
      // The first attempt has its whole deadline; later ones (after a wait or a resend) what is left.
      const left = timed && turn++ > 0 ? timeoutMs - (this.clock() - start) : timeoutMs;
      if (timed && left <= 0) throw new RequestTimeoutError(method, timeoutMs, { cause: lastError });
      const m = ep.choose();
      if (m === undefined) {
        try {
          await ep.waitForConnection(method, timeoutMs, left, signal);
        } catch (err) {
          if (
            (err instanceof EndpointUnavailableError || err instanceof AcquireTimeoutError) &&
            !this.closed
          ) {
            tried ??= new Set();
            tried.add(ep);
            lastError = err;
            continue;
          }
          throw err;
        }
        continue;
      }
      m.inflight++;
      m.requests++;
      ep.inflight++;
      ep.totals.requests++;
      let result: unknown;
      try {
        result = await m.client.request(
          method,
          params,
          signal === undefined ? { timeoutMs: left } : { timeoutMs: left, signal },
        );
      } catch (err) {
        ep.settled(m, err instanceof RemoteError);
        if (notProcessed(err) && resends < MAX_RESENDS) {
          resends++;
          ep.totals.resent++;
          this.totals.resent++;
          this.emit('resend', { method, endpoint: ep.key, why: 'not-processed' });
          lastError = err;
          continue;
        }
        if (mayRetry && lostInFlight(err)) {
          mayRetry = false; // once
          this.totals.retried++;
          this.emit('resend', { method, endpoint: ep.key, why: 'idempotent-retry' });
          avoid = ep;
          lastError = err;
          continue;
        }
        throw err;
      }
      ep.settled(m, true);
      return result;
    }
  }

  /**
   * Sends a one-way NOTIFY on a ready connection (least busy, of an endpoint chosen as for a
   * request). Returns the send's backpressure signal. Throws EndpointUnavailableError when every
   * endpoint is down, ConnectionClosedError when no connection is ready yet (one is being opened).
   */
  notify(topic: string, payload?: unknown): boolean {
    if (this.closed) throw new PoolClosedError('the client pool is closed');
    const ep = this.balancer.pick();
    if (ep === undefined) throw this.allUnavailable();
    let m = ep.choose();
    if (m === undefined) {
      for (const other of this.balancer.list()) {
        m = other.choose();
        if (m !== undefined) break;
      }
    }
    if (m === undefined) {
      ep.grow(false);
      throw new ConnectionClosedError(`no connection to ${ep.key} is ready yet`, undefined);
    }
    return m.client.notify(topic, payload);
  }

  // -------------------------------------------------------------------------------------------
  // Endpoints

  /** Adds a server; it opens `minConnectionsPerEndpoint` connections at once. Throws if already present. */
  addEndpoint(address: EndpointAddress): void {
    if (this.closed) throw new PoolClosedError('the client pool is closed');
    const ep = this.registry.add(address, (key, host, port) => {
      const e = new SharedEndpoint(this, key, host, port);
      e.pool = this.makePool(e);
      return e;
    });
    this.emit('endpointAdded', ep.key);
  }

  /**
   * Removes a server: it gets no new work at once (requests waiting for it go elsewhere); its
   * connections close gracefully once their requests are answered. Resolves when all are closed.
   */
  async removeEndpoint(address: EndpointAddress): Promise<void> {
    const key = await this.registry.remove(address, (ep) => {
      ep.rejectWaiters(ep.removedError());
      return ep.shutdown(undefined);
    });
    if (key !== undefined) this.emit('endpointRemoved', key);
  }

  /** The endpoints in the pool, as `host:port`. */
  endpoints(): string[] {
    return this.balancer.list().map((e) => e.key);
  }

  // -------------------------------------------------------------------------------------------
  // Control

  /**
   * Closes: new requests and those waiting for a connection fail with ERR_POOL_CLOSED; requests
   * in flight are answered, then every connection closes gracefully. With `timeoutMs`,
   * connections still busy then are aborted (their requests fail with the close reason).
   * Idempotent.
   */
  close(options: { timeoutMs?: number } = {}): Promise<void> {
    if (this.closing) return this.closing;
    this.closed = true;
    clearTimeout(this.timer);
    const err = new PoolClosedError('the client pool is closed');
    const all = this.balancer.list().map((ep) => {
      ep.rejectWaiters(err);
      return ep.shutdown(options.timeoutMs);
    });
    this.closing = Promise.all([...all, ...this.registry.closing()]).then(() => {
      this.deadlines.clear();
      this.emit('close');
    });
    return this.closing;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  stats(): ClientPoolStats {
    const now = this.clock();
    const endpoints = this.balancer.list().map((ep) => ep.stats(now));
    const sum = { connections: 0, draining: 0, inflight: 0, waiting: 0, creating: 0 };
    for (const s of endpoints) {
      sum.connections += s.connections;
      sum.draining += s.draining;
      sum.inflight += s.inflight;
      sum.waiting += s.waiting;
      sum.creating += s.creating;
    }
    return { ...sum, endpoints, totals: { ...this.totals } };
  }

  // -------------------------------------------------------------------------------------------
  // Internals

  /** @internal When a connection opened at `now` retires (jittered so they do not retire together). */
  retireAt(now: number): number {
    if (this.maxLifetimeMs === 0) return Number.POSITIVE_INFINITY;
    return now + this.maxLifetimeMs * (1 - this.maxLifetimeJitter * this.random());
  }

  private static onTimer(pool: ClientPool): void {
    if (pool.closed) return;
    const now = pool.clock();
    for (const ep of pool.balancer.list()) ep.housekeep(now);
    pool.timer.refresh();
  }

  /** The first choice of a request: with one endpoint no choice is needed (tiers do not matter either). */
  private pickFirst(): SharedEndpoint | undefined {
    const list = this.balancer.list();
    if (list.length !== 1) return this.balancer.pick();
    const only = list[0] as SharedEndpoint;
    return only.pool.breakerState === 'open' ? undefined : only;
  }

  private allUnavailable(): EndpointUnavailableError {
    let best: EndpointUnavailableError | undefined;
    const list = this.balancer.list();
    for (const ep of list) {
      const e = ep.pool.unavailableError();
      if (e !== undefined && (best === undefined || e.retryInMs < best.retryInMs)) best = e;
    }
    return (
      best ??
      new EndpointUnavailableError(undefined, 0, {
        cause: new Error(list.length === 0 ? 'no endpoints' : 'no endpoint is taking work'),
      })
    );
  }

  private ejected(ep: SharedEndpoint, info: EjectionInfo): void {
    this.emit('eject', info);
    // Requests waiting for a connection to it would wait on a failing endpoint: send them on.
    ep.rejectWaiters(
      new EndpointUnavailableError(ep.key, info.ejectedForMs, {
        cause: new Error('endpoint ejected as an outlier'),
      }),
    );
  }

  private makePool(ep: SharedEndpoint): Pool<Client> {
    const base = this.clientOptions;
    const retireTimeoutMs = this.retireTimeoutMs;
    const pool = new Pool<Client>(
      {
        create: async (signal) => {
          // reconnect off: the pool replaces lost connections itself (see the top of this file).
          const client = new Client({
            ...base,
            host: ep.host,
            port: ep.port,
            reconnect: false,
            whenDisconnected: 'fail',
            signal,
          });
          (client as Tagged)[kTag] = { ep, member: undefined, closingByPool: false };
          client.on('goaway', onClientGoaway);
          client.on('disconnect', onClientDisconnect);
          client.on('notify', onClientNotify);
          await client.open();
          return client;
        },
        destroy: (client, _reason, detail) => {
          const tag = tagOf(client);
          if (tag !== undefined) tag.closingByPool = true;
          if (!detail.graceful) {
            client.destroy(detail.error instanceof LonglinkError ? detail.error : undefined);
            return;
          }
          return client.close({ graceMs: retireTimeoutMs });
        },
        isUsable: (client) => client.connected,
      },
      { ...this.poolOptions, name: ep.key },
    );
    const key = ep.key;
    pool.on('create', (client) => ep.created(client));
    pool.on('destroy', (client, reason, detail) => this.emit('destroy', client, reason, detail, key));
    pool.on('createError', (err, n) => {
      this.emit('createError', err, n, key);
      ep.createFailed();
    });
    pool.on('breakerOpen', (info) => this.emit('breakerOpen', { ...info, endpoint: key }));
    pool.on('breakerHalfOpen', () => this.emit('breakerHalfOpen', key));
    pool.on('breakerClose', () => this.emit('breakerClose', key));
    return pool;
  }
}

/**
 * Creates a shared-mode pool of longlink clients.
 *
 * @example
 * ```ts
 * const pool = createClientPool({ port: 9000, connectionsPerEndpoint: 4 });
 * const results = await Promise.all(ids.map((id) => pool.request('user.get', { id })));
 * await pool.close();
 * ```
 */
export function createClientPool(options: ClientPoolOptions): ClientPool {
  return new ClientPool(options);
}

// Typed events: merged into the class's instance type.
export interface ClientPool {
  on<K extends keyof ClientPoolEvents>(event: K, listener: (...args: ClientPoolEvents[K]) => void): this;
  once<K extends keyof ClientPoolEvents>(event: K, listener: (...args: ClientPoolEvents[K]) => void): this;
  off<K extends keyof ClientPoolEvents>(event: K, listener: (...args: ClientPoolEvents[K]) => void): this;
  emit<K extends keyof ClientPoolEvents>(event: K, ...args: ClientPoolEvents[K]): boolean;
}
