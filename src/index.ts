/**
 * longlink: dependable long-lived TCP connections for Node.js.
 *
 * The public API. Everything else is private (the package `exports` map); the CLI and tests use
 * 'longlink/internal', which has no semver promise.
 */

export type {
  ClientEvents,
  ClientOptions,
  ClientStats,
  ClientStatus,
  Notification,
  ReconnectOptions,
  RequestOptions,
} from './client/client.js';
export { Client, connect, RequestTimeoutError } from './client/client.js';
export type {
  AsciiFramingOptions,
  DelimiterFramingOptions,
  FrameDecoder,
  FrameEncoder,
  Framing,
  LengthFieldFramingOptions,
  LineFramingOptions,
  VarintFramingOptions,
} from './codec/index.js';
export {
  asciiFraming,
  DEFAULT_MAX_FRAME_LENGTH,
  delimiterFraming,
  lengthFieldFraming,
  lineFraming,
  parseFraming,
  u8,
  u16be,
  u16le,
  u24be,
  u32be,
  u32le,
  u64be,
  varintFraming,
} from './codec/index.js';
export type { CloseInfo } from './connection/close-reason.js';
export { CloseReason } from './connection/close-reason.js';
export type {
  CloseOptions,
  ConnectionEvents,
  ConnectionOptions,
  ConnectionStats,
  ConnectionWarning,
  ConnectOptions,
  HeartbeatOptions,
  IdleKind,
  IdleOptions,
} from './connection/connection.js';
export { Connection, ConnectionState } from './connection/connection.js';
export type { LonglinkErrorOptions } from './errors.js';
export {
  AbortedError,
  BadFrameHeaderError,
  CloseTimeoutError,
  ConnectError,
  ConnectionClosedError,
  ConnectionResetError,
  ConnectTimeoutError,
  FrameTooLargeError,
  FramingError,
  HeartbeatTimeoutError,
  InvalidArgumentError,
  LingerExpiredError,
  LonglinkError,
  RequestNotSentError,
  SocketError,
  TruncatedFrameError,
  UnsupportedError,
} from './errors.js';
export type {
  AcquireOptions,
  BreakerState,
  ClientPoolEvents,
  ClientPoolOptions,
  ClientPoolStats,
  ConnectionPoolEvents,
  ConnectionPoolOptions,
  ConnectionPoolStats,
  EndpointAddress,
  EndpointStats,
  LeakInfo,
  PoolEvents,
  PoolFactory,
  PoolOptions,
  PoolRequestOptions,
  PoolStats,
  SharedConnectionStats,
  SharedEndpointStats,
} from './pool/index.js';
export {
  AcquireTimeoutError,
  Balancer,
  ClientPool,
  ConnectionLease,
  ConnectionPool,
  createClientPool,
  createConnectionPool,
  DestroyReason,
  EndpointUnavailableError,
  isConnectionError,
  Lease,
  LeaseDestroyReason,
  LeaseReclaimedError,
  Pool,
  PoolClosedError,
  PoolError,
  PoolFullError,
} from './pool/index.js';
export { ErrorCode, ProtocolError, RemoteError } from './protocol/errors.js';
export type { PayloadCodec } from './protocol/payload.js';
export { jsonCodec, PayloadCodecRegistry, rawCodec } from './protocol/payload.js';
export { PROTOCOL_VERSION } from './protocol/types.js';
export type {
  LegacyContext,
  LegacyOptions,
  ListenOptions,
  ServerEvents,
  ServerOptions,
  ShutdownReport,
} from './server/server.js';
export { createServer, Server } from './server/server.js';
export type { Handler, RequestContext, Router } from './server/server-peer.js';
export type { HeartbeatSetting, HeartbeatTiming } from './session/heartbeat.js';
export { HEARTBEAT_PRESETS, resolveHeartbeat } from './session/heartbeat.js';
export type { KeepAliveOptions, NativeStatus, TcpInfo, TcpState } from './sys/sockopt.js';
export { nativeSocketOptions } from './sys/sockopt.js';
export type { TcpEntry, TcpFilter } from './sys/tcp-table.js';
export { readTcpTable } from './sys/tcp-table.js';
