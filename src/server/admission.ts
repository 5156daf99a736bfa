/**
 * Admission control: whether a new connection may take a slot, decided from its client address
 * (the PROXY header's source when the connection came through a trusted proxy). Four limits:
 * connections in all, new connections per second in all (a token bucket: what keeps a crowd
 * that lost another node from arriving here as one wave), connections per address, and new
 * connections per address per second. A refusal carries a retry hint with jitter, so a refused crowd does not come back
 * in step (socket.io#2998 is what happens without it).
 *
 * Per-address state lives in two maps keyed by address. Neither can grow without bound: the count
 * map holds only addresses with a connection open (so at most maxConnections entries), and the
 * bucket map is capped at MAX_TRACKED_ADDRESSES, dropping the least recently used bucket first. A
 * dropped bucket is a full one again: a client with more addresses than the cap can evade the rate
 * limit, which no address-keyed limit can prevent (the total limit still holds).
 */

import { InvalidArgumentError } from '../errors.js';
import { ErrorCode } from '../protocol/errors.js';
import { countOrInfinity, finiteAtLeast } from '../util/check.js';

/** A rate: `perSecond` on average, bursts of up to `burst` (default: one second's worth). */
export interface RateLimit {
  perSecond: number;
  burst?: number;
}

/** Why a connection was refused; also the keys of the server's refusal counters. */
export type RefusalReason =
  | 'max-connections'
  | 'accept-rate'
  | 'max-connections-per-address'
  | 'connection-rate'
  | 'shutting-down'
  | 'proxy-untrusted'
  | 'proxy-missing'
  | 'proxy-malformed'
  | 'tls-handshake'
  | 'handshake-timeout'
  | 'authenticating';

/** A refusal: the reason, what the peer is told (a GOAWAY code and text) and when to come back. */
export interface Refusal {
  reason: RefusalReason;
  code: string;
  message: string;
  retryAfterMs: number;
}

/** A refused connection: why, and who it was. */
export interface RefusalInfo {
  reason: RefusalReason;
  remoteAddress: string | undefined;
  remotePort: number | undefined;
  /** The retry hint it was given (0 when it could only be closed). */
  retryAfterMs: number;
  /** The error behind it (a malformed PROXY header, a TLS failure), if any. */
  error: Error | undefined;
}

/** Buckets kept at most; the least recently used goes first. */
export const MAX_TRACKED_ADDRESSES = 65_536;

/** Checks a {@link RateLimit} option. */
export function checkRate(name: string, r: RateLimit | undefined): Required<RateLimit> | undefined {
  if (r === undefined) return undefined;
  if (typeof r !== 'object' || r === null)
    throw new InvalidArgumentError(`${name} must be { perSecond, burst? }`);
  const perSecond = finiteAtLeast(`${name}.perSecond`, r.perSecond, Number.NaN);
  if (!(perSecond > 0)) throw new InvalidArgumentError(`${name}.perSecond must be a finite number > 0`);
  const burst = finiteAtLeast(`${name}.burst`, r.burst, Math.max(1, perSecond), 1);
  return { perSecond, burst };
}

/**
 * A token bucket: `burst` tokens, refilled at `perSecond`. Time in ms from the caller, so one
 * clock reading serves a whole accept.
 */
export class TokenBucket {
  private tokens: number;
  private stamp: number;
  constructor(
    private readonly rate: Required<RateLimit>,
    now: number,
  ) {
    this.tokens = rate.burst;
    this.stamp = now;
  }

  /** Takes a token: 0 when there was one, else the ms until there is. */
  take(now: number): number {
    const r = this.rate;
    this.tokens = Math.min(r.burst, this.tokens + ((now - this.stamp) * r.perSecond) / 1000);
    this.stamp = now;
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return 0;
    }
    return Math.ceil(((1 - this.tokens) * 1000) / r.perSecond);
  }
}

/** The admission limits, checked. */
export interface AdmissionLimits {
  maxConnections: number;
  acceptRate: Required<RateLimit> | undefined;
  maxConnectionsPerAddress: number;
  connectionRate: Required<RateLimit> | undefined;
  retryAfterMs: number;
}

/** Checks the admission options of createServer (InvalidArgumentError on the first bad one). */
export function admissionLimits(
  o: {
    maxConnections?: number | undefined;
    acceptRate?: RateLimit | undefined;
    maxConnectionsPerAddress?: number | undefined;
    connectionRate?: RateLimit | undefined;
    retryAfterMs?: number | undefined;
  },
  defaults: { maxConnections: number; retryAfterMs: number },
): AdmissionLimits {
  return {
    maxConnections: countOrInfinity('maxConnections', o.maxConnections, defaults.maxConnections, 0),
    acceptRate: checkRate('acceptRate', o.acceptRate),
    maxConnectionsPerAddress: countOrInfinity(
      'maxConnectionsPerAddress',
      o.maxConnectionsPerAddress,
      Number.POSITIVE_INFINITY,
      1,
    ),
    connectionRate: checkRate('connectionRate', o.connectionRate),
    retryAfterMs: finiteAtLeast('retryAfterMs', o.retryAfterMs, defaults.retryAfterMs),
  };
}

/** A retry hint in [base, 2 × base) ms (whole ms; `base` itself when under 1): clients refused together spread out. */
export function jittered(base: number): number {
  return Math.max(base, Math.floor(base * (1 + Math.random())));
}

export class Admission {
  private readonly perAddress = new Map<string, number>();
  private readonly buckets = new Map<string, TokenBucket>();
  /** The server-wide accept rate's bucket, made with the first connection. */
  private acceptBucket: TokenBucket | undefined;

  constructor(readonly limits: AdmissionLimits) {}

  /** Whether per-address state is kept at all (no per-address limit: no map, no address lookups). */
  get perAddressLimits(): boolean {
    return (
      this.limits.maxConnectionsPerAddress !== Number.POSITIVE_INFINITY ||
      this.limits.connectionRate !== undefined
    );
  }

  /**
   * Decides on a connection from `address` while `open` connections are open (this one not
   * included). Undefined: admitted, and counted against its address until {@link leave}.
   */
  admit(address: string | undefined, open: number, now: number): Refusal | undefined {
    const l = this.limits;
    if (open >= l.maxConnections) {
      return refusal(
        'max-connections',
        `server is at its limit of ${l.maxConnections} connections`,
        l.retryAfterMs,
      );
    }
    const accept = l.acceptRate;
    if (accept !== undefined) {
      this.acceptBucket ??= new TokenBucket(accept, now);
      const wait = this.acceptBucket.take(now);
      if (wait > 0) {
        return refusal(
          'accept-rate',
          `server is accepting at most ${accept.perSecond} new connections per second`,
          Math.max(wait, l.retryAfterMs),
        );
      }
    }
    if (!this.perAddressLimits || address === undefined) return undefined;
    const rate = l.connectionRate;
    if (rate !== undefined) {
      let b = this.buckets.get(address);
      if (b === undefined) {
        if (this.buckets.size >= MAX_TRACKED_ADDRESSES) {
          const oldest = this.buckets.keys().next().value as string;
          this.buckets.delete(oldest);
        }
        b = new TokenBucket(rate, now);
      } else this.buckets.delete(address); // re-inserted below: most recently used last
      this.buckets.set(address, b);
      const wait = b.take(now);
      if (wait > 0) {
        return refusal(
          'connection-rate',
          `more than ${rate.perSecond} new connections per second from ${address}`,
          Math.max(wait, l.retryAfterMs),
        );
      }
    }
    const n = this.perAddress.get(address) ?? 0;
    if (n >= l.maxConnectionsPerAddress) {
      return refusal(
        'max-connections-per-address',
        `${address} has ${n} connections, the limit per address`,
        l.retryAfterMs,
      );
    }
    this.perAddress.set(address, n + 1);
    return undefined;
  }

  /** A connection admitted from `address` closed. */
  leave(address: string | undefined): void {
    if (address === undefined || !this.perAddressLimits) return;
    const n = this.perAddress.get(address);
    if (n === undefined) return;
    if (n <= 1) this.perAddress.delete(address);
    else this.perAddress.set(address, n - 1);
  }

  /** Addresses with a connection open, and buckets kept (for stats and tests of the bounds). */
  get tracked(): { addresses: number; buckets: number } {
    return { addresses: this.perAddress.size, buckets: this.buckets.size };
  }
}

/** A refusal with the retry hint jittered. */
export function refusal(reason: RefusalReason, message: string, retryAfterMs: number): Refusal {
  const code = reason === 'shutting-down' ? ErrorCode.SHUTTING_DOWN : ErrorCode.TOO_MANY_CONNECTIONS;
  return { reason, code, message, retryAfterMs: jittered(retryAfterMs) };
}
