/**
 * The longlink server: accepts connections, speaks the longlink protocol on each (or, in legacy
 * mode, a plain framing with one frame handler), enforces limits with visible outcomes, and shuts
 * down without losing an accepted request.
 */

import { EventEmitter } from 'node:events';
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { parseFraming } from '../codec/parse.js';
import type { Framing } from '../codec/types.js';
import type { CloseInfo } from '../connection/close-reason.js';
import { CloseReason } from '../connection/close-reason.js';
import {
  type CheckedOptions,
  Connection,
  type ConnectionOptions,
  checkOptions,
} from '../connection/connection.js';
import { InvalidArgumentError, LonglinkError } from '../errors.js';
import { ErrorCode } from '../protocol/errors.js';
import { checkHelloMaxFrameLength, HELLO_DEFAULTS, type HelloPolicy } from '../protocol/hello.js';
import { jsonCodec, type PayloadCodec, PayloadCodecRegistry, rawCodec } from '../protocol/payload.js';
import { type HeartbeatSetting, resolveHeartbeat } from '../session/heartbeat.js';
import { countOrInfinity, finiteAtLeast, finitePositive } from '../util/check.js';
import { Deadlines } from '../util/deadlines.js';
import { type Handler, type Router, ServerPeer, type ServerPeerOptions } from './server-peer.js';

/** Legacy mode: a plain framing, no longlink protocol; every frame goes to one handler. */
export interface LegacyOptions {
  /** The framing, e.g. asciiFraming() for the sources' 20-digit header, or a spec like 'ascii:20'. */
  framing: Framing | string;
  /**
   * Called for each frame. Its result (Buffer, string, or with `json` any JSON value) is sent back
   * as one frame; undefined sends nothing. Frames of one connection are handled one at a time, in
   * order, since an id-less protocol can only match answers to questions by order.
   */
  handler: (frame: unknown, ctx: LegacyContext) => unknown;
  /** Parse each frame as JSON and JSON-encode the answer (the sources' header + JSON). Default false. */
  json?: boolean;
}

/** What a legacy handler gets besides the frame. */
export interface LegacyContext {
  readonly connection: Connection;
  /** Sends an extra frame to this peer (a push, or a heartbeat answer). */
  send(frame: Buffer | string): boolean;
}

/** Options of {@link createServer}. */
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
  /** Largest frame accepted (and the HELLO's upper bound). Default 16 MiB. */
  maxFrameLength?: number;
  /** Most requests in flight per connection; more get ERR_TOO_MANY_REQUESTS. Default 16 384. */
  maxInFlight?: number;
  /** A peer that says nothing for this long after connecting is closed. Default 10 000 ms. */
  helloTimeoutMs?: number;
  /** A handler running longer than this is answered with ERR_TIMEOUT and its signal aborted. 0 = none. Default 0. */
  handlerTimeoutMs?: number;
  /** Retry hint sent to refused connections. Default 1 000 ms. */
  retryAfterMs?: number;
  /** Checks the client's HELLO credential; false, a rejection or a throw refuses with ERR_UNAUTHENTICATED. */
  authenticate?: (credential: string | undefined, peer: AuthenticatingPeer) => boolean | Promise<boolean>;
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
}

/** What `authenticate` is told about the connection whose HELLO it checks. */
export interface AuthenticatingPeer {
  /** The server's side of the connection: `remoteAddress`, `remotePort`, `id`, `stats()` … */
  readonly connection: Connection;
}

/** Options of {@link Server.listen}. */
export interface ListenOptions {
  port?: number;
  host?: string;
  backlog?: number;
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

/** The events a Server emits. */
export interface ServerEvents {
  /** A connection was accepted (before HELLO). */
  connection: [connection: Connection];
  /** A connection closed, with its close info. */
  disconnect: [connection: Connection, info: CloseInfo];
  /** A connection was refused at the limit. */
  refused: [connection: Connection, reason: string];
  listening: [address: net.AddressInfo];
  close: [report: ShutdownReport];
}

/** A connection served by a plain-framing handler (the `legacy` option). */
type LegacySession = {
  connection: Connection;
  legacyBusy?: Promise<void> | undefined;
};

/** What the server keeps per connection: the protocol peer itself (no record around it), or a legacy session. */
type Session = ServerPeer | LegacySession;

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
  private readonly legacy: (LegacyOptions & { framing: Framing }) | undefined;
  private readonly opts: ServerOptions;
  private readonly maxConnections: number;
  private readonly heartbeatOn: boolean;
  private readonly minPingIntervalMs: number;
  private closing: Promise<ShutdownReport> | undefined;
  /** One options object for every connection's ServerPeer. */
  private readonly peerOptions: ServerPeerOptions;

  constructor(options: ServerOptions = {}) {
    super();
    this.opts = options;
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
    const handlers = new Map(Object.entries(options.handlers ?? {}));
    this.router = options.router ?? ((m) => handlers.get(m));
    this.codecs = new PayloadCodecRegistry([jsonCodec, rawCodec, ...(options.codecs ?? [])]);
    this.maxConnections = countOrInfinity('maxConnections', options.maxConnections, 10_000, 0);
    finiteAtLeast('retryAfterMs', options.retryAfterMs, 0);
    // In HELLO it is a u32 of at least 1 KiB; a legacy framing is bounded by the codec alone.
    const maxFrameLength =
      options.legacy === undefined
        ? checkHelloMaxFrameLength(options.maxFrameLength)
        : (options.maxFrameLength ?? HELLO_DEFAULTS.maxFrameLength);
    const hb = resolveHeartbeat(options.heartbeat, options.idleBudgetMs);
    this.heartbeatOn = hb.timing !== undefined;
    if (hb.warning !== undefined) process.emitWarning(hb.warning, 'LonglinkWarning');
    this.minPingIntervalMs = finitePositive('minPingIntervalMs', options.minPingIntervalMs, 1000);
    const minHeartbeatIntervalMs = Math.min(
      this.minPingIntervalMs,
      hb.timing?.intervalMs ?? this.minPingIntervalMs,
    );
    this.hello = {
      maxFrameLength,
      maxInFlight: options.maxInFlight ?? HELLO_DEFAULTS.maxInFlight,
      codecs: this.codecs.names(),
      minHeartbeatIntervalMs,
      ...(hb.timing === undefined
        ? {}
        : { heartbeatIntervalMs: hb.timing.intervalMs, heartbeatTimeoutMs: hb.timing.timeoutMs }),
      ...(options.name === undefined ? {} : { name: options.name }),
    };
    if (options.legacy !== undefined) {
      const f = options.legacy.framing;
      this.legacy = {
        ...options.legacy,
        framing: typeof f === 'string' ? parseFraming(f, { maxFrameLength }) : f,
      };
      if (typeof options.legacy.handler !== 'function')
        throw new InvalidArgumentError('legacy.handler must be a function');
      this.framing = this.legacy.framing;
    } else {
      this.framing = parseFraming('u32be', { maxFrameLength });
    }
    // Checked once here: a bad connection option fails createServer, not every accepted socket.
    this.connectionOptions = { ...options.connection, framing: this.framing };
    this.checkedConnection = checkOptions(this.connectionOptions);
    // allowHalfOpen: the Connection, not Node, decides when our side closes after the peer's FIN.
    this.netServer = net.createServer({ allowHalfOpen: true, noDelay: true }, (socket) =>
      this.accept(socket),
    );
    this.peerOptions = {
      router: this.router,
      codecs: this.codecs,
      hello: this.hello,
      authenticate: options.authenticate,
      handlerTimeoutMs: finiteAtLeast('handlerTimeoutMs', options.handlerTimeoutMs, 0),
      helloTimeoutMs: finitePositive('helloTimeoutMs', options.helloTimeoutMs, 10_000),
      deadlines: this.deadlines,
      heartbeat: this.heartbeatOn,
      // The floor HELLO agrees to, not the option: a server heartbeat below minPingIntervalMs
      // lowers it, and a client pinging at the interval it was given must never be struck. A
      // client at the agreed interval pings at most once per interval; half allows for jitter.
      minPingIntervalMs: minHeartbeatIntervalMs / 2,
      maxPingStrikes: 2,
      onClose: (peer, info) => this.connectionClosed(peer.connection, info),
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
        { port: options.port ?? 0, host: options.host ?? '127.0.0.1', backlog: options.backlog ?? 511 },
        () => {
          this.netServer.off('error', onError);
          const addr = this.netServer.address() as net.AddressInfo;
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

  /** Open connections. */
  get connectionCount(): number {
    return this.sessions.size;
  }

  /** Requests being handled right now, over all connections. */
  get inflightCount(): number {
    let n = 0;
    for (const s of this.sessions.values()) n += peerOf(s)?.inflightCount ?? 0;
    return n;
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

  /*
   * Graceful shutdown:
   *
   *   close({ graceMs }) ─ stop listening (new connects are refused by the kernel)
   *     └ every connection: GOAWAY(lastId = last REQUEST read) ─ answer every accepted request
   *          ─ FIN ─ peer's FIN ─ released                                   (closedGracefully)
   *     └ graceMs passes first: abort what is left (RST)                     (aborted, unanswered)
   *
   * Requests the client wrote after our GOAWAY left get ERR_SHUTTING_DOWN; the client re-sends
   * them, and everything above lastId, on a new connection.
   */
  /**
   * Shuts down gracefully: stop accepting, GOAWAY to every connection, finish and deliver every
   * accepted request, close; after `graceMs`, abort what is left. Idempotent.
   */
  close(options: { graceMs?: number } = {}): Promise<ShutdownReport> {
    if (this.closing) return this.closing;
    const graceMs = options.graceMs ?? 30_000;
    const t0 = performance.now();
    this.closing = new Promise<ShutdownReport>((resolve) => {
      const sessions = [...this.sessions.values()];
      const inflightAtStart = this.inflightCount;
      this.netServer.close();
      let aborted = 0;
      let unanswered = 0;
      const all = Promise.all(sessions.map((s) => s.connection.closed));
      for (const s of sessions) {
        const peer = peerOf(s);
        if (peer)
          void peer.shutdown(ErrorCode.SHUTTING_DOWN, 'server shutting down', this.opts.retryAfterMs ?? 0);
        else void s.connection.close({ timeoutMs: graceMs });
      }
      const timer = setTimeout(() => {
        for (const s of this.sessions.values()) {
          unanswered += peerOf(s)?.inflightCount ?? 0;
          aborted++;
          s.connection.abort(
            new LonglinkError(ErrorCode.SHUTTING_DOWN, `shutdown grace of ${graceMs} ms expired`),
          );
        }
      }, graceMs);
      void all.then(() => {
        clearTimeout(timer);
        this.deadlines.clear();
        const report: ShutdownReport = {
          connections: sessions.length,
          closedGracefully: sessions.length - aborted,
          aborted,
          inflightAtStart,
          unanswered,
          durationMs: performance.now() - t0,
        };
        this.emit('close', report);
        resolve(report);
      });
    });
    return this.closing;
  }

  /** Forced shutdown: stop listening and abort every connection now. */
  destroy(): void {
    this.netServer.close();
    for (const s of this.sessions.values()) s.connection.abort();
    this.deadlines.clear();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  private connectionClosed(connection: Connection, info: CloseInfo): void {
    this.sessions.delete(connection);
    this.emit('disconnect', connection, info);
  }

  private accept(socket: net.Socket): void {
    let connection: Connection;
    try {
      connection = new Connection(socket, this.connectionOptions, this.checkedConnection);
    } catch {
      socket.destroy();
      return;
    }
    if (this.legacy) {
      const session: LegacySession = { connection };
      this.sessions.set(connection, session);
      connection.on('close', (info) => this.connectionClosed(connection, info));
      this.emit('connection', connection);
      this.acceptLegacy(session, this.legacy);
      return;
    }
    // A protocol session reports its close through peerOptions.onClose: no listener per connection.
    // The peer only reads once the loop turns, so 'connection' listeners still come first.
    const peer = new ServerPeer(connection, this.peerOptions);
    this.sessions.set(connection, peer);
    this.emit('connection', connection);
    if (this.closing) {
      peer.refuse(ErrorCode.SHUTTING_DOWN, 'server shutting down', this.opts.retryAfterMs ?? 1000);
      return;
    }
    if (this.sessions.size > this.maxConnections) {
      // Told why, then closed — never silently dropped.
      peer.refuse(
        ErrorCode.TOO_MANY_CONNECTIONS,
        `server is at its limit of ${this.maxConnections} connections`,
        this.opts.retryAfterMs ?? 1000,
      );
      this.emit('refused', connection, ErrorCode.TOO_MANY_CONNECTIONS);
    }
  }

  private acceptLegacy(session: LegacySession, legacy: LegacyOptions & { framing: Framing }): void {
    const connection = session.connection;
    if (this.sessions.size > this.maxConnections) {
      void connection.close({ timeoutMs: 1000 });
      this.emit('refused', connection, ErrorCode.TOO_MANY_CONNECTIONS);
      return;
    }
    const ctx: LegacyContext = {
      connection,
      send: (frame) => connection.send(typeof frame === 'string' ? Buffer.from(frame) : frame),
    };
    const reply = (value: unknown) => {
      if (value === undefined || !connection.writable) return;
      let out: Buffer;
      if (legacy.json) out = Buffer.from(JSON.stringify(value));
      else if (Buffer.isBuffer(value)) out = value;
      else if (typeof value === 'string') out = Buffer.from(value);
      else if (value instanceof Uint8Array)
        out = Buffer.from(value.buffer, value.byteOffset, value.byteLength);
      else out = Buffer.from(JSON.stringify(value));
      connection.send(out);
    };
    const handle = (frame: Buffer): Promise<void> | undefined => {
      let input: unknown = frame;
      if (legacy.json) {
        try {
          input = JSON.parse(frame.toString('utf8'));
        } catch (err) {
          void connection.close({
            reason: CloseReason.PROTOCOL_ERROR,
            error: new LonglinkError(ErrorCode.BAD_PAYLOAD, 'frame is not JSON', { cause: err }),
            initiator: 'remote',
          });
          return undefined;
        }
      }
      try {
        const r = legacy.handler(input, ctx);
        if (r !== null && typeof r === 'object' && typeof (r as PromiseLike<unknown>).then === 'function') {
          return Promise.resolve(r).then(reply, (err: unknown) => this.legacyFailed(connection, err));
        }
        reply(r);
      } catch (err) {
        this.legacyFailed(connection, err);
      }
      return undefined;
    };
    // Frames of one connection are handled in order: an async handler holds the next frame back.
    connection.on('frame', (frame) => {
      const busy = session.legacyBusy;
      // Neither `handle` nor its promise ever rejects: failures close the connection instead.
      const p = busy
        ? // A view would pin its whole read chunk while it waits: keep a copy of just the frame.
          ((owned) => busy.then(() => handle(owned)))(Buffer.from(frame))
        : handle(frame);
      if (p === undefined) return;
      session.legacyBusy = p;
      void p.finally(() => {
        if (session.legacyBusy === p) session.legacyBusy = undefined;
      });
    });
  }

  private legacyFailed(connection: Connection, err: unknown): void {
    void connection.close({
      reason: CloseReason.PROTOCOL_ERROR,
      error: new LonglinkError(ErrorCode.HANDLER, `legacy handler failed: ${(err as Error)?.message}`, {
        cause: err,
      }),
      initiator: 'local',
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
