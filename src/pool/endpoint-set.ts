/**
 * The endpoints of a pool, and the face both pools show for them. Lease mode (ConnectionPool)
 * and shared mode (ClientPool) spread work over the same kind of set: endpoints keyed by
 * `host:port`, each with its own Pool (its min/max, waiters, backoff and circuit breaker), a
 * Balancer in front (power of two choices, outlier ejection), endpoints added and removed at run
 * time, and the same events with the same arguments. That face lives here once; the pools add
 * what they lend and how.
 *
 *   addEndpoint ─▶ make(key) ─▶ PoolEndpoint + its Pool ─▶ balancer ─▶ 'endpointAdded'
 *   Pool events ─▶ 'destroy' / 'createError' / 'breakerOpen' … with the endpoint's key
 *   ejected (balancer) ─▶ 'eject'; its waiters rejected (EndpointUnavailableError) to go elsewhere
 *   removeEndpoint ─▶ out of the balancer at once, waiters sent elsewhere, shutdown() ─▶ 'endpointRemoved'
 */

import type { EventEmitter } from 'node:events';
import { InvalidArgumentError } from '../errors.js';
import { now } from '../util/clock.js';
import { errorFields, type Logger, LogSampler } from '../util/log.js';
import { type BalancedTarget, Balancer, type EjectionInfo, type OutlierOptions } from './balancer.js';
import { EndpointUnavailableError } from './errors.js';
import type { Pool } from './pool.js';

/** A server of a pool. */
export interface EndpointAddress {
  host?: string;
  port: number;
}

/** `host:port`, with IPv6 hosts in brackets. */
export function endpointKey(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/** The endpoint and breaker events both pools emit, with the same arguments. */
export interface EndpointEvents {
  /** The endpoint's breaker opened: creates failed `consecutiveFailures` times in a row. */
  breakerOpen: [info: { error: unknown; consecutiveFailures: number; retryInMs: number; endpoint: string }];
  breakerHalfOpen: [endpoint: string];
  breakerClose: [endpoint: string];
  eject: [info: EjectionInfo];
  readmit: [endpoint: string];
  endpointAdded: [endpoint: string];
  endpointRemoved: [endpoint: string];
}

/** @internal The servers a pool starts with: `port` (with `host`) first, then `endpoints`. Throws when none. */
export function initialEndpoints(
  host: string | undefined,
  port: number | undefined,
  endpoints: readonly EndpointAddress[] | undefined,
): EndpointAddress[] {
  const list: EndpointAddress[] = endpoints ? [...endpoints] : [];
  if (port !== undefined) list.unshift(host === undefined ? { port } : { host, port });
  if (list.length === 0) throw new InvalidArgumentError('give port (and host) or endpoints');
  return list;
}

/**
 * @internal One endpoint: its address and its Pool. The balancer's questions are answered from the Pool;
 * a pool whose endpoints lend differently (shared mode counts requests) overrides them.
 */
export class PoolEndpoint<T> implements BalancedTarget {
  removed = false;
  pool!: Pool<T>;
  constructor(
    readonly key: string,
    readonly host: string,
    readonly port: number,
  ) {}
  load(): number {
    return this.pool.load;
  }
  capacity(): number {
    return this.pool.max;
  }
  idle(): number {
    return this.pool.idleCount;
  }
  breaker(): 'closed' | 'open' | 'half-open' {
    return this.pool.breakerState;
  }
  accepting(): boolean {
    return !this.removed;
  }
  /** A create failed; the set has counted it against the endpoint already. */
  createFailed(): void {}
  /** removeEndpoint(): take no new work, close everything gracefully, resolve once all is closed. */
  shutdown(): Promise<void> {
    return this.pool.drain();
  }
}

/** @internal What the set needs from the pool it serves. */
export interface EndpointSetOptions<E> {
  outlier: OutlierOptions | undefined;
  /** Where the endpoints' story is logged (resolved: given, NODE_DEBUG=longlink, or none). */
  log: Logger | undefined;
  random: () => number;
  /** Builds an endpoint with its Pool (not yet in rotation). */
  make: (key: string, host: string, port: number) => E;
}

/** @internal The endpoints of a pool (see the top of this file). */
export class EndpointSet<T, E extends PoolEndpoint<T>> {
  readonly balancer: Balancer<E>;
  private readonly byKey = new Map<string, E>();
  private readonly leaving = new Set<Promise<void>>();
  private readonly make: (key: string, host: string, port: number) => E;
  private readonly log: Logger | undefined;
  /** A down endpoint fails every connect: one line a second per endpoint, with the count held back. */
  private readonly logSampler = new LogSampler();

  /** `events` is the pool's own emitter: the set emits the {@link EndpointEvents} on it. */
  constructor(
    private readonly events: EventEmitter,
    options: EndpointSetOptions<E>,
  ) {
    this.make = options.make;
    this.log = options.log;
    this.balancer = new Balancer<E>(
      options.outlier ?? {},
      options.random,
      (ep, info) => this.ejected(ep, info),
      (ep) => {
        this.log?.info({ endpoint: ep.key }, 'endpoint readmitted');
        this.events.emit('readmit', ep.key);
      },
    );
  }

  /** The endpoints taking work, in the order they were added. */
  list(): readonly E[] {
    return this.balancer.list();
  }

  /** Their keys (`host:port`). */
  keys(): string[] {
    return this.balancer.list().map((e) => e.key);
  }

  /** Validates `address`, builds the endpoint and puts it in rotation. Throws if present. */
  add(address: EndpointAddress): E {
    if (!Number.isInteger(address?.port) || address.port < 1 || address.port > 65535) {
      throw new InvalidArgumentError(`port must be an integer 1..65535, got ${String(address?.port)}`);
    }
    const host = address.host ?? '127.0.0.1';
    const key = endpointKey(host, address.port);
    if (this.byKey.has(key)) throw new InvalidArgumentError(`endpoint ${key} is already in the pool`);
    const ep = this.make(key, host, address.port);
    const pool = ep.pool;
    const events = this.events;
    pool.on('destroy', (resource, reason, detail) => events.emit('destroy', resource, reason, detail, key));
    pool.on('createError', (err, n) => {
      if (this.log !== undefined) {
        const s = this.logSampler.take(`create:${key}`, now());
        if (s.log) {
          this.log.warn(
            {
              endpoint: key,
              consecutiveFailures: n,
              ...errorFields(err),
              ...(s.held > 0 ? { suppressed: s.held } : {}),
            },
            'connect failed',
          );
        }
      }
      events.emit('createError', err, n, key);
      // A refused connect is a failure of the endpoint, as far as the other endpoints go.
      if (ep.removed) return;
      ep.createFailed();
      this.balancer.recordFailure(ep);
    });
    pool.on('breakerOpen', (info) => {
      this.log?.warn(
        {
          endpoint: key,
          consecutiveFailures: info.consecutiveFailures,
          retryInMs: Math.round(info.retryInMs),
          ...errorFields(info.error),
        },
        'circuit breaker open: failing fast',
      );
      events.emit('breakerOpen', { ...info, endpoint: key });
    });
    pool.on('breakerHalfOpen', () => {
      this.log?.debug({ endpoint: key }, 'circuit breaker half-open: one probe');
      events.emit('breakerHalfOpen', key);
    });
    pool.on('breakerClose', () => {
      this.log?.info({ endpoint: key }, 'circuit breaker closed: endpoint back');
      events.emit('breakerClose', key);
    });
    this.byKey.set(key, ep);
    this.balancer.add(ep);
    this.log?.info({ endpoint: key }, 'endpoint added');
    events.emit('endpointAdded', key);
    return ep;
  }

  /**
   * Takes the endpoint out of rotation at once (its waiters go to the other endpoints), then
   * waits for its shutdown. Emits 'endpointRemoved' once it is closed; nothing when absent.
   */
  async remove(address: EndpointAddress): Promise<void> {
    const key = endpointKey(address.host ?? '127.0.0.1', address.port);
    const ep = this.byKey.get(key);
    if (ep === undefined) return;
    ep.removed = true;
    this.byKey.delete(key);
    this.balancer.remove(ep);
    ep.pool.rejectWaiters(new EndpointUnavailableError(key, 0, { cause: new Error('endpoint removed') }));
    const p = ep.shutdown();
    this.leaving.add(p);
    try {
      await p;
    } finally {
      this.leaving.delete(p);
    }
    this.log?.info({ endpoint: key }, 'endpoint removed');
    this.events.emit('endpointRemoved', key);
  }

  /** Endpoints removed but still closing. */
  closing(): Promise<void>[] {
    return [...this.leaving];
  }

  /** A failure of `ep` for outlier detection (lost connections, destroyed leases). */
  recordFailure(ep: E): void {
    if (!ep.removed) this.balancer.recordFailure(ep);
  }

  recordSuccess(ep: E): void {
    this.balancer.recordSuccess(ep);
  }

  /** Why no endpoint can take work: the breaker error retrying soonest, or one that says why not. */
  unavailable(): EndpointUnavailableError {
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

  private ejected(ep: E, info: EjectionInfo): void {
    this.log?.warn(
      { endpoint: info.key, consecutiveFailures: info.consecutiveFailures, ejectedForMs: info.ejectedForMs },
      'endpoint ejected as an outlier',
    );
    this.events.emit('eject', info);
    // Its waiters would wait on a failing endpoint: send them elsewhere (the pools retry).
    ep.pool.rejectWaiters(
      new EndpointUnavailableError(ep.key, info.ejectedForMs, {
        cause: new Error('endpoint ejected as an outlier'),
      }),
    );
  }
}
