/**
 * Request/response benchmark driver: longlink against raw node:net, ws, socket.io, undici and
 * grpc-js in the same run. See docs/benchmarks.md.
 *
 *   node dist/bench/rpc/run.js [--duration 5] [--warmup 1] [--repeats 3] [--only raw,longlink]
 *                              [--inflight 1,256] [--payload json,binary] [--json results.json]
 *
 * Each run is two fresh processes: the server (server.js, prints its port) and the client
 * (client.js, prints its numbers). Systems are interleaved within a repeat, so a slow drift of the
 * machine spreads over all of them instead of landing on one. Every child is killed on every path
 * and every wait is bounded: a hung system fails its run, not the benchmark.
 */

import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { machineBusyMs, processCpuMs } from '../proc.js';
import {
  type ClientResult,
  isPayload,
  isSystemName,
  loadSystem,
  median,
  type Payload,
  SYSTEMS,
  type SystemName,
  VARIANTS,
  withTimeout,
} from './common.js';

interface Options {
  duration: number;
  warmup: number;
  repeats: number;
  systems: SystemName[];
  inflight: number[];
  payloads: Payload[];
  json: string | undefined;
  /** Seconds to wait, before each run, for other processes to leave the CPUs alone. */
  idleWait: number;
  /** Runs redone, at most, when other processes took CPU during them. */
  retries: number;
  /**
   * CPU pinning through taskset: none; server and client on two cores (split); both on one (same);
   * auto: same at 1 in flight, none otherwise (see docs/benchmarks.md, "Caveats").
   */
  pin: 'none' | 'split' | 'same' | 'auto';
}

const USAGE = `usage: node dist/bench/rpc/run.js [--duration 5] [--warmup 1] [--repeats 3]
       [--only ${[...SYSTEMS, ...VARIANTS].join(',')}] [--inflight 1,256] [--payload json,binary] [--json FILE]
       [--idle-wait 5] [--retries 1] [--pin auto|none|split|same]`;

function parseArgs(argv: string[]): Options {
  const o: Options = {
    duration: 5,
    warmup: 1,
    repeats: 3,
    systems: [...SYSTEMS],
    inflight: [1, 256],
    payloads: ['json', 'binary'],
    json: undefined,
    idleWait: 5,
    retries: 1,
    pin: 'auto',
  };
  const list = (v: string): string[] => v.split(',').filter((s) => s !== '');
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i]!;
    const v = argv[++i];
    if (v === undefined) throw new Error(`${flag} needs a value\n${USAGE}`);
    switch (flag) {
      case '--duration':
        o.duration = Number(v);
        break;
      case '--warmup':
        o.warmup = Number(v);
        break;
      case '--repeats':
        o.repeats = Number(v);
        break;
      case '--only':
        o.systems = list(v).map((s) => {
          if (!isSystemName(s))
            throw new Error(`unknown system ${s}; known: ${[...SYSTEMS, ...VARIANTS].join(', ')}`);
          return s;
        });
        break;
      case '--inflight':
        o.inflight = list(v).map(Number);
        break;
      case '--payload':
        o.payloads = list(v).map((s) => {
          if (!isPayload(s)) throw new Error(`unknown payload ${s}; known: json, binary`);
          return s;
        });
        break;
      case '--json':
        o.json = v;
        break;
      case '--idle-wait':
        o.idleWait = Number(v);
        break;
      case '--retries':
        o.retries = Number(v);
        break;
      case '--pin':
        if (v !== 'none' && v !== 'split' && v !== 'same' && v !== 'auto') {
          throw new Error(`--pin auto|none|split|same\n${USAGE}`);
        }
        o.pin = v;
        break;
      default:
        throw new Error(`unknown option ${flag}\n${USAGE}`);
    }
  }
  if (!(o.duration > 0) || !(o.warmup >= 0) || !Number.isInteger(o.repeats) || o.repeats < 1) {
    throw new Error(`bad --duration, --warmup or --repeats\n${USAGE}`);
  }
  if (!(o.idleWait >= 0) || !Number.isInteger(o.retries) || o.retries < 0) {
    throw new Error(`bad --idle-wait or --retries\n${USAGE}`);
  }
  if (o.inflight.some((n) => !Number.isInteger(n) || n < 1)) throw new Error('--inflight takes integers ≥ 1');
  return o;
}

// ---- children -------------------------------------------------------------------------------

const SERVER_JS = fileURLToPath(new URL('./server.js', import.meta.url));
const CLIENT_JS = fileURLToPath(new URL('./client.js', import.meta.url));
const live = new Set<ChildProcess>();

interface Child {
  proc: ChildProcess;
  stdout: string;
  stderr: string;
  /** Called with each complete stdout line. */
  onLine: ((line: string) => void) | undefined;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Starts `node script ...args`, under `taskset -c cpu` when `cpu` is given (taskset execs: same pid). */
function start(script: string, args: string[], cpu: number | undefined): Child {
  const argv = [process.execPath, script, ...args];
  if (cpu !== undefined) argv.unshift('taskset', '-c', String(cpu));
  const proc = spawn(argv[0]!, argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
  live.add(proc);
  const child: Child = {
    proc,
    stdout: '',
    stderr: '',
    onLine: undefined,
    exited: new Promise((resolve) =>
      proc.once('close', (code, signal) => {
        live.delete(proc);
        resolve({ code, signal });
      }),
    ),
  };
  let seen = 0;
  proc.stdout!.setEncoding('utf8').on('data', (s: string) => {
    child.stdout += s;
    for (let nl = child.stdout.indexOf('\n', seen); nl >= 0; nl = child.stdout.indexOf('\n', seen)) {
      const line = child.stdout.slice(seen, nl);
      seen = nl + 1;
      child.onLine?.(line);
    }
  });
  proc.stderr!.setEncoding('utf8').on('data', (s: string) => {
    if (child.stderr.length < 64 * 1024) child.stderr += s;
  });
  proc.on('error', () => {}); // spawn failures surface as 'close' with a code.
  proc.stdin!.on('error', () => {});
  return child;
}

async function stop(child: Child): Promise<void> {
  if (child.proc.exitCode === null && child.proc.signalCode === null) child.proc.kill('SIGKILL');
  await withTimeout(child.exited, 5000, 'child exit').catch(() => {});
}

function killAll(): void {
  for (const p of live) p.kill('SIGKILL');
}
process.on('exit', killAll);
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    killAll();
    process.exit(130);
  });
}

const tail = (s: string): string => s.trim().split('\n').slice(-6).join('\n');

/** Resolves with the server's port once it prints it; rejects if it dies first. */
function serverPort(child: Child): Promise<number> {
  return new Promise((resolve, reject) => {
    child.onLine = (line) => {
      child.onLine = undefined;
      try {
        resolve((JSON.parse(line) as { port: number }).port);
      } catch {
        reject(new Error(`server printed ${JSON.stringify(line)}`));
      }
    };
    void child.exited.then(({ code, signal }) =>
      reject(new Error(`server exited (${signal ?? code}) before listening\n${tail(child.stderr)}`)),
    );
  });
}

// ---- CPU accounting (Linux /proc; elsewhere these read as undefined) --------------------------
// The machine may be shared. Over each measured window the driver accounts the busy CPU of the
// whole machine, the server's (from /proc/PID/stat), the client's (it reports it) and its own;
// what is left was used by other processes, and a run that competed with them is flagged.

/** Above this much foreign CPU (in cores) during a run, the run is redone or its row flagged. */
const BUSY_CORES = 0.25;

interface Snapshot {
  at: bigint;
  busy: number | undefined;
  server: number | undefined;
  driver: NodeJS.CpuUsage;
}

function snapshot(server: Child, cpu: number | undefined): Snapshot {
  return {
    at: process.hrtime.bigint(),
    busy: machineBusyMs(cpu),
    server: processCpuMs(server.proc.pid),
    driver: process.cpuUsage(),
  };
}

interface RunResult extends ClientResult {
  /** The server process's CPU over the window, % of one core. */
  serverCpuPct: number | undefined;
  /** CPU used by other processes on the machine over the window, in cores. */
  othersCores: number | undefined;
}

function account(res: ClientResult, a: Snapshot | undefined, b: Snapshot): RunResult {
  if (a === undefined) return { ...res, serverCpuPct: undefined, othersCores: undefined };
  const wallMs = Number(b.at - a.at) / 1e6;
  const server = a.server !== undefined && b.server !== undefined ? b.server - a.server : undefined;
  const driver = (b.driver.user + b.driver.system - a.driver.user - a.driver.system) / 1000;
  const client = (res.cpuPct / 100) * res.seconds * 1000;
  const others =
    a.busy !== undefined && b.busy !== undefined && server !== undefined
      ? Math.max(0, (b.busy - a.busy - server - client - driver) / wallMs)
      : undefined;
  return {
    ...res,
    serverCpuPct: server === undefined ? undefined : (server / wallMs) * 100,
    othersCores: others,
  };
}

/**
 * At 1 in flight, two processes on two idle vCPUs measure mostly how fast the hypervisor wakes a
 * halted vCPU (bimodal, ~18 vs ~75 µs p50 on the 2-vCPU VM this was written on); on one core every
 * round trip is two context switches on a CPU that never idles, so p50 is the software's cost.
 */
function pinFor(pin: Options['pin'], inflight: number): 'none' | 'split' | 'same' {
  if (pin !== 'auto') return pin;
  return inflight === 1 && hasTaskset ? 'same' : 'none';
}

const hasTaskset = ((): boolean => {
  try {
    return spawnSync('taskset', ['-c', '0', 'true']).status === 0;
  } catch {
    return false;
  }
})();

async function runOnce(
  system: SystemName,
  payload: Payload,
  inflight: number,
  o: Options,
): Promise<RunResult> {
  const pin = pinFor(o.pin, inflight);
  const [serverCpu, clientCpu] = pin === 'split' ? [0, 1] : pin === 'same' ? [0, 0] : [undefined, undefined];
  const sameCpu = pin === 'same' ? 0 : undefined;
  const server = start(SERVER_JS, [system, payload], serverCpu);
  try {
    const port = await withTimeout(serverPort(server), 15_000, `${system} server start`);
    const client = start(
      CLIENT_JS,
      [system, String(port), String(inflight), String(o.warmup), String(o.duration), payload],
      clientCpu,
    );
    let opened: Snapshot | undefined;
    let closed: Snapshot | undefined;
    let result: RunResult | undefined;
    client.onLine = (line) => {
      if (line === '{"phase":"measure"}') opened = snapshot(server, sameCpu);
      else if (line === '{"phase":"done"}') closed = snapshot(server, sameCpu);
      else {
        try {
          const res = JSON.parse(line) as ClientResult;
          result = account(res, opened, closed ?? snapshot(server, sameCpu));
        } catch {
          // Not a result line; reported below if no result comes.
        }
      }
    };
    try {
      const budget = (o.warmup + o.duration) * 1000 + 30_000;
      const { code, signal } = await withTimeout(client.exited, budget, `${system} client`);
      if (code !== 0) throw new Error(`client exited (${signal ?? code})\n${tail(client.stderr)}`);
      if (result === undefined) throw new Error(`client printed no result\n${tail(client.stdout)}`);
      return result;
    } finally {
      await stop(client);
    }
  } finally {
    await stop(server);
  }
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Waits until the busy CPU (of the machine, or of core `cpu`) over a 250 ms sample is under
 * BUSY_CORES (nothing of ours runs between runs), or `maxS` seconds have passed. Resolves with the load it last saw, in cores.
 */
async function waitIdle(maxS: number, cpu: number | undefined): Promise<number | undefined> {
  const deadline = Date.now() + maxS * 1000;
  for (;;) {
    const a = machineBusyMs(cpu);
    const t = process.hrtime.bigint();
    await sleep(250);
    const b = machineBusyMs(cpu);
    if (a === undefined || b === undefined) return undefined;
    const cores = (b - a) / (Number(process.hrtime.bigint() - t) / 1e6);
    if (cores < BUSY_CORES || Date.now() >= deadline) return cores;
  }
}

// ---- report ---------------------------------------------------------------------------------

interface Cell {
  system: SystemName;
  payload: Payload;
  inflight: number;
  runs: RunResult[];
  errors: string[];
}

interface Summary {
  rps: number;
  p50: number;
  p99: number;
  clientCpu: number;
  serverCpu: number;
  /** The most CPU other processes took during any one run of the cell, in cores. */
  others: number;
}

function summarize(c: Cell | undefined): Summary | undefined {
  if (c === undefined || c.runs.length === 0) return undefined;
  return {
    rps: median(c.runs.map((r) => r.reqs / r.seconds)),
    p50: median(c.runs.map((r) => r.p50us)),
    p99: median(c.runs.map((r) => r.p99us)),
    clientCpu: median(c.runs.map((r) => r.cpuPct)),
    serverCpu: median(c.runs.map((r) => r.serverCpuPct ?? Number.NaN)),
    others: Math.max(0, ...c.runs.map((r) => r.othersCores ?? 0)),
  };
}

const int = (x: number): string => Math.round(x).toLocaleString('en-US');
const us = (x: number): string => (x < 100 ? x.toFixed(1) : int(x));
const ratio = (x: number): string => (Number.isFinite(x) ? `${x.toFixed(2)}×` : '–');
const pct = (x: number | undefined): string => (x !== undefined && Number.isFinite(x) ? x.toFixed(0) : '?');

function table(cells: Cell[]): string {
  const base = summarize(cells.find((c) => c.system === 'raw'));
  const rows = [
    '| system | req/s (median) | p50 µs | p99 µs | req/s vs raw | p50 vs raw | CPU % client / server |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const c of cells) {
    const s = summarize(c);
    if (s === undefined) {
      rows.push(`| ${c.system} | failed | | | | | |`);
      continue;
    }
    const partial = c.errors.length > 0 ? ` (${c.runs.length}/${c.runs.length + c.errors.length} runs)` : '';
    const busy = s.others > BUSY_CORES ? ' †' : '';
    rows.push(
      `| ${c.system}${partial}${busy} | ${int(s.rps)} | ${us(s.p50)} | ${us(s.p99)} | ${ratio(base ? s.rps / base.rps : Number.NaN)} | ${ratio(base ? s.p50 / base.p50 : Number.NaN)} | ${pct(s.clientCpu)} / ${pct(s.serverCpu)} |`,
    );
  }
  return rows.join('\n');
}

/** The Protocol issue's targets, checked when longlink and raw were both measured. */
function goals(cells: Cell[]): string[] {
  const get = (system: SystemName, payload: Payload, inflight: number): Summary | undefined => {
    return summarize(
      cells.find((x) => x.system === system && x.payload === payload && x.inflight === inflight),
    );
  };
  const out: string[] = [];
  const check = (label: string, value: number, ok: boolean): void => {
    out.push(`- ${ok ? 'PASS' : 'FAIL'} ${label}: ${value.toFixed(2)}×`);
  };
  const max = Math.max(...cells.map((c) => c.inflight));
  for (const payload of ['json', 'binary'] as const) {
    const ll = get('longlink', payload, max);
    const raw = get('raw', payload, max);
    if (ll && raw && max > 1)
      check(`${payload}, ${max} in flight, req/s ≥ 0.90× raw`, ll.rps / raw.rps, ll.rps >= 0.9 * raw.rps);
  }
  const ll1 = get('longlink', 'json', 1);
  const raw1 = get('raw', 'json', 1);
  if (ll1 && raw1) check('json, 1 in flight, p50 ≤ 1.10× raw', ll1.p50 / raw1.p50, ll1.p50 <= 1.1 * raw1.p50);
  return out;
}

// ---- main -----------------------------------------------------------------------------------

const opts = parseArgs(process.argv.slice(2));

// A system whose module does not load (longlink before its API lands, a missing dependency) is
// skipped with a note rather than failing every one of its runs.
const systems: SystemName[] = [];
const skipped: string[] = [];
for (const s of opts.systems) {
  try {
    await loadSystem(s);
    systems.push(s);
  } catch (err) {
    skipped.push(`${s}: ${(err as Error).message.split('\n')[0]}`);
  }
}

const cpus = os.cpus();
const machine = `node ${process.version}, ${os.platform()} ${os.release()} ${os.arch()}, ${cpus.length} × ${cpus[0]?.model.trim() ?? 'unknown cpu'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB`;
if ((opts.pin === 'split' || opts.pin === 'same') && !hasTaskset) throw new Error('--pin needs taskset');
if (opts.pin === 'split' && os.cpus().length < 2) throw new Error('--pin split needs two CPUs');
const total = systems.length * opts.inflight.length * opts.payloads.length * opts.repeats;
process.stderr.write(
  `machine: ${machine}\n` +
    `${total} runs of ${opts.warmup} s warm-up + ${opts.duration} s: ${systems.join(', ')}\n` +
    skipped.map((s) => `skipped ${s}\n`).join(''),
);

const cells: Cell[] = [];
let done = 0;
for (const payload of opts.payloads) {
  for (const inflight of opts.inflight) {
    const group = systems.map((system): Cell => ({ system, payload, inflight, runs: [], errors: [] }));
    cells.push(...group);
    for (let r = 0; r < opts.repeats; r++) {
      for (const cell of group) {
        const label = `[${++done}/${total}] ${payload} ${inflight} in flight, ${cell.system} #${r + 1}`;
        try {
          let res: RunResult | undefined;
          for (let attempt = 0; attempt <= opts.retries; attempt++) {
            await waitIdle(opts.idleWait, pinFor(opts.pin, inflight) === 'same' ? 0 : undefined);
            const r = await runOnce(cell.system, payload, inflight, opts);
            if (res === undefined || (r.othersCores ?? 0) < (res.othersCores ?? 0)) res = r;
            if ((r.othersCores ?? 0) <= BUSY_CORES) break;
            if (attempt < opts.retries) {
              process.stderr.write(`${label}: others took ${r.othersCores?.toFixed(2)} cores, again\n`);
            }
          }
          if (res === undefined) throw new Error('no run');
          cell.runs.push(res);
          const others = res.othersCores === undefined ? '' : `, others ${res.othersCores.toFixed(2)} cores`;
          process.stderr.write(
            `${label}: ${int(res.reqs / res.seconds)} req/s, p50 ${us(res.p50us)} µs, p99 ${us(res.p99us)} µs` +
              `, CPU client ${pct(res.cpuPct)}% server ${pct(res.serverCpuPct)}%${others}\n`,
          );
        } catch (err) {
          const msg = (err as Error).message;
          cell.errors.push(msg);
          process.stderr.write(`${label}: FAILED ${msg}\n`);
        }
      }
    }
  }
}

const out: string[] = [
  `## Request/response, ${opts.warmup} s warm-up + ${opts.duration} s, median of ${opts.repeats}`,
  '',
  `Machine: ${machine}.`,
  '',
];
for (const payload of opts.payloads) {
  for (const inflight of opts.inflight) {
    const pin = pinFor(opts.pin, inflight);
    const pinned =
      pin === 'same' ? ' (client and server on one core)' : pin === 'split' ? ' (one core each)' : '';
    out.push(
      `### ${payload === 'json' ? '~100-byte JSON' : '100-byte binary'} echo, ${inflight} in flight${pinned}`,
      '',
    );
    out.push(table(cells.filter((c) => c.payload === payload && c.inflight === inflight)), '');
  }
}
const g = goals(cells);
if (g.length > 0) out.push('### Goals (Protocol issue)', '', ...g, '');
if (cells.some((c) => (summarize(c)?.others ?? 0) > BUSY_CORES)) {
  out.push(
    `† other processes on this machine used more than ${BUSY_CORES} of a core during at least one run of that row: its numbers competed for CPU and are suspect.`,
    '',
  );
}
if (skipped.length > 0) out.push('Skipped:', '', ...skipped.map((s) => `- ${s}`), '');
process.stdout.write(`${out.join('\n')}\n`);

if (opts.json !== undefined) {
  writeFileSync(opts.json, `${JSON.stringify({ machine, options: opts, skipped, cells }, null, 2)}\n`);
}
