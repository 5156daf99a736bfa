/**
 * What lease mode knows about each pooled connection, and what makes a released one clean.
 *
 * "Clean" is the whole point of lease mode (connection-pool.ts). A connection handed back with a
 * reply still on its way, half a frame in the decoder, unread bytes in the kernel, a write still
 * waiting for 'drain', or the peer's FIN already in would hand the *next* borrower somebody
 * else's answer or a dead socket. Each is checked on release ({@link inspectRelease}) and the
 * connection is destroyed with a reason instead. Idle connections are watched as events arrive:
 * a FIN, an RST or an unsolicited frame evicts them at once (stale pooled sockets are undici's
 * most reported failure, undici#3492). The listeners live at module scope and reach their
 * bookkeeping through the connection: no closure per connection.
 */

import type { CloseInfo } from '../connection/close-reason.js';
import type { Connection } from '../connection/connection.js';
import { ConnectionClosedError } from '../errors.js';
import { kernelUnread } from '../sys/sockopt.js';
import type { PoolEndpoint } from './endpoint-set.js';

/** Pool destroy reasons specific to lease mode (release checks and connection events). */
export const LeaseDestroyReason = {
  /** Released while a `lease.request()` still waited for its reply. */
  REQUEST_IN_FLIGHT: 'request-in-flight',
  /** A `lease.request()` was aborted: its reply may still arrive. */
  REQUEST_ABORTED: 'request-aborted',
  /** A `lease.request()` got no reply within its `timeoutMs`: the late reply would reach the next borrower. */
  REQUEST_TIMEOUT: 'request-timeout',
  /** Frames arrived during the lease that nobody listened to. */
  UNREAD_FRAMES: 'unread-frames',
  /** The decoder holds part of a frame: the stream is mid-message. */
  PARTIAL_FRAME: 'partial-frame',
  /** Bytes wait unread (Node's buffer or the kernel's receive queue). */
  UNREAD_DATA: 'unread-data',
  /** Released with reading paused (`connection.pause()`): what is queued behind is unknown. */
  PAUSED: 'paused',
  /** Released while a `connection.write()` still waited for 'drain'. */
  WRITE_IN_FLIGHT: 'write-in-flight',
  /** Released after the connection stopped being open (peer FIN, close() by the borrower…). */
  NOT_OPEN: 'not-open',
  /** An idle connection received a frame nobody asked for. */
  UNSOLICITED_DATA: 'unsolicited-data',
  /** The peer sent FIN while the connection was idle. */
  PEER_FIN: 'peer-fin',
  /** The endpoint was removed with removeEndpoint(). */
  ENDPOINT_REMOVED: 'endpoint-removed',
} as const;

/** @internal Who hears that a pooled connection was lost without the pool asking. */
export interface LeaseOwner {
  connectionLost(m: ConnMeta, info: CloseInfo): void;
}

/** @internal A `lease.request()` waiting for its reply. */
export interface PendingRequest {
  resolve: (frame: Buffer) => void;
  reject: (err: unknown) => void;
}

const kMeta = Symbol('longlink.pool.connection');

/** @internal What the pool knows about one of its connections. */
export class ConnMeta {
  borrowed = false;
  unread = 0;
  request: PendingRequest | undefined = undefined;
  dirty: string | undefined = undefined;
  closingByPool = false;
  /**
   * socket.bytesWritten if the lease only sent through `lease.request()` (set at lend, grown by
   * each request). A lease that did nothing else needs no kernel look at release (see inspectRelease).
   */
  expectWritten = 0;
  constructor(
    readonly owner: LeaseOwner,
    readonly ep: PoolEndpoint<Connection>,
  ) {}
}

type Pooled = Connection & { [kMeta]?: ConnMeta };

/** @internal The pool's bookkeeping of `conn`, if it is a pooled connection. */
export function metaOf(conn: Connection): ConnMeta | undefined {
  return (conn as Pooled)[kMeta];
}

/** @internal Makes `conn` a pooled connection: its bookkeeping, and the pool's listeners. */
export function attachMeta(conn: Connection, m: ConnMeta): void {
  (conn as Pooled)[kMeta] = m;
  conn.on('frame', onPooledFrame);
  conn.on('end', onPooledEnd);
  conn.on('close', onPooledClose);
}

// Connection listeners at module scope, reaching their bookkeeping through the connection.
function onPooledFrame(this: Connection, frame: Buffer): void {
  const m = metaOf(this);
  if (m === undefined) return;
  const r = m.request;
  if (r !== undefined) {
    m.request = undefined;
    r.resolve(frame);
    return;
  }
  if (this.listenerCount('frame') > 1) return; // the borrower (or a validator) listens
  m.unread++;
  if (!m.borrowed && !m.closingByPool) m.ep.pool.evict(this, LeaseDestroyReason.UNSOLICITED_DATA);
}

function onPooledEnd(this: Connection): void {
  const m = metaOf(this);
  // Connection answers the FIN with its own close; take an idle one out of the pool right now.
  if (m !== undefined && !m.borrowed && !m.closingByPool) m.ep.pool.evict(this, LeaseDestroyReason.PEER_FIN);
}

function onPooledClose(this: Connection, info: CloseInfo): void {
  const m = metaOf(this);
  if (m === undefined) return;
  const r = m.request;
  if (r !== undefined) {
    m.request = undefined;
    r.reject(
      new ConnectionClosedError(
        `connection ${this.id} closed (${info.reason}) before the reply`,
        info.reason,
        {
          cause: info.error,
        },
      ),
    );
  }
  if (!m.closingByPool) {
    m.ep.pool.evict(this, `closed-${info.reason}`);
    m.owner.connectionLost(m, info);
  }
}

const OWN_LISTENERS: ReadonlySet<unknown> = new Set([onPooledFrame, onPooledEnd, onPooledClose]);
const BORROWER_EVENTS = ['frame', 'end', 'close', 'drain', 'protocol-error', 'warning', 'state'] as const;

const CONNECTION_ERROR_CODES: ReadonlySet<string> = new Set([
  'ERR_CONNECTION_CLOSED',
  'ERR_CONNECTION_RESET',
  'ERR_SOCKET',
  'ERR_CLOSE_TIMEOUT',
  'ERR_LINGER_EXPIRED',
  'ERR_FRAME_TOO_LARGE',
  'ERR_BAD_FRAME_HEADER',
  'ERR_FRAME_TRUNCATED',
  'ERR_LEASE_RECLAIMED',
  // Raw socket errors, for borrowers that use connection.socket directly.
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'ECONNABORTED',
  'EHOSTUNREACH',
  'ENETUNREACH',
]);

/** Whether an error thrown while using a connection means the connection is broken. */
export function isConnectionError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && CONNECTION_ERROR_CODES.has(code);
}

/**
 * The release check of lease mode: is this connection fit for the next borrower? Order matters
 * only for which reason is reported; any one of them destroys the connection.
 */
export function inspectRelease(conn: Connection): string | undefined {
  const m = metaOf(conn);
  if (m === undefined) return LeaseDestroyReason.NOT_OPEN;
  if (conn.state !== 'open') return LeaseDestroyReason.NOT_OPEN;
  if (m.dirty !== undefined) return m.dirty;
  if (m.request !== undefined) return LeaseDestroyReason.REQUEST_IN_FLIGHT;
  if (m.unread > 0) return LeaseDestroyReason.UNREAD_FRAMES;
  if (conn.pendingFrameBytes > 0) return LeaseDestroyReason.PARTIAL_FRAME;
  const socket = conn.socket;
  if (socket.isPaused()) return LeaseDestroyReason.PAUSED;
  if (socket.readableLength > 0) return LeaseDestroyReason.UNREAD_DATA;
  // write() parks its callers in the connection (one list, no 'drain' listener each).
  if (conn.writesWaiting > 0) return LeaseDestroyReason.WRITE_IN_FLIGHT;
  for (const l of conn.rawListeners('drain')) {
    if (!OWN_LISTENERS.has(l)) return LeaseDestroyReason.WRITE_IN_FLIGHT;
  }
  // Bytes the kernel holds that Node has not read yet: a reply on its way in when the borrower
  // let go. Only a borrower that wrote more than its lease.request() round trips can have one
  // pending (a reply's stray second frame arrives with the reply and is counted as unread), so
  // the syscall is skipped for those — it is a tenth of a lease's CPU on loopback.
  if (socket.bytesWritten !== m.expectWritten) {
    const unread = kernelUnread(socket);
    if (unread !== undefined && unread > 0) return LeaseDestroyReason.UNREAD_DATA;
  }
  // Clean. Drop what the borrower attached, so the next one does not inherit its listeners.
  for (const event of BORROWER_EVENTS) {
    for (const l of conn.rawListeners(event)) {
      if (!OWN_LISTENERS.has(l)) conn.removeListener(event, l as (...args: unknown[]) => void);
    }
  }
  return undefined;
}
