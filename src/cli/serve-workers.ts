/**
 * `longlink serve --workers N`: the same server in N worker processes on one port
 * (serveWorkers, src/server/workers.ts). This process is the primary: it logs for the group (the
 * address, each worker's pid, exits and restarts, the shutdown's totals) while each worker logs
 * its own connections on the same stdout. SIGTERM or Ctrl-C drains every worker (GOAWAY, the
 * requests they read answered) and exits 0; a second one kills the workers.
 */

import type { RateLimit } from '../server/admission.js';
import { serveWorkers, type WorkerGroup, type WorkersMode } from '../server/workers.js';
import type { LogLevel } from '../util/log.js';
import {
  CommandFailed,
  EXIT,
  endpoint,
  intArg,
  type OptionSpec,
  onInterrupt,
  type ParsedArgs,
  signalExitCode,
  stringArg,
  UsageError,
} from './args.js';
import { type LogFormat, serveLog } from './log.js';

/** What `--workers` and `--workers-mode` ask for. */
export interface WorkersFlags {
  count: number;
  mode: WorkersMode | 'auto';
}

/** serve's options for the workers. */
export const WORKER_OPTIONS: Record<string, OptionSpec> = {
  workers: {
    type: 'string',
    arg: 'N',
    help: 'run the server in N worker processes on one port; the primary restarts one that dies and drains them all on SIGTERM',
  },
  'workers-mode': {
    type: 'string',
    arg: 'M',
    help: 'how the workers share the port: cluster (node:cluster, round-robin from the primary; the default), reuse-port (SO_REUSEPORT, Node >= 22.12) or auto',
  },
};

/** `--workers N [--workers-mode M]` as ServeOptions fields. */
export function workersFlags(args: ParsedArgs): { workers?: WorkersFlags } {
  const mode = stringArg(args, 'workers-mode');
  if (args.values.workers === undefined) {
    if (mode !== undefined) throw new UsageError('--workers-mode needs --workers N');
    return {};
  }
  if (mode !== undefined && mode !== 'cluster' && mode !== 'reuse-port' && mode !== 'auto') {
    throw new UsageError(`--workers-mode must be cluster, reuse-port or auto, got ${JSON.stringify(mode)}`);
  }
  if (args.values['metrics-port'] !== undefined) {
    throw new UsageError(
      '--metrics-port is per process and --workers makes several: run one admin endpoint per worker yourself (serveWorkers and serveAdmin)',
    );
  }
  return { workers: { count: intArg(args, 'workers', 1, 256), mode: mode ?? 'cluster' } };
}

/** `N` or `N/BURST`: a rate per second and its burst. */
export function rateArg(flag: string, v: string): RateLimit {
  const m = /^(\d+(?:\.\d+)?)(?:\/(\d+))?$/.exec(v);
  const perSecond = Number(m?.[1]);
  const burst = m?.[2] === undefined ? undefined : Number(m[2]);
  if (m === null || !(perSecond > 0) || (burst !== undefined && burst < 1)) {
    throw new UsageError(`${flag} must be N or N/BURST with N > 0 and BURST >= 1, got ${JSON.stringify(v)}`);
  }
  return burst === undefined ? { perSecond } : { perSecond, burst };
}

/** The serve options the primary itself reads; the rest goes to the workers as they are. */
interface PrimaryOptions {
  host: string;
  port: number;
  framing: string;
  graceMs: number;
  log: (line: string) => void;
  logFormat?: LogFormat;
  logLevel?: LogLevel;
  retryAfterMs?: number;
  metricsPort?: number;
}

/** Runs `serve` as the primary of `flags.count` workers; resolves with the exit code. */
export async function serveWithWorkers(o: PrimaryOptions, flags: WorkersFlags): Promise<number> {
  const log = serveLog(o.log, o.logFormat, o.logLevel);
  // Everything but the function goes to the workers (as JSON); `workers` stays here.
  const { log: _sink, workers: _flags, ...data } = o as PrimaryOptions & { workers?: unknown };
  let group: WorkerGroup;
  try {
    group = await serveWorkers({
      module: new URL('./serve-worker.js', import.meta.url),
      workers: flags.count,
      mode: flags.mode,
      listen: { host: o.host, port: o.port },
      data,
      graceMs: o.graceMs,
      ...(o.retryAfterMs === undefined ? {} : { retryAfterMs: o.retryAfterMs }),
      handleSignals: false,
    });
  } catch (err) {
    throw new CommandFailed(`${(err as Error).message}`);
  }
  const where = endpoint(group.address.address, group.address.port);
  const pids = group.stats().workers.map((w) => w.pid);
  log(
    'info',
    'listening',
    { address: where, framing: o.framing, pid: process.pid, workers: flags.count, mode: group.mode, pids },
    `listening ${where} framing=${o.framing} pid=${process.pid} workers=${flags.count} mode=${group.mode} pids=${pids.join(',')}`,
  );
  group.on('exit', (e) => {
    if (e.expected) return;
    log(
      'warn',
      'worker exit',
      { worker: e.id, pid: e.pid, code: e.code, signal: e.signal, restartInMs: e.restartInMs },
      `worker ${e.id} pid=${e.pid} exited (${e.signal ?? e.code})` +
        (e.restartInMs === undefined ? '' : `; restarting in ${e.restartInMs} ms`),
    );
  });
  group.on('restart', (r) =>
    log(
      'info',
      'worker restarted',
      { worker: r.id, pid: r.pid, restarts: r.restarts },
      `worker ${r.id} restarted pid=${r.pid} restarts=${r.restarts}`,
    ),
  );
  group.on('error', (err) => log('warn', 'worker start failed', { error: err.message }, err.message));
  return new Promise((resolve) => {
    let aborted: NodeJS.Signals | undefined;
    const dispose = onInterrupt(
      async (signal) => {
        log(
          'info',
          'stopping',
          { signal, graceMs: o.graceMs, workers: flags.count },
          `${signal}: draining ${flags.count} workers (grace ${o.graceMs} ms; ${signal} again kills them)`,
        );
        const report = await group.close({ graceMs: o.graceMs });
        for (const w of report.workers) {
          const r = w.report;
          log(
            'info',
            'worker shutdown',
            { worker: w.id, pid: w.pid, exitCode: w.exitCode, signal: w.signal, ...r },
            `worker ${w.id} pid=${w.pid} exit=${w.signal ?? w.exitCode}` +
              (r === undefined
                ? ''
                : ` connections=${r.connections} graceful=${r.closedGracefully} aborted=${r.aborted} unanswered=${r.unanswered}`),
          );
        }
        log(
          'info',
          'shutdown',
          {
            connections: report.connections,
            closedGracefully: report.closedGracefully,
            aborted: report.aborted,
            unanswered: report.unanswered,
            killed: report.killed,
            restarts: group.stats().restarts,
            durationMs: Math.round(report.durationMs),
          },
          `shutdown workers=${flags.count} connections=${report.connections} graceful=${report.closedGracefully} ` +
            `aborted=${report.aborted} unanswered=${report.unanswered} killed=${report.killed} ` +
            `restarts=${group.stats().restarts} ms=${report.durationMs.toFixed(0)}`,
        );
        dispose();
        resolve(aborted === undefined ? EXIT.OK : signalExitCode(aborted));
      },
      (signal) => {
        if (aborted !== undefined) return;
        aborted = signal;
        log('warn', 'aborting', { signal }, `${signal} again: killing the workers`);
        group.destroy();
      },
    );
  });
}
