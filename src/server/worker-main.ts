/**
 * A worker process of {@link serveWorkers} (workers.ts): reads its configuration from the
 * LONGLINK_WORKER environment variable, imports the user's module, calls its default export for
 * a Server, listens on the shared address and tells the primary. On the primary's 'close' (or a
 * SIGTERM/SIGINT of its own, or the primary's death) it closes the server gracefully — GOAWAY,
 * the accepted requests answered — sends its report and exits 0.
 *
 * Always the ESM build's file (a real `import()` of the user's module, ESM or CommonJS).
 */

import type { AddressInfo } from 'node:net';
import type { ListenOptions, ShutdownReport } from './options.js';
import { type ToPrimary, WORKER_ENV, type WorkerConfig } from './workers-options.js';

/** The part of a Server a worker uses (duck-typed: the user's copy of longlink may be the CommonJS one). */
interface ServerLike {
  listen(options: ListenOptions): Promise<AddressInfo>;
  close(options: { graceMs?: number; retryAfterMs?: number }): Promise<ShutdownReport>;
  destroy(): void;
}

function send(m: ToPrimary, then?: () => void): void {
  const done = then ?? (() => {});
  if (process.send === undefined || !process.connected) {
    done();
    return;
  }
  try {
    process.send(m, undefined, {}, () => done());
  } catch {
    done();
  }
}

function fail(err: unknown): void {
  const e = err as { message?: unknown; code?: unknown } | undefined;
  const message = typeof e?.message === 'string' ? e.message : String(err);
  process.stderr.write(`longlink worker ${process.pid}: ${message}\n`);
  send({ longlink: 'failed', message, code: typeof e?.code === 'string' ? e.code : undefined }, () =>
    process.exit(1),
  );
}

async function main(): Promise<void> {
  const raw = process.env[WORKER_ENV];
  if (raw === undefined)
    throw new Error(`${WORKER_ENV} is not set: this script is started by serveWorkers()`);
  const config = JSON.parse(raw) as WorkerConfig;
  const mod = (await import(config.module)) as { default?: unknown };
  const factory = mod.default;
  if (typeof factory !== 'function') {
    throw new Error(`${config.module} has no default export function (a WorkerFactory)`);
  }
  const server = (await factory({
    id: config.id,
    pid: process.pid,
    mode: config.mode,
    data: config.data,
  })) as ServerLike;
  if (server === null || typeof server !== 'object' || typeof server.listen !== 'function') {
    throw new Error(`the default export of ${config.module} did not return a Server`);
  }
  let closing = false;
  const shutdown = (): void => {
    if (closing) return;
    closing = true;
    void server
      .close({
        graceMs: config.graceMs,
        ...(config.retryAfterMs === undefined ? {} : { retryAfterMs: config.retryAfterMs }),
      })
      .then((report) => send({ longlink: 'closed', report }, () => process.exit(0)));
  };
  process.on('message', (m: unknown) => {
    const kind = (m as { longlink?: unknown } | null)?.longlink;
    if (kind === 'close') shutdown();
    else if (kind === 'destroy') {
      server.destroy();
      process.exit(0);
    }
  });
  // Ctrl-C reaches every process of the terminal's group, the workers too: the same drain.
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);
  // The primary is gone (reuse-port mode; node:cluster exits a worker itself then): drain and go.
  process.on('disconnect', shutdown);
  const address = await server.listen({
    ...config.listen,
    ...(config.mode === 'reuse-port' ? { reusePort: true } : {}),
  });
  send({ longlink: 'listening', address });
}

main().catch(fail);
