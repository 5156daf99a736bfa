/**
 * Peer: one Connection speaking the longlink protocol (docs/PROTOCOL.md). What client and server
 * share lives here: decoding frames into messages, the HELLO gate, PING → PONG, NOTIFY in both
 * directions, connection-level ERRORs, and closing with a protocol-level goodbye so the other
 * side can tell a clean close from a cut one. The roles add requests (client) and handlers
 * (server) on top.
 */

import { EventEmitter } from 'node:events';
import type { CloseInfo } from '../connection/close-reason.js';
import { CloseReason } from '../connection/close-reason.js';
import type { Connection, HeartbeatHook, HeartbeatTarget } from '../connection/connection.js';
import { notWritable } from '../connection/core.js';
import { type FrameTarget, forgetReservation } from '../connection/slab.js';
import { type FramingError, type LonglinkError, TruncatedFrameError } from '../errors.js';
import { errorToMessage, remoteErrorFromMessage } from '../protocol/error-message.js';
import { ErrorCode, ProtocolError, type RemoteError } from '../protocol/errors.js';
import type { HelloAgreement } from '../protocol/hello.js';
import { jsonCodec, type PayloadCodec } from '../protocol/payload.js';
import {
  type ErrorMessage,
  type GoawayMessage,
  type Message,
  MessageKind,
  type NotifyMessage,
} from '../protocol/types.js';
import {
  decodeMessage,
  encodeMessage,
  encodeMessageInto,
  encodePing,
  encodePong,
  pingKind,
  pingSequence,
} from '../protocol/wire.js';
import { plainLength } from '../util/bytes.js';
import { channels } from '../util/channels.js';
import { now } from '../util/clock.js';
import { deferListenerTable } from '../util/events.js';

/** What {@link Peer.sendWithin} did. */
export const SendOutcome = {
  /** Queued, below the high watermark. */
  SENT: 0,
  /** Queued; the queue is at or above its high watermark (stop producing until it drains). */
  FULL: 1,
  /** Not sent: the frame would exceed the agreed maxFrameLength. */
  TOO_LARGE: 2,
  /** Not sent: the connection takes no more sends. */
  CLOSED: 3,
} as const;
export type SendOutcome = (typeof SendOutcome)[keyof typeof SendOutcome];

/** The events every peer emits. */
export interface PeerEvents {
  /** A NOTIFY arrived: `payload` decoded with the agreed codec. */
  notify: [topic: string, payload: unknown];
  /** The other side sent GOAWAY. */
  goaway: [message: GoawayMessage];
  /** An ERROR with id 0 arrived: the other side reports a connection-level problem. */
  'remote-error': [error: RemoteError];
  /** A PONG answered one of our PINGs; `rttMs` is the round trip. */
  rtt: [rttMs: number];
  /** The HELLO exchange finished. */
  ready: [];
  close: [info: CloseInfo];
}

interface PingWaiter {
  seq: number;
  sentAt: number;
  resolve(rttMs: number): void;
}

/**
 * Base of ClientSession and ServerPeer. Subclasses handle HELLO, REQUEST, RESPONSE, ERROR (id ≠ 0),
 * CANCEL and GOAWAY in {@link onMessage}; everything else is handled here.
 */
/**
 * The hook a Peer installs on its Connection: one per timing, shared by every connection that
 * agreed on it (the connection is passed to `ping`; its handler is the Peer).
 */
class PeerHeartbeat implements HeartbeatHook {
  constructor(
    readonly intervalMs: number,
    readonly timeoutMs: number,
  ) {}
  ping(connection: HeartbeatTarget): void {
    const peer = connection.handler;
    if (peer instanceof Peer) peer.heartbeatPing();
  }
}

/** Hooks by timing (`interval/timeout`); bounded: past the bound a hook is made per connection. */
const heartbeatHooks = new Map<string, PeerHeartbeat>();
const MAX_HEARTBEAT_HOOKS = 64;

function heartbeatHook(intervalMs: number, timeoutMs: number): PeerHeartbeat {
  const key = `${intervalMs}/${timeoutMs}`;
  let hook = heartbeatHooks.get(key);
  if (hook === undefined) {
    hook = new PeerHeartbeat(intervalMs, timeoutMs);
    if (heartbeatHooks.size < MAX_HEARTBEAT_HOOKS) heartbeatHooks.set(key, hook);
  }
  return hook;
}

/** A Peer's rarely used state, in one object made on first use (four fields fewer per connection). */
class PeerRare {
  goawaySent = false;
  goawayReceived: GoawayMessage | undefined = undefined;
  remoteError: RemoteError | undefined = undefined;
  pings: PingWaiter[] | undefined = undefined;
}

export abstract class Peer extends EventEmitter {
  // No `implements ConnectionHandler`: its hooks here are internal (stripped from the published
  // .d.ts), and `connection.setHandler(this)` in the constructor checks them all the same.
  readonly connection: Connection;
  /** @internal The agreed parameters, once HELLO is done. */
  agreement: HelloAgreement | undefined;
  /** The agreed payload codec (JSON until HELLO says otherwise). */
  codec: PayloadCodec = jsonCodec;
  /** Set once the HELLO exchange finished. */
  protected ready = false;
  /** What few connections ever have (GOAWAY either way, a connection ERROR, ping() callers): made on first use. */
  private rare: PeerRare | undefined = undefined;
  /** Smoothed round-trip time from PING/PONG (RFC 6298 weights), ms; undefined before the first. */
  srttMs: number | undefined;

  /** The framing's in-place prefix width (0: none): messages are encoded with that headroom. */
  private readonly prefix: number;
  /** PING data is this sequence number as a u64 (two u32 halves: no BigInt on the hot path). */
  private pingSeq = 0;
  /** The heartbeat PING outstanding (its sequence and send time), for RTT without a promise. */
  private hbSeq = -1;
  private hbSentAt = 0;

  constructor(connection: Connection) {
    super();
    deferListenerTable(this);
    this.connection = connection;
    connection.setHandler(this);
    this.prefix = connection.prefixLength ?? 0;
  }

  /** @internal We sent GOAWAY (no new work accepted). */
  get goawaySent(): boolean {
    return this.rare?.goawaySent === true;
  }
  /** @internal */
  set goawaySent(v: boolean) {
    this.rareState().goawaySent = v;
  }
  /** @internal The peer's GOAWAY, if it sent one. */
  get goawayReceived(): GoawayMessage | undefined {
    return this.rare?.goawayReceived;
  }
  /** @internal */
  set goawayReceived(msg: GoawayMessage | undefined) {
    this.rareState().goawayReceived = msg;
  }
  /** The peer's last connection-level ERROR, reported as the close error. */
  protected get remoteError(): RemoteError | undefined {
    return this.rare?.remoteError;
  }
  protected set remoteError(err: RemoteError | undefined) {
    this.rareState().remoteError = err;
  }
  /** Callers of ping() waiting for their PONG; made on first use (the heartbeat needs none). */
  private get pings(): PingWaiter[] | undefined {
    return this.rare?.pings;
  }
  private set pings(p: PingWaiter[] | undefined) {
    if (p !== undefined || this.rare !== undefined) this.rareState().pings = p;
  }
  private rareState(): PeerRare {
    this.rare ??= new PeerRare();
    return this.rare;
  }

  /** @internal ConnectionHandler: each frame. */
  handleFrame(frame: Buffer): void {
    this.onFrame(frame);
  }

  /** @internal ConnectionHandler: a framing error (oversize, bad header): tell the peer why before the FIN. */
  handleProtocolError(err: FramingError): void {
    this.trySend(errorToMessage({ code: codeForFraming(err), message: err.message }));
  }

  /** @internal ConnectionHandler: the connection closed. */
  handleClose(info: CloseInfo): void {
    const pings = this.pings;
    this.pings = undefined;
    for (const p of pings ?? []) p.resolve(Number.NaN);
    this.onClose(info);
    this.ended(info);
  }

  // Hooks where the roles learn what happened; by default they are events. A subclass may call
  // its owner directly instead (no listener table, no closures per connection).
  protected notified(topic: string, payload: unknown): void {
    this.emit('notify', topic, payload);
  }
  protected measured(rttMs: number): void {
    this.emit('rtt', rttMs);
  }
  protected goneAway(msg: GoawayMessage): void {
    this.emit('goaway', msg);
  }
  protected ended(info: CloseInfo): void {
    this.emit('close', info);
  }

  /** True while the connection takes messages. */
  get writable(): boolean {
    return this.connection.writable;
  }

  /** @internal Sends one message; false means backpressure (see Connection#send). Throws once closed. */
  send(msg: Message): boolean {
    const c = this.connection;
    const prefix = this.prefix;
    const t = encodeFor(c, msg, prefix);
    const parts = takeParts();
    if (t === undefined) return prefix > 0 ? c.sendPrefixed(parts) : c.sendOwnParts(parts);
    if (!c.writable) {
      forgetReservation(c);
      throw notWritable(c);
    }
    return c.commitFrame(t, bodyLength(t, parts, prefix), parts);
  }

  /**
   * @internal
   * Sends `msg` unless its frame would exceed the agreed `maxFrameLength` (the peer would take it
   * as a protocol error and close the whole connection). Never throws: says what happened.
   */
  sendWithin(msg: Message): SendOutcome {
    const c = this.connection;
    if (!c.writable) return SendOutcome.CLOSED;
    const prefix = this.prefix;
    // Encoded in place into the connection's output slab when the framing allows (slab.ts); a
    // frame over the limit is then simply not committed.
    const t = encodeFor(c, msg, prefix);
    const parts = takeParts();
    const length = bodyLength(t, parts, prefix);
    // Checked again: code of the caller's may have run while the message was encoded.
    const outcome = !c.writable
      ? SendOutcome.CLOSED
      : length > (this.agreement?.maxFrameLength ?? c.framing.maxFrameLength)
        ? SendOutcome.TOO_LARGE
        : SendOutcome.SENT;
    if (outcome !== SendOutcome.SENT) {
      if (t !== undefined) forgetReservation(c);
      return outcome;
    }
    const ok =
      t !== undefined
        ? c.commitFrame(t, length, parts)
        : prefix > 0
          ? c.sendPrefixed(parts)
          : c.sendOwnParts(parts);
    return ok ? SendOutcome.SENT : SendOutcome.FULL;
  }

  /** Sends if the connection is still writable; never throws. */
  protected trySend(msg: Message): boolean {
    if (!this.connection.writable) return false;
    try {
      this.send(msg);
      return true;
    } catch {
      return false;
    }
  }

  /** Sends a one-way NOTIFY encoded with the agreed codec. */
  notify(topic: string, payload: unknown): boolean {
    return this.send({ kind: MessageKind.NOTIFY, topic, payload: this.codec.encode(payload) });
  }

  /**
   * Sends a PING and resolves with the round-trip time in ms when the PONG arrives — NaN if the
   * connection closes first, or if no PONG came within `timeoutMs` (a peer may leave PINGs
   * unanswered). Also feeds {@link srttMs}. `timeoutMs`: a checked duration; Infinity waits.
   */
  ping(timeoutMs = Number.POSITIVE_INFINITY): Promise<number> {
    const seq = ++this.pingSeq;
    return new Promise((resolve) => {
      this.pings ??= [];
      const pings = this.pings;
      let timer: NodeJS.Timeout | undefined;
      const waiter: PingWaiter = {
        seq,
        sentAt: now(),
        resolve: (rtt) => {
          if (timer !== undefined) clearTimeout(timer);
          resolve(rtt);
        },
      };
      pings.push(waiter);
      if (!this.sendPingFrame(seq, undefined)) {
        pings.pop();
        resolve(Number.NaN);
        return;
      }
      if (Number.isFinite(timeoutMs)) {
        timer = setTimeout(() => {
          // No PONG in time: forget it (a PONG that comes later finds no waiter and is dropped).
          const i = this.pings?.indexOf(waiter) ?? -1;
          if (i >= 0) this.pings?.splice(i, 1);
          resolve(Number.NaN);
        }, timeoutMs);
        timer.unref();
      }
    });
  }

  /**
   * Starts the protocol heartbeat with the agreed timing: a PING when nothing was read for the
   * interval, the connection aborted (reason `heartbeat-timeout`) when nothing was read for the
   * timeout. PONGs give the RTT.
   */
  protected startHeartbeat(intervalMs: number, timeoutMs: number): void {
    this.connection.setHeartbeat(heartbeatHook(intervalMs, timeoutMs));
  }

  /** @internal Sends the heartbeat PING (called by the Connection's liveness check). */
  heartbeatPing(): void {
    const seq = ++this.pingSeq;
    this.hbSeq = seq;
    this.hbSentAt = now();
    this.sendPingFrame(seq, undefined);
  }

  /**
   * Queues a heartbeat PING (`seq`) or the PONG answering `answering`, built by wire.ts's
   * encodePing/encodePong with the framing's prefix room: one allocation per heartbeat on each
   * side. Returns whether it was queued (false: the connection is not writable).
   */
  private sendPingFrame(seq: number, answering: Buffer | undefined): boolean {
    const c = this.connection;
    if (!c.writable) return false;
    const p = this.prefix;
    const buf = answering !== undefined ? encodePong(answering, p) : encodePing(seq, p);
    try {
      // Queued is sent: send()'s false only says the queue is above its high-water mark.
      if (p > 0) c.sendPrefixedOne(buf);
      else c.send(buf);
      return true;
    } catch {
      return false;
    }
  }

  /** Called for each PING received; return false to not answer it (rate limiting). */
  protected onPing(): boolean {
    return true;
  }

  /**
   * Closes after a protocol-level goodbye: GOAWAY (`lastId`, reason) then the graceful close.
   * `reason` is reported as this side's close reason.
   */
  protected goAway(lastId: number, code: string, message: string, retryAfterMs = 0): void {
    if (this.goawaySent) return;
    this.goawaySent = true;
    this.trySend({ kind: MessageKind.GOAWAY, lastId, retryAfterMs, reason: code, message });
  }

  /** Sends a connection-level ERROR and closes with reason protocol-error. Never throws. */
  protected fail(err: ProtocolError): void {
    this.trySend(errorToMessage(err));
    void this.connection.close({
      reason: CloseReason.PROTOCOL_ERROR,
      error: err,
      initiator: 'remote',
      timeoutMs: 2000,
    });
  }

  /** @internal Closes gracefully (FIN after the queue), reporting `reason`. */
  closeConnection(
    reason: CloseReason = CloseReason.LOCAL_GRACEFUL,
    error?: LonglinkError,
  ): Promise<CloseInfo> {
    // A close that follows the peer's GOAWAY was the peer's decision.
    const initiator = reason === CloseReason.GOING_AWAY ? 'remote' : 'local';
    return this.connection.close(error === undefined ? { reason, initiator } : { reason, error, initiator });
  }

  private onFrame(frame: Buffer): void {
    // The heartbeat's fast path (wire.ts pingKind); anything unusual takes the full decode below.
    const fast = this.ready ? pingKind(frame) : 0;
    if (fast !== 0) {
      if (fast === MessageKind.PONG) this.onPong(pingSequence(frame));
      else if (this.onPing()) this.sendPingFrame(0, frame);
      return;
    }
    let msg: Message;
    try {
      // The layout of a message depends on the agreed minor (1.1 adds REQUEST fields); before
      // the HELLO exchange, 1.0's.
      const a = this.agreement;
      msg = decodeMessage(frame, a === undefined ? 0 : a.version & 0xff);
    } catch (err) {
      this.fail(
        err instanceof ProtocolError
          ? err
          : new ProtocolError(ErrorCode.MALFORMED, String(err), { cause: err }),
      );
      return;
    }
    if (
      !this.ready &&
      msg.kind !== MessageKind.HELLO &&
      msg.kind !== MessageKind.ERROR &&
      msg.kind !== MessageKind.GOAWAY
    ) {
      this.fail(
        new ProtocolError(ErrorCode.HELLO_REQUIRED, `${kindName(msg.kind)} before the HELLO exchange`),
      );
      return;
    }
    switch (msg.kind) {
      case MessageKind.PING:
        if (this.onPing()) this.trySend({ kind: MessageKind.PONG, data: msg.data });
        return;
      case MessageKind.PONG:
        this.onPong(pingSequence(frame));
        return;
      case MessageKind.NOTIFY:
        this.onNotify(msg);
        return;
      case MessageKind.ERROR:
        if (msg.id === 0) {
          this.onConnectionError(msg);
          return;
        }
        this.onMessage(msg);
        return;
      case MessageKind.GOAWAY:
        // "The receiver of GOAWAY … ignores a second GOAWAY" (PROTOCOL.md §9.1): the first one
        // drew the line between accepted and unread requests, and a later lastId must not move it
        // (a client would re-send requests the server accepted, and they would run twice).
        if (this.goawayReceived !== undefined) return;
        this.goawayReceived = msg;
        this.onMessage(msg);
        this.goneAway(msg);
        return;
      default:
        this.onMessage(msg);
    }
  }

  private onNotify(msg: NotifyMessage): void {
    const room = msg.room;
    // 1.2: a ROOM notice ($joined, $gap, $left) has no payload to decode.
    if (room !== undefined && msg.topic.charCodeAt(0) === 0x24) {
      this.roomNotice(msg.topic, room, msg.seq ?? 0);
      return;
    }
    let payload: unknown;
    try {
      payload = this.codec.decode(msg.payload);
    } catch (err) {
      this.fail(
        new ProtocolError(ErrorCode.BAD_PAYLOAD, `NOTIFY ${msg.topic}: undecodable payload`, { cause: err }),
      );
      return;
    }
    if (room !== undefined) this.roomNotified(msg.topic, payload, room, msg.seq ?? 0);
    else this.notified(msg.topic, payload);
  }

  /** A 1.2 room push (topic, payload, its room and seq). By default, a plain notify. */
  protected roomNotified(topic: string, payload: unknown, _room: string, _seq: number): void {
    this.notified(topic, payload);
  }

  /** A 1.2 room notice: `$joined`, `$gap` or `$left` with its room and seq. By default, ignored. */
  protected roomNotice(_topic: string, _room: string, _seq: number): void {}

  private onPong(seq: number): void {
    if (seq === this.hbSeq) {
      this.hbSeq = -1;
      this.recordRtt(now() - this.hbSentAt);
      return;
    }
    const pings = this.pings;
    if (pings === undefined) return;
    const i = pings.findIndex((p) => p.seq === seq);
    if (i < 0) return;
    const answered = pings.splice(0, i + 1);
    const p = answered.pop() as PingWaiter;
    // PONGs come in PING order: earlier PINGs passed over were not answered (a server may leave
    // PINGs past its rate limit unanswered). Their callers learn it now, with NaN.
    for (const skipped of answered) skipped.resolve(Number.NaN);
    const rtt = now() - p.sentAt;
    this.recordRtt(rtt);
    p.resolve(rtt);
  }

  private recordRtt(rtt: number): void {
    // Smoothed as TCP does (RFC 6298: SRTT = 7/8 SRTT + 1/8 R).
    this.srttMs = this.srttMs === undefined ? rtt : 0.875 * this.srttMs + 0.125 * rtt;
    if (channels.heartbeatRtt.hasSubscribers)
      channels.heartbeatRtt.publish({ connection: this.connection, rttMs: rtt });
    this.measured(rtt);
  }

  private onConnectionError(msg: ErrorMessage): void {
    this.remoteError = remoteErrorFromMessage(msg, this.codec);
    this.emit('remote-error', this.remoteError);
    this.onRemoteConnectionError(this.remoteError);
  }

  /** A connection-level ERROR from the peer (it will close next). Default: nothing more. */
  protected onRemoteConnectionError(_err: RemoteError): void {}

  /** HELLO, REQUEST, RESPONSE, ERROR (id ≠ 0), CANCEL, GOAWAY. */
  protected abstract onMessage(msg: Message): void;

  /** The connection closed: fail or hand over whatever is outstanding. */
  protected abstract onClose(info: CloseInfo): void;
}

function kindName(kind: number): string {
  for (const [name, k] of Object.entries(MessageKind)) if (k === kind) return name;
  return `KIND_${kind}`;
}

function codeForFraming(err: LonglinkError): string {
  if (err instanceof TruncatedFrameError) return ErrorCode.MALFORMED;
  return err.code === 'ERR_FRAME_TOO_LARGE' ? 'ERR_FRAME_TOO_LARGE' : ErrorCode.MALFORMED;
}

// Typed events, merged into the class's instance type (internal: the roles' owners hear directly).
export interface Peer {
  /** @internal */
  on<K extends keyof PeerEvents>(event: K, listener: (...args: PeerEvents[K]) => void): this;
  /** @internal */
  once<K extends keyof PeerEvents>(event: K, listener: (...args: PeerEvents[K]) => void): this;
  /** @internal */
  off<K extends keyof PeerEvents>(event: K, listener: (...args: PeerEvents[K]) => void): this;
  /** @internal */
  emit<K extends keyof PeerEvents>(event: K, ...args: PeerEvents[K]): boolean;
}

/** What {@link encodeFor} encoded: the chunks after its reservation, or the whole frame body. */
let encodedParts: Buffer[] = [];

/** Takes encodeFor's chunks (the module keeps no reference to them). */
function takeParts(): Buffer[] {
  const parts = encodedParts;
  encodedParts = NO_PARTS;
  return parts;
}
const NO_PARTS: Buffer[] = [];

/**
 * Encodes `msg` for `c`, with `prefix` bytes of room in front for the framing: in place into the
 * output slab when c's framing allows and the kind is one wire.ts writes in place — then returns
 * the target with its reservation made, and {@link takeParts} gives what follows it — else returns
 * undefined, and takeParts gives the whole frame body (the headroom included).
 *
 * The target is one object for the process. Code run while a message is encoded (a caller's
 * metadata is snapshotted when the request is made, so none should) could send on another
 * connection and aim it elsewhere: then this message is encoded again into buffers of its own,
 * never committed to that other connection.
 */
function encodeFor(c: Connection, msg: Message, prefix: number): FrameTarget | undefined {
  const t = prefix > 0 ? c.frameTarget() : undefined;
  if (t !== undefined) {
    const parts = encodeMessageInto(msg, prefix, t);
    if (t.c === c) {
      t.c = undefined; // the target holds no connection between sends
      encodedParts = parts;
      return t.n >= 0 ? t : undefined;
    }
    forgetReservation(c);
  }
  encodedParts = encodeMessage(msg, prefix);
  return undefined;
}

/** The body length of a frame: the reservation in `t` if any (its first `prefix` bytes are the prefix), then `rest`. */
function bodyLength(t: FrameTarget | undefined, rest: readonly Buffer[], prefix: number): number {
  let length = (t === undefined ? 0 : t.n) - prefix;
  // With a reservation open, `rest` (a caller's payload) is measured without running its code.
  if (t !== undefined) for (let i = 0; i < rest.length; i++) length += plainLength(rest[i]);
  else for (let i = 0; i < rest.length; i++) length += (rest[i] as Buffer).length;
  return length;
}
