/**
 * Socket options Node cannot reach by itself: SO_LINGER, TCP_KEEPINTVL/TCP_KEEPCNT,
 * TCP_USER_TIMEOUT, TCP_INFO and the SIOCOUTQ / SIOCOUTQNSD / SIOCINQ queue figures.
 *
 * They are reached through koffi, an FFI whose binaries ship inside registry packages (no compiler,
 * no download at install). Every call is a few hundred nanoseconds. Where koffi or libc cannot be
 * loaded, or the platform is not Linux, `nativeSocketOptions()` reports why and every helper here
 * returns `undefined` / `false`, so callers degrade instead of failing.
 *
 * Linux only for now: the option numbers below are Linux's (include/uapi/asm-generic/socket.h,
 * include/uapi/linux/tcp.h, include/uapi/linux/sockios.h). macOS and the BSDs number them
 * differently and lack TCP_USER_TIMEOUT; they take the fallback path.
 */

import type { Socket } from 'node:net';
import packageRequire from './package-require.cjs';

const SOL_SOCKET = 1;
const SO_KEEPALIVE = 9;
const SO_LINGER = 13;
const IPPROTO_TCP = 6;
const TCP_KEEPIDLE = 4;
const TCP_KEEPINTVL = 5;
const TCP_KEEPCNT = 6;
const TCP_INFO = 11;
const TCP_USER_TIMEOUT = 18;
const SIOCINQ = 0x541b; // FIONREAD: bytes received, not yet read by the application
const SIOCOUTQ = 0x5411; // TIOCOUTQ: bytes in the send queue not yet acknowledged by the peer
const SIOCOUTQNSD = 0x894b; // bytes in the send queue not yet sent at all

/** A kernel TCP state, as /proc/net/tcp and TCP_INFO report it. */
export type TcpState =
  | 'UNKNOWN'
  | 'ESTABLISHED'
  | 'SYN_SENT'
  | 'SYN_RECV'
  | 'FIN_WAIT1'
  | 'FIN_WAIT2'
  | 'TIME_WAIT'
  | 'CLOSE'
  | 'CLOSE_WAIT'
  | 'LAST_ACK'
  | 'LISTEN'
  | 'CLOSING'
  | 'NEW_SYN_RECV';

/** Kernel TCP states, numbered as in include/net/tcp_states.h and /proc/net/tcp. */
export const TCP_STATES: readonly TcpState[] = [
  'UNKNOWN',
  'ESTABLISHED',
  'SYN_SENT',
  'SYN_RECV',
  'FIN_WAIT1',
  'FIN_WAIT2',
  'TIME_WAIT',
  'CLOSE',
  'CLOSE_WAIT',
  'LAST_ACK',
  'LISTEN',
  'CLOSING',
  'NEW_SYN_RECV',
];

/** The parts of Linux `struct tcp_info` longlink reports. Times in microseconds. */
export interface TcpInfo {
  state: TcpState;
  retransmits: number;
  probes: number;
  backoff: number;
  rtoUs: number;
  rttUs: number;
  rttVarUs: number;
  sndMss: number;
  sndCwnd: number;
  unacked: number;
  lost: number;
  totalRetrans: number;
  lastDataSentMs: number;
  lastDataRecvMs: number;
  lastAckRecvMs: number;
  notSentBytes: number;
  bytesAcked: bigint;
  bytesReceived: bigint;
}

interface Native {
  setsockopt(fd: number, level: number, name: number, value: Buffer, len: number): number;
  getsockopt(fd: number, level: number, name: number, value: Buffer, len: number[]): number;
  ioctl(fd: number, request: number, out: number[]): number;
  errno(): number;
}

/** Whether the native helper loaded, and if not, why. */
export interface NativeStatus {
  available: boolean;
  reason: string;
}

let native: Native | null | undefined;
let status: NativeStatus = { available: false, reason: 'not loaded yet' };

function load(): Native | null {
  if (native !== undefined) return native;
  native = null;
  if (process.platform !== 'linux') {
    status = {
      available: false,
      reason: `native socket options are implemented for Linux, not ${process.platform}`,
    };
    return native;
  }
  try {
    // koffi's types are loose by design; narrow them at this one boundary.
    const koffi = packageRequire('koffi') as {
      load(path: string): { func(decl: string): (...args: unknown[]) => number };
      errno(): number;
    };
    const libc = koffi.load('libc.so.6');
    const setsockopt = libc.func('int setsockopt(int, int, int, const void *, uint32_t)');
    const getsockopt = libc.func('int getsockopt(int, int, int, _Out_ void *, _Inout_ uint32_t *)');
    // ioctl is variadic in C; declared with its one pointer argument, which is how the SysV and
    // AAPCS64 ABIs pass it either way.
    const ioctl = libc.func('int ioctl(int, unsigned long, _Out_ int *)');
    native = {
      setsockopt: (fd, level, name, value, len) => setsockopt(fd, level, name, value, len),
      getsockopt: (fd, level, name, value, len) => getsockopt(fd, level, name, value, len),
      ioctl: (fd, request, out) => ioctl(fd, request, out),
      errno: () => koffi.errno(),
    };
    status = { available: true, reason: 'koffi + libc.so.6' };
  } catch (err) {
    status = { available: false, reason: `koffi could not be loaded: ${(err as Error).message}` };
  }
  return native;
}

/** Loads the native helper on first use and says whether it is usable. */
export function nativeSocketOptions(): NativeStatus {
  load();
  return status;
}

interface HandleLike {
  fd?: unknown;
  _parent?: HandleLike;
}

/**
 * The socket's file descriptor, or undefined (not connected yet, closed, or not fd-backed).
 * A TLS socket's handle wraps the TCP handle in `_parent`; walk down to it.
 */
export function socketFd(socket: Socket): number | undefined {
  let h = (socket as unknown as { _handle?: HandleLike | null })._handle;
  for (let depth = 0; h && depth < 4; depth++) {
    if (typeof h.fd === 'number' && h.fd >= 0) return h.fd;
    h = h._parent;
  }
  return undefined;
}

function int32(value: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeInt32LE(value, 0);
  return b;
}

function setInt(socket: Socket, level: number, name: number, value: number): boolean {
  const n = load();
  const fd = socketFd(socket);
  if (!n || fd === undefined) return false;
  return n.setsockopt(fd, level, name, int32(value), 4) === 0;
}

/**
 * Sets SO_LINGER. `{ onoff: true, seconds: 0 }` makes the next close() of the descriptor send RST
 * and discard the send queue (the sources' linger {1,0}). Never use a non-zero linger with Node:
 * close() would block the event loop for up to `seconds` (see Connection#linger for the
 * non-blocking equivalent).
 */
export function setLinger(socket: Socket, onoff: boolean, seconds: number): boolean {
  const n = load();
  const fd = socketFd(socket);
  if (!n || fd === undefined) return false;
  const l = Buffer.alloc(8);
  l.writeInt32LE(onoff ? 1 : 0, 0);
  l.writeInt32LE(seconds, 4);
  return n.setsockopt(fd, SOL_SOCKET, SO_LINGER, l, 8) === 0;
}

function ioctlInt(socket: Socket, request: number): number | undefined {
  const n = load();
  const fd = socketFd(socket);
  if (!n || fd === undefined) return undefined;
  const out = [0];
  return n.ioctl(fd, request, out) === 0 ? out[0] : undefined;
}

/** Bytes in the kernel send queue the peer has not acknowledged (SIOCOUTQ), FIN included. */
export function kernelUnacked(socket: Socket): number | undefined {
  return ioctlInt(socket, SIOCOUTQ);
}

/** Bytes in the kernel send queue not yet sent at all (SIOCOUTQNSD). */
export function kernelUnsent(socket: Socket): number | undefined {
  return ioctlInt(socket, SIOCOUTQNSD);
}

/** Bytes received by the kernel that the application has not read yet (SIOCINQ). */
export function kernelUnread(socket: Socket): number | undefined {
  return ioctlInt(socket, SIOCINQ);
}

/** TCP keepalive settings (`ConnectionOptions.keepAlive`). */
export interface KeepAliveOptions {
  /** Idle time before the first probe (TCP_KEEPIDLE), ms, rounded up to whole seconds. */
  idleMs: number;
  /** Time between probes (TCP_KEEPINTVL), ms, rounded up to whole seconds. */
  intervalMs: number;
  /** Unanswered probes before the connection is dropped (TCP_KEEPCNT). */
  count: number;
}

/** What setKeepAliveOptions managed to set. */
export interface KeepAliveResult {
  idle: boolean;
  interval: boolean;
  count: boolean;
}

/**
 * Turns TCP keepalive on with all three knobs. Node's `setKeepAlive(true, ms)` sets only the idle
 * time (libuv 1.46 hard-codes 1 s × 10 probes), and with a delay under 1000 ms silently leaves the
 * kernel's 2-hour default, so the idle time is clamped to ≥ 1 s here.
 */
export function setKeepAliveOptions(socket: Socket, o: KeepAliveOptions): KeepAliveResult {
  const idleS = Math.max(1, Math.ceil(o.idleMs / 1000));
  socket.setKeepAlive(true, idleS * 1000);
  return {
    idle: setInt(socket, IPPROTO_TCP, TCP_KEEPIDLE, idleS),
    interval: setInt(socket, IPPROTO_TCP, TCP_KEEPINTVL, Math.max(1, Math.ceil(o.intervalMs / 1000))),
    count: setInt(socket, IPPROTO_TCP, TCP_KEEPCNT, Math.max(1, Math.floor(o.count))),
  };
}

/**
 * TCP_USER_TIMEOUT (RFC 5482): how long transmitted data may stay unacknowledged before the kernel
 * drops the connection with ETIMEDOUT. Without it a socket with unacked data ignores keepalive and
 * retransmits for ~15 minutes (tcp_retries2). 0 restores the system default.
 */
export function setUserTimeout(socket: Socket, ms: number): boolean {
  return setInt(socket, IPPROTO_TCP, TCP_USER_TIMEOUT, Math.max(0, Math.floor(ms)));
}

function getInt(socket: Socket, level: number, name: number): number | undefined {
  const n = load();
  const fd = socketFd(socket);
  if (!n || fd === undefined) return undefined;
  const b = Buffer.alloc(4);
  const len = [4];
  return n.getsockopt(fd, level, name, b, len) === 0 ? b.readInt32LE(0) : undefined;
}

/** The keepalive and user-timeout settings in force on a socket, read back from the kernel. */
export interface KeepAliveState {
  enabled: boolean;
  idleS: number;
  intervalS: number;
  count: number;
  userTimeoutMs: number;
}

/** Reads SO_KEEPALIVE, TCP_KEEPIDLE/INTVL/CNT and TCP_USER_TIMEOUT back (Linux). */
export function keepAliveState(socket: Socket): KeepAliveState | undefined {
  const enabled = getInt(socket, SOL_SOCKET, SO_KEEPALIVE);
  const idleS = getInt(socket, IPPROTO_TCP, TCP_KEEPIDLE);
  const intervalS = getInt(socket, IPPROTO_TCP, TCP_KEEPINTVL);
  const count = getInt(socket, IPPROTO_TCP, TCP_KEEPCNT);
  const userTimeoutMs = getInt(socket, IPPROTO_TCP, TCP_USER_TIMEOUT);
  if (enabled === undefined || idleS === undefined || intervalS === undefined || count === undefined)
    return undefined;
  return { enabled: enabled !== 0, idleS, intervalS, count, userTimeoutMs: userTimeoutMs ?? 0 };
}

/**
 * {@link TcpInfo} as a stats snapshot reports it: the 64-bit byte counters as numbers, so the
 * snapshot survives `JSON.stringify` (a BigInt throws there). A number is exact up to 2^53 bytes.
 */
export type TcpInfoStats = Omit<TcpInfo, 'bytesAcked' | 'bytesReceived'> & {
  bytesAcked: number;
  bytesReceived: number;
};

/** {@link tcpInfo} for a stats snapshot: JSON-safe. */
export function tcpInfoStats(socket: Socket): TcpInfoStats | undefined {
  const info = tcpInfo(socket);
  if (info === undefined) return undefined;
  return { ...info, bytesAcked: Number(info.bytesAcked), bytesReceived: Number(info.bytesReceived) };
}

/** Reads `struct tcp_info` (Linux). Undefined where unavailable. */
export function tcpInfo(socket: Socket): TcpInfo | undefined {
  const n = load();
  const fd = socketFd(socket);
  if (!n || fd === undefined) return undefined;
  const b = Buffer.alloc(232);
  const len = [232];
  if (n.getsockopt(fd, IPPROTO_TCP, TCP_INFO, b, len) !== 0) return undefined;
  const got = len[0] ?? 0;
  return {
    state: TCP_STATES[b[0] ?? 0] ?? 'UNKNOWN',
    retransmits: b[2] ?? 0,
    probes: b[3] ?? 0,
    backoff: b[4] ?? 0,
    rtoUs: b.readUInt32LE(8),
    sndMss: b.readUInt32LE(16),
    unacked: b.readUInt32LE(24),
    lost: b.readUInt32LE(32),
    lastDataSentMs: b.readUInt32LE(44),
    lastDataRecvMs: b.readUInt32LE(52),
    lastAckRecvMs: b.readUInt32LE(56),
    rttUs: b.readUInt32LE(68),
    rttVarUs: b.readUInt32LE(72),
    sndCwnd: b.readUInt32LE(80),
    totalRetrans: b.readUInt32LE(100),
    bytesAcked: got >= 128 ? b.readBigUInt64LE(120) : 0n,
    bytesReceived: got >= 136 ? b.readBigUInt64LE(128) : 0n,
    notSentBytes: got >= 148 ? b.readUInt32LE(144) : 0,
  };
}
