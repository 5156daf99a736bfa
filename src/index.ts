/**
 * longlink: dependable long-lived TCP connections for Node.js.
 *
 * The public API, deliberately small: clients and servers, Connection and the framings, pools, the
 * errors to match on, and the types of their options, events and stats. Everything else is private
 * (the package `exports` map); the CLI, tests and benchmarks use 'longlink/internal', which
 * exports everything and has no semver promise.
 *
 * @packageDocumentation
 */

export type { RedisBrokerOptions } from './broker/redis.js';
export { redisBroker } from './broker/redis.js';
export type {
  ClientEvents,
  ClientOptions,
  ClientStats,
  ClientStatus,
  Notification,
  ReconnectOptions,
  RequestOptions,
  RoomGap,
  RoomPush,
} from './client/client.js';
export { Client, connect, RequestTimeoutError } from './client/client.js';
export type {
  AsciiFramingOptions,
  DelimiterFramingOptions,
  FrameDecoder,
  FrameEncoder,
  Framing,
  LengthFieldFramingOptions,
  LengthFieldLength,
  LineFramingOptions,
  ParseFramingOptions,
  VarintFramingOptions,
} from './codec/index.js';
export {
  asciiFraming,
  DEFAULT_MAX_FRAME_LENGTH,
  delimiterFraming,
  lengthFieldFraming,
  lineFraming,
  parseFraming,
  varintFraming,
} from './codec/index.js';
export type { BudgetMember, MemoryBudgetStats } from './connection/budget.js';
export { MemoryBudget } from './connection/budget.js';
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
export type { LonglinkErrorOptions, ProxyHeaderErrorReason, RoomLimit } from './errors.js';
export {
  AbortedError,
  BadFrameHeaderError,
  BrokerUnavailableError,
  CloseTimeoutError,
  ConnectError,
  ConnectionClosedError,
  ConnectionResetError,
  ConnectTimeoutError,
  FrameTimeoutError,
  FrameTooLargeError,
  FramingError,
  HeartbeatTimeoutError,
  InvalidArgumentError,
  LingerExpiredError,
  LonglinkError,
  MissingDependencyError,
  OverloadError,
  ProxyHeaderError,
  RequestNotSentError,
  RoomLimitError,
  SlowConsumerError,
  SocketError,
  TruncatedFrameError,
  UnsupportedError,
} from './errors.js';
export type {
  AdminConnection,
  AdminConnections,
  AdminOptions,
  AdminServer,
  AdminSummary,
  ConnectionSort,
} from './observe/admin.js';
export { serveAdmin } from './observe/admin.js';
export type {
  LonglinkMetrics,
  MetricsClient,
  MetricsOptions,
  MetricsPool,
  MetricsPoolStats,
  MetricsRegistry,
} from './observe/metrics.js';
export { enableMetrics } from './observe/metrics.js';
export type { LonglinkTracing, TracerProviderLike, TracingOptions } from './observe/tracing.js';
export { enableTracing } from './observe/tracing.js';
export type {
  AcquireOptions,
  BreakerState,
  ClientPoolEvents,
  ClientPoolOptions,
  ClientPoolStats,
  ConnectionPoolEvents,
  ConnectionPoolOptions,
  ConnectionPoolStats,
  DestroyDetail,
  EjectionInfo,
  EndpointAddress,
  EndpointEvents,
  EndpointStats,
  LeakInfo,
  LeaseRequestOptions,
  OutlierOptions,
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
  ClientPool,
  ConnectionLease,
  ConnectionPool,
  createClientPool,
  createConnectionPool,
  EndpointUnavailableError,
  isConnectionError,
  Lease,
  LeaseReclaimedError,
  Pool,
  PoolClosedError,
  PoolError,
  PoolFullError,
} from './pool/index.js';
export type { ProtocolErrorOptions, RemoteErrorOptions } from './protocol/errors.js';
export { ErrorCode, ProtocolError, RemoteError } from './protocol/errors.js';
export type { PayloadCodec } from './protocol/payload.js';
export type { RateLimit, RefusalReason } from './server/admission.js';
export type {
  Broker,
  BrokerEntry,
  BrokerHistory,
  BrokerSink,
  HistoryRetention,
} from './server/broker.js';
export { HISTORY_DEFAULTS, MemoryBrokerHub, memoryBroker } from './server/broker.js';
export type { LegacyContext, LegacyHandler } from './server/legacy.js';
export { SERVER_DEFAULTS } from './server/limits.js';
export type { ProxyOptions } from './server/proxy-accept.js';
export type { IdentityTarget, RoomTarget } from './server/rooms.js';
export type {
  LegacyOptions,
  ListenOptions,
  RefusalInfo,
  ServerEvents,
  ServerOptions,
  ServerStats,
  ServerTlsOptions,
  ShutdownReport,
} from './server/server.js';
export { createServer, Server } from './server/server.js';
export type {
  AuthContext,
  Authenticate,
  ConnectionContext,
  Handler,
  HandlerFailure,
  JoinOptions,
  RequestContext,
  RoomAuthorize,
  Router,
  TlsInfo,
} from './server/server-peer.js';
export type {
  WorkerContext,
  WorkerExit,
  WorkerFactory,
  WorkerGroupEvents,
  WorkerGroupStats,
  WorkerInfo,
  WorkerShutdown,
  WorkersMode,
  WorkersOptions,
  WorkersShutdownReport,
} from './server/workers.js';
export { reusePortSupported, serveWorkers, WorkerGroup } from './server/workers.js';
export type { SessionStats } from './session/client-session.js';
export { ClientSession, RefusedError } from './session/client-session.js';
export type { HeartbeatSetting, HeartbeatTiming } from './session/heartbeat.js';
export type { SessionOptions } from './session/options.js';
export type { KeepAliveOptions, NativeStatus, TcpInfo, TcpInfoStats, TcpState } from './sys/sockopt.js';
export { nativeSocketOptions } from './sys/sockopt.js';
export type { RequestTrace } from './util/channels.js';
export type { Logger, LogLevel } from './util/log.js';
