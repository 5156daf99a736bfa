/**
 * Aggregate throughput of serveWorkers (docs/SCALING.md, "Scale figures"): one port served by 1 or
 * 2 worker processes, node:cluster against SO_REUSEPORT (where this Node has it), in the same run,
 * interleaved, repeated.
 *
 *   node dist/bench/workers/throughput.js [--clients 2] [--connections 16] [--inflight 8]
 *        [--warmup 2] [--duration 6] [--repeats 3] [--only cluster-1,cluster-2,reuse-port-1,reuse-port-2]
 *
 * For each configuration: a WorkerGroup (this process is its primary), --clients load processes
 * (bench/workers/client.ts) each with --connections connections and --inflight requests in flight
 * on each. Requests window: answers per second, and the CPU of the workers + the primary per
 * request (from /proc; the primary only deals connections out, it sees no request). Connects window:
 * connect + one echo + close per loop, 8 loops per client process: connections per second and CPU
 * per connection (there cluster's primary accepts and hands over every socket). The machine's load
 * average is printed with every row: the machine is shared, read the CPU columns first.
 */

import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { reusePortSupported, serveWorkers, type WorkersMode } from '../../src/index.js';
import { processCpuMs, runMain } from '../proc.js';

const args = process.argv.slice(2);
function flag(name: string, fallback: number): number {
  const at = args.indexOf(`--${name}`);
  return at >= 0 ? Number(args[at + 1]) : fallback;
}
const onlyAt = args.indexOf('--only');
const clients = flag('clients', 2);
const connections = flag('connections', 16);
const inflight = flag('inflight', 8);
const warmup = flag('warmup', 2);
const duration = flag('duration', 6);
const repeats = flag('repeats', 3);

interface Config {
  name: string;
  mode: WorkersMode;
  workers: number;
}

interface Run {
  reqPerS: number;
  cpuUsPerReq: number;
  connPerS: number;
  cpuUsPerConn: number;
  primaryUsPerConn: number;
  load: string;
}

const loadavg = () => readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
const SERVER = fileURLToPath(new URL('./server.js', import.meta.url));
const CLIENT = fileURLToPath(new URL('./client.js', import.meta.url));
const ownCpuMs = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

async function once(config: Config): Promise<Run> {
  const group = await serveWorkers({
    module: SERVER,
    workers: config.workers,
    mode: config.mode,
    handleSignals: false,
    graceMs: 1000,
    execArgv: [],
  });
  const port = group.address.port;
  const serverCpu = () => {
    let ms = 0;
    for (const w of group.stats().workers) ms += processCpuMs(w.pid) ?? Number.NaN;
    return ms;
  };
  const procs = Array.from({ length: clients }, () =>
    spawn(
      process.execPath,
      [CLIENT, String(port), String(connections), String(inflight), String(warmup), String(duration)],
      {
        stdio: ['pipe', 'pipe', 'inherit'],
      },
    ),
  );
  const marks: Record<string, { workers: number; primary: number }> = {};
  const results = await Promise.all(
    procs.map(
      (p, i) =>
        new Promise<{ reqs: number; seconds: number; connects: number; connectSeconds: number }>(
          (resolve, reject) => {
            let buf = '';
            p.stdout.setEncoding('utf8').on('data', (d: string) => {
              buf += d;
              for (let at = buf.indexOf('\n'); at >= 0; at = buf.indexOf('\n')) {
                const msg = JSON.parse(buf.slice(0, at));
                buf = buf.slice(at + 1);
                // The first client's marks bound the windows (the others' are within milliseconds).
                if (msg.phase !== undefined) {
                  if (i === 0) marks[msg.phase] = { workers: serverCpu(), primary: ownCpuMs() };
                } else resolve(msg);
              }
            });
            p.on('exit', (code) => code !== 0 && reject(new Error(`client exited ${code}`)));
          },
        ),
    ),
  );
  const load = loadavg();
  await group.close();
  const sum = (k: 'reqs' | 'connects') => results.reduce((n, r) => n + r[k], 0);
  const seconds = (results[0] as { seconds: number }).seconds;
  const connectSeconds = (results[0] as { connectSeconds: number }).connectSeconds;
  const m = (k: string) => marks[k] as { workers: number; primary: number };
  const reqs = sum('reqs');
  const connects = sum('connects');
  const reqCpu =
    m('connects').workers - m('requests').workers + m('connects').primary - m('requests').primary;
  const connCpu = m('done').workers - m('connects').workers;
  const connPrimary = m('done').primary - m('connects').primary;
  return {
    reqPerS: reqs / seconds,
    cpuUsPerReq: (reqCpu * 1000) / reqs,
    connPerS: connects / connectSeconds,
    cpuUsPerConn: ((connCpu + connPrimary) * 1000) / connects,
    primaryUsPerConn: (connPrimary * 1000) / connects,
    load,
  };
}

async function main(): Promise<void> {
  const reuse = await reusePortSupported();
  let configs: Config[] = [
    { name: 'cluster-1', mode: 'cluster', workers: 1 },
    { name: 'cluster-2', mode: 'cluster', workers: 2 },
    { name: 'reuse-port-1', mode: 'reuse-port', workers: 1 },
    { name: 'reuse-port-2', mode: 'reuse-port', workers: 2 },
  ];
  if (onlyAt >= 0) {
    const only = new Set(String(args[onlyAt + 1]).split(','));
    configs = configs.filter((c) => only.has(c.name));
  }
  if (!reuse) {
    console.log(
      `# node ${process.version}: no SO_REUSEPORT through net (Node ≥ 22.12 has it): reuse-port rows left out`,
    );
    configs = configs.filter((c) => c.mode !== 'reuse-port');
  }
  console.log(
    `# node ${process.version}; ${clients} client processes × ${connections} connections × ${inflight} in flight; ` +
      `warmup ${warmup} s, windows ${duration} s; ${repeats} repeats, interleaved`,
  );
  const runs = new Map<string, Run[]>(configs.map((c) => [c.name, []]));
  for (let r = 0; r < repeats; r++) {
    for (const c of configs) {
      const run = await once(c);
      (runs.get(c.name) as Run[]).push(run);
      console.log(
        `# ${c.name} #${r + 1}: ${Math.round(run.reqPerS)} req/s, ${run.cpuUsPerReq.toFixed(1)} µs CPU/req; ` +
          `${Math.round(run.connPerS)} connects/s, ${run.cpuUsPerConn.toFixed(0)} µs CPU/connect (primary ${run.primaryUsPerConn.toFixed(0)}); loadavg ${run.load}`,
      );
    }
  }
  const median = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)] as number;
  const base = median((runs.get(configs[0]?.name ?? '') ?? []).map((x) => x.reqPerS));
  console.log(
    '\n| workers | req/s (median) | vs first row | server CPU µs/req | connects/s | server CPU µs/connect (of it primary) | loadavg (runs) |',
  );
  console.log('| --- | ---: | ---: | ---: | ---: | ---: | --- |');
  for (const c of configs) {
    const v = runs.get(c.name) as Run[];
    const rps = median(v.map((x) => x.reqPerS));
    console.log(
      `| ${c.name} | ${Math.round(rps).toLocaleString('en')} | ${(rps / base).toFixed(2)}× | ${median(v.map((x) => x.cpuUsPerReq)).toFixed(1)} | ` +
        `${Math.round(median(v.map((x) => x.connPerS))).toLocaleString('en')} | ${median(v.map((x) => x.cpuUsPerConn)).toFixed(0)} (${median(v.map((x) => x.primaryUsPerConn)).toFixed(0)}) | ${v.map((x) => x.load.split(' ')[0]).join(', ')} |`,
    );
  }
}

runMain(main);
