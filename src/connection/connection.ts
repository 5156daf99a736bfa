/**
 * Connection: one net.Socket (or tls.TLSSocket) plus one framing. It sends and receives frames
 * with backpressure, and closes in exactly the ways TCP allows — graceful, half-close, abortive
 * and lingering — without ever blocking the event loop, reporting one {@link CloseReason} for
 * every close and never leaving a socket in CLOSE_WAIT.
 */

import diagnostics from 'node:diagnostics_channel';
import { EventEmitter } from 'node:events';
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import tls from 'node:tls';
import { checkInteger } from '../codec/options.js';
import type { FrameDecoder, Framing } from '../codec/types.js';
import {
  AbortedError,
  CloseTimeoutError,
  ConnectError,
  ConnectionClosedError,
  ConnectionResetError,
  ConnectTimeoutError,
  FrameTimeoutError,
  FramingError,
  HeartbeatTimeoutError,
  InvalidArgumentError,
  LingerExpiredError,
  type LonglinkError,
  type OverloadError,
  SlowConsumerError,
  SocketError,
} from '../errors.js';
import {
  type KeepAliveOptions,
  kernelUnacked,
  kernelUnread,
  kernelUnsent,
  nativeSocketOptions,
  setKeepAliveOptions,
  setLinger,
  setUserTimeout,
  type TcpInfoStats,
  tcpInfo,
  tcpInfoStats,
} from '../sys/sockopt.js';
import { durationOrInfinity, finiteAtLeast, finitePositive } from '../util/check.js';
import { deferListenerTable } from '../util/events.js';
import { type TimerWheel, wheelFor } from '../util/wheel.js';
import type { MemoryBudget } from './budget.js';
import { type CloseInfo, CloseReason } from './close-reason.js';

/** A connection's lifecycle states (the allowed transitions are a table in connection.ts). */
export const ConnectionState = {
  /** Reading and writing. */
  OPEN: 'open',
  /** halfClose(): our FIN is queued or sent; still reading until the peer's EOF. */
  WRITE_CLOSED: 'write-closed',
  /** The peer sent FIN and the user chose to keep the half-open connection; still writable. */
  READ_CLOSED: 'read-closed',
  /** A graceful close is under way: flushing, FIN, waiting for the peer's EOF (with a deadline). */
  CLOSING: 'closing',
  /** linger(): waiting for the peer to acknowledge every byte, RST at the deadline. */
  LINGERING: 'lingering',
  /** The socket is released. */
  CLOSED: 'closed',
} as const;
export type ConnectionState = (typeof ConnectionState)[keyof typeof ConnectionState];

const S = ConnectionState;
const TRANSITIONS: Readonly<Record<ConnectionState, readonly ConnectionState[]>> = {
  [S.OPEN]: [S.WRITE_CLOSED, S.READ_CLOSED, S.CLOSING, S.LINGERING, S.CLOSED],
  [S.WRITE_CLOSED]: [S.CLOSING, S.LINGERING, S.CLOSED],
  [S.READ_CLOSED]: [S.CLOSING, S.LINGERING, S.CLOSED],
  [S.CLOSING]: [S.LINGERING, S.CLOSED],
  [S.LINGERING]: [S.CLOSED],
  [S.CLOSED]: [],
};

/** A warning about a connection that is not an error (yet). */
export interface ConnectionWarning {
  code: 'HALF_OPEN_LINGERING';
  message: string;
  /** How long the condition has lasted. */
  sinceMs: number;
}

/** Options of a {@link Connection}. Defaults are in docs/options.md. */
export interface ConnectionOptions {
  /** How frames are delimited on the wire (see parseFraming / the codec factories). */
  framing: Framing;
  /** `send()` returns false once this many bytes are queued. Default 64 KiB. */
  highWaterMark?: number;
  /** `'drain'` fires once the queue falls to this many bytes. Default 32 KiB. */
  lowWaterMark?: number;
  /** Deadline for `close()` before it aborts. Default 30 000 ms. */
  closeTimeoutMs?: number;
  /**
   * After the peer's FIN: how long our queued sends may take to flush before we abort instead.
   * Bounds the time a socket can sit in CLOSE_WAIT. Default 5 000 ms.
   */
  remoteEndTimeoutMs?: number;
  /**
   * Keep the connection writable after the peer's FIN (TCP half-open), until `close()`.
   * Default false: our side closes as soon as queued sends are flushed.
   */
  allowHalfOpen?: boolean;
  /** With `allowHalfOpen`, emit a `'warning'` every this many ms the connection stays half-open. Default 30 000. */
  halfOpenWarnMs?: number;
  /**
   * Frames sent in one tick are coalesced into one write, up to this many bytes; past it they are
   * written at once. Default 16 KiB (see EARLY_FLUSH_BYTES in connection.ts for why not unbounded).
   */
  coalesceBytes?: number;
  /** TCP_NODELAY. Default true: frames leave at once; coalescing is done per tick in user space. */
  noDelay?: boolean;
  /**
   * TCP keepalive (idle/interval/count), or false. Default idle 60 s, interval 10 s, 6 probes; a
   * field not given keeps its default. Idle and interval 1 ms … 32 767 s (rounded up to seconds),
   * count 1 … 127.
   */
  keepAlive?: Partial<KeepAliveOptions> | false;
  /** TCP_USER_TIMEOUT in ms (Linux): drop the connection when sent data stays unacknowledged this long. */
  userTimeoutMs?: number;
  /** A label for logs and diagnostics. Default a process-unique number. */
  id?: string;
  /**
   * Heartbeat for plain framings: when nothing has been read for `intervalMs`, send `frame` (your
   * protocol's heartbeat message, if it has one); when nothing has been read for `timeoutMs`,
   * declare the peer dead and abort (reason `heartbeat-timeout`). Any byte read is liveness. The
   * longlink protocol installs its own PING-based heartbeat instead (see setHeartbeat).
   */
  heartbeat?: (HeartbeatOptions & { frame?: Buffer }) | false;
  /** Idle detection (Netty's IdleStateHandler): 'idle' events, and optionally a close. */
  idle?: IdleOptions;
  /** Time source in ms (default performance.now); injectable so tests of long timers run fast. */
  clock?: () => number;
  /**
   * Once a frame's first byte has arrived, the rest must arrive within this many ms, or the
   * connection is reset with reason `frame-timeout` (a slow sender holding a buffer open). Time
   * while reading is paused does not count. 0 (the default) disables it; a server sets 30 s.
   */
  frameTimeoutMs?: number;
  /**
   * Hard cap on `bufferedAmount`: a send that takes the queue past it resets the connection with
   * reason `slow-consumer` and discards the queue. Infinity (the default) disables it.
   */
  maxQueuedBytes?: number;
  /**
   * Counts this connection's buffered bytes against a shared {@link MemoryBudget} once they pass
   * its threshold; a connection shed by the budget is reset with reason `overload`.
   */
  budget?: MemoryBudget;
}

/** Heartbeat timing. The peer is declared dead `timeoutMs` after the last byte read from it. */
export interface HeartbeatOptions {
  /** Send a heartbeat when nothing has been read for this long. */
  intervalMs: number;
  /** Declare the peer dead when nothing has been read for this long (> intervalMs). */
  timeoutMs: number;
}

/** Idle thresholds; each fires an `'idle'` event once per idle period. */
export interface IdleOptions {
  /** Nothing read for this long. */
  readerMs?: number;
  /** Nothing written for this long. */
  writerMs?: number;
  /** Nothing read or written for this long. */
  allMs?: number;
  /** Close the connection (gracefully, reason `idle-timeout`) on the first idle event. Default false. */
  close?: boolean;
}

/** Which idle threshold passed. */
export type IdleKind = 'reader' | 'writer' | 'all';

/** A heartbeat installed by a protocol layer: `ping` sends its PING. */
export interface HeartbeatHook extends HeartbeatOptions {
  ping(): void;
}

/** Options of {@link Connection.connect}. */
export interface ConnectOptions extends ConnectionOptions {
  host?: string;
  port: number;
  /** Source address to bind before connecting. */
  localAddress?: string;
  /** Connect deadline. Default 10 000 ms. */
  connectTimeoutMs?: number;
  signal?: AbortSignal;
  /** Connect with TLS using these options (servername, ca, …). */
  tls?: tls.ConnectionOptions;
}

/** Options of {@link Connection.close}. */
export interface CloseOptions {
  /** Overrides `closeTimeoutMs` for this close. */
  timeoutMs?: number;
  /**
   * The reason to report when this close completes, for layers above that know better than
   * `local-graceful` (a protocol layer closing after a GOAWAY, a heartbeat timeout …).
   */
  reason?: CloseReason;
  /** The error behind that reason, if any. */
  error?: LonglinkError;
  /** Who started it, reported with `reason`. Default 'local'. */
  initiator?: 'local' | 'remote';
}

/** A snapshot of a connection's counters and, where readable, its kernel socket state. */
export interface ConnectionStats {
  id: string;
  state: ConnectionState;
  bytesRead: number;
  bytesWritten: number;
  framesRead: number;
  framesWritten: number;
  /** Bytes accepted by send() not yet handed to the kernel. */
  bufferedAmount: number;
  /** Kernel queues (Linux, native helper): unacked and unsent send-queue bytes, unread receive bytes. */
  kernel: { unacked: number; unsent: number; unread: number } | undefined;
  /** TCP_INFO (Linux), its byte counters as numbers: the snapshot is JSON-safe. */
  tcpInfo: TcpInfoStats | undefined;
}

/** The events a Connection emits, with their arguments. */
export interface ConnectionEvents {
  /** A complete frame arrived (a view into the read buffer when it came in one chunk). */
  frame: [frame: Buffer];
  /** The send queue fell to the low watermark after `send()` returned false. */
  drain: [];
  /** The peer finished sending (FIN). Frames it sent before have all been emitted. */
  end: [];
  /**
   * The peer sent an invalid frame (or ended inside one). Emitted before the connection closes,
   * while `send()` still works, so a protocol layer can send a last error frame.
   */
  'protocol-error': [error: FramingError];
  warning: [warning: ConnectionWarning];
  /** An idle threshold passed (once per idle period). */
  idle: [kind: IdleKind];
  /** A heartbeat was sent because nothing was read for the interval. */
  heartbeat: [];
  state: [from: ConnectionState, to: ConnectionState];
  /** Exactly once, when the socket is released. */
  close: [info: CloseInfo];
}

const stateChannel = diagnostics.channel('longlink:connection:state');
const closeChannel = diagnostics.channel('longlink:connection:close');

const kOwner = Symbol('longlink.connection');
type OwnedSocket = net.Socket & { [kOwner]?: Connection };

/** Reasons of an orderly close, which a later error (a reset, a timeout) may still replace. */
const GRACEFUL_REASONS: ReadonlySet<CloseReason> = new Set([
  CloseReason.LOCAL_GRACEFUL,
  CloseReason.REMOTE_FIN,
  CloseReason.GOING_AWAY,
  CloseReason.IDLE_TIMEOUT,
]);
/**
 * Coalescing stops at this many queued bytes: they are written at once, and the rest of the tick's
 * sends go out in later writes. With one flush per tick, two peers exchanging windows of small
 * messages fall into lockstep — each sends its whole window in one write, then idles while the
 * other processes it (seen with 256 requests in flight: every read and write exactly one
 * 28 KB window, both processes half idle). Writing the first part of a window early lets the
 * peer work on it while we produce the rest, and the two sides overlap.
 */
const EARLY_FLUSH_BYTES = 16 * 1024;

/**
 * The default clock: one function for every connection, not a closure each. Whole milliseconds:
 * V8 keeps an integer field in the object itself, while a fractional one is a separate 16-byte
 * number; liveness needs no finer grain.
 */
function defaultNow(): number {
  return Math.floor(performance.now());
}

/*
 * One flush queue for the process: connections with frames queued this tick, flushed together by
 * one microtask. A queueMicrotask per connection costs an AsyncResource scope each, and a bound
 * flush closure per connection costs memory on idle connections.
 */
/*
 * A reaction on a resolved promise, not queueMicrotask: Node's queueMicrotask wraps every callback
 * in an AsyncResource and a bound function, which a server pays once per read (it flushes after
 * each). Same queue, same timing.
 */
const resolved = Promise.resolve();
const flushQueue: Array<Connection | undefined> = [];
let flushCount = 0;
function flushAll(): void {
  // The same array every time (a new one per flush was an allocation per heartbeat on a server,
  // which flushes once per read). A flush that queues another connection appends to it.
  for (let i = 0; i < flushCount; i++) {
    const c = flushQueue[i] as Connection;
    flushQueue[i] = undefined;
    c.flushNow();
  }
  flushCount = 0;
}

/** What a layer above (the protocol) hooks into, instead of event listeners on every connection. */
export interface ConnectionHandler {
  /** Each frame, instead of a `'frame'` event. */
  handleFrame(frame: Buffer): void;
  /** Before the `'protocol-error'` event. */
  handleProtocolError?(error: FramingError): void;
  /** Before the `'close'` event. */
  handleClose?(info: CloseInfo): void;
  /** The send queue fell to the low watermark after a send returned false (before `'drain'`). */
  handleDrain?(): void;
  /** Bytes the layer above holds for this peer (requests being handled), counted by the budget. */
  heldBytes?(): number;
}

/** Why reading is paused; reading resumes once no reason is left. */
export const ReadHold = {
  /** pause() by the user. */
  USER: 1,
  /** Our queue to the peer is over its high watermark: stop taking work until it drains. */
  BACKPRESSURE: 2,
  /** The layer above has as much of the peer's work as it takes (in-flight limits). */
  BUSY: 4,
} as const;
/** Reading stopped for good (the stream position is lost after a framing error). */
const STOPPED = 8;
/** reset() ran: the socket is being destroyed; nothing more is taken. */
const RESET = 16;
/** Counted by the budget (holds at least its threshold). */
const BUDGETED = 32;
const HOLD_MASK = ReadHold.USER | ReadHold.BACKPRESSURE | ReadHold.BUSY;

/** Chunks below this size are copied together on flush; larger ones are written uncopied. */
const COPY_MAX = 4096;

/** Copies q[from, to) into one buffer of `bytes` bytes (or returns the single chunk). */
function coalesce(q: readonly Buffer[], from: number, to: number, bytes: number): Buffer {
  if (to - from === 1) return q[from] as Buffer;
  const out = Buffer.allocUnsafe(bytes);
  let off = 0;
  for (let i = from; i < to; i++) {
    const c = q[i] as Buffer;
    c.copy(out, off);
    off += c.length;
  }
  return out;
}

/**
 * A partial frame of at least this many bytes is reported to the budget (a read chunk is 64 KiB at
 * most, so smaller ones come and go within a read or two).
 */
const SPLIT_BUDGET_BYTES = 64 * 1024;

/**
 * Says why a connect failed in words: a TLS handshake that met something else than TLS is told
 * apart from a refused port, because the fix is different (the other side is not a TLS port).
 */
function connectFailure(host: string, port: number, tlsOn: boolean, err: NodeJS.ErrnoException): string {
  const what = err.code ?? err.message;
  // errno-style codes (ECONNREFUSED, ETIMEDOUT, ENOTFOUND …) are the TCP connect's; with TLS on,
  // anything else happened in the handshake.
  if (!tlsOn || (/^E[A-Z]+$/.test(what) && what !== 'ECONNRESET' && what !== 'EPROTO')) {
    return `connect to ${host}:${port} failed: ${what}`;
  }
  const text = `${err.code} ${err.message}`;
  let hint = '';
  if (
    /WRONG_VERSION_NUMBER|wrong version number|packet length too long|record layer failure|EPROTO/i.test(text)
  ) {
    hint = ': the server does not speak TLS on this port';
  } else if (/CERT|SELF_SIGNED|VERIFY|ALTNAME/.test(what)) {
    hint =
      ": the server's certificate is not trusted for this name (pass its CA as tls.ca, or tls.servername)";
  } else if (what === 'ECONNRESET') {
    hint = ': the server reset the connection (it may not speak TLS, or refused our certificate)';
  }
  return `TLS handshake with ${host}:${port} failed (${what})${hint}`;
}

/** How often linger() asks the kernel for its unacknowledged byte count. */
const LINGER_POLL_MS = 10;

let nextId = 1;

interface PendingClose {
  reason: CloseReason;
  initiator: 'local' | 'remote';
  error: LonglinkError | undefined;
  /** Bytes discarded, measured just before the reset; undefined → measure at release. */
  unsentBytes?: number;
  unsentKnown?: boolean;
}

type TimerKind = 'close-deadline' | 'linger-poll' | 'half-open-warn';

const IDLE_READER = 1;
const IDLE_WRITER = 2;
const IDLE_ALL = 4;

/** Heartbeat timing: 0 < intervalMs < timeoutMs, both finite. */
function checkHeartbeatTiming(h: HeartbeatOptions): void {
  finiteAtLeast('heartbeat.intervalMs', h.intervalMs, 0);
  finiteAtLeast('heartbeat.timeoutMs', h.timeoutMs, 0);
  if (!(h.intervalMs > 0) || !(h.timeoutMs > h.intervalMs)) {
    throw new InvalidArgumentError('heartbeat needs 0 < intervalMs < timeoutMs');
  }
}

const DEFAULT_KEEPALIVE: KeepAliveOptions = { idleMs: 60_000, intervalMs: 10_000, count: 6 };

/**
 * `keepAlive`, fields not given taken from the default. Linux's limits: TCP_KEEPIDLE and
 * TCP_KEEPINTVL at most 32 767 s, TCP_KEEPCNT 1 … 127.
 */
function keepAliveFor(o: Partial<KeepAliveOptions> | undefined): KeepAliveOptions {
  if (o === undefined) return DEFAULT_KEEPALIVE;
  const d = DEFAULT_KEEPALIVE;
  const k: KeepAliveOptions = {
    idleMs: finitePositive('keepAlive.idleMs', o.idleMs, d.idleMs),
    intervalMs: finitePositive('keepAlive.intervalMs', o.intervalMs, d.intervalMs),
    count: o.count === undefined ? d.count : checkInteger('keepAlive.count', o.count, 1, 127),
  };
  if (k.idleMs > 32_767_000 || k.intervalMs > 32_767_000) {
    throw new InvalidArgumentError('keepAlive.idleMs and keepAlive.intervalMs must be at most 32 767 000 ms');
  }
  return k;
}

/** @internal What the constructor takes from its options, checked before anything is touched. */
export interface CheckedOptions {
  settings: Settings;
  keepAlive: KeepAliveOptions | undefined;
  userTimeoutMs: number | undefined;
  heartbeat: (HeartbeatOptions & { frame?: Buffer }) | undefined;
}

/**
 * @internal Checks a Connection's options (InvalidArgumentError on the first bad one). A server
 * checks its connection options once, not per accepted socket, and hands the result to each.
 */
export function checkOptions(options: ConnectionOptions): CheckedOptions {
  if (!options || typeof options.framing?.createDecoder !== 'function') {
    throw new InvalidArgumentError('options.framing must be a Framing (e.g. lengthFieldFraming(...))');
  }
  const heartbeat = options.heartbeat || undefined;
  if (heartbeat !== undefined) checkHeartbeatTiming(heartbeat);
  const settings = settingsFor(options);
  const keepAlive = options.keepAlive === false ? undefined : keepAliveFor(options.keepAlive);
  const userTimeoutMs =
    options.userTimeoutMs === undefined
      ? undefined
      : finiteAtLeast('userTimeoutMs', options.userTimeoutMs, 0);
  // The common case — shared settings, default keepalive, nothing else — is one object for all:
  // a client keeps its checked options, and many programs hold one client per connection.
  if (keepAlive === DEFAULT_KEEPALIVE && userTimeoutMs === undefined && heartbeat === undefined) {
    let shared = sharedChecked.get(settings);
    if (shared === undefined) {
      shared = Object.freeze({ settings, keepAlive, userTimeoutMs, heartbeat });
      sharedChecked.set(settings, shared);
    }
    return shared;
  }
  return { settings, keepAlive, userTimeoutMs, heartbeat };
}

/** Keyed by Settings (interned, at most 256 shared ones): see checkOptions. */
const sharedChecked = new WeakMap<Settings, CheckedOptions>();

/** A connection's validated options; immutable, so connections with equal options share one. */
interface Settings {
  readonly highWaterMark: number;
  readonly lowWaterMark: number;
  readonly closeTimeoutMs: number;
  readonly remoteEndTimeoutMs: number;
  readonly halfOpenWarnMs: number;
  readonly allowHalfOpen: boolean;
  readonly earlyFlushBytes: number;
  readonly idle: IdleOptions | undefined;
  readonly now: () => number;
  readonly frameTimeoutMs: number;
  readonly maxQueuedBytes: number;
  readonly budget: MemoryBudget | undefined;
}

/**
 * Interned settings: a server's connections (or a pool's) all carry the same nine values, and
 * nine fields are 72 bytes per connection. Options with their own idle object or clock get
 * settings of their own.
 */
const sharedSettings = new Map<string, Settings>();

function settingsFor(options: ConnectionOptions): Settings {
  const highWaterMark = finiteAtLeast('highWaterMark', options.highWaterMark, 64 * 1024);
  const lowWaterMark = finiteAtLeast(
    'lowWaterMark',
    options.lowWaterMark,
    Math.min(32 * 1024, highWaterMark),
  );
  if (lowWaterMark > highWaterMark) {
    throw new InvalidArgumentError('lowWaterMark must not exceed highWaterMark');
  }
  const idle = options.idle;
  if (idle !== undefined) {
    for (const k of ['readerMs', 'writerMs', 'allMs'] as const) finiteAtLeast(`idle.${k}`, idle[k], 0);
  }
  const settings: Settings = {
    highWaterMark,
    lowWaterMark,
    closeTimeoutMs: finiteAtLeast('closeTimeoutMs', options.closeTimeoutMs, 30_000),
    remoteEndTimeoutMs: finiteAtLeast('remoteEndTimeoutMs', options.remoteEndTimeoutMs, 5_000),
    halfOpenWarnMs: finiteAtLeast('halfOpenWarnMs', options.halfOpenWarnMs, 30_000),
    allowHalfOpen: options.allowHalfOpen === true,
    earlyFlushBytes: finiteAtLeast('coalesceBytes', options.coalesceBytes, EARLY_FLUSH_BYTES),
    idle,
    now: options.clock ?? defaultNow,
    frameTimeoutMs: finiteAtLeast('frameTimeoutMs', options.frameTimeoutMs, 0),
    maxQueuedBytes: durationOrInfinity('maxQueuedBytes', options.maxQueuedBytes, Number.POSITIVE_INFINITY),
    budget: options.budget,
  };
  if (settings.maxQueuedBytes < highWaterMark) {
    throw new InvalidArgumentError('maxQueuedBytes must not be below highWaterMark');
  }
  if (idle !== undefined || settings.now !== defaultNow || settings.budget !== undefined) return settings;
  const key = `${highWaterMark},${lowWaterMark},${settings.closeTimeoutMs},${settings.remoteEndTimeoutMs},${settings.halfOpenWarnMs},${settings.allowHalfOpen},${settings.earlyFlushBytes},${settings.frameTimeoutMs},${settings.maxQueuedBytes}`;
  const shared = sharedSettings.get(key);
  if (shared !== undefined) return shared;
  if (sharedSettings.size < 256) sharedSettings.set(key, settings);
  return settings;
}

/**
 * Resets the connection: RST, send queue discarded (the sources' SO_LINGER {1,0}).
 *
 * Node's own resetAndDestroy() is unsafe once end() has been called: libuv refuses to reset a
 * stream with a shutdown pending (uv_tcp_close_reset → EINVAL), and Node 20 then never emits
 * 'close', leaks the descriptor and spins a core. Setting SO_LINGER {1,0} on the descriptor and
 * destroying the socket makes the kernel's close() send the RST whatever state the stream is in.
 * Returns whether an RST was sent (false: the platform only allowed a plain close).
 */
function resetSocket(socket: net.Socket): boolean {
  if (socket.destroyed) return false;
  if (setLinger(socket, true, 0)) {
    socket.destroy();
    return true;
  }
  const handle = (socket as unknown as { _handle?: { reset?: unknown } | null })._handle;
  if (!socket.writableEnded && handle && typeof handle.reset === 'function') {
    socket.resetAndDestroy();
    return true;
  }
  socket.destroy();
  return false;
}

/**
 * What only a closing, half-open or awaited connection needs. Made on first use, so an open idle
 * connection (the one there are tens of thousands of) carries one empty pointer instead of a
 * dozen fields.
 */
class Lifecycle {
  /** Why the connection is closing; the first reason wins (see setPending). */
  pending: PendingClose | undefined = undefined;
  /** Set once, when the socket is released. */
  info: CloseInfo | undefined = undefined;
  promise: Promise<CloseInfo> | undefined = undefined;
  resolve: ((info: CloseInfo) => void) | undefined = undefined;
  /** The peer's FIN was read. */
  remoteEnded = false;
  /** Our FIN was handed to the kernel (Node's 'finish'). */
  writeFinished = false;
  /** The one timer of a closing connection; its meaning depends on the phase. */
  timer: NodeJS.Timeout | undefined = undefined;
  timerKind: TimerKind | undefined = undefined;
  timerMs = -1;
  deadline = 0;
  deadlineMs = 0;
  halfOpenSince = 0;
  /** The write callback that checks for 'drain'; made the first time someone waits for it. */
  onBatchWritten: (() => void) | undefined = undefined;
  /** write() calls waiting for the next 'drain' (one list, not a listener pair per call). */
  writers: Array<{ resolve: () => void; reject: (err: Error) => void }> | undefined = undefined;
  /**
   * While reading is paused for backpressure: when the peer last took our bytes (the kernel's
   * acknowledged count moved, or the pause began), and that count (TCP_INFO bytes_acked).
   */
  takenAt = 0;
  acked: bigint | undefined = undefined;
}

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
  // No `implements WheelEntry, BudgetMember`: their hooks are internal (stripped from the
  // published .d.ts), and `wheel.schedule(this, …)` / `budget.update(this)` check them all the same.
  /** The id given in the options, or a process-unique number (made a string only when asked). */
  private readonly seq: string | number;
  readonly socket: net.Socket;
  readonly framing: Framing;

  private _state: ConnectionState = S.OPEN;
  private readonly decoder: FrameDecoder;
  /** Validated options, shared by every connection made with the same values (see settingsFor). */
  private readonly settings: Settings;
  private readonly openedAt = Math.floor(performance.now());

  /** Frames encoded but not yet handed to the socket: flushed once per microtask. */
  /** The one queued chunk (the usual case: no array); once a second comes, all of them are in outq. */
  private out1: Buffer | undefined;
  private outq: Buffer[] | undefined;
  private outBytes = 0;
  private flushScheduled = false;
  private needDrain = false;
  private framesRead = 0;
  private framesWritten = 0;

  /** Heartbeat and idle checks run on a shared wheel (no timer per connection); see checkLiveness. */
  private wheel: TimerWheel | undefined;
  /** @internal The wheel's bookkeeping (WheelEntry). */
  wheelTick = -1;
  /** @internal */
  wheelIndex = -1;

  /** @internal Liveness bookkeeping: stamped once per read batch / flush; the timer does the arithmetic. */
  lastReadAt: number;
  /** @internal */
  lastWriteAt: number;
  private heartbeat: HeartbeatHook | undefined;
  /** A heartbeat was sent and nothing has been read since: at most one outstanding. */
  private heartbeatOutstanding = false;
  /** Idle events fired in the current idle period (IDLE_* bits); cleared by activity. */
  private idleFired = 0;
  /** ReadHold bits, STOPPED, RESET, BUDGETED. */
  private flags = 0;
  /**
   * When the frame now being received started (whole ms; -1: none), for frameTimeoutMs. Reset
   * each time a read completes a frame and leaves the next one partial.
   */
  private partialSince = -1;

  private handler: ConnectionHandler | undefined;
  /** Close-time state, made on first use (see Lifecycle). */
  private life: Lifecycle | undefined;

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
    this.lastReadAt = this.lastWriteAt = this.settings.now();

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

    if (this.settings.idle !== undefined || this.settings.frameTimeoutMs > 0) this.pickWheel();
    if (hb !== undefined) {
      const frame = hb.frame;
      this.setHeartbeat({
        intervalMs: hb.intervalMs,
        timeoutMs: hb.timeoutMs,
        ping: () => {
          if (frame !== undefined && this.writable) this.send(frame);
        },
      });
    } else if (this.settings.idle !== undefined) this.checkLiveness();
  }

  /**
   * Opens a TCP (or TLS) connection and wraps it. Rejects with ConnectError (cause: the system
   * error), ConnectTimeoutError or AbortedError; the half-made socket is always destroyed.
   */
  static connect(options: ConnectOptions): Promise<Connection>;
  /** @internal `checked`: options already checked by checkOptions. */
  static connect(options: ConnectOptions, checked: CheckedOptions | undefined): Promise<Connection>;
  static connect(options: ConnectOptions, checked?: CheckedOptions): Promise<Connection> {
    if (!Number.isInteger(options?.port) || options.port < 1 || options.port > 65535) {
      return Promise.reject(
        new InvalidArgumentError(`port must be an integer 1..65535, got ${String(options?.port)}`),
      );
    }
    const host = options.host ?? '127.0.0.1';
    let timeoutMs: number;
    let opts: CheckedOptions;
    try {
      // Bad options fail before a socket is opened, not after the handshake.
      timeoutMs = finiteAtLeast('connectTimeoutMs', options.connectTimeoutMs, 10_000);
      opts = checked ?? checkOptions(options);
    } catch (err) {
      return Promise.reject(err);
    }
    const signal = options.signal;
    if (signal?.aborted) return Promise.reject(new AbortedError('connect aborted', { cause: signal.reason }));
    return new Promise((resolve, reject) => {
      const base: net.TcpNetConnectOpts = { host, port: options.port, allowHalfOpen: true };
      if (options.localAddress !== undefined) base.localAddress = options.localAddress;
      const socket = options.tls ? tls.connect({ ...options.tls, ...base }) : net.connect(base);
      const finish = (err: LonglinkError | undefined) => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        socket.off('error', onError);
        socket.off(options.tls ? 'secureConnect' : 'connect', onConnect);
        if (err) {
          socket.destroy();
          reject(err);
          return;
        }
        try {
          resolve(new Connection(socket, options, opts));
        } catch (e) {
          socket.destroy();
          reject(e);
        }
      };
      const onConnect = () => finish(undefined);
      const onError = (err: NodeJS.ErrnoException) =>
        finish(
          new ConnectError(connectFailure(host, options.port, options.tls !== undefined, err), {
            cause: err,
          }),
        );
      const onAbort = () => finish(new AbortedError('connect aborted', { cause: signal?.reason }));
      const timer = setTimeout(() => finish(new ConnectTimeoutError(timeoutMs)), timeoutMs);
      timer.unref();
      signal?.addEventListener('abort', onAbort, { once: true });
      socket.once('error', onError);
      socket.once(options.tls ? 'secureConnect' : 'connect', onConnect);
    });
  }

  get state(): ConnectionState {
    return this._state;
  }

  /** Resolves once, with the close info, when the socket is released. Never rejects. */
  get closed(): Promise<CloseInfo> {
    const life = this.lifecycle();
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

  private lifecycle(): Lifecycle {
    this.life ??= new Lifecycle();
    return this.life;
  }

  private drainCallback(): () => void {
    const life = this.lifecycle();
    life.onBatchWritten ??= () => this.maybeDrain();
    return life.onBatchWritten;
  }

  /** True while `send()` accepts frames. */
  get writable(): boolean {
    return (this._state === S.OPEN || this._state === S.READ_CLOSED) && (this.flags & RESET) === 0;
  }

  /** Bytes accepted by `send()` and not yet handed to the kernel. */
  get bufferedAmount(): number {
    return this.outBytes + this.socket.writableLength;
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
   * Throws ConnectionClosedError once the connection no longer takes sends, and
   * FrameTooLargeError for a frame above the framing's limit; nothing is queued then.
   */
  send(frame: Buffer): boolean {
    if (!this.writable) throw this.notWritable();
    return this.enqueue(this.framing.encoder.encode(frame));
  }

  /**
   * Queues one frame whose payload is the concatenation of `parts`, without copying them (a
   * protocol header and a large body, say). Same contract as {@link send}.
   */
  sendParts(parts: readonly Buffer[]): boolean {
    if (!this.writable) throw this.notWritable();
    if (parts.length === 1) return this.enqueue(this.framing.encoder.encode(parts[0] as Buffer));
    return this.enqueue(this.framing.encoder.encodeParts(parts));
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
    if (!this.writable) throw this.notWritable();
    const enc = this.framing.encoder;
    const n = enc.prefixLength;
    if (n === undefined || enc.writePrefix === undefined || parts.length === 0) {
      throw new InvalidArgumentError(`framing ${this.framing.name} has no fixed prefix to write in place`);
    }
    let length = -n;
    for (const p of parts) length += p.length;
    enc.writePrefix(parts[0] as Buffer, length);
    return this.enqueue(parts);
  }
  /**
   * @internal
   * {@link sendPrefixed} for a frame that is one buffer: `frame` starts with
   * {@link prefixLength} bytes of room, filled in place. No array, one queued chunk: what the
   * heartbeat's PING and PONG use.
   */
  sendPrefixedOne(frame: Buffer): boolean {
    if (!this.writable) throw this.notWritable();
    const enc = this.framing.encoder;
    const n = enc.prefixLength;
    if (n === undefined || enc.writePrefix === undefined) {
      throw new InvalidArgumentError(`framing ${this.framing.name} has no fixed prefix to write in place`);
    }
    enc.writePrefix(frame, frame.length - n);
    this.queueChunk(frame);
    return this.queued();
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

  /** @internal Runs the queued flush (from the process-wide flush queue). */
  flushNow(): void {
    if (this.flushScheduled) this.flush();
  }

  private enqueue(chunks: Buffer[]): boolean {
    for (let i = 0; i < chunks.length; i++) this.queueChunk(chunks[i] as Buffer);
    return this.queued();
  }

  private queueChunk(c: Buffer): void {
    if (this.outq !== undefined) this.outq.push(c);
    else if (this.out1 === undefined) this.out1 = c;
    else {
      this.outq = [this.out1, c];
      this.out1 = undefined;
    }
    this.outBytes += c.length;
  }

  /** After a frame's chunks are queued: schedule (or do) the flush, report backpressure. */
  private queued(): boolean {
    this.framesWritten++;
    if (this.outBytes >= this.settings.earlyFlushBytes) {
      // A full window of small messages: send what we have now rather than at the end of the
      // tick, so the peer starts on it while we produce the rest (see EARLY_FLUSH_BYTES).
      this.flush();
    } else if (!this.flushScheduled) {
      this.flushScheduled = true;
      if (flushCount === 0) resolved.then(flushAll);
      flushQueue[flushCount++] = this;
    }
    const buffered = this.bufferedAmount;
    if (buffered >= this.settings.highWaterMark) {
      this.needDrain = true;
      if (buffered > this.settings.maxQueuedBytes) {
        this.reset(
          CloseReason.SLOW_CONSUMER,
          'local',
          new SlowConsumerError(
            `connection ${this.id}: ${buffered} bytes queued, over maxQueuedBytes ${this.settings.maxQueuedBytes}; the peer does not read`,
            buffered,
          ),
        );
      } else if (this.settings.budget !== undefined) this.budgetChanged();
      return false;
    }
    return true;
  }

  private dropQueue(): void {
    this.out1 = undefined;
    this.outq = undefined;
    this.outBytes = 0;
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
    const life = this.lifecycle();
    life.writers ??= [];
    const writers = life.writers;
    return new Promise((resolve, reject) => {
      writers.push({ resolve, reject });
    });
  }

  /** write() calls still waiting for 'drain' (a lease pool lends no connection that has one). */
  get writesWaiting(): number {
    return this.life?.writers?.length ?? 0;
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
   * backpressure a silent peer is judged by whether it takes our bytes (see checkLiveness).
   */
  hold(why: number): void {
    const before = this.flags & HOLD_MASK;
    this.flags |= why;
    if (before !== 0 || this._state === S.CLOSED) return;
    this.socket.pause();
    if (why === ReadHold.BACKPRESSURE) {
      const life = this.lifecycle();
      life.takenAt = this.settings.now();
      life.acked = tcpInfo(this.socket)?.bytesAcked;
    }
  }

  /** @internal Releases a hold taken with {@link hold}. */
  release(why: number): void {
    if ((this.flags & why) === 0) return;
    this.flags &= ~why;
    if ((this.flags & HOLD_MASK) !== 0 || (this.flags & STOPPED) !== 0 || this._state === S.CLOSED) return;
    // The frame in progress could not advance while we were not reading: its clock starts again.
    if (this.partialSince >= 0) this.partialSince = this.settings.now();
    this.socket.resume();
    if (this.wheel !== undefined) this.checkLiveness();
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
    this.reset(CloseReason.OVERLOAD, 'local', error);
  }

  /** @internal What this connection holds changed (the layer above calls it for its own holdings). */
  budgetChanged(): void {
    const budget = this.settings.budget;
    if (budget === undefined || (this.flags & RESET) !== 0) return;
    if (budget.update(this)) this.flags |= BUDGETED;
    else this.flags &= ~BUDGETED;
  }

  /*
   * Graceful close (the MSDN recipe the sources quote): shutdown(SD_SEND), read until the peer's
   * EOF, then close the descriptor. The kernel keeps delivering what is queued after that.
   *
   *   us                                   peer
   *   close() ── flush queue, FIN ──────▶  (reads our data, then EOF)
   *   CLOSING: still reading, frames       … may still send …
   *            delivered                ◀── FIN
   *   release socket ─── 'close' { reason: 'local-graceful', graceful: true }
   *
   *   deadline passes first ─▶ RST, 'close' { reason: 'close-timeout', graceful: false }
   */
  /**
   * Closes gracefully: no more sends, queued frames flushed, FIN, keep reading (and emitting
   * frames) until the peer's EOF, then release. Aborts with reason `close-timeout` if that takes
   * longer than the deadline. Idempotent: later calls return the same promise.
   */
  close(options: CloseOptions = {}): Promise<CloseInfo> {
    const timeoutMs = finiteAtLeast('timeoutMs', options.timeoutMs, this.settings.closeTimeoutMs);
    switch (this._state) {
      case S.CLOSED:
      case S.CLOSING:
      case S.LINGERING:
        return this.closed;
      case S.OPEN:
      case S.WRITE_CLOSED:
      case S.READ_CLOSED:
        if (options.reason !== undefined) {
          this.setPending(options.reason, options.initiator ?? 'local', options.error, true);
        } else if (this.life?.remoteEnded === true)
          this.setPending(CloseReason.REMOTE_FIN, 'remote', undefined);
        else this.setPending(CloseReason.LOCAL_GRACEFUL, 'local', undefined);
        this.transition(this._state, S.CLOSING);
        this.startDeadline(timeoutMs);
        this.endWrites();
        this.maybeRelease();
        return this.closed;
    }
  }

  /**
   * Shuts down the send direction only (FIN; the sources' shutdown(SD_SEND)) and keeps
   * receiving. The connection is released when the peer's EOF arrives. Sends throw afterwards.
   */
  halfClose(): void {
    if (this._state === S.OPEN) {
      this.transition(S.OPEN, S.WRITE_CLOSED);
      this.endWrites();
    } else if (this._state === S.READ_CLOSED) {
      // The peer already finished: our FIN completes an orderly close.
      this.setPending(CloseReason.REMOTE_FIN, 'remote', undefined);
      this.transition(S.READ_CLOSED, S.CLOSING);
      this.startDeadline(this.settings.closeTimeoutMs);
      this.endWrites();
      this.maybeRelease();
    }
  }

  /**
   * Aborts at once: RST, every queued byte discarded and counted in the close info's
   * `unsentBytes`, the peer sees ECONNRESET, no TIME_WAIT here (the sources' linger {1,0}).
   * Safe at any point, including right after `close()` in the same tick.
   */
  abort(error?: LonglinkError, reason: CloseReason = CloseReason.LOCAL_ABORT): void {
    this.reset(reason, 'local', error);
  }

  /*
   * linger(N), without blocking: Linux's SO_LINGER {1,N} would make close() itself wait up to N
   * seconds — on Node's one thread. Instead: flush, FIN, then ask the kernel every 10 ms how many
   * bytes the peer has not acknowledged (SIOCOUTQ, which counts the FIN too).
   *
   *   linger(N) ── flush, FIN ── poll SIOCOUTQ … 0 ─▶ release, { reason: 'local-graceful' }
   *                                     └ N ms pass ─▶ RST, { reason: 'linger-expired', unsentBytes }
   */
  /**
   * Closes and waits up to `timeoutMs` for the peer to acknowledge every byte sent (FIN
   * included); then releases with reason `local-graceful`. If the deadline passes first, resets
   * the connection and reports the bytes lost (reason `linger-expired`). Where the kernel's
   * figure cannot be read (no native helper), it falls back to a graceful close with that
   * deadline.
   */
  linger(timeoutMs: number): Promise<CloseInfo> {
    const ms = finiteAtLeast('timeoutMs', timeoutMs, 0);
    if (this._state === S.CLOSED || this._state === S.LINGERING) return this.closed;
    if (!nativeSocketOptions().available) return this.close({ timeoutMs: ms });
    this.setPending(CloseReason.LOCAL_GRACEFUL, 'local', undefined, true);
    this.transition(this._state, S.LINGERING);
    this.endWrites();
    const life = this.lifecycle();
    life.deadline = performance.now() + ms;
    life.deadlineMs = ms;
    this.arm('linger-poll', Math.min(LINGER_POLL_MS, ms));
    return this.closed;
  }

  /*
   * Liveness (gRPC's keepalive rules, "A8"): any byte read is proof of life, and the next
   * heartbeat is scheduled from the last byte read, so a busy connection sends none. At most one
   * heartbeat is outstanding. `timeoutMs` after the last read the peer is declared dead and the
   * connection is aborted — a graceful close on a dead peer would only hang (grpc-node#2953).
   *
   *   last read ──── intervalMs ────▶ heartbeat sent ──── … ────▶ timeoutMs: RST, 'heartbeat-timeout'
   *        └── any read in between restarts both clocks
   *
   * Detection bound: timeoutMs after the last byte read, plus up to one tick of the shared wheel
   * (intervalMs / 50 rounded down to a power of two, ≤ 1,024 ms: 16 ms for a 1 s interval), plus
   * event-loop lag.
   */
  /**
   * @internal
   * Installs (or with undefined removes) a heartbeat: `ping()` is called when nothing was read
   * for `intervalMs`; the connection aborts with reason `heartbeat-timeout` when nothing was read
   * for `timeoutMs`. Protocol layers use this with their own PING message.
   */
  setHeartbeat(hook: HeartbeatHook | undefined): void {
    if (hook !== undefined) checkHeartbeatTiming(hook);
    this.heartbeat = hook;
    this.heartbeatOutstanding = false;
    this.pickWheel();
    this.checkLiveness();
  }

  /**
   * @internal
   * Sends a heartbeat now if nothing has been read for `ms` and none is outstanding: a cheap check
   * before reusing a connection that sat idle (a dead peer is then found within the timeout).
   */
  pingIfIdle(ms: number): void {
    const hb = this.heartbeat;
    if (hb === undefined || this.heartbeatOutstanding || this._state !== S.OPEN) return;
    if (this.settings.now() - this.lastReadAt >= ms) {
      this.heartbeatOutstanding = true;
      hb.ping();
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

  // -------------------------------------------------------------------------------------------
  // State

  private transition(from: ConnectionState, to: ConnectionState): void {
    if (this._state !== from || !TRANSITIONS[from].includes(to)) {
      // A bug in this class, not a user error: state the impossible transition loudly.
      throw new Error(`longlink: invalid connection transition ${this._state} (expected ${from}) -> ${to}`);
    }
    this._state = to;
    if (stateChannel.hasSubscribers) stateChannel.publish({ connection: this, from, to });
    // Liveness is checked only while open: leave the wheel (it would hold a closed connection).
    if (from === S.OPEN) this.wheel?.cancel(this);
    switch (to) {
      case S.READ_CLOSED:
        this.lifecycle().halfOpenSince = performance.now();
        this.arm('half-open-warn', this.settings.halfOpenWarnMs);
        break;
      case S.CLOSED:
        this.disarm();
        break;
      default:
        break;
    }
    this.emit('state', from, to);
  }

  /** Records why the connection is closing. The first reason wins, except that an error replaces a graceful one. */
  private setPending(
    reason: CloseReason,
    initiator: 'local' | 'remote',
    error: LonglinkError | undefined,
    force = false,
  ): void {
    const life = this.lifecycle();
    const p = life.pending;
    if (force || p === undefined || (GRACEFUL_REASONS.has(p.reason) && !GRACEFUL_REASONS.has(reason))) {
      life.pending = { reason, initiator, error };
    }
  }

  private notWritable(): ConnectionClosedError {
    const reason = this.life?.info?.reason ?? this.life?.pending?.reason;
    return new ConnectionClosedError(
      `connection ${this.id} is ${this._state}; it takes no more sends`,
      reason,
    );
  }

  // -------------------------------------------------------------------------------------------
  // Writing

  /*
   * One flush per microtask (nats.js core/src/protocol.ts). Small chunks — frame headers, small
   * messages — are copied into one buffer: a memcpy of a few hundred bytes is far cheaper than a
   * socket.write() call each. A chunk of COPY_MAX bytes or more is written as it is, never copied.
   * Everything goes out in one writev between cork() and uncork().
   */
  private flush(): void {
    this.flushScheduled = false;
    const one = this.out1;
    const q = this.outq;
    if (one === undefined && q === undefined) return;
    this.dropQueue();
    const s = this.socket;
    if (s.destroyed || s.writableEnded) return;
    this.lastWriteAt = this.settings.now();
    if (this.idleFired !== 0) this.activity(IDLE_WRITER | IDLE_ALL);
    if (q === undefined) {
      s.write(one as Buffer, this.needDrain ? this.drainCallback() : undefined);
      return;
    }
    const n = q.length;
    const out: Buffer[] = [];
    let runStart = 0;
    let runBytes = 0;
    for (let i = 0; i < n; i++) {
      const c = q[i] as Buffer;
      if (c.length < COPY_MAX) {
        runBytes += c.length;
        continue;
      }
      if (runBytes > 0) out.push(coalesce(q, runStart, i, runBytes));
      out.push(c);
      runStart = i + 1;
      runBytes = 0;
    }
    if (runBytes > 0) out.push(coalesce(q, runStart, n, runBytes));
    const last = out.length - 1;
    if (last > 0) s.cork();
    for (let i = 0; i < last; i++) s.write(out[i] as Buffer);
    // A completion callback costs a nextTick per write: only when someone waits for 'drain'
    // (otherwise the socket's own 'drain' covers a queue that grows past its watermark later).
    s.write(out[last] as Buffer, this.needDrain ? this.drainCallback() : undefined);
    if (last > 0) s.uncork();
  }

  private maybeDrain(): void {
    // A destroyed socket empties its queue by discarding it: that is no drain.
    if (this.socket.destroyed) return;
    if (this.needDrain && this.bufferedAmount <= this.settings.lowWaterMark) {
      this.needDrain = false;
      if ((this.flags & BUDGETED) !== 0) this.budgetChanged();
      this.handler?.handleDrain?.();
      this.emit('drain');
      const life = this.life;
      const writers = life?.writers;
      if (life !== undefined && writers !== undefined) {
        life.writers = undefined;
        for (const w of writers) w.resolve();
      }
    }
  }

  /** Flushes what is queued, then FIN (Node sends it once its write queue is empty). */
  private endWrites(): void {
    this.flush();
    if (!this.socket.writableEnded) this.socket.end();
  }

  // -------------------------------------------------------------------------------------------
  // Closing

  /** Releases the socket once a graceful close has both sent its FIN and seen the peer's. */
  private maybeRelease(): void {
    if (this._state === S.CLOSED || this._state === S.LINGERING) return;
    const life = this.life;
    if (life === undefined || !life.writeFinished) return;
    const protocolError = life.pending?.reason === CloseReason.PROTOCOL_ERROR;
    // After a protocol error nothing more is read, so there is no EOF to wait for.
    if (life.remoteEnded || protocolError) this.socket.destroy();
  }

  private reset(reason: CloseReason, initiator: 'local' | 'remote', error: LonglinkError | undefined): void {
    if (this._state === S.CLOSED || this.socket.destroyed) return;
    this.flags |= RESET;
    // Measure what the reset discards before the descriptor is gone: our queue, Node's queue
    // and the kernel's unacknowledged bytes (minus the FIN, which SIOCOUTQ counts as one).
    let kernel = kernelUnacked(this.socket);
    const life = this.lifecycle();
    if (kernel !== undefined && life.writeFinished && kernel > 0) kernel -= 1;
    const userSpace = this.outBytes + this.socket.writableLength;
    life.pending = {
      reason,
      initiator,
      error,
      unsentBytes: userSpace + (kernel ?? 0),
      unsentKnown: kernel !== undefined,
    };
    this.dropQueue();
    resetSocket(this.socket);
  }

  private startDeadline(ms: number): void {
    const life = this.lifecycle();
    life.deadline = performance.now() + ms;
    life.deadlineMs = ms;
    this.arm('close-deadline', ms);
  }

  /** Arms the one timer; re-uses it with refresh() when kind and delay are unchanged. */
  private arm(kind: TimerKind, ms: number): void {
    const life = this.lifecycle();
    const delay = Math.max(1, Math.ceil(ms));
    if (life.timer !== undefined && life.timerKind === kind && life.timerMs === delay) {
      life.timer.refresh();
      return;
    }
    this.disarm();
    life.timerKind = kind;
    life.timerMs = delay;
    life.timer = setTimeout(Connection.onTimer, delay, this);
    life.timer.unref();
  }

  private disarm(): void {
    const life = this.life;
    if (life === undefined) return;
    if (life.timer !== undefined) clearTimeout(life.timer);
    life.timer = undefined;
    life.timerKind = undefined;
  }

  private onTimerFired(): void {
    const life = this.lifecycle();
    const kind = life.timerKind;
    life.timer = undefined;
    life.timerKind = undefined;
    switch (kind) {
      case 'close-deadline': {
        if (this._state !== S.CLOSING) return;
        const p = life.pending;
        if (p !== undefined && !GRACEFUL_REASONS.has(p.reason)) {
          // A close forced by an error (e.g. protocol-error) keeps its reason when it times out.
          this.reset(p.reason, p.initiator, p.error);
          return;
        }
        const unacked = kernelUnacked(this.socket) ?? 0;
        const unsent = this.outBytes + this.socket.writableLength + unacked;
        const error = new CloseTimeoutError(life.deadlineMs, unsent);
        this.reset(CloseReason.CLOSE_TIMEOUT, p?.initiator ?? 'local', error);
        return;
      }
      case 'linger-poll': {
        if (this._state !== S.LINGERING) return;
        const unacked = kernelUnacked(this.socket);
        if (life.writeFinished && unacked === 0) {
          // Every byte and our FIN are acknowledged: what close() with SO_LINGER {1,N} waits for.
          this.socket.destroy();
          return;
        }
        const left = life.deadline - performance.now();
        if (left <= 0) {
          let lost = this.outBytes + this.socket.writableLength + (unacked ?? 0);
          if (life.writeFinished && lost > 0) lost -= 1; // the FIN is not a byte of data
          this.reset(CloseReason.LINGER_EXPIRED, 'local', new LingerExpiredError(life.deadlineMs, lost));
          return;
        }
        this.arm('linger-poll', Math.min(LINGER_POLL_MS, left));
        return;
      }
      case 'half-open-warn': {
        if (this._state !== S.READ_CLOSED) return;
        const sinceMs = Math.round(performance.now() - life.halfOpenSince);
        this.emit('warning', {
          code: 'HALF_OPEN_LINGERING',
          message: `connection ${this.id} has been half-open for ${sinceMs} ms since the peer's FIN; close() it`,
          sinceMs,
        });
        this.arm('half-open-warn', this.settings.halfOpenWarnMs);
        return;
      }
      case undefined:
        return;
    }
  }

  /** The wheel for the shortest liveness period: its tick (≤ 2% of the period) is the checks' precision. */
  private pickWheel(): void {
    let period = this.heartbeat?.intervalMs ?? Number.POSITIVE_INFINITY;
    const ft = this.settings.frameTimeoutMs;
    if (ft > 0 && ft < period) period = ft;
    const idle = this.settings.idle;
    if (idle !== undefined) {
      for (const ms of [idle.readerMs, idle.writerMs, idle.allMs]) {
        if (ms !== undefined && ms > 0 && ms < period) period = ms;
      }
    }
    const wheel = period === Number.POSITIVE_INFINITY ? undefined : wheelFor(period);
    if (wheel !== this.wheel) {
      this.wheel?.cancel(this);
      this.wheel = wheel;
    }
  }

  /** @internal The wheel's callback (WheelEntry). */
  onWheel(): void {
    this.checkLiveness();
  }

  /** Runs when the liveness tick comes (and when settings change): heartbeat, death, idleness. */
  private checkLiveness(): void {
    if (this._state !== S.OPEN || (this.flags & RESET) !== 0) return;
    const hb = this.heartbeat;
    const idle = this.settings.idle;
    const ft = this.settings.frameTimeoutMs;
    if (hb === undefined && idle === undefined && (ft === 0 || this.partialSince < 0)) {
      this.wheel?.cancel(this);
      return;
    }
    const holds = this.flags & HOLD_MASK;
    if ((holds & ReadHold.BUSY) !== 0) {
      // Held paused because we are busy: the peer's bytes wait unread in the kernel, so its
      // silence proves nothing, and its frame cannot advance. The checks resume with reading
      // (release() runs this again); the detection bound is extended by the time held.
      this.wheel?.cancel(this);
      return;
    }
    const now = this.settings.now();
    let next = Number.POSITIVE_INFINITY;
    if (ft > 0 && this.partialSince >= 0 && holds === 0) {
      if (now - this.partialSince >= ft) {
        this.reset(
          CloseReason.FRAME_TIMEOUT,
          'remote',
          new FrameTimeoutError(this.decoder.bufferedBytes, ft),
        );
        return;
      }
      next = this.partialSince + ft;
    }
    if (hb !== undefined) {
      const silentFor = now - this.lastReadAt;
      if (silentFor >= hb.timeoutMs) {
        if ((holds & ReadHold.BACKPRESSURE) !== 0) {
          // We stopped reading because the peer does not take our bytes. Dead, or just slow?
          // The kernel's acknowledged count says whether it took any since we last looked.
          if (!this.peerTookBytes(now, hb.timeoutMs)) return;
          next = Math.min(next, now + hb.intervalMs);
        } else {
          this.reset(
            CloseReason.HEARTBEAT_TIMEOUT,
            'local',
            new HeartbeatTimeoutError(Math.round(silentFor), hb.timeoutMs),
          );
          return;
        }
      }
      if (silentFor < hb.timeoutMs) next = Math.min(next, this.lastReadAt + hb.timeoutMs);
      if (silentFor >= hb.intervalMs) {
        if (!this.heartbeatOutstanding) {
          this.heartbeatOutstanding = true;
          this.emit('heartbeat');
          hb.ping();
          if ((this._state as ConnectionState) !== S.OPEN) return;
        }
      } else {
        next = Math.min(next, this.lastReadAt + hb.intervalMs);
      }
    }
    if (idle !== undefined) {
      const lastAny = Math.max(this.lastReadAt, this.lastWriteAt);
      const checks: Array<[number, number | undefined, number, IdleKind]> = [
        [IDLE_READER, idle.readerMs, this.lastReadAt, 'reader'],
        [IDLE_WRITER, idle.writerMs, this.lastWriteAt, 'writer'],
        [IDLE_ALL, idle.allMs, lastAny, 'all'],
      ];
      for (const [bit, ms, since, kind] of checks) {
        if (ms === undefined || ms <= 0 || (this.idleFired & bit) !== 0) continue;
        if (now - since >= ms) {
          this.idleFired |= bit;
          this.emit('idle', kind);
          if (idle.close === true && this._state === S.OPEN) {
            void this.close({ reason: CloseReason.IDLE_TIMEOUT });
            return;
          }
          if ((this._state as ConnectionState) !== S.OPEN) return;
        } else {
          next = Math.min(next, since + ms);
        }
      }
    }
    const wheel = this.wheel;
    if (wheel === undefined) return;
    if (next !== Number.POSITIVE_INFINITY) wheel.schedule(this, next - now);
    else wheel.cancel(this);
  }

  /**
   * Reading is paused for backpressure and the peer has been silent for the heartbeat timeout.
   * Returns true while it still takes our bytes (TCP_INFO's bytes_acked moved within the
   * timeout: a slow reader, not a dead one); otherwise resets the connection as a slow consumer
   * and returns false. Without TCP_INFO (no native helper) silence alone decides.
   */
  private peerTookBytes(now: number, timeoutMs: number): boolean {
    const life = this.lifecycle();
    const acked = tcpInfo(this.socket)?.bytesAcked;
    if (acked !== undefined && acked !== life.acked) {
      life.acked = acked;
      life.takenAt = now;
    }
    if (now - life.takenAt < timeoutMs) return true;
    const queued = this.bufferedAmount;
    this.reset(
      CloseReason.SLOW_CONSUMER,
      'local',
      new SlowConsumerError(
        `connection ${this.id}: the peer took none of our ${queued} queued bytes for ${timeoutMs} ms`,
        queued,
      ),
    );
    return false;
  }

  /** Re-arms the idle checks that activity cleared (cheap: only when an idle event had fired). */
  private activity(bits: number): void {
    if ((this.idleFired & bits) !== 0) {
      this.idleFired &= ~bits;
      this.checkLiveness();
    }
  }

  private onData(chunk: Buffer): void {
    if (this._state === S.CLOSED) return;
    this.lastReadAt = this.settings.now();
    if (this.heartbeatOutstanding) {
      // The answer (or any byte) came: schedule the next heartbeat from this read.
      this.heartbeatOutstanding = false;
      this.checkLiveness();
    }
    if (this.idleFired !== 0) this.activity(IDLE_READER | IDLE_ALL);
    let frames: Buffer[];
    const decoder = this.decoder;
    try {
      frames = decoder.push(chunk);
    } catch (err) {
      this.protocolError(err);
      return;
    }
    const partial = decoder.bufferedBytes;
    if (partial === 0) this.partialSince = -1;
    else {
      // A frame is incomplete. It is a new one if this read completed another, or none was pending.
      if (this.settings.frameTimeoutMs > 0 && (this.partialSince < 0 || frames.length > 0)) {
        const first = this.partialSince < 0;
        this.partialSince = this.lastReadAt;
        if (first) this.checkLiveness();
      }
      if (this.settings.budget !== undefined && partial >= SPLIT_BUDGET_BYTES) this.budgetChanged();
    }
    if ((this.flags & BUDGETED) !== 0 && partial < SPLIT_BUDGET_BYTES) this.budgetChanged();
    const handler = this.handler;
    for (const f of frames) {
      this.framesRead++;
      if (handler !== undefined) handler.handleFrame(f);
      else this.emit('frame', f);
      // A listener may have aborted the connection: deliver nothing after the close.
      if ((this._state as ConnectionState) === S.CLOSED) return;
    }
  }

  private protocolError(err: unknown): void {
    const error =
      err instanceof FramingError
        ? err
        : new FramingError('ERR_BAD_FRAME_HEADER', `decoder failed: ${(err as Error)?.message}`, {
            cause: err,
          });
    this.setPending(CloseReason.PROTOCOL_ERROR, 'remote', error, true);
    // The stream position is lost: read no further. Queued sends (and any last frame a listener
    // sends from 'protocol-error') are flushed before the FIN; the deadline bounds it.
    this.flags |= STOPPED;
    this.partialSince = -1;
    this.socket.pause();
    this.handler?.handleProtocolError?.(error);
    this.emit('protocol-error', error);
    if (this._state === S.CLOSED || this._state === S.LINGERING) return;
    if (this._state !== S.CLOSING) {
      this.transition(this._state, S.CLOSING);
      this.startDeadline(Math.min(this.settings.closeTimeoutMs, this.settings.remoteEndTimeoutMs));
    }
    this.endWrites();
    this.maybeRelease();
  }

  private onEnd(): void {
    if (this._state === S.CLOSED) return;
    this.lifecycle().remoteEnded = true;
    try {
      this.decoder.end();
    } catch (err) {
      // Node turns an RST that lands on unread data into a clean 'end': a partial frame here
      // is the only evidence that the stream was cut (see docs/errors.md, ERR_FRAME_TRUNCATED).
      this.protocolError(err);
      return;
    }
    this.emit('end');
    switch (this._state) {
      case S.OPEN:
        if (this.settings.allowHalfOpen) {
          this.transition(S.OPEN, S.READ_CLOSED);
          return;
        }
        // No CLOSE_WAIT leak: answer the peer's FIN with ours as soon as our queue is flushed.
        this.setPending(CloseReason.REMOTE_FIN, 'remote', undefined);
        this.transition(S.OPEN, S.CLOSING);
        this.startDeadline(this.settings.remoteEndTimeoutMs);
        this.endWrites();
        this.maybeRelease();
        return;
      case S.WRITE_CLOSED:
        // We sent FIN first (halfClose), the peer answered: an orderly close of ours.
        this.setPending(CloseReason.LOCAL_GRACEFUL, 'local', undefined);
        this.maybeRelease();
        if (this._state === S.WRITE_CLOSED && !this.socket.destroyed) {
          this.transition(S.WRITE_CLOSED, S.CLOSING);
          this.startDeadline(this.settings.remoteEndTimeoutMs);
        }
        return;
      case S.CLOSING:
        this.maybeRelease();
        return;
      case S.READ_CLOSED:
      case S.LINGERING:
        return;
    }
  }

  private onFinish(): void {
    this.lifecycle().writeFinished = true;
    this.maybeRelease();
  }

  private onError(err: NodeJS.ErrnoException): void {
    const life = this.lifecycle();
    if (life.pending?.unsentBytes !== undefined) return; // our own reset: already described
    const unsent = this.outBytes + this.socket.writableLength;
    let next: PendingClose;
    if (err.code === 'ECONNRESET' || err.code === 'EPIPE') {
      next = {
        reason: CloseReason.REMOTE_RESET,
        initiator: 'remote',
        error: new ConnectionResetError(`connection ${this.id} reset by peer (${err.code})`, { cause: err }),
      };
    } else {
      next = {
        reason: CloseReason.SOCKET_ERROR,
        initiator: err.code === 'ETIMEDOUT' ? 'local' : 'remote',
        error: new SocketError(`connection ${this.id} failed: ${err.code ?? err.message}`, { cause: err }),
      };
    }
    // A reset or failure overrides a graceful close in progress: data may have been lost.
    if (life.pending === undefined || GRACEFUL_REASONS.has(life.pending.reason)) {
      life.pending = { ...next, unsentBytes: unsent, unsentKnown: false };
    }
  }

  private onClose(): void {
    if (this._state === S.CLOSED) return;
    // No recorded reason: someone destroyed the socket under us. Not graceful.
    const life = this.lifecycle();
    const p: PendingClose = life.pending ?? {
      reason: CloseReason.LOCAL_ABORT,
      initiator: 'local',
      error: undefined,
      unsentBytes: this.outBytes + this.socket.writableLength,
      unsentKnown: false,
    };
    const unsentBytes = p.unsentBytes ?? this.outBytes + this.socket.writableLength;
    this.dropQueue();
    if ((this.flags & BUDGETED) !== 0) {
      this.flags &= ~BUDGETED;
      this.settings.budget?.remove(this);
    }
    const info: CloseInfo = {
      reason: p.reason,
      initiator: p.initiator,
      graceful: p.unsentBytes === undefined && p.error === undefined && unsentBytes === 0,
      unsentBytes,
      unsentKnown: p.unsentKnown ?? true,
      error: p.error,
      bytesRead: this.socket.bytesRead,
      bytesWritten: this.socket.bytesWritten,
      framesRead: this.framesRead,
      framesWritten: this.framesWritten,
      durationMs: performance.now() - this.openedAt,
    };
    life.info = info;
    this.transition(this._state, S.CLOSED);
    if (closeChannel.hasSubscribers) closeChannel.publish({ connection: this, info });
    life.resolve?.(info);
    this.handler?.handleClose?.(info);
    const writers = life.writers;
    if (writers !== undefined) {
      life.writers = undefined;
      for (const w of writers) {
        w.reject(
          new ConnectionClosedError(
            `connection closed (${info.reason}) before the write drained`,
            info.reason,
            {
              cause: info.error,
            },
          ),
        );
      }
    }
    this.emit('close', info);
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
    this[kOwner]?.onFinish();
  }
  private static onSocketError(this: OwnedSocket, err: NodeJS.ErrnoException): void {
    this[kOwner]?.onError(err);
  }
  private static onSocketClose(this: OwnedSocket): void {
    this[kOwner]?.onClose();
  }
  private static onSocketDrain(this: OwnedSocket): void {
    this[kOwner]?.maybeDrain();
  }
  private static onTimer(conn: Connection): void {
    conn.onTimerFired();
  }
}

// Typed events: merged into the class's instance type.
export interface Connection {
  on<K extends keyof ConnectionEvents>(event: K, listener: (...args: ConnectionEvents[K]) => void): this;
  once<K extends keyof ConnectionEvents>(event: K, listener: (...args: ConnectionEvents[K]) => void): this;
  off<K extends keyof ConnectionEvents>(event: K, listener: (...args: ConnectionEvents[K]) => void): this;
  emit<K extends keyof ConnectionEvents>(event: K, ...args: ConnectionEvents[K]): boolean;
}
