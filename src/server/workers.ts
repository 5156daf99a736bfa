/**
 * Several server processes on one port: `serveWorkers({ workers, module })` forks N worker
 * processes, each of which imports `module`, calls its default export for a Server and listens on
 * the shared address. The primary supervises: a worker that dies is restarted (with backoff) and
 * counted, and `close()` — SIGTERM by default — drains every worker (GOAWAY, accepted requests
 * answered, then exit) before the primary exits 0.
 *
 * Two ways to share the port, chosen by `mode`:
 *
 *   cluster     node:cluster. The primary owns the listening socket, accepts every connection and
 *               hands each to a worker, round-robin (cluster.SCHED_RR). Every Node version; the
 *               primary's accept loop and the handle passing cost CPU on the primary.
 *   reuse-port  every worker listens itself with SO_REUSEPORT and the kernel spreads the new
 *               connections by a hash of their addresses. No hop through the primary; needs
 *               Node ≥ 22.12 (net's `reusePort`) and Linux or a BSD. A worker that dies takes the
 *               connections still in its accept queue with it (the kernel resets them).
 *
 *   primary ──fork──▶ worker 1 ──listening(port)──▶ primary ──fork──▶ workers 2…N (that port)
 *      │                                                               │
 *      ├─ a worker exits unasked ─ backoff ─ fork again (restarts++) ──┘
 *      └─ close(): 'close' to each ─ server.close() (GOAWAY, drain) ─ 'closed'(report) ─ exit 0
 *
 * Worker 1 starts alone so that `port: 0` means one port for all of them.
 */

import { type ChildProcess, fork } from 'node:child_process';
import cluster, { type Worker as ClusterWorker } from 'node:cluster';
import { EventEmitter } from 'node:events';
import net from 'node:net';
import { availableParallelism } from 'node:os';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { InvalidArgumentError, LonglinkError, UnsupportedError } from '../errors.js';
import packageRequire from '../sys/package-require.cjs';
import { backoffCeiling } from '../util/backoff.js';
import { countOrInfinity, finiteAtLeast, optionalBoolean, optionalChoice } from '../util/check.js';
import type { ListenOptions, ShutdownReport } from './options.js';
import {
  type ToPrimary,
  type ToWorker,
  WORKER_ENV,
  type WorkerConfig,
  type WorkerFactory,
  type WorkerGroupEvents,
  type WorkerGroupStats,
  type WorkerInfo,
  type WorkerShutdown,
  type WorkersMode,
  type WorkersOptions,
  type WorkersShutdownReport,
} from './workers-options.js';

export type {
  WorkerContext,
  WorkerExit,
  WorkerFactory,
  WorkerGroupEvents,
  WorkerGroupStats,
  WorkerInfo,
  WorkerShutdown,
  WorkersMode,
  WorkersOptions,
  WorkersShutdownReport,
} from './workers-options.js';

function isToPrimary(m: unknown): m is ToPrimary {
  return typeof m === 'object' && m !== null && typeof (m as { longlink?: unknown }).longlink === 'string';
}

/**
 * The worker's entry script: the ESM build's worker-main.js whichever build runs the primary (it
 * imports the user's module with a real `import()`, which the CommonJS build cannot write).
 * `package-require.cjs` is compiled into both builds' `sys/`: dist/src/sys or dist/cjs/sys.
 */
function workerMain(): string {
  const sys = dirname(packageRequire.resolve('./package-require.cjs'));
  return join(sys, '..', '..', 'src', 'server', 'worker-main.js');
}

// ---------------------------------------------------------------------------------------------
// reusePort support

let reusePortProbe: Promise<boolean> | undefined;

/**
 * Whether this Node and OS give SO_REUSEPORT to `listen({ reusePort: true })`: two listeners on
 * one loopback port, which only works when the option reached the kernel (Node < 22.12 ignores
 * it, and the second listen fails with EADDRINUSE). Checked once per process.
 */
export function reusePortSupported(): Promise<boolean> {
  reusePortProbe ??= (async () => {
    const listenOn = (port: number) =>
      new Promise<net.Server | undefined>((done) => {
        const s = net.createServer();
        s.once('error', () => done(undefined));
        s.listen({ host: '127.0.0.1', port, reusePort: true } as net.ListenOptions, () => done(s));
      });
    const a = await listenOn(0);
    if (a === undefined) return false;
    const b = await listenOn((a.address() as net.AddressInfo).port);
    a.close();
    b?.close();
    return b !== undefined;
  })();
  return reusePortProbe;
}

// ---------------------------------------------------------------------------------------------
// One worker process, whichever way it was made

interface Proc {
  readonly pid: number;
  send(m: ToWorker): void;
  kill(signal: NodeJS.Signals): void;
}

class ForkedProc implements Proc {
  constructor(readonly child: ChildProcess) {}
  get pid(): number {
    return this.child.pid ?? -1;
  }
  send(m: ToWorker): void {
    if (this.child.connected) this.child.send(m, () => {});
  }
  kill(signal: NodeJS.Signals): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
  }
}

class ClusterProc implements Proc {
  constructor(readonly worker: ClusterWorker) {}
  get pid(): number {
    return this.worker.process.pid ?? -1;
  }
  send(m: ToWorker): void {
    if (this.worker.isConnected()) this.worker.send(m, undefined, () => {});
  }
  kill(signal: NodeJS.Signals): void {
    const p = this.worker.process;
    if (p.exitCode === null && p.signalCode === null) p.kill(signal);
  }
}

/** Whether this process has set up cluster's primary for longlink (one group per process). */
let clusterInUse = false;

// ---------------------------------------------------------------------------------------------

interface Slot {
  readonly id: number;
  proc: Proc | undefined;
  state: WorkerInfo['state'];
  restarts: number;
  /** Failed starts or early exits in a row (the backoff's n). */
  failures: number;
  startedAt: number;
  timer: NodeJS.Timeout | undefined;
  report: ShutdownReport | undefined;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }> | undefined;
  lastExit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  lastPid: number | undefined;
}

interface Settings {
  module: string;
  mode: WorkersMode;
  count: number;
  listen: ListenOptions;
  data: unknown;
  graceMs: number;
  retryAfterMs: number | undefined;
  restart: { initialDelayMs: number; maxDelayMs: number; stableMs: number } | undefined;
  startTimeoutMs: number;
  execArgv: string[];
  env: Record<string, string>;
}

/**
 * The primary's handle on its workers. Made by {@link serveWorkers}.
 *
 * @example
 * ```ts
 * const group = await serveWorkers({ module: new URL('./server.js', import.meta.url), workers: 2, listen: { port: 7070 } });
 * group.on('exit', (e) => console.warn(`worker ${e.id} exited (${e.signal ?? e.code})`));
 * console.log(group.stats());
 * ```
 */
export class WorkerGroup extends EventEmitter {
  readonly mode: WorkersMode;
  /** Where the workers listen. */
  address: net.AddressInfo = { address: '', family: '', port: 0 };
  private readonly slots: Slot[];
  private readonly settings: Settings;
  private closing: Promise<WorkersShutdownReport> | undefined;
  private restartsTotal = 0;
  private disposeSignals: (() => void) | undefined;

  /** @internal Use {@link serveWorkers}. */
  constructor(settings: Settings) {
    super();
    this.settings = settings;
    this.mode = settings.mode;
    this.slots = Array.from({ length: settings.count }, (_, i) => ({
      id: i + 1,
      proc: undefined,
      state: 'stopped',
      restarts: 0,
      failures: 0,
      startedAt: 0,
      timer: undefined,
      report: undefined,
      exited: undefined,
      lastExit: undefined,
      lastPid: undefined,
    }));
  }

  /** @internal Starts worker 1, then the others on its port; rejects (every worker stopped) if one fails. */
  async start(handleSignals: boolean): Promise<this> {
    try {
      const [first, ...rest] = this.slots as [Slot, ...Slot[]];
      this.address = await this.startSlot(first, this.settings.listen);
      // reuse-port: a port given as 0 is now the one worker 1 got, and the others (and restarts)
      // bind that one. cluster: the primary keys its shared socket by the options as given
      // (port 0 included) and hands every worker that socket, so they must ask alike.
      if (this.mode === 'reuse-port')
        this.settings.listen = { ...this.settings.listen, port: this.address.port };
      await Promise.all(rest.map((s) => this.startSlot(s, this.settings.listen)));
    } catch (err) {
      this.destroy();
      await Promise.all(this.slots.map((s) => s.exited));
      throw err;
    }
    if (handleSignals) this.disposeSignals = this.handleSignals();
    return this;
  }

  /** The workers now; JSON-safe. */
  stats(): WorkerGroupStats {
    return {
      mode: this.mode,
      address: { ...this.address },
      workers: this.slots.map((s) => ({
        id: s.id,
        pid: s.proc?.pid,
        state: s.state,
        restarts: s.restarts,
      })),
      restarts: this.restartsTotal,
    };
  }

  /**
   * Drains every worker: each closes its server (GOAWAY to every connection, the accepted
   * requests answered, then close; aborted after `graceMs`) and exits. Workers still there
   * `graceMs` + 5 s later are killed. Idempotent.
   */
  close(options: { graceMs?: number } = {}): Promise<WorkersShutdownReport> {
    if (this.closing) return this.closing;
    const graceMs = finiteAtLeast('graceMs', options.graceMs, this.settings.graceMs);
    const t0 = performance.now();
    this.closing = (async () => {
      for (const s of this.slots) {
        if (s.timer !== undefined) clearTimeout(s.timer);
        s.timer = undefined;
        if (s.proc !== undefined) {
          s.state = 'stopping';
          s.proc.send({ longlink: 'close' });
        } else s.state = 'stopped';
      }
      let killed = 0;
      const kill = setTimeout(() => {
        for (const s of this.slots) {
          if (s.proc !== undefined) {
            killed++;
            s.proc.kill('SIGKILL');
          }
        }
      }, graceMs + 5000);
      await Promise.all(this.slots.map((s) => s.exited));
      clearTimeout(kill);
      const workers = this.slots.map(
        (s): WorkerShutdown => ({
          id: s.id,
          pid: s.lastPid,
          report: s.report,
          exitCode: s.lastExit?.code ?? null,
          signal: s.lastExit?.signal ?? null,
        }),
      );
      const sum = (k: 'connections' | 'closedGracefully' | 'aborted' | 'unanswered') =>
        workers.reduce((n, w) => n + (w.report?.[k] ?? 0), 0);
      const report: WorkersShutdownReport = {
        workers,
        connections: sum('connections'),
        closedGracefully: sum('closedGracefully'),
        aborted: sum('aborted'),
        unanswered: sum('unanswered'),
        killed,
        durationMs: performance.now() - t0,
      };
      this.disposeSignals?.();
      if (this.mode === 'cluster') clusterInUse = false;
      this.emit('close', report);
      return report;
    })();
    return this.closing;
  }

  /** Stops every worker now: their servers abort every connection; SIGKILL after a second. */
  destroy(): void {
    this.closing ??= Promise.resolve({
      workers: [],
      connections: 0,
      closedGracefully: 0,
      aborted: 0,
      unanswered: 0,
      killed: 0,
      durationMs: 0,
    });
    for (const s of this.slots) {
      if (s.timer !== undefined) clearTimeout(s.timer);
      s.timer = undefined;
      const p = s.proc;
      if (p === undefined) continue;
      s.state = 'stopping';
      p.send({ longlink: 'destroy' });
      setTimeout(() => p.kill('SIGKILL'), 1000).unref();
    }
    this.disposeSignals?.();
  }

  // -------------------------------------------------------------------------------------------

  /** Forks the slot's worker; resolves with its address once it listens, rejects if it fails first. */
  private startSlot(slot: Slot, listen: ListenOptions): Promise<net.AddressInfo> {
    const config: WorkerConfig = {
      id: slot.id,
      module: this.settings.module,
      mode: this.mode,
      listen,
      data: this.settings.data,
      graceMs: this.settings.graceMs,
      retryAfterMs: this.settings.retryAfterMs,
    };
    const env = { ...this.settings.env, [WORKER_ENV]: JSON.stringify(config) };
    let proc: Proc;
    let onMessage: (listener: (m: unknown) => void) => void;
    let exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
    if (this.mode === 'cluster') {
      const w = cluster.fork(env);
      proc = new ClusterProc(w);
      onMessage = (l) => w.on('message', l);
      exited = new Promise((done) =>
        w.once('exit', (code, signal) => done({ code, signal: (signal as NodeJS.Signals | null) || null })),
      );
    } else {
      const child = fork(workerMain(), [], {
        env: { ...process.env, ...env },
        execArgv: this.settings.execArgv,
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      });
      proc = new ForkedProc(child);
      onMessage = (l) => child.on('message', l);
      exited = new Promise((done) => child.once('exit', (code, signal) => done({ code, signal })));
    }
    slot.proc = proc;
    slot.lastPid = proc.pid;
    slot.state = 'starting';
    slot.startedAt = performance.now();
    slot.report = undefined;
    slot.exited = exited;
    return new Promise<net.AddressInfo>((resolveStart, rejectStart) => {
      let started = false;
      let failure: LonglinkError | undefined;
      const timer = setTimeout(() => {
        failure = new LonglinkError(
          'ERR_WORKER_START',
          `worker ${slot.id} did not listen within ${this.settings.startTimeoutMs} ms`,
        );
        proc.kill('SIGKILL');
      }, this.settings.startTimeoutMs);
      onMessage((m) => {
        if (!isToPrimary(m)) return;
        switch (m.longlink) {
          case 'listening':
            if (started) return;
            started = true;
            clearTimeout(timer);
            slot.state = 'listening';
            resolveStart(m.address);
            return;
          case 'failed':
            failure = new LonglinkError(
              'ERR_WORKER_START',
              `worker ${slot.id} failed to start: ${m.message}${m.code ? ` (${m.code})` : ''}`,
            );
            return;
          case 'closed':
            slot.report = m.report;
            return;
        }
      });
      void exited.then(({ code, signal }) => {
        clearTimeout(timer);
        slot.lastExit = { code, signal };
        if (slot.proc === proc) slot.proc = undefined;
        if (!started) {
          rejectStart(
            failure ??
              new LonglinkError(
                'ERR_WORKER_START',
                `worker ${slot.id} exited (${signal ?? code}) before it listened`,
              ),
          );
        }
        this.exited(slot, proc.pid, code, signal, started);
      });
    });
  }

  /** A worker process exited: the end of a close, or a crash to restart after the backoff. */
  private exited(
    slot: Slot,
    pid: number,
    code: number | null,
    signal: NodeJS.Signals | null,
    started: boolean,
  ): void {
    const expected = this.closing !== undefined;
    const policy = this.settings.restart;
    let restartInMs: number | undefined;
    if (expected || !started) {
      // Closing, or a start that failed (startSlot's caller decides: reject, or back off).
      slot.state = expected ? 'stopped' : slot.state;
    } else if (policy === undefined) {
      slot.state = 'stopped';
    } else {
      const ranMs = performance.now() - slot.startedAt;
      slot.failures = ranMs >= policy.stableMs ? 1 : slot.failures + 1;
      restartInMs = this.restartDelay(slot.failures);
      this.scheduleRestart(slot, restartInMs);
    }
    this.emit('exit', { id: slot.id, pid, code, signal, expected, restartInMs });
  }

  private restartDelay(failures: number): number {
    const p = this.settings.restart;
    if (p === undefined) return 0;
    const ceiling = backoffCeiling({ ...p, multiplier: 2 }, failures);
    return Math.round(ceiling * (0.5 + Math.random() / 2));
  }

  private scheduleRestart(slot: Slot, delayMs: number): void {
    slot.state = 'restarting';
    slot.timer = setTimeout(() => {
      slot.timer = undefined;
      if (this.closing !== undefined) return;
      this.startSlot(slot, this.settings.listen).then(
        () => {
          slot.restarts++;
          this.restartsTotal++;
          this.emit('restart', { id: slot.id, pid: slot.proc?.pid ?? -1, restarts: slot.restarts });
        },
        (err: LonglinkError) => {
          // Its exit scheduled nothing (it never listened): try again after a longer wait.
          if (this.closing !== undefined) return;
          slot.failures++;
          if (this.listenerCount('error') > 0) this.emit('error', err);
          this.scheduleRestart(slot, this.restartDelay(slot.failures));
        },
      );
    }, delayMs);
  }

  /** SIGTERM/SIGINT: close, then exit 0; a second one: kill the workers, exit 128 + n. */
  private handleSignals(): () => void {
    let count = 0;
    const on = (signal: NodeJS.Signals) => {
      count++;
      if (count === 1) {
        void this.close().then(() => process.exit(0));
        return;
      }
      this.destroy();
      for (const s of this.slots) s.proc?.kill('SIGKILL');
      process.exit(128 + (signal === 'SIGINT' ? 2 : 15));
    };
    process.on('SIGTERM', on);
    process.on('SIGINT', on);
    return () => {
      process.off('SIGTERM', on);
      process.off('SIGINT', on);
    };
  }
}

// Typed events, merged into the class's instance type.
export interface WorkerGroup {
  on<K extends keyof WorkerGroupEvents>(event: K, listener: (...args: WorkerGroupEvents[K]) => void): this;
  once<K extends keyof WorkerGroupEvents>(event: K, listener: (...args: WorkerGroupEvents[K]) => void): this;
  off<K extends keyof WorkerGroupEvents>(event: K, listener: (...args: WorkerGroupEvents[K]) => void): this;
  emit<K extends keyof WorkerGroupEvents>(event: K, ...args: WorkerGroupEvents[K]): boolean;
}

function moduleUrl(m: unknown): string {
  if (m instanceof URL) return m.href;
  if (typeof m !== 'string' || m.length === 0) {
    throw new InvalidArgumentError('module must be a path or a file: URL of the worker module');
  }
  if (m.startsWith('file:')) return m;
  return pathToFileURL(isAbsolute(m) ? m : resolve(m)).href;
}

/**
 * Runs a server in N worker processes on one port, and supervises them (see the top of
 * workers.ts). Call it in the primary process; it resolves once every worker listens. Each worker
 * imports `module` and calls its default export — a {@link WorkerFactory} — for its Server.
 *
 * With `handleSignals` (the default), SIGTERM or Ctrl-C drains every worker with GOAWAY and exits
 * the primary with 0. In 'cluster' mode it sets up node:cluster's primary (one group per process).
 *
 * @example
 * ```ts
 * // server.js — runs in every worker
 * import { createServer } from 'longlink';
 * export default () => createServer({ handlers: { whoami: () => ({ pid: process.pid }) } });
 *
 * // main.js — the primary
 * import { serveWorkers } from 'longlink';
 * const group = await serveWorkers({ module: new URL('./server.js', import.meta.url), workers: 2, listen: { host: '0.0.0.0', port: 7070 } });
 * console.log(`${group.stats().workers.length} workers on port ${group.address.port} (${group.mode})`);
 * ```
 */
export async function serveWorkers(options: WorkersOptions): Promise<WorkerGroup> {
  if (typeof options !== 'object' || options === null) {
    throw new InvalidArgumentError('serveWorkers needs options with a module');
  }
  const count = countOrInfinity('workers', options.workers, availableParallelism(), 1);
  if (!Number.isFinite(count) || count > 1024) throw new InvalidArgumentError('workers must be 1 … 1024');
  const wanted = optionalChoice('mode', options.mode, ['cluster', 'reuse-port', 'auto'] as const, 'cluster');
  let mode: WorkersMode;
  if (wanted === 'cluster') mode = 'cluster';
  else {
    const ok = await reusePortSupported();
    if (wanted === 'reuse-port' && !ok) {
      throw new UnsupportedError(
        `mode 'reuse-port' needs SO_REUSEPORT through net's listen({ reusePort }) (Node >= 22.12 on Linux or a BSD); this is Node ${process.version} on ${process.platform}`,
      );
    }
    mode = ok ? 'reuse-port' : 'cluster';
  }
  const r = options.restart;
  const settings: Settings = {
    module: moduleUrl(options.module),
    mode,
    count,
    listen: { host: options.listen?.host ?? '127.0.0.1', port: options.listen?.port ?? 0 },
    data: options.data,
    graceMs: finiteAtLeast('graceMs', options.graceMs, 30_000),
    retryAfterMs:
      options.retryAfterMs === undefined ? undefined : finiteAtLeast('retryAfterMs', options.retryAfterMs, 0),
    restart:
      r === false
        ? undefined
        : {
            initialDelayMs: finiteAtLeast('restart.initialDelayMs', r?.initialDelayMs, 100, 1),
            maxDelayMs: finiteAtLeast('restart.maxDelayMs', r?.maxDelayMs, 10_000, 1),
            stableMs: finiteAtLeast('restart.stableMs', r?.stableMs, 10_000),
          },
    startTimeoutMs: finiteAtLeast('startTimeoutMs', options.startTimeoutMs, 30_000, 1),
    execArgv: options.execArgv ?? process.execArgv,
    env: options.env ?? {},
  };
  if (options.listen?.backlog !== undefined) settings.listen.backlog = options.listen.backlog;
  const handleSignals = optionalBoolean('handleSignals', options.handleSignals, true);
  if (mode === 'cluster') {
    if (!cluster.isPrimary)
      throw new UnsupportedError('serveWorkers runs in a primary, not in a cluster worker');
    if (clusterInUse) throw new UnsupportedError('one cluster-mode worker group per process');
    clusterInUse = true;
    cluster.setupPrimary({ exec: workerMain(), args: [], execArgv: settings.execArgv, silent: false });
  }
  const group = new WorkerGroup(settings);
  try {
    return await group.start(handleSignals);
  } catch (err) {
    if (mode === 'cluster') clusterInUse = false;
    throw err;
  }
}
