/** `longlink serve`: a longlink server with built-in methods, or a plain-framing echo server. */

import type { Connection } from '../connection/connection.js';
import { createServer, type Server } from '../server/server.js';

export interface ServeOptions {
  host: string;
  port: number;
  /** 'longlink' for the protocol, or a framing spec (ascii:20, u32be, line …) for a plain echo. */
  framing: string;
  graceMs: number;
  log: (line: string) => void;
}

function peer(c: Connection): string {
  return `${c.remoteAddress}:${c.remotePort}`;
}

/** Builds the server `serve` runs. Exported for the demo and the tests. */
export function buildServer(o: Pick<ServeOptions, 'framing' | 'log'>): Server {
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
            stats: () => {
              requests++;
              return {
                connections: server.connectionCount,
                inflight: server.inflightCount,
                requests,
                uptimeMs: Date.now() - started,
                pid: process.pid,
              };
            },
          },
        })
      : createServer({ legacy: { framing: o.framing, handler: (frame) => frame } });
  server.on('connection', (c) => o.log(`open  ${peer(c)} id=${c.id}`));
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
  o.log(`listening ${addr.address}:${addr.port} framing=${o.framing} pid=${process.pid}`);
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
