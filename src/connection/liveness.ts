/**
 * Liveness, on the shared timer wheel: the heartbeat (PING when nothing was read for the
 * interval, death when nothing was read for the timeout), Netty-style idle events, and the
 * deadline of a frame in progress (slow senders). Connections hold no timer of their own: each is
 * filed on the wheel for the earliest of its checks, and the wheel's firing does the arithmetic.
 *
 * Liveness (gRPC's keepalive rules, "A8"): any byte read is proof of life, and the next heartbeat
 * is scheduled from the last byte read, so a busy connection sends none. At most one heartbeat is
 * outstanding. `timeoutMs` after the last read the peer is declared dead and the connection is
 * aborted — a graceful close on a dead peer would only hang (grpc-node#2953).
 *
 *   last read ──── intervalMs ────▶ heartbeat sent ──── … ────▶ timeoutMs: RST, 'heartbeat-timeout'
 *        └── any read in between restarts both clocks
 *
 * Detection bound: timeoutMs after the last byte read, plus up to one tick of the shared wheel
 * (intervalMs / 50 rounded down to a power of two, ≤ 1,024 ms: 16 ms for a 1 s interval), plus
 * event-loop lag.
 */

import { FrameTimeoutError, HeartbeatTimeoutError, SlowConsumerError } from '../errors.js';
import { tcpInfo } from '../sys/sockopt.js';
import { wheelFor } from '../util/wheel.js';
import { CloseReason } from './close-reason.js';
import { reset } from './core.js';
import {
  type ConnectionCore,
  HOLD_MASK,
  IDLE_ALL,
  IDLE_READER,
  IDLE_WRITER,
  type IdleKind,
  lifecycle,
  RESET,
  ReadHold,
  S,
  wholeMs,
} from './state.js';

/** The wheel for the shortest liveness period: its tick (≤ 2% of the period) is the checks' precision. */
export function pickWheel(c: ConnectionCore): void {
  let period = c.heartbeat?.intervalMs ?? Number.POSITIVE_INFINITY;
  const ft = c.settings.frameTimeoutMs;
  if (ft > 0 && ft < period) period = ft;
  const idle = c.settings.idle;
  if (idle !== undefined) {
    for (const ms of [idle.readerMs, idle.writerMs, idle.allMs]) {
      if (ms !== undefined && ms > 0 && ms < period) period = ms;
    }
  }
  const wheel = period === Number.POSITIVE_INFINITY ? undefined : wheelFor(period);
  if (wheel !== c.wheel) {
    c.wheel?.cancel(c);
    c.wheel = wheel;
  }
}

/** Runs when the liveness tick comes (and when settings change): frame deadline, heartbeat, death, idleness. */
export function checkLiveness(c: ConnectionCore): void {
  if (c._state !== S.OPEN || (c.flags & RESET) !== 0) return;
  const hb = c.heartbeat;
  const idle = c.settings.idle;
  const ft = c.settings.frameTimeoutMs;
  if (hb === undefined && idle === undefined && (ft === 0 || c.partialSince < 0)) {
    c.wheel?.cancel(c);
    return;
  }
  const holds = c.flags & HOLD_MASK;
  if ((holds & ReadHold.BUSY) !== 0) {
    // Held paused because we are busy: the peer's bytes wait unread in the kernel, so its
    // silence proves nothing, and its frame cannot advance. The checks resume with reading
    // (release() runs this again); the detection bound is extended by the time held.
    c.wheel?.cancel(c);
    return;
  }
  const now = wholeMs();
  let next = Number.POSITIVE_INFINITY;
  if (ft > 0 && c.partialSince >= 0 && holds === 0) {
    if (now - c.partialSince >= ft) {
      reset(c, CloseReason.FRAME_TIMEOUT, 'remote', new FrameTimeoutError(c.decoder.bufferedBytes, ft));
      return;
    }
    next = c.partialSince + ft;
  }
  if (hb !== undefined) {
    const silentFor = now - c.lastReadAt;
    if (silentFor >= hb.timeoutMs) {
      if ((holds & ReadHold.BACKPRESSURE) !== 0) {
        // We stopped reading because the peer does not take our bytes. Dead, or just slow?
        // The kernel's acknowledged count says whether it took any since we last looked.
        if (!peerTookBytes(c, now, hb.timeoutMs)) return;
        next = Math.min(next, now + hb.intervalMs);
      } else {
        reset(
          c,
          CloseReason.HEARTBEAT_TIMEOUT,
          'local',
          new HeartbeatTimeoutError(Math.round(silentFor), hb.timeoutMs),
        );
        return;
      }
    }
    if (silentFor < hb.timeoutMs) next = Math.min(next, c.lastReadAt + hb.timeoutMs);
    if (silentFor >= hb.intervalMs) {
      if (!c.heartbeatOutstanding) {
        c.heartbeatOutstanding = true;
        c.emit('heartbeat');
        hb.ping(c);
        if (c._state !== S.OPEN) return;
      }
    } else {
      next = Math.min(next, c.lastReadAt + hb.intervalMs);
    }
  }
  if (idle !== undefined) {
    const lastAny = Math.max(c.lastReadAt, c.lastWriteAt);
    const checks: Array<[number, number | undefined, number, IdleKind]> = [
      [IDLE_READER, idle.readerMs, c.lastReadAt, 'reader'],
      [IDLE_WRITER, idle.writerMs, c.lastWriteAt, 'writer'],
      [IDLE_ALL, idle.allMs, lastAny, 'all'],
    ];
    for (const [bit, ms, since, kind] of checks) {
      if (ms === undefined || ms <= 0 || (c.idleFired & bit) !== 0) continue;
      if (now - since >= ms) {
        c.idleFired |= bit;
        c.emit('idle', kind);
        if (idle.close === true && c._state === S.OPEN) {
          c.closeIdle();
          return;
        }
        if (c._state !== S.OPEN) return;
      } else {
        next = Math.min(next, since + ms);
      }
    }
  }
  const wheel = c.wheel;
  if (wheel === undefined) return;
  if (next !== Number.POSITIVE_INFINITY) wheel.schedule(c, next - now);
  else wheel.cancel(c);
}

/**
 * Reading is paused for backpressure and the peer has been silent for the heartbeat timeout.
 * Returns true while it still takes our bytes (TCP_INFO's bytes_acked moved within the
 * timeout: a slow reader, not a dead one); otherwise resets the connection as a slow consumer
 * and returns false. Without TCP_INFO (no native helper) silence alone decides.
 */
function peerTookBytes(c: ConnectionCore, now: number, timeoutMs: number): boolean {
  const life = lifecycle(c);
  const acked = tcpInfo(c.socket)?.bytesAcked;
  if (acked !== undefined && acked !== life.acked) {
    life.acked = acked;
    life.takenAt = now;
  }
  if (now - life.takenAt < timeoutMs) return true;
  const queued = c.bufferedAmount;
  reset(
    c,
    CloseReason.SLOW_CONSUMER,
    'local',
    new SlowConsumerError(
      `connection ${c.id}: the peer took none of our ${queued} queued bytes for ${timeoutMs} ms`,
      queued,
    ),
  );
  return false;
}

/** Re-arms the idle checks that activity cleared (cheap: only when an idle event had fired). */
export function activity(c: ConnectionCore, bits: number): void {
  if ((c.idleFired & bits) !== 0) {
    c.idleFired &= ~bits;
    checkLiveness(c);
  }
}
