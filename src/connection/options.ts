/**
 * A Connection's options: their types, their defaults, and the one check every connection's
 * options go through (checkOptions). Checked options are immutable, so connections made with the
 * same values share one Settings object (a server's ten thousand connections carry one).
 */

import type tls from 'node:tls';
import { checkInteger } from '../codec/options.js';
import type { Framing } from '../codec/types.js';
import { InvalidArgumentError, type LonglinkError } from '../errors.js';
import type { KeepAliveOptions } from '../sys/sockopt.js';
import { durationOrInfinity, finiteAtLeast, finitePositive } from '../util/check.js';
import type { MemoryBudget } from './budget.js';
import type { CloseReason } from './close-reason.js';

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

/**
 * Coalescing stops at this many queued bytes: they are written at once, and the rest of the tick's
 * sends go out in later writes. With one flush per tick, two peers exchanging windows of small
 * messages fall into lockstep — each sends its whole window in one write, then idles while the
 * other processes it (seen with 256 requests in flight: every read and write exactly one
 * 28 KB window, both processes half idle). Writing the first part of a window early lets the
 * peer work on it while we produce the rest, and the two sides overlap.
 */
export const EARLY_FLUSH_BYTES = 16 * 1024;

/** Heartbeat timing: 0 < intervalMs < timeoutMs, both finite. */
export function checkHeartbeatTiming(h: HeartbeatOptions): void {
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
  /** The heartbeat of `options.heartbeat`, one hook for every connection checked with it. */
  heartbeat: HeartbeatHook | undefined;
}

/** What a heartbeat hook is called with: the connection whose heartbeat is due. */
export interface HeartbeatTarget {
  readonly writable: boolean;
  send(frame: Buffer): boolean;
  /** The protocol layer's handler (see Connection#setHandler), if any. */
  readonly handler: unknown;
}

/**
 * A heartbeat installed by a protocol layer: `ping` sends its PING on `connection`. The hook gets
 * the connection as an argument so that one hook can serve every connection with the same timing
 * (no object or closure per connection).
 */
export interface HeartbeatHook extends HeartbeatOptions {
  ping(connection: HeartbeatTarget): void;
}

/** `options.heartbeat` as a hook: sends its frame (if any) on the connection it is called for. */
class FrameHeartbeat implements HeartbeatHook {
  constructor(
    readonly intervalMs: number,
    readonly timeoutMs: number,
    private readonly frame: Buffer | undefined,
  ) {}
  ping(c: HeartbeatTarget): void {
    const frame = this.frame;
    if (frame !== undefined && c.writable) c.send(frame);
  }
}

/**
 * @internal Checks a Connection's options (InvalidArgumentError on the first bad one). A server
 * checks its connection options once, not per accepted socket, and hands the result to each.
 */
export function checkOptions(options: ConnectionOptions): CheckedOptions {
  if (!options || typeof options.framing?.createDecoder !== 'function') {
    throw new InvalidArgumentError('options.framing must be a Framing (e.g. lengthFieldFraming(...))');
  }
  const hb = options.heartbeat || undefined;
  if (hb !== undefined) checkHeartbeatTiming(hb);
  const heartbeat = hb === undefined ? undefined : new FrameHeartbeat(hb.intervalMs, hb.timeoutMs, hb.frame);
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
export interface Settings {
  readonly highWaterMark: number;
  readonly lowWaterMark: number;
  readonly closeTimeoutMs: number;
  readonly remoteEndTimeoutMs: number;
  readonly halfOpenWarnMs: number;
  readonly allowHalfOpen: boolean;
  readonly earlyFlushBytes: number;
  readonly idle: IdleOptions | undefined;
  readonly frameTimeoutMs: number;
  readonly maxQueuedBytes: number;
  readonly budget: MemoryBudget | undefined;
}

/**
 * Interned settings: a server's connections (or a pool's) all carry the same nine values, and
 * nine fields are 72 bytes per connection. Options with their own idle object or budget get
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
    frameTimeoutMs: finiteAtLeast('frameTimeoutMs', options.frameTimeoutMs, 0),
    maxQueuedBytes: durationOrInfinity('maxQueuedBytes', options.maxQueuedBytes, Number.POSITIVE_INFINITY),
    budget: options.budget,
  };
  if (settings.maxQueuedBytes < highWaterMark) {
    throw new InvalidArgumentError('maxQueuedBytes must not be below highWaterMark');
  }
  if (idle !== undefined || settings.budget !== undefined) return settings;
  const key = `${highWaterMark},${lowWaterMark},${settings.closeTimeoutMs},${settings.remoteEndTimeoutMs},${settings.halfOpenWarnMs},${settings.allowHalfOpen},${settings.earlyFlushBytes},${settings.frameTimeoutMs},${settings.maxQueuedBytes}`;
  const shared = sharedSettings.get(key);
  if (shared !== undefined) return shared;
  if (sharedSettings.size < 256) sharedSettings.set(key, settings);
  return settings;
}
