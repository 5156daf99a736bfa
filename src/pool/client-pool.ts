/**
 * Shared mode: a pool of longlink client sessions. One session carries many requests at once
 * (they are matched by id), so nothing is lent to a caller: `pool.request()` puts each request on
 * the session with the fewest requests in flight, over up to N sessions per endpoint, and over
 * several endpoints chosen by power of two choices.
 *
 * Who owns what:
 * - Each endpoint's Pool<ClientSession> (pool.ts) owns the sessions' lives — connects with
 *   backoff and breaker, the minimum, idle time, lifetime — and the one queue of requests waiting
 *   for a session (shared-endpoint.ts). A lost session is replaced through it, never reconnected
 *   by itself: sessions do not reconnect (src/session/client-session.ts), which is what makes
 *   them poolable.
 * - The session owns the protocol: ids, deadlines, CANCEL, and GOAWAY's split of what is
 *   outstanding into "the server took these" (answered there) and "the server never read these",
 *   which it fails with RequestNotSentError. The request loop below sends exactly those again,
 *   on another session; a request a server may have run is never sent twice unless the caller
 *   said it is idempotent.
 * - The endpoints, their balancer and the events about them are the EndpointSet both pools share
 *   (endpoint-set.ts).
 */

import { EventEmitter } from 'node:events';
import type { CloseInfo } from '../connection/close-reason.js';
import { AbortedError, ConnectionClosedError, InvalidArgumentError, RequestNotSentError } from '../errors.js';
import { RemoteError } from '../protocol/errors.js';
import type { ClientSession } from '../session/client-session.js';
import { checkSessionOptions, type SessionConfig, type SessionOptions } from '../session/options.js';
import { RequestTimeoutError } from '../session/request.js';
import { finiteAtLeast, nonNegativeOrInfinity, optionalInteger } from '../util/check.js';
import { now as clock } from '../util/clock.js';
import { type Logger, resolveLogger } from '../util/log.js';
import type { OutlierOptions } from './balancer.js';
import { type EndpointAddress, type EndpointEvents, EndpointSet, initialEndpoints } from './endpoint-set.js';
import { AcquireTimeoutError, EndpointUnavailableError, PoolClosedError } from './errors.js';
import type { Lease } from './lease.js';
import { Pool } from './pool.js';
import type { DestroyDetail, PoolOptions } from './pool-options.js';
import { SharedEndpoint, type SharedEndpointStats, WAKE } from './shared-endpoint.js';

export type { SharedConnectionStats, SharedEndpointStats } from './shared-endpoint.js';

// ---------------------------------------------------------------------------------------------
// Public types

/** Options of {@link createClientPool}. Session options (codec, heartbeat …) apply to every connection. */
export interface ClientPoolOptions extends SessionOptions {
  /** The server, when there is one (or use `endpoints`). Default host 127.0.0.1. */
  host?: string;
  port?: number;
  /** Several servers. Endpoints can be added and removed later. */
  endpoints?: EndpointAddress[];
  /** Sessions per endpoint that take new requests (opened as load grows). Default 2. */
  connectionsPerEndpoint?: number;
  /** Sessions per endpoint kept open even when idle. Default 1. */
  minConnectionsPerEndpoint?: number;
  /** How long a request waits for a session to an endpoint that has none in use. Default 10 000 ms. */
  acquireTimeoutMs?: number;
  /** Most requests waiting for a session, per endpoint; one more gets ERR_POOL_FULL. Default 10 000. */
  maxWaiters?: number;
  /** Close a session with nothing in flight for this long, above the minimum. 0 = never. Default 30 000 ms. */
  idleTimeoutMs?: number;
  /** Retire a session this long after it opened (new work moves first; in-flight finishes). 0 = never. Default 1 800 000 ms. */
  maxLifetimeMs?: number;
  /** Each lifetime is shortened by a random fraction up to this. Default 0.1. */
  maxLifetimeJitter?: number;
  /** Deadline of the graceful close of a retired session. Default 5 000 ms. */
  retireTimeoutMs?: number;
  /** Connects (with HELLO) in flight at once, per endpoint. Default min(connectionsPerEndpoint, 4). */
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
  /** Period of each endpoint Pool's idle/lifetime pass. Default: derived, at most 1 000 ms. */
  housekeepingIntervalMs?: number;
  /** Random numbers in [0, 1) for balancing and jitter. Default Math.random. */
  random?: () => number;
  /**
   * Where the pool logs what an operator needs (pino's shape): endpoints added and removed,
   * failed connects (one line a second per endpoint), the circuit breaker, ejections, requests sent again (debug).
   * Silent by default; `NODE_DEBUG=longlink` prints the same lines.
   */
  logger?: Logger;
}

/** Options of one pooled request. */
export interface PoolRequestOptions {
  /** The request's deadline, counted from the call (waiting for a session included). Default `requestTimeoutMs`. */
  timeoutMs?: number;
  signal?: AbortSignal;
  /**
   * The request may run twice without harm: if its connection dies with it in flight it is sent
   * once more, to another endpoint when there is one. Default false — a request whose connection
   * died fails with the close reason, since the server may have processed it.
   */
  idempotent?: boolean;
  /** Sent with the request (protocol 1.1); see RequestOptions.metadata. */
  metadata?: Readonly<Record<string, string>>;
}

/** Totals over every endpoint, and each endpoint's own (JSON-safe). */
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
  /** A new session to the endpoint is up. */
  connect: [session: ClientSession, endpoint: string];
  /** A session closed without the pool asking (lost, or after the server's GOAWAY). */
  disconnect: [info: CloseInfo, endpoint: string];
  /** A server announced it is going away: that endpoint gets no new work until it is reached again. */
  goaway: [endpoint: string, reason: string, retryAfterMs: number];
  /** A request was sent again: the server never processed it, or it is idempotent and its connection died. */
  resend: [info: { method: string; endpoint: string; why: 'not-processed' | 'idempotent-retry' }];
  /** Every session the pool lets go, with why. */
  destroy: [session: ClientSession, reason: string, detail: DestroyDetail, endpoint: string];
  createError: [error: unknown, consecutiveFailures: number, endpoint: string];
  /** A server push, from any session. */
  notify: [topic: string, payload: unknown, endpoint: string];
  /** Settings that contradict each other (heartbeat vs. idle budget …). */
  warning: [message: string];
  /** close() finished. */
  close: [];
}

/** A request is sent again at most this often when servers keep going away under it. */
const MAX_RESENDS = 3;

/** The request was on a connection that died: the server may or may not have processed it. */
function lostInFlight(err: unknown): boolean {
  return err instanceof ConnectionClosedError && err.reason !== undefined;
}

// ---------------------------------------------------------------------------------------------
// ClientPool

/**
 * Shared mode: longlink requests spread over up to N sessions per endpoint (fewest in flight
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
  // SharedContext, what its endpoints ask of it.
  /** @internal */ readonly perEndpoint: number;
  /** @internal */ closed = false;
  private readonly log: Logger | undefined;
  /** @internal */ readonly config: SessionConfig;
  /** @internal */ readonly retireTimeoutMs: number;
  private readonly set: EndpointSet<ClientSession, SharedEndpoint>;
  private readonly requestTimeoutMs: number;
  private readonly acquireTimeoutMs: number;
  private readonly poolOptions: PoolOptions;
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
      random,
      logger,
      ...sessionOptions
    } = options ?? ({} as ClientPoolOptions);
    const list = initialEndpoints(host, port, endpoints);
    // Bad session options (codec, heartbeat …) fail here, not in every connect.
    const { config, warning } = checkSessionOptions(sessionOptions);
    this.config = config;
    if (warning !== undefined) queueMicrotask(() => this.emit('warning', warning));
    this.perEndpoint = optionalInteger(
      'connectionsPerEndpoint',
      connectionsPerEndpoint,
      2,
      1,
      Number.MAX_SAFE_INTEGER,
    );
    const min = optionalInteger(
      'minConnectionsPerEndpoint',
      minConnectionsPerEndpoint,
      1,
      0,
      Number.MAX_SAFE_INTEGER,
    );
    if (min > this.perEndpoint)
      throw new InvalidArgumentError('minConnectionsPerEndpoint must be <= connectionsPerEndpoint');
    this.retireTimeoutMs = finiteAtLeast('retireTimeoutMs', retireTimeoutMs, 5_000);
    this.acquireTimeoutMs = nonNegativeOrInfinity('acquireTimeoutMs', acquireTimeoutMs, 10_000);
    this.requestTimeoutMs = config.requestTimeoutMs;
    const rand = random ?? Math.random;
    // Each endpoint's Pool makes and ends the sessions, holds the requests waiting for one, and
    // judges idle time and lifetime. N is its max: a session retired (lifetime, GOAWAY) leaves it
    // at once and finishes its requests outside, so its replacement fits. A create is a wait for
    // the server's retry hint, the TCP connect and HELLO, each within connectTimeoutMs.
    const poolOptions: Record<string, unknown> = {
      min,
      max: this.perEndpoint,
      acquireTimeoutMs: this.acquireTimeoutMs,
      createTimeoutMs: 3 * config.connectTimeoutMs,
      random: rand,
    };
    const passed = {
      maxWaiters,
      idleTimeoutMs,
      maxLifetimeMs,
      maxLifetimeJitter,
      maxConcurrentCreates,
      createRetryInitialMs,
      createRetryMaxMs,
      breakerThreshold,
      breakerCooldownMs,
      housekeepingIntervalMs,
    };
    for (const [k, v] of Object.entries(passed)) if (v !== undefined) poolOptions[k] = v;
    this.poolOptions = poolOptions as PoolOptions;
    this.log = resolveLogger(logger, { component: 'longlink-client-pool' });
    this.set = new EndpointSet<ClientSession, SharedEndpoint>(this, {
      outlier,
      log: this.log,
      random: rand,
      make: (key, h, p) => this.makeEndpoint(key, h, p),
    });
    for (const e of list) this.addEndpoint(e);
  }

  // -------------------------------------------------------------------------------------------
  // Requests

  /**
   * Sends a request on the least busy session of a healthy endpoint and resolves with its
   * result. When that endpoint has no session in use, borrows one from its Pool (an idle one at
   * once, else the next one made, within the request's deadline and `acquireTimeoutMs`), moving
   * on to another endpoint if this one turns out to be down. Requests the server never processed
   * (it sent GOAWAY first) are sent again elsewhere.
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
    const start = clock();
    const signal = options.signal;
    let tried: Set<SharedEndpoint> | undefined;
    /** After an idempotent request's connection died: prefer any other endpoint. */
    let avoid: SharedEndpoint | undefined;
    let lastError: unknown;
    let resends = 0;
    let mayRetry = options.idempotent === true;
    for (let turn = 0; ; turn++) {
      if (this.closed) throw lastError ?? new PoolClosedError('the client pool is closed');
      let ep: SharedEndpoint | undefined;
      if (tried === undefined && avoid === undefined) ep = this.pickFirst();
      else if (avoid === undefined) ep = this.set.balancer.pick(tried);
      else {
        const excl = new Set(tried);
        excl.add(avoid);
        ep = this.set.balancer.pick(excl) ?? this.set.balancer.pick(tried);
        avoid = undefined;
      }
      if (ep === undefined) throw lastError ?? this.set.unavailable();
      // The first attempt has its whole deadline; later ones (after a wait or a resend) what is left.
      const now = turn === 0 ? start : clock();
      const left = timed ? timeoutMs - (now - start) : timeoutMs;
      if (timed && left <= 0) throw new RequestTimeoutError(method, timeoutMs, { cause: lastError });
      let m = ep.choose(now);
      if (m === undefined) {
        // No session of this endpoint in use: borrow one from its Pool, waiting in its queue.
        let lease: Lease<ClientSession>;
        const wait = Math.min(left, this.acquireTimeoutMs);
        ep.waiting++;
        try {
          lease = await ep.pool.acquire(
            signal === undefined ? { timeoutMs: wait } : { timeoutMs: wait, signal },
          );
        } catch (err) {
          if (err === WAKE) continue; // a session came into use meanwhile: choose again
          if (err instanceof AcquireTimeoutError && timed && left <= this.acquireTimeoutMs)
            throw new RequestTimeoutError(method, timeoutMs, { cause: err.cause });
          if (
            (err instanceof EndpointUnavailableError || err instanceof AcquireTimeoutError) &&
            !this.closed
          ) {
            tried ??= new Set();
            tried.add(ep);
            lastError = err;
            continue;
          }
          if (err instanceof AbortedError)
            throw new AbortedError(`request ${method} aborted`, { cause: signal?.reason });
          throw err;
        } finally {
          ep.waiting--;
        }
        m = ep.adopt(lease, true);
        if (m === undefined) continue;
      }
      m.inflight++;
      m.requests++;
      ep.inflight++;
      ep.totals.requests++;
      let result: unknown;
      try {
        result = await m.session.request(method, params, {
          timeoutMs: left,
          ...(signal === undefined ? {} : { signal }),
          ...(options.metadata === undefined ? {} : { metadata: options.metadata }),
        });
      } catch (err) {
        ep.settled(m, err instanceof RemoteError);
        // Not processed by any server (handed back on GOAWAY, or never written): send it again.
        if (err instanceof RequestNotSentError && resends < MAX_RESENDS) {
          resends++;
          ep.totals.resent++;
          this.totals.resent++;
          this.log?.debug({ method, endpoint: ep.key, why: 'not-processed' }, 'request sent again');
          this.emit('resend', { method, endpoint: ep.key, why: 'not-processed' });
          lastError = err;
          continue;
        }
        if (mayRetry && lostInFlight(err)) {
          mayRetry = false; // once
          this.totals.retried++;
          this.log?.debug({ method, endpoint: ep.key, why: 'idempotent-retry' }, 'request sent again');
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
   * Sends a one-way NOTIFY on an open session (the least busy in use, else an idle one, of an
   * endpoint chosen as for a request). Returns the send's backpressure signal. Throws
   * EndpointUnavailableError when every endpoint is down, ConnectionClosedError when no session
   * is open yet (one is being opened).
   */
  notify(topic: string, payload?: unknown): boolean {
    if (this.closed) throw new PoolClosedError('the client pool is closed');
    const ep = this.set.balancer.pick();
    if (ep === undefined) throw this.set.unavailable();
    let s = ep.notifySession();
    if (s === undefined) {
      for (const other of this.set.list()) {
        s = other.notifySession();
        if (s !== undefined) break;
      }
    }
    if (s === undefined) {
      ep.grow();
      throw new ConnectionClosedError(`no connection to ${ep.key} is ready yet`, undefined);
    }
    return s.notify(topic, payload);
  }

  // -------------------------------------------------------------------------------------------
  // Endpoints

  /** Adds a server; it opens `minConnectionsPerEndpoint` sessions at once. Throws if already present. */
  addEndpoint(address: EndpointAddress): void {
    if (this.closed) throw new PoolClosedError('the client pool is closed');
    this.set.add(address);
  }

  /**
   * Removes a server: it gets no new work at once (requests waiting for it go elsewhere); its
   * sessions close gracefully once their requests are answered. Resolves when all are closed.
   */
  removeEndpoint(address: EndpointAddress): Promise<void> {
    return this.set.remove(address);
  }

  /** The endpoints in the pool, as `host:port`. */
  endpoints(): string[] {
    return this.set.keys();
  }

  // -------------------------------------------------------------------------------------------
  // Control

  /**
   * Closes: new requests and those waiting for a session fail with ERR_POOL_CLOSED; requests in
   * flight are answered, then every session closes gracefully. With `timeoutMs`, sessions still
   * busy then are aborted (their requests fail with the close reason). Idempotent.
   */
  close(options: { timeoutMs?: number } = {}): Promise<void> {
    if (this.closing) return this.closing;
    this.closed = true;
    const err = new PoolClosedError('the client pool is closed');
    const all = this.set.list().map((ep) => {
      ep.pool.rejectWaiters(err);
      return ep.shutdown(options.timeoutMs);
    });
    this.closing = Promise.all([...all, ...this.set.closing()]).then(() => {
      this.emit('close');
    });
    return this.closing;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  /** Sizes, requests and health of every endpoint; JSON-safe. */
  stats(): ClientPoolStats {
    const now = clock();
    const endpoints = this.set.list().map((ep) => ep.stats(now));
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

  /** @internal SharedContext */
  recordFailure(ep: SharedEndpoint): void {
    this.set.recordFailure(ep);
  }

  /** @internal SharedContext */
  recordSuccess(ep: SharedEndpoint): void {
    this.set.recordSuccess(ep);
  }

  /** @internal SharedContext */
  ejectedForMs(ep: SharedEndpoint, now: number): number {
    return this.set.balancer.ejectedForMs(ep, now);
  }

  /** The first choice of a request: with one endpoint no choice is needed (tiers do not matter either). */
  private pickFirst(): SharedEndpoint | undefined {
    const list = this.set.list();
    if (list.length !== 1) return this.set.balancer.pick();
    const only = list[0] as SharedEndpoint;
    return only.pool.breakerState === 'open' ? undefined : only;
  }

  private makeEndpoint(key: string, host: string, port: number): SharedEndpoint {
    const ep = new SharedEndpoint(this, key, host, port);
    const pool = new Pool<ClientSession>(
      {
        create: (signal) => ep.open(signal),
        destroy: (session, _reason, detail) => ep.end(session, detail),
        isUsable: (session) => session.usable,
      },
      { ...this.poolOptions, name: key },
    );
    ep.pool = pool;
    // Bookkeeping first; the EndpointSet adds the events that report these with the key.
    pool.on('create', (session) => ep.created(session));
    pool.on('destroy', (session, reason) => ep.destroyed(session, reason));
    return ep;
  }
}

/**
 * Creates a shared-mode pool of longlink client sessions.
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
