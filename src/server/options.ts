/**
 * The server's options, events, stats and reports: what `createServer` takes and what a Server
 * tells. The limits among the options are one table in limits.ts (and docs/SECURITY.md).
 */

import type net from 'node:net';
import type tls from 'node:tls';
import type { Framing } from '../codec/types.js';
import type { MemoryBudget, MemoryBudgetStats } from '../connection/budget.js';
import type { CloseInfo, CloseReason } from '../connection/close-reason.js';
import type { Connection, ConnectionOptions } from '../connection/connection.js';
import type { PayloadCodec } from '../protocol/payload.js';
import type { HeartbeatSetting } from '../session/heartbeat.js';
import type { Logger } from '../util/log.js';
import type { RateLimit, RefusalInfo, RefusalReason } from './admission.js';
import type { Broker } from './broker.js';
import type {
  Authenticate,
  ConnectionContext,
  Handler,
  HandlerFailure,
  RoomAuthorize,
  Router,
  TlsInfo,
} from './context.js';
import type { LegacyHandler } from './legacy.js';
import type { ProxyOptions } from './proxy-accept.js';

/** Legacy mode: a plain framing, no longlink protocol; every frame goes to one handler. */
export interface LegacyOptions {
  /** The framing, e.g. asciiFraming() for the sources' 20-digit header, or a spec like 'ascii:20'. */
  framing: Framing | string;
  /**
   * Called for each frame. Its result (Buffer, string, or with `json` any JSON value) is sent back
   * as one frame; undefined sends nothing. Frames of one connection are handled one at a time, in
   * order, since an id-less protocol can only match answers to questions by order. A handler that
   * throws or rejects, or an answer that cannot be sent, closes that connection (reason
   * `handler-error`) and is reported as `'handlerError'`.
   */
  handler: LegacyHandler;
  /** Parse each frame as JSON and JSON-encode the answer (the sources' header + JSON). Default false. */
  json?: boolean;
  /** A connection with nothing read for this long is closed (reason `idle-timeout`). Default 120 000; 0: never. */
  idleTimeoutMs?: number;
}

/**
 * TLS for the server: any `tls.createServer` option (key, cert, ca, requestCert, SNICallback,
 * ALPNProtocols, minVersion …). With `requestCert` and `ca`, clients must present a certificate
 * signed by `ca` (mTLS; `rejectUnauthorized` defaults to true) and its subject becomes the
 * connection's identity. The handshake runs under `helloTimeoutMs`.
 */
export type ServerTlsOptions = tls.TlsOptions;

/** Options of {@link createServer}. Defaults and what happens at each limit: docs/SECURITY.md. */
export interface ServerOptions {
  /** Handlers by method name. */
  handlers?: Record<string, Handler>;
  /** Or a router: method → handler. Takes precedence over `handlers` when both are given. */
  router?: Router;
  /** Serve a plain framing instead of the longlink protocol. */
  legacy?: LegacyOptions;
  /** Payload codecs offered in HELLO besides json and raw (e.g. MessagePack). */
  codecs?: PayloadCodec[];
  /** Most open connections; excess ones get GOAWAY ERR_TOO_MANY_CONNECTIONS, then a close. Default 10 000. */
  maxConnections?: number;
  /**
   * New connections per second over all addresses (token bucket); more get GOAWAY
   * ERR_TOO_MANY_CONNECTIONS with a jittered `retryAfterMs` (refusal reason `accept-rate`). What
   * keeps the clients of a node that died from landing on the others as one wave. Default: no limit.
   */
  acceptRate?: RateLimit;
  /**
   * A connection that has lived this long (± `maxConnectionAgeJitter`) gets GOAWAY
   * ERR_MAX_CONNECTION_AGE with no retry hint: its accepted requests are answered, and the client
   * reconnects — through the balancer, which may send it to a newer node (gRFC A9). Protocol
   * connections only. Default: none (0 or Infinity: none).
   */
  maxConnectionAgeMs?: number;
  /** Each connection's age is drawn in [1 − jitter, 1 + jitter] × `maxConnectionAgeMs`. Default 0.1 (gRPC's ±10 %). */
  maxConnectionAgeJitter?: number;
  /** Requests still running this long after the age's GOAWAY are cut off (the connection is aborted). Default 30 000. */
  maxConnectionAgeGraceMs?: number;
  /** Most connections from one client address (the PROXY source behind a trusted proxy). Default Infinity. */
  maxConnectionsPerAddress?: number;
  /** New connections per second from one client address (token bucket). Default: no limit. */
  connectionRate?: RateLimit;
  /** Requests per second on one connection; more get ERR_TOO_MANY_REQUESTS with `retryAfterMs`. Default: no limit. */
  requestRate?: RateLimit;
  /** Largest frame accepted after HELLO (and the HELLO's upper bound). Default 16 MiB. */
  maxFrameLength?: number;
  /** Largest frame accepted before the HELLO exchange (and authentication) is done. Default 8 KiB. */
  helloMaxFrameLength?: number;
  /** Most requests in flight per connection; more get ERR_TOO_MANY_REQUESTS. Default 16 384. */
  maxInFlight?: number;
  /** Request bytes held by running handlers per connection; at the limit reading pauses. Default 64 MiB. */
  maxInFlightBytes?: number;
  /** Bytes queued to a peer that does not read; past it the connection is reset (`slow-consumer`). Default 32 MiB. */
  maxQueuedBytes?: number;
  /** A frame must be complete this long after its first byte; else reset (`frame-timeout`). Default 30 000; 0: none. */
  frameTimeoutMs?: number;
  /**
   * The budget for bytes buffered on peers' behalf, shared by every connection: a number of bytes
   * (this server's own budget) or a MemoryBudget object. Default: the process-wide budget, 512 MiB.
   */
  memoryBudget?: number | MemoryBudget;
  /** From accept to a finished HELLO (PROXY header, TLS handshake, HELLO, authenticate). Default 10 000 ms. */
  helloTimeoutMs?: number;
  /** A handler running longer than this is answered with ERR_TIMEOUT and its signal aborted. 0 = none. Default 60 000. */
  handlerTimeoutMs?: number;
  /** Base of the retry hint sent to refused connections (each gets up to as much again at random). Default 1 000 ms. */
  retryAfterMs?: number;
  /** Checks the client's HELLO credential; see {@link Authenticate}. */
  authenticate?: Authenticate;
  /**
   * Async `authenticate` calls under way at once, counting those whose connection has closed
   * (their `ctx.signal` is aborted, but a check that ignores it runs on). A HELLO beyond it is
   * refused (GOAWAY ERR_TOO_MANY_CONNECTIONS, reason `authenticating`). Default 1 024.
   */
  maxAuthenticating?: number;
  /** TLS (and mTLS); see {@link ServerTlsOptions}. */
  tls?: ServerTlsOptions;
  /** PROXY protocol v1/v2, accepted only from `trustedProxies`; see {@link ProxyOptions}. */
  proxyProtocol?: ProxyOptions;
  /**
   * Heartbeat: explicit `{ intervalMs, timeoutMs }`, 'standard' (dead within 30 s, the default),
   * 'strict' (6 s) or false. The HELLO agrees on the smaller interval of the two sides.
   */
  heartbeat?: HeartbeatSetting;
  /** The path's idle budget (a middlebox's idle timeout): derives the heartbeat; see resolveHeartbeat. */
  idleBudgetMs?: number;
  /** Clients may not PING more often than this; strikes lead to GOAWAY ERR_TOO_MANY_PINGS. Default 1 000 ms. */
  minPingIntervalMs?: number;
  /** The server's name in HELLO. */
  name?: string;
  /** Options of every accepted Connection (watermarks, timeouts, keepalive). */
  connection?: Omit<ConnectionOptions, 'framing'>;
  /**
   * What carries room pushes between servers, numbers them and keeps their history: `redisBroker`
   * (longlink's Redis adapter) for several servers, or a `MemoryBrokerHub`'s broker for servers in
   * one process. Default: this server alone, history in memory (`memoryBroker()`). The server
   * closes it when it closes.
   */
  broker?: Broker;
  /** Who may (re)join a room on the client's initiative ($resume after a reconnect); see {@link RoomAuthorize}. Default: nobody. */
  authorizeRoom?: RoomAuthorize;
  /** Rooms one connection may be in. Default 128. */
  maxRoomsPerConnection?: number;
  /** Longest room name, UTF-8 bytes (at most 255). Default 128. */
  maxRoomNameBytes?: number;
  /** Pushes held for a member while its resume reads the history (and history entries read). Default 10 000. */
  maxResumeBacklog?: number;
  /**
   * Where to log (pino's shape: `debug/info/warn/error(obj, msg)`, optional `child`): handler
   * failures, refusals, slow consumers, heartbeat deaths, shutdowns; floods summarised. Silent by
   * default; `NODE_DEBUG=longlink` logs to stderr.
   */
  logger?: Logger;
}

/** Options of {@link Server.listen}. */
export interface ListenOptions {
  port?: number;
  host?: string;
  backlog?: number;
  /**
   * SO_REUSEPORT: several processes listen on the same port and the kernel spreads new
   * connections over them. Needs Node ≥ 22.12 (earlier versions ignore it and the second process
   * fails with EADDRINUSE); {@link serveWorkers} checks. Default false.
   */
  reusePort?: boolean;
}

/** What {@link Server.close} reports. */
export interface ShutdownReport {
  /** Connections open when the shutdown began. */
  connections: number;
  /** Connections that closed gracefully within the grace period. */
  closedGracefully: number;
  /** Connections aborted at the end of the grace period. */
  aborted: number;
  /** Requests in flight when the shutdown began. */
  inflightAtStart: number;
  /** Requests still unanswered when the grace period ended (their connections were aborted). */
  unanswered: number;
  durationMs: number;
}

/** What {@link Server.stats} reports. */
export interface ServerStats {
  /** Connections being served (after admission and handshakes). */
  connections: number;
  /** Connections still in the accept path (PROXY header, TLS handshake). */
  accepting: number;
  /** Requests being handled (accepted, not yet answered). */
  inflight: number;
  /**
   * Closed connections whose handlers still run (answered already — cancelled, timed out or cut
   * off — but their promises have not settled): each keeps its admission slot until they have.
   */
  lingering: number;
  /** Async `authenticate` calls under way, those of closed connections included. */
  authenticating: number;
  /** Refused connections since the start, by reason. */
  refused: Partial<Record<RefusalReason, number>>;
  /** Handler failures reported as 'handlerError'. */
  handlerErrors: number;
  /** Connections closed since the start, by close reason. */
  closed: Partial<Record<CloseReason, number>>;
  /** The memory budget this server counts against. */
  memory: MemoryBudgetStats;
  /** Connections told to go at their maximum age (`maxConnectionAgeMs`), and of those, aborted at the grace's end. */
  maxConnectionAge: { goaways: number; aborted: number };
  /** Rooms with members on this server. */
  rooms: number;
}

/** The events a Server emits. */
export interface ServerEvents {
  /** A connection was accepted and is being served (after PROXY, admission and TLS). */
  connection: [connection: Connection];
  /** A connection finished its HELLO (and authentication): requests are served from now on. */
  ready: [ctx: ConnectionContext];
  /** A connection closed, with its close info. */
  disconnect: [connection: Connection, info: CloseInfo];
  /** A connection was refused: a limit, a PROXY or TLS failure, a shutdown. */
  refused: [info: RefusalInfo];
  /** A handler failed (threw, rejected, timed out, or its answer could not be sent). */
  handlerError: [failure: HandlerFailure];
  /** A client sent a NOTIFY (one-way message); `ctx` says who. A listener that throws is reported as 'handlerError'. */
  notify: [topic: string, payload: unknown, ctx: ConnectionContext];
  listening: [address: net.AddressInfo];
  close: [report: ShutdownReport];
}

/**
 * @internal One connection being served, as the live view (observe/admin.ts) shows it: who, since
 * when, how busy. Made when asked, never kept.
 */
export interface ServedConnection {
  readonly connection: Connection;
  /** The client's address (the PROXY source behind a trusted proxy). */
  readonly remoteAddress: string | undefined;
  readonly remotePort: number | undefined;
  readonly identity: unknown;
  readonly tls: TlsInfo | null;
  /** Requests being handled on it. */
  readonly inflight: number;
  /** Smoothed heartbeat round trip (ms), once a PONG came. */
  readonly rttMs: number | undefined;
  /** HELLO done (always true for a plain framing). */
  readonly ready: boolean;
  /** Served a plain framing (legacy mode). */
  readonly legacy: boolean;
  /** Milliseconds since the connection was made. */
  readonly ageMs: number;
}
