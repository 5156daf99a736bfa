/**
 * `serveWorkers`' public types (options, events, reports) and the messages between the primary
 * and its workers; the supervisor itself is workers.ts.
 */

import type net from 'node:net';
import type { LonglinkError } from '../errors.js';
import type { ListenOptions, ShutdownReport } from './options.js';
import type { Server } from './server.js';

/** How the workers share the port; see {@link serveWorkers}. */
export type WorkersMode = 'cluster' | 'reuse-port';

/** What a worker's factory is called with. */
export interface WorkerContext {
  /** 1 … N; a restarted worker keeps its id. */
  readonly id: number;
  readonly pid: number;
  readonly mode: WorkersMode;
  /** `data` from {@link WorkersOptions}, as JSON carried it. */
  readonly data: unknown;
}

/**
 * What the worker module's default export is: called once in each worker process, it makes the
 * server that worker runs (not listening yet: the worker listens on the shared address).
 */
export type WorkerFactory = (ctx: WorkerContext) => Server | Promise<Server>;

/** Options of {@link serveWorkers}. */
export interface WorkersOptions {
  /**
   * The module each worker imports (a path, absolute or relative to the working directory, or a
   * `file:` URL): its default export is a {@link WorkerFactory}.
   */
  module: string | URL;
  /** How many worker processes. Default `os.availableParallelism()`. */
  workers?: number;
  /**
   * 'cluster' (node:cluster, the primary accepts and deals connections round-robin), 'reuse-port'
   * (SO_REUSEPORT: each worker accepts, the kernel spreads; Node ≥ 22.12), or 'auto': reuse-port
   * where it works, else cluster. Default 'cluster'.
   */
  mode?: WorkersMode | 'auto';
  /** Where every worker listens (port 0: one free port for all, see `group.address`). Default 127.0.0.1:0. */
  listen?: Omit<ListenOptions, 'reusePort'>;
  /** Handed to each factory as `ctx.data`; must survive JSON. */
  data?: unknown;
  /** Each worker's shutdown grace (`server.close({ graceMs })`). Default 30 000 ms. */
  graceMs?: number;
  /** The base of the retry hint each worker's GOAWAYs carry at shutdown (see `Server.close`). Default: the server's. */
  retryAfterMs?: number;
  /**
   * A worker that exits unasked is started again after a delay of ½–1 × min(maxDelayMs,
   * initialDelayMs · 2ⁿ⁻¹), n its failures in a row (a worker that ran `stableMs` starts the count
   * again); false: never. Default `{ initialDelayMs: 100, maxDelayMs: 10_000, stableMs: 10_000 }`.
   */
  restart?: { initialDelayMs?: number; maxDelayMs?: number; stableMs?: number } | false;
  /**
   * SIGTERM and SIGINT close the group gracefully and then exit the primary with 0; a second one
   * kills the workers and exits 128 + the signal's number. Default true; false leaves signals to you.
   */
  handleSignals?: boolean;
  /** How long to wait for each worker to start listening. Default 30 000 ms. */
  startTimeoutMs?: number;
  /** Node flags of the worker processes. Default: the primary's (`process.execArgv`). */
  execArgv?: string[];
  /** Environment added to the primary's for the workers. */
  env?: Record<string, string>;
}

/** One worker, as {@link WorkerGroup.stats} shows it. */
export interface WorkerInfo {
  id: number;
  /** The current process (a restart changes it); undefined while it is down. */
  pid: number | undefined;
  state: 'starting' | 'listening' | 'restarting' | 'stopping' | 'stopped';
  /** Times this worker was started again after exiting unasked. */
  restarts: number;
}

/** What {@link WorkerGroup.stats} reports. */
export interface WorkerGroupStats {
  mode: WorkersMode;
  address: net.AddressInfo;
  workers: WorkerInfo[];
  /** Workers started again after exiting unasked, over all ids. */
  restarts: number;
}

/** One worker's part of {@link WorkersShutdownReport}. */
export interface WorkerShutdown {
  id: number;
  pid: number | undefined;
  /** Its server's report; undefined when it had to be killed or was down. */
  report: ShutdownReport | undefined;
  exitCode: number | null;
  signal: NodeJS.Signals | null;
}

/** What {@link WorkerGroup.close} reports: the workers' shutdown reports, summed. */
export interface WorkersShutdownReport {
  workers: WorkerShutdown[];
  connections: number;
  closedGracefully: number;
  aborted: number;
  unanswered: number;
  /** Workers that did not exit within the grace (+ 5 s) and were killed. */
  killed: number;
  durationMs: number;
}

/** What a worker's exit looked like, as `'exit'` tells it. */
export interface WorkerExit {
  id: number;
  pid: number;
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Asked to stop (by close()), or not. */
  expected: boolean;
  /** The delay before it is started again; undefined when it is not. */
  restartInMs: number | undefined;
}

/** The events of a {@link WorkerGroup}. */
export interface WorkerGroupEvents {
  /** A worker process exited. */
  exit: [exit: WorkerExit];
  /** A worker started again after an exit listens. */
  restart: [info: { id: number; pid: number; restarts: number }];
  /** A worker could not be started again (its factory or listen failed); it is retried after the backoff. */
  error: [error: LonglinkError];
  /** close() finished. */
  close: [report: WorkersShutdownReport];
}

// ---------------------------------------------------------------------------------------------
// The messages between primary and workers (over the IPC channel node gives forked processes)

/** @internal The worker's configuration, in the LONGLINK_WORKER environment variable. */
export interface WorkerConfig {
  id: number;
  module: string;
  mode: WorkersMode;
  listen: ListenOptions;
  data: unknown;
  graceMs: number;
  retryAfterMs: number | undefined;
}

/** @internal */
export type ToPrimary =
  | { longlink: 'listening'; address: net.AddressInfo }
  | { longlink: 'failed'; message: string; code: string | undefined }
  | { longlink: 'closed'; report: ShutdownReport };

/** @internal */
export type ToWorker = { longlink: 'close' } | { longlink: 'destroy' };

/** @internal The environment variable a worker reads its configuration from. */
export const WORKER_ENV = 'LONGLINK_WORKER';
