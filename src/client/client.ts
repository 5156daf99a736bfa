/**
 * The longlink client: a supervisor over one session at a time (src/session/client-session.ts
 * speaks the protocol on each connection). It opens the session, and when the session is lost
 * opens the next one — single-flight, with exponential backoff and full jitter — while requests
 * made meanwhile wait for it ('wait') or fail at once ('fail'). On GOAWAY the session hands back
 * the requests the server never read; they are sent again, in their order, on the next session,
 * so a graceful server restart loses nothing.
 *
 * One session at a time (grpc-js keeps its transports under a channel the same way; nats.js its
 * protocol handler under a reconnect loop):
 *
 *   open ──▶ [session usable] ── lost (RST, FIN, heartbeat) ─────────────────────┐
 *                 │                                                             │
 *                 └── GOAWAY: 'goaway'; accepted requests answered here,        │
 *                     unread ones queued ─▶ [draining] ── closed ──────────────▶ 'disconnect'
 *                                                                               │
 *        'reconnect' ◀── next session up ◀── 'reconnecting' (attempt, delay) ◀──┘
 *            queue flushed: handed-back requests first, then the newer ones
 *
 * The next session is opened only once the last one has closed, so the events tell one story:
 * disconnect, then reconnecting, then reconnect. After a GOAWAY the delay also waits out the
 * server's retryAfterMs (counted from the GOAWAY; at most 10 minutes, MAX_RETRY_HINT_MS). A ClientPool, which holds several sessions,
 * replaces a draining one without waiting for it.
 *
 * About 770 lines, a quarter of them the public API's TSDoc; the protocol itself is in the session,
 * options in session/options.ts: what is left is the supervisor's one state machine, and the room
 * cursors it carries from one session to the next (a resume needs them at the next HELLO).
 */

import { EventEmitter } from 'node:events';
import type { CloseInfo } from '../connection/close-reason.js';
import type { Connection, ConnectionStats } from '../connection/connection.js';
import {
  ConnectionClosedError,
  InvalidArgumentError,
  LonglinkError,
  RequestNotSentError,
} from '../errors.js';
import type { PayloadCodec } from '../protocol/payload.js';
import type { GoawayMessage } from '../protocol/types.js';
import { type ClientSession, openSession, RefusedError } from '../session/client-session.js';
import { HEARTBEAT_PRESETS, type HeartbeatTiming } from '../session/heartbeat.js';
import { checkSessionOptions, type SessionConfig, type SessionOptions } from '../session/options.js';
import { newRequest, type OutgoingRequest, type RequestOptions } from '../session/request.js';
import { AsyncQueue } from '../util/async-queue.js';
import { type BackoffPolicy, fullJitter, honouredHint } from '../util/backoff.js';
import { countOrInfinity, durationOrInfinity, finiteAtLeast, timerDelay, timerLimit } from '../util/check.js';
import { now } from '../util/clock.js';
import { deferListenerTable } from '../util/events.js';
import { errorFields, type Logger, resolveLogger } from '../util/log.js';

export { RequestTimeoutError } from '../session/request.js';
export type { RequestOptions };

/** Reconnection policy: exponential backoff with full jitter (AWS architecture blog, 2015). */
export interface ReconnectOptions {
  /** First delay ceiling. Default 100 ms. */
  initialDelayMs?: number;
  /** Ceiling growth per attempt. Default 2. */
  multiplier?: number;
  /** Largest delay ceiling. Default 10 000 ms. */
  maxDelayMs?: number;
  /** Give up after this many failed attempts in a row (pending requests then fail). Default Infinity. */
  maxAttempts?: number;
}

/** Options of {@link connect}. */
export interface ClientOptions extends SessionOptions {
  host?: string;
  port: number;
  /** Reconnect after a lost connection or a GOAWAY (default on), or false. */
  reconnect?: ReconnectOptions | false;
  /**
   * While disconnected, requests wait for the connection to come back (bounded by their
   * timeout) — 'wait', the default — or fail at once with the last error — 'fail'.
   */
  whenDisconnected?: 'wait' | 'fail';
  /** Aborts the connect (TCP and HELLO) under way. */
  signal?: AbortSignal;
  /**
   * Rooms to resume on the first connection, with the last seq this client has of each (what
   * {@link Client.rooms} said before, kept across a restart of the client's own process): the
   * server sends what was published after each, or a `'gap'` (protocol 1.2; rooms the server's
   * `authorizeRoom` refuses are reported as `'left'`).
   */
  rooms?: Readonly<Record<string, number>>;
  /**
   * Where the client logs what an operator needs (pino's shape): disconnects with their reason,
   * GOAWAYs, reconnect attempts that failed, the reconnect, giving up, a heartbeat slowed at the
   * server's request. Silent by default; `NODE_DEBUG=longlink` prints the same lines.
   */
  logger?: Logger;
}

/** A server push. */
export interface Notification {
  topic: string;
  payload: unknown;
  /** A room push (protocol 1.2): its room … */
  room?: string;
  /** … and its sequence in the room. */
  seq?: number;
}

/** Where a room push came from: its room and its sequence there (protocol 1.2). */
export interface RoomPush {
  readonly room: string;
  readonly seq: number;
}

/**
 * Pushes of `room` after `afterSeq`, up to and including `throughSeq`, are lost to this client:
 * the room's history no longer had them when it came back (or the broker lost them). Some of
 * those seqs may never have been used. Later pushes come as usual.
 */
export interface RoomGap {
  readonly room: string;
  readonly afterSeq: number;
  readonly throughSeq: number;
}

/** What {@link Client.stats} reports (JSON-safe). */
export interface ClientStats {
  connected: boolean;
  /** Requests waiting for an answer. */
  pending: number;
  /** Of those, waiting for a connection. */
  queued: number;
  /** Smoothed round-trip time from PING/PONG. */
  rttMs: number | undefined;
  /** The heartbeat agreed in HELLO and running on this side, if any. */
  heartbeat: HeartbeatTiming | undefined;
  connection: ConnectionStats | undefined;
}

/** Connection status changes, as events and as the {@link Client.status} iterator. */
export type ClientStatus =
  | { type: 'disconnected'; info: CloseInfo }
  | { type: 'reconnecting'; attempt: number; delayMs: number }
  | { type: 'reconnected' }
  | { type: 'goaway'; reason: string; retryAfterMs: number };

/** The events a Client emits. */
export interface ClientEvents {
  /** A PONG came back: one round-trip time in ms (see also `rttMs`, smoothed). */
  rtt: [rttMs: number];
  /** Settings that contradict each other (heartbeat vs. idle budget …). */
  warning: [message: string];
  /** A NOTIFY from the server; a room push (1.2) says its room and seq. */
  notify: [topic: string, payload: unknown, push?: RoomPush];
  /** This client is now a member of `room`, and has every push up to `seq` (1.2). */
  joined: [room: string, seq: number];
  /** It is no longer a member of `room`: the server said so, or refused to let it resume there. */
  left: [room: string];
  /** Room pushes were lost (see {@link RoomGap}): said instead of lost silently. */
  gap: [gap: RoomGap];
  /** The connection was lost (or closed after a GOAWAY), with its close info. Always before 'reconnecting'. */
  disconnect: [info: CloseInfo];
  /** A reconnect attempt is scheduled. */
  reconnecting: [attempt: number, delayMs: number];
  /** A new connection is ready (after a loss or a GOAWAY). */
  reconnect: [];
  /** The server announced it is going away. */
  goaway: [reason: string, retryAfterMs: number];
  /** The client is closed for good. */
  close: [];
  /** No request is pending any more. */
  idle: [];
}

type ReconnectPolicy = BackoffPolicy & { readonly maxAttempts: number };

/**
 * A longlink client. Create it with {@link connect}.
 *
 * @example
 * ```ts
 * const client = await connect({ port: 9000 });
 * client.on('notify', (topic, payload) => console.log(topic, payload));
 * try {
 *   const user = await client.request('user.get', { id: 7 }, { timeoutMs: 2000 });
 * } finally {
 *   await client.close();
 * }
 * ```
 */
export class Client extends EventEmitter {
  // No `implements SessionOwner, RequestOwner`: those contracts are internal (stripped from the
  // published .d.ts); openSession({ owner: this }) and newRequest(this, …) check them all the same.
  readonly codec: PayloadCodec;
  private readonly options: ClientOptions;
  private readonly config: SessionConfig;
  private readonly policy: ReconnectPolicy | undefined;
  /** The one session: usable, or draining after a GOAWAY (then the next opens once it closed). */
  private session: ClientSession | undefined;
  /** Requests waiting for a usable session, in order. */
  private queue: OutgoingRequest[] = [];
  private connecting: Promise<void> | undefined;
  private lastError: LonglinkError | undefined;
  private closed = false;
  private retryTimer: NodeJS.Timeout | undefined;
  /** Aborts the open (TCP, then HELLO) under way: close() and destroy() use it. */
  private opening: AbortController | undefined;
  private inflight = 0;
  /** Made on first use: most clients never iterate. */
  private notifyQueues: Set<AsyncQueue<Notification>> | undefined;
  private statusQueues: Set<AsyncQueue<ClientStatus>> | undefined;
  /** Doubled each time the server says we ping too often (gRPC's client backoff on ENHANCE_YOUR_CALM). */
  private heartbeatScale = 1;
  /** destroy() waits for its session's 'disconnect' before the client's 'close'. */
  private endAfterSession = false;
  /** Monotonic time (util/clock.ts) before which no reconnect starts: the server's last GOAWAY or refusal hint. */
  private notBefore = 0;
  /** Rooms this client is in, and the last seq it has of each: what it resumes after a reconnect. */
  private readonly cursors = new Map<string, number>();
  /** Room pushes dropped as duplicates (seq not above the room's cursor). */
  private duplicates = 0;
  private readonly log: Logger | undefined;

  constructor(options: ClientOptions) {
    super();
    deferListenerTable(this);
    if (!Number.isInteger(options?.port) || options.port < 1 || options.port > 65535) {
      throw new InvalidArgumentError(`port must be an integer 1..65535, got ${String(options?.port)}`);
    }
    this.options = options;
    this.log = resolveLogger(options.logger, { component: 'longlink-client' });
    const { config, warning } = checkSessionOptions(options);
    this.config = config;
    this.codec = config.codec;
    const wd = options.whenDisconnected;
    if (wd !== undefined && wd !== 'wait' && wd !== 'fail') {
      throw new InvalidArgumentError(`whenDisconnected must be 'wait' or 'fail', got ${String(wd)}`);
    }
    if (warning !== undefined) queueMicrotask(() => this.emit('warning', warning));
    for (const [room, seq] of Object.entries(options.rooms ?? {})) {
      if (typeof room !== 'string' || room.length === 0 || !Number.isSafeInteger(seq) || seq < 0) {
        throw new InvalidArgumentError(
          `rooms: ${JSON.stringify(room)} needs a seq in [0, 2^53-1], got ${String(seq)}`,
        );
      }
      this.cursors.set(room, seq);
    }
    const r = options.reconnect;
    this.policy =
      r === false
        ? undefined
        : {
            initialDelayMs: finiteAtLeast('reconnect.initialDelayMs', r?.initialDelayMs, 100),
            multiplier: finiteAtLeast('reconnect.multiplier', r?.multiplier, 2, 1),
            maxDelayMs: finiteAtLeast('reconnect.maxDelayMs', r?.maxDelayMs, 10_000),
            maxAttempts: countOrInfinity('reconnect.maxAttempts', r?.maxAttempts, Number.POSITIVE_INFINITY),
          };
  }

  /** Opens the first connection; rejects if it cannot be made (no retry for the first one). */
  async open(): Promise<this> {
    // Once open, the client reconnects by itself: a second open() adds no connection.
    if (this.session?.usable) return this;
    if (this.connecting !== undefined) {
      await this.connecting;
      if (this.session?.usable) return this;
    }
    const s = await this.openSession();
    // Rooms given in the options: resumed first thing.
    void this.resumeRooms(s);
    return this;
  }

  /** True while a usable connection is up. */
  get connected(): boolean {
    return this.session?.usable === true;
  }

  /** Requests waiting for an answer, on the session and in the queue. */
  get pendingCount(): number {
    return this.inflight;
  }

  /** The current connection, if any (for stats and diagnostics). */
  get connection(): Connection | undefined {
    return this.session?.connection;
  }

  /**
   * The rooms this client is a member of (protocol 1.2) and the last seq it has of each. After a
   * reconnect the client resumes them by itself (`$resume`, first thing on the new connection):
   * the server sends what it missed, in order, once — or a `'gap'` for what its history lost.
   */
  get rooms(): ReadonlyMap<string, number> {
    return this.cursors;
  }

  /** Room pushes received twice and dropped (a resume overlapping what had arrived). */
  get duplicatePushes(): number {
    return this.duplicates;
  }

  /** Smoothed RTT of the current connection from PING/PONG, ms. */
  get rttMs(): number | undefined {
    return this.session?.srttMs;
  }

  /**
   * Sends a request and resolves with its result (decoded with the codec). Rejects with
   * RemoteError (the server's ERROR: `code`, `message`, `details`), RequestTimeoutError,
   * AbortedError, or ConnectionClosedError with the close reason when the connection dies first.
   */
  request<T = unknown>(method: string, params?: unknown, options: RequestOptions = {}): Promise<T> {
    if (this.closed) return Promise.reject(new ConnectionClosedError('client is closed', 'local-graceful'));
    let r: OutgoingRequest;
    try {
      r = newRequest(this, method, params, options, this.config.requestTimeoutMs);
    } catch (err) {
      return Promise.reject(err);
    }
    this.inflight++;
    this.dispatch(r, true);
    return r.promise as Promise<T>;
  }

  /** Sends a one-way NOTIFY to the server. Throws ConnectionClosedError when not connected. */
  notify(topic: string, payload?: unknown): boolean {
    const s = this.session;
    if (!s?.usable) throw new ConnectionClosedError('not connected', undefined, { cause: this.lastError });
    return s.notify(topic, payload);
  }

  /**
   * Measures the round trip to the server (PING/PONG), ms. NaN if not connected, if the connection
   * closes first, or if no PONG comes within `timeoutMs` (default: the client's
   * `requestTimeoutMs`; 0 or Infinity waits until the connection closes). Rejects with
   * InvalidArgumentError for a bad `timeoutMs`.
   *
   * @example
   * ```ts
   * const rtt = await client.ping({ timeoutMs: 500 });
   * if (Number.isNaN(rtt)) console.warn('no answer within 500 ms');
   * ```
   */
  ping(options: { timeoutMs?: number } = {}): Promise<number> {
    let t: number;
    try {
      t = timerLimit(
        'timeoutMs',
        durationOrInfinity('timeoutMs', options?.timeoutMs, this.config.requestTimeoutMs),
      );
    } catch (err) {
      return Promise.reject(err);
    }
    return this.session?.usable
      ? this.session.ping(t > 0 ? t : Number.POSITIVE_INFINITY)
      : Promise.resolve(Number.NaN);
  }

  /**
   * Server pushes as an async iterator (also emitted as 'notify' events). Pushes that arrive
   * between two `next()` calls are buffered (up to 10 000; then the oldest are dropped).
   */
  notifications(): AsyncIterableIterator<Notification> {
    const q: AsyncQueue<Notification> = new AsyncQueue(10_000, () => this.notifyQueues?.delete(q));
    if (this.closed) q.end();
    else {
      this.notifyQueues ??= new Set();
      this.notifyQueues.add(q);
    }
    return q;
  }

  /** Connection status changes (disconnected, reconnecting, reconnected, goaway) as an async iterator. */
  status(): AsyncIterableIterator<ClientStatus> {
    const q: AsyncQueue<ClientStatus> = new AsyncQueue(1_000, () => this.statusQueues?.delete(q));
    if (this.closed) q.end();
    else {
      this.statusQueues ??= new Set();
      this.statusQueues.add(q);
    }
    return q;
  }

  /** Counters of this client and its current connection; JSON-safe. */
  stats(): ClientStats {
    const s = this.session;
    return {
      connected: this.connected,
      pending: this.inflight,
      queued: this.queue.length,
      rttMs: s?.srttMs,
      heartbeat: s?.heartbeat,
      connection: s?.connection.stats(),
    };
  }

  /**
   * Closes: no new requests; waits up to `graceMs` (default 5 000) for pending ones, then says
   * goodbye (GOAWAY) and closes the connection gracefully — the server's FIN awaited at most the
   * connection's `closeTimeoutMs`. Requests never sent fail with RequestNotSentError at once;
   * those still unanswered after the grace period fail with ConnectionClosedError and the close
   * reason.
   */
  async close(options: { graceMs?: number } = {}): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.opening?.abort(new ConnectionClosedError('client is closed', 'local-graceful'));
    this.failQueue(new RequestNotSentError('client closed before the request was sent'));
    const s = this.session;
    if (s !== undefined) await s.close({ graceMs: options.graceMs ?? 5000 });
    this.ended();
  }

  /**
   * Forced close: the connection aborted (RST), pending requests fail at once with reason
   * `local-abort`, queued ones with RequestNotSentError. For graceful, see {@link close}.
   */
  destroy(error?: LonglinkError): void {
    const first = !this.closed;
    this.closed = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.opening?.abort(error ?? new ConnectionClosedError('client destroyed', 'local-abort'));
    this.failQueue(new RequestNotSentError('client destroyed'));
    const s = this.session;
    if (s !== undefined && first) {
      // 'close' is the client's last word: it follows the session's 'disconnect' (the abort's
      // close event comes a turn later), never precedes it.
      this.endAfterSession = true;
      s.destroy(error);
      return;
    }
    s?.destroy(error);
    if (first) this.ended();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  // -------------------------------------------------------------------------------------------
  // Requests

  /** @internal RequestOwner: a request settled. */
  requestSettled(r: OutgoingRequest): void {
    this.inflight--;
    if (r.queued) {
      r.queued = false;
      const i = this.queue.indexOf(r);
      if (i >= 0) this.queue.splice(i, 1);
    }
    if (this.inflight === 0) {
      this.retryTimer?.unref();
      this.emit('idle');
    }
  }

  /** Sends `r` now, or queues it for the next session. `fresh`: made in this same call (see remainingMs). */
  private dispatch(r: OutgoingRequest, fresh: boolean): void {
    const s = this.session;
    if (s?.usable) {
      s.sendRequest(r, fresh);
      return;
    }
    if (this.policy === undefined) {
      // Nothing will ever carry it: no reconnect, and the session (if any) takes no more.
      r.settle(
        new RequestNotSentError('not connected and reconnect is off', { cause: this.lastError }),
        undefined,
      );
      return;
    }
    if (this.options.whenDisconnected === 'fail') {
      // At once, also while a reconnect is under way (the reconnect goes on for later requests).
      r.settle(new RequestNotSentError('not connected', { cause: this.lastError }), undefined);
      this.ensureConnected();
      return;
    }
    r.queued = true;
    this.queue.push(r);
    // A request waiting for the connection keeps the process alive, as its socket would.
    this.retryTimer?.ref();
    this.ensureConnected();
  }

  private flushQueue(): void {
    const q = this.queue;
    this.queue = [];
    for (const r of q) {
      r.queued = false;
      if (!r.done) this.dispatch(r, false);
    }
  }

  private failQueue(err: LonglinkError): void {
    for (const r of this.queue.splice(0)) {
      r.queued = false;
      r.settle(err, undefined);
    }
  }

  // -------------------------------------------------------------------------------------------
  // The session's news (SessionOwner)

  /** @internal */
  sessionNotify(_s: ClientSession, topic: string, payload: unknown): void {
    this.emit('notify', topic, payload);
    const queues = this.notifyQueues;
    if (queues === undefined || queues.size === 0) return;
    const n = { topic, payload };
    for (const q of queues) q.push(n);
  }

  /** @internal A room push: once per seq, in order (the server sends them so; resumes overlap). */
  sessionRoomPush(_s: ClientSession, topic: string, payload: unknown, room: string, seq: number): void {
    const last = this.cursors.get(room);
    if (last !== undefined && seq <= last) {
      this.duplicates++;
      return;
    }
    this.cursors.set(room, seq);
    this.emit('notify', topic, payload, { room, seq });
    const queues = this.notifyQueues;
    if (queues === undefined || queues.size === 0) return;
    const n = { topic, payload, room, seq };
    for (const q of queues) q.push(n);
  }

  /** @internal $joined / $gap / $left. */
  sessionRoomNotice(_s: ClientSession, notice: string, room: string, seq: number): void {
    const last = this.cursors.get(room);
    switch (notice) {
      case '$joined':
        // Joined afresh where we had a cursor (no resume): what lay between is lost to us.
        if (last !== undefined && seq > last) this.emit('gap', { room, afterSeq: last, throughSeq: seq });
        // The server's word on where we start, also below a cursor we had: a cursor ahead of the
        // room (another deployment's) would drop every push up to it as already seen.
        this.cursors.set(room, seq);
        this.emit('joined', room, seq);
        return;
      case '$gap':
        if (last !== undefined && seq <= last) return;
        this.cursors.set(room, seq);
        this.emit('gap', { room, afterSeq: last ?? 0, throughSeq: seq });
        return;
      case '$left':
        if (this.cursors.delete(room)) this.emit('left', room);
        return;
      default:
        return;
    }
  }

  /**
   * The first request on a new connection when this client is in rooms: where it left each. Rooms
   * the server refuses (or cannot resume: protocol below 1.2) are forgotten, with a 'left'.
   */
  private async resumeRooms(s: ClientSession): Promise<void> {
    if (this.cursors.size === 0) return;
    const minor = (s.agreement?.version ?? 0) & 0xff;
    const forget = (rooms: Iterable<string>) => {
      for (const room of [...rooms]) if (this.cursors.delete(room)) this.emit('left', room);
    };
    if (minor < 2) {
      forget(this.cursors.keys());
      return;
    }
    const rooms = Object.fromEntries(this.cursors);
    try {
      const r = await s.request<{ resumed?: string[]; refused?: string[] }>('$resume', { rooms });
      forget(r?.refused ?? []);
    } catch (err) {
      // The connection went before the answer: the next one resumes. A refusal of the request
      // itself (a limit): the server will not have us back in those rooms.
      if (
        err instanceof LonglinkError &&
        err.code !== 'ERR_CONNECTION_CLOSED' &&
        err.code !== 'ERR_NOT_SENT'
      ) {
        forget(Object.keys(rooms));
      }
    }
  }

  /** @internal */
  sessionRtt(_s: ClientSession, rttMs: number): void {
    this.emit('rtt', rttMs);
  }

  /** @internal The server never read `unprocessed`: they go first in the queue, in their order. */
  sessionGoaway(s: ClientSession, msg: GoawayMessage, unprocessed: OutgoingRequest[]): void {
    // A GOAWAY during the HELLO is openSession's to report: that session was never adopted (and
    // carried no request; were there one, it would fail here rather than hang).
    if (s !== this.session) {
      for (const r of unprocessed)
        r.settle(new RequestNotSentError('connection was never in use'), undefined);
      return;
    }
    this.log?.info(
      { reason: msg.reason, retryAfterMs: msg.retryAfterMs, handedBack: unprocessed.length },
      'server sent GOAWAY',
    );
    if (msg.reason === 'ERR_TOO_MANY_PINGS') this.slowHeartbeat();
    this.notBefore = Math.max(this.notBefore, now() + honouredHint(msg.retryAfterMs));
    this.emit('goaway', msg.reason, msg.retryAfterMs);
    this.pushStatus({ type: 'goaway', reason: msg.reason, retryAfterMs: msg.retryAfterMs });
    if (this.closed || this.policy === undefined) {
      // No session will come to send them on: they fail now, not at their deadline (or never).
      const err = new RequestNotSentError(
        this.closed ? 'client closed before the request was sent' : 'server went away and reconnect is off',
        { cause: this.lastError },
      );
      for (const r of unprocessed) r.settle(err, undefined);
      return;
    }
    for (const r of unprocessed) r.queued = true;
    this.queue = unprocessed.concat(this.queue);
    // The next session opens once this one has closed (sessionClosed), after the server's hint.
  }

  /** @internal */
  sessionClosed(s: ClientSession, info: CloseInfo): void {
    // A session that closed during its HELLO was never adopted: openSession reports it.
    if (s !== this.session) return;
    this.session = undefined;
    this.lastError = info.error;
    if (this.log !== undefined) {
      // A close we asked for, or the server's clean one, is news; anything else is a warning.
      const expected = info.reason === 'local-graceful' || info.reason === 'going-away' || this.closed;
      this.log[expected ? 'info' : 'warn'](
        {
          reason: info.reason,
          ...(info.error === undefined ? {} : errorFields(info.error)),
          durationMs: Math.round(info.durationMs),
          pending: this.inflight,
        },
        `disconnected: ${info.reason}`,
      );
    }
    this.emit('disconnect', info);
    this.pushStatus({ type: 'disconnected', info });
    if (this.endAfterSession) {
      this.endAfterSession = false;
      this.ended();
      return;
    }
    if (!this.closed && this.policy !== undefined) this.ensureConnected();
    // Requests that waited for this one to drain (none without a reconnect to come).
    else this.failQueue(new RequestNotSentError('not connected', { cause: this.lastError }));
  }

  /**
   * The server said we ping too often: double the heartbeat for the next connections (gRPC's
   * client backoff), but never past the standard preset's timing, so the detection bound the
   * user chose grows at most to the standard one (or stays, if it was already looser).
   */
  private slowHeartbeat(): void {
    const hb = this.config.heartbeat;
    if (hb === undefined) return;
    const cap = Math.max(1, HEARTBEAT_PRESETS.standard.intervalMs / hb.intervalMs);
    this.heartbeatScale = Math.min(this.heartbeatScale * 2, cap);
    this.log?.warn(
      { intervalMs: hb.intervalMs * this.heartbeatScale, scale: this.heartbeatScale },
      'the server says we ping too often: heartbeat slowed for the next connections',
    );
  }

  // -------------------------------------------------------------------------------------------
  // Opening sessions

  private async openSession(): Promise<ClientSession> {
    if (this.closed) throw new ConnectionClosedError('client is closed', 'local-graceful');
    // close() and destroy() abort an open under way through this, as the caller's signal does.
    const abort = new AbortController();
    this.opening = abort;
    const userSignal = this.options.signal;
    const onUserAbort = () => abort.abort(userSignal?.reason);
    if (userSignal?.aborted) onUserAbort();
    else userSignal?.addEventListener('abort', onUserAbort, { once: true });
    let s: ClientSession;
    try {
      s = await openSession(this.config, this.options.host ?? '127.0.0.1', this.options.port, {
        signal: abort.signal,
        // Owner from the start: a NOTIFY in the same read as the HELLO answer is delivered, not lost.
        owner: this,
        heartbeatScale: this.heartbeatScale,
        resume: this.cursors.size > 0,
      });
    } finally {
      userSignal?.removeEventListener('abort', onUserAbort);
      if (this.opening === abort) this.opening = undefined;
    }
    if (this.closed) {
      s.destroy();
      throw new ConnectionClosedError('client is closed', 'local-abort');
    }
    this.session = s;
    return s;
  }

  /**
   * Single-flight reconnect: attempt n waits a delay drawn with full jitter below its backoff
   * ceiling (util/backoff.ts), plus what is left of the server's retry hint. Even the first
   * attempt waits its random share of `initialDelayMs`: when a server with thousands of clients
   * goes away, they must not all come back in the same millisecond.
   */
  private ensureConnected(): void {
    const policy = this.policy;
    // A session still draining after its GOAWAY: the reconnect starts when it has closed.
    if (this.connecting || this.closed || this.session !== undefined || policy === undefined) return;
    this.connecting = (async () => {
      let attempt = 0;
      while (!this.closed) {
        attempt++;
        const delay = Math.max(0, this.notBefore - now()) + fullJitter(policy, attempt);
        if (delay > 0) {
          this.log?.debug({ attempt, delayMs: Math.round(delay) }, 'reconnecting');
          this.emit('reconnecting', attempt, delay);
          this.pushStatus({ type: 'reconnecting', attempt, delayMs: delay });
          await new Promise<void>((resolve) => {
            this.retryTimer = setTimeout(resolve, timerDelay(delay));
            // Requests waiting for the connection keep the process alive, as a socket would.
            if (this.inflight === 0) this.retryTimer.unref();
          });
          if (this.closed) break;
        }
        try {
          const s = await this.openSession();
          // Before anything queued: the server holds its own joins until it has our cursors.
          void this.resumeRooms(s);
          this.log?.info({ attempt }, 'reconnected');
          this.emit('reconnect');
          this.pushStatus({ type: 'reconnected' });
          break;
        } catch (err) {
          this.lastError = err instanceof LonglinkError ? err : new LonglinkError('ERR_CONNECT', String(err));
          // A refusal's hint (GOAWAY before or during HELLO) is a floor for the next attempt.
          if (err instanceof RefusedError && err.retryAfterMs > 0)
            this.notBefore = now() + honouredHint(err.retryAfterMs);
          this.log?.warn({ attempt, ...errorFields(this.lastError) }, 'reconnect attempt failed');
          if (attempt >= policy.maxAttempts) {
            this.log?.error({ attempts: attempt, queued: this.queue.length }, 'gave up reconnecting');
            this.failQueue(
              new RequestNotSentError(`gave up reconnecting after ${attempt} attempts`, {
                cause: this.lastError,
              }),
            );
            break;
          }
          if (this.options.whenDisconnected === 'fail')
            this.failQueue(new RequestNotSentError('not connected', { cause: this.lastError }));
        }
      }
    })().finally(() => {
      this.connecting = undefined;
      this.flushQueue();
    });
  }

  private pushStatus(s: ClientStatus): void {
    for (const q of this.statusQueues ?? []) q.push(s);
  }

  private ended(): void {
    for (const q of this.notifyQueues ?? []) q.end();
    for (const q of this.statusQueues ?? []) q.end();
    this.emit('close');
  }
}

/**
 * Connects to a longlink server and completes the HELLO exchange.
 *
 * @example
 * ```ts
 * const client = await connect({ host: '127.0.0.1', port: 9000 });
 * console.log(await client.request('echo', { hi: 1 }));
 * await client.close();
 * ```
 */
export function connect(options: ClientOptions): Promise<Client> {
  try {
    return new Client(options).open();
  } catch (err) {
    return Promise.reject(err);
  }
}

// Typed events, merged into the class's instance type.
export interface Client {
  on<K extends keyof ClientEvents>(event: K, listener: (...args: ClientEvents[K]) => void): this;
  once<K extends keyof ClientEvents>(event: K, listener: (...args: ClientEvents[K]) => void): this;
  off<K extends keyof ClientEvents>(event: K, listener: (...args: ClientEvents[K]) => void): this;
  emit<K extends keyof ClientEvents>(event: K, ...args: ClientEvents[K]): boolean;
}
