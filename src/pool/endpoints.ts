/**
 * The set of endpoints a pool spreads work over: keyed by `host:port`, kept in step with the
 * balancer, and — while a removed endpoint drains — remembered until it has closed. Shared by the
 * lease-mode and shared-mode pools.
 */

import { InvalidArgumentError } from '../errors.js';
import type { BalancedTarget, Balancer, EjectionInfo } from './balancer.js';

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

/** What every pool endpoint has besides what the balancer needs. */
export interface PoolEndpoint extends BalancedTarget {
  removed: boolean;
}

export class EndpointRegistry<E extends PoolEndpoint> {
  private readonly byKey = new Map<string, E>();
  private readonly leaving = new Set<Promise<void>>();

  constructor(private readonly balancer: Balancer<E>) {}

  /** Validates `address`, builds the endpoint with `make` and puts it in rotation. Throws if present. */
  add(address: EndpointAddress, make: (key: string, host: string, port: number) => E): E {
    if (!Number.isInteger(address?.port) || address.port < 1 || address.port > 65535) {
      throw new InvalidArgumentError(`port must be an integer 1..65535, got ${String(address?.port)}`);
    }
    const host = address.host ?? '127.0.0.1';
    const key = endpointKey(host, address.port);
    if (this.byKey.has(key)) throw new InvalidArgumentError(`endpoint ${key} is already in the pool`);
    const ep = make(key, host, address.port);
    this.byKey.set(key, ep);
    this.balancer.add(ep);
    return ep;
  }

  /**
   * Takes the endpoint out of rotation at once, then waits for `shutdown(ep)` (its graceful
   * close). Resolves with its key once closed, or undefined when it was not in the pool.
   */
  async remove(address: EndpointAddress, shutdown: (ep: E) => Promise<void>): Promise<string | undefined> {
    const key = endpointKey(address.host ?? '127.0.0.1', address.port);
    const ep = this.byKey.get(key);
    if (ep === undefined) return undefined;
    ep.removed = true;
    this.byKey.delete(key);
    this.balancer.remove(ep);
    const p = shutdown(ep);
    this.leaving.add(p);
    try {
      await p;
    } finally {
      this.leaving.delete(p);
    }
    return key;
  }

  /** Endpoints removed but still closing. */
  closing(): Promise<void>[] {
    return [...this.leaving];
  }
}
