/**
 * The server's side of one longlink connection: answers HELLO (after `authenticate`, within the
 * HELLO deadline), runs handlers for REQUESTs with a context (AbortSignal, identity, NOTIFY push),
 * enforces the per-connection limits, and on shutdown sends GOAWAY with the last request it read,
 * finishes every request it accepted, then closes.
 *
 * Every answer leaves through one path (`answer` → `deliver`): a result that cannot be encoded, or
 * whose frame would exceed the agreed maxFrameLength, becomes an ERROR for that request, so every
 * request read gets exactly one terminal answer (PROTOCOL.md §5) while the connection is up, and
 * the application hears of the failure (`onHandlerError`).
 *
 * Why it is over 800 lines: HELLO and authentication, requests with their limits, cancels, the
 * answer path, pings and the drain all read and change the same per-connection fields (phase,
 * the requests in flight, the running handlers and their bytes, the GOAWAY state) — one object per
 * connection (an idle one costs one object), so splitting it would mean module functions over a dozen of its
 * private fields. The rooms are in rooms.ts, the limits' defaults in limits.ts.
 */

import type { CloseInfo } from '../connection/close-reason.js';
import { CloseReason } from '../connection/close-reason.js';
import { type Connection, ConnectionState, ReadHold } from '../connection/connection.js';
import { AbortedError, FrameTooLargeError, LonglinkError } from '../errors.js';
import { errorToMessage } from '../protocol/error-message.js';
import { ErrorCode, ProtocolError } from '../protocol/errors.js';
import { answerHello, type HelloAgreement } from '../protocol/hello.js';
import {
  type CancelMessage,
  type ErrorMessage,
  type HelloMessage,
  type Message,
  MessageKind,
  type RequestMessage,
} from '../protocol/types.js';
import { Peer, SendOutcome } from '../session/peer.js';
import { channels, type RequestTrace } from '../util/channels.js';
import {
  type AuthContext,
  type JoinOptions,
  type PeerOrigin,
  type RequestContext,
  type ServerPeerOptions,
  type TlsInfo,
  tlsInfoOf,
} from './context.js';

export type {
  AuthContext,
  Authenticate,
  ConnectionContext,
  Handler,
  HandlerFailure,
  JoinOptions,
  PeerOrigin,
  RequestContext,
  RoomAuthorize,
  Router,
  ServerPeerEvents,
  ServerPeerOptions,
  TlsInfo,
} from './context.js';
export { tlsInfoOf } from './context.js';

import type { Deadline } from '../util/deadlines.js';
import { IdTable } from '../util/id-table.js';
import { TokenBucket } from './admission.js';

function isThenable(v: unknown): v is PromiseLike<unknown> {
  return v !== null && typeof v === 'object' && typeof (v as PromiseLike<unknown>).then === 'function';
}

/** Shared by every request that carries no metadata. */
const NO_METADATA: Readonly<Record<string, string>> = Object.freeze(Object.create(null));

/** One request being handled. */
class Inflight implements RequestContext {
  readonly method: string;
  readonly requestId: number;
  /** The request's bytes, held while the handler runs (counted against maxInFlightBytes). */
  readonly bytes: number;
  readonly metadata: Readonly<Record<string, string>>;
  readonly timeoutMs: number | undefined;
  private controller: AbortController | undefined;
  deadline: Deadline | undefined;
  /** The deadline armed is the caller's (shorter than the handler timeout). */
  callerDeadline = false;
  /** The tracing channel's message, while someone subscribes to `longlink:server:request`. */
  trace: RequestTrace | undefined;
  done = false;
  /** Acceptance order among the connection's requests in flight. */
  order = 0;
  constructor(
    readonly peer: ServerPeer,
    msg: RequestMessage,
  ) {
    this.method = msg.method;
    this.requestId = msg.id;
    this.bytes = msg.payload.length;
    this.metadata = msg.metadata ?? NO_METADATA;
    this.timeoutMs = msg.timeoutMs;
  }
  get connectionId(): string {
    return this.peer.connectionId;
  }
  get remoteAddress(): string | undefined {
    return this.peer.remoteAddress;
  }
  get remotePort(): number | undefined {
    return this.peer.remotePort;
  }
  get tls(): TlsInfo | null {
    return this.peer.tls;
  }
  get identity(): unknown {
    return this.peer.identity;
  }
  /** Created on first use: most handlers never look at it, and an AbortController is not free. */
  get signal(): AbortSignal {
    this.controller ??= new AbortController();
    return this.controller.signal;
  }
  notify(topic: string, payload: unknown): boolean {
    return this.peer.notify(topic, payload);
  }
  join(room: string, options?: JoinOptions): Promise<void> {
    return this.peer.join(room, options);
  }
  leave(room: string): boolean {
    return this.peer.leave(room);
  }
  get rooms(): ReadonlySet<string> {
    return this.peer.rooms;
  }
  abort(reason: LonglinkError): void {
    if (this.controller === undefined) {
      this.controller = new AbortController();
    }
    if (!this.controller.signal.aborted) this.controller.abort(reason);
  }
}

function byOrder(a: Inflight, b: Inflight): number {
  return a.order - b.order;
}

function onHandlerTimeout(arg: unknown): void {
  const r = arg as Inflight;
  r.deadline = undefined;
  const err = r.callerDeadline
    ? new LonglinkError(
        ErrorCode.DEADLINE_EXCEEDED,
        `the caller's deadline for ${r.method} (${r.timeoutMs} ms) passed`,
      )
    : new LonglinkError(ErrorCode.TIMEOUT, `handler for ${r.method} timed out`);
  r.peer.finishWithError(r, err, !r.callerDeadline);
}

/** `text` cut to at most `maxBytes` of UTF-8, never inside a character. */
function fitUtf8(text: string, maxBytes: number): string {
  const bytes = Buffer.from(text, 'utf8');
  if (bytes.length <= maxBytes) return text;
  let end = Math.max(0, maxBytes);
  // Back off over continuation bytes (10xxxxxx): the cut falls before a character's first byte.
  while (end > 0 && ((bytes[end] as number) & 0xc0) === 0x80) end--;
  return bytes.toString('utf8', 0, end);
}

function onHelloTimeout(arg: unknown): void {
  const peer = arg as ServerPeer;
  peer.helloTimedOut();
}

/** Never written to: set() happens only after swapping in a connection's own table. */
const NO_INFLIGHT: IdTable<Inflight> = new IdTable();

/** Where the HELLO exchange stands. */
const WAITING = 0;
const AUTHENTICATING = 1;
const READY = 2;
/** Refused at accept (admission): closing, and no HELLO is answered. */
const REFUSED = 3;

export class ServerPeer extends Peer implements AuthContext {
  private readonly options: ServerPeerOptions;
  /**
   * Requests being handled; the shared empty table until the first async one (most connections
   * idle). Not a Map: see util/id-table.ts for what a Map's churn costs the garbage collector.
   */
  private inflight: IdTable<Inflight> = NO_INFLIGHT;
  /** Requests accepted so far: the order in which {@link onClose} aborts those still running. */
  private accepted = 0;
  private helloDeadline: Deadline | undefined;
  private phase = WAITING;
  /** The id of the last REQUEST read (what GOAWAY reports). */
  lastReadId = 0;
  /** Requests answered on this connection (for shutdown reports). */
  completed = 0;
  private drainResolve: (() => void) | undefined;
  /** Whole ms since process start; a Smi start value keeps the field unboxed (no heap number). */
  private lastPingAt = -1_000_000_000;
  private pingStrikes = 0;
  /**
   * Handlers still running, and the request bytes they hold. Not the same as `inflight`: a CANCEL,
   * a timeout or the connection's close answers a request at once, but its handler runs until its
   * promise settles, and until then it counts (maxInFlight, maxInFlightBytes, and after the close
   * the connection's admission slot: see `lingering`).
   */
  private running = 0;
  private runningBytes = 0;
  /** The connection is gone (onClose ran). */
  private closed = false;
  /** Aborted when the connection closes: what authenticate can pass on (AuthContext.signal). */
  private connectionAbort: AbortController | undefined;
  /** What authenticate returned (or the mTLS subject). */
  identity: unknown = undefined;
  /** Set when the connection came through a trusted proxy: the client's own address. */
  readonly origin: PeerOrigin | undefined;
  /** The per-connection request rate, when limited; made on first request. */
  private bucket: TokenBucket | undefined;
  /** @internal The client's HELLO said its first request is $resume (1.2): joins wait for it (rooms.ts). */
  resumeExpected = false;

  constructor(
    connection: Connection,
    options: ServerPeerOptions,
    origin?: PeerOrigin,
    /** What is left of the HELLO deadline (accept → HELLO includes PROXY and TLS). */
    helloTimeoutMs = options.helloTimeoutMs,
  ) {
    super(connection);
    this.options = options;
    this.origin = origin;
    this.helloDeadline = options.deadlines.add(Math.max(1, helloTimeoutMs), onHelloTimeout, this);
  }

  protected override ended(info: CloseInfo): void {
    this.options.events.peerClosed(this, info);
    super.ended(info);
  }

  /** Requests accepted and not yet answered. */
  get inflightCount(): number {
    return this.inflight.size;
  }

  get isReady(): boolean {
    return this.ready;
  }

  get connectionId(): string {
    return this.connection.id;
  }

  get remoteAddress(): string | undefined {
    return this.origin !== undefined ? this.origin.address : this.connection.remoteAddress;
  }

  get remotePort(): number | undefined {
    return this.origin !== undefined ? this.origin.port : this.connection.remotePort;
  }

  get tls(): TlsInfo | null {
    return tlsInfoOf(this.connection.socket);
  }

  get peerName(): string | undefined {
    return this.agreement?.peerName;
  }

  /** See {@link ConnectionContext.join}. */
  join(room: string, options?: JoinOptions): Promise<void> {
    return this.options.rooms.join(this, room, options);
  }

  /** See {@link ConnectionContext.leave}. */
  leave(room: string): boolean {
    return this.options.rooms.leave(this, room);
  }

  /** The rooms this connection is a member of, now. */
  get rooms(): ReadonlySet<string> {
    return this.options.rooms.roomsOf(this);
  }

  /** @internal ConnectionHandler: bytes held by handlers still running (for the memory budget). */
  heldBytes(): number {
    return this.runningBytes;
  }

  /**
   * Closed, with handlers still running: the server keeps this connection's admission slot until
   * they have settled (peerReleased), so closing and reconnecting cannot start more work than
   * maxConnections × maxInFlight.
   */
  get lingering(): boolean {
    return this.closed && this.running > 0;
  }

  /** AuthContext: aborted when the connection closes, the HELLO deadline's close included. */
  get signal(): AbortSignal {
    this.connectionAbort ??= new AbortController();
    return this.connectionAbort.signal;
  }

  /**
   * @internal ConnectionHandler: the client's FIN. Requests it sent before are still answered
   * (PROTOCOL.md §9.2: a side ends its own half once it owes nothing): hold our side open until
   * the last one is (each bounded by its handler or caller deadline), then close.
   */
  handleEnd(): boolean {
    return this.inflight.size > 0;
  }

  /** @internal ConnectionHandler: the queue drained: take work again. */
  handleDrain(): void {
    this.connection.release(ReadHold.BACKPRESSURE);
  }

  /** The HELLO (or its authentication) did not finish in time: say why, then close. */
  helloTimedOut(): void {
    this.helloDeadline = undefined;
    if (this.ready) return;
    this.fail(
      new ProtocolError(
        ErrorCode.HELLO_REQUIRED,
        this.phase === AUTHENTICATING
          ? `authentication did not finish within ${this.options.helloTimeoutMs} ms`
          : `no HELLO within ${this.options.helloTimeoutMs} ms`,
      ),
    );
  }

  /**
   * Stops taking requests: GOAWAY with the last request read, then — once every accepted request
   * is answered — a graceful close. Resolves when the accepted requests are all answered.
   */
  shutdown(
    code: string = ErrorCode.SHUTTING_DOWN,
    message = 'server shutting down',
    retryAfterMs = 0,
  ): Promise<void> {
    if (!this.ready) {
      this.goAway(0, code, message, retryAfterMs);
      void this.closeConnection(CloseReason.LOCAL_GRACEFUL);
      return Promise.resolve();
    }
    this.goAway(this.lastReadId, code, message, retryAfterMs);
    if (this.inflight.size === 0) {
      void this.closeConnection(CloseReason.LOCAL_GRACEFUL);
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      this.drainResolve = resolve;
    });
  }

  /** Refuses a connection before HELLO: GOAWAY with the reason and a retry hint, then close (reason `refused`). */
  refuse(code: string, message: string, retryAfterMs: number): void {
    this.phase = REFUSED;
    this.goAway(0, code, message, retryAfterMs);
    void this.closeConnection(CloseReason.REFUSED);
  }

  protected override onPing(): boolean {
    // The read that carried this PING stamped lastReadAt just now: no second clock read. Whole ms:
    // an integer field costs no separate heap number per connection.
    const now = Math.floor(this.connection.lastReadAt);
    const gap = now - this.lastPingAt;
    this.lastPingAt = now;
    if (gap < this.options.minPingIntervalMs && ++this.pingStrikes > this.options.maxPingStrikes) {
      if (!this.goawaySent) {
        this.goAway(
          this.lastReadId,
          'ERR_TOO_MANY_PINGS',
          `PINGs more often than every ${this.options.minPingIntervalMs} ms`,
        );
        if (this.inflight.size === 0) void this.closeConnection(CloseReason.LOCAL_GRACEFUL);
      }
      return false;
    }
    return true;
  }

  protected override notified(topic: string, payload: unknown): void {
    this.options.events.peerNotify(this, topic, payload);
  }

  protected onMessage(msg: Message): void {
    switch (msg.kind) {
      case MessageKind.HELLO:
        this.onHello(msg);
        return;
      case MessageKind.REQUEST:
        this.onRequest(msg);
        return;
      case MessageKind.CANCEL:
        this.onCancel(msg);
        return;
      case MessageKind.GOAWAY:
        // The client is leaving: answer what it sent, then close.
        if (this.inflight.size === 0) void this.closeConnection(CloseReason.GOING_AWAY);
        return;
      case MessageKind.RESPONSE:
      case MessageKind.ERROR:
        // This server sends no requests, so no answer can be expected.
        this.fail(
          new ProtocolError(
            ErrorCode.PROTOCOL,
            `unexpected ${msg.kind === MessageKind.ERROR ? 'ERROR' : 'RESPONSE'} ${msg.id}`,
          ),
        );
        return;
      default:
        return;
    }
  }

  /*
   * HELLO, under one deadline from accept:
   *
   *   WAITING ── HELLO ──▶ AUTHENTICATING ── authenticate settles ──▶ READY (our HELLO sent)
   *      │                     │ (a second HELLO: ERR_PROTOCOL)   └─ refused: ERROR, close
   *      └── deadline ─────────┴──▶ ERR_HELLO_REQUIRED, close
   *
   * The deadline runs until READY: an authenticate that never settles cannot hold the slot.
   */
  private onHello(msg: HelloMessage): void {
    // Refused at accept: its close is under way, and a HELLO already sent does not undo it (no
    // admission, no 'ready' — before, a refused peer that was quick became ready for a moment).
    if (this.phase === REFUSED) return;
    if (this.phase !== WAITING || this.helloDeadline === undefined) {
      this.fail(new ProtocolError(ErrorCode.PROTOCOL, 'second HELLO'));
      return;
    }
    this.phase = AUTHENTICATING;
    this.resumeExpected = msg.params.resume === true;
    let answered: ReturnType<typeof answerHello>;
    try {
      answered = answerHello(msg, this.options.hello);
    } catch (err) {
      this.fail(err instanceof ProtocolError ? err : new ProtocolError(ErrorCode.PROTOCOL, String(err)));
      return;
    }
    const auth = this.options.authenticate;
    if (auth === undefined) {
      this.admit(answered, this.mtlsIdentity());
      return;
    }
    // The agreement is set before the check so that `peerName` reads the client's name.
    this.agreement = answered.agreement;
    // Async checks are counted server-wide until they settle, also after their connection closed
    // (its signal told them to stop): a stranger sending HELLO and a reset in a loop cannot pile
    // them up. At the cap, the HELLO is refused before a check starts.
    const refused = this.options.events.peerAuthAdmit(this);
    if (refused !== undefined) {
      this.refuse(refused.code, refused.message, refused.retryAfterMs);
      return;
    }
    let verdict: unknown;
    try {
      verdict = auth(msg.params.credential, this);
    } catch (err) {
      this.refuseCredential(err);
      return;
    }
    if (
      verdict !== null &&
      typeof verdict === 'object' &&
      typeof (verdict as PromiseLike<unknown>).then === 'function'
    ) {
      this.options.events.peerAuthStart(this);
      (verdict as PromiseLike<unknown>).then(
        (v) => {
          this.authEnded();
          this.authenticated(answered, v);
        },
        (err: unknown) => {
          this.authEnded();
          this.authenticated(answered, false, err);
        },
      );
      return;
    }
    this.authenticated(answered, verdict);
  }

  private authenticated(answered: ReturnType<typeof answerHello>, verdict: unknown, cause?: unknown): void {
    // Too late: the deadline fired (and closed the connection), or the connection is gone.
    if (this.phase !== AUTHENTICATING || this.helloDeadline === undefined || !this.connection.writable)
      return;
    if (verdict === false || verdict === null || verdict === undefined) {
      this.refuseCredential(cause);
      return;
    }
    this.admit(answered, verdict === true ? this.mtlsIdentity() : verdict);
  }

  private authEnded(): void {
    this.options.events.peerAuthEnd(this);
  }

  private refuseCredential(cause: unknown): void {
    this.fail(new ProtocolError(ErrorCode.UNAUTHENTICATED, 'credential refused', { cause }));
  }

  /** With mTLS, the verified client certificate's subject is the identity unless authenticate says otherwise. */
  private mtlsIdentity(): unknown {
    const t = this.tls;
    return t?.authorized === true ? t.peerSubject : undefined;
  }

  private admit(answered: { reply: HelloMessage; agreement: HelloAgreement }, identity: unknown): void {
    if (this.helloDeadline !== undefined) this.options.deadlines.cancel(this.helloDeadline);
    this.helloDeadline = undefined;
    const a = answered.agreement;
    this.agreement = a;
    this.identity = identity;
    this.codec = this.options.codecs.get(a.codec) ?? this.codec;
    this.phase = READY;
    this.ready = true;
    // Authenticated: frames up to the agreed limit from now on (until now, a few KiB).
    this.connection.limitFrames(a.maxFrameLength);
    this.trySend(answered.reply);
    if (this.options.heartbeat) {
      // The client leads: it PINGs at the agreed interval, and each PING it sends is a read here.
      // The server waits half an interval longer before pinging itself, so while the client is
      // alive only one PING/PONG pair crosses per interval instead of one from each side. The
      // bound is unchanged: death is still declared `timeoutMs` after the last read (≥ 2 ×
      // interval, so the server's own PING, at 1.5 ×, still has half an interval for its PONG).
      this.startHeartbeat(
        Math.min(a.heartbeatIntervalMs * 1.5, a.heartbeatTimeoutMs - 1),
        a.heartbeatTimeoutMs,
      );
    }
    this.options.events.peerReady(this);
    this.emit('ready');
  }

  private onRequest(msg: RequestMessage): void {
    // Closing (after a connection ERROR, or our FIN): no answer could be sent, so nothing runs.
    if (!this.connection.writable) return;
    const id = msg.id;
    // Pings between requests are what keepalive is for: a PING after this REQUEST starts a new count.
    this.pingStrikes = 0;
    this.lastPingAt = -1_000_000_000;
    if (this.goawayReceived !== undefined) {
      // The client said it sends no more work (PROTOCOL.md §9.1): a REQUEST after its own GOAWAY.
      this.fail(new ProtocolError(ErrorCode.PROTOCOL, `REQUEST ${id} after the client's GOAWAY`));
      return;
    }
    // An outstanding id reused is a connection error before anything else, even after our GOAWAY:
    // answering it ERR_SHUTTING_DOWN would be a second terminal answer for the one id (fuzz F4).
    if (this.inflight.has(id)) {
      this.fail(new ProtocolError(ErrorCode.PROTOCOL, `request id ${id} is already outstanding`));
      return;
    }
    if (this.goawaySent) {
      // Sent before the client saw our GOAWAY: not processed, safe to retry elsewhere.
      this.deliverError(id, ErrorCode.SHUTTING_DOWN, 'server is shutting down');
      return;
    }
    this.lastReadId = id;
    const agreement = this.agreement as HelloAgreement;
    if (this.running >= agreement.maxInFlight) {
      this.deliverError(
        id,
        ErrorCode.TOO_MANY_REQUESTS,
        `more than ${agreement.maxInFlight} requests in flight`,
      );
      return;
    }
    const rate = this.options.requestRate;
    if (rate !== undefined) {
      const now = this.connection.lastReadAt;
      this.bucket ??= new TokenBucket(rate, now);
      const wait = this.bucket.take(now);
      if (wait > 0) {
        this.deliverError(
          id,
          ErrorCode.TOO_MANY_REQUESTS,
          `more than ${rate.perSecond} requests per second`,
          {
            retryAfterMs: wait,
          },
        );
        return;
      }
    }
    const handler = this.options.router(msg.method);
    if (handler === undefined) {
      this.deliverError(id, ErrorCode.METHOD_NOT_FOUND, `no method ${msg.method}`);
      return;
    }
    let params: unknown;
    try {
      params = this.codec.decode(msg.payload);
    } catch (err) {
      this.deliverError(id, ErrorCode.BAD_PAYLOAD, `undecodable params: ${(err as Error).message}`);
      return;
    }
    const r = new Inflight(this, msg);
    let result: unknown;
    const tc = channels.serverRequest;
    if (tc.hasSubscribers) {
      // Traced (OpenTelemetry, metrics): start before the handler, end when it returns; the
      // settlement of an async handler is asyncStart/asyncEnd in finishWith*.
      const trace: RequestTrace = {
        side: 'server',
        method: r.method,
        requestId: id,
        connectionId: this.connectionId,
        metadata: msg.metadata === undefined ? undefined : { ...msg.metadata },
      };
      r.trace = trace;
      tc.start.publish(trace);
      try {
        result = handler(params, r);
      } catch (err) {
        trace.error = err;
        tc.error.publish(trace);
        tc.end.publish(trace);
        this.finishWithError(r, err, true);
        return;
      }
      if (isThenable(result)) trace.async = true;
      else trace.result = result;
      tc.end.publish(trace);
    } else {
      try {
        result = handler(params, r);
      } catch (err) {
        this.finishWithError(r, err, true);
        return;
      }
    }
    if (
      result === null ||
      typeof result !== 'object' ||
      typeof (result as PromiseLike<unknown>).then !== 'function'
    ) {
      // Answered synchronously: never in flight, so no bookkeeping and no deadline. Its answer is
      // queued before the next request is read, and a queue over its high watermark pauses reading.
      this.finishWithResult(r, result);
      return;
    }
    if (this.inflight === NO_INFLIGHT) this.inflight = new IdTable();
    r.order = ++this.accepted;
    this.inflight.set(id, r);
    this.running++;
    this.runningBytes += r.bytes;
    if (this.runningBytes >= this.options.maxInFlightBytes) {
      // The handlers hold as much of this peer's data as we allow: take no more until some finish.
      this.connection.hold(ReadHold.BUSY);
    }
    if (r.bytes >= 65_536) this.connection.budgetChanged();
    // The handler's own limit, or the caller's remaining time when it is shorter (1.1).
    const own = this.options.handlerTimeoutMs;
    const caller = r.timeoutMs;
    if (caller !== undefined && (own === 0 || caller < own)) {
      r.callerDeadline = true;
      r.deadline = this.options.deadlines.add(Math.max(1, caller), onHandlerTimeout, r);
    } else if (own > 0) {
      r.deadline = this.options.deadlines.add(own, onHandlerTimeout, r);
    }
    (result as PromiseLike<unknown>).then(
      (value) => {
        this.handlerEnded(r);
        this.finishWithResult(r, value);
      },
      (err: unknown) => {
        this.handlerEnded(r);
        this.finishWithError(r, err, true);
      },
    );
  }

  /** An async handler's promise settled: what it held is free (its answer may have gone long ago). */
  private handlerEnded(r: Inflight): void {
    this.running--;
    this.runningBytes -= r.bytes;
    if (this.closed) {
      if (this.running === 0) this.options.events.peerReleased(this);
      return;
    }
    if (this.runningBytes < this.options.maxInFlightBytes) this.connection.release(ReadHold.BUSY);
    if (r.bytes >= 65_536) this.connection.budgetChanged();
  }

  private onCancel(msg: CancelMessage): void {
    const r = this.inflight.get(msg.id);
    if (r === undefined) return; // answered already: the answer crossed the CANCEL
    this.finishWithError(r, new LonglinkError(ErrorCode.CANCELLED, 'cancelled by the client'), false);
  }

  private finishWithResult(r: Inflight, value: unknown): void {
    if (r.done) return;
    let payload: Buffer;
    try {
      payload = this.codec.encode(value);
    } catch (err) {
      this.finishWithError(
        r,
        new LonglinkError(
          ErrorCode.HANDLER,
          `the result of ${r.method} could not be encoded: ${(err as Error)?.message}`,
          {
            cause: err,
          },
        ),
        true,
      );
      return;
    }
    this.settle(r);
    const trace = r.trace;
    if (trace?.async === true) {
      trace.result = value;
      const tc = channels.serverRequest;
      tc.asyncStart.publish(trace);
      tc.asyncEnd.publish(trace);
    }
    this.answer(r, { kind: MessageKind.RESPONSE, id: r.requestId, payload });
  }

  /**
   * Answers `r` with an ERROR (and aborts its signal). `report`: tell the application (a handler
   * failure or timeout; not a cancel). Public for the handler-timeout callback.
   */
  finishWithError(r: Inflight, err: unknown, report: boolean): void {
    if (r.done) return;
    this.settle(r);
    const e =
      err !== null && typeof err === 'object'
        ? (err as { code?: unknown; message?: unknown; details?: unknown })
        : { message: String(err) };
    if (err instanceof LonglinkError) r.abort(err);
    else r.abort(new AbortedError('request ended'));
    if (report) this.reportFailure(r, err);
    const trace = r.trace;
    if (trace?.async === true) {
      trace.error = err;
      const tc = channels.serverRequest;
      tc.error.publish(trace);
      tc.asyncStart.publish(trace);
      tc.asyncEnd.publish(trace);
    }
    this.answer(r, errorToMessage(e, r.requestId, this.codec));
  }

  /**
   * The one way out for an answer. A frame over the agreed limit becomes ERR_FRAME_TOO_LARGE (an
   * ERROR too large goes without its details, its text cut to fit); a queue
   * over its high watermark pauses reading until it drains.
   */
  private answer(r: Inflight, msg: Message): void {
    let out = this.sendWithin(msg);
    if (out === SendOutcome.TOO_LARGE) {
      const limit = (this.agreement as HelloAgreement).maxFrameLength;
      if (msg.kind === MessageKind.RESPONSE) {
        const err = new FrameTooLargeError(msg.payload.length, limit);
        this.reportFailure(r, err);
        out = this.sendWithin(
          errorToMessage(
            {
              code: err.code,
              message: `the result of ${r.method} exceeds the agreed maxFrameLength ${limit}`,
            },
            r.requestId,
          ),
        );
      } else {
        // Without its details, and its text cut (in bytes, on a character boundary) to what the
        // frame has room for besides the header: kind, flags, id, the code and two length fields.
        const m = msg as ErrorMessage;
        const room = limit - 9 - Buffer.byteLength(m.code, 'latin1');
        out = this.sendWithin({ ...m, message: fitUtf8(m.message, room), details: Buffer.alloc(0) });
      }
    }
    if (out === SendOutcome.FULL) this.connection.hold(ReadHold.BACKPRESSURE);
    this.afterSettle();
  }

  /** An ERROR for a request that never reached a handler. */
  private deliverError(id: number, code: string, message: string, details?: unknown): void {
    const out = this.sendWithin(
      errorToMessage(details === undefined ? { code, message } : { code, message, details }, id, this.codec),
    );
    if (out === SendOutcome.FULL) this.connection.hold(ReadHold.BACKPRESSURE);
  }

  private reportFailure(r: Inflight, error: unknown): void {
    this.options.events.peerHandlerError({
      error,
      method: r.method,
      requestId: r.requestId,
      connectionId: this.connectionId,
      remoteAddress: this.remoteAddress,
      identity: this.identity,
    });
  }

  private settle(r: Inflight): void {
    r.done = true;
    this.inflight.delete(r.requestId);
    if (r.deadline !== undefined) this.options.deadlines.cancel(r.deadline);
    this.completed++;
  }

  private afterSettle(): void {
    if (this.inflight.size > 0) return;
    if (this.goawaySent || this.goawayReceived || this.connection.state === ConnectionState.READ_CLOSED) {
      const resolve = this.drainResolve;
      this.drainResolve = undefined;
      void this.closeConnection(this.goawaySent ? CloseReason.LOCAL_GRACEFUL : CloseReason.GOING_AWAY);
      resolve?.();
    }
  }

  protected onClose(info: CloseInfo): void {
    if (this.helloDeadline !== undefined) this.options.deadlines.cancel(this.helloDeadline);
    this.helloDeadline = undefined;
    // The connection is gone: no answer can be delivered. Stop the handlers.
    const why = new AbortedError(`connection closed (${info.reason})`, { cause: info.error });
    for (const r of this.inflight.values().sort(byOrder)) {
      r.done = true;
      if (r.deadline !== undefined) this.options.deadlines.cancel(r.deadline);
      r.abort(why);
      // A traced request ends here too (with the abort as its error): a span is closed, an
      // in-flight gauge comes down, though no answer can be sent.
      const trace = r.trace;
      if (trace?.async === true) {
        trace.error = why;
        const tc = channels.serverRequest;
        tc.error.publish(trace);
        tc.asyncStart.publish(trace);
        tc.asyncEnd.publish(trace);
      }
    }
    this.inflight.clear();
    this.closed = true;
    this.connectionAbort?.abort(why);
    const resolve = this.drainResolve;
    this.drainResolve = undefined;
    resolve?.();
  }
}
