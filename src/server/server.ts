/**
 * The longlink server: accepts connections, speaks the longlink protocol on each (or, in legacy
 * mode, a plain framing with one frame handler), enforces limits with visible outcomes, and shuts
 * down without losing an accepted request.
 *
 * A connection goes through the accept path before it is served:
 *
 *   accept ─▶ [PROXY header, from trusted proxies only] ─▶ admission (limits, per address)
 *          ─▶ [TLS handshake] ─▶ Connection + session (HELLO, authenticate) ─▶ served
 *
 * One deadline, `helloTimeoutMs`, runs from accept to a finished HELLO; a connection that does
 * not get through in time is closed, whatever stage it is in. Refusals after admission are told
 * why (GOAWAY with a jittered retry hint) once the transport allows it; the ones before (a
 * malformed or untrusted PROXY header, a failed TLS handshake) can only be closed. Both are
 * counted by reason in `stats().refused` and emitted as `'refused'`.
 *
 * Why it is near 900 lines: the parts with a job of their own are apart (accept.ts: PROXY and TLS;
 * admission.ts; rooms.ts; max-age.ts; legacy.ts; server-peer.ts), and what is left is the one
 * object every session reports to — the admission slots, the counts, the shutdown — plus the
 * public API's TSDoc (a sixth of the lines). Moving the session reports out would hand the slot
 * and count fields to another module and spread the slot invariant (admitted = served + lingering)
 * over two files.
 */

import { EventEmitter } from 'node:events';
import net from 'node:net';
import type tls from 'node:tls';
import { parseFraming } from '../codec/parse.js';
import type { Framing } from '../codec/types.js';
import { MemoryBudget, processBudget } from '../connection/budget.js';
import type { CloseInfo } from '../connection/close-reason.js';
import { CloseReason } from '../connection/close-reason.js';
import { Connection, type ConnectionOptions } from '../connection/connection.js';
import { type CheckedOptions, checkOptions } from '../connection/options.js';
import { InvalidArgumentError, LonglinkError } from '../errors.js';
import { ErrorCode } from '../protocol/errors.js';
import { checkHelloMaxFrameLength, HELLO_DEFAULTS, type HelloPolicy } from '../protocol/hello.js';
import { jsonCodec, PayloadCodecRegistry, rawCodec } from '../protocol/payload.js';
import { resolveHeartbeat } from '../session/heartbeat.js';
import { channels } from '../util/channels.js';
import {
  countOrInfinity,
  durationOrInfinity,
  finiteAtLeast,
  finitePositive,
  MAX_TIMER_MS,
  nonNegativeOrInfinity,
  timerLimit,
} from '../util/check.js';
import { now } from '../util/clock.js';
import { Deadlines } from '../util/deadlines.js';
import { type Logger, LogSampler, resolveLogger } from '../util/log.js';
import { AcceptPath } from './accept.js';
import {
  Admission,
  admissionLimits,
  checkRate,
  jittered,
  type Refusal,
  type RefusalInfo,
  type RefusalReason,
  refusal,
} from './admission.js';
import { type Broker, memoryBroker } from './broker.js';
import {
  type Handler,
  type HandlerFailure,
  type PeerOrigin,
  type Router,
  type ServerPeerLike,
  type ServerPeerOptions,
  tlsInfoOf,
} from './context.js';
import { type LegacyConfig, LegacySession } from './legacy.js';
import { SERVER_DEFAULTS } from './limits.js';
import { ConnectionAges, maxAgeSettings } from './max-age.js';
import type {
  ListenOptions,
  ServedConnection,
  ServerEvents,
  ServerOptions,
  ServerStats,
  ShutdownReport,
} from './options.js';
import { proxyConfig } from './proxy-accept.js';
import { type IdentityTarget, identityKey, RESUME_METHOD, Rooms, type RoomTarget } from './rooms.js';
import { ServerPeer } from './server-peer.js';

export type { RefusalInfo } from './admission.js';
export type { LegacyContext } from './legacy.js';
export type {
  LegacyOptions,
  ListenOptions,
  ServerEvents,
  ServerOptions,
  ServerStats,
  ServerTlsOptions,
  ShutdownReport,
} from './options.js';

/** What the server keeps per connection: the protocol peer itself, or a legacy session. */
type Session = ServerPeer | LegacySession;

/** Closes worth a log line: someone pushing, or a peer that died. */
const LOGGED_CLOSES: ReadonlySet<string> = new Set([
  CloseReason.SLOW_CONSUMER,
  CloseReason.FRAME_TIMEOUT,
  CloseReason.OVERLOAD,
  CloseReason.HEARTBEAT_TIMEOUT,
  CloseReason.PROTOCOL_ERROR,
  CloseReason.HANDLER_ERROR,
]);

function peerOf(s: Session): ServerPeer | undefined {
  return s instanceof ServerPeer ? s : undefined;
}

/**
 * A longlink server.
 *
 * @example
 * ```ts
 * const server = createServer({ handlers: { echo: (p) => p } });
 * const { port } = await server.listen({ port: 9000 });
 * process.on('SIGTERM', () => server.close({ graceMs: 10_000 }));
 * ```
 */
export class Server extends EventEmitter {
  // No `implements ServerPeerEvents, LegacyEvents`: the hooks are internal (stripped from the
  // published .d.ts); `events: this` checks them all the same.
  /** @internal The listening node:net server. */
  readonly netServer: net.Server;
  private readonly sessions = new Map<Connection, Session>();
  private readonly router: Router;
  private readonly codecs: PayloadCodecRegistry;
  private readonly hello: HelloPolicy;
  private readonly deadlines = new Deadlines();
  private readonly framing: Framing;
  private readonly connectionOptions: ConnectionOptions;
  private readonly checkedConnection: CheckedOptions;
  private readonly legacy: LegacyConfig | undefined;
  private readonly heartbeatOn: boolean;
  private readonly minPingIntervalMs: number;
  private readonly helloTimeoutMs: number;
  private readonly helloMaxFrameLength: number;
  private readonly admission: Admission;
  private readonly budget: MemoryBudget;
  /** PROXY header and TLS handshake, when configured, before a session starts. */
  private readonly acceptPath: AcceptPath;
  /** Sessions admitted (refused ones are served only their GOAWAY), for the connection limits. */
  private admitted = 0;
  /** The address each admitted session was counted against (only with per-address limits). */
  private readonly admittedFrom = new Map<Connection, string | undefined>();
  /** Sessions refused at admission, served only their GOAWAY (not counted as admitted). */
  private readonly refusedSessions = new Set<Connection>();
  /** Closed sessions whose handlers still run: they keep their admission slot until those settle. */
  private readonly lingering = new Set<Connection>();
  /** Async authenticate calls under way (closed connections' included), and their cap. */
  private authenticating = 0;
  private readonly maxAuthenticating: number;
  private readonly refusedCounts: Partial<Record<RefusalReason, number>> = {};
  private readonly closedCounts: Partial<Record<CloseReason, number>> = {};
  private handlerErrors = 0;
  /** Where this server logs (silent without one; NODE_DEBUG=longlink prints to stderr). */
  private readonly log: Logger | undefined;
  private readonly logSampler = new LogSampler();
  private closing: Promise<ShutdownReport> | undefined;
  /** One options object for every connection's ServerPeer. */
  private readonly peerOptions: ServerPeerOptions;
  /** The maximum connection age's deadlines (max-age.ts), when `maxConnectionAgeMs` is set. */
  private readonly ages: ConnectionAges | undefined;
  /** Room membership, pushes and resume (rooms.ts), over the broker. */
  private readonly rooms: Rooms;

  constructor(options: ServerOptions = {}) {
    super();
    if (options.legacy === undefined && options.handlers === undefined && options.router === undefined) {
      throw new InvalidArgumentError('createServer needs handlers, a router, or legacy options');
    }
    if (
      options.handlers !== undefined &&
      (typeof options.handlers !== 'object' || options.handlers === null)
    ) {
      throw new InvalidArgumentError('handlers must be an object of functions');
    }
    for (const [name, h] of Object.entries(options.handlers ?? {})) {
      if (typeof h !== 'function') throw new InvalidArgumentError(`handler ${name} is not a function`);
    }
    if (options.authenticate !== undefined && typeof options.authenticate !== 'function') {
      throw new InvalidArgumentError('authenticate must be a function');
    }
    const handlers = new Map(Object.entries(options.handlers ?? {}));
    const router: Router = options.router ?? ((m) => handlers.get(m));
    // The built-in $resume (rooms.ts); every other method is the application's.
    const resume: Handler = (params, ctx) =>
      this.rooms.resume((ctx as unknown as { peer: ServerPeer }).peer, ctx, params);
    this.router = (m) => (m === RESUME_METHOD ? resume : router(m));
    this.codecs = new PayloadCodecRegistry([jsonCodec, rawCodec, ...(options.codecs ?? [])]);
    const D = SERVER_DEFAULTS;
    this.log = resolveLogger(options.logger, { component: 'longlink-server' });
    if (options.authorizeRoom !== undefined && typeof options.authorizeRoom !== 'function') {
      throw new InvalidArgumentError('authorizeRoom must be a function');
    }
    const broker: Broker = options.broker ?? memoryBroker();
    if (typeof broker?.attach !== 'function' || typeof broker.publish !== 'function') {
      throw new InvalidArgumentError('broker must be a Broker (redisBroker(), memoryBroker() …)');
    }
    const maxResumeBacklog = countOrInfinity(
      'maxResumeBacklog',
      options.maxResumeBacklog,
      D.maxResumeBacklog,
      1,
    );
    const maxRoomNameBytes = countOrInfinity(
      'maxRoomNameBytes',
      options.maxRoomNameBytes,
      D.maxRoomNameBytes,
      1,
    );
    if (maxRoomNameBytes > 255 || !Number.isFinite(maxResumeBacklog)) {
      throw new InvalidArgumentError('maxRoomNameBytes must be at most 255 and maxResumeBacklog finite');
    }
    this.rooms = new Rooms({
      broker,
      maxRoomsPerConnection: countOrInfinity(
        'maxRoomsPerConnection',
        options.maxRoomsPerConnection,
        D.maxRoomsPerConnection,
        1,
      ),
      maxRoomNameBytes,
      maxResumeBacklog,
      maxReplay: maxResumeBacklog,
      authorize: options.authorizeRoom,
      log: this.log,
    });
    this.admission = new Admission(admissionLimits(options, D));
    // In HELLO it is a u32 of at least 1 KiB; a legacy framing is bounded by the codec alone.
    const maxFrameLength =
      options.legacy === undefined
        ? checkHelloMaxFrameLength(options.maxFrameLength)
        : (options.maxFrameLength ?? HELLO_DEFAULTS.maxFrameLength);
    this.helloMaxFrameLength = Math.min(
      maxFrameLength,
      finitePositive('helloMaxFrameLength', options.helloMaxFrameLength, D.helloMaxFrameLength),
    );
    const hb = resolveHeartbeat(options.heartbeat, options.idleBudgetMs);
    this.heartbeatOn = hb.timing !== undefined;
    if (hb.warning !== undefined) process.emitWarning(hb.warning, 'LonglinkWarning');
    this.minPingIntervalMs = finitePositive(
      'minPingIntervalMs',
      options.minPingIntervalMs,
      D.minPingIntervalMs,
    );
    const minHeartbeatIntervalMs = Math.min(
      this.minPingIntervalMs,
      hb.timing?.intervalMs ?? this.minPingIntervalMs,
    );
    this.hello = {
      maxFrameLength,
      maxInFlight: countOrInfinity('maxInFlight', options.maxInFlight, D.maxInFlight, 1),
      codecs: this.codecs.names(),
      minHeartbeatIntervalMs,
      ...(hb.timing === undefined
        ? {}
        : { heartbeatIntervalMs: hb.timing.intervalMs, heartbeatTimeoutMs: hb.timing.timeoutMs }),
      ...(options.name === undefined ? {} : { name: options.name }),
    };
    if (this.hello.maxInFlight === Number.POSITIVE_INFINITY || (this.hello.maxInFlight ?? 0) > 0xffff_ffff) {
      throw new InvalidArgumentError('maxInFlight must be an integer in [1, 2^32-1]');
    }
    const budget = options.memoryBudget;
    this.budget =
      budget === undefined
        ? processBudget
        : budget instanceof MemoryBudget
          ? budget
          : new MemoryBudget(finitePositive('memoryBudget', budget, D.memoryBudgetBytes));
    this.helloTimeoutMs = finitePositive('helloTimeoutMs', options.helloTimeoutMs, D.helloTimeoutMs);
    this.maxAuthenticating = countOrInfinity(
      'maxAuthenticating',
      options.maxAuthenticating,
      D.maxAuthenticating,
      1,
    );
    let idleTimeoutMs = 0;
    if (options.legacy !== undefined) {
      const l = options.legacy;
      if (typeof l.handler !== 'function')
        throw new InvalidArgumentError('legacy.handler must be a function');
      const f = l.framing;
      this.framing = typeof f === 'string' ? parseFraming(f, { maxFrameLength }) : f;
      idleTimeoutMs = finiteAtLeast('legacy.idleTimeoutMs', l.idleTimeoutMs, D.legacyIdleTimeoutMs);
      this.legacy = { handler: l.handler, json: l.json === true, events: this };
    } else {
      this.framing = parseFraming('u32be', { maxFrameLength });
    }
    // Checked once here: a bad connection option fails createServer, not every accepted socket.
    const user = options.connection ?? {};
    this.connectionOptions = {
      maxQueuedBytes: durationOrInfinity('maxQueuedBytes', options.maxQueuedBytes, D.maxQueuedBytes),
      frameTimeoutMs: finiteAtLeast('frameTimeoutMs', options.frameTimeoutMs, D.frameTimeoutMs),
      ...(idleTimeoutMs > 0 && user.idle === undefined
        ? { idle: { readerMs: idleTimeoutMs, close: true } }
        : {}),
      ...user,
      budget: this.budget,
      framing: this.framing,
    };
    this.checkedConnection = checkOptions(this.connectionOptions);
    const age = maxAgeSettings(options, D);
    this.ages = age === undefined ? undefined : new ConnectionAges(age);
    if (options.tls !== undefined && (typeof options.tls !== 'object' || options.tls === null)) {
      throw new InvalidArgumentError('tls must be an object of tls.createServer options');
    }
    this.acceptPath = new AcceptPath(this, {
      helloTimeoutMs: this.helloTimeoutMs,
      deadlines: this.deadlines,
      perAddress: this.admission.perAddressLimits,
      tls: options.tls,
      proxy: options.proxyProtocol === undefined ? undefined : proxyConfig(options.proxyProtocol),
    });
    // allowHalfOpen: the Connection, not Node, decides when our side closes after the peer's FIN.
    this.netServer = net.createServer({ allowHalfOpen: true, noDelay: true }, (socket) =>
      this.accept(socket),
    );
    this.peerOptions = {
      router: this.router,
      codecs: this.codecs,
      hello: this.hello,
      authenticate: options.authenticate,
      handlerTimeoutMs: finiteAtLeast('handlerTimeoutMs', options.handlerTimeoutMs, D.handlerTimeoutMs),
      helloTimeoutMs: this.helloTimeoutMs,
      deadlines: this.deadlines,
      heartbeat: this.heartbeatOn,
      // The floor HELLO agrees to, not the option: a server heartbeat below minPingIntervalMs
      // lowers it, and a client pinging at the interval it was given must never be struck. A
      // client at the agreed interval pings at most once per interval; half allows for jitter.
      minPingIntervalMs: minHeartbeatIntervalMs / 2,
      maxPingStrikes: 2,
      maxInFlightBytes: finitePositive('maxInFlightBytes', options.maxInFlightBytes, D.maxInFlightBytes),
      requestRate: checkRate('requestRate', options.requestRate),
      events: this,
      rooms: this.rooms,
    };
  }

  /**
   * Starts listening. Binds at once even when TIME_WAIT sockets of a previous run hold the port
   * (libuv sets SO_REUSEADDR on listening TCP sockets; the test suite pins this).
   */
  listen(options: ListenOptions = {}): Promise<net.AddressInfo> {
    return new Promise((resolve, reject) => {
      const onError = (err: Error) => reject(err);
      this.netServer.once('error', onError);
      this.netServer.listen(
        {
          port: options.port ?? 0,
          host: options.host ?? '127.0.0.1',
          backlog: options.backlog ?? 511,
          ...(options.reusePort === true ? { reusePort: true } : {}),
        },
        () => {
          this.netServer.off('error', onError);
          const addr = this.netServer.address() as net.AddressInfo;
          this.log?.info({ address: addr.address, port: addr.port }, 'listening');
          this.emit('listening', addr);
          resolve(addr);
        },
      );
    });
  }

  address(): net.AddressInfo | undefined {
    const a = this.netServer.address();
    return a !== null && typeof a === 'object' ? a : undefined;
  }

  /** Open connections (being served; not counting those still in the accept path). */
  get connectionCount(): number {
    return this.sessions.size;
  }

  /** Requests being handled right now, over all connections. */
  get inflightCount(): number {
    let n = 0;
    for (const s of this.sessions.values()) n += peerOf(s)?.inflightCount ?? 0;
    return n;
  }

  /**
   * Replaces the TLS certificate, key or CAs for new connections without a restart (connections
   * already open keep theirs). Throws InvalidArgumentError when the server has no TLS.
   */
  setSecureContext(options: tls.SecureContextOptions): void {
    if (!this.acceptPath.setSecureContext(options)) {
      throw new InvalidArgumentError('this server was created without tls');
    }
  }

  /** Counters: connections, refusals by reason, closes by reason, handler failures, memory. */
  stats(): ServerStats {
    return {
      connections: this.sessions.size,
      accepting: this.acceptPath.size,
      inflight: this.inflightCount,
      lingering: this.lingering.size,
      authenticating: this.authenticating,
      refused: { ...this.refusedCounts },
      handlerErrors: this.handlerErrors,
      closed: { ...this.closedCounts },
      memory: this.budget.stats(),
      maxConnectionAge: { goaways: this.ages?.goaways ?? 0, aborted: this.ages?.aborted ?? 0 },
      rooms: this.rooms.size,
    };
  }

  /**
   * @internal The connections being served, one record each, made now: the live view's hook
   * (observe/admin.ts). O(connections); nothing is kept between calls.
   */
  served(): ServedConnection[] {
    const t = now();
    const out: ServedConnection[] = [];
    for (const [connection, s] of this.sessions) {
      const peer = peerOf(s);
      out.push({
        connection,
        remoteAddress: s.remoteAddress,
        remotePort: s.remotePort,
        identity: peer?.identity,
        // Read from the socket when asked (a certificate per connection): metrics never ask.
        get tls() {
          return peer !== undefined ? peer.tls : tlsInfoOf(connection.socket);
        },
        inflight: peer?.inflightCount ?? 0,
        rttMs: peer?.srttMs,
        ready: peer === undefined || peer.isReady,
        legacy: peer === undefined,
        ageMs: Math.max(0, t - connection.openedAt),
      });
    }
    return out;
  }

  /** Pushes a NOTIFY to every ready connection; returns how many were sent. */
  broadcast(topic: string, payload: unknown): number {
    let n = 0;
    for (const s of this.sessions.values()) {
      const peer = peerOf(s);
      if (peer?.isReady && peer.writable && !peer.goawaySent) {
        peer.notify(topic, payload);
        n++;
      }
    }
    return n;
  }

  /**
   * A room, to push to and count. Throws RoomLimitError / InvalidArgumentError for a name that
   * is not a valid room name here.
   *
   * @example
   * ```ts
   * const seq = await server.to('prices').notify('tick', { eur: 1.08 });
   * console.log(server.to('prices').localCount, await server.to('prices').count());
   * ```
   */
  to(room: string): RoomTarget {
    const rooms: Rooms = this.rooms;
    rooms.checkName(room);
    return {
      room,
      notify: (topic, payload) => rooms.publish(room, topic, payload),
      get localCount() {
        return rooms.localCount(room);
      },
      count: () => rooms.count(room),
    };
  }

  /**
   * Every connection of one identity (what `authenticate` returned: a string, a number, or an
   * object's `id`), on every server of the broker.
   *
   * @example
   * ```ts
   * await server.toIdentity('alice').notify('mail', { unread: 3 });
   * ```
   */
  toIdentity(identity: unknown): IdentityTarget {
    const key = identityKey(identity);
    if (key === undefined) {
      throw new InvalidArgumentError('an identity is a non-empty string, a number, or an object with an id');
    }
    const rooms = this.rooms;
    return { key, notify: (topic, payload) => rooms.publishIdentity(key, topic, payload) };
  }

  /*
   * Graceful shutdown:
   *
   *   close({ graceMs }) ─ stop listening (new connects are refused by the kernel)
   *     └ every connection: GOAWAY(lastId = last REQUEST read) ─ answer every accepted request
   *          ─ FIN ─ peer's FIN ─ released                                   (closedGracefully)
   *     └ graceMs passes first: abort what is left (RST)                     (aborted, unanswered)
   *
   * Requests the client wrote after our GOAWAY left get ERR_SHUTTING_DOWN; the client re-sends
   * them, and everything above lastId, on a new connection. Each GOAWAY carries its own retry
   * hint in [retryAfterMs, 2 × retryAfterMs): the clients of one server do not come back (to it,
   * or to the balancer in front) in one wave.
   */
  /**
   * Shuts down gracefully: stop accepting, GOAWAY to every connection, finish and deliver every
   * accepted request, close; after `graceMs`, abort what is left. Idempotent.
   *
   * `retryAfterMs` (default: the server's `retryAfterMs` option) is the base of the hint each
   * GOAWAY carries; each connection gets a value in [base, 2 × base). Behind a balancer with other
   * nodes to go to, a small base (100 ms) lets clients move at once while still spreading them.
   */
  close(options: { graceMs?: number; retryAfterMs?: number } = {}): Promise<ShutdownReport> {
    if (this.closing) return this.closing;
    // Infinity: wait for every connection, abort none. More than a timer can wait is refused.
    const graceMs = timerLimit('graceMs', nonNegativeOrInfinity('graceMs', options.graceMs, 30_000));
    const hint = finiteAtLeast('close retryAfterMs', options.retryAfterMs, this.retryAfterMs);
    const t0 = now();
    this.log?.info(
      { graceMs, connections: this.sessions.size, inflight: this.inflightCount },
      'shutting down',
    );
    this.closing = new Promise<ShutdownReport>((resolve) => {
      const sessions = [...this.sessions.values()];
      const inflightAtStart = this.inflightCount;
      this.netServer.close();
      // Sockets still in the accept path have nothing accepted yet: close them now.
      this.acceptPath.destroyAll();
      let aborted = 0;
      let unanswered = 0;
      const all = Promise.all(sessions.map((s) => s.connection.closed));
      for (const s of sessions) {
        const peer = peerOf(s);
        if (peer) void peer.shutdown(ErrorCode.SHUTTING_DOWN, 'server shutting down', jittered(hint));
        else
          void s.connection.close({
            timeoutMs: graceMs === Number.POSITIVE_INFINITY ? MAX_TIMER_MS : graceMs,
          });
      }
      const timer =
        graceMs === Number.POSITIVE_INFINITY
          ? undefined
          : setTimeout(() => {
              for (const s of this.sessions.values()) {
                unanswered += peerOf(s)?.inflightCount ?? 0;
                aborted++;
                s.connection.abort(
                  new LonglinkError(ErrorCode.SHUTTING_DOWN, `shutdown grace of ${graceMs} ms expired`),
                );
              }
            }, graceMs);
      void all.then(async () => {
        clearTimeout(timer);
        this.deadlines.clear();
        this.ages?.clear();
        await this.rooms.close().catch(() => {});
        const report: ShutdownReport = {
          connections: sessions.length,
          closedGracefully: sessions.length - aborted,
          aborted,
          inflightAtStart,
          unanswered,
          durationMs: now() - t0,
        };
        this.log?.info({ ...report }, 'shut down');
        this.emit('close', report);
        resolve(report);
      });
    });
    return this.closing;
  }

  /** Forced shutdown: stop listening and abort every connection now. */
  destroy(): void {
    this.netServer.close();
    this.acceptPath.destroyAll();
    for (const s of this.sessions.values()) s.connection.abort();
    this.deadlines.clear();
    this.ages?.clear();
    void this.rooms.close().catch(() => {});
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  private get retryAfterMs(): number {
    return this.admission.limits.retryAfterMs;
  }

  // -------------------------------------------------------------------------------------------
  // Accepting (accept.ts has the PROXY and TLS stages)

  private accept(raw: net.Socket): void {
    if (this.acceptPath.needed) {
      this.acceptPath.accept(raw);
      return;
    }
    // The common case: nothing to wait for, the session starts now (and reads once the loop turns).
    const address = this.admission.perAddressLimits ? raw.remoteAddress : undefined;
    this.open(raw, undefined, address, this.admit(address), this.helloTimeoutMs);
  }

  /** @internal AcceptOwner: the admission decision (shutting down refuses everyone). */
  admit(address: string | undefined): Refusal | undefined {
    if (this.closing) return refusal('shutting-down', 'server shutting down', this.retryAfterMs);
    return this.admission.admit(address, this.admitted, now());
  }

  /** @internal AcceptOwner: a socket counted against `address` left before it was served. */
  leave(address: string): void {
    this.admission.leave(address);
  }

  /** @internal AcceptOwner: a socket closed in the accept path. */
  refused(info: RefusalInfo): void {
    this.countRefusal(info);
  }

  /** @internal AcceptOwner: makes the Connection and its session; refuses it with a GOAWAY when admission said no. */
  open(
    socket: net.Socket,
    origin: PeerOrigin | undefined,
    countedAddress: string | undefined,
    refused: Refusal | undefined,
    helloTimeoutMs: number,
  ): void {
    let connection: Connection;
    try {
      connection = new Connection(socket, this.connectionOptions, this.checkedConnection);
    } catch {
      socket.destroy();
      if (refused === undefined) this.admission.leave(countedAddress);
      return;
    }
    if (refused === undefined) {
      this.admitted++;
      if (countedAddress !== undefined) this.admittedFrom.set(connection, countedAddress);
    } else this.refusedSessions.add(connection);
    if (this.legacy !== undefined) {
      const session = new LegacySession(connection, this.legacy, origin);
      this.sessions.set(connection, session);
      this.connected(connection);
      if (refused !== undefined) {
        void connection.close({ reason: CloseReason.REFUSED, timeoutMs: 2000 });
        this.countRefusal(this.refusalInfo(refused, session.remoteAddress, session.remotePort));
      }
      return;
    }
    // Until authenticated, a peer may send frames of a few KiB, not of maxFrameLength.
    connection.limitFrames(this.helloMaxFrameLength);
    // A protocol session reports its close through peerClosed: no listener per connection.
    // The peer only reads once the loop turns, so 'connection' listeners still come first.
    const peer = new ServerPeer(connection, this.peerOptions, origin, helloTimeoutMs);
    this.sessions.set(connection, peer);
    this.connected(connection);
    if (refused !== undefined) {
      // Told why, then closed — never silently dropped.
      peer.refuse(refused.code, refused.message, refused.retryAfterMs);
      this.countRefusal(this.refusalInfo(refused, peer.remoteAddress, peer.remotePort));
    } else this.ages?.start(peer);
  }

  private refusalInfo(r: Refusal, address: string | undefined, port: number | undefined): RefusalInfo {
    return {
      reason: r.reason,
      remoteAddress: address,
      remotePort: port,
      retryAfterMs: r.retryAfterMs,
      error: undefined,
    };
  }

  private connected(connection: Connection): void {
    if (channels.serverConnection.hasSubscribers)
      channels.serverConnection.publish({ server: this, connection });
    this.emit('connection', connection);
  }

  private countRefusal(info: RefusalInfo): void {
    this.refusedCounts[info.reason] = (this.refusedCounts[info.reason] ?? 0) + 1;
    if (channels.serverRefused.hasSubscribers)
      channels.serverRefused.publish({ server: this, refusal: info });
    const log = this.log;
    if (log !== undefined) {
      const s = this.logSampler.take(`refused:${info.reason}`, now());
      if (s.log) {
        log.warn(
          {
            reason: info.reason,
            remoteAddress: info.remoteAddress,
            retryAfterMs: info.retryAfterMs,
            ...(info.error ? { err: info.error.message } : {}),
            ...(s.held > 0 ? { suppressed: s.held } : {}),
          },
          'connection refused',
        );
      }
    }
    this.safeEmit('refused', info);
  }

  /**
   * `lingering`: the session's handlers still run (it answered them already); its admission slot
   * is kept until they settle (sessionReleased), so closing and reconnecting cannot multiply the
   * work a client has running beyond maxConnections × maxInFlight.
   */
  private sessionClosed(connection: Connection, info: CloseInfo, lingering: boolean): void {
    this.sessions.delete(connection);
    if (!this.refusedSessions.delete(connection)) {
      if (lingering) this.lingering.add(connection);
      else this.leaveSlot(connection);
    }
    this.closedCounts[info.reason] = (this.closedCounts[info.reason] ?? 0) + 1;
    if (this.log !== undefined && LOGGED_CLOSES.has(info.reason)) this.logClose(connection, info);
    this.emit('disconnect', connection, info);
  }

  private sessionReleased(connection: Connection): void {
    if (this.lingering.delete(connection)) this.leaveSlot(connection);
  }

  private leaveSlot(connection: Connection): void {
    this.admitted--;
    const from = this.admittedFrom.get(connection);
    if (from !== undefined) {
      this.admittedFrom.delete(connection);
      this.admission.leave(from);
    }
  }

  /** A close an operator should hear of (someone pushing, or a peer that died), sampled per reason. */
  private logClose(connection: Connection, info: CloseInfo): void {
    const s = this.logSampler.take(`close:${info.reason}`, now());
    if (!s.log) return;
    const level = info.reason === CloseReason.HEARTBEAT_TIMEOUT ? 'info' : 'warn';
    (this.log as Logger)[level](
      {
        reason: info.reason,
        connectionId: connection.id,
        remoteAddress: connection.remoteAddress,
        code: info.error?.code,
        durationMs: Math.round(info.durationMs),
        ...(s.held > 0 ? { suppressed: s.held } : {}),
      },
      `connection closed: ${info.reason}`,
    );
  }

  /** Emits an event whose listener must not break the connection it reports on. */
  private safeEmit<K extends keyof ServerEvents>(event: K, ...args: ServerEvents[K]): void {
    try {
      this.emit(event, ...args);
    } catch (err) {
      process.emitWarning(
        `a '${event}' listener threw: ${(err as Error)?.message ?? String(err)}`,
        'LonglinkWarning',
      );
    }
  }

  // -------------------------------------------------------------------------------------------
  // What sessions report (ServerPeerEvents, LegacyEvents): one object, no closure per connection.

  /** @internal */
  peerClosed(peer: ServerPeer, info: CloseInfo): void {
    this.ages?.end(peer);
    this.rooms.peerClosed(peer);
    this.sessionClosed(peer.connection, info, peer.lingering);
  }

  /** @internal */
  peerReleased(peer: ServerPeerLike): void {
    this.sessionReleased(peer.connection);
  }

  /** @internal */
  peerAuthAdmit(peer: ServerPeerLike): Refusal | undefined {
    if (this.authenticating >= this.maxAuthenticating) {
      const r = refusal(
        'authenticating',
        `more than ${this.maxAuthenticating} authentications under way`,
        this.retryAfterMs,
      );
      this.countRefusal(this.refusalInfo(r, peer.remoteAddress, peer.remotePort));
      return r;
    }
    return undefined;
  }

  /** @internal */
  peerAuthStart(_peer: ServerPeerLike): void {
    this.authenticating++;
  }

  /** @internal */
  peerAuthEnd(_peer: ServerPeerLike): void {
    this.authenticating--;
  }

  /** @internal */
  legacyClosed(session: LegacySession, info: CloseInfo): void {
    this.sessionClosed(session.connection, info, session.lingering);
  }

  /** @internal */
  legacyReleased(session: LegacySession): void {
    this.sessionReleased(session.connection);
  }

  /** @internal */
  peerReady(peer: ServerPeer): void {
    this.rooms.peerReady(peer);
    if (this.listenerCount('ready') > 0) this.safeEmit('ready', peer);
  }

  /** @internal */
  peerHandlerError(failure: HandlerFailure): void {
    this.handlerErrors++;
    const log = this.log;
    if (log !== undefined) {
      const s = this.logSampler.take(`handler:${failure.method ?? '-'}`, now());
      if (s.log) {
        const e = failure.error as { code?: unknown; message?: unknown } | undefined;
        log.error(
          {
            method: failure.method,
            requestId: failure.requestId,
            connectionId: failure.connectionId,
            remoteAddress: failure.remoteAddress,
            code: typeof e?.code === 'string' ? e.code : undefined,
            err: typeof e?.message === 'string' ? e.message : String(failure.error),
            ...(s.held > 0 ? { suppressed: s.held } : {}),
          },
          'handler failed',
        );
      }
    }
    if (this.listenerCount('handlerError') > 0) this.safeEmit('handlerError', failure);
  }

  /** @internal */
  peerNotify(peer: ServerPeer, topic: string, payload: unknown): void {
    try {
      this.emit('notify', topic, payload, peer);
    } catch (error) {
      this.peerHandlerError({
        error,
        method: undefined,
        requestId: undefined,
        connectionId: peer.connectionId,
        remoteAddress: peer.remoteAddress,
        identity: peer.identity,
      });
    }
  }

  /** @internal */
  legacyFailed(session: LegacySession, error: LonglinkError): void {
    this.peerHandlerError({
      error: error.cause ?? error,
      method: undefined,
      requestId: undefined,
      connectionId: session.connection.id,
      remoteAddress: session.remoteAddress,
      identity: undefined,
    });
  }
}

/** Creates a longlink server. See {@link ServerOptions}. */
export function createServer(options: ServerOptions): Server {
  return new Server(options);
}

// Typed events, merged into the class's instance type.
export interface Server {
  on<K extends keyof ServerEvents>(event: K, listener: (...args: ServerEvents[K]) => void): this;
  once<K extends keyof ServerEvents>(event: K, listener: (...args: ServerEvents[K]) => void): this;
  off<K extends keyof ServerEvents>(event: K, listener: (...args: ServerEvents[K]) => void): this;
  emit<K extends keyof ServerEvents>(event: K, ...args: ServerEvents[K]): boolean;
}
