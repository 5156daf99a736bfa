/**
 * The server's side of one longlink connection: answers HELLO, runs handlers for REQUESTs with a
 * context (AbortSignal, NOTIFY push), enforces the per-connection limits, and on shutdown sends
 * GOAWAY with the last request it read, finishes every request it accepted, then closes.
 */

import type { CloseInfo } from '../connection/close-reason.js';
import { CloseReason } from '../connection/close-reason.js';
import type { Connection } from '../connection/connection.js';
import { AbortedError, LonglinkError } from '../errors.js';
import { errorToMessage } from '../protocol/error-message.js';
import { ErrorCode, ProtocolError } from '../protocol/errors.js';
import { answerHello, type HelloPolicy } from '../protocol/hello.js';
import type { PayloadCodecRegistry } from '../protocol/payload.js';
import {
  type CancelMessage,
  type HelloMessage,
  type Message,
  MessageKind,
  type RequestMessage,
} from '../protocol/types.js';
import { Peer } from '../session/peer.js';
import type { Deadline, Deadlines } from '../util/deadlines.js';

/** What a handler gets besides its params. */
export interface RequestContext {
  /** The request's method. */
  readonly method: string;
  /** The request id on this connection. */
  readonly requestId: number;
  /** The connection's id (unique in this process). */
  readonly connectionId: string;
  readonly remoteAddress: string | undefined;
  readonly remotePort: number | undefined;
  /**
   * Fires when the client cancels the request, when the handler timeout passes, or when the
   * connection dies. Pass it on to whatever the handler waits for.
   */
  readonly signal: AbortSignal;
  /** Pushes a NOTIFY to this client (server push). Returns false on backpressure; throws once closed. */
  notify(topic: string, payload: unknown): boolean;
}

/** A request handler: returns the result, or a promise of it; throwing answers with an ERROR. */
export type Handler = (params: unknown, ctx: RequestContext) => unknown;

/** Looks up the handler of a method; undefined answers ERR_METHOD_NOT_FOUND. */
export type Router = (method: string) => Handler | undefined;

/** Per-connection settings the server hands to each ServerPeer. */
export interface ServerPeerOptions {
  router: Router;
  codecs: PayloadCodecRegistry;
  hello: HelloPolicy;
  /** Checks the HELLO credential; false or a throw refuses the connection (ERR_UNAUTHENTICATED). */
  authenticate:
    | ((credential: string | undefined, peer: ServerPeer) => boolean | Promise<boolean>)
    | undefined;
  handlerTimeoutMs: number;
  helloTimeoutMs: number;
  deadlines: Deadlines;
  /** Run the heartbeat with the agreed timing (false: answer PINGs, send none). */
  heartbeat: boolean;
  /**
   * PINGs closer together than this (with no request in between) are strikes; after
   * `maxPingStrikes` the client gets GOAWAY ERR_TOO_MANY_PINGS (gRPC's ENHANCE_YOUR_CALM).
   */
  minPingIntervalMs: number;
  maxPingStrikes: number;
  /** The server's bookkeeping when the connection closes (one function for every peer, no closure each). */
  onClose?: ((peer: ServerPeer, info: CloseInfo) => void) | undefined;
}

/** One request being handled. */
class Inflight implements RequestContext {
  readonly method: string;
  readonly requestId: number;
  private controller: AbortController | undefined;
  deadline: Deadline | undefined;
  done = false;
  constructor(
    readonly peer: ServerPeer,
    msg: RequestMessage,
  ) {
    this.method = msg.method;
    this.requestId = msg.id;
  }
  get connectionId(): string {
    return this.peer.connection.id;
  }
  get remoteAddress(): string | undefined {
    return this.peer.connection.remoteAddress;
  }
  get remotePort(): number | undefined {
    return this.peer.connection.remotePort;
  }
  /** Created on first use: most handlers never look at it, and an AbortController is not free. */
  get signal(): AbortSignal {
    this.controller ??= new AbortController();
    return this.controller.signal;
  }
  notify(topic: string, payload: unknown): boolean {
    return this.peer.notify(topic, payload);
  }
  abort(reason: LonglinkError): void {
    if (this.controller === undefined) {
      this.controller = new AbortController();
    }
    if (!this.controller.signal.aborted) this.controller.abort(reason);
  }
}

function onHandlerTimeout(arg: unknown): void {
  const r = arg as Inflight;
  r.peer.finishWithError(r, new LonglinkError(ErrorCode.TIMEOUT, `handler for ${r.method} timed out`));
}

function onHelloTimeout(arg: unknown): void {
  const peer = arg as ServerPeer;
  peer.helloTimedOut();
}

/** Never written to: set() happens only after swapping in a connection's own map. */
const NO_INFLIGHT: Map<number, Inflight> = new Map();

export class ServerPeer extends Peer {
  private readonly options: ServerPeerOptions;

  protected override ended(info: CloseInfo): void {
    this.options.onClose?.(this, info);
    super.ended(info);
  }
  /** Requests being handled; the shared empty map until the first async one (most connections idle). */
  private inflight: Map<number, Inflight> = NO_INFLIGHT;
  private helloDeadline: Deadline | undefined;
  /** The id of the last REQUEST read (what GOAWAY reports). */
  lastReadId = 0;
  /** Requests answered on this connection (for shutdown reports). */
  completed = 0;
  private drainResolve: (() => void) | undefined;
  /** Whole ms since process start; a Smi start value keeps the field unboxed (no heap number). */
  private lastPingAt = -1_000_000_000;
  private pingStrikes = 0;

  constructor(connection: Connection, options: ServerPeerOptions) {
    super(connection);
    this.options = options;
    this.helloDeadline = options.deadlines.add(options.helloTimeoutMs, onHelloTimeout, this);
  }

  /** Requests accepted and not yet answered. */
  get inflightCount(): number {
    return this.inflight.size;
  }

  get isReady(): boolean {
    return this.ready;
  }

  /** The HELLO did not come in time: say why, then close. */
  helloTimedOut(): void {
    this.helloDeadline = undefined;
    if (this.ready) return;
    this.fail(
      new ProtocolError(ErrorCode.HELLO_REQUIRED, `no HELLO within ${this.options.helloTimeoutMs} ms`),
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

  /** Refuses a connection over the server's limit: GOAWAY with the reason and a retry hint, then close. */
  refuse(code: string, message: string, retryAfterMs: number): void {
    this.goAway(0, code, message, retryAfterMs);
    void this.closeConnection(CloseReason.LOCAL_GRACEFUL);
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

  private onHello(msg: HelloMessage): void {
    if (this.ready || this.helloDeadline === undefined) {
      this.fail(new ProtocolError(ErrorCode.PROTOCOL, 'second HELLO'));
      return;
    }
    this.options.deadlines.cancel(this.helloDeadline);
    let answered: ReturnType<typeof answerHello>;
    try {
      answered = answerHello(msg, this.options.hello);
    } catch (err) {
      this.fail(err instanceof ProtocolError ? err : new ProtocolError(ErrorCode.PROTOCOL, String(err)));
      return;
    }
    const finish = () => {
      this.agreement = answered.agreement;
      this.codec = this.options.codecs.get(answered.agreement.codec) ?? this.codec;
      this.ready = true;
      this.trySend(answered.reply);
      if (this.options.heartbeat) {
        // The client leads: it PINGs at the agreed interval, and each PING it sends is a read here.
        // The server waits half an interval longer before pinging itself, so while the client is
        // alive only one PING/PONG pair crosses per interval instead of one from each side. The
        // bound is unchanged: death is still declared `timeoutMs` after the last read (≥ 2 ×
        // interval, so the server's own PING, at 1.5 ×, still has half an interval for its PONG).
        const a = answered.agreement;
        this.startHeartbeat(
          Math.min(a.heartbeatIntervalMs * 1.5, a.heartbeatTimeoutMs - 1),
          a.heartbeatTimeoutMs,
        );
      }
      this.emit('ready');
    };
    const auth = this.options.authenticate;
    if (auth === undefined) {
      finish();
      return;
    }
    const refuse = (cause?: unknown) =>
      this.fail(new ProtocolError(ErrorCode.UNAUTHENTICATED, 'credential refused', { cause }));
    try {
      const ok = auth(msg.params.credential, this);
      if (typeof ok === 'boolean') {
        if (ok) finish();
        else refuse();
      } else {
        ok.then((v) => (v ? finish() : refuse()), refuse);
      }
    } catch (err) {
      refuse(err);
    }
  }

  private onRequest(msg: RequestMessage): void {
    const id = msg.id;
    this.pingStrikes = 0; // pings between requests are what keepalive is for
    if (this.goawaySent) {
      // Sent before the client saw our GOAWAY: not processed, safe to retry elsewhere.
      this.trySend(errorToMessage({ code: ErrorCode.SHUTTING_DOWN, message: 'server is shutting down' }, id));
      return;
    }
    if (this.inflight.has(id)) {
      this.fail(new ProtocolError(ErrorCode.PROTOCOL, `request id ${id} is already outstanding`));
      return;
    }
    this.lastReadId = id;
    const agreement = this.agreement;
    if (agreement !== undefined && this.inflight.size >= agreement.maxInFlight) {
      this.trySend(
        errorToMessage(
          {
            code: ErrorCode.TOO_MANY_REQUESTS,
            message: `more than ${agreement.maxInFlight} requests in flight`,
          },
          id,
        ),
      );
      return;
    }
    const handler = this.options.router(msg.method);
    if (handler === undefined) {
      this.trySend(
        errorToMessage({ code: ErrorCode.METHOD_NOT_FOUND, message: `no method ${msg.method}` }, id),
      );
      return;
    }
    let params: unknown;
    try {
      params = this.codec.decode(msg.payload);
    } catch (err) {
      this.trySend(
        errorToMessage(
          { code: ErrorCode.BAD_PAYLOAD, message: `undecodable params: ${(err as Error).message}` },
          id,
        ),
      );
      return;
    }
    const r = new Inflight(this, msg);
    let result: unknown;
    try {
      result = handler(params, r);
    } catch (err) {
      this.finishWithError(r, err);
      return;
    }
    if (
      result === null ||
      typeof result !== 'object' ||
      typeof (result as PromiseLike<unknown>).then !== 'function'
    ) {
      // Answered synchronously: never in flight, so no bookkeeping and no deadline.
      this.finishWithResult(r, result);
      return;
    }
    if (this.inflight === NO_INFLIGHT) this.inflight = new Map();
    this.inflight.set(id, r);
    if (this.options.handlerTimeoutMs > 0) {
      r.deadline = this.options.deadlines.add(this.options.handlerTimeoutMs, onHandlerTimeout, r);
    }
    (result as PromiseLike<unknown>).then(
      (value) => this.finishWithResult(r, value),
      (err: unknown) => this.finishWithError(r, err),
    );
  }

  private onCancel(msg: CancelMessage): void {
    const r = this.inflight.get(msg.id);
    if (r === undefined) return; // answered already: the answer crossed the CANCEL
    this.finishWithError(r, new LonglinkError(ErrorCode.CANCELLED, 'cancelled by the client'));
  }

  private finishWithResult(r: Inflight, value: unknown): void {
    if (r.done) return;
    let payload: Buffer;
    try {
      payload = this.codec.encode(value === undefined ? null : value);
    } catch (err) {
      this.finishWithError(r, err);
      return;
    }
    this.settle(r);
    this.trySend({ kind: MessageKind.RESPONSE, id: r.requestId, payload });
    this.afterSettle();
  }

  /** Answers `r` with an ERROR (and aborts its signal). Public for the handler-timeout callback. */
  finishWithError(r: Inflight, err: unknown): void {
    if (r.done) return;
    this.settle(r);
    const e =
      err !== null && typeof err === 'object'
        ? (err as { code?: unknown; message?: unknown; details?: unknown })
        : { message: String(err) };
    if (err instanceof LonglinkError) r.abort(err);
    else r.abort(new AbortedError('request ended'));
    this.trySend(errorToMessage(e, r.requestId, this.codec));
    this.afterSettle();
  }

  private settle(r: Inflight): void {
    r.done = true;
    this.inflight.delete(r.requestId);
    if (r.deadline !== undefined) this.options.deadlines.cancel(r.deadline);
    this.completed++;
  }

  private afterSettle(): void {
    if (this.inflight.size === 0 && (this.goawaySent || this.goawayReceived)) {
      const resolve = this.drainResolve;
      this.drainResolve = undefined;
      void this.closeConnection(this.goawaySent ? CloseReason.LOCAL_GRACEFUL : CloseReason.GOING_AWAY);
      resolve?.();
    }
  }

  protected onClose(info: CloseInfo): void {
    if (this.helloDeadline !== undefined) this.options.deadlines.cancel(this.helloDeadline);
    // The connection is gone: no answer can be delivered. Stop the handlers.
    const why = new AbortedError(`connection closed (${info.reason})`, { cause: info.error });
    for (const r of this.inflight.values()) {
      r.done = true;
      if (r.deadline !== undefined) this.options.deadlines.cancel(r.deadline);
      r.abort(why);
    }
    this.inflight.clear();
    const resolve = this.drainResolve;
    this.drainResolve = undefined;
    resolve?.();
  }
}
