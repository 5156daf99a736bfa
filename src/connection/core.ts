/**
 * What every part of a Connection needs: recording why it closes, resetting it (RST) from any
 * state, and telling the memory budget what it holds. The write queue, the liveness checks and the
 * close state machine all end in `reset` when the peer misbehaves.
 */

import type net from 'node:net';
import { ConnectionClosedError, type LonglinkError } from '../errors.js';
import { kernelUnacked, setLinger } from '../sys/sockopt.js';
import type { CloseReason } from './close-reason.js';
import { dropOpen } from './slab.js';
import { BUDGETED, type ConnectionCore, GRACEFUL_REASONS, lifecycle, RESET } from './state.js';

/**
 * Resets the connection: RST, send queue discarded (the sources' SO_LINGER {1,0}).
 *
 * Node's own resetAndDestroy() is unsafe once end() has been called: libuv refuses to reset a
 * stream with a shutdown pending (uv_tcp_close_reset → EINVAL), and Node 20 then never emits
 * 'close', leaks the descriptor and spins a core. Setting SO_LINGER {1,0} on the descriptor and
 * destroying the socket makes the kernel's close() send the RST whatever state the stream is in.
 * Returns whether an RST was sent (false: the platform only allowed a plain close).
 */
export function resetSocket(socket: net.Socket): boolean {
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

/** Records why the connection is closing. The first reason wins, except that an error replaces a graceful one. */
export function setPending(
  c: ConnectionCore,
  reason: CloseReason,
  initiator: 'local' | 'remote',
  error: LonglinkError | undefined,
  force = false,
): void {
  const life = lifecycle(c);
  const p = life.pending;
  if (force || p === undefined || (GRACEFUL_REASONS.has(p.reason) && !GRACEFUL_REASONS.has(reason))) {
    life.pending = { reason, initiator, error };
  }
}

/** Drops what is queued in user space (a reset, or a socket that can take no more). */
export function dropQueue(c: ConnectionCore): void {
  dropOpen(c);
  c.out1 = undefined;
  c.outq = undefined;
  c.outBytes = 0;
}

/**
 * Resets now, from any state: measures what the reset discards (our queue, Node's queue and the
 * kernel's unacknowledged bytes, minus a FIN SIOCOUTQ counts as one), then RST. 'close' follows.
 */
export function reset(
  c: ConnectionCore,
  reason: CloseReason,
  initiator: 'local' | 'remote',
  error: LonglinkError | undefined,
): void {
  if (c._state === 'closed' || c.socket.destroyed) return;
  c.flags |= RESET;
  let kernel = kernelUnacked(c.socket);
  const life = lifecycle(c);
  if (kernel !== undefined && life.writeFinished && kernel > 0) kernel -= 1;
  const userSpace = c.outBytes + c.socket.writableLength;
  life.pending = {
    reason,
    initiator,
    error,
    unsentBytes: userSpace + (kernel ?? 0),
    unsentKnown: kernel !== undefined,
  };
  dropQueue(c);
  resetSocket(c.socket);
}

/** What the connection holds changed: the budget counts it while it holds at least its threshold. */
export function budgetChanged(c: ConnectionCore): void {
  const budget = c.settings.budget;
  if (budget === undefined || (c.flags & RESET) !== 0) return;
  if (budget.update(c)) c.flags |= BUDGETED;
  else c.flags &= ~BUDGETED;
}

/**
 * The error a send on a connection that takes no more sends throws. A reset leaves `_state` as it
 * was until the socket's 'close' ("open" then would read as a contradiction): say so instead.
 */
export function notWritable(c: ConnectionCore): ConnectionClosedError {
  const reason = c.life?.info?.reason ?? c.life?.pending?.reason;
  const resetting = (c.flags & RESET) !== 0 && c._state !== 'closed';
  const what = resetting ? `being reset${reason === undefined ? '' : ` (${reason})`}` : c._state;
  return new ConnectionClosedError(`connection ${c.id} is ${what}; it takes no more sends`, reason);
}
