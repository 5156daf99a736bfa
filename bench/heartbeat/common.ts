/**
 * Shared pieces of the heartbeat benchmarks (docs/benchmarks-heartbeat.md): the worker processes
 * the drivers spawn and talk to, the machine's CPU accounting, and table formatting.
 *
 * Every driver spawns `worker.js` children and sends them one JSON command per stdin line; each
 * answers one JSON line on stdout. Children are killed on every path (error, timeout, Ctrl-C,
 * normal exit) and exit by themselves when their stdin closes, so none outlives its driver.
 */

import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { machineBusyMs } from '../proc.js';

export { machineBusyMs, processCpuMs } from '../proc.js';

/** The systems a worker can run. */
export const SYSTEMS = ['raw', 'raw-interval', 'raw-wheel', 'raw-pair', 'conn', 'longlink'] as const;
export type SystemName = (typeof SYSTEMS)[number];

export function isSystemName(s: string): s is SystemName {
  return (SYSTEMS as readonly string[]).includes(s);
}

/** What each system is, for the tables. */
export const DESCRIPTIONS: Readonly<Record<SystemName, string>> = {
  raw: 'raw node:net, no heartbeat',
  'raw-interval': 'raw node:net, a setInterval per connection (baseline a)',
  'raw-wheel': 'raw node:net, one timer walking every connection (baseline b)',
  'raw-pair':
    "raw node:net with longlink's wire pattern: only the client pings (a setInterval per connection), the server answers",
  conn: 'longlink Connection (framing only, no protocol)',
  longlink: 'longlink createServer / connect with heartbeats',
};

export interface Heartbeat {
  intervalMs: number;
  timeoutMs: number;
}

/** One line of a worker's answer. Every answer has `ok`; failures carry `error`. */
export interface Reply {
  ok: boolean;
  error?: string;
  [k: string]: unknown;
}

/** Close reasons seen by a worker, reason → count. */
export type Closes = Record<string, number>;

/** The answer to `measure`. */
export interface Window {
  ok: boolean;
  seconds: number;
  /** This process's CPU over the window, % of one core. */
  cpuPct: number;
  /** The user-space part of cpuPct (the rest is the kernel: syscalls, and on loopback the peer's receive path). */
  userPct: number;
  /** monitorEventLoopDelay (resolution 10 ms) over the window, ms; includes the 10 ms interval. */
  lagP50Ms: number;
  lagP99Ms: number;
  lagMaxMs: number;
  /** Heartbeat traffic over the window. */
  bytesIn: number;
  bytesOut: number;
  /** Frames counted by the raw systems; undefined for longlink (see bytes). */
  framesIn: number | undefined;
  framesOut: number | undefined;
  open: number;
  closes: Closes;
}

/** The answer to `snapshot`: memory after full GCs. */
export interface Snapshot {
  ok: boolean;
  open: number;
  rss: number;
  heapUsed: number;
  heapTotal: number;
  /** The young generation's reserved size (V8's new_space), bytes: part of heapTotal. */
  youngTotal: number;
  external: number;
  arrayBuffers: number;
}

export const WORKER_JS = fileURLToPath(new URL('./worker.js', import.meta.url));

const live = new Set<ChildProcess>();

function killAll(): void {
  for (const p of live) p.kill('SIGKILL');
}
process.on('exit', killAll);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(sig, () => {
    killAll();
    process.exit(130);
  });
}

/** A worker process and its command channel. */
export class Worker {
  readonly proc: ChildProcess;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stderr = '';
  /** stdout lines that are not answers (e.g. from --trace-gc). */
  log = '';
  private buf = '';
  private waiters: Array<{ resolve: (r: Reply) => void; reject: (e: Error) => void }> = [];

  constructor(
    readonly label: string,
    nodeArgs: string[] = [],
  ) {
    this.proc = spawn(process.execPath, ['--expose-gc', ...nodeArgs, WORKER_JS], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    live.add(this.proc);
    this.exited = new Promise((resolve) =>
      this.proc.once('close', (code, signal) => {
        live.delete(this.proc);
        const err = new Error(`${label} exited (${signal ?? code})\n${tail(this.stderr)}`);
        for (const w of this.waiters.splice(0)) w.reject(err);
        resolve({ code, signal });
      }),
    );
    this.proc.on('error', () => {}); // spawn failures surface as 'close'.
    this.proc.stdin!.on('error', () => {});
    this.proc.stdout!.setEncoding('utf8').on('data', (s: string) => {
      this.buf += s;
      for (let nl = this.buf.indexOf('\n'); nl >= 0; nl = this.buf.indexOf('\n')) {
        const line = this.buf.slice(0, nl);
        this.buf = this.buf.slice(nl + 1);
        // Answers are JSON objects; anything else (--trace-gc output, say) is kept apart.
        if (!line.startsWith('{')) {
          if (this.log.length < 4 * 1024 * 1024) this.log += `${line}\n`;
          continue;
        }
        const w = this.waiters.shift();
        if (w === undefined) continue;
        try {
          w.resolve(JSON.parse(line) as Reply);
        } catch {
          w.reject(new Error(`${label} printed ${JSON.stringify(line.slice(0, 200))}`));
        }
      }
    });
    this.proc.stderr!.setEncoding('utf8').on('data', (s: string) => {
      if (this.stderr.length < 64 * 1024) this.stderr += s;
    });
  }

  get pid(): number | undefined {
    return this.proc.pid;
  }

  /** Sends one command; resolves with its answer, rejects on timeout, failure or exit. */
  async call<T = Reply>(cmd: Record<string, unknown>, timeoutMs: number): Promise<T> {
    const answer = new Promise<Reply>((resolve, reject) => {
      this.waiters.push({ resolve, reject });
      this.proc.stdin!.write(`${JSON.stringify(cmd)}\n`);
    });
    const r = await withTimeout(answer, timeoutMs, `${this.label} ${String(cmd.cmd)}`);
    if (!r.ok) throw new Error(`${this.label} ${String(cmd.cmd)}: ${r.error ?? 'failed'}`);
    return r as unknown as T;
  }

  /** Asks for a quick exit (clients reset their connections: no TIME_WAIT left), then kills. */
  async stop(): Promise<void> {
    if (this.proc.exitCode === null && this.proc.signalCode === null) {
      await this.call({ cmd: 'shutdown' }, 10_000).catch(() => {});
      await withTimeout(this.exited, 5000, 'exit').catch(() => {});
      if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill('SIGKILL');
    }
    await withTimeout(this.exited, 5000, `${this.label} exit`).catch(() => {});
  }
}

export function tail(s: string): string {
  return s.trim().split('\n').slice(-8).join('\n');
}

export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

export function median(xs: readonly number[]): number {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  const m = s.length >> 1;
  return s.length % 2 === 1 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

/** Source addresses 127.0.0.2 … 127.0.0.(1+n): the whole 127/8 is loopback on Linux. */
export function sourceAddresses(n: number, first = 2): string[] {
  return Array.from({ length: n }, (_, i) => `127.0.0.${first + i}`);
}

// ---- machine CPU accounting (Linux /proc; undefined elsewhere) ------------------------------
// The machine may be shared. Over a window the driver reads the busy CPU of the whole machine
// and subtracts what its own processes used: what is left was someone else's, and a window that
// competed with them is flagged in the tables.

/** Resident set of a live process, bytes (from /proc/PID/statm). */
export function processRss(pid: number | undefined): number | undefined {
  try {
    const f = readFileSync(`/proc/${pid}/statm`, 'utf8').split(' ');
    return Number(f[1]) * 4096;
  } catch {
    return undefined;
  }
}

/**
 * Waits until the machine's busy CPU over a 500 ms sample is under `cores`, or `maxS` seconds
 * have passed. Resolves with the load it last saw, in cores.
 */
export async function waitIdle(maxS: number, cores = 0.25): Promise<number | undefined> {
  const deadline = Date.now() + maxS * 1000;
  for (;;) {
    const a = machineBusyMs();
    const t = performance.now();
    await sleep(500);
    const b = machineBusyMs();
    if (a === undefined || b === undefined) return undefined;
    const load = (b - a) / (performance.now() - t);
    if (load < cores || Date.now() >= deadline) return load;
  }
}

// ---- formatting ---------------------------------------------------------------------------

export const int = (x: number): string => (Number.isFinite(x) ? Math.round(x).toLocaleString('en-US') : '–');
export const fixed = (x: number | undefined, d = 1): string =>
  x !== undefined && Number.isFinite(x) ? x.toFixed(d) : '–';
export const ratio = (x: number): string => (Number.isFinite(x) ? `${x.toFixed(2)}×` : '–');
export const mib = (bytes: number): string => `${(bytes / 1048576).toFixed(0)} MiB`;

export function table(head: string[], rows: string[][], align?: string[]): string {
  const sep = align ?? head.map((_, i) => (i === 0 ? '---' : '---:'));
  return [
    `| ${head.join(' | ')} |`,
    `| ${sep.join(' | ')} |`,
    ...rows.map((r) => `| ${r.join(' | ')} |`),
  ].join('\n');
}

export function formatCloses(c: Closes): string {
  const parts = Object.entries(c).map(([k, v]) => `${k} ${v}`);
  return parts.length === 0 ? 'none' : parts.join(', ');
}

/** `--flag value` pairs into a map, checked against the flags a driver knows. */
export function parseFlags(argv: string[], known: readonly string[], usage: string): Map<string, string> {
  const out = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i] as string;
    if (flag === '--help' || flag === '-h') {
      process.stdout.write(`${usage}\n`);
      process.exit(0);
    }
    if (!flag.startsWith('--') || !known.includes(flag.slice(2))) {
      throw new Error(`unknown option ${flag}\n${usage}`);
    }
    const v = argv[++i];
    if (v === undefined) throw new Error(`${flag} needs a value\n${usage}`);
    out.set(flag.slice(2), v);
  }
  return out;
}

export function numberFlag(flags: Map<string, string>, name: string, fallback: number): number {
  const v = flags.get(name);
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new Error(`--${name} must be a number ≥ 0, got ${v}`);
  return n;
}

// ---- CPU profiles -------------------------------------------------------------------------

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}

/** Self time of a .cpuprofile, by function and by file, as shares of the busy (non-idle) samples. */
export interface ProfileSummary {
  /** Samples that were not (idle). */
  busySamples: number;
  totalSamples: number;
  functions: Array<{ name: string; where: string; pct: number }>;
  files: Array<{ file: string; pct: number }>;
}

function shortUrl(url: string): string {
  if (url === '') return '(native)';
  const i = url.indexOf('/dist/');
  if (i >= 0) return url.slice(i + 6);
  return url.replace(/^file:\/\//, '');
}

export function summarizeProfile(file: string, top = 15): ProfileSummary {
  const p = JSON.parse(readFileSync(file, 'utf8')) as { nodes: ProfileNode[] };
  const fn = new Map<string, { name: string; where: string; hits: number }>();
  const files = new Map<string, number>();
  let total = 0;
  let idle = 0;
  for (const n of p.nodes) {
    const hits = n.hitCount ?? 0;
    total += hits;
    const cf = n.callFrame;
    if (cf.functionName === '(idle)') {
      idle += hits;
      continue;
    }
    if (hits === 0) continue;
    const where = cf.url === '' ? '' : `${shortUrl(cf.url)}:${cf.lineNumber + 1}`;
    const key = `${cf.functionName}@${where}`;
    const e = fn.get(key);
    if (e === undefined) fn.set(key, { name: cf.functionName || '(anonymous)', where, hits });
    else e.hits += hits;
    const f = cf.url === '' ? cf.functionName : shortUrl(cf.url);
    files.set(f, (files.get(f) ?? 0) + hits);
  }
  const busy = Math.max(1, total - idle);
  return {
    busySamples: total - idle,
    totalSamples: total,
    functions: [...fn.values()]
      .sort((a, b) => b.hits - a.hits)
      .slice(0, top)
      .map((e) => ({ name: e.name, where: e.where, pct: (e.hits / busy) * 100 })),
    files: [...files.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([f, hits]) => ({ file: f, pct: (hits / busy) * 100 })),
  };
}

interface AllocNode {
  callFrame: { functionName: string; url: string; lineNumber: number };
  selfSize: number;
  children?: AllocNode[];
}

/** Bytes allocated over the window by allocating function (a sampled .heapprofile), top first. */
export function summarizeAllocProfile(
  file: string,
  seconds: number,
  top = 15,
): {
  totalMiBps: number;
  functions: Array<{ name: string; where: string; stack: string; mibps: number; pct: number }>;
} {
  const p = JSON.parse(readFileSync(file, 'utf8')) as { head: AllocNode };
  const fn = new Map<string, { name: string; where: string; stack: string; bytes: number }>();
  let total = 0;
  const walk = (n: AllocNode, path: string[]): void => {
    const cf = n.callFrame;
    const here = `${cf.functionName || '(anonymous)'}`;
    const where = cf.url === '' ? '' : `${shortUrl(cf.url)}:${cf.lineNumber + 1}`;
    if (n.selfSize > 0) {
      total += n.selfSize;
      const key = `${here}@${where}`;
      const e = fn.get(key);
      // The nearest callers name the code that asked for the allocation.
      const stack = path.slice(-3).reverse().join(' ← ');
      if (e === undefined) fn.set(key, { name: here, where, stack, bytes: n.selfSize });
      else e.bytes += n.selfSize;
    }
    for (const c of n.children ?? []) walk(c, [...path, here]);
  };
  walk(p.head, []);
  const mibps = (b: number): number => b / 1048576 / seconds;
  return {
    totalMiBps: mibps(total),
    functions: [...fn.values()]
      .sort((a, b) => b.bytes - a.bytes)
      .slice(0, top)
      .map((e) => ({
        name: e.name,
        where: e.where,
        stack: e.stack,
        mibps: mibps(e.bytes),
        pct: (e.bytes / total) * 100,
      })),
  };
}
