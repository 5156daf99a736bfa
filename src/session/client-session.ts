/**
 * A client session: the client's side of ONE longlink connection, from its HELLO to its close
 * (docs/PROTOCOL.md). It sends requests — ids from the protocol's RequestIdAllocator, each with
 * its deadline and AbortSignal, CANCEL when the caller gives up — and matches their answers;
 * carries NOTIFYs both ways; runs the agreed heartbeat and answers PINGs; and on the server's
 * GOAWAY hands back the requests the server never read. Every request it takes is settled
 * exactly once, with its answer or a typed error.
 *
 * It never reconnects. Supervising belongs elsewhere (STYLE.md, "one clock, one session"): the
 * reconnecting Client keeps one session at a time and opens the next after a loss, re-sending
 * what a GOAWAY handed back; a ClientPool pools sessions and replaces them through its Pool.
 * Both hear from their sessions through one owner object each (SessionOwner), not listeners.
 */

import type { CloseInfo } from '../connection/close-reason.js';
import { CloseReason } from '../connection/close-reason.js';
import { Connection, type ConnectionStats } from '../connection/connection.js';
import { ConnectionClosedError, FrameTooLargeError, LonglinkError, RequestNotSentError } from '../errors.js';
import { remoteErrorFromMessage } from '../protocol/error-message.js';
import { ErrorCode, ProtocolError, RemoteError } from '../protocol/errors.js';
import { acceptHello, type HelloAgreement } from '../protocol/hello.js';
import { RequestIdAllocator } from '../protocol/request-id.js';
import {
  type GoawayMessage,
  type HelloMessage,
  type HelloParams,
  type Message,
  MessageKind,
  PROTOCOL_VERSION,
} from '../protocol/types.js';
import type { HeartbeatTiming } from './heartbeat.js';
import type { SessionConfig } from './options.js';
import { Peer, SendOutcome } from './peer.js';
import {
  newRequest,
  type OutgoingRequest,
  type RequestOptions,
  RequestTimeoutError,
  remainingMs,
} from './request.js';

/**
 * The server refused the connection before HELLO with a GOAWAY: `code` is its reason
 * (ERR_TOO_MANY_CONNECTIONS, ERR_SHUTTING_DOWN …), `retryAfterMs` its hint (0 for none).
 */
export class RefusedError extends RemoteError {
  static override readonly brand: string = 'RefusedError';
  readonly retryAfterMs: number;
  constructor(code: string, message: string, retryAfterMs: number) {
    super(code, message, { details: { retryAfterMs } });
    this.retryAfterMs = retryAfterMs;
  }
}

/** @internal What a session tells whoever owns it (a Client, a pool's endpoint), directly. */
export interface SessionOwner {
  sessionNotify(session: ClientSession, topic: string, payload: unknown): void;
  sessionRtt(session: ClientSession, rttMs: number): void;
  /**
   * The server sent GOAWAY: the session takes no new requests and closes once the accepted ones
   * are answered. `unprocessed` are those the server never read, in send order: safe to send
   * again anywhere. The owner takes them over: it sends each again or settles it.
   */
  sessionGoaway(session: ClientSession, msg: GoawayMessage, unprocessed: OutgoingRequest[]): void;
  /** The connection closed; every request it still carried has failed with the close reason. */
  sessionClosed(session: ClientSession, info: CloseInfo): void;
  /** A room push (1.2); without this hook it is a sessionNotify. */
  sessionRoomPush?(session: ClientSession, topic: string, payload: unknown, room: string, seq: number): void;
  /** A room notice (1.2): `$joined`, `$gap`, `$left`; without this hook, ignored. */
  sessionRoomNotice?(session: ClientSession, notice: string, room: string, seq: number): void;
}

/** What {@link ClientSession.stats} reports. */
export interface SessionStats {
  /** Requests sent and not yet answered (those given up on included, until their answer frees the id). */
  pending: number;
  /** Smoothed round-trip time from PING/PONG, ms. */
  rttMs: number | undefined;
  /** The heartbeat agreed in HELLO and running on this side, if any. */
  heartbeat: HeartbeatTiming | undefined;
  connection: ConnectionStats;
}

/**
 * What a connection that ended during HELLO says about the other side, in words: the fix for a
 * TLS port, an HTTP server or a refused client certificate is different from the fix for a crash.
 */
export function helloFailureHint(info: CloseInfo): string {
  const err = info.error;
  const code = (err?.cause as { code?: unknown } | undefined)?.code;
  if (typeof code === 'string' && /^ERR_SSL/.test(code)) {
    const what = code
      .replace(/^ERR_SSL_(TLSV1_ALERT_|TLSV13_ALERT_|SSLV3_ALERT_)?/, '')
      .toLowerCase()
      .replace(/_/g, ' ');
    return `: the TLS session failed (${what}${/certificate/.test(what) ? '; check the client certificate and the CAs' : ''})`;
  }
  if (err instanceof FrameTooLargeError) {
    // Our decoder read the first 4 bytes of the answer as a length: name what they really were.
    const head = err.length >>> 16;
    if (head === 0x1503 || head === 0x1603) return ': the server answered with TLS; connect with { tls }';
    if (err.length === 0x48545450) return ': the server answered like HTTP; it is not a longlink server';
    return ': the server sent something that is not the longlink protocol';
  }
  if (info.bytesRead === 0 && (info.reason === 'remote-fin' || info.reason === 'remote-reset')) {
    return ': the server closed without a word (not a longlink server, a TLS port without { tls }, or a proxy with no upstream)';
  }
  return '';
}

/**
 * One longlink connection seen from the client: requests, notifies, heartbeat, GOAWAY, close.
 * A `ClientPool` opens and pools them; a `Client` keeps one at a time and replaces it when lost.
 */
export class ClientSession extends Peer {
  // No `implements RequestOwner, RequestCarrier`: those hooks are internal (stripped from the
  // published .d.ts); newRequest(this, …) and `r.carrier = this` check them all the same.
  /** @internal Who hears of notifies, GOAWAY and the close; set before HELLO, so nothing is missed. */
  owner: SessionOwner | undefined = undefined;
  /** @internal */
  readonly config: SessionConfig;
  /** Outstanding requests by id, in send order; made with the first request (idle sessions need none). */
  private ids: RequestIdAllocator<OutgoingRequest> | undefined = undefined;
  /** Of those, requests given up on: kept only until their answer frees the id. */
  private abandoned = 0;
  /** Our HELLO; dropped once answered (nothing needs it after the agreement). */
  private offer: HelloMessage | undefined;
  private helloResolve: ((a: HelloAgreement) => void) | undefined = undefined;
  private helloReject: ((e: LonglinkError) => void) | undefined = undefined;
  /** close() was called: no new requests; waiting out its grace period, or closing. */
  private closing = false;
  private graceTimer: NodeJS.Timeout | undefined = undefined;
  /** Requests close() gave up on at the end of its grace (CANCELed); they fail with the close's reason. */
  private givenUp: OutgoingRequest[] | undefined = undefined;

  /** @internal Sessions are opened with {@link openSession}. */
  constructor(connection: Connection, config: SessionConfig, params: HelloParams) {
    super(connection);
    this.config = config;
    this.codec = config.codec;
    this.offer = { kind: MessageKind.HELLO, version: PROTOCOL_VERSION, params };
  }

  /** Requests sent on this session and not answered yet. */
  get pendingCount(): number {
    return this.ids === undefined ? 0 : this.ids.size;
  }

  /** True while new requests may be sent here: HELLO done, no GOAWAY either way, not closing. */
  get usable(): boolean {
    return (
      this.ready &&
      this.goawayReceived === undefined &&
      !this.goawaySent &&
      !this.closing &&
      this.connection.writable
    );
  }

  /**
   * Sends a request and resolves with its result (decoded with the agreed codec). Rejects with
   * RemoteError (the server's ERROR), RequestTimeoutError, AbortedError, ConnectionClosedError
   * with the close reason when the connection dies first, or RequestNotSentError when the
   * session takes no requests (closing, or the server went away) or the server hands it back
   * unread (GOAWAY): either way, no server ran it.
   */
  request<T = unknown>(method: string, params?: unknown, options: RequestOptions = {}): Promise<T> {
    if (!this.usable) {
      return Promise.reject(new RequestNotSentError(`session ${this.connection.id} takes no requests`));
    }
    let r: OutgoingRequest;
    try {
      r = newRequest(this, method, params, options, this.config.requestTimeoutMs);
    } catch (err) {
      return Promise.reject(err);
    }
    this.sendRequest(r, true);
    return r.promise as Promise<T>;
  }

  /**
   * @internal Writes a request (made here, or by the reconnecting Client) on this session. `fresh`:
   * it is sent in the same synchronous call that made it (see remainingMs).
   */
  sendRequest(r: OutgoingRequest, fresh: boolean): void {
    // Reusing a connection that sat silent for a heartbeat interval: probe it now, so a peer that
    // died meanwhile is found within the timeout rather than at the request's own deadline.
    // (With requests outstanding, answers are on their way: only an idle connection needs it.)
    let ids = this.ids;
    if (ids === undefined) this.ids = ids = new RequestIdAllocator();
    const a = this.agreement;
    if (ids.size === 0 && a !== undefined && this.config.heartbeat !== undefined) {
      this.connection.pingIfIdle(a.heartbeatIntervalMs);
    }
    let id: number;
    try {
      id = ids.allocate(r);
      r.carrier = this;
      // 1.1 (agreed minor ≥ 1): the caller's remaining time and its metadata go along.
      const v11 = a !== undefined && (a.version & 0xff) >= 1;
      const timeoutMs = v11 ? remainingMs(r, fresh) : undefined;
      const metadata = v11 ? r.metadata : undefined;
      const trace = r.trace;
      if (trace !== undefined) {
        trace.requestId = id;
        trace.connectionId = this.connection.id;
      }
      const out = this.sendWithin(
        timeoutMs === undefined && metadata === undefined
          ? { kind: MessageKind.REQUEST, id, method: r.method, payload: r.payload }
          : {
              kind: MessageKind.REQUEST,
              id,
              method: r.method,
              payload: r.payload,
              ...(timeoutMs === undefined ? {} : { timeoutMs }),
              ...(metadata === undefined ? {} : { metadata }),
            },
      );
      if (out === SendOutcome.TOO_LARGE) {
        throw new FrameTooLargeError(r.payload.length, (a as HelloAgreement).maxFrameLength);
      }
      if (out === SendOutcome.CLOSED)
        throw new ConnectionClosedError('connection closed before the request was written');
    } catch (err) {
      // Not written (a bad method name, a closed connection, every id taken): nothing to cancel.
      if (r.carrier === this) ids.discard(r.id);
      r.carrier = undefined;
      r.settle(
        err instanceof LonglinkError ? err : new LonglinkError('ERR_INTERNAL', String(err)),
        undefined,
      );
    }
  }

  /** @internal RequestCarrier: the caller gave up on `r`: tell the server; keep the id until its answer. */
  cancel(r: OutgoingRequest): void {
    if (r.carrier !== this || r.abandoned) return;
    r.abandoned = true;
    this.abandoned++;
    this.trySend({ kind: MessageKind.CANCEL, id: r.id });
  }

  /** @internal RequestOwner: requests made by {@link request} need no bookkeeping when they settle. */
  requestSettled(_r: OutgoingRequest): void {}

  /*
   * close({ graceMs }):
   *
   *   close() ── no new requests ──┬─ the last answer comes ──────────┐
   *                                └─ graceMs passes, answers missing ─┤
   *                                                                    ▼
   *            GOAWAY(lastId 0) + FIN (Connection.close: our queue flushed, then the server's
   *            FIN awaited at most closeTimeoutMs, else RST) ── closed: whatever is still
   *            pending fails with ConnectionClosedError and the close reason
   *
   * The requests still pending are CANCELed first: a longlink server answers every request it
   * read before our FIN (it owes them), so without the CANCELs it would hold its side open until
   * those handlers end. With them it answers ERR_CANCELLED at once and closes: the close takes a
   * round trip; a peer that never answers costs closeTimeoutMs at most.
   */
  /**
   * Closes gracefully: no new requests; waits up to `graceMs` (default 5 000) for the pending
   * ones, then says goodbye (GOAWAY) and closes the connection. Requests still pending then fail
   * with ConnectionClosedError carrying the close reason. Resolves with the close info.
   */
  close(options: { graceMs?: number } = {}): Promise<CloseInfo> {
    if (!this.closing) {
      this.closing = true;
      const graceMs = options.graceMs ?? 5000;
      if (this.awaited() === 0 || !(graceMs > 0)) this.leave();
      else {
        this.graceTimer = setTimeout(ClientSession.graceOver, Math.min(graceMs, 2 ** 31 - 1), this);
        this.graceTimer.unref();
      }
    }
    return this.connection.closed;
  }

  /** Forced close: RST now; pending requests fail with reason `local-abort` (or `error`'s). */
  destroy(error?: LonglinkError): void {
    this.connection.abort(error);
  }

  /** The heartbeat agreed in HELLO and running on this side, if any. */
  get heartbeat(): HeartbeatTiming | undefined {
    const a = this.agreement;
    return a === undefined || this.config.heartbeat === undefined
      ? undefined
      : { intervalMs: a.heartbeatIntervalMs, timeoutMs: a.heartbeatTimeoutMs };
  }

  /** Counters of this session and its connection; JSON-safe. */
  stats(): SessionStats {
    return {
      pending: this.pendingCount,
      rttMs: this.srttMs,
      heartbeat: this.heartbeat,
      connection: this.connection.stats(),
    };
  }

  // -------------------------------------------------------------------------------------------

  /** @internal Sends HELLO; resolves with the agreement, rejects with the server's refusal or the close. */
  handshake(): Promise<HelloAgreement> {
    return new Promise((resolve, reject) => {
      this.helloResolve = resolve;
      this.helloReject = reject;
      if (this.offer !== undefined) this.trySend(this.offer);
    });
  }

  private static graceOver(session: ClientSession): void {
    session.graceTimer = undefined;
    session.leave();
  }

  /** Requests a caller still waits for. */
  private awaited(): number {
    return this.pendingCount - this.abandoned;
  }

  /**
   * Goodbye: CANCEL what we still wait for (we give up on it: a server answers what was read
   * before our FIN, and would otherwise keep its side open until those handlers end), GOAWAY
   * (lastId 0: we answer no requests), then the graceful close, bounded by closeTimeoutMs.
   */
  private leave(): void {
    if (this.graceTimer !== undefined) clearTimeout(this.graceTimer);
    this.graceTimer = undefined;
    if (this.ids !== undefined && this.awaited() > 0) {
      // Given up on: CANCELed now, failed with the close's own reason when the close completes.
      for (const r of [...this.ids.values()]) {
        if (r.abandoned) continue;
        this.givenUp ??= [];
        this.givenUp.push(r);
        this.cancel(r);
      }
    }
    this.goAway(0, 'ERR_CLIENT_CLOSING', 'client closing');
    void this.closeConnection(CloseReason.LOCAL_GRACEFUL);
  }

  protected onMessage(msg: Message): void {
    switch (msg.kind) {
      case MessageKind.HELLO: {
        if (this.ready || this.offer === undefined) {
          this.fail(new ProtocolError(ErrorCode.PROTOCOL, 'second HELLO'));
          return;
        }
        let agreement: HelloAgreement;
        try {
          agreement = acceptHello(this.offer, msg);
        } catch (err) {
          const e = err instanceof ProtocolError ? err : new ProtocolError(ErrorCode.PROTOCOL, String(err));
          this.helloReject?.(e);
          this.fail(e);
          return;
        }
        this.agreement = agreement;
        this.offer = undefined;
        this.ready = true;
        if (this.config.heartbeat !== undefined)
          this.startHeartbeat(agreement.heartbeatIntervalMs, agreement.heartbeatTimeoutMs);
        this.helloResolve?.(agreement);
        this.helloResolve = this.helloReject = undefined;
        return;
      }
      case MessageKind.RESPONSE:
      case MessageKind.ERROR: {
        // Undefined: answered after a GOAWAY handed it back, or a stray answer.
        const r = this.ids?.release(msg.id);
        if (r === undefined) return;
        r.carrier = undefined;
        if (r.abandoned) this.abandoned--;
        else if (msg.kind === MessageKind.RESPONSE) r.settle(undefined, msg.payload);
        else if (msg.code === ErrorCode.DEADLINE_EXCEEDED) {
          // Our own deadline, noticed by the server first (its clock runs from the REQUEST's arrival,
          // so never before ours): the caller gets the same error its own timer would have given.
          r.settle(
            new RequestTimeoutError(r.method, r.timeoutMs, {
              cause: remoteErrorFromMessage(msg, this.codec),
            }),
            undefined,
          );
        } else r.settle(remoteErrorFromMessage(msg, this.codec), undefined);
        this.maybeFinish();
        return;
      }
      case MessageKind.GOAWAY: {
        if (!this.ready) {
          // Refused before HELLO (limit, shutdown): the reason is the answer to the connect.
          const e = new RefusedError(
            msg.reason,
            `server refused the connection: ${msg.message}`,
            msg.retryAfterMs,
          );
          this.helloReject?.(e);
          this.helloReject = this.helloResolve = undefined;
          void this.closeConnection(CloseReason.GOING_AWAY);
          return;
        }
        // The server read every request up to lastId, in send order (RequestIdAllocator's
        // split); the rest it never read. Those go back to the owner, in send order, to be sent
        // again; given-up ones are simply forgotten. (A second GOAWAY never gets here: Peer
        // ignores it, as PROTOCOL.md §9.1 says, so what the first one accepted stays accepted.)
        const unprocessed: OutgoingRequest[] = [];
        if (this.ids !== undefined) {
          for (const r of this.ids.splitOnGoaway(msg.lastId).notProcessed) {
            r.carrier = undefined;
            if (r.abandoned) this.abandoned--;
            else unprocessed.push(r);
          }
        }
        const owner = this.owner;
        if (owner !== undefined) owner.sessionGoaway(this, msg, unprocessed);
        else {
          const err = new RequestNotSentError(`server went away (${msg.reason}) before reading the request`);
          for (const r of unprocessed) r.settle(err, undefined);
        }
        this.maybeFinish();
        return;
      }
      default:
        return;
    }
  }

  protected override notified(topic: string, payload: unknown): void {
    super.notified(topic, payload);
    this.owner?.sessionNotify(this, topic, payload);
  }
  protected override roomNotified(topic: string, payload: unknown, room: string, seq: number): void {
    const owner = this.owner;
    if (owner?.sessionRoomPush === undefined) {
      super.roomNotified(topic, payload, room, seq);
      return;
    }
    this.emit('notify', topic, payload);
    owner.sessionRoomPush(this, topic, payload, room, seq);
  }
  protected override roomNotice(notice: string, room: string, seq: number): void {
    this.owner?.sessionRoomNotice?.(this, notice, room, seq);
  }
  protected override measured(rttMs: number): void {
    super.measured(rttMs);
    this.owner?.sessionRtt(this, rttMs);
  }
  protected override ended(info: CloseInfo): void {
    super.ended(info);
    this.owner?.sessionClosed(this, info);
  }

  protected override onRemoteConnectionError(err: RemoteError): void {
    if (!this.ready) {
      this.helloReject?.(err);
      this.helloReject = this.helloResolve = undefined;
    }
  }

  /** Nothing left to wait for: after a GOAWAY either way, or once close() has nothing pending. */
  private maybeFinish(): void {
    if (this.goawayReceived !== undefined) {
      if (this.pendingCount === 0) void this.closeConnection(CloseReason.GOING_AWAY);
    } else if (this.graceTimer !== undefined && this.awaited() === 0) {
      this.leave();
    }
  }

  protected onClose(info: CloseInfo): void {
    if (this.graceTimer !== undefined) clearTimeout(this.graceTimer);
    this.graceTimer = undefined;
    if (this.helloReject) {
      this.helloReject(
        this.remoteError ??
          new ConnectionClosedError(
            `connection closed (${info.reason}) during HELLO${helloFailureHint(info)}`,
            info.reason,
            { cause: info.error },
          ),
      );
      this.helloReject = this.helloResolve = undefined;
    }
    const ids = this.ids;
    const givenUp = this.givenUp;
    this.givenUp = undefined;
    if ((ids === undefined || ids.size === 0) && givenUp === undefined) return;
    // Every pending request fails at once with the reason; none waits for its own timeout.
    const remote = this.remoteError;
    const closedError =
      remote === undefined
        ? new ConnectionClosedError(
            `connection closed (${info.reason}) with the request in flight`,
            info.reason,
            {
              cause: info.error,
            },
          )
        : new ConnectionClosedError(`connection closed (${info.reason}): ${remote.message}`, info.reason, {
            cause: remote,
          });
    for (const r of ids?.values() ?? []) {
      r.carrier = undefined;
      if (!r.abandoned) r.settle(closedError, undefined);
    }
    for (const r of givenUp ?? []) r.settle(closedError, undefined);
    ids?.clear();
    this.abandoned = 0;
  }
}

// ---------------------------------------------------------------------------------------------
// Opening a session

/** @internal Options of {@link openSession} beyond the config. */
export interface OpenOptions {
  /** Aborts the connect and the HELLO. */
  signal?: AbortSignal | undefined;
  /** Told of everything from the first byte on (a NOTIFY in the same read as the HELLO answer included). */
  owner?: SessionOwner | undefined;
  /** Multiplies the heartbeat offered (a client told it pings too often offers a slower one). */
  heartbeatScale?: number;
  /** Tell the server (HELLO `resume`, 1.2) that the first request will be `$resume`. */
  resume?: boolean;
}

/**
 * @internal Connects and completes the HELLO exchange, both within `connectTimeoutMs` (each
 * phase) and abortable by `signal`. Rejects with ConnectError / ConnectTimeoutError, the
 * server's refusal (RefusedError, RemoteError ERR_UNAUTHENTICATED …), or ConnectionClosedError
 * saying what the other side looked like when it was no longlink server.
 */
export async function openSession(
  config: SessionConfig,
  host: string,
  port: number,
  options: OpenOptions = {},
): Promise<ClientSession> {
  const o = config.options;
  const signal = options.signal;
  const conn = await Connection.connect(
    {
      ...o.connection,
      framing: config.framing,
      host,
      port,
      connectTimeoutMs: config.connectTimeoutMs,
      ...(signal === undefined ? {} : { signal }),
      ...(o.tls === undefined ? {} : { tls: o.tls }),
    },
    config.checked,
  );
  const hb = config.heartbeat;
  const scale = options.heartbeatScale ?? 1;
  const session = new ClientSession(conn, config, {
    codecs: [config.codec.name],
    maxFrameLength: config.framing.maxFrameLength,
    ...(hb === undefined
      ? {}
      : { heartbeatIntervalMs: hb.intervalMs * scale, heartbeatTimeoutMs: hb.timeoutMs * scale }),
    ...(o.credential === undefined ? {} : { credential: o.credential }),
    ...(o.name === undefined ? {} : { name: o.name }),
    ...(options.resume === true ? { resume: true } : {}),
  });
  session.owner = options.owner;
  const onAbort = () => conn.abort();
  if (signal?.aborted) conn.abort();
  else signal?.addEventListener('abort', onAbort, { once: true });
  const timer = setTimeout(
    () => conn.abort(new LonglinkError('ERR_CONNECT_TIMEOUT', 'no HELLO answer in time')),
    config.connectTimeoutMs,
  );
  timer.unref();
  try {
    await session.handshake();
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener('abort', onAbort);
  }
  const goaway = session.goawayReceived;
  if (goaway !== undefined) {
    // The GOAWAY came in the same read as the HELLO answer: this connection is already closing.
    // The attempt failed, and the server's retry hint is kept.
    void session.closeConnection(CloseReason.GOING_AWAY);
    throw new RefusedError(
      goaway.reason,
      `server went away during HELLO: ${goaway.message}`,
      goaway.retryAfterMs,
    );
  }
  return session;
}
