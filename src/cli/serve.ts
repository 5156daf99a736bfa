/** `longlink serve`: a longlink server with built-in methods, or a plain-framing echo server. */

import { timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { type RedisBrokerOptions, redisBroker } from '../broker/redis.js';
import { parseFraming } from '../codec/parse.js';
import type { Connection, ConnectionOptions } from '../connection/connection.js';
import { MissingDependencyError } from '../errors.js';
import { type AdminServer, serveAdmin } from '../observe/admin.js';
import { enableMetrics, type LonglinkMetrics } from '../observe/metrics.js';
import type { RateLimit } from '../server/admission.js';
import { type Broker, memoryBroker } from '../server/broker.js';
import { createServer, type Server, type ServerOptions } from '../server/server.js';
import type { RequestContext } from '../server/server-peer.js';
import type { HeartbeatSetting } from '../session/heartbeat.js';
import { MAX_TIMER_MS } from '../util/check.js';
import type { LogLevel } from '../util/log.js';
import {
  type Command,
  CommandFailed,
  EXIT,
  endpoint,
  type Io,
  intArg,
  onInterrupt,
  type ParsedArgs,
  portArg,
  signalExitCode,
  stringArg,
  UsageError,
} from './args.js';
import { type LogFormat, logFormatArg, logLevelArg, type ServeLog, serveLog } from './log.js';
import {
  rateArg,
  serveWithWorkers,
  WORKER_OPTIONS,
  type WorkersFlags,
  workersFlags,
} from './serve-workers.js';

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
 * Runs until SIGTERM/SIGINT, then shuts down gracefully; a second signal aborts every connection.
 * Resolves with the exit code: 0 after a graceful shutdown, 128 + the signal's number after an abort.
 */
export async function serve(o: ServeOptions): Promise<number> {
  if (o.workers !== undefined) return serveWithWorkers(o, o.workers);
  const log = serveLog(o.log, o.logFormat, o.logLevel);
  let broker: Broker | undefined;
  if (o.brokerUrl !== undefined) {
    try {
      broker = await redisBroker({
        url: o.brokerUrl,
        logger: log.logger,
        ...(o.history === undefined ? {} : { history: o.history }),
      });
    } catch (err) {
      if (err instanceof MissingDependencyError) throw new CommandFailed(`--broker: ${err.message}`);
      throw err;
    }
  }
  // Without Redis, rooms stay in this server; --history-* still bound their history.
  if (broker === undefined && o.history !== undefined && o.framing === 'longlink')
    broker = memoryBroker(o.history);
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

/** `--heartbeat off|standard|strict|INTERVAL/TIMEOUT` (ms). */
export function heartbeatArg(v: string): HeartbeatSetting {
  if (v === 'off' || v === 'false') return false;
  if (v === 'standard' || v === 'strict') return v;
  const m = /^(\d+)\/(\d+)$/.exec(v);
  if (m) {
    const intervalMs = Number(m[1]);
    const timeoutMs = Number(m[2]);
    if (intervalMs > 0 && timeoutMs > intervalMs) return { intervalMs, timeoutMs };
  }
  throw new UsageError(
    `--heartbeat must be off, standard, strict or INTERVAL/TIMEOUT in ms with 0 < INTERVAL < TIMEOUT (e.g. 1000/3000), got ${JSON.stringify(v)}`,
  );
}

/** `--keepalive off|SECONDS` (the idle time before the first TCP keepalive probe). */
function keepAliveArg(v: string): ConnectionOptions['keepAlive'] {
  if (v === 'off' || v === 'false') return false;
  const n = Number(v);
  if (/^\d+(\.\d+)?$/.test(v) && n >= 1 && n <= 32_767) return { idleMs: Math.round(n * 1000) };
  throw new UsageError(
    `--keepalive must be off or the idle seconds before the first probe (1–32767), got ${JSON.stringify(v)}`,
  );
}

export const serveCommand: Command = {
  name: 'serve',
  summary: 'a longlink server with built-in methods, or an echo server for any framing',
  usage: ['[options]'],
  description:
    'A longlink server with the methods echo, sleep (ms), push ({topic,count}: that many NOTIFYs), ' +
    'whoami, stats, and for rooms join ({room}), leave ({room}) and publish ({room,topic,payload}: ' +
    'a push to every member, answered with its seq); any client may join any room. --broker ' +
    "redis://HOST:PORT carries rooms across every server using that Redis, with each room's " +
    'history there for clients that resume (--history-length, --history-age). With --framing SPEC, a plain echo server for that framing (each frame sent ' +
    'back as it came). One line per connection opened and closed, with the close reason; the ' +
    "server's own lines for refusals, handler failures, slow consumers and heartbeat deaths (floods " +
    'summarised); every line with its time and level (--log-format text|json, --log-level).\n\n' +
    '--metrics-port P serves the admin endpoint: /metrics for Prometheus, /api/summary and ' +
    '/api/connections as JSON, and a live dashboard at / (on 127.0.0.1 unless --admin-host says ' +
    "otherwise: it shows peers' addresses).\n\n" +
    'SIGTERM or Ctrl-C: graceful shutdown (GOAWAY, the requests already read are answered, then ' +
    'close; exit 0); a second one aborts every connection (exit 130, or 143 for SIGTERM).\n\n' +
    '--workers N runs the server in N processes on one port (node:cluster, or SO_REUSEPORT with ' +
    '--workers-mode reuse-port on Node >= 22.12); the primary restarts a worker that dies (with ' +
    'backoff) and drains them all on SIGTERM; whoami names the worker and its pid.\n\n' +
    'As the far end of `longlink probe`, start it with --heartbeat off --keepalive off (and ' +
    '--idle-timeout 0 with a plain framing), so that it never speaks while the probe measures silence.',
  options: {
    host: {
      type: 'string',
      default: '127.0.0.1',
      arg: 'HOST',
      help: 'address to listen on (:: for every IPv6 and IPv4 address)',
    },
    port: { type: 'string', default: '7070', arg: 'PORT', help: 'port (0: any free port, printed)' },
    framing: {
      type: 'string',
      default: 'longlink',
      arg: 'SPEC',
      help: "'longlink' (the protocol), or a plain framing for an echo server: ascii:20, u32be, line …",
    },
    grace: {
      type: 'string',
      default: '10000',
      arg: 'MS',
      help: 'shutdown grace before the remaining connections are aborted',
    },
    heartbeat: {
      type: 'string',
      arg: 'H',
      help: 'off, standard (PING after 10 s of silence, dead after 30 s), strict (2 s / 6 s) or INTERVAL/TIMEOUT in ms (default standard)',
    },
    'idle-budget': {
      type: 'string',
      arg: 'MS',
      help: "the path's idle timeout (what `longlink probe` found): the heartbeat is derived from it",
    },
    keepalive: {
      type: 'string',
      arg: 'S|off',
      help: 'TCP keepalive on accepted sockets: idle seconds before the first probe, or off (default 60)',
    },
    'idle-timeout': {
      type: 'string',
      arg: 'MS',
      help: 'plain framings: close connections with nothing read for this long; 0 never (default 120000)',
    },
    'tls-cert': {
      type: 'string',
      arg: 'FILE',
      help: 'serve TLS with this certificate (PEM); needs --tls-key',
    },
    'tls-key': { type: 'string', arg: 'FILE', help: 'key of --tls-cert (PEM)' },
    'tls-ca': { type: 'string', arg: 'FILE', help: 'CA for client certificates (PEM)' },
    'tls-client-auth': { type: 'boolean', help: 'require a client certificate signed by --tls-ca (mTLS)' },
    'proxy-protocol': {
      type: 'boolean',
      help: 'expect a PROXY v1/v2 header (haproxy, nginx) from --trusted-proxies',
    },
    'trusted-proxies': { type: 'string', arg: 'CIDR[,CIDR]', help: 'who may send a PROXY header' },
    'max-connections-per-ip': {
      type: 'string',
      arg: 'N',
      help: 'connections allowed from one client address',
    },
    'auth-token-file': {
      type: 'string',
      arg: 'FILE',
      help: 'require this token as the HELLO credential (checked in constant time)',
    },
    'metrics-port': {
      type: 'string',
      arg: 'PORT',
      help: 'the admin endpoint: /metrics (Prometheus; needs prom-client), /api/summary, /api/connections and a live dashboard at /; `longlink top --port PORT` reads it',
    },
    'admin-host': {
      type: 'string',
      default: '127.0.0.1',
      arg: 'HOST',
      help: "where the admin endpoint listens; it shows peers' addresses and identities to whoever reaches it",
    },
    'log-format': {
      type: 'string',
      default: 'text',
      arg: 'F',
      help: 'text (time, level, message) or json (one object per line)',
    },
    broker: {
      type: 'string',
      arg: 'URL',
      help: 'redis://HOST:PORT: rooms across every server on that Redis (needs @redis/client); default: rooms in this server',
    },
    'history-length': {
      type: 'string',
      arg: 'N',
      help: 'room history kept for resuming clients: entries per room (default 1000)',
    },
    'history-age': {
      type: 'string',
      arg: 'MS',
      help: 'room history kept for resuming clients: entries younger than this (default 300000; 0: no age limit)',
    },
    'log-level': {
      type: 'string',
      default: 'info',
      arg: 'L',
      help: 'debug, info, warn or error: lines below it are dropped',
    },
    'max-connection-age': {
      type: 'string',
      arg: 'MS',
      help: 'GOAWAY each connection once it is this old (± 10 %, then 30 s of grace): clients reconnect, through your balancer, to wherever it sends them now',
    },
    'accept-rate': {
      type: 'string',
      arg: 'N[/BURST]',
      help: 'accept at most N new connections per second (bursts of BURST); the rest are refused with a jittered retry hint',
    },
    'retry-after': {
      type: 'string',
      arg: 'MS',
      help: "the base of the retry hint in refusals and in the shutdown's GOAWAYs (each gets up to as much again at random; default 1000)",
    },
    ...WORKER_OPTIONS,
  },
  examples: [
    ['longlink serve --port 7070', 'the protocol server; try `longlink call echo 1` next to it'],
    [
      'longlink serve --framing ascii:20 --port 9000',
      "an echo server for the sources' 20-digit header + JSON",
    ],
    [
      'longlink serve --host :: --port 7443 --tls-cert server.pem --tls-key server.key --tls-ca ca.pem --tls-client-auth',
      'TLS with client certificates, on IPv6 and IPv4',
    ],
    ['longlink serve --port 7070 --heartbeat off --keepalive off', 'a quiet far end for `longlink probe`'],
    [
      'longlink serve --port 7071 --broker redis://127.0.0.1:6379',
      'one of several servers sharing rooms; `longlink call --follow join \'{"room":"r"}\'` on one, ' +
        '`longlink call publish \'{"room":"r","payload":1}\'` on another',
    ],
    [
      'longlink serve --port 7070 --metrics-port 9100 --log-format json',
      'metrics at http://127.0.0.1:9100/metrics, the dashboard at http://127.0.0.1:9100/, JSON logs',
    ],
    [
      'longlink serve --host 0.0.0.0 --port 7070 --workers 2',
      'two worker processes on one port; SIGTERM drains both (GOAWAY) and exits 0',
    ],
    [
      'longlink serve --port 7070 --proxy-protocol --trusted-proxies 10.0.0.0/8 --max-connection-age 600000',
      'behind haproxy: every connection comes back through it every ~10 minutes, so a new node gets its share',
    ],
  ],
  run: runServe,
};

function runServe(args: ParsedArgs, io: Io): Promise<number> {
  const cert = stringArg(args, 'tls-cert');
  const key = stringArg(args, 'tls-key');
  if ((cert === undefined) !== (key === undefined))
    throw new UsageError('--tls-cert and --tls-key go together');
  if (args.values['tls-client-auth'] === true && args.values['tls-ca'] === undefined) {
    throw new UsageError('--tls-client-auth needs --tls-ca (the CA that signs client certificates)');
  }
  if ((args.values['proxy-protocol'] === true) !== (args.values['trusted-proxies'] !== undefined)) {
    throw new UsageError(
      '--proxy-protocol and --trusted-proxies CIDR[,CIDR] go together (a PROXY header is believed only from trusted proxies)',
    );
  }
  const framing = stringArg(args, 'framing') ?? 'longlink';
  if (framing !== 'longlink') {
    try {
      parseFraming(framing);
    } catch (err) {
      throw new UsageError(`--framing: ${(err as Error).message}`);
    }
  }
  const heartbeat = stringArg(args, 'heartbeat');
  const keepalive = stringArg(args, 'keepalive');
  const tlsCa = stringArg(args, 'tls-ca');
  const trusted = stringArg(args, 'trusted-proxies');
  const tokenFile = stringArg(args, 'auth-token-file');
  const brokerUrl = stringArg(args, 'broker');
  if (brokerUrl !== undefined && !/^rediss?:\/\/./.test(brokerUrl)) {
    throw new UsageError(`--broker must be a redis:// URL, got ${JSON.stringify(brokerUrl)}`);
  }
  if (brokerUrl !== undefined && framing !== 'longlink')
    throw new UsageError('--broker needs the longlink protocol');
  const o: ServeOptions = {
    host: stringArg(args, 'host') ?? '127.0.0.1',
    port: portArg(args),
    framing,
    graceMs: intArg(args, 'grace', 0, MAX_TIMER_MS),
    log: io.out,
    logFormat: logFormatArg(stringArg(args, 'log-format')),
    logLevel: logLevelArg(stringArg(args, 'log-level')),
    ...(args.values['metrics-port'] === undefined ? {} : { metricsPort: portArg(args, 'metrics-port') }),
    adminHost: stringArg(args, 'admin-host') ?? '127.0.0.1',
    ...(cert !== undefined && key !== undefined
      ? {
          tls: {
            certFile: cert,
            keyFile: key,
            ...(tlsCa === undefined ? {} : { caFile: tlsCa }),
            clientAuth: args.values['tls-client-auth'] === true,
          },
        }
      : {}),
    ...(trusted === undefined ? {} : { trustedProxies: trusted }),
    ...(args.values['max-connections-per-ip'] === undefined
      ? {}
      : { maxConnectionsPerAddress: intArg(args, 'max-connections-per-ip', 1) }),
    ...(tokenFile === undefined ? {} : { authTokenFile: tokenFile }),
    ...(heartbeat === undefined ? {} : { heartbeat: heartbeatArg(heartbeat) }),
    ...(args.values['idle-budget'] === undefined ? {} : { idleBudgetMs: intArg(args, 'idle-budget', 1) }),
    ...(keepalive === undefined ? {} : { keepAlive: keepAliveArg(keepalive) }),
    ...(args.values['idle-timeout'] === undefined
      ? {}
      : { legacyIdleTimeoutMs: intArg(args, 'idle-timeout', 0) }),
    ...(args.values['max-connection-age'] === undefined
      ? {}
      : { maxConnectionAgeMs: intArg(args, 'max-connection-age', 1, 2 ** 31 / 1.2) }),
    ...(args.values['accept-rate'] === undefined
      ? {}
      : { acceptRate: rateArg('--accept-rate', stringArg(args, 'accept-rate') as string) }),
    ...(args.values['retry-after'] === undefined ? {} : { retryAfterMs: intArg(args, 'retry-after', 0) }),
    ...workersFlags(args),
    ...(brokerUrl === undefined ? {} : { brokerUrl }),
    ...(args.values['history-length'] === undefined && args.values['history-age'] === undefined
      ? {}
      : {
          history: {
            ...(args.values['history-length'] === undefined
              ? {}
              : { maxLength: intArg(args, 'history-length', 1) }),
            ...(args.values['history-age'] === undefined ? {} : { maxAgeMs: intArg(args, 'history-age', 0) }),
          },
        }),
  };
  return serve(o);
}
