import type { LonglinkError } from '../errors.js';

/**
 * Why a connection closed: a closed set, so users can `switch` on it. Every close reports exactly
 * one. docs/errors.md lists them with who initiates each.
 */
export const CloseReason = {
  /** We closed gracefully: our data flushed, FIN sent, the peer's EOF seen (or, for linger, every byte acknowledged). */
  LOCAL_GRACEFUL: 'local-graceful',
  /** We aborted: RST sent, queued data discarded (the sources' linger {1,0}). */
  LOCAL_ABORT: 'local-abort',
  /** The peer sent FIN first; we flushed what we had queued and closed our side. */
  REMOTE_FIN: 'remote-fin',
  /** The peer reset the connection (ECONNRESET / EPIPE). */
  REMOTE_RESET: 'remote-reset',
  /** linger(): the deadline passed before the peer acknowledged every byte; RST sent. */
  LINGER_EXPIRED: 'linger-expired',
  /** A graceful close (ours, or the one that follows the peer's FIN) missed its deadline; RST sent. */
  CLOSE_TIMEOUT: 'close-timeout',
  /** The peer sent bytes that are not a valid frame (or the stream ended inside a frame). */
  PROTOCOL_ERROR: 'protocol-error',
  /** Any other socket failure (ETIMEDOUT, EHOSTUNREACH …). */
  SOCKET_ERROR: 'socket-error',
  /** The peer missed its heartbeats (declared dead within the stated bound); closed abortively. */
  HEARTBEAT_TIMEOUT: 'heartbeat-timeout',
  /** Nothing was read or written for longer than the idle timeout. */
  IDLE_TIMEOUT: 'idle-timeout',
  /** The peer announced it is going away (GOAWAY) and the connection was closed after draining. */
  GOING_AWAY: 'going-away',
  /**
   * A frame's first bytes arrived and the rest did not within `frameTimeoutMs` (a slow sender
   * holding a buffer open, slowloris-style); reset.
   */
  FRAME_TIMEOUT: 'frame-timeout',
  /** The peer did not read what we sent: our queue passed `maxQueuedBytes` (or it stayed silent while we waited); reset. */
  SLOW_CONSUMER: 'slow-consumer',
  /** The process's memory budget was exceeded and this connection held the most; reset to free it. */
  OVERLOAD: 'overload',
  /** Refused at admission (a limit, an untrusted or missing PROXY header, a failed TLS handshake). */
  REFUSED: 'refused',
  /** The application's handler could not answer (threw, or its answer could not be encoded or sent) on a protocol without a way to say so. */
  HANDLER_ERROR: 'handler-error',
} as const;
export type CloseReason = (typeof CloseReason)[keyof typeof CloseReason];

/** Everything known about a connection's end. Emitted once, with the `'close'` event. */
export interface CloseInfo {
  reason: CloseReason;
  /** Which side started the close. */
  initiator: 'local' | 'remote';
  /**
   * True when no data was lost in either direction: both FINs exchanged in order (or, for
   * linger, every byte acknowledged) and no RST.
   */
  graceful: boolean;
  /**
   * Bytes accepted by `send()` that the peer had not received or acknowledged when the
   * connection ended: user-space queue plus, where the kernel's figure is readable, its
   * unacknowledged send queue.
   */
  unsentBytes: number;
  /** Whether `unsentBytes` includes the kernel's send queue (false where it cannot be read). */
  unsentKnown: boolean;
  /** The error behind the close, if any (typed: see docs/errors.md). */
  error: LonglinkError | undefined;
  bytesRead: number;
  bytesWritten: number;
  framesRead: number;
  framesWritten: number;
  /** Connection lifetime in milliseconds. */
  durationMs: number;
}
