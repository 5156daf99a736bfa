/** `longlink serve`: a longlink server with built-in methods, or a plain-framing echo server. */

import { timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Connection } from '../connection/connection.js';
import { createServer, type Server, type ServerOptions } from '../server/server.js';
import type { RequestContext } from '../server/server-peer.js';

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
  o: Omit<ServeOptions, 'host' | 'port' | 'framing' | 'graceMs' | 'log'>,
): Partial<ServerOptions> {
  const out: Partial<ServerOptions> = {};
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

/** What `whoami` answers: who the server thinks the caller is. */
function whoami(_p: unknown, ctx: RequestContext) {
  const t = ctx.tls;
  return {
    remoteAddress: ctx.remoteAddress,
    remotePort: ctx.remotePort,
    pid: process.pid,
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
  log: (line: string) => void;
  /** TLS: certificate and key (PEM files); `ca` and `clientAuth` require client certificates (mTLS). */
  tls?: { certFile: string; keyFile: string; caFile?: string; clientAuth?: boolean };
  /** PROXY protocol v1/v2 from these addresses/CIDRs only. */
  trustedProxies?: string;
  maxConnectionsPerAddress?: number;
  /** Require this credential in HELLO (read from a file; surrounding whitespace ignored). */
  authTokenFile?: string;
}

function peer(c: Connection): string {
  return `${c.remoteAddress}:${c.remotePort}`;
}

/** Builds the server `serve` runs. Exported for the demo and the tests. */
export function buildServer(o: Pick<ServeOptions, 'framing' | 'log'> & Partial<ServeOptions>): Server {
  const edge = edgeOptions(o);
  const started = Date.now();
  let requests = 0;
  const server: Server =
    o.framing === 'longlink'
      ? createServer({
          name: 'longlink-serve',
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
              return whoami(p, ctx);
            },
          },
          ...edge,
        })
      : createServer({ legacy: { framing: o.framing, handler: (frame) => frame }, ...edge });
  server.on('connection', (c) => o.log(`open  ${peer(c)} id=${c.id}`));
  server.on('refused', (r) =>
    o.log(
      `refused ${r.remoteAddress}:${r.remotePort} reason=${r.reason}` +
        (r.error ? ` error=${JSON.stringify(r.error.message.split('\n')[0])}` : ''),
    ),
  );
  server.on('handlerError', (f) =>
    o.log(
      `handler-error method=${f.method ?? '-'} id=${f.connectionId} error=${JSON.stringify(String((f.error as Error)?.message ?? f.error))}`,
    ),
  );
  server.on('disconnect', (c, info) =>
    o.log(
      `close ${peer(c)} id=${c.id} reason=${info.reason} initiator=${info.initiator} graceful=${info.graceful}` +
        (info.error ? ` error=${info.error.code}` : ''),
    ),
  );
  return server;
}

/** Runs until SIGTERM/SIGINT, then shuts down gracefully. Resolves with the exit code. */
export async function serve(o: ServeOptions): Promise<number> {
  const server = buildServer(o);
  const addr = await server.listen({ host: o.host, port: o.port });
  o.log(
    `listening ${addr.address}:${addr.port} framing=${o.framing} pid=${process.pid}` +
      (o.tls ? ` tls${o.tls.clientAuth ? '+client-auth' : ''}` : '') +
      (o.trustedProxies ? ` proxy-protocol=${o.trustedProxies}` : '') +
      (o.authTokenFile ? ' auth=token' : ''),
  );
  return new Promise((resolve) => {
    let stopping = false;
    const stop = async (signal: string) => {
      if (stopping) {
        o.log(`${signal} again: aborting every connection`);
        server.destroy();
        return;
      }
      stopping = true;
      o.log(`${signal}: graceful shutdown (grace ${o.graceMs} ms)`);
      const report = await server.close({ graceMs: o.graceMs });
      o.log(
        `shutdown connections=${report.connections} graceful=${report.closedGracefully} aborted=${report.aborted} ` +
          `inflight=${report.inflightAtStart} unanswered=${report.unanswered} ms=${report.durationMs.toFixed(0)}`,
      );
      resolve(0);
    };
    process.once('SIGTERM', () => void stop('SIGTERM'));
    process.once('SIGINT', () => void stop('SIGINT'));
  });
}
