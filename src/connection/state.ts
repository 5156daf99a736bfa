/**
 * A connection's state as data: its lifecycle states and the allowed transitions, the fields every
 * part of a Connection works on (ConnectionCore: the write queue, the close state machine, the
 * liveness checks and the dialer are module functions over these fields, as undici's client-h1 is,
 * so a connection stays one object), the close-time state made on first use, and the events,
 * stats and hooks a Connection offers.
 */

import type net from 'node:net';
import type { FrameDecoder, Framing } from '../codec/types.js';
import type { FramingError, LonglinkError, OverloadError } from '../errors.js';
import type { TcpInfoStats } from '../sys/sockopt.js';
import { now } from '../util/clock.js';
import type { TimerWheel } from '../util/wheel.js';
import { type CloseInfo, CloseReason } from './close-reason.js';
import type { HeartbeatHook, Settings } from './options.js';

export type { HeartbeatHook, HeartbeatTarget } from './options.js';

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

export const S = ConnectionState;
export const TRANSITIONS: Readonly<Record<ConnectionState, readonly ConnectionState[]>> = {
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

/** Which idle threshold passed. */
export type IdleKind = 'reader' | 'writer' | 'all';

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

/** Reasons of an orderly close, which a later error (a reset, a timeout) may still replace. */
export const GRACEFUL_REASONS: ReadonlySet<CloseReason> = new Set([
  CloseReason.LOCAL_GRACEFUL,
  CloseReason.REMOTE_FIN,
  CloseReason.GOING_AWAY,
  CloseReason.IDLE_TIMEOUT,
]);
/**
 * The liveness clock: the one clock (util/clock.ts) in whole milliseconds. V8 keeps an integer
 * field in the object itself, while a fractional one is a separate 16-byte number; liveness needs
 * no finer grain.
 */
export function wholeMs(): number {
  return Math.floor(now());
}

/** What a layer above (the protocol) hooks into, instead of event listeners on every connection. */
export interface ConnectionHandler {
  /** Each frame, instead of a `'frame'` event. */
  handleFrame(frame: Buffer): void;
  /** Before the `'protocol-error'` event. */
  handleProtocolError?(error: FramingError): void;
  /** Before the `'close'` event. */
  handleClose?(info: CloseInfo): void;
  /**
   * The peer's FIN was read, after every frame it sent. Return true to keep our side open (the
   * connection goes half-open, still writable) because answers are still owed: the layer above
   * then closes once it owes nothing. False (or no hook): our FIN follows as soon as the queue is
   * flushed — no CLOSE_WAIT.
   */
  handleEnd?(): boolean;
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
export const STOPPED = 8;
/** reset() ran: the socket is being destroyed; nothing more is taken. */
export const RESET = 16;
/** Counted by the budget (holds at least its threshold). */
export const BUDGETED = 32;
/** Three booleans kept as flag bits (one field instead of three on every connection). */
export const FLUSH_SCHEDULED = 64;
export const NEED_DRAIN = 128;
export const HEARTBEAT_OUTSTANDING = 256;
export const HOLD_MASK = ReadHold.USER | ReadHold.BACKPRESSURE | ReadHold.BUSY;

export interface PendingClose {
  reason: CloseReason;
  initiator: 'local' | 'remote';
  error: LonglinkError | undefined;
  /** Bytes discarded, measured just before the reset; undefined → measure at release. */
  unsentBytes?: number;
  unsentKnown?: boolean;
}

export type TimerKind = 'close-deadline' | 'linger-poll' | 'half-open-warn';

export const IDLE_READER = 1;
export const IDLE_WRITER = 2;
export const IDLE_ALL = 4;

/**
 * What only a closing, half-open or awaited connection needs. Made on first use, so an open idle
 * connection (the one there are tens of thousands of) carries one empty pointer instead of a
 * dozen fields.
 */
export class Lifecycle {
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
 * The fields of a Connection that its parts work on. A Connection is exactly this plus its public
 * methods; the modules (write-queue, liveness, closing) are functions over it. Every field here
 * is internal: not in the published types, no semver promise.
 */
export interface ConnectionCore {
  readonly socket: net.Socket;
  readonly framing: Framing;
  readonly decoder: FrameDecoder;
  /** Validated options, shared by every connection made with the same values. */
  readonly settings: Settings;
  readonly openedAt: number;
  readonly id: string;
  readonly bufferedAmount: number;
  readonly writable: boolean;
  send(frame: Buffer): boolean;
  _state: ConnectionState;
  /** Frames encoded but not yet handed to the socket: the one queued chunk (the usual case: no array) … */
  out1: Buffer | undefined;
  /** … or, once a second comes, all of them. */
  outq: Buffer[] | undefined;
  outBytes: number;
  flushScheduled: boolean;
  needDrain: boolean;
  framesRead: number;
  framesWritten: number;
  /** Heartbeat, idle and frame-deadline checks run on a shared wheel (no timer per connection). */
  wheel: TimerWheel | undefined;
  wheelTick: number;
  wheelIndex: number;
  /** Liveness bookkeeping: stamped once per read batch / flush (whole ms); the wheel does the arithmetic. */
  lastReadAt: number;
  lastWriteAt: number;
  heartbeat: HeartbeatHook | undefined;
  /** A heartbeat was sent and nothing has been read since: at most one outstanding. */
  heartbeatOutstanding: boolean;
  /** Idle events fired in the current idle period (IDLE_* bits); cleared by activity. */
  idleFired: number;
  /** ReadHold bits, STOPPED, RESET, BUDGETED. */
  flags: number;
  /** When the frame being received started (whole ms; -1: none), for frameTimeoutMs. */
  partialSince: number;
  handler: ConnectionHandler | undefined;
  /** Close-time state, made on first use (see Lifecycle). */
  life: Lifecycle | undefined;
  emit(event: string | symbol, ...args: unknown[]): boolean;
  /** WheelEntry: the wheel's callback. */
  onWheel(): void;
  /** `idle.close`: an idle threshold passed; close gracefully with reason `idle-timeout`. */
  closeIdle(): void;
  /** BudgetMember: bytes held for the peer, and how to let go of them. */
  heldBytes(): number;
  shed(error: OverloadError): void;
}

/** The close-time state, made on first use. */
export function lifecycle(c: ConnectionCore): Lifecycle {
  c.life ??= new Lifecycle();
  return c.life;
}
