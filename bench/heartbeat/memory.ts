/**
 * Memory per idle connection (docs/benchmarks-heartbeat.md): raw node:net against longlink's
 * Connection and its client/server with heartbeats armed, each side in its own process.
 *
 *   node --expose-gc dist/bench/heartbeat/memory.js [--connections 10000] [--repeats 3]
 *        [--only raw,raw-interval,conn,longlink] [--interval 30000] [--timeout 90000]
 *
 * One run of a system: a server worker and a client worker; the client opens a warm-up batch
 * (so code is loaded, pools are allocated and JIT has run), both sides take a snapshot after full
 * GCs, the client opens N more connections, and once the server holds them all both sides take a
 * second snapshot. (second − first) / N is the cost of one idle connection on that side. The
 * workers always run with --expose-gc; the flag on the driver is harmless.
 */

import { runMain } from '../proc.js';
import {
  DESCRIPTIONS,
  fixed,
  type Heartbeat,
  int,
  isSystemName,
  median,
  numberFlag,
  parseFlags,
  ratio,
  type Snapshot,
  type SystemName,
  sleep,
  sourceAddresses,
  table,
  Worker,
} from './common.js';

const USAGE = `usage: node --expose-gc dist/bench/heartbeat/memory.js [--connections 10000] [--warm 500]
       [--repeats 3] [--only raw,raw-interval,conn,longlink] [--interval 30000] [--timeout 90000]
       [--breakdown N]   also: what one connection keeps on the V8 heap, by constructor (N connections)
       [--semi-space MB] fix every worker's young generation at MB per semi-space (V8's
                         --min/--max-semi-space-size), so its growth during the ramp is not
                         counted as per-connection RSS`;

const flags = parseFlags(
  process.argv.slice(2),
  ['connections', 'warm', 'repeats', 'only', 'interval', 'timeout', 'breakdown', 'semi-space'],
  USAGE,
);
const connections = numberFlag(flags, 'connections', 10_000);
const warm = numberFlag(flags, 'warm', 500);
const repeats = Math.max(1, numberFlag(flags, 'repeats', 3));
const hb: Heartbeat = {
  intervalMs: numberFlag(flags, 'interval', 30_000),
  timeoutMs: numberFlag(flags, 'timeout', 90_000),
};
const breakdownN = numberFlag(flags, 'breakdown', 0);
const semiSpace = numberFlag(flags, 'semi-space', 0);
/** Node flags for every worker: the same for all systems. */
const workerArgs =
  semiSpace > 0 ? [`--min-semi-space-size=${semiSpace}`, `--max-semi-space-size=${semiSpace}`] : [];
const systems = (flags.get('only') ?? 'raw,raw-interval,conn,longlink').split(',').map((s) => {
  if (!isSystemName(s)) throw new Error(`unknown system ${s}`);
  return s;
});
if (connections + warm > 19_000)
  throw new Error('at most 19,000 connections (the open-files limit is 20,000)');

/** Bytes per connection on one side. */
interface PerConn {
  rss: number;
  heap: number;
  /** V8 heap reserved (used + free pages). */
  heapTotal: number;
  external: number;
  /**
   * Growth of the young generation's reserve over the whole step, bytes (not per connection): V8
   * sizes it to the allocation rate, so it is a one-off that a per-connection figure would smear.
   */
  youngGrowth: number;
}

interface Run {
  server: PerConn;
  client: PerConn;
}

function perConn(a: Snapshot, b: Snapshot): PerConn {
  const n = b.open - a.open;
  return {
    rss: (b.rss - a.rss) / n,
    heap: (b.heapUsed - a.heapUsed) / n,
    heapTotal: (b.heapTotal - a.heapTotal) / n,
    external: (b.external - a.external) / n,
    youngGrowth: b.youngTotal - a.youngTotal,
  };
}

async function runOnce(system: SystemName): Promise<Run> {
  const server = new Worker(`${system} server`, workerArgs);
  const client = new Worker(`${system} client`, workerArgs);
  try {
    const { port } = await server.call<{ port: number }>({ cmd: 'listen', system, hb }, 15_000);
    const addrs = sourceAddresses(1);
    const open = (count: number) =>
      client.call<{ opened: number; failed: number; errors: Record<string, number> }>(
        { cmd: 'connect', system, hb, port, count, addrs, concurrency: 128 },
        120_000,
      );
    const serverHolds = async (n: number): Promise<void> => {
      const deadline = Date.now() + 30_000;
      for (;;) {
        const s = await server.call<{ open: number }>({ cmd: 'status' }, 10_000);
        if (s.open >= n) return;
        if (Date.now() > deadline) throw new Error(`server holds ${s.open} of ${n} connections`);
        await sleep(200);
      }
    };
    let r = await open(warm);
    if (r.failed > 0) throw new Error(`warm-up connects failed: ${JSON.stringify(r.errors)}`);
    await serverHolds(warm);
    await sleep(500);
    const [s0, c0] = await Promise.all([
      server.call<Snapshot>({ cmd: 'snapshot' }, 30_000),
      client.call<Snapshot>({ cmd: 'snapshot' }, 30_000),
    ]);
    r = await open(connections);
    if (r.failed > 0) throw new Error(`connects failed: ${JSON.stringify(r.errors)}`);
    await serverHolds(warm + connections);
    await sleep(1000);
    const [s1, c1] = await Promise.all([
      server.call<Snapshot>({ cmd: 'snapshot' }, 30_000),
      client.call<Snapshot>({ cmd: 'snapshot' }, 30_000),
    ]);
    return { server: perConn(s0, s1), client: perConn(c0, c1) };
  } finally {
    await Promise.all([client.stop(), server.stop()]);
  }
}

const kb = (bytes: number): string => fixed(bytes / 1024, 2);
const mib = (bytes: number): string => fixed(bytes / 1024 / 1024, 1);

type Classes = Record<string, [count: number, bytes: number]>;

/**
 * What N more connections add to the V8 heap, by `kind:constructor`, per connection and side.
 * Separate runs: a heap snapshot disturbs the RSS figures of the main table.
 */
async function breakdown(system: SystemName, n: number): Promise<string> {
  const server = new Worker(`${system} server`);
  const client = new Worker(`${system} client`);
  try {
    const { port } = await server.call<{ port: number }>({ cmd: 'listen', system, hb }, 15_000);
    const open = async (count: number): Promise<void> => {
      const r = await client.call<{ failed: number; errors: Record<string, number> }>(
        { cmd: 'connect', system, hb, port, count, addrs: sourceAddresses(1), concurrency: 128 },
        120_000,
      );
      if (r.failed > 0) throw new Error(`connects failed: ${JSON.stringify(r.errors)}`);
      for (let i = 0; i < 150; i++) {
        const s = await server.call<{ open: number }>({ cmd: 'status' }, 10_000);
        const c = await client.call<{ open: number }>({ cmd: 'status' }, 10_000);
        if (s.open >= c.open) return;
        await sleep(200);
      }
      throw new Error('server did not see every connection');
    };
    const classes = (w: Worker) =>
      w.call<{ open: number; classes: Classes }>({ cmd: 'heap-classes', minCount: 1 }, 120_000);
    await open(warm);
    await sleep(500);
    const a = await Promise.all([classes(server), classes(client)]);
    await open(n);
    await sleep(1000);
    const b = await Promise.all([classes(server), classes(client)]);
    const sides = ['server', 'client'].map((side, k) => {
      const before = (a[k] as { open: number; classes: Classes }).classes;
      const after = b[k] as { open: number; classes: Classes };
      const per = after.open - (a[k] as { open: number }).open;
      const diff: Array<[string, number, number]> = [];
      let total = 0;
      for (const [key, [count, bytes]] of Object.entries(after.classes)) {
        const [c0, b0] = before[key] ?? [0, 0];
        const db = (bytes - b0) / per;
        total += db;
        if (Math.abs(db) >= 8) diff.push([key, (count - c0) / per, db]);
      }
      diff.sort((x, y) => y[2] - x[2]);
      const rows = diff
        .slice(0, 20)
        .map(([key, count, bytes]) => [`\`${key}\``, fixed(count, 2), int(bytes)]);
      return `${side} (${int(per)} connections; ${int(total)} heap bytes per connection in all):\n\n${table(['kind:constructor', 'objects / conn', 'bytes / conn'], rows)}`;
    });
    return `#### ${system}: V8 heap per connection, largest groups\n\n${sides.join('\n\n')}`;
  } finally {
    await Promise.all([client.stop(), server.stop()]);
  }
}

async function main(): Promise<void> {
  process.stderr.write(
    `heartbeat memory: ${int(connections)} idle connections (+${warm} warm-up), heartbeat ${hb.intervalMs}/${hb.timeoutMs} ms where armed, node ${process.version}${semiSpace > 0 ? `, young generation fixed at ${semiSpace} MiB per semi-space` : ''}\n`,
  );
  const results = new Map<SystemName, Run[]>(systems.map((s) => [s, []]));
  const failures: string[] = [];
  for (let rep = 0; rep < repeats; rep++) {
    for (const system of systems) {
      try {
        const r = await runOnce(system);
        results.get(system)?.push(r);
        process.stderr.write(
          `  ${system} #${rep + 1}: server RSS ${kb(r.server.rss)} heap ${kb(r.server.heap)} (total ${kb(r.server.heapTotal)}) ext ${kb(r.server.external)} KB; client RSS ${kb(r.client.rss)} heap ${kb(r.client.heap)} (total ${kb(r.client.heapTotal)}) ext ${kb(r.client.external)} KB per connection; young generation grew ${mib(r.server.youngGrowth)} / ${mib(r.client.youngGrowth)} MiB\n`,
        );
      } catch (err) {
        failures.push(`${system}: ${(err as Error).message.split('\n')[0]}`);
        process.stderr.write(`  ${system} #${rep + 1}: FAILED ${(err as Error).message}\n`);
      }
      await sleep(500);
    }
  }
  const med = (runs: Run[], side: 'server' | 'client', k: keyof PerConn): number =>
    median(runs.map((r) => r[side][k]));
  const raw = results.get('raw') ?? [];
  const rows: string[][] = [];
  for (const system of systems) {
    const runs = results.get(system) ?? [];
    if (runs.length === 0) {
      rows.push([system, 'failed', '', '', '', '', '']);
      continue;
    }
    const vs = (side: 'server' | 'client'): string =>
      raw.length > 0 ? ratio(med(runs, side, 'rss') / med(raw, side, 'rss')) : '–';
    rows.push([
      system,
      `${kb(med(runs, 'server', 'rss'))} / ${kb(med(runs, 'client', 'rss'))}`,
      `${kb(med(runs, 'server', 'heap'))} / ${kb(med(runs, 'client', 'heap'))}`,
      `${kb(med(runs, 'server', 'heapTotal'))} / ${kb(med(runs, 'client', 'heapTotal'))}`,
      `${vs('server')} / ${vs('client')}`,
      raw.length > 0
        ? `${ratio(med(runs, 'server', 'heap') / med(raw, 'server', 'heap'))} / ${ratio(med(runs, 'client', 'heap') / med(raw, 'client', 'heap'))}`
        : '–',
      String(runs.length),
    ]);
  }
  const out = [
    `### Memory per idle connection: ${int(connections)} connections (node ${process.version}, ${new Date().toISOString().slice(0, 10)})${semiSpace > 0 ? `, semi-space fixed at ${semiSpace} MiB` : ''}`,
    '',
    table(
      [
        'system',
        'RSS KB/conn server / client',
        'heap KB/conn server / client',
        'heap reserved KB/conn server / client',
        'RSS vs raw',
        'heap vs raw',
        'runs',
      ],
      rows,
    ),
    '',
    ...systems.map(
      (s) => `- ${s}: ${DESCRIPTIONS[s]}${s === 'longlink' ? ` (${hb.intervalMs}/${hb.timeoutMs} ms)` : ''}`,
    ),
    '- KB = 1024 bytes; after 4 × global.gc(); medians of the runs. RSS counts the whole process (V8 heap, Node and libuv handles, malloc); kernel socket buffers are not in it. Heap = heapUsed, heap reserved = heapTotal (used + free V8 pages). External memory did not grow in any system (0.00). The harness adds the same to every system: one Set entry per connection (closes are seen by one listener per raw socket, which has a listener table anyway, and by the diagnostics channel for longlink).',
  ];
  const ll = results.get('longlink') ?? [];
  if (ll.length > 0 && raw.length > 0) {
    const s = med(ll, 'server', 'rss') / med(raw, 'server', 'rss');
    const c = med(ll, 'client', 'rss') / med(raw, 'client', 'rss');
    out.push(
      `- ${s <= 1.2 && c <= 1.2 ? 'PASS' : 'FAIL'} longlink RSS per connection ≤ 1.2× raw: server ${ratio(s)}, client ${ratio(c)}`,
    );
  }
  for (const f of failures) out.push(`- failed: ${f}`);
  if (breakdownN > 0) {
    for (const system of systems) {
      try {
        out.push('', await breakdown(system, breakdownN));
      } catch (err) {
        out.push('', `breakdown of ${system} failed: ${(err as Error).message.split('\n')[0]}`);
      }
    }
  }
  process.stdout.write(`${out.join('\n')}\n`);
}

runMain(main);
