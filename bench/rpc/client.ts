/**
 * Client half of one benchmark run:
 *   node dist/bench/rpc/client.js SYSTEM PORT INFLIGHT WARMUP_S DURATION_S PAYLOAD
 *
 * Opens ONE connection, checks that one echo comes back equal, then keeps exactly INFLIGHT requests
 * outstanding (INFLIGHT loops, each sends its next request when its previous one resolves). After
 * WARMUP_S seconds it starts recording every completion's latency (process.hrtime.bigint, into a
 * preallocated Float64Array); after DURATION_S more it prints `{reqs, seconds, p50us, p99us}` on
 * stdout (with the client's own CPU use over the window, in % of one core) and exits without waiting
 * for the requests still in flight. `{"phase":"measure"}` and `{"phase":"done"}` lines mark the window.
 */

import { deepStrictEqual } from 'node:assert/strict';
import {
  type Body,
  binaryBody,
  type ClientResult,
  exitWithParent,
  histogram,
  isPayload,
  isSystemName,
  jsonBody,
  loadSystem,
  percentile,
  withTimeout,
} from './common.js';

const [name = '', portArg = '', inflightArg = '', warmupArg = '', durationArg = '', payload = ''] =
  process.argv.slice(2);
const port = Number(portArg);
const inflight = Number(inflightArg);
const warmupS = Number(warmupArg);
const durationS = Number(durationArg);
if (
  !isSystemName(name) ||
  !isPayload(payload) ||
  !Number.isInteger(port) ||
  !Number.isInteger(inflight) ||
  inflight < 1 ||
  !(warmupS >= 0) ||
  !(durationS > 0)
) {
  process.stderr.write(
    'usage: node dist/bench/rpc/client.js SYSTEM PORT INFLIGHT WARMUP_S DURATION_S json|binary\n',
  );
  process.exit(2);
}

exitWithParent();
const system = await loadSystem(name);
const client = await withTimeout(system.startClient(port, payload, inflight), 10_000, `${name}: connect`);

const binary = payload === 'binary' ? binaryBody() : undefined;
let seq = 0;
const nextBody = (): Body => binary ?? jsonBody(seq++);

// One echo, compared in full, before anything is timed: a system that mangles the payload fails here.
{
  const body = nextBody();
  const echoed = await withTimeout(client.call(body), 10_000, `${name}: first request`);
  deepStrictEqual(Buffer.isBuffer(body) ? Buffer.from(echoed as Uint8Array) : echoed, body);
}

// Latencies in ns. Grows by doubling, which happens a few times per run at most.
let lat = new Float64Array(1 << 20);
let n = 0;
let recording = false;
let stopped = false;
let failure: unknown;

async function loop(): Promise<void> {
  while (!stopped) {
    const body = nextBody();
    const t0 = process.hrtime.bigint();
    await client.call(body);
    if (!recording) continue;
    if (n === lat.length) {
      const grown = new Float64Array(lat.length * 2);
      grown.set(lat);
      lat = grown;
    }
    lat[n++] = Number(process.hrtime.bigint() - t0);
  }
}

for (let i = 0; i < inflight; i++) {
  loop().catch((err: unknown) => {
    failure ??= err;
    stopped = true;
  });
}

const sleep = (s: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, s * 1000));

await sleep(warmupS);
if (failure !== undefined) throw failure;
// Tells the driver the window opens, so it can account the server's and the machine's CPU over it.
process.stdout.write('{"phase":"measure"}\n');
recording = true;
const start = process.hrtime.bigint();
const cpu0 = process.cpuUsage();
await sleep(durationS);
recording = false;
stopped = true;
const seconds = Number(process.hrtime.bigint() - start) / 1e9;
const cpu = process.cpuUsage(cpu0);
process.stdout.write('{"phase":"done"}\n');
if (failure !== undefined) throw failure;
if (n === 0) throw new Error(`${name}: no request completed in ${durationS} s`);

const sorted = lat.subarray(0, n).sort();
const result: ClientResult = {
  reqs: n,
  seconds,
  p50us: percentile(sorted, 0.5) / 1000,
  p99us: percentile(sorted, 0.99) / 1000,
  cpuPct: (cpu.user + cpu.system) / 1e4 / seconds,
  p999us: percentile(sorted, 0.999) / 1000,
  maxus: sorted[n - 1]! / 1000,
  hist: histogram(sorted),
};
process.stdout.write(`${JSON.stringify(result)}\n`, () => {
  // The driver kills the server right after; don't let a slow close hold the exit.
  withTimeout(client.close(), 1000, `${name}: close`)
    .catch(() => {})
    .finally(() => process.exit(0));
});
