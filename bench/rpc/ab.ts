/**
 * Two builds of longlink against each other (and raw node:net beside them), interleaved, in CPU
 * per request: what a change to the hot path costs or saves, measurable on a shared machine.
 *
 *   node dist/bench/rpc/ab.js --lib before=/path/to/other/dist/src/index.js [--lib after=...]
 *        [--rounds 5] [--inflight 256] [--payload binary] [--duration 3] [--warmup 1] [--no-raw]
 *        [--pin none|same|split] [--json FILE]
 *
 * A library is a built `dist/src/index.js`, or `this` for this tree's own build (the default when
 * no --lib is given). The harness
 * (bench/rpc/client.js and server.js, the raw baseline) is always this tree's, so only the library
 * differs (systems/longlink.ts imports LONGLINK_BENCH_LIB). Each round runs every library (and raw)
 * once per payload × in-flight, in an order that alternates between rounds (A B raw, then raw B A
 * …), so drift of the machine lands on all of them alike.
 *
 * Per run: req/s, p50/p99/p99.9 latency, and CPU time per request of the client (it measures
 * itself) and of the server (/proc/PID/stat), in µs, plus the 1-minute load average when the run
 * started and what other processes used during it. Throughput moves with whatever else runs;
 * CPU per request moves much less, so that is the figure to compare. The summary gives the
 * median per library, and for each pair of libraries the median of the per-round ratios.
 */

import { type ChildProcess, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { machineBusyMs, processCpuMs, runMain } from '../proc.js';
import { type ClientResult, HIST_EDGES_US, median, type Payload, withTimeout } from './common.js';

const SERVER_JS = fileURLToPath(new URL('./server.js', import.meta.url));
const CLIENT_JS = fileURLToPath(new URL('./client.js', import.meta.url));

interface Options {
  libs: Array<{ name: string; path: string | undefined }>;
  rounds: number;
  inflight: number[];
  payloads: Payload[];
  duration: number;
  warmup: number;
  raw: boolean;
  pin: 'none' | 'same' | 'split';
  json: string | undefined;
}

function parseArgs(argv: string[]): Options {
  const o: Options = {
    libs: [],
    rounds: 5,
    inflight: [256],
    payloads: ['binary'],
    duration: 3,
    warmup: 1,
    raw: true,
    pin: 'none',
    json: undefined,
  };
  const list = (v: string): string[] => v.split(',').filter((s) => s !== '');
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i] as string;
    if (flag === '--no-raw') {
      o.raw = false;
      continue;
    }
    const v = argv[++i];
    if (v === undefined) throw new Error(`${flag} needs a value`);
    switch (flag) {
      case '--lib': {
        const eq = v.indexOf('=');
        if (eq <= 0) throw new Error('--lib NAME=PATH (PATH: a built dist/src/index.js, or `this`)');
        const path = v.slice(eq + 1);
        o.libs.push({ name: v.slice(0, eq), path: path === 'this' ? undefined : path });
        break;
      }
      case '--rounds':
        o.rounds = Number(v);
        break;
      case '--inflight':
        o.inflight = list(v).map(Number);
        break;
      case '--payload':
        o.payloads = list(v) as Payload[];
        break;
      case '--duration':
        o.duration = Number(v);
        break;
      case '--warmup':
        o.warmup = Number(v);
        break;
      case '--pin':
        o.pin = v as Options['pin'];
        break;
      case '--json':
        o.json = v;
        break;
      default:
        throw new Error(`unknown option ${flag}`);
    }
  }
  if (o.libs.length === 0) o.libs.push({ name: 'this', path: undefined });
  return o;
}

interface Run extends ClientResult {
  lib: string;
  payload: Payload;
  inflight: number;
  round: number;
  serverCpuMs: number;
  clientUsPerReq: number;
  serverUsPerReq: number;
  load1: number;
  othersCores: number;
}

const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const p of live) p.kill('SIGKILL');
});

function start(
  script: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  cpu: number | undefined,
): ChildProcess {
  const argv = [process.execPath, script, ...args];
  if (cpu !== undefined) argv.unshift('taskset', '-c', String(cpu));
  const p = spawn(argv[0] as string, argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'], env });
  live.add(p);
  p.once('close', () => live.delete(p));
  p.stdin?.on('error', () => {});
  return p;
}

function lines(p: ChildProcess, onLine: (line: string) => void): void {
  let buf = '';
  p.stdout?.setEncoding('utf8').on('data', (s: string) => {
    buf += s;
    for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
      onLine(buf.slice(0, nl));
      buf = buf.slice(nl + 1);
    }
  });
}

async function runOnce(
  lib: { name: string; path: string | undefined },
  payload: Payload,
  inflight: number,
  round: number,
  o: Options,
): Promise<Run> {
  const system = lib.name === 'raw' ? 'raw' : 'longlink';
  const env = { ...process.env };
  if (lib.path !== undefined) env.LONGLINK_BENCH_LIB = lib.path;
  else delete env.LONGLINK_BENCH_LIB;
  const [sCpu, cCpu] = o.pin === 'same' ? [0, 0] : o.pin === 'split' ? [0, 1] : [undefined, undefined];
  const load1 = os.loadavg()[0] as number;
  const server = start(SERVER_JS, [system, payload], env, sCpu);
  let stderr = '';
  server.stderr?.setEncoding('utf8').on('data', (s: string) => {
    stderr += s;
  });
  try {
    const port = await withTimeout(
      new Promise<number>((resolve, reject) => {
        lines(server, (l) => resolve((JSON.parse(l) as { port: number }).port));
        server.once('close', () => reject(new Error(`server died: ${stderr.slice(-400)}`)));
      }),
      15_000,
      'server start',
    );
    const client = start(
      CLIENT_JS,
      [system, String(port), String(inflight), String(o.warmup), String(o.duration), payload],
      env,
      cCpu,
    );
    let cerr = '';
    client.stderr?.setEncoding('utf8').on('data', (s: string) => {
      cerr += s;
    });
    let s0: { server: number; busy: number; at: bigint } | undefined;
    let s1: { server: number; busy: number; at: bigint } | undefined;
    const snap = () => ({
      server: processCpuMs(server.pid) ?? Number.NaN,
      busy: machineBusyMs() ?? Number.NaN,
      at: process.hrtime.bigint(),
    });
    const result = await withTimeout(
      new Promise<ClientResult>((resolve, reject) => {
        lines(client, (l) => {
          if (l === '{"phase":"measure"}') s0 = snap();
          else if (l === '{"phase":"done"}') s1 = snap();
          else resolve(JSON.parse(l) as ClientResult);
        });
        client.once('close', (code) => reject(new Error(`client exited ${code}: ${cerr.slice(-400)}`)));
      }),
      (o.warmup + o.duration) * 1000 + 30_000,
      'client',
    );
    client.kill('SIGKILL');
    if (s0 === undefined || s1 === undefined) throw new Error('no measurement window');
    const serverCpuMs = s1.server - s0.server;
    const wallMs = Number(s1.at - s0.at) / 1e6;
    const clientMs = (result.cpuPct / 100) * result.seconds * 1000;
    return {
      ...result,
      lib: lib.name,
      payload,
      inflight,
      round,
      serverCpuMs,
      clientUsPerReq: (clientMs * 1000) / result.reqs,
      serverUsPerReq: (serverCpuMs * 1000) / result.reqs,
      load1,
      othersCores: Math.max(0, (s1.busy - s0.busy - serverCpuMs - clientMs) / wallMs),
    };
  } finally {
    server.kill('SIGKILL');
  }
}

const f1 = (x: number): string => (Number.isFinite(x) ? x.toFixed(2) : '–');
const int = (x: number): string => Math.round(x).toLocaleString('en-US');

function summary(runs: Run[], o: Options, libs: string[]): string {
  const out: string[] = [];
  for (const payload of o.payloads) {
    for (const inflight of o.inflight) {
      const cell = runs.filter((r) => r.payload === payload && r.inflight === inflight);
      out.push(`### ${payload}, ${inflight} in flight: median of ${o.rounds} interleaved rounds`, '');
      out.push(
        '| build | req/s | p50 µs | p99 µs | p99.9 µs | client µs/req | server µs/req | load avg (1 min) | others (cores) |',
        '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
      );
      for (const lib of libs) {
        const rs = cell.filter((r) => r.lib === lib);
        if (rs.length === 0) continue;
        const m = (f: (r: Run) => number) => median(rs.map(f));
        out.push(
          `| ${lib} | ${int(m((r) => r.reqs / r.seconds))} | ${int(m((r) => r.p50us))} | ${int(m((r) => r.p99us))} | ${int(m((r) => r.p999us ?? Number.NaN))} | ${f1(m((r) => r.clientUsPerReq))} | ${f1(m((r) => r.serverUsPerReq))} | ${f1(m((r) => r.load1))} | ${f1(m((r) => r.othersCores))} |`,
        );
      }
      out.push('');
      // Paired ratios: each round's figure over the same round's figure of the reference.
      const pairs: string[] = [];
      const builds = libs.filter((l) => l !== 'raw');
      const wanted: Array<[string, string]> = [];
      // Every later build over every earlier one (after / before), then each build over raw.
      for (let i = 0; i < builds.length; i++)
        for (let j = i + 1; j < builds.length; j++) wanted.push([builds[j] as string, builds[i] as string]);
      if (libs.includes('raw')) for (const b of builds) wanted.push([b, 'raw']);
      for (const [a, b] of wanted) {
        const ratios = (f: (r: Run) => number) =>
          median(
            Array.from({ length: o.rounds }, (_, round) => {
              const ra = cell.find((r) => r.lib === a && r.round === round);
              const rb = cell.find((r) => r.lib === b && r.round === round);
              return ra && rb ? f(ra) / f(rb) : Number.NaN;
            }),
          );
        pairs.push(
          `| ${a} / ${b} | ${f1(ratios((r) => r.reqs / r.seconds))}× | ${f1(ratios((r) => r.p50us))}× | ${f1(ratios((r) => r.p99us))}× | ${f1(ratios((r) => r.clientUsPerReq))}× | ${f1(ratios((r) => r.serverUsPerReq))}× |`,
        );
      }
      if (pairs.length > 0) {
        out.push(
          '| ratio (median of per-round ratios) | req/s | p50 | p99 | client µs/req | server µs/req |',
          '| --- | ---: | ---: | ---: | ---: | ---: |',
          ...pairs,
          '',
        );
      }
      // Latency histogram: share of requests per bucket, summed over the rounds.
      const edges = HIST_EDGES_US;
      const head = [
        '< 16',
        ...edges.slice(1).map((e, i) => `${edges[i]}–${e}`),
        `≥ ${edges[edges.length - 1]}`,
      ];
      out.push(`| latency µs | ${libs.filter((l) => cell.some((r) => r.lib === l)).join(' | ')} |`);
      out.push(`| --- |${libs.map(() => ' ---: |').join('')}`);
      const sums = libs.map((lib) => {
        const s = new Array<number>(edges.length + 1).fill(0);
        for (const r of cell.filter((x) => x.lib === lib)) {
          r.hist?.forEach((c, k) => {
            s[k] = (s[k] as number) + c;
          });
        }
        return s;
      });
      for (let k = 0; k <= edges.length; k++) {
        if (sums.every((s) => s[k] === 0)) continue;
        const cells = sums.map((s) => {
          const total = s.reduce((x, y) => x + y, 0);
          return total === 0 ? '–' : `${((100 * (s[k] as number)) / total).toFixed(2)} %`;
        });
        out.push(`| ${head[k]} | ${cells.join(' | ')} |`);
      }
      out.push('');
    }
  }
  return out.join('\n');
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  const libs = [...o.libs, ...(o.raw ? [{ name: 'raw', path: undefined }] : [])];
  const names = libs.map((l) => l.name);
  process.stderr.write(
    `A/B: ${names.join(', ')}; ${o.rounds} rounds × ${o.payloads.join(',')} × ${o.inflight.join(',')} in flight; ${o.warmup} s + ${o.duration} s each\n`,
  );
  const runs: Run[] = [];
  for (let round = 0; round < o.rounds; round++) {
    const order = round % 2 === 0 ? libs : [...libs].reverse();
    for (const payload of o.payloads) {
      for (const inflight of o.inflight) {
        for (const lib of order) {
          const r = await runOnce(lib, payload, inflight, round, o);
          runs.push(r);
          process.stderr.write(
            `round ${round + 1} ${payload} ${inflight} ${lib.name}: ${int(r.reqs / r.seconds)} req/s, p50 ${int(r.p50us)} p99 ${int(r.p99us)} µs, client ${f1(r.clientUsPerReq)} server ${f1(r.serverUsPerReq)} µs/req, load ${f1(r.load1)}, others ${f1(r.othersCores)}\n`,
          );
        }
      }
    }
  }
  process.stdout.write(`${summary(runs, o, names)}\n`);
  if (o.json !== undefined) writeFileSync(o.json, `${JSON.stringify({ options: o, runs }, null, 2)}\n`);
}

runMain(main);
