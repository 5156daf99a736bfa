/**
 * Connection: one net.Socket (or tls.TLSSocket) plus one framing. It sends and receives frames
 * with backpressure, and closes in exactly the ways TCP allows — graceful, half-close, abortive
 * and lingering — without ever blocking the event loop, reporting one {@link CloseReason} for
 * every close and never leaving a socket in CLOSE_WAIT.
 *
 * The class owns the fields (one object per connection, nothing allocated per operation); its
 * parts are modules of functions over them, by job:
 *
 *   options.ts      what a connection can be told, checked once (connections share the result)
 *   state.ts        states and transitions, the fields (ConnectionCore), close-time state, events
 *   write-queue.ts  coalescing, flushing, backpressure, drain, slow consumers
 *   slab.ts         the process-wide output buffer small frames are encoded into
 *   liveness.ts     heartbeat, idle events and the frame deadline, on the shared timer wheel
 *   closing.ts      the close state machine: graceful, half-close, linger, FIN, errors, 'close'
 *   core.ts         what all of them end in: the close reason, the reset, the memory budget
 *   dial.ts         connecting, with a deadline and failures in words
 *
 * What remains here is the public class: its fields, its methods and their TSDoc (a third of the
 * file's ~750 lines), each method a few lines that call into the parts above.
 */

import { EventEmitter } from 'node:events';
import type net from 'node:net';
import { writesInPlace } from '../codec/length-prefixed.js';
import type { FrameDecoder, FrameEncoder, Framing } from '../codec/types.js';
import { FramingError, InvalidArgumentError, type LonglinkError, type OverloadError } from '../errors.js';
import {
  kernelUnacked,
  kernelUnread,
  kernelUnsent,
  nativeSocketOptions,
  setKeepAliveOptions,
  setUserTimeout,
  tcpInfo,
  tcpInfoStats,
} from '../sys/sockopt.js';
import { copyPlain, plainLength, plainView } from '../util/bytes.js';
import { checkPort, finiteAtLeast, timerLimit } from '../util/check.js';
import { deferListenerTable } from '../util/events.js';
import type { TimerWheel } from '../util/wheel.js';
import { type CloseInfo, CloseReason } from './close-reason.js';
import * as closing from './closing.js';
import { budgetChanged, notWritable, reset } from './core.js';
import { dial } from './dial.js';
import { activity, checkLiveness, pickWheel } from './liveness.js';
import {
  type CheckedOptions,
  type CloseOptions,
  type ConnectionOptions,
  type ConnectOptions,
  checkHeartbeatTiming,
  checkOptions,
  type Settings,
} from './options.js';
import { type FrameTarget, forgetReservation, frameTarget, SLAB_FRAME_MAX } from './slab.js';
import {
  BUDGETED,
  type ConnectionEvents,
  type ConnectionHandler,
  type ConnectionState,
  type ConnectionStats,
  FLUSH_SCHEDULED,
  HEARTBEAT_OUTSTANDING,
  type HeartbeatHook,
  HOLD_MASK,
  IDLE_ALL,
  IDLE_READER,
  type Lifecycle,
  lifecycle,
  NEED_DRAIN,
  RESET,
  ReadHold,
  S,
  STOPPED,
  wholeMs,
} from './state.js';
import { commitFrame, enqueue, flush, maybeDrain, queueChunk, queued } from './write-queue.js';

export type {
  CloseOptions,
  ConnectionOptions,
  ConnectOptions,
  HeartbeatOptions,
  IdleOptions,
} from './options.js';
export type {
  ConnectionEvents,
  ConnectionHandler,
  ConnectionStats,
  ConnectionWarning,
  HeartbeatHook,
  HeartbeatTarget,
  IdleKind,
} from './state.js';
export { ConnectionState, ReadHold } from './state.js';

const kOwner = Symbol('longlink.connection');
type OwnedSocket = net.Socket & { [kOwner]?: Connection };

/**
 * A partial frame of at least this many bytes is reported to the budget (a read chunk is 64 KiB at
 * most, so smaller ones come and go within a read or two).
 */
const SPLIT_BUDGET_BYTES = 64 * 1024;

let nextId = 1;

/**
 * A framed, long-lived TCP connection.
 *
 * @example
 * ```ts
 * import { Connection, lengthFieldFraming } from 'longlink';
 * const conn = await Connection.connect({ port: 9000, framing: lengthFieldFraming({ lengthFieldLength: 4 }) });
 * conn.on('frame', (f) => console.log(f.toString()));
 * await conn.write(Buffer.from('hello'));
 * const info = await conn.close(); // FIN, read to EOF, release
 * console.log(info.reason); // 'local-graceful'
 * ```
 */
export class Connection extends EventEmitter {
  // No `implements ConnectionCore, WheelEntry, BudgetMember`: their members are internal
  // (stripped from the published .d.ts); every module call with `this` checks them all the same.
  /** The id given in the options, or a process-unique number (made a string only when asked). */
  private readonly seq: string | number;
  readonly socket: net.Socket;
  readonly framing: Framing;

  /** @internal */ _state: ConnectionState = S.OPEN;
  /** @internal */ readonly decoder: FrameDecoder;
  /** @internal Validated options, shared by every connection made with the same values. */
  readonly settings: Settings;
  /** @internal */ readonly openedAt = wholeMs();
  /** @internal The one queued chunk (the usual case: no array); once a second comes, all are in outq. */
  out1: Buffer | undefined = undefined;
  /** @internal */ outq: Buffer[] | undefined = undefined;
  /** @internal */ outBytes = 0;
  /** @internal */ framesRead = 0;
  /** @internal */ framesWritten = 0;
  /** @internal Heartbeat, idle and frame checks run on a shared wheel (no timer per connection). */
  wheel: TimerWheel | undefined = undefined;
  /** @internal The wheel's bookkeeping (WheelEntry). */
  wheelTick = -1;
  /** @internal */ wheelIndex = -1;
  /** @internal Liveness bookkeeping: stamped once per read batch / flush; the wheel does the arithmetic. */
  lastReadAt: number;
  /** @internal */ lastWriteAt: number;
  /** @internal */ heartbeat: HeartbeatHook | undefined = undefined;
  /** @internal Idle events fired in the current idle period (IDLE_* bits); cleared by activity. */
  idleFired = 0;
  /** @internal ReadHold bits, STOPPED, RESET, BUDGETED, and the bits behind the booleans below. */
  flags = 0;
  /** @internal When the frame being received started (whole ms; -1: none), for frameTimeoutMs. */
  partialSince = -1;
  /** @internal */ handler: ConnectionHandler | undefined = undefined;
  /** @internal Close-time state, made on first use (see Lifecycle). */
  life: Lifecycle | undefined = undefined;

  /**
   * Wraps an already connected socket. The socket is switched to half-open mode so that the
   * peer's FIN is seen as an event and our side is closed by this class, not by Node.
   */
  constructor(socket: net.Socket, options: ConnectionOptions);
  /** @internal `checked`: options already checked by checkOptions (a server checks them once for every connection). */
  constructor(socket: net.Socket, options: ConnectionOptions, checked: CheckedOptions | undefined);
  constructor(socket: net.Socket, options: ConnectionOptions, checked?: CheckedOptions) {
    super();
    deferListenerTable(this);
    // Every option is checked before anything touches the socket or the wheel: a constructor
    // that throws leaves the caller's socket as it was, with no heartbeat running on it.
    const { settings, keepAlive, userTimeoutMs, heartbeat: hb } = checked ?? checkOptions(options);
    // socket.pending, not remoteAddress: asking for the address makes Node cache it on the socket
    // (an object and two strings per connection, ~110 bytes, for nothing).
    if (socket.destroyed || socket.pending) {
      throw new InvalidArgumentError('Connection needs a connected socket');
    }
    this.settings = settings;
    this.seq = options.id ?? nextId++;
    this.framing = options.framing;
    this.decoder = options.framing.createDecoder();
    this.socket = socket;
    this.lastReadAt = this.lastWriteAt = wholeMs();

    socket.allowHalfOpen = true;
    if (options.noDelay !== false) socket.setNoDelay(true);
    if (keepAlive !== undefined) setKeepAliveOptions(socket, keepAlive);
    if (userTimeoutMs !== undefined) setUserTimeout(socket, userTimeoutMs);

    (socket as OwnedSocket)[kOwner] = this;
    socket.on('data', Connection.onSocketData);
    socket.on('end', Connection.onSocketEnd);
    socket.on('finish', Connection.onSocketFinish);
    socket.on('error', Connection.onSocketError);
    socket.on('close', Connection.onSocketClose);
    socket.on('drain', Connection.onSocketDrain);

    if (settings.idle !== undefined || settings.frameTimeoutMs > 0) pickWheel(this);
    if (hb !== undefined) this.setHeartbeat(hb);
    else if (settings.idle !== undefined) checkLiveness(this);
  }

  /**
   * Opens a TCP (or TLS) connection and wraps it. Rejects with ConnectError (cause: the system
   * error), ConnectTimeoutError or AbortedError; the half-made socket is always destroyed.
   */
  static connect(options: ConnectOptions): Promise<Connection>;
  /** @internal `checked`: options already checked by checkOptions. */
  static connect(options: ConnectOptions, checked: CheckedOptions | undefined): Promise<Connection>;
  static async connect(options: ConnectOptions, checked?: CheckedOptions): Promise<Connection> {
    checkPort(options?.port);
    // Bad options fail before a socket is opened, not after the handshake.
    const timeoutMs = timerLimit(
      'connectTimeoutMs',
      finiteAtLeast('connectTimeoutMs', options.connectTimeoutMs, 10_000),
    );
    const opts = checked ?? checkOptions(options);
    const socket = await dial({
      host: options.host ?? '127.0.0.1',
      port: options.port,
      localAddress: options.localAddress,
      timeoutMs,
      signal: options.signal,
      tls: options.tls,
    });
    try {
      return new Connection(socket, options, opts);
    } catch (e) {
      socket.destroy();
      throw e;
    }
  }

  get state(): ConnectionState {
    return this._state;
  }

  /** @internal A flush is queued (a bit of `flags`, like the next two: no field of their own). */
  get flushScheduled(): boolean {
    return (this.flags & FLUSH_SCHEDULED) !== 0;
  }
  /** @internal */
  set flushScheduled(v: boolean) {
    this.flags = v ? this.flags | FLUSH_SCHEDULED : this.flags & ~FLUSH_SCHEDULED;
  }
  /** @internal Someone waits for 'drain'. */
  get needDrain(): boolean {
    return (this.flags & NEED_DRAIN) !== 0;
  }
  /** @internal */
  set needDrain(v: boolean) {
    this.flags = v ? this.flags | NEED_DRAIN : this.flags & ~NEED_DRAIN;
  }
  /** @internal A heartbeat was sent and nothing has been read since: at most one outstanding. */
  get heartbeatOutstanding(): boolean {
    return (this.flags & HEARTBEAT_OUTSTANDING) !== 0;
  }
  /** @internal */
  set heartbeatOutstanding(v: boolean) {
    this.flags = v ? this.flags | HEARTBEAT_OUTSTANDING : this.flags & ~HEARTBEAT_OUTSTANDING;
  }

  /** Resolves once, with the close info, when the socket is released. Never rejects. */
  get closed(): Promise<CloseInfo> {
    const life = lifecycle(this);
    if (life.promise === undefined) {
      const info = life.info;
      life.promise =
        info !== undefined
          ? Promise.resolve(info)
          : new Promise((resolve) => {
              life.resolve = resolve;
            });
    }
    return life.promise;
  }

  /** True while `send()` accepts frames. */
  get writable(): boolean {
    return (this._state === S.OPEN || this._state === S.READ_CLOSED) && (this.flags & RESET) === 0;
  }

  /** Bytes accepted by `send()` and not yet handed to the kernel. */
  get bufferedAmount(): number {
    return this.outBytes + this.socket.writableLength;
  }

  /** write() calls still waiting for 'drain' (a lease pool lends no connection that has one). */
  get writesWaiting(): number {
    return this.life?.writers?.length ?? 0;
  }

  /**
   * Bytes of a frame received only in part (held by the decoder). Non-zero means the stream is
   * mid-message: a pool must not hand such a connection to the next borrower as clean.
   */
  get pendingFrameBytes(): number {
    return this.decoder.bufferedBytes;
  }

  /** A label for logs and diagnostics: `options.id`, or a process-unique number. */
  get id(): string {
    const seq = this.seq;
    return typeof seq === 'string' ? seq : String(seq);
  }

  get remoteAddress(): string | undefined {
    return this.socket.remoteAddress;
  }

  get remotePort(): number | undefined {
    return this.socket.remotePort;
  }

  get localPort(): number | undefined {
    return this.socket.localPort;
  }

  /**
   * Queues one frame. Returns false once `bufferedAmount` reaches the high watermark: stop and
   * wait for `'drain'` (or use {@link write}). Frames queued in one tick leave in one write.
   * Throws ConnectionClosedError once the connection no longer takes sends,
   * FrameTooLargeError for a frame above the framing's limit, and InvalidArgumentError for a
   * frame that is not bytes; nothing is queued then. A frame of up to ~4 KiB is copied; a larger
   * one is written as it is: do not modify it until it has been written.
   */
  send(frame: Buffer): boolean {
    if (!this.writable) throw notWritable(this);
    // Measured once, through the intrinsic getters (red team N1, P1): no getter or Proxy of the
    // frame's own runs while the shared output slab is being written, and the length the header
    // says is the length of the bytes that follow.
    const length = plainLength(frame);
    if (length < 0) throw notBytes(frame);
    const enc = this.framing.encoder;
    // A small frame is copied into the output slab behind its prefix (slab.ts): one copy, no
    // header Buffer. A larger one is queued as it is (do not modify it until it is written).
    if (writesInPlace(enc) && length + enc.prefixLength <= SLAB_FRAME_MAX) {
      const n = enc.prefixLength;
      const t = frameTarget(this);
      const at = t.reserve(n + length);
      t.c = undefined; // the target holds no connection between sends
      try {
        enc.writePrefixAt(t.buf, at, length);
      } catch (err) {
        forgetReservation(this);
        throw err;
      }
      copyPlain(t.buf, frame, at + n);
      return commitFrame(this, t, undefined);
    }
    // A view of longlink's own over the same bytes: the queue measures and copies it as measured here.
    return enqueue(this, enc.encode(plainView(frame) as Buffer));
  }

  /**
   * Queues one frame whose payload is the concatenation of `parts`, without copying them (a
   * protocol header and a large body, say). Same contract as {@link send}.
   */
  sendParts(parts: readonly Buffer[]): boolean {
    if (!this.writable) throw notWritable(this);
    const views: Buffer[] = [];
    for (const p of parts) {
      const v = plainView(p);
      if (v === undefined) throw notBytes(p);
      views.push(v);
    }
    if (views.length === 1) return enqueue(this, this.framing.encoder.encode(views[0] as Buffer));
    return enqueue(this, this.framing.encoder.encodeParts(views));
  }

  /** @internal {@link sendParts} for parts longlink made itself (wire.ts's chunks): taken as they are. */
  sendOwnParts(parts: readonly Buffer[]): boolean {
    if (!this.writable) throw notWritable(this);
    if (parts.length === 1) return enqueue(this, this.framing.encoder.encode(parts[0] as Buffer));
    return enqueue(this, this.framing.encoder.encodeParts(parts));
  }

  /**
   * @internal
   * The framing's fixed prefix width, when it has one (u32be: 4). A layer above can then build
   * each message with that many bytes reserved in front and send it with {@link sendPrefixed}:
   * one buffer per small message instead of a payload plus a separate header.
   */
  get prefixLength(): number | undefined {
    return this.framing.encoder.prefixLength;
  }

  /**
   * @internal
   * Queues one frame built in place: `parts[0]` starts with {@link prefixLength} reserved bytes,
   * filled here with the framing's header for the rest of `parts`. Same contract as
   * {@link send}; throws InvalidArgumentError when the framing has no fixed prefix.
   */
  sendPrefixed(parts: Buffer[]): boolean {
    if (!this.writable) throw notWritable(this);
    const enc = this.framing.encoder;
    const n = enc.prefixLength;
    if (n === undefined || enc.writePrefix === undefined || parts.length === 0) {
      throw new InvalidArgumentError(`framing ${this.framing.name} has no fixed prefix to write in place`);
    }
    let length = -n;
    for (const p of parts) length += p.length;
    enc.writePrefix(parts[0] as Buffer, length);
    return enqueue(this, parts);
  }

  /**
   * @internal
   * The process's output slab aimed at this connection (slab.ts), when its framing writes a fixed
   * prefix in place; else undefined. A layer above encodes a message into it with the prefix's
   * room in front, then queues it with {@link commitFrame}. Check {@link writable} first.
   */
  frameTarget(): FrameTarget | undefined {
    return writesInPlace(this.framing.encoder) ? frameTarget(this) : undefined;
  }

  /**
   * @internal
   * Queues the frame reserved in `t` (its first {@link prefixLength} bytes left for the prefix,
   * filled here for a body of `bodyLength` bytes), followed by `rest`. Same contract as
   * {@link send}: FrameTooLargeError above the framing's limit, and then nothing is queued.
   */
  commitFrame(t: FrameTarget, bodyLength: number, rest: readonly Buffer[] | undefined): boolean {
    // frameTarget() handed `t` out only for an encoder that writes in place.
    const enc = this.framing.encoder as FrameEncoder & Required<Pick<FrameEncoder, 'writePrefixAt'>>;
    try {
      enc.writePrefixAt(t.buf, t.at, bodyLength);
    } catch (err) {
      forgetReservation(this);
      throw err;
    }
    return commitFrame(this, t, rest);
  }

  /**
   * @internal
   * {@link sendPrefixed} for a frame that is one buffer: `frame` starts with
   * {@link prefixLength} bytes of room, filled in place. No array, one queued chunk: what the
   * heartbeat's PING and PONG use.
   */
  sendPrefixedOne(frame: Buffer): boolean {
    if (!this.writable) throw notWritable(this);
    const enc = this.framing.encoder;
    const n = enc.prefixLength;
    if (n === undefined || enc.writePrefix === undefined) {
      throw new InvalidArgumentError(`framing ${this.framing.name} has no fixed prefix to write in place`);
    }
    enc.writePrefix(frame, frame.length - n);
    queueChunk(this, frame);
    return queued(this);
  }

  /**
   * @internal
   * Hands frames to `handler.handleFrame` instead of emitting `'frame'` events, and calls its
   * `handleProtocolError` and `handleClose` before those events: a protocol layer's hooks, cheaper than an
   * emit per frame and than listener tables on every connection. Undefined goes back to events.
   */
  setHandler(handler: ConnectionHandler | undefined): void {
    this.handler = handler;
  }

  /** @internal Runs the queued flush now. */
  flushNow(): void {
    if (this.flushScheduled) flush(this);
  }

  /**
   * Queues one frame and resolves when the queue is below the high watermark again — the
   * awaitable form of {@link send}. Rejects with ConnectionClosedError if the connection closes
   * first (the frame may or may not have been delivered then; see the close info).
   */
  write(frame: Buffer): Promise<void> {
    let ok: boolean;
    try {
      ok = this.send(frame);
    } catch (err) {
      return Promise.reject(err);
    }
    if (ok) return Promise.resolve();
    const life = lifecycle(this);
    life.writers ??= [];
    const writers = life.writers;
    return new Promise((resolve, reject) => {
      writers.push({ resolve, reject });
    });
  }

  /** Stops reading from the socket (receive-side backpressure): the peer's sends fill our window. */
  pause(): void {
    this.hold(ReadHold.USER);
  }

  /** Resumes reading (unless the connection itself holds it paused: backpressure, a busy handler). */
  resume(): void {
    this.release(ReadHold.USER);
  }

  /**
   * @internal Pauses reading for `why` (a {@link ReadHold} bit); reading resumes when every hold
   * is released. Time paused does not count against frameTimeoutMs, and while paused for
   * backpressure a silent peer is judged by whether it takes our bytes (see liveness.ts).
   */
  hold(why: number): void {
    const before = this.flags & HOLD_MASK;
    this.flags |= why;
    if (before !== 0 || this._state === S.CLOSED) return;
    this.socket.pause();
    if (why === ReadHold.BACKPRESSURE) {
      const life = lifecycle(this);
      life.takenAt = wholeMs();
      life.acked = tcpInfo(this.socket)?.bytesAcked;
    }
  }

  /** @internal Releases a hold taken with {@link hold}. */
  release(why: number): void {
    if ((this.flags & why) === 0) return;
    this.flags &= ~why;
    if ((this.flags & HOLD_MASK) !== 0 || (this.flags & STOPPED) !== 0 || this._state === S.CLOSED) return;
    // The frame in progress could not advance while we were not reading: its clock starts again.
    if (this.partialSince >= 0) this.partialSince = wholeMs();
    this.socket.resume();
    if (this.wheel !== undefined) checkLiveness(this);
  }

  /** @internal Whether reading is held paused for `why`. */
  isHeld(why: number): boolean {
    return (this.flags & why) !== 0;
  }

  /**
   * Sets the largest frame accepted from now on, up to the framing's `maxFrameLength`: a protocol
   * holds an unauthenticated peer to a few KiB, then raises it to the agreed limit.
   */
  limitFrames(maxFrameLength: number): void {
    this.decoder.limit(maxFrameLength);
  }

  /** @internal BudgetMember: bytes this connection holds for its peer. */
  heldBytes(): number {
    return this.decoder.bufferedBytes + this.bufferedAmount + (this.handler?.heldBytes?.() ?? 0);
  }

  /** @internal BudgetMember: the budget needs the memory back. */
  shed(error: OverloadError): void {
    this.flags &= ~BUDGETED;
    reset(this, CloseReason.OVERLOAD, 'local', error);
  }

  /** @internal What this connection holds changed (the layer above calls it for its own holdings). */
  budgetChanged(): void {
    budgetChanged(this);
  }

  /**
   * Closes gracefully: no more sends, queued frames flushed, FIN, keep reading (and emitting
   * frames) until the peer's EOF, then release. Aborts with reason `close-timeout` if that takes
   * longer than the deadline. Idempotent: later calls return the same promise. (The state machine
   * is drawn in closing.ts.)
   */
  close(options: CloseOptions = {}): Promise<CloseInfo> {
    const timeoutMs = finiteAtLeast('timeoutMs', options.timeoutMs, this.settings.closeTimeoutMs);
    closing.close(this, options, timeoutMs);
    return this.closed;
  }

  /**
   * Shuts down the send direction only (FIN; the sources' shutdown(SD_SEND)) and keeps
   * receiving. The connection is released when the peer's EOF arrives. Sends throw afterwards.
   */
  halfClose(): void {
    closing.halfClose(this);
  }

  /**
   * Aborts at once: RST, every queued byte discarded and counted in the close info's
   * `unsentBytes`, the peer sees ECONNRESET, no TIME_WAIT here (the sources' linger {1,0}).
   * Safe at any point, including right after `close()` in the same tick.
   */
  abort(error?: LonglinkError, reason: CloseReason = CloseReason.LOCAL_ABORT): void {
    reset(this, reason, 'local', error);
  }

  /**
   * Closes and waits up to `timeoutMs` for the peer to acknowledge every byte sent (FIN
   * included); then releases with reason `local-graceful`. If the deadline passes first, resets
   * the connection and reports the bytes lost (reason `linger-expired`). Never blocks the event
   * loop (closing.ts says how). Where the kernel's figure cannot be read (no native helper), it
   * falls back to a graceful close with that deadline.
   */
  linger(timeoutMs: number): Promise<CloseInfo> {
    const ms = finiteAtLeast('timeoutMs', timeoutMs, 0);
    if (this._state === S.CLOSED || this._state === S.LINGERING) return this.closed;
    if (!nativeSocketOptions().available) return this.close({ timeoutMs: ms });
    closing.linger(this, ms);
    return this.closed;
  }

  /**
   * @internal
   * Installs (or with undefined removes) a heartbeat: `ping()` is called when nothing was read
   * for `intervalMs`; the connection aborts with reason `heartbeat-timeout` when nothing was read
   * for `timeoutMs` (liveness.ts has the rules and the detection bound). Protocol layers use this
   * with their own PING message.
   */
  setHeartbeat(hook: HeartbeatHook | undefined): void {
    if (hook !== undefined) checkHeartbeatTiming(hook);
    this.heartbeat = hook;
    this.heartbeatOutstanding = false;
    pickWheel(this);
    checkLiveness(this);
  }

  /**
   * @internal
   * Sends a heartbeat now if nothing has been read for `ms` and none is outstanding: a cheap check
   * before reusing a connection that sat idle (a dead peer is then found within the timeout).
   */
  pingIfIdle(ms: number): void {
    const hb = this.heartbeat;
    if (hb === undefined || this.heartbeatOutstanding || this._state !== S.OPEN) return;
    if (wholeMs() - this.lastReadAt >= ms) {
      this.heartbeatOutstanding = true;
      hb.ping(this);
    }
  }

  /** Counters and, where readable, the kernel's view of the socket. Cheap: a few syscalls. */
  stats(): ConnectionStats {
    const unacked = kernelUnacked(this.socket);
    const unsent = kernelUnsent(this.socket);
    const unread = kernelUnread(this.socket);
    return {
      id: this.id,
      state: this._state,
      bytesRead: this.socket.bytesRead,
      bytesWritten: this.socket.bytesWritten,
      framesRead: this.framesRead,
      framesWritten: this.framesWritten,
      bufferedAmount: this.bufferedAmount,
      kernel:
        unacked === undefined || unsent === undefined || unread === undefined
          ? undefined
          : { unacked, unsent, unread },
      tcpInfo: tcpInfoStats(this.socket),
    };
  }

  /** @internal The wheel's callback (WheelEntry). */
  onWheel(): void {
    checkLiveness(this);
  }

  /** @internal `idle.close`: an idle threshold passed. */
  closeIdle(): void {
    void this.close({ reason: CloseReason.IDLE_TIMEOUT });
  }

  // -------------------------------------------------------------------------------------------
  // Reading

  private onData(chunk: Buffer): void {
    if (this._state === S.CLOSED) return;
    this.lastReadAt = wholeMs();
    if (this.heartbeatOutstanding) {
      // The answer (or any byte) came: schedule the next heartbeat from this read.
      this.heartbeatOutstanding = false;
      checkLiveness(this);
    }
    if (this.idleFired !== 0) activity(this, IDLE_READER | IDLE_ALL);
    let frames: Buffer[];
    const decoder = this.decoder;
    try {
      frames = decoder.push(chunk);
    } catch (err) {
      closing.closeOnProtocolError(this, asFramingError(err));
      return;
    }
    const partial = decoder.bufferedBytes;
    if (partial === 0) this.partialSince = -1;
    else {
      // A frame is incomplete. It is a new one if this read completed another, or none was pending.
      if (this.settings.frameTimeoutMs > 0 && (this.partialSince < 0 || frames.length > 0)) {
        const first = this.partialSince < 0;
        this.partialSince = this.lastReadAt;
        if (first) checkLiveness(this);
      }
      if (this.settings.budget !== undefined && partial >= SPLIT_BUDGET_BYTES) budgetChanged(this);
    }
    if ((this.flags & BUDGETED) !== 0 && partial < SPLIT_BUDGET_BYTES) budgetChanged(this);
    const handler = this.handler;
    for (const f of frames) {
      this.framesRead++;
      if (handler !== undefined) handler.handleFrame(f);
      else this.emit('frame', f);
      // A listener may have aborted the connection: deliver nothing after the close.
      if ((this._state as ConnectionState) === S.CLOSED) return;
    }
  }

  private onEnd(): void {
    if (this._state === S.CLOSED) return;
    lifecycle(this).remoteEnded = true;
    try {
      this.decoder.end();
    } catch (err) {
      // Node turns an RST that lands on unread data into a clean 'end': a partial frame here
      // is the only evidence that the stream was cut (see docs/errors.md, ERR_FRAME_TRUNCATED).
      closing.closeOnProtocolError(this, asFramingError(err));
      return;
    }
    // libuv reads an RST that lands after unread bytes as those bytes, then EOF (a POLLHUP after a
    // partial read, with no read left to return ECONNRESET): common on a loaded machine, where the
    // peer's last frame and its RST arrive before we read. A FIN leaves an open socket in
    // CLOSE_WAIT; only a reset (or a failure) takes it to CLOSE: then it is the reset it was.
    if (this._state === S.OPEN && tcpInfo(this.socket)?.state === 'CLOSE') {
      const err: NodeJS.ErrnoException = new Error('read ECONNRESET (reported by Node as an end)');
      err.code = 'ECONNRESET';
      closing.onError(this, err);
      this.socket.destroy();
      return;
    }
    this.emit('end');
    // No CLOSE_WAIT leak: the peer's FIN is answered with ours as soon as our queue is flushed.
    closing.onEnd(this);
  }

  // Socket listeners live at module scope (one function for every connection, not a closure
  // each) and reach their connection through the socket (ws lib/websocket.js socketOnData).
  private static onSocketData(this: OwnedSocket, chunk: Buffer): void {
    this[kOwner]?.onData(chunk);
  }
  private static onSocketEnd(this: OwnedSocket): void {
    this[kOwner]?.onEnd();
  }
  private static onSocketFinish(this: OwnedSocket): void {
    const c = this[kOwner];
    if (c !== undefined) closing.onFinish(c);
  }
  private static onSocketError(this: OwnedSocket, err: NodeJS.ErrnoException): void {
    const c = this[kOwner];
    if (c !== undefined) closing.onError(c, err);
  }
  private static onSocketClose(this: OwnedSocket): void {
    const c = this[kOwner];
    if (c !== undefined) closing.onSocketClose(c);
  }
  private static onSocketDrain(this: OwnedSocket): void {
    const c = this[kOwner];
    if (c !== undefined) maybeDrain(c);
  }
}

function notBytes(frame: unknown): InvalidArgumentError {
  return new InvalidArgumentError(
    `a frame is a Buffer or Uint8Array, got ${frame === null ? 'null' : typeof frame === 'object' ? 'another object' : typeof frame}`,
  );
}

function asFramingError(err: unknown): FramingError {
  return err instanceof FramingError
    ? err
    : new FramingError('ERR_BAD_FRAME_HEADER', `decoder failed: ${(err as Error)?.message}`, { cause: err });
}

// Typed events: merged into the class's instance type.
export interface Connection {
  on<K extends keyof ConnectionEvents>(event: K, listener: (...args: ConnectionEvents[K]) => void): this;
  once<K extends keyof ConnectionEvents>(event: K, listener: (...args: ConnectionEvents[K]) => void): this;
  off<K extends keyof ConnectionEvents>(event: K, listener: (...args: ConnectionEvents[K]) => void): this;
  emit<K extends keyof ConnectionEvents>(event: K, ...args: ConnectionEvents[K]): boolean;
}
