/**
 * The worker module of `longlink serve --workers N` (serve-workers.ts): in each worker process,
 * the server `serve` would run, built from the primary's options, logging to this process's
 * stdout (the primary's, inherited). `whoami` answers with this worker's id and pid.
 */

import type { Server } from '../server/server.js';
import type { WorkerContext } from '../server/workers.js';
import { serveLog } from './log.js';
import { buildServer, type ServeOptions } from './serve.js';

export default function serveWorker(ctx: WorkerContext): Server {
  const o = ctx.data as Omit<ServeOptions, 'log'>;
  const write = (line: string): void => {
    process.stdout.write(`${line}\n`);
  };
  return buildServer({ ...o, worker: ctx.id }, serveLog(write, o.logFormat, o.logLevel));
}
