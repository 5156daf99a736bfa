/** `longlink serve`: a longlink server with built-in methods, or a plain-framing echo server (the command line: serve-command.ts). */

import { timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { type RedisBrokerOptions, redisBroker } from '../broker/redis.js';
import type { Connection, ConnectionOptions } from '../connection/connection.js';
import { MissingDependencyError } from '../errors.js';
import { type AdminServer, serveAdmin } from '../observe/admin.js';
import { enableMetrics, type LonglinkMetrics } from '../observe/metrics.js';
import type { RateLimit } from '../server/admission.js';
import { type Broker, memoryBroker } from '../server/broker.js';
import { createServer, type Server, type ServerOptions } from '../server/server.js';
import type { RequestContext } from '../server/server-peer.js';
import type { HeartbeatSetting } from '../session/heartbeat.js';
import type { LogLevel } from '../util/log.js';
import { CommandFailed, EXIT, endpoint, onInterrupt, signalExitCode } from './args.js';
import { type LogFormat, type ServeLog, serveLog } from './log.js';
import { serveWithWorkers, type WorkersFlags } from './serve-workers.js';

/** A credential check that takes the same time whatever the guess (no byte-by-byte timing oracle). */
function tokenCheck(token: string): (credential: string | undefined) => boolean {
  const want = Buffer.from(token);
  return (credential) => {
    if (credential === undefined) return false;
    const got = Buffer.from(credential);
    return got.length === want.length && timingSafeEqual(got, want);
  };
}

/** The server options the flags ask for (TLS files, PROXY, limits, a required token). */
export function edgeOptions(
  o: Omit<ServeOptions, 'host' | 'port' | 'framing' | 'graceMs' | 'log' | 'logFormat' | 'logLevel'>,
): Partial<ServerOptions> {
  const out: Partial<ServerOptions> = {};
  if (o.maxConnectionAgeMs !== undefined) out.maxConnectionAgeMs = o.maxConnectionAgeMs;
  if (o.acceptRate !== undefined) out.acceptRate = o.acceptRate;
  if (o.retryAfterMs !== undefined) out.retryAfterMs = o.retryAfterMs;
  if (o.heartbeat !== undefined) out.heartbeat = o.heartbeat;
  if (o.idleBudgetMs !== undefined) out.idleBudgetMs = o.idleBudgetMs;
  if (o.keepAlive !== undefined) out.connection = { keepAlive: o.keepAlive };
  if (o.tls !== undefined) {
    out.tls = {
      cert: readFileSync(o.tls.certFile),
      key: readFileSync(o.tls.keyFile),
      ...(o.tls.caFile === undefined ? {} : { ca: readFileSync(o.tls.caFile) }),
      ...(o.tls.clientAuth === true ? { requestCert: true, rejectUnauthorized: true } : {}),
    };
  }
  if (o.trustedProxies !== undefined) out.proxyProtocol = { trustedProxies: o.trustedProxies };
  if (o.maxConnectionsPerAddress !== undefined) out.maxConnectionsPerAddress = o.maxConnectionsPerAddress;
  if (o.authTokenFile !== undefined) {
    const token = readFileSync(o.authTokenFile, 'utf8').trim();
    if (token.length === 0) throw new Error(`--auth-token-file ${o.authTokenFile} is empty`);
    out.authenticate = tokenCheck(token);
  }
  return out;
}

/** What `whoami` answers: who the server thinks the caller is (and which process answers). */
function whoami(_p: unknown, ctx: RequestContext, worker: number | undefined) {
  const t = ctx.tls;
  return {
    remoteAddress: ctx.remoteAddress,
    remotePort: ctx.remotePort,
    pid: process.pid,
    ...(worker === undefined ? {} : { worker }),
    tls:
      t === null
        ? null
        : { protocol: t.protocol, authorized: t.authorized, peerSubject: t.peerSubject ?? null },
    identity: ctx.identity ?? null,
  };
}

export interface ServeOptions {
  host: string;
  port: number;
  /** 'longlink' for the protocol, or a framing spec (ascii:20, u32be, line …) for a plain echo. */
  framing: string;
  graceMs: number;
  /** Where log lines go (whole lines, no newline). */
  log: (line: string) => void;
  /** text (default): `<ISO time> <level> <message>`; json: one object per line. */
  logFormat?: LogFormat;
  /** Lines below this level are dropped. Default info. */
  logLevel?: LogLevel;
  /** Serve /metrics, /api/* and the dashboard on this port (the admin endpoint). */
  metricsPort?: number;
  /** Where the admin endpoint listens. Default 127.0.0.1: it shows peers' addresses. */
  adminHost?: string;
  /** TLS: certificate and key (PEM files); `ca` and `clientAuth` require client certificates (mTLS). */
  tls?: { certFile: string; keyFile: string; caFile?: string; clientAuth?: boolean };
  /** PROXY protocol v1/v2 from these addresses/CIDRs only. */
  trustedProxies?: string;
  maxConnectionsPerAddress?: number;
  /** Require this credential in HELLO (read from a file; surrounding whitespace ignored). */
  authTokenFile?: string;
  /** The protocol's heartbeat (default: the server's, 'standard'); false: answer PINGs, send none. */
  heartbeat?: HeartbeatSetting;
  /** The path's idle budget, from which the heartbeat is derived (see resolveHeartbeat). */
  idleBudgetMs?: number;
  /** TCP keepalive on accepted sockets (default the library's: idle 60 s), or false. */
  keepAlive?: ConnectionOptions['keepAlive'];
  /** Plain framings: close a connection with nothing read for this long; 0 never. Default 120 s. */
  legacyIdleTimeoutMs?: number;
  /** GOAWAY each connection at this age (± 10 %): clients come back through the balancer. */
  maxConnectionAgeMs?: number;
  /** New connections per second over all addresses. */
  acceptRate?: RateLimit;
  /** The base of refusals' and the shutdown's retry hints. */
  retryAfterMs?: number;
  /** Run in this many worker processes on one port (serve-workers.ts). */
  workers?: WorkersFlags;
  /** Set in a worker: its id, which `whoami` reports. */
  worker?: number;
  /** Rooms across servers through this Redis (`redis://host:port`); default: this server alone. */
  brokerUrl?: string;
  /** Room history kept for resumes: entries per room, and their age in ms. */
  history?: RedisBrokerOptions['history'];
}

/** A room name from a request's params (`{ room }`). */
function roomOf(p: unknown): string {
  const room = (p as { room?: unknown } | null)?.room;
  if (typeof room !== 'string') throw new Error('params must be { room: string, … }');
  return room;
}

function peer(c: Connection): string {
  return endpoint(c.remoteAddress, c.remotePort);
}

/** The Server's own log lines that serve already prints in its words (listening, shutdown). */
const SAID_BY_SERVE: ReadonlySet<string> = new Set(['listening', 'shutting down', 'shut down']);

/** Builds the server `serve` runs, logging through `log`. Exported for the tests. */
export function buildServer(
  o: Pick<ServeOptions, 'framing'> & Partial<ServeOptions>,
  log: ServeLog,
  broker?: Broker,
): Server {
  const edge = edgeOptions(o);
  const started = Date.now();
  let requests = 0;
  // Refusals, handler failures, slow consumers, heartbeat deaths: the Server says them (floods
  // summarised, src/util/log.ts) through serve's sink.
  const l = log.logger;
  const pass =
    (level: 'debug' | 'info' | 'warn' | 'error') =>
    (obj: object, msg?: string): void => {
      if (!SAID_BY_SERVE.has(msg ?? '')) l[level](obj, msg);
    };
  const logger = { debug: pass('debug'), info: pass('info'), warn: pass('warn'), error: pass('error') };
  const server: Server =
    o.framing === 'longlink'
      ? createServer({
          name: 'longlink-serve',
          logger,
          handlers: {
            echo: (p) => {
              requests++;
              return p;
            },
            sleep: (p, ctx) => {
              requests++;
              const ms = typeof p === 'number' ? p : Number((p as { ms?: unknown } | null)?.ms ?? 0);
              return new Promise((resolve, reject) => {
                const t = setTimeout(() => resolve({ slept: ms }), Math.max(0, Math.min(ms, 60_000)));
                ctx.signal.addEventListener('abort', () => {
                  clearTimeout(t);
                  reject(ctx.signal.reason);
                });
              });
            },
            push: (p, ctx) => {
              requests++;
              const { topic = 'tick', count = 1 } = (p ?? {}) as { topic?: string; count?: number };
              const n = Math.max(0, Math.min(Number(count) || 0, 10_000));
              for (let i = 0; i < n; i++) ctx.notify(String(topic), { seq: i, of: n });
              return { pushed: n };
            },
            // What any client may know: counts and uptime; nothing about other clients or the host.
            stats: () => {
              requests++;
              return {
                connections: server.connectionCount,
                inflight: server.inflightCount,
                requests,
                uptimeMs: Date.now() - started,
              };
            },
            whoami: (p, ctx) => {
              requests++;
              return whoami(p, ctx, o.worker);
            },
            // Rooms, to show them from the command line: any client may join any room (the
            // same rule authorizeRoom gives resumes below). A real server decides who may.
            join: async (p, ctx) => {
              requests++;
              const room = roomOf(p);
              await ctx.join(room);
              return { room, rooms: [...ctx.rooms] };
            },
            leave: (p, ctx) => {
              requests++;
              return { left: ctx.leave(roomOf(p)) };
            },
            publish: async (p) => {
              requests++;
              const { topic = 'message', payload = null } = (p ?? {}) as {
                topic?: unknown;
                payload?: unknown;
              };
              const room = roomOf(p);
              return { room, seq: await server.to(room).notify(String(topic), payload) };
            },
          },
          authorizeRoom: () => true,
          ...(broker === undefined ? {} : { broker }),
          ...edge,
        })
      : createServer({
          logger,
          legacy: {
            framing: o.framing,
            handler: (frame) => frame,
            ...(o.legacyIdleTimeoutMs === undefined ? {} : { idleTimeoutMs: o.legacyIdleTimeoutMs }),
          },
          ...edge,
        });
  server.on('connection', (c) => {
    const at = peer(c);
    log('info', 'open', { peer: at, id: c.id }, `open  ${at} id=${c.id}`);
  });
  server.on('disconnect', (c, info) => {
    const at = peer(c);
    const fields = {
      peer: at,
      id: c.id,
      reason: info.reason,
      initiator: info.initiator,
      graceful: info.graceful,
      error: info.error?.code,
    };
    log(
      'info',
      'close',
      fields,
      `close ${at} id=${c.id} reason=${info.reason} initiator=${info.initiator} graceful=${info.graceful}` +
        (info.error ? ` error=${info.error.code}` : ''),
    );
  });
  return server;
}

/** The admin endpoint `--metrics-port` asks for: metrics when prom-client is there, the live view always. */
async function startAdmin(
  server: Server,
  o: ServeOptions,
  log: ServeLog,
): Promise<{ admin: AdminServer; metrics: LonglinkMetrics | undefined } | undefined> {
  if (o.metricsPort === undefined) return undefined;
  let metrics: LonglinkMetrics | undefined;
  let why = '';
  try {
    metrics = await enableMetrics({ servers: [server] });
  } catch (err) {
    if (!(err instanceof MissingDependencyError)) throw err;
    why = err.message;
  }
  const host = o.adminHost ?? '127.0.0.1';
  let admin: AdminServer;
  try {
    admin = await serveAdmin(server, { port: o.metricsPort, host, ...(metrics ? { metrics } : {}) });
  } catch (err) {
    metrics?.close();
    throw new CommandFailed(
      `--metrics-port: ${listenFailure(err as NodeJS.ErrnoException, host, o.metricsPort)}`,
    );
  }
  const where = endpoint(admin.address.address, admin.address.port);
  log(
    'info',
    'admin',
    { address: where, metrics: metrics !== undefined, dashboard: admin.url },
    `admin ${where} dashboard=${admin.url} metrics=${metrics ? `${admin.url}metrics` : 'off'}`,
  );
  if (metrics === undefined) log('warn', 'metrics off', { why }, `metrics off: ${why}`);
  return { admin, metrics };
}

/**
 * The broker `serve` (and each of its workers) gives its server: Redis with --broker, else rooms
 * stay in this process (with --history-* bounding their history).
 */
export async function serveBroker(
  o: Pick<ServeOptions, 'brokerUrl' | 'history' | 'framing'>,
  log: ServeLog,
): Promise<Broker | undefined> {
  if (o.brokerUrl !== undefined) {
    try {
      return await redisBroker({
        url: o.brokerUrl,
        logger: log.logger,
        ...(o.history === undefined ? {} : { history: o.history }),
      });
    } catch (err) {
      if (err instanceof MissingDependencyError) throw new CommandFailed(`--broker: ${err.message}`);
      throw err;
    }
  }
  if (o.history !== undefined && o.framing === 'longlink') return memoryBroker(o.history);
  return undefined;
}

/**
 * Runs until SIGTERM/SIGINT, then shuts down gracefully; a second signal aborts every connection.
 * Resolves with the exit code: 0 after a graceful shutdown, 128 + the signal's number after an abort.
 */
export async function serve(o: ServeOptions): Promise<number> {
  if (o.workers !== undefined) return serveWithWorkers(o, o.workers);
  const log = serveLog(o.log, o.logFormat, o.logLevel);
  const broker = await serveBroker(o, log);
  const server = buildServer(o, log, broker);
  let addr: { address: string; port: number };
  try {
    addr = await server.listen({ host: o.host, port: o.port });
  } catch (err) {
    throw new CommandFailed(listenFailure(err as NodeJS.ErrnoException, o.host, o.port));
  }
  const hb = o.heartbeat;
  const where = endpoint(addr.address, addr.port);
  const fields = {
    address: where,
    framing: o.framing,
    pid: process.pid,
    tls: o.tls ? (o.tls.clientAuth ? 'client-auth' : true) : undefined,
    proxyProtocol: o.trustedProxies,
    auth: o.authTokenFile ? 'token' : undefined,
    heartbeat:
      hb === undefined
        ? undefined
        : hb === false
          ? 'off'
          : typeof hb === 'string'
            ? hb
            : `${hb.intervalMs}/${hb.timeoutMs}`,
    idleBudgetMs: o.idleBudgetMs,
    keepalive: o.keepAlive === false ? 'off' : undefined,
    broker: broker?.name,
  };
  log(
    'info',
    'listening',
    fields,
    `listening ${where} framing=${o.framing} pid=${process.pid}` +
      (o.tls ? ` tls${o.tls.clientAuth ? '+client-auth' : ''}` : '') +
      (o.trustedProxies ? ` proxy-protocol=${o.trustedProxies}` : '') +
      (o.authTokenFile ? ' auth=token' : '') +
      (hb === undefined
        ? ''
        : ` heartbeat=${hb === false ? 'off' : typeof hb === 'string' ? hb : `${hb.intervalMs}/${hb.timeoutMs}`}`) +
      (o.idleBudgetMs === undefined ? '' : ` idle-budget=${o.idleBudgetMs}`) +
      (o.keepAlive === false ? ' keepalive=off' : '') +
      (broker === undefined ? '' : ` broker=${broker.name}`),
  );
  let admin: Awaited<ReturnType<typeof startAdmin>>;
  try {
    admin = await startAdmin(server, o, log);
  } catch (err) {
    server.destroy();
    throw err;
  }
  return new Promise((resolve) => {
    let aborted: NodeJS.Signals | undefined;
    const dispose = onInterrupt(
      async (signal) => {
        log(
          'info',
          'stopping',
          { signal, graceMs: o.graceMs },
          `${signal}: graceful shutdown (grace ${o.graceMs} ms; ${signal} again aborts)`,
        );
        const report = await server.close({
          graceMs: o.graceMs,
          ...(o.retryAfterMs === undefined ? {} : { retryAfterMs: o.retryAfterMs }),
        });
        await admin?.admin.close();
        admin?.metrics?.close();
        log(
          'info',
          'shutdown',
          { ...report, durationMs: Math.round(report.durationMs) },
          `shutdown connections=${report.connections} graceful=${report.closedGracefully} aborted=${report.aborted} ` +
            `inflight=${report.inflightAtStart} unanswered=${report.unanswered} ms=${report.durationMs.toFixed(0)}`,
        );
        dispose();
        resolve(aborted === undefined ? EXIT.OK : signalExitCode(aborted));
      },
      (signal) => {
        if (aborted !== undefined) return;
        aborted = signal;
        log('warn', 'aborting', { signal }, `${signal} again: aborting every connection`);
        server.destroy();
        void admin?.admin.close();
      },
    );
  });
}

/** Why listen() failed, in words. */
function listenFailure(err: NodeJS.ErrnoException, host: string, port: number): string {
  const ep = endpoint(host, port);
  switch (err.code) {
    case 'EADDRINUSE':
      return `${ep} is already in use: another process listens there (EADDRINUSE)`;
    case 'EACCES':
      return `not allowed to listen on ${ep}: ports below 1024 need root or CAP_NET_BIND_SERVICE (EACCES)`;
    case 'EADDRNOTAVAIL':
      return `${host} is not an address of this host (EADDRNOTAVAIL)`;
    case 'ENOTFOUND':
      return `cannot resolve host ${JSON.stringify(host)} (ENOTFOUND)`;
    default:
      return `cannot listen on ${ep}: ${err.message}${err.code ? ` (${err.code})` : ''}`;
  }
}
