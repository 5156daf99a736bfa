/**
 * One endpoint of a shared-mode pool: the client sessions to one server, and which of them take
 * requests now.
 *
 * Its Pool<ClientSession> (pool.ts) owns the sessions' lives: it opens them (connect + HELLO,
 * with backoff, full jitter and the circuit breaker), keeps the minimum open, closes idle ones
 * after idleTimeoutMs, retires each at its jittered max lifetime, and queues the requests that
 * wait for a session (their deadline, maxWaiters, fail-fast while the breaker is open). The
 * endpoint borrows a session while it carries requests and gives it back when the last one is
 * answered (at the end of that event-loop turn, so callers that send again at once keep it): a
 * lease is never held by an idle endpoint, and idle time is the Pool's to judge:
 *
 *   Pool idle ── a request needs one, or load grows ──▶ in use (least in flight first)
 *      ▲                                                  │
 *      └────── nothing in flight at the turn's end ◀──────┤
 *                                                         ├─ GOAWAY, max lifetime ─▶ out of the Pool at once
 *                                                         │    (its slot freed for a replacement); it answers
 *                                                         │    what it carries, then closes (retireTimeoutMs)
 *                                                         ├─ lost (RST, FIN) ─▶ destroyed; its requests fail
 *                                                         │    with the close reason
 *                                                         └─ removeEndpoint(), close() ─▶ given back when its
 *                                                              last answer came; the draining Pool closes it
 *
 * Requests that find no session in use wait in the Pool's queue — the only queue. When a session
 * comes into use they all share it: the endpoint rejects the Pool's waiters with WAKE, and each
 * chooses again (a burst at a cold endpoint lands on the first session up, as the others open).
 *
 * Endpoint health, for the balancer (balancer.ts):
 *
 *   healthy ── GOAWAY ─────────────────────────▶ degraded ── a new session to it ──▶ healthy
 *      │   ── sessions lost (RST, or FIN with requests in flight), none left ─▶ degraded
 *      │   ── N consecutive failures (failed connects, lost sessions) ─▶ ejected (jittered)
 *      └── breaker open (pool.ts: consecutive failed connects) ─▶ skipped; requests fail fast
 *          with ERR_ENDPOINT_UNAVAILABLE when every endpoint is skipped
 */

import { setTimeout as sleep } from 'node:timers/promises';
import { type CloseInfo, CloseReason } from '../connection/close-reason.js';
import { LonglinkError, RequestNotSentError } from '../errors.js';
import type { GoawayMessage } from '../protocol/types.js';
import {
  type ClientSession,
  openSession,
  RefusedError,
  type SessionOwner,
} from '../session/client-session.js';
import type { SessionConfig } from '../session/options.js';
import type { OutgoingRequest } from '../session/request.js';
import { now as clock } from '../util/clock.js';
import { PoolEndpoint } from './endpoint-set.js';
import type { Lease } from './lease.js';
import { type DestroyDetail, DestroyReason, type PoolStats } from './pool-options.js';

/** One session in {@link SharedEndpointStats}. */
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
  /** `going-away`: it sent GOAWAY and no new session to it has been made since. */
  state: 'open' | 'going-away' | 'removed';
  /** Sessions taking new requests (in use or idle in the endpoint's Pool). */
  connections: number;
  /** Sessions finishing their requests before they close. */
  draining: number;
  inflight: number;
  /** Requests waiting for a session. */
  waiting: number;
  /** Connects in flight. */
  creating: number;
  /** Used only when no healthy endpoint is left (GOAWAY, or lost its sessions). */
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

/** @internal What an endpoint asks of its ClientPool. */
export interface SharedContext {
  readonly perEndpoint: number;
  readonly closed: boolean;
  readonly config: SessionConfig;
  readonly retireTimeoutMs: number;
  emit(event: string, ...args: unknown[]): boolean;
  recordFailure(ep: SharedEndpoint): void;
  recordSuccess(ep: SharedEndpoint): void;
  ejectedForMs(ep: SharedEndpoint, now: number): number;
}

/** @internal What woken waiters are rejected with: a session came into use, choose again. */
export const WAKE: unique symbol = Symbol('longlink.pool.wake');

const GOING_AWAY = CloseReason.GOING_AWAY;
/** Why a session in use takes no new work while its endpoint is removed or the pool closes. */
const DRAIN = DestroyReason.DRAIN;

/**
 * @internal One session of the endpoint, from its create to its close, and its owner: the session tells
 * it what happens directly (one object per connection, no listeners).
 */
export class Member implements SessionOwner {
  session!: ClientSession;
  inflight = 0;
  requests = 0;
  createdAt = 0;
  /** The endpoint's loan of it while it carries requests; undefined while idle in the Pool. */
  lease: Lease<ClientSession> | undefined = undefined;
  /** When the Pool retires it (its jittered max lifetime), monotonic time. */
  retireAt = Number.POSITIVE_INFINITY;
  /** Why it takes no new work, once it does not. */
  draining: string | undefined = undefined;
  /** In the endpoint's list: between the Pool's 'create' and the session's close. */
  listed = false;
  constructor(readonly ep: SharedEndpoint) {}

  sessionNotify(_s: ClientSession, topic: string, payload: unknown): void {
    this.ep.ctx.emit('notify', topic, payload, this.ep.key);
  }
  sessionRtt(_s: ClientSession, _rttMs: number): void {}
  sessionGoaway(_s: ClientSession, msg: GoawayMessage, unprocessed: OutgoingRequest[]): void {
    // The server never read these: the pool's request loop sends each again, elsewhere.
    if (unprocessed.length > 0) {
      const err = new RequestNotSentError(
        `${this.ep.key} went away (${msg.reason}) before reading the request`,
      );
      for (const r of unprocessed) r.settle(err, undefined);
    }
    this.ep.goaway(this, msg);
  }
  sessionClosed(_s: ClientSession, info: CloseInfo): void {
    this.ep.sessionClosed(this, info);
  }
}

function memberOf(session: ClientSession): Member {
  return session.owner as Member;
}

function noop(): void {}

/** @internal One endpoint of a ClientPool (see the top of this file). */
export class SharedEndpoint extends PoolEndpoint<ClientSession> {
  /** Every session of the endpoint, in the order they were made (stats list them so). */
  readonly members: Member[] = [];
  /** Sessions borrowed from the Pool and taking requests. */
  readonly usable: Member[] = [];
  inflight = 0;
  /** Requests waiting in the Pool's queue for a session. */
  waiting = 0;
  /** Borrows under way in the background (load grows; a probe after GOAWAY). */
  acquiring = 0;
  goingAway = false;
  /** Lost sessions abnormally or failed to connect since the last successful connect. */
  suspect = false;
  /** A failure was reported to the balancer since the last success (skips the call otherwise). */
  sawFailure = false;
  /** No connect before this (monotonic time): the server's retry hint (GOAWAY, or a refusal). */
  retryAt = 0;
  /** A check for sessions left idle is due at the end of this turn (see settled). */
  private givingBack = false;
  readonly totals = { requests: 0, resent: 0 };

  constructor(
    readonly ctx: SharedContext,
    key: string,
    host: string,
    port: number,
  ) {
    super(key, host, port);
  }

  // BalancedTarget: requests in flight and waiting, out of N sessions.
  override load(): number {
    return this.inflight + this.waiting;
  }
  override capacity(): number {
    return this.ctx.perEndpoint;
  }
  override idle(): number {
    let n = 0;
    for (const m of this.members) if (m.draining === undefined && m.inflight === 0) n++;
    return n;
  }
  degraded(): boolean {
    return this.goingAway || (this.suspect && this.openCount() === 0);
  }
  override createFailed(): void {
    this.suspect = true;
    this.sawFailure = true;
  }

  // -------------------------------------------------------------------------------------------
  // The Pool's factory and events

  /** Pool factory: a session to this endpoint, no sooner than the server's retry hint. */
  async open(signal: AbortSignal): Promise<ClientSession> {
    // Each phase of a create (this wait, the TCP connect, HELLO) is bounded by connectTimeoutMs.
    const wait = Math.min(this.retryAt - clock(), this.ctx.config.connectTimeoutMs);
    if (wait > 0) await sleep(wait, undefined, { signal, ref: false });
    const m = new Member(this);
    try {
      m.session = await openSession(this.ctx.config, this.host, this.port, { signal, owner: m });
    } catch (err) {
      if (err instanceof RefusedError && err.retryAfterMs > 0)
        this.retryAt = Math.max(this.retryAt, clock() + err.retryAfterMs);
      throw err;
    }
    m.createdAt = clock();
    return m.session;
  }

  /**
   * Pool factory: ends a session. A retired one (idle, lifetime, drain) or one whose server said
   * GOAWAY answers what it carries first, within retireTimeoutMs; a broken one is reset.
   */
  end(session: ClientSession, detail: DestroyDetail): Promise<void> | undefined {
    if (session.connection.state === 'closed') return undefined;
    if (detail.graceful || session.goawayReceived !== undefined) {
      return session.close({ graceMs: this.ctx.retireTimeoutMs }).then(noop);
    }
    session.destroy(detail.error instanceof LonglinkError ? detail.error : undefined);
    return session.connection.closed.then(noop);
  }

  /** Pool 'create': a new session is up, so the endpoint is reachable. */
  created(session: ClientSession): void {
    const m = memberOf(session);
    m.listed = true;
    this.members.push(m);
    this.goingAway = false;
    this.suspect = false;
    if (this.sawFailure) {
      this.sawFailure = false;
      this.ctx.recordSuccess(this);
    }
    this.ctx.emit('connect', session, this.key);
  }

  /** Pool 'destroy': the Pool let go of a session; it counts as draining until it has closed. */
  destroyed(session: ClientSession, reason: string): void {
    const m = memberOf(session);
    if (m.lease !== undefined) {
      // Taken from us by the Pool (a drain's deadline): no new work on it.
      this.unlist(m);
      m.lease = undefined;
    }
    if (m.listed && m.draining === undefined) m.draining = reason;
  }

  // -------------------------------------------------------------------------------------------
  // Choosing a session

  /**
   * The session with the fewest requests in flight; ties go to the oldest, so light load stays
   * on few sessions and the surplus of a burst can idle out, while under load the work spreads
   * evenly. When even the chosen one is busy, another session is borrowed in the background
   * while below N; this request does not wait for it. Undefined when none is in use.
   */
  choose(now: number): Member | undefined {
    const list = this.usable;
    for (;;) {
      const n = list.length;
      if (n === 0) return undefined;
      let best = list[0] as Member;
      for (let i = 1; i < n && best.inflight > 0; i++) {
        const m = list[i] as Member;
        if (m.inflight < best.inflight) best = m;
      }
      if (best.retireAt <= now) {
        // Past its lifetime: new work moves on. The last one serves until its replacement is in
        // use, unless the Pool has no room for one (N sessions open): then it goes now, and the
        // requests wait for the replacement, a connect away.
        if (n > 1 || this.openCount() >= this.ctx.perEndpoint) {
          this.retire(best, DestroyReason.MAX_LIFETIME);
          continue;
        }
        this.grow();
      } else if (best.inflight > 0 && n + this.acquiring < this.ctx.perEndpoint) {
        this.grow();
      }
      return best;
    }
  }

  /**
   * A session the Pool lent: into use. Undefined (and given back) when it cannot serve. A lease
   * a request waited for serves that request even when the endpoint was removed or the pool
   * closed meanwhile (the request came first); it takes nothing else and goes back after it.
   */
  adopt(lease: Lease<ClientSession>, forRequest: boolean): Member | undefined {
    const m = memberOf(lease.resource);
    if (!m.session.usable) {
      lease.destroy(DestroyReason.UNUSABLE);
      return undefined;
    }
    if (!m.listed || m.draining !== undefined || (!forRequest && (this.removed || this.ctx.closed))) {
      lease.release(); // the Pool closes it (evicted, draining) or keeps it
      return undefined;
    }
    m.lease = lease;
    m.retireAt = lease.retireAt;
    if (this.removed || this.ctx.closed) {
      m.draining = DRAIN;
      return m;
    }
    this.usable.push(m);
    // Requests waiting for a session share this one: wake them to choose again.
    if (this.waiting > 0) this.pool.rejectWaiters(WAKE);
    // A replacement is in use: sessions past their lifetime can go.
    const now = clock();
    for (const old of this.usable.slice()) {
      if (old.retireAt <= now && this.usable.length > 1) this.retire(old, DestroyReason.MAX_LIFETIME);
    }
    return m;
  }

  /** Borrows one more session in the background (the Pool connects, with backoff and breaker). */
  grow(): void {
    if (this.removed || this.ctx.closed || this.pool.breakerState === 'open') return;
    if (this.usable.length + this.acquiring >= this.ctx.perEndpoint) return;
    this.acquiring++;
    this.pool.acquire().then(
      (lease) => this.grown(lease),
      () => {
        this.acquiring--; // woken, timed out, breaker open, draining: the next request asks again
      },
    );
  }

  private grown(lease: Lease<ClientSession>): void {
    this.acquiring--;
    const m = this.adopt(lease, false);
    // Opened for load that is gone meanwhile, or as a probe: back to the Pool.
    if (m !== undefined && this.inflight === 0 && this.waiting === 0) this.giveBack(m);
  }

  /** A request on `m` settled; `answered` when the server answered it (RESPONSE or ERROR). */
  settled(m: Member, answered: boolean): void {
    m.inflight--;
    this.inflight--;
    if (answered && this.sawFailure) {
      this.sawFailure = false;
      this.ctx.recordSuccess(this);
    }
    if (m.inflight > 0 || m.lease === undefined) return;
    if (m.draining !== undefined) {
      this.giveBack(m); // removed or closing: the draining Pool closes it now
      return;
    }
    // Idle now, but perhaps not for long: answers arrive in batches and their callers send again
    // in the same turn. Giving the session back at once would make each of them borrow it anew
    // (and wait for it in the Pool's queue). So the sessions still idle when the turn is over go
    // back then: one check per endpoint and turn, none per request.
    if (!this.givingBack) {
      this.givingBack = true;
      setImmediate(SharedEndpoint.giveBackIdle, this);
    }
  }

  /** After the turn: sessions with nothing in flight go back to the Pool (spares included). */
  private static giveBackIdle(ep: SharedEndpoint): void {
    ep.givingBack = false;
    for (const m of ep.usable.slice()) if (m.inflight === 0) ep.giveBack(m);
  }

  /** Returns `m`'s loan: idle in the Pool, or closed by it (draining, past its lifetime, unusable). */
  private giveBack(m: Member): void {
    this.unlist(m);
    const lease = m.lease;
    m.lease = undefined;
    lease?.release();
  }

  /** Stops giving `m` new work and takes it out of the Pool now; it closes once its requests are answered. */
  private retire(m: Member, reason: string): void {
    this.unlist(m);
    m.draining = reason;
    const lease = m.lease;
    m.lease = undefined;
    lease?.destroy(reason);
  }

  private unlist(m: Member): void {
    const i = this.usable.indexOf(m);
    if (i >= 0) this.usable.splice(i, 1);
  }

  /** Sessions taking new work: in use, or idle in the Pool. */
  private openCount(): number {
    let n = 0;
    for (const m of this.members) if (m.draining === undefined) n++;
    return n;
  }

  /** A session to send a NOTIFY on: the least busy in use, else one idle in the Pool (no loan needed). */
  notifySession(): ClientSession | undefined {
    let best: Member | undefined;
    for (const m of this.usable) if (best === undefined || m.inflight < best.inflight) best = m;
    if (best !== undefined) return best.session;
    for (const m of this.members) if (m.draining === undefined && m.session.usable) return m.session;
    return undefined;
  }

  // -------------------------------------------------------------------------------------------
  // What the sessions say

  /*
   * GOAWAY on one of the endpoint's sessions:
   *
   *   server ── GOAWAY(lastId) ──▶ session: ids ≤ lastId stay (answered there, then it closes)
   *                                ids > lastId fail RequestNotSentError ─▶ the request loop
   *                                sends them again elsewhere (the server promised it never ran
   *                                them: no duplicates)
   *   endpoint ─▶ degraded (no new work while a healthy endpoint exists); the session leaves the
   *            Pool at once, so a replacement can open (no sooner than retryAfterMs; the
   *            minimum refills by itself, a probe covers min 0) ─▶ healthy when one is up
   */
  goaway(m: Member, msg: GoawayMessage): void {
    const active = !this.removed && !this.ctx.closed;
    if (active) this.retryAt = Math.max(this.retryAt, clock() + msg.retryAfterMs);
    if (m.listed) {
      if (m.lease !== undefined) this.retire(m, GOING_AWAY);
      else if (m.draining === undefined) {
        m.draining = GOING_AWAY;
        this.pool.evict(m.session, GOING_AWAY); // idle in the Pool (or lent and not yet taken)
      }
    }
    if (!active) return;
    this.goingAway = true;
    this.ctx.emit('goaway', this.key, msg.reason, msg.retryAfterMs);
    this.grow();
  }

  sessionClosed(m: Member, info: CloseInfo): void {
    const i = this.members.indexOf(m);
    if (i < 0) return; // closed before the Pool took it in (during its create)
    this.members.splice(i, 1);
    m.listed = false;
    this.unlist(m);
    const lease = m.lease;
    m.lease = undefined;
    const goaway = info.reason === GOING_AWAY;
    const byPool = m.draining !== undefined && m.draining !== GOING_AWAY;
    // A reset, or the server's FIN with our requests in flight, is the endpoint's failure; a
    // graceful FIN on an idle session is a server's idle timeout.
    if (!byPool && !goaway && (!info.graceful || (info.initiator === 'remote' && m.inflight > 0))) {
      this.suspect = true;
      this.sawFailure = true;
      this.ctx.recordFailure(this);
    }
    if (lease !== undefined) lease.destroy(goaway ? GOING_AWAY : `closed-${info.reason}`);
    else if (m.draining === undefined) this.pool.evict(m.session, `closed-${info.reason}`);
    if (!byPool) this.ctx.emit('disconnect', info, this.key);
  }

  // -------------------------------------------------------------------------------------------
  // Control

  /**
   * removeEndpoint() / close(): no new work; sessions in use are given back once their requests
   * are answered, and the draining Pool closes everything gracefully. With `timeoutMs`, sessions
   * still busy then are reset.
   */
  override shutdown(timeoutMs?: number): Promise<void> {
    const drained = this.pool.drain(timeoutMs === undefined ? {} : { timeoutMs });
    for (const m of this.usable.slice()) {
      m.draining = DRAIN;
      if (m.inflight === 0) this.giveBack(m);
      else this.unlist(m);
    }
    return drained;
  }

  stats(now: number): SharedEndpointStats {
    const s = this.pool.stats();
    const perConnection: SharedConnectionStats[] = [];
    let connections = 0;
    for (const m of this.members) {
      if (m.draining === undefined) connections++;
      perConnection.push({
        inflight: m.inflight,
        requests: m.requests,
        ageMs: now - m.createdAt,
        draining: m.draining,
      });
    }
    const ejectedForMs = this.ctx.ejectedForMs(this, now);
    return {
      endpoint: this.key,
      state: this.removed ? 'removed' : this.goingAway ? 'going-away' : 'open',
      connections,
      draining: this.members.length - connections,
      inflight: this.inflight,
      waiting: this.waiting,
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
