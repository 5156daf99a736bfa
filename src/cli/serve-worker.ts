/**
 * The worker module of `longlink serve --workers N` (serve-workers.ts): in each worker process,
 * the server `serve` would run, built from the primary's options, logging to this process's
 * stdout (the primary's, inherited). `whoami` answers with this worker's id and pid.
 */

import type { Server } from '../server/server.js';
import type { WorkerContext } from '../server/workers.js';
import { serveLog } from './log.js';
import { buildServer, type ServeOptions, serveBroker } from './serve.js';

export default async function serveWorker(ctx: WorkerContext): Promise<Server> {
  const o = ctx.data as Omit<ServeOptions, 'log'>;
  const write = (line: string): void => {
    process.stdout.write(`${line}\n`);
  };
  const log = serveLog(write, o.logFormat, o.logLevel);
  // --broker: every worker on the same Redis, so rooms span the workers (and the hosts).
  const broker = await serveBroker(o, log);
  return buildServer({ ...o, worker: ctx.id }, log, broker);
}
