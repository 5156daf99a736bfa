/**
 * The close state machine of a Connection: graceful close, half-close, linger without blocking,
 * the peer's FIN (never a CLOSE_WAIT leak), errors, and the one 'close' with its reason. Every
 * transition goes through `transition`, which checks it against the table in state.ts, traces it
 * (diagnostics_channel `longlink:connection:state`) and runs the new state's side effects.
 *
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
 *
 * linger(N), without blocking: Linux's SO_LINGER {1,N} would make close() itself wait up to N
 * seconds — on Node's one thread. Instead: flush, FIN, then ask the kernel every 10 ms how many
 * bytes the peer has not acknowledged (SIOCOUTQ, which counts the FIN too).
 *
 *   linger(N) ── flush, FIN ── poll SIOCOUTQ … 0 ─▶ release, { reason: 'local-graceful' }
 *                                     └ N ms pass ─▶ RST, { reason: 'linger-expired', unsentBytes }
 */

import {
  CloseTimeoutError,
  ConnectionClosedError,
  ConnectionResetError,
  type FramingError,
  LingerExpiredError,
  SocketError,
} from '../errors.js';
import { kernelUnacked } from '../sys/sockopt.js';
import { channels } from '../util/channels.js';
import { MAX_TIMER_MS } from '../util/check.js';
import { now } from '../util/clock.js';
import { type CloseInfo, CloseReason } from './close-reason.js';
import { dropQueue, reset, setPending } from './core.js';
import type { CloseOptions } from './options.js';
import {
  BUDGETED,
  type ConnectionCore,
  type ConnectionState,
  GRACEFUL_REASONS,
  lifecycle,
  type PendingClose,
  S,
  STOPPED,
  type TimerKind,
  TRANSITIONS,
} from './state.js';
import { endWrites } from './write-queue.js';

const stateChannel = channels.connectionState;
const closeChannel = channels.connectionClose;

/** How often linger() asks the kernel for its unacknowledged byte count. */
const LINGER_POLL_MS = 10;

/** Moves `c` from `from` to `to`: checked against TRANSITIONS, traced, side effects run. */
export function transition(c: ConnectionCore, from: ConnectionState, to: ConnectionState): void {
  if (c._state !== from || !TRANSITIONS[from].includes(to)) {
    // A bug in this module, not a user error: state the impossible transition loudly.
    throw new Error(`longlink: invalid connection transition ${c._state} (expected ${from}) -> ${to}`);
  }
  c._state = to;
  if (stateChannel.hasSubscribers) stateChannel.publish({ connection: c, from, to });
  // Liveness is checked only while open: leave the wheel (it would hold a closed connection).
  if (from === S.OPEN) c.wheel?.cancel(c);
  switch (to) {
    case S.READ_CLOSED:
      lifecycle(c).halfOpenSince = now();
      arm(c, 'half-open-warn', c.settings.halfOpenWarnMs);
      break;
    case S.CLOSED:
      disarm(c);
      break;
    default:
      break;
  }
  c.emit('state', from, to);
}

/** close(): see the diagram above. Returns once the close is under way. */
export function close(c: ConnectionCore, options: CloseOptions, timeoutMs: number): void {
  switch (c._state) {
    case S.CLOSED:
    case S.CLOSING:
    case S.LINGERING:
      return;
    case S.OPEN:
    case S.WRITE_CLOSED:
    case S.READ_CLOSED:
      if (options.reason !== undefined) {
        setPending(c, options.reason, options.initiator ?? 'local', options.error, true);
      } else if (c.life?.remoteEnded === true) setPending(c, CloseReason.REMOTE_FIN, 'remote', undefined);
      else setPending(c, CloseReason.LOCAL_GRACEFUL, 'local', undefined);
      transition(c, c._state, S.CLOSING);
      startDeadline(c, timeoutMs);
      endWrites(c);
      maybeRelease(c);
      return;
  }
}

/** halfClose(): FIN, keep reading; released at the peer's EOF. */
export function halfClose(c: ConnectionCore): void {
  if (c._state === S.OPEN) {
    transition(c, S.OPEN, S.WRITE_CLOSED);
    endWrites(c);
  } else if (c._state === S.READ_CLOSED) {
    // The peer already finished: our FIN completes an orderly close.
    setPending(c, CloseReason.REMOTE_FIN, 'remote', undefined);
    transition(c, S.READ_CLOSED, S.CLOSING);
    startDeadline(c, c.settings.closeTimeoutMs);
    endWrites(c);
    maybeRelease(c);
  }
}

/** linger(ms), with the kernel's figure readable (the caller falls back to close otherwise). */
export function linger(c: ConnectionCore, ms: number): void {
  setPending(c, CloseReason.LOCAL_GRACEFUL, 'local', undefined, true);
  transition(c, c._state, S.LINGERING);
  endWrites(c);
  const life = lifecycle(c);
  life.deadline = now() + ms;
  life.deadlineMs = ms;
  arm(c, 'linger-poll', Math.min(LINGER_POLL_MS, ms));
}

/** Releases the socket once a graceful close has both sent its FIN and seen the peer's. */
export function maybeRelease(c: ConnectionCore): void {
  if (c._state === S.CLOSED || c._state === S.LINGERING) return;
  const life = c.life;
  if (life === undefined || !life.writeFinished) return;
  const protocolError = life.pending?.reason === CloseReason.PROTOCOL_ERROR;
  // After a protocol error nothing more is read, so there is no EOF to wait for.
  if (life.remoteEnded || protocolError) c.socket.destroy();
}

/** Arms the close deadline: RST with reason close-timeout (or the forced reason) when it passes. */
export function startDeadline(c: ConnectionCore, ms: number): void {
  const life = lifecycle(c);
  life.deadline = now() + ms;
  life.deadlineMs = ms;
  arm(c, 'close-deadline', ms);
}

/** Arms the one timer of a closing connection; re-uses it with refresh() when kind and delay are unchanged. */
function arm(c: ConnectionCore, kind: TimerKind, ms: number): void {
  const life = lifecycle(c);
  const delay = Math.min(MAX_TIMER_MS, Math.max(1, Math.ceil(ms)));
  if (life.timer !== undefined && life.timerKind === kind && life.timerMs === delay) {
    life.timer.refresh();
    return;
  }
  disarm(c);
  life.timerKind = kind;
  life.timerMs = delay;
  life.timer = setTimeout(onTimer, delay, c);
  life.timer.unref();
}

function disarm(c: ConnectionCore): void {
  const life = c.life;
  if (life === undefined) return;
  if (life.timer !== undefined) clearTimeout(life.timer);
  life.timer = undefined;
  life.timerKind = undefined;
}

function onTimer(c: ConnectionCore): void {
  const life = lifecycle(c);
  const kind = life.timerKind;
  life.timer = undefined;
  life.timerKind = undefined;
  switch (kind) {
    case 'close-deadline': {
      if (c._state !== S.CLOSING) return;
      const p = life.pending;
      if (p !== undefined && !GRACEFUL_REASONS.has(p.reason)) {
        // A close forced by an error (e.g. protocol-error) keeps its reason when it times out.
        reset(c, p.reason, p.initiator, p.error);
        return;
      }
      const unacked = kernelUnacked(c.socket) ?? 0;
      const unsent = c.outBytes + c.socket.writableLength + unacked;
      reset(
        c,
        CloseReason.CLOSE_TIMEOUT,
        p?.initiator ?? 'local',
        new CloseTimeoutError(life.deadlineMs, unsent),
      );
      return;
    }
    case 'linger-poll': {
      if (c._state !== S.LINGERING) return;
      const unacked = kernelUnacked(c.socket);
      if (life.writeFinished && unacked === 0) {
        // Every byte and our FIN are acknowledged: what close() with SO_LINGER {1,N} waits for.
        c.socket.destroy();
        return;
      }
      const left = life.deadline - now();
      if (left <= 0) {
        let lost = c.outBytes + c.socket.writableLength + (unacked ?? 0);
        if (life.writeFinished && lost > 0) lost -= 1; // the FIN is not a byte of data
        reset(c, CloseReason.LINGER_EXPIRED, 'local', new LingerExpiredError(life.deadlineMs, lost));
        return;
      }
      arm(c, 'linger-poll', Math.min(LINGER_POLL_MS, left));
      return;
    }
    case 'half-open-warn': {
      if (c._state !== S.READ_CLOSED) return;
      const sinceMs = Math.round(now() - life.halfOpenSince);
      c.emit('warning', {
        code: 'HALF_OPEN_LINGERING',
        message: `connection ${c.id} has been half-open for ${sinceMs} ms since the peer's FIN; close() it`,
        sinceMs,
      });
      arm(c, 'half-open-warn', c.settings.halfOpenWarnMs);
      return;
    }
    case undefined:
      return;
  }
}

/** The peer's FIN: our side closes as soon as our queue is flushed (no CLOSE_WAIT), unless half-open is allowed. */
export function onEnd(c: ConnectionCore): void {
  switch (c._state) {
    case S.OPEN:
      // Half-open when the user asked for it, or while the layer above still owes answers (a
      // client that half-closed after its requests still reads them: the sources' shutdown recipe).
      if (c.settings.allowHalfOpen || c.handler?.handleEnd?.() === true) {
        transition(c, S.OPEN, S.READ_CLOSED);
        return;
      }
      setPending(c, CloseReason.REMOTE_FIN, 'remote', undefined);
      transition(c, S.OPEN, S.CLOSING);
      startDeadline(c, c.settings.remoteEndTimeoutMs);
      endWrites(c);
      maybeRelease(c);
      return;
    case S.WRITE_CLOSED:
      // We sent FIN first (halfClose), the peer answered: an orderly close of ours.
      setPending(c, CloseReason.LOCAL_GRACEFUL, 'local', undefined);
      maybeRelease(c);
      if (c._state === S.WRITE_CLOSED && !c.socket.destroyed) {
        transition(c, S.WRITE_CLOSED, S.CLOSING);
        startDeadline(c, c.settings.remoteEndTimeoutMs);
      }
      return;
    case S.CLOSING:
      maybeRelease(c);
      return;
    case S.READ_CLOSED:
    case S.LINGERING:
    case S.CLOSED:
      return;
  }
}

/** Our FIN was handed to the kernel. */
export function onFinish(c: ConnectionCore): void {
  lifecycle(c).writeFinished = true;
  maybeRelease(c);
}

/** A socket error: a reset or failure overrides a graceful close in progress (data may be lost). */
export function onError(c: ConnectionCore, err: NodeJS.ErrnoException): void {
  const life = lifecycle(c);
  if (life.pending?.unsentBytes !== undefined) return; // our own reset: already described
  const unsent = c.outBytes + c.socket.writableLength;
  let next: PendingClose;
  if (err.code === 'ECONNRESET' || err.code === 'EPIPE') {
    next = {
      reason: CloseReason.REMOTE_RESET,
      initiator: 'remote',
      error: new ConnectionResetError(`connection ${c.id} reset by peer (${err.code})`, { cause: err }),
    };
  } else {
    next = {
      reason: CloseReason.SOCKET_ERROR,
      initiator: err.code === 'ETIMEDOUT' ? 'local' : 'remote',
      error: new SocketError(`connection ${c.id} failed: ${err.code ?? err.message}`, { cause: err }),
    };
  }
  if (life.pending === undefined || GRACEFUL_REASONS.has(life.pending.reason)) {
    life.pending = { ...next, unsentBytes: unsent, unsentKnown: false };
  }
}

/** The socket is released: the one 'close', with everything known about the end. */
export function onSocketClose(c: ConnectionCore): void {
  if (c._state === S.CLOSED) return;
  // No recorded reason: someone destroyed the socket under us. Not graceful.
  const life = lifecycle(c);
  const p: PendingClose = life.pending ?? {
    reason: CloseReason.LOCAL_ABORT,
    initiator: 'local',
    error: undefined,
    unsentBytes: c.outBytes + c.socket.writableLength,
    unsentKnown: false,
  };
  const unsentBytes = p.unsentBytes ?? c.outBytes + c.socket.writableLength;
  dropQueue(c);
  if ((c.flags & BUDGETED) !== 0) {
    c.flags &= ~BUDGETED;
    c.settings.budget?.remove(c);
  }
  const info: CloseInfo = {
    reason: p.reason,
    initiator: p.initiator,
    graceful: p.unsentBytes === undefined && p.error === undefined && unsentBytes === 0,
    unsentBytes,
    unsentKnown: p.unsentKnown ?? true,
    error: p.error,
    bytesRead: c.socket.bytesRead,
    bytesWritten: c.socket.bytesWritten,
    framesRead: c.framesRead,
    framesWritten: c.framesWritten,
    durationMs: now() - c.openedAt,
  };
  life.info = info;
  transition(c, c._state, S.CLOSED);
  if (closeChannel.hasSubscribers) closeChannel.publish({ connection: c, info });
  life.resolve?.(info);
  c.handler?.handleClose?.(info);
  const writers = life.writers;
  if (writers !== undefined) {
    life.writers = undefined;
    const error = new ConnectionClosedError(
      `connection closed (${info.reason}) before the write drained`,
      info.reason,
      { cause: info.error },
    );
    for (const w of writers) w.reject(error);
  }
  c.emit('close', info);
}

/**
 * The peer sent bytes that are not a frame: the stream position is lost, so nothing more is read.
 * Queued sends (and any last frame the layer above sends from its hook) are flushed before the
 * FIN; a deadline bounds it.
 */
export function closeOnProtocolError(c: ConnectionCore, error: FramingError): void {
  // The first protocol error is the reason; bytes that follow it (a broken peer keeps writing) do
  // not replace it with a later one.
  if (c.life?.pending?.reason !== CloseReason.PROTOCOL_ERROR) {
    setPending(c, CloseReason.PROTOCOL_ERROR, 'remote', error, true);
  }
  c.flags |= STOPPED;
  c.partialSince = -1;
  c.socket.pause();
  c.handler?.handleProtocolError?.(error);
  c.emit('protocol-error', error);
  if (c._state === S.CLOSED || c._state === S.LINGERING) return;
  if (c._state !== S.CLOSING) {
    transition(c, c._state, S.CLOSING);
    startDeadline(c, Math.min(c.settings.closeTimeoutMs, c.settings.remoteEndTimeoutMs));
  }
  endWrites(c);
  maybeRelease(c);
}
