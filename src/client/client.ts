/**
 * The longlink client: requests matched to their responses over one long-lived connection,
 * one-way notifies both ways, and a connection that comes back — after a GOAWAY the requests the
 * server never read are re-sent on a new connection, so a graceful server restart loses nothing.
 */

import { EventEmitter } from 'node:events';
import type tls from 'node:tls';
import { parseFraming } from '../codec/parse.js';
import type { Framing } from '../codec/types.js';
import { type CloseInfo, CloseReason } from '../connection/close-reason.js';
import { Connection, type ConnectionOptions, type ConnectionStats } from '../connection/connection.js';
import { type CheckedOptions, checkOptions } from '../connection/options.js';
import {
  AbortedError,
  ConnectionClosedError,
  InvalidArgumentError,
  LonglinkError,
  type LonglinkErrorOptions,
  RequestNotSentError,
} from '../errors.js';
import { checkHelloMaxFrameLength, isValidCodecName } from '../protocol/hello.js';
import { jsonCodec, type PayloadCodec, rawCodec } from '../protocol/payload.js';
import type { GoawayMessage, HelloParams } from '../protocol/types.js';
import {
  HEARTBEAT_PRESETS,
  type HeartbeatSetting,
  type HeartbeatTiming,
  resolveHeartbeat,
} from '../session/heartbeat.js';
import { AsyncQueue } from '../util/async-queue.js';
import { countOrInfinity, durationOrInfinity, finiteAtLeast, finitePositive } from '../util/check.js';
import { type Deadline, Deadlines } from '../util/deadlines.js';
import { deferListenerTable } from '../util/events.js';
import { ClientPeer, type OutgoingRequest, RefusedError } from './client-peer.js';

/** A request's own deadline passed before its answer came. The server was asked to cancel it. */
export class RequestTimeoutError extends LonglinkError {
  static override readonly brand: string = 'RequestTimeoutError';
  constructor(method: string, timeoutMs: number, options?: LonglinkErrorOptions) {
    super('ERR_REQUEST_TIMEOUT', `request ${method} got no answer within ${timeoutMs} ms`, options);
  }
}

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
export interface ClientOptions {
  host?: string;
  port: number;
  /** Payload codec: 'json' (default), 'raw' (params and results are Buffers), or your own. */
  codec?: 'json' | 'raw' | PayloadCodec;
  /** Default request deadline. Default 30 000 ms. */
  requestTimeoutMs?: number;
  /** Connect + HELLO deadline per attempt. Default 10 000 ms. */
  connectTimeoutMs?: number;
  /** Sent in HELLO for the server to check. */
  credential?: string;
  /** This client's name in HELLO. */
  name?: string;
  /** Largest frame this client accepts. Default 16 MiB. */
  maxFrameLength?: number;
  /** Reconnect after a lost connection or a GOAWAY (default on), or false. */
  reconnect?: ReconnectOptions | false;
  /**
   * While disconnected, requests wait for the connection to come back (bounded by their
   * timeout) — 'wait', the default — or fail at once with the last error — 'fail'.
   */
  whenDisconnected?: 'wait' | 'fail';
  /**
   * Heartbeat: `{ intervalMs, timeoutMs }`, 'standard' (the default: a dead server is noticed
   * within 30 s), 'strict' (6 s) or false. The peer is declared dead `timeoutMs` after the last
   * byte read; its connection is aborted with reason `heartbeat-timeout` and pending requests fail.
   */
  heartbeat?: HeartbeatSetting;
  /**
   * The path's idle budget: after how long idle a middlebox on the way drops the flow (nginx
   * proxy_timeout, 60 s by default; AWS NLB, 350 s). Derives the heartbeat when none is given,
   * and warns when the given one cannot keep the path open.
   */
  idleBudgetMs?: number;
  /** Options of the underlying Connection (watermarks, keepalive, local address …). */
  connection?: Omit<ConnectionOptions, 'framing'> & { localAddress?: string };
  /**
   * Connect with TLS: any `tls.connect` option (`ca` to trust a private CA, `cert` and `key` for
   * mTLS, `servername` for SNI and the certificate check; it defaults to `host`).
   */
  tls?: tls.ConnectionOptions;
  signal?: AbortSignal;
}

/** Options of one request. */
export interface RequestOptions {
  timeoutMs?: number;
  signal?: AbortSignal;
}

/** A server push. */
export interface Notification {
  topic: string;
  payload: unknown;
}

/** What {@link Client.stats} reports. */
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
  /** A NOTIFY from the server. */
  notify: [topic: string, payload: unknown];
  /** The connection was lost (or closed after a GOAWAY), with its close info. */
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

const sharedDeadlines = new Deadlines();

class Pending implements OutgoingRequest {
  peer: ClientPeer | undefined;
  id = 0;
  seq = 0;
  abandoned = false;
  deadline: Deadline | undefined;
  private done = false;
  constructor(
    readonly client: Client,
    readonly method: string,
    readonly payload: Buffer,
    readonly timeoutMs: number,
    private readonly resolve: (v: unknown) => void,
    private readonly reject: (e: unknown) => void,
    readonly signal: AbortSignal | undefined,
  ) {}
  settle(error: LonglinkError | undefined, payload: Buffer | undefined): void {
    if (this.done) return;
    this.done = true;
    this.client.finished(this);
    if (error !== undefined) {
      this.reject(error);
      return;
    }
    try {
      this.resolve(this.client.codec.decode(payload as Buffer));
    } catch (err) {
      this.reject(
        new LonglinkError('ERR_BAD_PAYLOAD', 'response payload could not be decoded', { cause: err }),
      );
    }
  }
  /** Made only for requests that carry a signal: most do not, and a closure each is not free. */
  onAbort: (() => void) | undefined;
}

function abortListener(p: Pending): () => void {
  return () =>
    p.client.giveUp(p, new AbortedError(`request ${p.method} aborted`, { cause: p.signal?.reason }));
}

function onRequestTimeout(arg: unknown): void {
  const p = arg as Pending;
  p.deadline = undefined;
  p.client.giveUp(p, new RequestTimeoutError(p.method, p.timeoutMs));
}

/** Framings are stateless: every Client with the same frame limit shares one (a few hundred bytes each). */
const framings = new Map<number, Framing>();
function framingFor(maxFrameLength: number): Framing {
  let f = framings.get(maxFrameLength);
  if (f === undefined) {
    f = parseFraming('u32be', { maxFrameLength });
    if (framings.size < 64) framings.set(maxFrameLength, f);
  }
  return f;
}

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
  // No `implements ClientPeerOwner`: that contract is internal (stripped from the published .d.ts),
  // and `peer.owner = this` in openPeer checks it all the same.
  readonly codec: PayloadCodec;
  private readonly options: ClientOptions;
  /** Request deadlines of every client share one queue and one timer. */
  private readonly deadlines = sharedDeadlines;
  private readonly requestTimeoutMs: number;
  private readonly reconnectPolicy: Required<ReconnectOptions> | undefined;
  private peer: ClientPeer | undefined;
  /** Every connection still open: the current one, and any older one finishing its requests. A short array, not a Set (a Set's table is ~120 bytes). */
  private readonly peers: ClientPeer[] = [];
  /** Requests waiting for a usable connection, in order. */
  private queue: Pending[] = [];
  private connecting: Promise<void> | undefined;
  private lastError: LonglinkError | undefined;
  private closed = false;
  private retryTimer: NodeJS.Timeout | undefined;
  /** Aborts the connect (TCP, then HELLO) under way: close() and destroy() use it. */
  private opening: AbortController | undefined;
  /** Shared by every client with the same frame limit. */
  private readonly framing: Framing;
  /** The checked Connection options; shared by clients with default ones (see checkOptions). */
  private readonly checkedConnection: CheckedOptions;
  private inflight = 0;
  /** Made on first use: most clients never iterate. */
  private notifyQueues: Set<AsyncQueue<Notification>> | undefined;
  private statusQueues: Set<AsyncQueue<ClientStatus>> | undefined;
  private readonly heartbeat: HeartbeatTiming | undefined;
  /** Doubled each time the server says we ping too often (gRPC's client backoff on ENHANCE_YOUR_CALM). */
  private heartbeatScale = 1;

  constructor(options: ClientOptions) {
    super();
    deferListenerTable(this);
    if (!Number.isInteger(options?.port) || options.port < 1 || options.port > 65535) {
      throw new InvalidArgumentError(`port must be an integer 1..65535, got ${String(options?.port)}`);
    }
    this.options = options;
    const c = options.codec ?? 'json';
    this.codec = c === 'json' ? jsonCodec : c === 'raw' ? rawCodec : c;
    if (typeof this.codec?.encode !== 'function' || typeof this.codec.decode !== 'function') {
      throw new InvalidArgumentError('codec must be "json", "raw" or a PayloadCodec');
    }
    if (!isValidCodecName(this.codec.name)) {
      throw new InvalidArgumentError(
        `codec name ${JSON.stringify(this.codec.name)} is not a valid codec name`,
      );
    }
    this.requestTimeoutMs = durationOrInfinity('requestTimeoutMs', options.requestTimeoutMs, 30_000);
    finitePositive('connectTimeoutMs', options.connectTimeoutMs, 10_000);
    const maxFrameLength = checkHelloMaxFrameLength(options.maxFrameLength);
    // The Connection's options, checked once here (not at every connect, where a bad one would
    // only show as failed attempts); each attempt hands the result on.
    this.framing = framingFor(maxFrameLength);
    this.checkedConnection = checkOptions({ ...options.connection, framing: this.framing });
    if (options.tls !== undefined && (typeof options.tls !== 'object' || options.tls === null)) {
      throw new InvalidArgumentError('tls must be an object of tls.connect options');
    }
    const wd = options.whenDisconnected;
    if (wd !== undefined && wd !== 'wait' && wd !== 'fail') {
      throw new InvalidArgumentError(`whenDisconnected must be 'wait' or 'fail', got ${String(wd)}`);
    }
    const hb = resolveHeartbeat(options.heartbeat, options.idleBudgetMs);
    this.heartbeat = hb.timing;
    if (hb.warning !== undefined) {
      const w = hb.warning;
      queueMicrotask(() => this.emit('warning', w));
    }
    const r = options.reconnect;
    this.reconnectPolicy =
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
    if (this.peer?.usable) return this;
    if (this.connecting !== undefined) {
      await this.connecting;
      if (this.peer?.usable) return this;
    }
    await this.openPeer();
    return this;
  }

  /** True while a usable connection is up. */
  get connected(): boolean {
    return this.peer?.usable === true;
  }

  /** Requests waiting for an answer, on every connection and in the queue. */
  get pendingCount(): number {
    return this.inflight;
  }

  /** The current connection, if any (for stats and diagnostics). */
  get connection(): Connection | undefined {
    return this.peer?.connection;
  }

  /** Smoothed RTT of the current connection from PING/PONG, ms. */
  get rttMs(): number | undefined {
    return this.peer?.srttMs;
  }

  /**
   * Sends a request and resolves with its result (decoded with the codec). Rejects with
   * RemoteError (the server's ERROR: `code`, `message`, `details`), RequestTimeoutError,
   * AbortedError, or ConnectionClosedError with the close reason when the connection dies first.
   */
  request<T = unknown>(method: string, params?: unknown, options: RequestOptions = {}): Promise<T> {
    if (this.closed) return Promise.reject(new ConnectionClosedError('client is closed', 'local-graceful'));
    if (typeof method !== 'string' || method.length === 0) {
      return Promise.reject(new InvalidArgumentError('method must be a non-empty string'));
    }
    const signal = options.signal;
    if (signal?.aborted)
      return Promise.reject(new AbortedError(`request ${method} aborted`, { cause: signal.reason }));
    let payload: Buffer;
    let timeoutMs: number;
    try {
      timeoutMs = durationOrInfinity('timeoutMs', options.timeoutMs, this.requestTimeoutMs);
      payload = this.codec.encode(params);
    } catch (err) {
      return Promise.reject(err);
    }
    return new Promise<T>((resolve, reject) => {
      const p = new Pending(
        this,
        method,
        payload,
        timeoutMs,
        resolve as (v: unknown) => void,
        reject,
        signal,
      );
      this.inflight++;
      if (timeoutMs > 0 && Number.isFinite(timeoutMs))
        p.deadline = this.deadlines.add(timeoutMs, onRequestTimeout, p);
      if (signal !== undefined) {
        p.onAbort = abortListener(p);
        signal.addEventListener('abort', p.onAbort, { once: true });
      }
      this.dispatch(p);
    });
  }

  /** Sends a one-way NOTIFY to the server. Throws ConnectionClosedError when not connected. */
  notify(topic: string, payload?: unknown): boolean {
    const peer = this.peer;
    if (!peer?.usable) throw new ConnectionClosedError('not connected', undefined, { cause: this.lastError });
    return peer.notify(topic, payload);
  }

  /** Measures the round trip to the server (PING/PONG), ms; NaN if not connected. */
  ping(): Promise<number> {
    return this.peer?.usable ? this.peer.ping() : Promise.resolve(Number.NaN);
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

  /** Counters of this client and its current connection. */
  stats(): ClientStats {
    const a = this.peer?.agreement;
    return {
      connected: this.connected,
      pending: this.inflight,
      queued: this.queue.length,
      rttMs: this.rttMs,
      heartbeat:
        a === undefined || this.heartbeat === undefined
          ? undefined
          : { intervalMs: a.heartbeatIntervalMs, timeoutMs: a.heartbeatTimeoutMs },
      connection: this.peer?.connection.stats(),
    };
  }

  /**
   * Closes: no new requests; waits up to `graceMs` for pending ones, then says goodbye (GOAWAY)
   * and closes the connection gracefully. Requests still pending then fail with the close reason.
   */
  async close(options: { graceMs?: number } = {}): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.opening?.abort(new ConnectionClosedError('client is closed', 'local-graceful'));
    for (const p of this.queue.splice(0))
      p.settle(new RequestNotSentError('client closed before the request was sent'), undefined);
    const graceMs = options.graceMs ?? 5000;
    if (this.inflight > 0) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, graceMs);
        t.unref();
        this.once('idle', () => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    const closing = this.peers.slice().map((peer) => {
      peer.leave();
      return peer.connection.closed;
    });
    await Promise.all(closing);
    for (const q of this.notifyQueues ?? []) q.end();
    for (const q of this.statusQueues ?? []) q.end();
    this.emit('close');
  }

  /**
   * Forced close: every connection aborted (RST), pending requests fail at once with reason
   * `local-abort`, queued ones with RequestNotSentError. For graceful, see {@link close}.
   */
  destroy(error?: LonglinkError): void {
    const first = !this.closed;
    this.closed = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.opening?.abort(error ?? new ConnectionClosedError('client destroyed', 'local-abort'));
    for (const p of this.queue.splice(0)) p.settle(new RequestNotSentError('client destroyed'), undefined);
    for (const peer of this.peers.slice()) peer.connection.abort(error);
    for (const q of this.notifyQueues ?? []) q.end();
    for (const q of this.statusQueues ?? []) q.end();
    if (first) this.emit('close');
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  // -------------------------------------------------------------------------------------------

  /** @internal A request settled: bookkeeping. */
  finished(p: Pending): void {
    this.inflight--;
    if (p.deadline !== undefined) this.deadlines.cancel(p.deadline);
    if (p.onAbort !== undefined) p.signal?.removeEventListener('abort', p.onAbort);
    if (this.inflight === 0) {
      this.retryTimer?.unref();
      this.emit('idle');
    }
  }

  /** @internal The caller gave up on `p` (timeout or abort). */
  giveUp(p: Pending, error: LonglinkError): void {
    if (p.peer) p.peer.cancel(p);
    else {
      const i = this.queue.indexOf(p);
      if (i >= 0) this.queue.splice(i, 1);
    }
    p.settle(error, undefined);
  }

  private dispatch(p: Pending): void {
    const peer = this.peer;
    if (peer?.usable) {
      try {
        peer.request(p);
      } catch (err) {
        p.settle(
          err instanceof LonglinkError ? err : new LonglinkError('ERR_INTERNAL', String(err)),
          undefined,
        );
      }
      return;
    }
    if (this.options.whenDisconnected === 'fail') {
      // At once, also while a reconnect is under way (the reconnect goes on for later requests).
      p.settle(new RequestNotSentError('not connected', { cause: this.lastError }), undefined);
      this.ensureConnected();
      return;
    }
    this.queue.push(p);
    // A request waiting for the connection keeps the process alive, as its socket would.
    this.retryTimer?.ref();
    this.ensureConnected();
  }

  private flushQueue(): void {
    const q = this.queue;
    this.queue = [];
    for (const p of q) this.dispatch(p);
  }

  private async openPeer(): Promise<ClientPeer> {
    if (this.closed) throw new ConnectionClosedError('client is closed', 'local-graceful');
    const o = this.options;
    const maxFrameLength = this.framing.maxFrameLength;
    // close() and destroy() abort a connect under way through this, as the caller's signal does.
    const abort = new AbortController();
    this.opening = abort;
    const userSignal = o.signal;
    const onUserAbort = () => abort.abort(userSignal?.reason);
    if (userSignal?.aborted) onUserAbort();
    else userSignal?.addEventListener('abort', onUserAbort, { once: true });
    let conn: Connection;
    try {
      conn = await Connection.connect(
        {
          ...o.connection,
          framing: this.framing,
          host: o.host ?? '127.0.0.1',
          port: o.port,
          connectTimeoutMs: o.connectTimeoutMs ?? 10_000,
          signal: abort.signal,
          ...(o.tls === undefined ? {} : { tls: o.tls }),
        },
        this.checkedConnection,
      );
    } finally {
      userSignal?.removeEventListener('abort', onUserAbort);
    }
    const hb = this.heartbeat;
    const params: HelloParams = {
      codecs: [this.codec.name],
      maxFrameLength,
      ...(hb === undefined
        ? {}
        : {
            heartbeatIntervalMs: hb.intervalMs * this.heartbeatScale,
            heartbeatTimeoutMs: hb.timeoutMs * this.heartbeatScale,
          }),
      ...(o.credential === undefined ? {} : { credential: o.credential }),
      ...(o.name === undefined ? {} : { name: o.name }),
    };
    const peer = new ClientPeer(conn, params, hb !== undefined);
    // Owner from the start: a NOTIFY in the same read as the HELLO answer is delivered, not lost.
    peer.owner = this;
    const onClose = () => conn.abort();
    abort.signal.addEventListener('abort', onClose, { once: true });
    const timer = setTimeout(
      () => conn.abort(new LonglinkError('ERR_CONNECT_TIMEOUT', 'no HELLO answer in time')),
      o.connectTimeoutMs ?? 10_000,
    );
    timer.unref();
    try {
      await peer.handshake((name) => (name === this.codec.name ? this.codec : undefined));
    } finally {
      clearTimeout(timer);
      abort.signal.removeEventListener('abort', onClose);
      if (this.opening === abort) this.opening = undefined;
    }
    if (this.closed) {
      conn.abort();
      throw new ConnectionClosedError('client is closed', 'local-abort');
    }
    const goaway = peer.goawayReceived;
    if (goaway !== undefined) {
      // The GOAWAY came in the same read as the HELLO answer: this connection is already
      // closing. Not adopted; the attempt failed, and the server's retry hint is kept.
      void peer.closeConnection(CloseReason.GOING_AWAY);
      throw new RefusedError(
        goaway.reason,
        `server went away during HELLO: ${goaway.message}`,
        goaway.retryAfterMs,
      );
    }
    this.peer = peer;
    this.peers.push(peer);
    return peer;
  }

  /** @internal ClientPeerOwner */
  peerNotify(topic: string, payload: unknown): void {
    this.onNotify(topic, payload);
  }

  /** @internal ClientPeerOwner */
  peerRtt(rttMs: number): void {
    this.emit('rtt', rttMs);
  }

  /** @internal ClientPeerOwner: the server never read these; send them again, in order, ahead of newer ones. */
  peerUnprocessed(requests: OutgoingRequest[]): void {
    if (this.closed) {
      // No connection will come to send them on: they fail now, not at their deadline (or never).
      const err = new RequestNotSentError('client closed before the request was sent', {
        cause: this.lastError,
      });
      for (const r of requests) r.settle(err, undefined);
      return;
    }
    // Only queued: the GOAWAY that handed them back comes next (peerGoaway), and it starts the
    // reconnect with the server's retryAfterMs. Starting one here would ignore that hint.
    this.queue = (requests as Pending[]).concat(this.queue);
  }

  /** @internal ClientPeerOwner */
  peerGoaway(peer: ClientPeer, msg: GoawayMessage): void {
    // A GOAWAY during the handshake is openPeer's to handle: the peer was never adopted.
    if (!this.peers.includes(peer)) return;
    if (this.peer === peer) this.peer = undefined;
    if (msg.reason === 'ERR_TOO_MANY_PINGS') this.slowHeartbeat();
    this.emit('goaway', msg.reason, msg.retryAfterMs);
    this.pushStatus({ type: 'goaway', reason: msg.reason, retryAfterMs: msg.retryAfterMs });
    // Also without a reconnect policy: ensureConnected then fails the requests handed back.
    if (!this.closed) this.ensureConnected(msg.retryAfterMs);
  }

  /**
   * The server said we ping too often: double the heartbeat for the next connections (gRPC's
   * client backoff), but never past the standard preset's timing, so the detection bound the
   * user chose grows at most to the standard one (or stays, if it was already looser).
   */
  private slowHeartbeat(): void {
    const hb = this.heartbeat;
    if (hb === undefined) return;
    const cap = Math.max(1, HEARTBEAT_PRESETS.standard.intervalMs / hb.intervalMs);
    this.heartbeatScale = Math.min(this.heartbeatScale * 2, cap);
  }

  /** @internal ClientPeerOwner */
  peerClosed(peer: ClientPeer, info: CloseInfo): void {
    const i = this.peers.indexOf(peer);
    // A connection that closed during its handshake was never adopted: openPeer reports it.
    if (i < 0) return;
    this.peers.splice(i, 1);
    if (this.peer === peer) this.peer = undefined;
    this.lastError = info.error;
    this.emit('disconnect', info);
    this.pushStatus({ type: 'disconnected', info });
    if (!this.closed && this.reconnectPolicy && info.reason !== 'going-away') this.ensureConnected();
  }

  /** Single-flight reconnect with exponential backoff and full jitter. */
  private ensureConnected(firstDelayMs = 0): void {
    if (this.connecting || this.closed || this.peer?.usable) return;
    const policy = this.reconnectPolicy;
    if (policy === undefined) {
      const err = new RequestNotSentError('not connected and reconnect is off', {
        cause: this.lastError,
      });
      for (const p of this.queue.splice(0)) p.settle(err, undefined);
      return;
    }
    this.connecting = (async () => {
      let attempt = 0;
      // Even the first attempt waits a random share of the initial delay: when a server with
      // thousands of clients goes away, they must not all come back in the same millisecond.
      let delay = firstDelayMs + Math.random() * policy.initialDelayMs;
      while (!this.closed) {
        if (delay > 0) {
          this.emit('reconnecting', attempt + 1, delay);
          this.pushStatus({ type: 'reconnecting', attempt: attempt + 1, delayMs: delay });
          await new Promise<void>((resolve) => {
            this.retryTimer = setTimeout(resolve, delay);
            // Requests waiting for the connection keep the process alive, as a socket would.
            if (this.inflight === 0) this.retryTimer.unref();
          });
          if (this.closed) break;
        }
        try {
          await this.openPeer();
          this.emit('reconnect');
          this.pushStatus({ type: 'reconnected' });
          break;
        } catch (err) {
          this.lastError = err instanceof LonglinkError ? err : new LonglinkError('ERR_CONNECT', String(err));
          attempt++;
          if (attempt >= policy.maxAttempts) {
            const e = new RequestNotSentError(`gave up reconnecting after ${attempt} attempts`, {
              cause: this.lastError,
            });
            for (const p of this.queue.splice(0)) p.settle(e, undefined);
            break;
          }
          if (this.options.whenDisconnected === 'fail') {
            const e = new RequestNotSentError('not connected', { cause: this.lastError });
            for (const p of this.queue.splice(0)) p.settle(e, undefined);
          }
          const ceiling = Math.min(
            policy.maxDelayMs,
            policy.initialDelayMs * policy.multiplier ** (attempt - 1),
          );
          delay = Math.max(delay > 0 && attempt === 1 ? delay : 0, Math.random() * ceiling);
          // A refusal's hint (GOAWAY before or during HELLO) is a floor, plus the jitter.
          if (err instanceof RefusedError && err.retryAfterMs > 0)
            delay = err.retryAfterMs + Math.random() * ceiling;
        }
      }
    })().finally(() => {
      this.connecting = undefined;
      this.flushQueue();
    });
  }

  private onNotify(topic: string, payload: unknown): void {
    this.emit('notify', topic, payload);
    const queues = this.notifyQueues;
    if (queues === undefined || queues.size === 0) return;
    const n = { topic, payload };
    for (const q of queues) q.push(n);
  }

  private pushStatus(s: ClientStatus): void {
    for (const q of this.statusQueues ?? []) q.push(s);
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
