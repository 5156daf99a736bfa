/**
 * Maximum connection age (gRFC A9, "Server-side Connection Management"): a connection is told to
 * go (GOAWAY `ERR_MAX_CONNECTION_AGE`, no retry hint) once it has lived `maxConnectionAgeMs`,
 * stretched by up to ±`maxConnectionAgeJitter`, and aborted if its requests are still running
 * `maxConnectionAgeGraceMs` after that (A9's MAX_CONNECTION_AGE_GRACE).
 *
 * Why: a long connection stays where it landed. Behind a load balancer that spreads *connections*
 * (haproxy, an NLB, kube-proxy), a node added to the fleet gets only new connections, and the old
 * nodes keep theirs for days (grpc-java#12575 and #9903 are that complaint). With a maximum age
 * every connection comes back through the balancer now and then, so the load follows the fleet.
 * The jitter keeps connections opened together (after a restart) from all leaving together.
 *
 *   accept ── age (jittered) ──▶ GOAWAY(lastId, ERR_MAX_CONNECTION_AGE, retry 0)
 *                                  │  accepted requests answered, then FIN  (reason local-graceful)
 *                                  └─ grace passes first: abort (RST)       (reason local-abort)
 *
 * The client re-sends what the server never read on its next connection (GOAWAY's usual split)
 * and reconnects after its first backoff step, with full jitter.
 *
 * Cost: nothing without the option. With it, two deadline lists of this module's own (not the
 * server's, whose request deadlines fire often): the age is drawn from AGE_STEPS values, each one
 * FIFO queue of the Deadlines list, so arming and cancelling stay O(1) and a timer fire looks at
 * AGE_STEPS queue heads at most.
 */

import { InvalidArgumentError, LonglinkError } from '../errors.js';
import { ErrorCode } from '../protocol/errors.js';
import { durationOrInfinity, finiteAtLeast } from '../util/check.js';
import { type Deadline, Deadlines } from '../util/deadlines.js';
import type { ServerPeer } from './server-peer.js';

/** How many distinct ages the jitter draws from: fine enough to spread, few enough queues. */
export const AGE_STEPS = 64;

/** The checked options. */
export interface MaxAgeSettings {
  readonly ageMs: number;
  /** Fraction, 0 … 1: each age is in [ageMs · (1 − jitter), ageMs · (1 + jitter)]. */
  readonly jitter: number;
  readonly graceMs: number;
}

/** The largest age a timer can hold (setTimeout's 2³¹ − 1 ms, about 24.8 days). */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * Checks the server's max-age options; undefined when there is no maximum age (the default, or
 * `maxConnectionAgeMs` 0 or Infinity).
 */
export function maxAgeSettings(
  o: {
    maxConnectionAgeMs?: number | undefined;
    maxConnectionAgeJitter?: number | undefined;
    maxConnectionAgeGraceMs?: number | undefined;
  },
  defaults: { maxConnectionAgeJitter: number; maxConnectionAgeGraceMs: number },
): MaxAgeSettings | undefined {
  const ageMs = durationOrInfinity('maxConnectionAgeMs', o.maxConnectionAgeMs, 0);
  const jitter = finiteAtLeast(
    'maxConnectionAgeJitter',
    o.maxConnectionAgeJitter,
    defaults.maxConnectionAgeJitter,
  );
  if (jitter > 1) throw new InvalidArgumentError(`maxConnectionAgeJitter must be in [0, 1], got ${jitter}`);
  const graceMs = finiteAtLeast(
    'maxConnectionAgeGraceMs',
    o.maxConnectionAgeGraceMs,
    defaults.maxConnectionAgeGraceMs,
  );
  if (ageMs === 0 || ageMs === Number.POSITIVE_INFINITY) return undefined;
  if (ageMs * (1 + jitter) > MAX_TIMER_MS || graceMs > MAX_TIMER_MS) {
    throw new InvalidArgumentError(
      `maxConnectionAgeMs (with its jitter) and maxConnectionAgeGraceMs must be at most ${MAX_TIMER_MS} ms`,
    );
  }
  return { ageMs, jitter, graceMs };
}

/**
 * A connection's age limit, drawn once at accept: `ageMs` stretched by a uniform step in
 * [−jitter, +jitter], on a grid of AGE_STEPS values (so deadlines share queues).
 */
export function drawAge(s: MaxAgeSettings, random: () => number = Math.random): number {
  const step = Math.min(AGE_STEPS - 1, Math.floor(random() * AGE_STEPS));
  const f = (2 * step) / (AGE_STEPS - 1) - 1; // −1 … +1
  return Math.max(1, Math.round(s.ageMs * (1 + s.jitter * f)));
}

/** The age deadlines of one server's connections. */
export class ConnectionAges {
  private readonly ages = new Deadlines();
  private readonly graces = new Deadlines();
  /** Connections whose age is running. */
  private readonly running = new Map<ServerPeer, Deadline>();
  /** Connections told to go, whose grace is running. */
  private readonly going = new Map<ServerPeer, Deadline>();
  /** One callback pair per server (a deadline's argument is the peer). */
  private readonly onAge = (arg: unknown): void => this.aged(arg as ServerPeer);
  private readonly onGrace = (arg: unknown): void => this.graceOver(arg as ServerPeer);
  /** Connections told to go because of their age, and those of them aborted at the grace's end. */
  goaways = 0;
  aborted = 0;

  constructor(readonly settings: MaxAgeSettings) {}

  /** A connection was accepted: its age runs from now. */
  start(peer: ServerPeer): void {
    this.running.set(peer, this.ages.add(drawAge(this.settings), this.onAge, peer));
  }

  /** The connection closed (for any reason): forget it. */
  end(peer: ServerPeer): void {
    const d = this.running.get(peer);
    if (d !== undefined) {
      this.running.delete(peer);
      this.ages.cancel(d);
      return;
    }
    const g = this.going.get(peer);
    if (g !== undefined) {
      this.going.delete(peer);
      this.graces.cancel(g);
    }
  }

  private aged(peer: ServerPeer): void {
    this.running.delete(peer);
    // Already going (a shutdown, a ping flood): its own close bounds it.
    if (peer.goawaySent) return;
    this.goaways++;
    this.going.set(peer, this.graces.add(Math.max(1, this.settings.graceMs), this.onGrace, peer));
    void peer.shutdown(ErrorCode.MAX_CONNECTION_AGE, 'connection reached its maximum age', 0);
  }

  private graceOver(peer: ServerPeer): void {
    this.going.delete(peer);
    this.aborted++;
    peer.connection.abort(
      new LonglinkError(
        ErrorCode.MAX_CONNECTION_AGE,
        `requests still running ${this.settings.graceMs} ms after the maximum age's GOAWAY`,
      ),
    );
  }

  /** Connections whose age or grace is running. */
  get size(): number {
    return this.running.size + this.going.size;
  }

  clear(): void {
    this.running.clear();
    this.going.clear();
    this.ages.clear();
    this.graces.clear();
  }
}
