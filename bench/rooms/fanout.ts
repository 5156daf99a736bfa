/**
 * Room fan-out across two server processes on one real redis-server: longlink (redisBroker) and
 * socket.io 4 with @socket.io/redis-adapter 8, in the same run, interleaved, ratios printed.
 *
 *   npm run build && node dist/bench/rooms/fanout.js [--members 2000] [--nodes 2] [--publishes 200]
 *     [--burst 300] [--rounds 2]
 *
 * N subscribers (this process) join one room, half on each node; a publisher connection on node A
 * publishes `{t}` (t = this process's performance.now()), and every subscriber stamps its
 * arrival on the same clock. Two phases per system:
 *  - latency: one publish at a time, the next once all N have it: delivery p50/p99 over every
 *    (push, member), and the p99 of "the last member has it";
 *  - throughput: `burst` publishes with at most 16 unanswered, until every member has every one:
 *    deliveries/s, and the CPU the nodes and redis-server spent per 1,000 deliveries (/proc).
 * The subscribers' own CPU is in this process for both systems alike. Everything runs on this
 * machine: read the figures next to the load average printed with them.
 */

import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createServer as createNetServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { io as ioConnect, type Socket } from 'socket.io-client';
import { type Client, connect } from '../../src/client/client.js';
import { now } from '../../src/util/clock.js';
import { processCpuMs, runMain } from '../proc.js';

const SYSTEMS = ['longlink', 'socketio'] as const;
type System = (typeof SYSTEMS)[number];

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  const v = i >= 0 ? Number(process.argv[i + 1]) : fallback;
  if (!Number.isInteger(v) || v < 1) throw new Error(`--${name} must be a positive integer`);
  return v;
}

const MEMBERS = arg('members', 2000);
const NODES = arg('nodes', 2);
const PUBLISHES = arg('publishes', 200);
const BURST = arg('burst', 300);
const ROUNDS = arg('rounds', 2);
const WINDOW = 16;
const ROOM = 'fanout';
const WAIT_MS = Number(process.env.FANOUT_WAIT_MS ?? 120_000);

async function freePort(): Promise<number> {
  const s = createNetServer();
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  const port = (s.address() as { port: number }).port;
  s.close();
  return port;
}

const children: ChildProcess[] = [];
/** Gaps and disconnects seen by subscribers: a run with any is not a clean measurement. */
const events: string[] = [];
process.on('exit', () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
});

async function startRedis(): Promise<{ url: string; pid: number | undefined }> {
  const port = await freePort();
  const child = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  children.push(child);
  let out = '';
  await new Promise<void>((resolve, reject) => {
    child.on('error', reject);
    child.on('exit', (code) => reject(new Error(`redis-server exited ${code}: ${out}`)));
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('Ready to accept')) resolve();
    });
  });
  return { url: `redis://127.0.0.1:${port}`, pid: child.pid };
}

async function startNode(system: System, url: string): Promise<{ port: number; child: ChildProcess }> {
  const file = fileURLToPath(new URL('./node.js', import.meta.url));
  const child = spawn(process.execPath, [file, system, url], { stdio: ['pipe', 'pipe', 'inherit'] });
  children.push(child);
  // A node that dies before it listens (a missing build, no Redis) ends the run, not hangs it.
  const line = await new Promise<Buffer>((resolve, reject) => {
    child.stdout?.once('data', resolve);
    child.once('exit', (code) => reject(new Error(`${system} node exited ${code} before listening`)));
  });
  return { port: (JSON.parse(line.toString()) as { port: number }).port, child };
}

/** The two systems behind one shape: subscribers that call `onPush(t)`, one publisher. */
interface Cluster {
  publish(t: number): Promise<unknown>;
  close(): Promise<void>;
}

async function inBatches<T>(n: number, make: (i: number) => Promise<T>): Promise<T[]> {
  const out: T[] = [];
  for (let i = 0; i < n; i += 100) {
    out.push(...(await Promise.all(Array.from({ length: Math.min(100, n - i) }, (_, k) => make(i + k)))));
  }
  return out;
}

let diagnose: () => string = () => '';

async function longlinkCluster(ports: number[], onPush: (t: number) => void): Promise<Cluster> {
  const subs = await inBatches(MEMBERS, async (i) => {
    const c = await connect({ port: ports[i % ports.length] as number, host: '127.0.0.1' });
    c.on('notify', (_topic, payload) => onPush((payload as { t: number }).t));
    c.on('gap', (g) => events.push(`gap on node ${i % 2}: ${JSON.stringify(g)}`));
    c.on('disconnect', (e) => events.push(`disconnect on node ${i % 2}: ${JSON.stringify(e)}`));
    await c.request('join', { room: ROOM });
    return c;
  });
  const pub: Client = await connect({ port: ports[0] as number, host: '127.0.0.1' });
  diagnose = () => {
    const cursors = new Map<string, number>();
    for (const [i, c] of subs.entries()) {
      const k = `node ${i % 2} at ${c.rooms.get(ROOM)}`;
      cursors.set(k, (cursors.get(k) ?? 0) + 1);
    }
    const dup = subs.reduce((n, c) => n + c.duplicatePushes, 0);
    return `duplicates dropped ${dup}; cursors ${JSON.stringify([...cursors])}`;
  };
  return {
    publish: (t) => pub.request('publish', { room: ROOM, t }),
    close: async () => {
      await Promise.all([...subs, pub].map((c) => c.close({ graceMs: 0 })));
    },
  };
}

async function socketioCluster(ports: number[], onPush: (t: number) => void): Promise<Cluster> {
  const open = async (port: number): Promise<Socket> => {
    const s = ioConnect(`http://127.0.0.1:${port}`, { transports: ['websocket'], forceNew: true });
    await new Promise<void>((resolve, reject) => {
      s.once('connect', resolve);
      s.once('connect_error', reject);
    });
    return s;
  };
  const subs = await inBatches(MEMBERS, async (i) => {
    const s = await open(ports[i % ports.length] as number);
    s.on('m', (p: { t: number }) => onPush(p.t));
    await s.emitWithAck('join', ROOM);
    return s;
  });
  const pub = await open(ports[0] as number);
  return {
    publish: (t) => pub.emitWithAck('publish', { room: ROOM, t }),
    close: async () => {
      for (const s of [...subs, pub]) s.disconnect();
    },
  };
}

function quantile(sorted: Float64Array, q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN;
}

interface Result {
  p50: number;
  p99: number;
  lastP99: number;
  perSec: number;
  nodeCpuPer1k: number;
  redisCpuPer1k: number;
  selfCpuPer1k: number;
}

async function runOne(system: System, redis: { url: string; pid: number | undefined }): Promise<Result> {
  const nodes: Awaited<ReturnType<typeof startNode>>[] = [];
  for (let i = 0; i < NODES; i++) nodes.push(await startNode(system, redis.url));
  let delivered = 0;
  let target = 0;
  let reached: (() => void) | undefined;
  const latencies = new Float64Array(MEMBERS * PUBLISHES);
  let recording = false;
  const onPush = (t: number): void => {
    if (recording && delivered < latencies.length) latencies[delivered] = now() - t;
    delivered++;
    if (delivered === target) reached?.();
  };
  const until = (n: number): Promise<void> => {
    target = n;
    if (delivered >= n) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () =>
          reject(
            new Error(
              `${system}: ${delivered}/${n} deliveries after ${WAIT_MS} ms; ${diagnose()}; ${events.slice(0, 5).join('; ')}`,
            ),
          ),
        WAIT_MS,
      );
      reached = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  };
  const ports = nodes.map((n) => n.port);
  const cluster =
    system === 'longlink' ? await longlinkCluster(ports, onPush) : await socketioCluster(ports, onPush);
  try {
    // Warm-up: a few publishes, not recorded.
    for (let i = 0; i < 20; i++) {
      await cluster.publish(now());
      await until((i + 1) * MEMBERS);
    }
    delivered = 0;
    recording = true;
    const last = new Float64Array(PUBLISHES);
    for (let i = 0; i < PUBLISHES; i++) {
      const t = now();
      await cluster.publish(t);
      await until((i + 1) * MEMBERS);
      last[i] = now() - t;
    }
    recording = false;
    latencies.sort();
    last.sort();

    delivered = 0;
    const cpu0 = nodes.map((n) => processCpuMs(n.child.pid) ?? 0);
    const redis0 = processCpuMs(redis.pid) ?? 0;
    const self0 = process.cpuUsage();
    const t0 = now();
    const all = until(BURST * MEMBERS);
    let sent = 0;
    await Promise.all(
      Array.from({ length: WINDOW }, async () => {
        while (sent < BURST) {
          sent++;
          await cluster.publish(now());
        }
      }),
    );
    await all;
    const elapsed = now() - t0;
    const nodeCpu = nodes.reduce((sum, n, i) => sum + ((processCpuMs(n.child.pid) ?? 0) - (cpu0[i] ?? 0)), 0);
    const redisCpu = (processCpuMs(redis.pid) ?? 0) - redis0;
    const self = process.cpuUsage(self0);
    const k = (BURST * MEMBERS) / 1000;
    return {
      p50: quantile(latencies, 0.5),
      p99: quantile(latencies, 0.99),
      lastP99: quantile(last, 0.99),
      perSec: (BURST * MEMBERS) / (elapsed / 1000),
      nodeCpuPer1k: nodeCpu / k,
      redisCpuPer1k: redisCpu / k,
      selfCpuPer1k: (self.user + self.system) / 1000 / k,
    };
  } finally {
    await cluster.close();
    for (const n of nodes) {
      n.child.stdin?.end();
      if (n.child.exitCode === null) await once(n.child, 'exit');
    }
  }
}

const fmt = (n: number, d = 2): string => n.toFixed(d).padStart(10);

async function main(): Promise<void> {
  const redis = await startRedis();
  console.log(
    `# room fan-out: ${MEMBERS} members over ${NODES} nodes, 1 redis-server; ${PUBLISHES} publishes one at a time, then ${BURST} with ${WINDOW} in flight; ${ROUNDS} rounds, interleaved`,
  );
  console.log(`# loadavg before: ${readFileSync('/proc/loadavg', 'utf8').trim()}`);
  const results: Record<System, Result[]> = { longlink: [], socketio: [] };
  for (let r = 0; r < ROUNDS; r++) {
    const order = r % 2 === 0 ? SYSTEMS : [...SYSTEMS].reverse();
    for (const system of order) results[system].push(await runOne(system, redis));
  }
  console.log(
    `${'system'.padEnd(10)}${'round'.padStart(6)}${'p50 ms'.padStart(10)}${'p99 ms'.padStart(10)}${'last p99'.padStart(10)}${'deliv/s'.padStart(10)}${'node cpu'.padStart(10)}${'redis cpu'.padStart(10)}${'subs cpu'.padStart(10)}`,
  );
  console.log(
    '# cpu columns: ms of CPU per 1,000 deliveries (all nodes / redis-server / this process with the subscribers)',
  );
  for (const s of SYSTEMS) {
    for (const [i, x] of results[s].entries()) {
      console.log(
        `${s.padEnd(10)}${String(i + 1).padStart(6)}${fmt(x.p50)}${fmt(x.p99)}${fmt(x.lastP99)}${fmt(x.perSec, 0)}${fmt(x.nodeCpuPer1k)}${fmt(x.redisCpuPer1k)}${fmt(x.selfCpuPer1k)}`,
      );
    }
  }
  for (let i = 0; i < ROUNDS; i++) {
    const a = results.longlink[i] as Result;
    const b = results.socketio[i] as Result;
    console.log(
      `round ${i + 1} socket.io / longlink: p50 ${(b.p50 / a.p50).toFixed(2)}×, p99 ${(b.p99 / a.p99).toFixed(2)}×, last-member p99 ${(b.lastP99 / a.lastP99).toFixed(2)}×; longlink / socket.io deliveries/s ${(a.perSec / b.perSec).toFixed(2)}×; node CPU per delivery socket.io / longlink ${(b.nodeCpuPer1k / a.nodeCpuPer1k).toFixed(2)}×`,
    );
  }
  console.log(`# loadavg after: ${readFileSync('/proc/loadavg', 'utf8').trim()}`);
}

runMain(main);
