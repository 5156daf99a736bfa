/**
 * The client's side of one longlink connection: sends HELLO, matches RESPONSE/ERROR to requests
 * by id, sends CANCEL for abandoned requests, and on GOAWAY hands back the requests the server
 * never read so the Client can re-send them elsewhere.
 */

import type { CloseInfo } from '../connection/close-reason.js';
import { CloseReason } from '../connection/close-reason.js';
import type { Connection } from '../connection/connection.js';
import { ConnectionClosedError, FrameTooLargeError, type LonglinkError } from '../errors.js';
import { remoteErrorFromMessage } from '../protocol/error-message.js';
import { ErrorCode, ProtocolError, RemoteError } from '../protocol/errors.js';
import { acceptHello, type HelloAgreement } from '../protocol/hello.js';
import {
  type GoawayMessage,
  type HelloMessage,
  type HelloParams,
  MAX_REQUEST_ID,
  type Message,
  MessageKind,
  PROTOCOL_VERSION,
} from '../protocol/types.js';
import { Peer } from '../session/peer.js';

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

/** What a ClientPeer tells its Client. */
export interface ClientPeerOwner {
  peerNotify(topic: string, payload: unknown): void;
  peerRtt(rttMs: number): void;
  peerGoaway(peer: ClientPeer, msg: GoawayMessage): void;
  peerClosed(peer: ClientPeer, info: CloseInfo): void;
  /** Requests the server never read, handed back on GOAWAY: safe to send again. */
  peerUnprocessed(requests: OutgoingRequest[]): void;
}

/** A request as the Client tracks it, across connections (GOAWAY may move it). */
export interface OutgoingRequest {
  readonly method: string;
  readonly payload: Buffer;
  /** Settles the caller's promise; called at most once by whoever finishes the request. */
  settle(error: LonglinkError | undefined, payload: Buffer | undefined): void;
  /** Set while the request sits on a connection. */
  peer: ClientPeer | undefined;
  id: number;
  /** Send order on its connection (GOAWAY's lastId splits by it). */
  seq: number;
  /** The caller gave up (timeout, abort): the answer is awaited only to free the id. */
  abandoned: boolean;
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
 * Shared by every connection that has not sent a request yet (an empty Map still costs its
 * 150-byte table); never written to: request() swaps in the connection's own map first.
 */
const NO_PENDING: Map<number, OutgoingRequest> = new Map();

export class ClientPeer extends Peer {
  /**
   * Outstanding requests by id. A Map iterates in insertion order, which is send order: GOAWAY's
   * split needs nothing more. Ids are u32, never 0, and skip ids still outstanding (an abandoned
   * request keeps its id until its answer comes, so a late answer cannot match a newer request).
   */
  private pending: Map<number, OutgoingRequest> = NO_PENDING;
  private nextId = 1;
  private nextSeq = 1;
  /** The highest send sequence number of any answered request. */
  private answeredSeq = 0;
  /** Our HELLO; dropped once answered (nothing needs it after the agreement). */
  private offer: HelloMessage | undefined;
  private helloResolve: ((a: HelloAgreement) => void) | undefined;
  private helloReject: ((e: LonglinkError) => void) | undefined;
  /** The Client this connection works for; told of everything directly. */
  owner: ClientPeerOwner | undefined;

  /** Run the heartbeat with the agreed timing (false: answer PINGs, send none). */
  private readonly heartbeatOn: boolean;

  constructor(connection: Connection, params: HelloParams, heartbeat = true) {
    super(connection);
    this.offer = { kind: MessageKind.HELLO, version: PROTOCOL_VERSION, params };
    this.heartbeatOn = heartbeat;
  }

  /** Requests on this connection the caller still waits for. */
  get pendingCount(): number {
    return this.pending.size;
  }

  /** True while new requests may be sent here. */
  get usable(): boolean {
    return this.ready && this.goawayReceived === undefined && !this.goawaySent && this.connection.writable;
  }

  /** Sends HELLO; resolves with the agreement, rejects with the server's refusal or the close. */
  handshake(
    codecFor: (name: string) => import('../protocol/payload.js').PayloadCodec | undefined,
  ): Promise<HelloAgreement> {
    return new Promise((resolve, reject) => {
      this.helloResolve = (a) => {
        const codec = codecFor(a.codec);
        if (codec) this.codec = codec;
        resolve(a);
      };
      this.helloReject = reject;
      if (this.offer !== undefined) this.trySend(this.offer);
    });
  }

  /** Writes a request. Returns the send()'s backpressure signal. */
  request(r: OutgoingRequest): boolean {
    // Reusing a connection that sat silent for a heartbeat interval: probe it now, so a peer that
    // died meanwhile is found within the timeout rather than at the request's own deadline.
    // (With requests outstanding, answers are on their way: only an idle connection needs it.)
    const a = this.agreement;
    if (this.pending.size === 0 && a !== undefined && this.heartbeatOn) {
      this.connection.pingIfIdle(a.heartbeatIntervalMs);
    }
    let id = this.nextId;
    while (this.pending.has(id)) id = id === MAX_REQUEST_ID ? 1 : id + 1;
    this.nextId = id === MAX_REQUEST_ID ? 1 : id + 1;
    r.id = id;
    r.seq = this.nextSeq++;
    r.peer = this;
    if (this.pending === NO_PENDING) this.pending = new Map();
    this.pending.set(id, r);
    return this.send({ kind: MessageKind.REQUEST, id, method: r.method, payload: r.payload });
  }

  /** The caller gave up on `r`: tell the server; keep the id until its answer arrives. */
  cancel(r: OutgoingRequest): void {
    if (r.peer !== this || r.abandoned) return;
    r.abandoned = true;
    this.trySend({ kind: MessageKind.CANCEL, id: r.id });
  }

  /** Says goodbye (GOAWAY, lastId 0: we answer no requests) and closes once our requests are answered. */
  leave(): void {
    this.goAway(0, 'ERR_CLIENT_CLOSING', 'client closing');
    if (this.pending.size === 0) void this.closeConnection(CloseReason.LOCAL_GRACEFUL);
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
        if (this.heartbeatOn)
          this.startHeartbeat(agreement.heartbeatIntervalMs, agreement.heartbeatTimeoutMs);
        this.helloResolve?.(agreement);
        this.helloResolve = this.helloReject = undefined;
        return;
      }
      case MessageKind.RESPONSE:
      case MessageKind.ERROR: {
        const r = this.pending.get(msg.id);
        if (r === undefined) return; // answered after a GOAWAY moved it, or a stray answer
        this.pending.delete(msg.id);
        if (r.seq > this.answeredSeq) this.answeredSeq = r.seq;
        r.peer = undefined;
        if (!r.abandoned) {
          if (msg.kind === MessageKind.RESPONSE) r.settle(undefined, msg.payload);
          else r.settle(remoteErrorFromMessage(msg, this.codec), undefined);
        }
        this.maybeFinish();
        return;
      }
      case MessageKind.GOAWAY: {
        if (!this.ready) {
          // Refused before HELLO (limit, shutdown): the reason is the answer to connect().
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
        // The server read every request up to lastId, in send order. If lastId was answered
        // already, the latest answered request marks the same point (nothing sent after lastId
        // was read, so nothing after it can have been answered).
        const last = msg.lastId === 0 ? undefined : this.pending.get(msg.lastId);
        const cutoff = last !== undefined && last.seq > this.answeredSeq ? last.seq : this.answeredSeq;
        const moved: OutgoingRequest[] = [];
        for (const [id, r] of this.pending) {
          if (r.seq <= cutoff) continue;
          this.pending.delete(id);
          r.peer = undefined;
          if (!r.abandoned) moved.push(r);
        }
        // A late ERR_SHUTTING_DOWN for a moved id finds nothing pending and is ignored.
        if (moved.length > 0) this.owner?.peerUnprocessed(moved);
        this.maybeFinish();
        return;
      }
      default:
        return;
    }
  }

  protected override notified(topic: string, payload: unknown): void {
    super.notified(topic, payload);
    this.owner?.peerNotify(topic, payload);
  }
  protected override measured(rttMs: number): void {
    super.measured(rttMs);
    this.owner?.peerRtt(rttMs);
  }
  protected override goneAway(msg: GoawayMessage): void {
    super.goneAway(msg);
    this.owner?.peerGoaway(this, msg);
  }
  protected override ended(info: CloseInfo): void {
    super.ended(info);
    this.owner?.peerClosed(this, info);
  }

  protected override onRemoteConnectionError(err: RemoteError): void {
    if (!this.ready) {
      this.helloReject?.(err);
      this.helloReject = this.helloResolve = undefined;
    }
  }

  private maybeFinish(): void {
    if (this.pending.size === 0 && (this.goawayReceived !== undefined || this.goawaySent)) {
      void this.closeConnection(this.goawayReceived ? CloseReason.GOING_AWAY : CloseReason.LOCAL_GRACEFUL);
    }
  }

  protected onClose(info: CloseInfo): void {
    const error =
      this.remoteError ??
      new ConnectionClosedError(
        `connection closed (${info.reason}) with the request in flight`,
        info.reason,
        {
          cause: info.error,
        },
      );
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
    // Every pending request fails at once with the reason; none waits for its own timeout.
    const closedError =
      error instanceof ConnectionClosedError
        ? error
        : new ConnectionClosedError(`connection closed (${info.reason}): ${error.message}`, info.reason, {
            cause: error,
          });
    for (const r of this.pending.values()) {
      r.peer = undefined;
      if (!r.abandoned) r.settle(closedError, undefined);
    }
    this.pending.clear();
  }
}
