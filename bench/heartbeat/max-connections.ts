/**
 * How many heartbeating connections this machine holds (docs/benchmarks-heartbeat.md): several
 * server processes (one port each) and several client processes, every process under the
 * 20,000 open-files limit, clients spread over source addresses 127.0.0.2 … so no address runs
 * out of ephemeral ports (~28k each).
 *
 *   node dist/bench/heartbeat/max-connections.js [--target 100000] [--servers 7] [--clients 7]
 *        [--addrs max(8, target/5000)] [--batch 1000] [--concurrency 64] [--interval 30000] [--timeout 90000]
 *        [--ramp-limit 300] [--hold 100] [--sample 1000] [--max-rss-gib 12] [--one-port]
 *
 * --one-port: every server process listens on the same port with SO_REUSEPORT (the way
 * serveWorkers' reuse-port mode shares it; Node ≥ 22.12) and the kernel spreads the connections.
 *
 * Ramp: rounds in which every client opens up to --batch more connections (round-robin over the
 * servers and the source addresses) until the target, a failure (the error code names the limit),
 * the ramp time limit or the memory ceiling. Hold: every connection's bytes-read counter is
 * marked, the driver waits --hold seconds (longer than three heartbeat intervals), then checks
 * that every connection read something since (its heartbeats), that no connection closed (so no
 * heartbeat timeout fired), and that a sample of connections still answers a request.
 */

import { runMain } from '../proc.js';
import {
  fixed,
  formatCloses,
  type Heartbeat,
  int,
  mib,
  numberFlag,
  parseFlags,
  processRss,
  sleep,
  sourceAddresses,
  table,
  Worker,
} from './common.js';

const USAGE = `usage: node dist/bench/heartbeat/max-connections.js [--target 100000] [--servers 7] [--clients 7]
       [--addrs max(8, target/5000)] [--batch 1000] [--concurrency 64] [--interval 30000] [--timeout 90000]
       [--ramp-limit 300] [--hold 100] [--sample 1000] [--max-rss-gib 12] [--fd-cap 19500] [--one-port]`;

const onePort = process.argv.includes('--one-port');
const flags = parseFlags(
  process.argv.slice(2).filter((a) => a !== '--one-port'),
  [
    'target',
    'servers',
    'clients',
    'addrs',
    'batch',
    'concurrency',
    'interval',
    'timeout',
    'ramp-limit',
    'hold',
    'sample',
    'max-rss-gib',
    'fd-cap',
  ],
  USAGE,
);
const target = numberFlag(flags, 'target', 100_000);
const nServers = Math.max(1, numberFlag(flags, 'servers', 7));
const nClients = Math.max(1, numberFlag(flags, 'clients', 7));
// bind() to an explicit source address searches that address's ephemeral ports for a free one,
// and the search (most likely) slows down as they fill: past ~7,000 connections per address the
// ramp here fell from ~2,700 to 500–900 connections/s. The default keeps each address under 5,000.
const nAddrs = Math.min(250, Math.max(1, numberFlag(flags, 'addrs', Math.max(8, Math.ceil(target / 5000)))));
const batch = Math.max(1, numberFlag(flags, 'batch', 1000));
const concurrency = Math.max(1, numberFlag(flags, 'concurrency', 64));
const hb: Heartbeat = {
  intervalMs: numberFlag(flags, 'interval', 30_000),
  timeoutMs: numberFlag(flags, 'timeout', 90_000),
};
const rampLimitS = numberFlag(flags, 'ramp-limit', 300);
const holdS = numberFlag(flags, 'hold', 100);
const sampleN = numberFlag(flags, 'sample', 1000);
const maxRss = numberFlag(flags, 'max-rss-gib', 12) * 1024 ** 3;
// Every process keeps some descriptors for itself (stdio, epoll, the listener, libuv's pipes).
const fdCap = numberFlag(flags, 'fd-cap', 19_500);

const perClient = Math.ceil(target / nClients);
const perServer = Math.ceil(target / nServers);
// One port: the kernel's hash spreads the connections unevenly, leave each server some room.
if (perClient > fdCap || perServer * (onePort ? 1.05 : 1) > fdCap) {
  throw new Error(
    `${int(perClient)} connections per client / ${int(perServer)} per server exceed --fd-cap ${fdCap} (open-files limit 20,000): add processes`,
  );
}
if (target / nAddrs > 28_000)
  throw new Error(`${int(target / nAddrs)} connections per source address: add --addrs`);

/** Errors that mean a resource is exhausted (file descriptors, ports, memory). */
const HARD_LIMITS = new Set(['EMFILE', 'ENFILE', 'EADDRNOTAVAIL', 'EADDRINUSE', 'ENOMEM', 'ENOBUFS']);

interface Status {
  open: number;
  rss: number;
  cpuPct: number;
  lagP99Ms: number;
  lagMaxMs: number;
  closes: Record<string, number>;
}

const started = performance.now();
const elapsedS = (): number => (performance.now() - started) / 1000;
const log = (s: string): void => {
  process.stderr.write(`[${fixed(elapsedS(), 0).padStart(4)} s] ${s}\n`);
};

function totalRss(ws: Worker[]): number {
  return ws.reduce((n, w) => n + (processRss(w.pid) ?? 0), 0);
}

async function main(): Promise<void> {
  log(
    `max-connections: target ${int(target)}, ${nServers} servers, ${nClients} clients, ${nAddrs} source addresses, heartbeat ${hb.intervalMs}/${hb.timeoutMs} ms, node ${process.version}`,
  );
  const servers = Array.from({ length: nServers }, (_, i) => new Worker(`server ${i}`));
  const clients = Array.from({ length: nClients }, (_, i) => new Worker(`client ${i}`));
  const all = [...servers, ...clients];
  try {
    let ports: number[];
    if (onePort) {
      // The first server takes a free port; the others join it there.
      const first = await (servers[0] as Worker).call<{ port: number }>(
        { cmd: 'listen', system: 'longlink', hb, reusePort: true },
        15_000,
      );
      await Promise.all(
        servers
          .slice(1)
          .map((s) =>
            s.call({ cmd: 'listen', system: 'longlink', hb, port: first.port, reusePort: true }, 15_000),
          ),
      );
      ports = [first.port];
    } else {
      ports = (
        await Promise.all(
          servers.map((s) => s.call<{ port: number }>({ cmd: 'listen', system: 'longlink', hb }, 15_000)),
        )
      ).map((r) => r.port);
    }
    const addrs = sourceAddresses(nAddrs);
    // Each process's RSS before its first connection: the per-connection figures exclude it.
    await Promise.all(clients.map((c) => c.call({ cmd: 'status' }, 15_000)));
    const baseRss = all.map((w) => processRss(w.pid) ?? 0);
    log(`servers on ports ${ports.join(', ')}; clients bind ${addrs[0]} … ${addrs[addrs.length - 1]}`);

    // ---- ramp ----
    // Each client's share of the target: the first `target % nClients` take one more.
    const quota = clients.map((_, i) => Math.floor(target / nClients) + (i < target % nClients ? 1 : 0));
    const opened = clients.map(() => 0);
    const stopped = clients.map(() => false);
    const errors: Record<string, number> = {};
    let stopReason = '';
    const rampStart = performance.now();
    for (;;) {
      const total = opened.reduce((a, b) => a + b, 0);
      if (total >= target) {
        stopReason = `target of ${int(target)} reached`;
        break;
      }
      if (stopped.every((s) => s)) {
        stopReason = `every client hit a failure: ${formatCloses(errors)}`;
        break;
      }
      if (elapsedS() > rampLimitS) {
        stopReason = `ramp time limit of ${rampLimitS} s`;
        break;
      }
      const rss = totalRss(all);
      if (rss > maxRss) {
        stopReason = `memory ceiling: ${mib(rss)} RSS over all processes`;
        break;
      }
      const round = await Promise.all(
        clients.map(async (c, i) => {
          const want = Math.min(batch, (quota[i] as number) - (opened[i] as number));
          if (stopped[i] || want <= 0) return undefined;
          const r = await c.call<{ opened: number; failed: number; errors: Record<string, number> }>(
            { cmd: 'connect', system: 'longlink', hb, port: ports, count: want, addrs, concurrency },
            180_000,
          );
          opened[i] = (opened[i] as number) + r.opened;
          if (r.failed > 0) {
            for (const [k, v] of Object.entries(r.errors)) errors[k] = (errors[k] ?? 0) + v;
            // A resource limit stops this client; a timeout under load is counted and retried.
            if (Object.keys(r.errors).some((k) => HARD_LIMITS.has(k)) || r.failed > want / 10)
              stopped[i] = true;
          }
          if ((opened[i] as number) >= (quota[i] as number)) stopped[i] = true;
          return r;
        }),
      );
      const now = opened.reduce((a, b) => a + b, 0);
      const failed = round.reduce((n, r) => n + (r?.failed ?? 0), 0);
      log(
        `ramp: ${int(now)} connections (+${int(now - total)}${failed > 0 ? `, ${failed} failed: ${formatCloses(errors)}` : ''}), RSS total ${mib(totalRss(all))}`,
      );
    }
    const rampS = (performance.now() - rampStart) / 1000;
    const rampFailures =
      Object.keys(errors).length > 0 ? `; connects that failed during the ramp: ${formatCloses(errors)}` : '';
    const reached = opened.reduce((a, b) => a + b, 0);
    log(`ramp stopped after ${fixed(rampS)} s: ${stopReason}`);

    // ---- hold ----
    await sleep(2000);
    // Resets the CPU / lag windows; the closes so far (failed handshakes of the ramp) are not the hold's.
    const atMark = await Promise.all(all.map((w) => w.call<Status>({ cmd: 'status' }, 30_000)));
    const closedBefore = sumCloses(atMark);
    await Promise.all(all.map((w) => w.call({ cmd: 'mark' }, 30_000)));
    const holdStart = performance.now();
    const polls: Status[][] = [];
    while ((performance.now() - holdStart) / 1000 < holdS) {
      await sleep(Math.min(10_000, holdS * 1000 - (performance.now() - holdStart)));
      const st = await Promise.all(all.map((w) => w.call<Status>({ cmd: 'status' }, 30_000)));
      polls.push(st);
      const sOpen = st.slice(0, nServers).reduce((n, s) => n + s.open, 0);
      const cOpen = st.slice(nServers).reduce((n, s) => n + s.open, 0);
      const closes = minus(sumCloses(st), closedBefore);
      log(
        `hold: open ${int(sOpen)} (server view) / ${int(cOpen)} (client view); CPU all ${fixed(st.reduce((n, s) => n + s.cpuPct, 0))} %; worst lag p99 ${fixed(Math.max(...st.map((s) => s.lagP99Ms)))} ms; RSS ${mib(st.reduce((n, s) => n + s.rss, 0))}; closes ${formatCloses(closes)}`,
      );
    }
    const holdSecs = (performance.now() - holdStart) / 1000;
    const checks = await Promise.all(
      all.map((w) => w.call<{ open: number; active: number; silent: number }>({ cmd: 'check' }, 30_000)),
    );
    const perProcSample = Math.ceil(sampleN / nClients);
    const samples = await Promise.all(
      clients.map((c) =>
        c.call<{ tried: number; answered: number; failed: number; errors: Record<string, number> }>(
          { cmd: 'sample', count: perProcSample, timeoutMs: 15_000 },
          60_000,
        ),
      ),
    );
    const final = await Promise.all(all.map((w) => w.call<Status>({ cmd: 'status' }, 30_000)));

    // ---- report ----
    const rows = all.map((w, i) => {
      const st = final[i] as Status;
      const h = overHold(polls.map((p) => p[i] as Status));
      const c = checks[i] as { open: number; active: number; silent: number };
      return [
        w.label,
        int(st.open),
        mib(st.rss),
        st.open > 0 ? fixed((st.rss - (baseRss[i] as number)) / st.open / 1024, 1) : '–',
        fixed(h.cpuPct),
        `${fixed(h.lagP99Ms)} / ${fixed(h.lagMaxMs)}`,
        `${int(c.active)} / ${int(c.silent)}`,
        formatCloses(minus(st.closes, (atMark[i] as Status).closes)),
      ];
    });
    const sum = (xs: number[]): number => xs.reduce((a, b) => a + b, 0);
    const sOpen = sum(final.slice(0, nServers).map((s) => s.open));
    const cOpen = sum(final.slice(nServers).map((s) => s.open));
    const closesAll = minus(sumCloses(final), closedBefore);
    const silent = sum(checks.map((c) => c.silent));
    const tried = sum(samples.map((s) => s.tried));
    const answered = sum(samples.map((s) => s.answered));
    const sampleErrors: Record<string, number> = {};
    for (const s of samples)
      for (const [k, v] of Object.entries(s.errors)) sampleErrors[k] = (sampleErrors[k] ?? 0) + v;
    const rssAll = sum(final.map((s) => s.rss));
    const rssGrowth = rssAll - sum(baseRss);
    const ok = (b: boolean): string => (b ? 'PASS' : 'FAIL');
    const out = [
      `### Connections held: ${int(cOpen)} with ${hb.intervalMs}/${hb.timeoutMs} ms heartbeats (node ${process.version}, ${new Date().toISOString().slice(0, 10)})`,
      '',
      `${nServers} server processes, ${nClients} client processes, ${nAddrs} source addresses; ramp ${fixed(rampS)} s (${int(reached / Math.max(rampS, 0.001))} connections/s), stopped by: ${stopReason}${rampFailures}; hold ${fixed(holdSecs, 0)} s.`,
      '',
      table(
        [
          'process',
          'connections',
          'RSS',
          'RSS KB/conn (above start)',
          'CPU % (hold)',
          'lag p99 / max ms (hold)',
          'conns with traffic / silent (hold)',
          'closes (hold)',
        ],
        rows,
      ),
      '',
      `- Total: ${int(sOpen)} connections on the servers, ${int(cOpen)} on the clients; RSS ${mib(rssAll)} over ${all.length} processes, ${mib(rssGrowth)} above their start (${fixed(rssGrowth / Math.max(1, sOpen + cOpen) / 1024, 1)} KB per connection end).`,
      `- ${ok(cOpen >= target && sOpen >= target)} ${int(target)} connections held`,
      `- ${ok(sum(Object.values(closesAll)) === 0)} no connection closed during the hold (heartbeat-timeout: ${closesAll['heartbeat-timeout'] ?? 0}; all closes: ${formatCloses(closesAll)})`,
      `- ${ok(silent === 0)} every connection read heartbeat traffic during the ${fixed(holdSecs, 0)} s hold (silent: ${int(silent)})`,
      `- ${ok(answered === tried && tried > 0)} sample requests answered: ${int(answered)} / ${int(tried)}${Object.keys(sampleErrors).length > 0 ? ` (${formatCloses(sampleErrors)})` : ''}`,
    ];
    process.stdout.write(`${out.join('\n')}\n`);
  } finally {
    // Clients first: they reset their connections, so neither side keeps TIME_WAIT entries.
    await Promise.all(clients.map((c) => c.stop()));
    await Promise.all(servers.map((s) => s.stop()));
  }
}

function sumCloses(st: Status[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const s of st) for (const [k, v] of Object.entries(s.closes)) out[k] = (out[k] ?? 0) + v;
  return out;
}

function minus(a: Record<string, number>, b: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(a)) if (v - (b[k] ?? 0) > 0) out[k] = v - (b[k] ?? 0);
  return out;
}

/** One process over the hold's polls: CPU averaged, loop lag the worst poll. */
function overHold(ps: Status[]): { cpuPct: number; lagP99Ms: number; lagMaxMs: number } {
  if (ps.length === 0) return { cpuPct: Number.NaN, lagP99Ms: Number.NaN, lagMaxMs: Number.NaN };
  return {
    cpuPct: ps.reduce((n, p) => n + p.cpuPct, 0) / ps.length,
    lagP99Ms: Math.max(...ps.map((p) => p.lagP99Ms)),
    lagMaxMs: Math.max(...ps.map((p) => p.lagMaxMs)),
  };
}

runMain(main);
