/**
 * Heartbeat CPU benchmark (docs/benchmarks-heartbeat.md): 10,000 connections heartbeating at 1 Hz
 * in both directions, server in one process and clients in others; CPU per side and event-loop
 * lag p99 per side, for longlink and the two hand-written baselines in the same run.
 *
 *   node dist/bench/heartbeat/cpu.js [--connections 10000] [--clients 1] [--warmup 5]
 *        [--duration 20] [--interval 1000] [--timeout 3000] [--repeats 1]
 *        [--only raw-interval,raw-wheel,raw-pair,longlink] [--idle-wait 20]
 *
 * One run of a system: spawn the server worker, spawn the client workers, open the connections
 * (clients bound to 127.0.0.2, 127.0.0.3 …), wait the warm-up, then every worker measures the same
 * window at once: its CPU (process.cpuUsage), its loop delay (monitorEventLoopDelay, 10 ms
 * resolution) and its heartbeat bytes. Children are killed after each run and on every exit path.
 */

import { mkdirSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { runMain } from '../proc.js';
import {
  DESCRIPTIONS,
  fixed,
  formatCloses,
  type Heartbeat,
  int,
  isSystemName,
  machineBusyMs,
  median,
  numberFlag,
  type ProfileSummary,
  parseFlags,
  processCpuMs,
  ratio,
  type SystemName,
  sleep,
  sourceAddresses,
  summarizeAllocProfile,
  summarizeProfile,
  table,
  type Window,
  Worker,
  waitIdle,
} from './common.js';

const USAGE = `usage: node dist/bench/heartbeat/cpu.js [--connections 10000] [--clients 1] [--warmup 5]
       [--duration 20] [--interval 1000] [--timeout 3000] [--repeats 1]
       [--only raw-interval,raw-wheel,raw-pair,longlink] [--idle-wait 20] [--concurrency 256]
       [--profile DIR]        V8 CPU profile of every process over the window (adds the profiler's cost)
       [--alloc-profile DIR]  sampled allocation profile of every process over the window
       [--gc-log DIR]         --trace-gc output of every process, one file each (GC pauses vs loop lag)`;

const flags = parseFlags(
  process.argv.slice(2),
  [
    'connections',
    'clients',
    'warmup',
    'duration',
    'interval',
    'timeout',
    'repeats',
    'only',
    'idle-wait',
    'concurrency',
    'profile',
    'alloc-profile',
    'gc-log',
  ],
  USAGE,
);
const connections = numberFlag(flags, 'connections', 10_000);
const clientProcs = Math.max(1, numberFlag(flags, 'clients', 1));
const warmupS = numberFlag(flags, 'warmup', 5);
const durationS = numberFlag(flags, 'duration', 20);
const hb: Heartbeat = {
  intervalMs: numberFlag(flags, 'interval', 1000),
  timeoutMs: numberFlag(flags, 'timeout', 3000),
};
const repeats = Math.max(1, numberFlag(flags, 'repeats', 1));
const idleWaitS = numberFlag(flags, 'idle-wait', 20);
const concurrency = numberFlag(flags, 'concurrency', 256);
const profileDir = flags.get('profile');
const allocDir = flags.get('alloc-profile');
const gcLogDir = flags.get('gc-log');
const workerArgs = gcLogDir === undefined ? [] : ['--trace-gc'];
const systems = (flags.get('only') ?? 'raw-interval,raw-wheel,raw-pair,longlink').split(',').map((s) => {
  if (!isSystemName(s) || s === 'raw' || s === 'conn') {
    throw new Error(`--only takes raw-interval, raw-wheel, raw-pair, longlink; got ${s}`);
  }
  return s;
});
if (connections / clientProcs > 19_000) throw new Error('more than 19,000 connections per client process');

function profilePath(
  dir: string | undefined,
  system: SystemName,
  rep: number,
  side: string,
  ext = 'cpuprofile',
): string | undefined {
  return dir === undefined ? undefined : resolve(dir, `${system}-${rep + 1}-${side}.${ext}`);
}

interface Run {
  server: Window;
  clients: Window[];
  /** Other processes' CPU over the window, in cores. */
  othersCores: number | undefined;
  connectMs: number;
}

async function runOnce(system: SystemName, rep: number): Promise<Run> {
  const server = new Worker(`${system} server`, workerArgs);
  const clients = Array.from(
    { length: clientProcs },
    (_, i) => new Worker(`${system} client ${i}`, workerArgs),
  );
  try {
    const { port } = await server.call<{ ok: boolean; port: number }>({ cmd: 'listen', system, hb }, 15_000);
    const per = Math.ceil(connections / clientProcs);
    const t0 = performance.now();
    const opened = await Promise.all(
      clients.map((c, i) =>
        c.call<{ ok: boolean; opened: number; failed: number; errors: Record<string, number> }>(
          {
            cmd: 'connect',
            system,
            hb,
            port,
            count: Math.min(per, connections - i * per),
            // Each client process binds its own source address: ports never run out.
            addrs: sourceAddresses(1, 2 + i),
            concurrency,
          },
          120_000,
        ),
      ),
    );
    const connectMs = performance.now() - t0;
    const failed = opened.reduce((n, r) => n + r.failed, 0);
    if (failed > 0) {
      throw new Error(`${failed} connects failed: ${JSON.stringify(opened.map((r) => r.errors))}`);
    }
    await sleep(warmupS * 1000);
    const pids = [server.pid, ...clients.map((c) => c.pid)];
    const busy0 = machineBusyMs();
    const own0 = pids.map(processCpuMs);
    const drv0 = process.cpuUsage();
    const w0 = performance.now();
    const ms = durationS * 1000;
    const [sw, ...cw] = await Promise.all(
      [server, ...clients].map((w, i) =>
        w.call<Window & { ok: boolean }>(
          {
            cmd: 'measure',
            ms,
            profile: profilePath(profileDir, system, rep, i === 0 ? 'server' : `client${i - 1}`),
            allocProfile: profilePath(
              allocDir,
              system,
              rep,
              i === 0 ? 'server' : `client${i - 1}`,
              'heapprofile',
            ),
          },
          ms + 60_000,
        ),
      ),
    );
    const wallMs = performance.now() - w0;
    const busy1 = machineBusyMs();
    const own1 = pids.map(processCpuMs);
    const drv = process.cpuUsage(drv0);
    let others: number | undefined;
    if (
      busy0 !== undefined &&
      busy1 !== undefined &&
      own0.every((x, i) => x !== undefined && own1[i] !== undefined)
    ) {
      const own = own1.reduce((s: number, x, i) => s + (x as number) - (own0[i] as number), 0);
      others = Math.max(0, (busy1 - busy0 - own - (drv.user + drv.system) / 1000) / wallMs);
    }
    return { server: sw as Window, clients: cw as Window[], othersCores: others, connectMs };
  } finally {
    await Promise.all([...clients.map((c) => c.stop()), server.stop()]);
    if (gcLogDir !== undefined) {
      mkdirSync(gcLogDir, { recursive: true });
      [server, ...clients].forEach((w, i) => {
        const side = i === 0 ? 'server' : `client${i - 1}`;
        writeFileSync(resolve(gcLogDir, `${system}-${rep + 1}-${side}.gc.log`), w.log);
      });
    }
  }
}

interface Summary {
  serverCpu: number;
  clientCpu: number;
  serverLagP99: number;
  clientLagP99: number;
  serverLagMax: number;
  clientLagMax: number;
  /** Frames (or, for longlink, bytes) per second in each direction, server's view. */
  serverInPerS: number;
  serverOutPerS: number;
  others: number;
  closes: string;
  runs: number;
}

const sum = (xs: number[]): number => xs.reduce((a, b) => a + b, 0);

/** longlink's PING and PONG frames: u32be length + kind + flags + 8 bytes of data. */
const LONGLINK_PING_BYTES = 14;
const framesIn = (w: Window): number => w.framesIn ?? w.bytesIn / LONGLINK_PING_BYTES;
const framesOut = (w: Window): number => w.framesOut ?? w.bytesOut / LONGLINK_PING_BYTES;

function summarize(runs: Run[]): Summary | undefined {
  if (runs.length === 0) return undefined;
  const closes: Record<string, number> = {};
  for (const r of runs) {
    for (const w of [r.server, ...r.clients]) {
      for (const [k, v] of Object.entries(w.closes)) closes[k] = (closes[k] ?? 0) + v;
    }
  }
  return {
    serverCpu: median(runs.map((r) => r.server.cpuPct)),
    clientCpu: median(runs.map((r) => sum(r.clients.map((c) => c.cpuPct)))),
    serverLagP99: median(runs.map((r) => r.server.lagP99Ms)),
    clientLagP99: median(runs.map((r) => Math.max(...r.clients.map((c) => c.lagP99Ms)))),
    serverLagMax: Math.max(...runs.map((r) => r.server.lagMaxMs)),
    clientLagMax: Math.max(...runs.map((r) => Math.max(...r.clients.map((c) => c.lagMaxMs)))),
    serverInPerS: median(runs.map((r) => framesIn(r.server) / r.server.seconds)),
    serverOutPerS: median(runs.map((r) => framesOut(r.server) / r.server.seconds)),
    others: Math.max(...runs.map((r) => r.othersCores ?? 0)),
    closes: formatCloses(closes),
    runs: runs.length,
  };
}

async function main(): Promise<void> {
  const results = new Map<SystemName, Run[]>(systems.map((s) => [s, []]));
  const failures = new Map<SystemName, string[]>(systems.map((s) => [s, []]));
  process.stderr.write(
    `heartbeat cpu: ${int(connections)} connections, ${clientProcs} client process(es), heartbeat ${hb.intervalMs}/${hb.timeoutMs} ms, warm-up ${warmupS} s, window ${durationS} s, node ${process.version}\n`,
  );
  for (let rep = 0; rep < repeats; rep++) {
    for (const system of systems) {
      const load = await waitIdle(idleWaitS);
      try {
        const r = await runOnce(system, rep);
        results.get(system)?.push(r);
        const cl = r.clients;
        process.stderr.write(
          `  ${system} #${rep + 1}: connect ${fixed(r.connectMs / 1000)} s; CPU server ${fixed(r.server.cpuPct)} % (user ${fixed(r.server.userPct)}) client ${fixed(sum(cl.map((c) => c.cpuPct)))} % (user ${fixed(sum(cl.map((c) => c.userPct)))}); lag p99 ${fixed(r.server.lagP99Ms)} / ${fixed(Math.max(...cl.map((c) => c.lagP99Ms)))} ms, max ${fixed(r.server.lagMaxMs)} / ${fixed(Math.max(...cl.map((c) => c.lagMaxMs)))} ms; server frames in ${int(framesIn(r.server) / r.server.seconds)}/s out ${int(framesOut(r.server) / r.server.seconds)}/s; open ${r.server.open}; others ${fixed(r.othersCores, 2)} cores (before: ${fixed(load, 2)})\n`,
        );
      } catch (err) {
        failures.get(system)?.push(String((err as Error).message));
        process.stderr.write(`  ${system} #${rep + 1}: FAILED ${(err as Error).message}\n`);
      }
      await sleep(1000);
    }
  }

  const base = summarize(results.get('raw-interval') ?? []);
  const rows: string[][] = [];
  for (const system of systems) {
    const s = summarize(results.get(system) ?? []);
    if (s === undefined) {
      rows.push([system, 'failed', '', '', '', '', '', '', '']);
      continue;
    }
    const flag = s.others > 0.25 ? ' †' : '';
    rows.push([
      `${system}${flag}`,
      fixed(s.serverCpu),
      fixed(s.clientCpu),
      `${fixed(s.serverLagP99)} / ${fixed(s.clientLagP99)}`,
      `${fixed(s.serverLagMax)} / ${fixed(s.clientLagMax)}`,
      `${ratio(base ? s.serverCpu / base.serverCpu : Number.NaN)} / ${ratio(base ? s.clientCpu / base.clientCpu : Number.NaN)}`,
      `${int(s.serverInPerS)} / ${int(s.serverOutPerS)}`,
      s.closes,
      String(s.runs),
    ]);
  }
  const out: string[] = [];
  out.push(
    `### Heartbeat CPU: ${int(connections)} connections, ${hb.intervalMs} ms heartbeat both ways, ${durationS} s window (node ${process.version}, ${new Date().toISOString().slice(0, 10)})`,
    '',
    table(
      [
        'system',
        'CPU server %',
        'CPU client %',
        'loop-lag p99 server / client ms',
        'loop-lag max ms',
        'CPU vs raw-interval (server / client)',
        'server frames in / out per s',
        'closes',
        'runs',
      ],
      rows,
    ),
    '',
    ...systems.map((s) => `- ${s}: ${DESCRIPTIONS[s]}`),
    '- CPU: % of one core, process.cpuUsage over the window (median of runs). Loop lag: monitorEventLoopDelay with 10 ms resolution; the figure includes the 10 ms sampling interval (an idle loop reads ≈10.1 ms).',
    '- Frames: PINGs and PONGs the server read / wrote per second. Raw systems count their 5-byte frames; for longlink it is bytes ÷ 14 (a PING or PONG frame is 14 bytes). longlink sends fewer: any byte read counts as liveness, so a PONG received also defers the next PING.',
    '- † other processes used more than 0.25 of a core during a window.',
  );
  const ll = summarize(results.get('longlink') ?? []);
  if (ll && base) {
    const ok = (b: boolean): string => (b ? 'PASS' : 'FAIL');
    out.push(
      '',
      `- ${ok(ll.serverCpu <= base.serverCpu / 2 && ll.clientCpu <= base.clientCpu / 2)} CPU ≤ half of raw-interval: server ${ratio(ll.serverCpu / base.serverCpu)}, client ${ratio(ll.clientCpu / base.clientCpu)}`,
      `- ${ok(ll.serverLagP99 <= 20 && ll.clientLagP99 <= 20)} loop-lag p99 ≤ 20 ms: server ${fixed(ll.serverLagP99)} ms, client ${fixed(ll.clientLagP99)} ms`,
    );
  }
  const pair = summarize(results.get('raw-pair') ?? []);
  if (pair && base) {
    out.push(
      `- raw-pair (hand-written node:net, longlink's frame pattern) vs raw-interval: server ${ratio(pair.serverCpu / base.serverCpu)}, client ${ratio(pair.clientCpu / base.clientCpu)}`,
    );
    if (ll)
      out.push(
        `- longlink vs raw-pair: server ${ratio(ll.serverCpu / pair.serverCpu)}, client ${ratio(ll.clientCpu / pair.clientCpu)}`,
      );
  }
  for (const [s, errs] of failures) for (const e of errs) out.push(`- ${s} failed: ${e.split('\n')[0]}`);
  if (profileDir !== undefined) {
    out.push('', "- Profiled runs: the CPU figures above include the V8 profiler's own sampling cost.");
    for (const system of systems) {
      if ((results.get(system) ?? []).length === 0) continue;
      for (const side of ['server', 'client0']) {
        const file = profilePath(profileDir, system, repeats - 1, side) as string;
        let p: ProfileSummary;
        try {
          p = summarizeProfile(file, 20);
        } catch {
          continue;
        }
        out.push(
          '',
          `#### ${system} ${side === 'server' ? 'server' : 'client'}: self time, % of busy samples (${int(p.busySamples)} of ${int(p.totalSamples)} samples busy) — ${file}`,
          '',
          table(
            ['function', 'where', 'self %'],
            p.functions.map((f) => [`\`${f.name}\``, f.where, fixed(f.pct)]),
          ),
          '',
          table(
            ['file', 'self %'],
            p.files.map((f) => [f.file, fixed(f.pct)]),
          ),
        );
      }
    }
  }
  if (allocDir !== undefined) {
    out.push(
      '',
      "- Allocation-profiled runs: the CPU figures above include the sampling heap profiler's cost.",
    );
    for (const system of systems) {
      const runs = results.get(system) ?? [];
      if (runs.length === 0) continue;
      for (const side of ['server', 'client0']) {
        const file = profilePath(allocDir, system, repeats - 1, side, 'heapprofile') as string;
        let a: ReturnType<typeof summarizeAllocProfile>;
        try {
          a = summarizeAllocProfile(file, durationS, 15);
        } catch {
          continue;
        }
        out.push(
          '',
          `#### ${system} ${side === 'server' ? 'server' : 'client'}: allocation, ${fixed(a.totalMiBps)} MiB/s in all (sampled) — ${file}`,
          '',
          table(
            ['allocating function', 'where', 'called from', 'MiB/s', '%'],
            a.functions.map((f) => [`\`${f.name}\``, f.where, f.stack, fixed(f.mibps, 2), fixed(f.pct)]),
          ),
        );
      }
    }
  }
  process.stdout.write(`${out.join('\n')}\n`);
}

runMain(main);
