/**
 * Lease mode: a pool of framed connections for peers whose protocol has no request ids (the
 * sources' legacy "length header + body" services). A borrower gets a connection to itself,
 * sends, reads its reply, and gives it back; the pool makes sure the next borrower gets a clean
 * one.
 *
 * "Clean" is the whole point of lease mode: what makes a released connection fit for the next
 * borrower, and the watch kept on idle ones, is lease-check.ts.
 *
 * Several endpoints: one Pool per endpoint (its own min/max, backoff and circuit breaker) and a
 * Balancer (power of two choices, outlier ejection) in front — the EndpointSet the shared-mode
 * pool uses too (endpoint-set.ts).
 */

import { EventEmitter } from 'node:events';
import type tls from 'node:tls';
import type { Framing } from '../codec/types.js';
import type { CloseInfo } from '../connection/close-reason.js';
import { Connection, type ConnectOptions } from '../connection/connection.js';
import { AbortedError, InvalidArgumentError, LonglinkError } from '../errors.js';
import { type KeepAliveOptions, kernelUnread, tcpInfo } from '../sys/sockopt.js';
import { now as clock } from '../util/clock.js';
import { type Logger, resolveLogger } from '../util/log.js';
import type { OutlierOptions } from './balancer.js';
import {
  type EndpointAddress,
  type EndpointEvents,
  EndpointSet,
  initialEndpoints,
  PoolEndpoint,
} from './endpoint-set.js';
import { AcquireTimeoutError, EndpointUnavailableError, PoolClosedError } from './errors.js';
import type { Lease } from './lease.js';
import {
  attachMeta,
  ConnMeta,
  inspectRelease,
  isConnectionError,
  LeaseDestroyReason,
  metaOf,
  type PendingRequest,
} from './lease-check.js';
import { Pool } from './pool.js';
import type { AcquireOptions, DestroyDetail, LeakInfo, PoolOptions, PoolStats } from './pool-options.js';

// ---------------------------------------------------------------------------------------------
// Public types

export type { EndpointAddress } from './endpoint-set.js';
export { isConnectionError, LeaseDestroyReason } from './lease-check.js';

/** Options of {@link createConnectionPool}. Pool sizes apply to each endpoint. */
export interface ConnectionPoolOptions extends Omit<PoolOptions, 'name'> {
  /** How frames are delimited (parseFraming('ascii:20'), lengthFieldFraming(...), …). */
  framing: Framing;
  /** The server, when there is one (or use `endpoints`). */
  host?: string;
  port?: number;
  /** Several servers; `min`/`max` apply to each. Endpoints can be added and removed later. */
  endpoints?: EndpointAddress[];
  /**
   * A round-trip check for a connection idle longer than `validateAfterIdleMs` (e.g. send a ping
   * frame, await the pong). Runs after the built-in kernel check (TCP state ESTABLISHED, nothing
   * unread). Also used for keepalive when `keepaliveIntervalMs` is set.
   */
  validate?: (connection: Connection) => boolean | Promise<boolean>;
  /** Deadline of the graceful close when the pool retires a connection (idle, lifetime, drain). Default 5 000 ms. */
  retireTimeoutMs?: number;
  /** Outlier ejection across endpoints. */
  outlier?: OutlierOptions;
  /**
   * Where the pool logs what an operator needs (pino's shape): endpoints added and removed,
   * failed connects (one line a second per endpoint), the circuit breaker, ejections, leaked leases with the borrower's stack.
   * Silent by default; `NODE_DEBUG=longlink` prints the same lines.
   */
  logger?: Logger;
  // Connection options, passed to Connection.connect for every connection.
  connectTimeoutMs?: number;
  localAddress?: string;
  tls?: tls.ConnectionOptions;
  highWaterMark?: number;
  lowWaterMark?: number;
  closeTimeoutMs?: number;
  remoteEndTimeoutMs?: number;
  noDelay?: boolean;
  keepAlive?: KeepAliveOptions | false;
  userTimeoutMs?: number;
}

/** Options of a lease-mode request. */
export interface LeaseRequestOptions {
  /** Aborts the wait for the reply (AbortedError); the connection is then destroyed on release. */
  signal?: AbortSignal;
}

/** Per-endpoint stats. */
export interface EndpointStats extends PoolStats {
  endpoint: string;
  ejected: boolean;
  ejectedForMs: number;
  /** Removed with removeEndpoint() and still draining. */
  removed: boolean;
}

/** Totals over every endpoint, and each endpoint's own. */
export interface ConnectionPoolStats {
  size: number;
  idle: number;
  borrowed: number;
  validating: number;
  pending: number;
  creating: number;
  endpoints: EndpointStats[];
}

/** The events a ConnectionPool emits; `endpoint` is `host:port`. */
export interface ConnectionPoolEvents extends EndpointEvents {
  acquire: [connection: Connection, endpoint: string];
  release: [connection: Connection, endpoint: string];
  create: [connection: Connection, endpoint: string];
  /** Every connection the pool closes, with why and whether gracefully (close) or not (abort). */
  destroy: [connection: Connection, reason: string, detail: DestroyDetail, endpoint: string];
  createError: [error: unknown, consecutiveFailures: number, endpoint: string];
  leak: [info: LeakInfo<Connection> & { endpoint: string }];
  drained: [];
}

// ---------------------------------------------------------------------------------------------
// Endpoints

/** An endpoint of a lease-mode pool: its Pool answers the balancer (borrowed + waiting of max). */
class Endpoint extends PoolEndpoint<Connection> {}

const CONNECT_KEYS = [
  'connectTimeoutMs',
  'localAddress',
  'tls',
  'highWaterMark',
  'lowWaterMark',
  'closeTimeoutMs',
  'remoteEndTimeoutMs',
  'noDelay',
  'keepAlive',
  'userTimeoutMs',
] as const;
const POOL_KEYS = [
  'min',
  'max',
  'acquireTimeoutMs',
  'maxWaiters',
  'maxConcurrentCreates',
  'createTimeoutMs',
  'validateAfterIdleMs',
  'idleTimeoutMs',
  'keepaliveIntervalMs',
  'maxLifetimeMs',
  'maxLifetimeJitter',
  'leakDetectionMs',
  'reclaimLeaked',
  'createRetryInitialMs',
  'createRetryMaxMs',
  'breakerThreshold',
  'breakerCooldownMs',
  'housekeepingIntervalMs',
  'random',
] as const;

type ConnectBase = Omit<ConnectOptions, 'host' | 'port' | 'signal'>;

// ---------------------------------------------------------------------------------------------
// Lease

/**
 * An exclusive loan of one connection. `release()` gives it back (the pool checks that it is
 * clean), `destroy()` closes it. In lease mode one request is outstanding at a time; use
 * {@link ConnectionLease.request} or talk to `connection` directly.
 */
export class ConnectionLease {
  readonly connection: Connection;
  /** `host:port` of the server. */
  readonly endpoint: string;
  /** @internal Leases are made by the pool. */
  constructor(
    private readonly owner: ConnectionPool,
    private readonly ep: Endpoint,
    private readonly inner: Lease<Connection>,
  ) {
    this.connection = inner.resource;
    this.endpoint = ep.key;
  }

  /** True until released, destroyed, or reclaimed by the pool. */
  get active(): boolean {
    return this.inner.active;
  }

  /** Gives the connection back. Idempotent (false when no longer active). */
  release(): boolean {
    if (!this.inner.release()) return false;
    this.owner.released(this.ep, this.connection);
    return true;
  }

  /**
   * Closes the connection instead of returning it (abortively: it is presumed broken) and frees
   * its place in the pool. Counts as a failure of the endpoint for outlier detection.
   */
  destroy(reason = 'destroyed-by-borrower'): boolean {
    if (!this.inner.destroy(reason)) return false;
    this.owner.failed(this.ep);
    return true;
  }

  /**
   * Sends one frame and resolves with the next frame that arrives: the request/reply of a
   * protocol without request ids. Rejects with ConnectionClosedError (reason and cause from the
   * close) if the connection closes first, or AbortedError from `signal` — the connection is then
   * destroyed on release, since the reply may still come.
   */
  request(frame: Buffer, options: LeaseRequestOptions = {}): Promise<Buffer> {
    if (!this.inner.active) {
      return Promise.reject(new InvalidArgumentError('this lease was released; acquire a new one'));
    }
    const m = metaOf(this.connection) as ConnMeta;
    if (m.request !== undefined) {
      return Promise.reject(
        new InvalidArgumentError('lease mode carries one request at a time per connection'),
      );
    }
    const signal = options.signal;
    if (signal?.aborted) return Promise.reject(new AbortedError('request aborted', { cause: signal.reason }));
    try {
      this.connection.send(frame);
    } catch (err) {
      return Promise.reject(err);
    }
    m.expectWritten += frame.length + this.connection.framing.encoder.overhead(frame.length);
    return new Promise<Buffer>((resolve, reject) => {
      if (signal === undefined) {
        m.request = { resolve, reject };
        return;
      }
      const onAbort = () => {
        if (m.request !== req) return;
        m.request = undefined;
        m.dirty = LeaseDestroyReason.REQUEST_ABORTED;
        reject(new AbortedError('request aborted', { cause: signal.reason }));
      };
      const req: PendingRequest = {
        resolve: (f) => {
          signal.removeEventListener('abort', onAbort);
          resolve(f);
        },
        reject: (e) => {
          signal.removeEventListener('abort', onAbort);
          reject(e);
        },
      };
      m.request = req;
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }
}

// ---------------------------------------------------------------------------------------------
// Pool

/**
 * A lease-mode pool of framed connections over one or several endpoints.
 *
 * @example
 * ```ts
 * import { createConnectionPool, parseFraming } from 'longlink';
 * const pool = createConnectionPool({ port: 9000, framing: parseFraming('ascii:20'), min: 2, max: 10 });
 * const reply = await pool.use((conn, lease) => lease.request(Buffer.from('{"op":"ping"}')));
 * await pool.drain();
 * ```
 */
export class ConnectionPool extends EventEmitter {
  private readonly set: EndpointSet<Connection, Endpoint>;
  private readonly poolOptions: PoolOptions;
  private readonly connectOptions: ConnectBase;
  private readonly userValidate: ((c: Connection) => boolean | Promise<boolean>) | undefined;
  private readonly retireTimeoutMs: number;
  private readonly acquireTimeoutMs: number;
  private readonly log: Logger | undefined;
  private closed = false;
  private paused = false;
  private drainPromise: Promise<void> | undefined;

  constructor(options: ConnectionPoolOptions) {
    super();
    if (typeof options?.framing?.createDecoder !== 'function') {
      throw new InvalidArgumentError('framing must be a Framing (e.g. parseFraming("ascii:20"))');
    }
    const list = initialEndpoints(options.host, options.port, options.endpoints);

    const connect: Record<string, unknown> = { framing: options.framing, allowHalfOpen: false };
    for (const k of CONNECT_KEYS) if (options[k] !== undefined) connect[k] = options[k];
    this.connectOptions = connect as unknown as ConnectBase;
    const poolOpts: Record<string, unknown> = {};
    for (const k of POOL_KEYS) if (options[k] !== undefined) poolOpts[k] = options[k];
    this.poolOptions = poolOpts as PoolOptions;
    this.userValidate = options.validate;
    this.retireTimeoutMs = options.retireTimeoutMs ?? 5_000;
    this.acquireTimeoutMs = options.acquireTimeoutMs ?? 10_000;
    this.log = resolveLogger(options.logger, { component: 'longlink-connection-pool' });
    this.set = new EndpointSet<Connection, Endpoint>(this, {
      outlier: options.outlier,
      log: this.log,
      random: options.random ?? Math.random,
      make: (key, host, port) => {
        const e = new Endpoint(key, host, port);
        e.pool = this.makePool(e);
        return e;
      },
    });
    for (const e of list) this.addEndpoint(e);
  }

  // -------------------------------------------------------------------------------------------
  // Endpoints

  /** Adds a server; it starts filling to `min` at once. Throws if it is already in the pool. */
  addEndpoint(address: EndpointAddress): void {
    if (this.closed) throw new PoolClosedError();
    const ep = this.set.add(address);
    if (this.paused) ep.pool.pause();
  }

  /**
   * Removes a server: it gets no new work at once; its idle connections are closed gracefully
   * and borrowed ones when they are returned. Resolves when all are closed.
   */
  removeEndpoint(address: EndpointAddress): Promise<void> {
    return this.set.remove(address);
  }

  /** The endpoints currently taking work, as `host:port`. */
  endpoints(): string[] {
    return this.set.keys();
  }

  // -------------------------------------------------------------------------------------------
  // Borrowing

  /**
   * Borrows a connection: from the less loaded of two random healthy endpoints (one endpoint:
   * that one). An endpoint whose breaker opens while we wait is skipped and the next one tried.
   * Rejects with AcquireTimeoutError, EndpointUnavailableError (every endpoint is down),
   * PoolFullError, PoolClosedError or AbortedError.
   */
  acquire(options?: AcquireOptions): Promise<ConnectionLease> {
    if (this.closed) return Promise.reject(new PoolClosedError());
    const list = this.set.list();
    if (list.length === 1) {
      const ep = list[0] as Endpoint;
      return ep.pool.acquire(options).then((lease) => new ConnectionLease(this, ep, lease));
    }
    return this.acquireBalanced(options);
  }

  /**
   * Runs `fn` with a borrowed connection and always gives it back: released when `fn` settles,
   * destroyed instead when `fn` threw a connection-level error (closed, reset, framing…) or left
   * the connection unclean.
   */
  async use<R>(
    fn: (connection: Connection, lease: ConnectionLease) => R | Promise<R>,
    options?: AcquireOptions,
  ): Promise<R> {
    const lease = await this.acquire(options);
    let result: R;
    try {
      result = await fn(lease.connection, lease);
    } catch (err) {
      if (lease.active) {
        if (isConnectionError(err) || lease.connection.state !== 'open') {
          const code = (err as { code?: unknown })?.code;
          lease.destroy(typeof code === 'string' ? `broken:${code}` : 'broken');
        } else {
          lease.release();
        }
      }
      throw err;
    }
    lease.release();
    return result;
  }

  /**
   * One request/reply on a borrowed connection: acquire, send `frame`, await the next frame,
   * release. `signal` aborts the wait for a connection and for the reply.
   */
  request(frame: Buffer, options?: AcquireOptions): Promise<Buffer> {
    const signal = options?.signal;
    return this.use((_conn, lease) => lease.request(frame, signal === undefined ? {} : { signal }), options);
  }

  // -------------------------------------------------------------------------------------------
  // Control

  /** Stops lending on every endpoint (acquirers wait) until resume(). */
  pause(): void {
    this.paused = true;
    for (const ep of this.set.list()) ep.pool.pause();
  }

  resume(): void {
    this.paused = false;
    for (const ep of this.set.list()) ep.pool.resume();
  }

  /** Closes every idle connection now (gracefully, reason `clear`); pools refill to `min`. */
  async clear(): Promise<void> {
    await Promise.all(this.set.list().map((ep) => ep.pool.clear()));
  }

  /**
   * Stops lending, waits for borrowed connections to come back and closes everything gracefully
   * (FIN, the peer's EOF, release). With `timeoutMs`, connections still borrowed then are
   * aborted. Idempotent.
   */
  drain(options: { timeoutMs?: number } = {}): Promise<void> {
    if (this.drainPromise) return this.drainPromise;
    this.closed = true;
    const all = this.set.list().map((ep) => ep.pool.drain(options));
    this.drainPromise = Promise.all([...all, ...this.set.closing()]).then(() => {
      this.emit('drained');
    });
    return this.drainPromise;
  }

  stats(): ConnectionPoolStats {
    const now = clock();
    const endpoints: EndpointStats[] = [];
    const total = { size: 0, idle: 0, borrowed: 0, validating: 0, pending: 0, creating: 0 };
    for (const ep of this.set.list()) {
      const s = ep.pool.stats();
      total.size += s.size;
      total.idle += s.idle;
      total.borrowed += s.borrowed;
      total.validating += s.validating;
      total.pending += s.pending;
      total.creating += s.creating;
      const ejectedForMs = this.set.balancer.ejectedForMs(ep, now);
      endpoints.push({
        ...s,
        endpoint: ep.key,
        ejected: ejectedForMs > 0,
        ejectedForMs,
        removed: ep.removed,
      });
    }
    return { ...total, endpoints };
  }

  // -------------------------------------------------------------------------------------------
  // Internals

  /** @internal A lease came back clean: the endpoint works. */
  released(ep: Endpoint, conn: Connection): void {
    if (conn.state === 'open') this.set.recordSuccess(ep);
  }

  /** @internal A borrower gave up on a connection. */
  failed(ep: Endpoint): void {
    this.set.recordFailure(ep);
  }

  /** @internal A connection closed without the pool asking. */
  connectionLost(m: ConnMeta, info: CloseInfo): void {
    if (m.ep.removed || info.initiator !== 'remote') return;
    // The peer dropping a connection mid-lease, or resetting one, is the endpoint's failure; a
    // graceful FIN on an idle connection is a server's idle timeout, not an outlier signal.
    if (m.borrowed || !info.graceful) this.set.recordFailure(m.ep as Endpoint);
  }

  private async acquireBalanced(options: AcquireOptions | undefined): Promise<ConnectionLease> {
    const timeoutMs = options?.timeoutMs ?? this.acquireTimeoutMs;
    const deadline = clock() + timeoutMs;
    let tried: Set<Endpoint> | undefined;
    let lastError: unknown;
    for (;;) {
      const ep = this.set.balancer.pick(tried);
      if (ep === undefined) throw lastError ?? this.set.unavailable();
      const remaining = deadline - clock();
      if (remaining <= 0) throw new AcquireTimeoutError(timeoutMs, { cause: lastError });
      try {
        const lease = await ep.pool.acquire({ ...options, timeoutMs: remaining });
        return new ConnectionLease(this, ep, lease);
      } catch (err) {
        if (err instanceof EndpointUnavailableError && !this.closed) {
          tried ??= new Set();
          tried.add(ep);
          lastError = err;
          continue;
        }
        if (err instanceof AcquireTimeoutError)
          throw new AcquireTimeoutError(timeoutMs, { cause: err.cause });
        throw err;
      }
    }
  }

  private makePool(ep: Endpoint): Pool<Connection> {
    const connectOptions = this.connectOptions;
    const userValidate = this.userValidate;
    const retireTimeoutMs = this.retireTimeoutMs;
    const pool = new Pool<Connection>(
      {
        create: async (signal) => {
          const conn = await Connection.connect({ ...connectOptions, host: ep.host, port: ep.port, signal });
          attachMeta(conn, new ConnMeta(this, ep));
          return conn;
        },
        destroy: (conn, _reason, detail) => {
          const m = metaOf(conn);
          if (m !== undefined) m.closingByPool = true;
          if (conn.state === 'closed') return undefined;
          if (detail.graceful) return conn.close({ timeoutMs: retireTimeoutMs }).then(noop);
          conn.abort(detail.error instanceof LonglinkError ? detail.error : undefined);
          return conn.closed.then(noop);
        },
        isUsable: (conn) => {
          const m = metaOf(conn);
          return conn.state === 'open' && m !== undefined && m.unread === 0 && m.dirty === undefined;
        },
        // The built-in check is a syscall, not a round trip: the kernel may already hold the
        // peer's FIN or RST (or stray bytes) that Node has not read yet.
        validate: (conn) => {
          const info = tcpInfo(conn.socket);
          if (info !== undefined && info.state !== 'ESTABLISHED') return false;
          const unread = kernelUnread(conn.socket);
          if (unread !== undefined && unread > 0) return false;
          return userValidate === undefined ? true : userValidate(conn);
        },
        inspectRelease: inspectRelease,
        isBroken: (err) => isConnectionError(err),
      },
      { ...this.poolOptions, name: ep.key },
    );
    const key = ep.key;
    pool.on('acquire', (conn) => {
      const m = metaOf(conn);
      if (m !== undefined) {
        m.borrowed = true;
        m.expectWritten = conn.socket.bytesWritten;
      }
      this.emit('acquire', conn, key);
    });
    pool.on('release', (conn) => {
      const m = metaOf(conn);
      if (m !== undefined) m.borrowed = false;
      this.emit('release', conn, key);
    });
    pool.on('create', (conn) => this.emit('create', conn, key));
    pool.on('leak', (info) => {
      this.log?.warn(
        { endpoint: key, heldMs: Math.round(info.heldMs), reclaimed: info.reclaimed, stack: info.stack },
        'lease held too long (leak?)',
      );
      this.emit('leak', { ...info, endpoint: key });
    });
    return pool;
  }
}

function noop(): void {}

/**
 * Creates a lease-mode connection pool.
 *
 * @example
 * ```ts
 * const pool = createConnectionPool({
 *   endpoints: [{ port: 9001 }, { port: 9002 }],
 *   framing: parseFraming('ascii:20'),
 *   min: 1, max: 8, leakDetectionMs: 30_000,
 * });
 * const lease = await pool.acquire();
 * try { const reply = await lease.request(Buffer.from('hello')); } finally { lease.release(); }
 * ```
 */
export function createConnectionPool(options: ConnectionPoolOptions): ConnectionPool {
  return new ConnectionPool(options);
}

// Typed events: merged into the class's instance type.
export interface ConnectionPool {
  on<K extends keyof ConnectionPoolEvents>(
    event: K,
    listener: (...args: ConnectionPoolEvents[K]) => void,
  ): this;
  once<K extends keyof ConnectionPoolEvents>(
    event: K,
    listener: (...args: ConnectionPoolEvents[K]) => void,
  ): this;
  off<K extends keyof ConnectionPoolEvents>(
    event: K,
    listener: (...args: ConnectionPoolEvents[K]) => void,
  ): this;
  emit<K extends keyof ConnectionPoolEvents>(event: K, ...args: ConnectionPoolEvents[K]): boolean;
}
