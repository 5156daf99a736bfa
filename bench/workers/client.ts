/**
 * Load for bench/workers/throughput.ts, one process:
 *   node dist/bench/workers/client.js PORT CONNECTIONS INFLIGHT WARMUP_S DURATION_S
 *
 * Opens CONNECTIONS connections (each its own 4-tuple, so SO_REUSEPORT's hash and cluster's
 * round-robin both see many), keeps INFLIGHT echo requests outstanding on each, and after WARMUP_S
 * counts the answers for DURATION_S. Then connects: for DURATION_S more, 8 loops each connect,
 * send one echo, and close (what the accept path costs, where cluster and reuse-port differ).
 * Prints {"phase"} lines as the windows start (requests, connects, done), then one JSON line:
 * { reqs, seconds, connects, connectSeconds, cpuMs }.
 */

import { type Client, connect } from '../../src/index.js';

const [portArg = '', connsArg = '', inflightArg = '', warmupArg = '', durationArg = ''] =
  process.argv.slice(2);
const port = Number(portArg);
const conns = Number(connsArg);
const inflight = Number(inflightArg);
const warmupS = Number(warmupArg);
const durationS = Number(durationArg);
process.stdin.on('end', () => process.exit(0)).resume();

const clients: Client[] = [];
for (let i = 0; i < conns; i++) clients.push(await connect({ port, reconnect: false }));
let counting = false;
let stop = false;
let reqs = 0;
const payload = { n: 1, s: 'x'.repeat(32) };
async function loop(c: Client): Promise<void> {
  while (!stop) {
    await c.request('echo', payload);
    if (counting) reqs++;
  }
}
const loops = clients.flatMap((c) => Array.from({ length: inflight }, () => loop(c)));
await new Promise((r) => setTimeout(r, warmupS * 1000));
const cpu0 = process.cpuUsage();
process.stdout.write('{"phase":"requests"}\n');
counting = true;
const t0 = performance.now();
await new Promise((r) => setTimeout(r, durationS * 1000));
counting = false;
const seconds = (performance.now() - t0) / 1000;
stop = true;
await Promise.allSettled(loops);
for (const c of clients) await c.close();

let connects = 0;
process.stdout.write('{"phase":"connects"}\n');
const c0 = performance.now();
const until = c0 + durationS * 1000;
async function connectLoop(): Promise<void> {
  while (performance.now() < until) {
    const c = await connect({ port, reconnect: false });
    await c.request('echo', payload);
    await c.close();
    connects++;
  }
}
await Promise.all(Array.from({ length: 8 }, connectLoop));
const connectSeconds = (performance.now() - c0) / 1000;
process.stdout.write('{"phase":"done"}\n');
const cpu = process.cpuUsage(cpu0);
process.stdout.write(
  `${JSON.stringify({ reqs, seconds, connects, connectSeconds, cpuMs: (cpu.user + cpu.system) / 1000 })}\n`,
);
process.exit(0);
