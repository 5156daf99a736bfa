/**
 * The admin endpoint: one small HTTP server beside a longlink Server, off unless asked for and on
 * loopback unless told otherwise. It serves
 *
 *   /metrics           Prometheus text (when metrics are enabled)
 *   /api/summary       totals and the last second's rate and latency, as JSON
 *   /api/connections   one record per connection: peer, age, RTT, in flight, queued bytes, the
 *                      kernel's TCP state and retransmits (TCP_INFO), identity, TLS
 *   /                  a dashboard page with live charts (uPlot, from node_modules)
 *
 * It shows peers' addresses and identities: anyone who can reach it learns who is connected.
 * Keep it on loopback (the default) or behind something that authenticates. On a loopback
 * address it also refuses requests whose Host header names another host, so a web page the
 * operator visits cannot read it through DNS rebinding.
 */

import { readFile } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import { InvalidArgumentError } from '../errors.js';
import type { Server } from '../server/server.js';
import { checkPort, optionalInteger } from '../util/check.js';
import { now } from '../util/clock.js';
import { DASHBOARD_CSS, DASHBOARD_HTML, DASHBOARD_JS } from './dashboard.js';
import { type LonglinkMetrics, recorderOf } from './metrics.js';
import { peerFile } from './peer.js';
import { Recorder } from './recorder.js';

/** Options of {@link serveAdmin}. */
export interface AdminOptions {
  /** Port to listen on; 0 (the default) picks a free one (see `admin.address`). */
  port?: number;
  /** Address to listen on. Default `127.0.0.1`: the endpoint shows peers' addresses and identities. */
  host?: string;
  /** Serve these metrics at `/metrics` (from {@link enableMetrics}); without, `/metrics` is 404. */
  metrics?: LonglinkMetrics;
  /**
   * Open HTTP connections at most (an integer ≥ 1). Default 32: a dashboard and a few scrapers need
   * a handful. Past it a new connection is closed at once, unanswered, so idle sockets cannot take
   * the file descriptors the longlink port needs.
   */
  maxConnections?: number;
  /**
   * How long a request may take to arrive, headers and all, ms (an integer in [1, 2^31-1]).
   * Default 5000. A connection still sending its request then, or silent that long, is closed; an
   * idle keep-alive connection is closed after min(this, 2000) ms.
   */
  requestTimeoutMs?: number;
}

/** The defaults of {@link AdminOptions}. */
export const ADMIN_DEFAULTS = { maxConnections: 32, requestTimeoutMs: 5000 } as const;

/** A running admin endpoint. */
export interface AdminServer {
  /** Where it listens. */
  readonly address: net.AddressInfo;
  /** `http://host:port/`. */
  readonly url: string;
  /** What `/api/summary` answers, now. */
  summary(): AdminSummary;
  /** What `/api/connections` answers, now. */
  connections(options?: { sort?: ConnectionSort; limit?: number }): AdminConnections;
  /** Stops listening and closes open HTTP connections. */
  close(): Promise<void>;
}

/** What `/api/summary` answers. Request figures are those of every server in the process. */
export interface AdminSummary {
  /** Wall-clock time of the reading (ms since the epoch). */
  time: number;
  /** The longlink server's address, `host:port`. */
  server: string | null;
  /** Connections being served, and still in the PROXY/TLS stage. */
  connections: number;
  accepting: number;
  /** Requests being handled now. */
  inflight: number;
  requests: {
    /** Requests answered since the admin endpoint started (or the metrics it was given). */
    total: number;
    /** Over the last complete second. */
    perSecond: number;
    /** Median and 99th percentile handler time over the last complete second, ms (null: none). */
    p50Ms: number | null;
    p99Ms: number | null;
  };
  handlerErrors: number;
  /** Refused connections since the server started, by reason, and their sum. */
  refused: Record<string, number>;
  refusedTotal: number;
  /** Closed connections since the server started, by close reason, and their sum. */
  closed: Record<string, number>;
  closedTotal: number;
  /** Heartbeat round trips over the last 10 s, ms (null: none). */
  heartbeatRtt: { p50Ms: number | null; p99Ms: number | null; perSecond: number };
  memory: { usedBytes: number; limitBytes: number };
}

/** How `/api/connections` sorts (largest first; `age`: oldest first). */
export type ConnectionSort = 'age' | 'rtt' | 'inflight' | 'queued' | 'retransmits';
const SORTS: readonly ConnectionSort[] = ['age', 'rtt', 'inflight', 'queued', 'retransmits'];

/** One connection as `/api/connections` shows it. */
export interface AdminConnection {
  id: string;
  /** `host:port` of the client (the PROXY source behind a trusted proxy). */
  peer: string;
  ageMs: number;
  /** Smoothed heartbeat round trip, ms; null before the first PONG. */
  rttMs: number | null;
  inflight: number;
  /** Bytes queued for sending, not yet taken by the kernel. */
  queuedBytes: number;
  /** The Connection's state (open, closing …). */
  state: string;
  /** HELLO done. */
  ready: boolean;
  legacy: boolean;
  bytesRead: number;
  bytesWritten: number;
  /** What authenticate returned (or the mTLS subject), as text, at most 200 characters. */
  identity: string | null;
  tls: { protocol: string | null; authorized: boolean; peerSubject: string | null } | null;
  /** The kernel's view (TCP_INFO), where readable. */
  tcp: {
    state: string;
    /** Retransmissions of the segment at the head now, and over the connection's life. */
    retransmits: number;
    totalRetransmits: number;
    rttMs: number;
    cwnd: number;
    unackedSegments: number;
  } | null;
}

/** What `/api/connections` answers. */
export interface AdminConnections {
  /** Connections being served. */
  total: number;
  sort: ConnectionSort;
  connections: AdminConnection[];
}

function endpoint(host: string | undefined, port: number | undefined): string {
  const h = host ?? '?';
  return `${h.includes(':') ? `[${h}]` : h}:${port ?? '?'}`;
}

function identityText(v: unknown): string | null {
  if (v === undefined || v === null) return null;
  let s: string;
  if (typeof v === 'string') s = v;
  else {
    try {
      s = JSON.stringify(v) ?? String(v);
    } catch {
      s = String(v);
    }
  }
  return s.length > 200 ? `${s.slice(0, 199)}…` : s;
}

const round = (x: number, digits = 3): number => {
  const k = 10 ** digits;
  return Math.round(x * k) / k;
};
const ms = (seconds: number | undefined): number | null =>
  seconds === undefined ? null : round(seconds * 1000);

/**
 * An address that is the loopback interface: an IPv4 literal in 127.0.0.0/8, `::1`, or `::1`'s
 * IPv4-mapped form. Literals only — a name like `127.attacker.example` is whatever its owner's DNS
 * says it is, which is the whole DNS-rebinding attack.
 */
function isLoopbackAddress(address: string): boolean {
  if (net.isIPv4(address)) return address.startsWith('127.');
  if (!net.isIPv6(address)) return false;
  const a = address.toLowerCase();
  if (a === '::1' || a === '0:0:0:0:0:0:0:1') return true;
  const mapped = /^::ffff:(.+)$/.exec(a)?.[1];
  return mapped !== undefined && net.isIPv4(mapped) && mapped.startsWith('127.');
}

/**
 * Whether a Host header (RFC 9110 §7.2: `uri-host [ ":" port ]`) names this machine's loopback:
 * `localhost`, an IPv4 literal in 127/8 or `[::1]`, with an optional decimal port. Anything else —
 * other names, `localhost.`, a bracketed IPv4, junk after the port — is not.
 */
function isLoopbackHost(header: string): boolean {
  let host: string;
  let port: string;
  if (header.startsWith('[')) {
    const end = header.indexOf(']');
    if (end < 0) return false;
    host = header.slice(1, end);
    if (!net.isIPv6(host)) return false;
    port = header.slice(end + 1);
  } else {
    const i = header.indexOf(':');
    host = i < 0 ? header : header.slice(0, i);
    port = i < 0 ? '' : header.slice(i);
  }
  if (port !== '' && !/^:\d{1,5}$/.test(port)) return false;
  return host.toLowerCase() === 'localhost' || isLoopbackAddress(host);
}

class Admin implements AdminServer {
  readonly http: http.Server;
  address!: net.AddressInfo;
  private readonly recorder: Recorder;
  private readonly ownRecorder: boolean;
  private readonly sockets = new Set<net.Socket>();

  constructor(
    private readonly server: Server,
    private readonly metrics: LonglinkMetrics | undefined,
    limits: { maxConnections: number; requestTimeoutMs: number },
  ) {
    const shared = metrics === undefined ? undefined : recorderOf(metrics);
    this.recorder = shared ?? new Recorder();
    this.recorder.startLive();
    this.ownRecorder = shared === undefined;
    // Node's defaults (60 s for headers, 300 s for a request, checked every 30 s, no connection
    // cap) let anyone who can reach the port hold sockets, and so file descriptors, for minutes.
    const t = limits.requestTimeoutMs;
    const serverOptions: http.ServerOptions = {
      headersTimeout: t,
      requestTimeout: t,
      keepAliveTimeout: Math.min(t, 2000),
      connectionsCheckingInterval: Math.max(1, Math.min(1000, Math.ceil(t / 2))),
    };
    this.http = http.createServer(serverOptions, (req, res) => {
      this.handle(req, res).catch((err: unknown) => {
        if (!res.headersSent) this.send(res, 500, 'text/plain; charset=utf-8', `${String(err)}\n`);
        else res.destroy();
      });
    });
    this.http.maxConnections = limits.maxConnections;
    // headersTimeout counts only once the first byte has come: a socket that sends nothing is
    // closed by the inactivity timeout instead.
    this.http.setTimeout(t);
    this.http.on('connection', (s: net.Socket) => {
      this.sockets.add(s);
      s.once('close', () => this.sockets.delete(s));
    });
  }

  get url(): string {
    return `http://${endpoint(this.address.address, this.address.port)}/`;
  }

  summary(): AdminSummary {
    const st = this.server.stats();
    const r = this.recorder;
    const t = now();
    const live = r.server.live.query(t, 1);
    const rtt = r.rttLive.query(t, 9);
    const sum = (o: Partial<Record<string, number>>): number =>
      Object.values(o).reduce<number>((a, b) => a + (b ?? 0), 0);
    const addr = this.server.address();
    return {
      time: Date.now(),
      server: addr === undefined ? null : endpoint(addr.address, addr.port),
      connections: st.connections,
      accepting: st.accepting,
      inflight: st.inflight,
      requests: {
        total: r.server.total,
        perSecond: live.rate,
        p50Ms: ms(live.p50),
        p99Ms: ms(live.p99),
      },
      handlerErrors: st.handlerErrors,
      refused: st.refused as Record<string, number>,
      refusedTotal: sum(st.refused),
      closed: st.closed as Record<string, number>,
      closedTotal: sum(st.closed),
      heartbeatRtt: { p50Ms: ms(rtt.p50), p99Ms: ms(rtt.p99), perSecond: round(rtt.rate) },
      memory: { usedBytes: st.memory.usedBytes, limitBytes: st.memory.limitBytes },
    };
  }

  connections(options: { sort?: ConnectionSort; limit?: number } = {}): AdminConnections {
    const sort = options.sort ?? 'age';
    const limit = Math.max(0, Math.min(options.limit ?? 1000, 10_000));
    const served = this.server.served();
    // The kernel is asked (a syscall per connection) only for the ones shown, unless the sort needs it.
    const rows = served.map((c) => ({
      c,
      tcp: sort === 'retransmits' ? c.connection.stats().tcpInfo : undefined,
    }));
    const key = (x: (typeof rows)[number]): number => {
      switch (sort) {
        case 'rtt':
          return x.c.rttMs ?? -1;
        case 'inflight':
          return x.c.inflight;
        case 'queued':
          return x.c.connection.bufferedAmount;
        case 'retransmits':
          return x.tcp?.totalRetrans ?? -1;
        default:
          return x.c.ageMs;
      }
    };
    rows.sort((a, b) => key(b) - key(a));
    const connections = rows.slice(0, limit).map(({ c, tcp }): AdminConnection => {
      const conn = c.connection;
      const info = tcp ?? conn.stats().tcpInfo;
      return {
        id: conn.id,
        peer: endpoint(c.remoteAddress, c.remotePort),
        ageMs: Math.round(c.ageMs),
        rttMs: c.rttMs === undefined ? null : round(c.rttMs),
        inflight: c.inflight,
        queuedBytes: conn.bufferedAmount,
        state: conn.state,
        ready: c.ready,
        legacy: c.legacy,
        bytesRead: conn.socket.bytesRead,
        bytesWritten: conn.socket.bytesWritten,
        identity: identityText(c.identity),
        tls:
          c.tls === null
            ? null
            : {
                protocol: c.tls.protocol,
                authorized: c.tls.authorized,
                peerSubject: c.tls.peerSubject ?? null,
              },
        tcp:
          info === undefined
            ? null
            : {
                state: info.state,
                retransmits: info.retransmits,
                totalRetransmits: info.totalRetrans,
                rttMs: round(info.rttUs / 1000),
                cwnd: info.sndCwnd,
                unackedSegments: info.unacked,
              },
      };
    });
    return { total: served.length, sort, connections };
  }

  private send(res: http.ServerResponse, status: number, type: string, body: string | Buffer): void {
    res.writeHead(status, {
      'content-type': type,
      'content-length': Buffer.byteLength(body),
      'cache-control': 'no-store',
      'x-content-type-options': 'nosniff',
      'content-security-policy': "default-src 'self'; style-src 'self' 'unsafe-inline'",
    });
    res.end(body);
  }

  private json(res: http.ServerResponse, value: unknown): void {
    this.send(res, 200, 'application/json; charset=utf-8', `${JSON.stringify(value)}\n`);
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    if (isLoopbackAddress(this.address.address) && !isLoopbackHost(req.headers.host ?? 'localhost')) {
      this.send(res, 403, 'text/plain; charset=utf-8', 'this endpoint answers requests for localhost only\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('allow', 'GET, HEAD');
      this.send(res, 405, 'text/plain; charset=utf-8', 'GET only\n');
      return;
    }
    const url = new URL(req.url ?? '/', 'http://localhost');
    switch (url.pathname) {
      case '/metrics': {
        if (this.metrics === undefined) {
          this.send(
            res,
            404,
            'text/plain; charset=utf-8',
            'metrics are not enabled on this endpoint (serveAdmin(server, { metrics: await enableMetrics() }))\n',
          );
          return;
        }
        this.send(res, 200, this.metrics.contentType, await this.metrics.metrics());
        return;
      }
      case '/api/summary':
        this.json(res, this.summary());
        return;
      case '/api/connections': {
        const sort = url.searchParams.get('sort') ?? 'age';
        const limitText = url.searchParams.get('limit');
        const limit = limitText === null ? undefined : Number(limitText);
        if (!SORTS.includes(sort as ConnectionSort) || (limit !== undefined && !Number.isInteger(limit))) {
          this.send(
            res,
            400,
            'text/plain; charset=utf-8',
            `sort is one of ${SORTS.join(', ')}; limit an integer\n`,
          );
          return;
        }
        this.json(
          res,
          this.connections({ sort: sort as ConnectionSort, ...(limit === undefined ? {} : { limit }) }),
        );
        return;
      }
      case '/':
      case '/index.html':
        this.send(res, 200, 'text/html; charset=utf-8', DASHBOARD_HTML);
        return;
      case '/assets/dashboard.js':
        this.send(res, 200, 'text/javascript; charset=utf-8', DASHBOARD_JS);
        return;
      case '/assets/dashboard.css':
        this.send(res, 200, 'text/css; charset=utf-8', DASHBOARD_CSS);
        return;
      case '/assets/uPlot.iife.min.js':
      case '/assets/uPlot.min.css': {
        // From the installed uplot package (an optional peer): no bundler, no CDN.
        const file = peerFile('uplot', `dist/${url.pathname.slice('/assets/'.length)}`);
        const body = file === undefined ? undefined : await readFile(file).catch(() => undefined);
        if (body === undefined) {
          this.send(res, 404, 'text/plain; charset=utf-8', 'uplot is not installed: npm install uplot\n');
          return;
        }
        this.send(
          res,
          200,
          url.pathname.endsWith('.css') ? 'text/css; charset=utf-8' : 'text/javascript; charset=utf-8',
          body,
        );
        return;
      }
      default:
        this.send(res, 404, 'text/plain; charset=utf-8', 'not found\n');
    }
  }

  close(): Promise<void> {
    if (this.ownRecorder) this.recorder.close();
    return new Promise((resolve) => {
      this.http.close(() => resolve());
      for (const s of this.sockets) s.destroy();
    });
  }
}

/**
 * Serves the admin endpoint for `server`: `/metrics` (with `metrics`), `/api/summary`,
 * `/api/connections` and a live dashboard at `/`. Off unless called; listens on 127.0.0.1 unless
 * `host` says otherwise — it shows peers' addresses and identities to whoever can reach it.
 *
 * @example
 * ```ts
 * import { createServer, enableMetrics, serveAdmin } from 'longlink';
 * const server = createServer({ handlers: { echo: (p) => p } });
 * await server.listen({ port: 7070 });
 * const admin = await serveAdmin(server, { port: 9100, metrics: await enableMetrics({ servers: [server] }) });
 * console.log(admin.url); // http://127.0.0.1:9100/ — the dashboard; longlink top --port 9100
 * ```
 */
export async function serveAdmin(server: Server, options: AdminOptions = {}): Promise<AdminServer> {
  if (server === null || typeof server !== 'object' || typeof server.served !== 'function') {
    throw new InvalidArgumentError('serveAdmin needs a longlink Server');
  }
  const port = options.port ?? 0;
  checkPort(port, 0);
  const limits = {
    maxConnections: optionalInteger(
      'maxConnections',
      options.maxConnections,
      ADMIN_DEFAULTS.maxConnections,
      1,
      Number.MAX_SAFE_INTEGER,
    ),
    requestTimeoutMs: optionalInteger(
      'requestTimeoutMs',
      options.requestTimeoutMs,
      ADMIN_DEFAULTS.requestTimeoutMs,
      1,
      2 ** 31 - 1,
    ),
  };
  const admin = new Admin(server, options.metrics, limits);
  if (options.metrics !== undefined) options.metrics.addServer(server);
  await new Promise<void>((resolve, reject) => {
    admin.http.once('error', reject);
    admin.http.listen({ port, host: options.host ?? '127.0.0.1' }, () => {
      admin.http.off('error', reject);
      resolve();
    });
  }).catch((err: unknown) => {
    void admin.close();
    throw err;
  });
  admin.address = admin.http.address() as net.AddressInfo;
  return admin;
}
