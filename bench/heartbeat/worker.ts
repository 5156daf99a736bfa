/**
 * One process of a heartbeat benchmark: a server, a client, or both, of one system. Spawned by the
 * drivers (cpu.js, memory.js, max-connections.js) with `--expose-gc`; reads one JSON command per
 * stdin line and answers one JSON line on stdout. Exits when its stdin closes.
 *
 * Systems:
 *   raw           node:net sockets, nothing else (the memory baseline)
 *   raw-interval  node:net, each side pings every connection from its own setInterval and answers
 *                 the peer's pings (the baseline a)
 *   raw-wheel     node:net, one setInterval per process walks every connection and pings it
 *                 (baseline b)
 *   raw-pair      node:net with the frame pattern longlink puts on the wire: only the client pings
 *                 (a setInterval per connection), the server only answers — one PING/PONG pair per
 *                 connection and second, the fewest frames that give both sides liveness; what
 *                 hand-written node:net code pays for that pattern (the floor longlink is held to)
 *   conn          longlink Connection over u32be framing, no protocol (memory only)
 *   longlink      createServer / connect, heartbeats negotiated in HELLO
 *
 * The raw frames are u32be length + one kind byte: PING 'P', PONG 'O' (5 bytes each).
 */

import diagnostics from 'node:diagnostics_channel';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import v8 from 'node:v8';
import { parseFraming } from '../../src/codec/parse.js';
import { Connection } from '../../src/connection/connection.js';
import { type Client, connect, createServer } from '../../src/index.js';
import type { Closes, Heartbeat, SystemName } from './common.js';

const gc = (globalThis as { gc?: () => void }).gc;

// ---- state --------------------------------------------------------------------------------

const lag = monitorEventLoopDelay({ resolution: 10 });
lag.enable();

const closes: Closes = {};
function closed(reason: string): void {
  closes[reason] = (closes[reason] ?? 0) + 1;
}

/**
 * Something this process holds one end of: a raw socket or a longlink Connection. The set holds
 * the object itself, and closes are seen by one process-wide hook per system (a 'close' listener
 * per raw socket, which already has a listener table; the diagnostics channel for longlink),
 * so the harness adds the same (one Set entry) to every system's per-connection memory.
 */
type End = net.Socket | Connection;
const endSocket = (e: End): net.Socket => (e instanceof Connection ? e.socket : e);
/** RST instead of FIN: a benchmark that ends leaves no TIME_WAIT behind. */
const endAbort = (e: End): void => {
  if (e instanceof Connection) e.abort();
  else e.resetAndDestroy();
};

const ends = new Set<End>();
const clients: Client[] = [];
let servers: Array<{ close(): void }> = [];
let framesIn = 0;
let framesOut = 0;
let wheel: NodeJS.Timeout | undefined;

// ---- raw systems --------------------------------------------------------------------------

const PING = Buffer.from([0, 0, 0, 1, 0x50]);
const PONG = Buffer.from([0, 0, 0, 1, 0x4f]);

interface RawSocket extends net.Socket {
  rest?: Buffer | undefined;
  hb?: NodeJS.Timeout | undefined;
}

/** Module-scope listener (no closure per connection): decodes u32be frames, answers PINGs. */
function rawOnData(this: RawSocket, chunk: Buffer): void {
  let buf = chunk;
  if (this.rest !== undefined) {
    buf = Buffer.concat([this.rest, chunk]);
    this.rest = undefined;
  }
  let off = 0;
  while (buf.length - off >= 4) {
    const len = buf.readUInt32BE(off);
    if (buf.length - off < 4 + len) break;
    const kind = buf[off + 4];
    off += 4 + len;
    framesIn++;
    if (kind === 0x50) {
      this.write(PONG);
      framesOut++;
    }
  }
  if (off < buf.length) this.rest = Buffer.from(buf.subarray(off));
}

function rawPing(s: RawSocket): void {
  if (s.writable) {
    s.write(PING);
    framesOut++;
  }
}

function rawOnClose(this: RawSocket, hadError: boolean): void {
  if (this.hb !== undefined) clearInterval(this.hb);
  ends.delete(this);
  closed(hadError ? 'error' : 'closed');
}

function rawOnError(): void {}

function adoptRaw(s: RawSocket, system: SystemName, hb: Heartbeat, side: 'server' | 'client'): void {
  s.setNoDelay(true);
  ends.add(s);
  s.on('data', rawOnData);
  s.on('error', rawOnError);
  s.on('close', rawOnClose);
  if (system === 'raw-interval' || (system === 'raw-pair' && side === 'client')) {
    s.hb = setInterval(rawPing, hb.intervalMs, s);
  } else if (system === 'raw-wheel' && wheel === undefined) {
    // One timer for the whole process; each tick pings every connection in one go.
    wheel = setInterval(() => {
      for (const e of ends) rawPing(e as RawSocket);
    }, hb.intervalMs);
  }
}

// ---- longlink -----------------------------------------------------------------------------

const framing = parseFraming('u32be');

// Every longlink connection's close, server or client side, with no listener per connection.
diagnostics.subscribe('longlink:connection:close', (message) => {
  const { connection, info } = message as { connection: Connection; info: { reason: string } };
  if (ends.delete(connection)) closed(info.reason);
});

function heartbeatOption(hb: Heartbeat | null): Heartbeat | false {
  return hb === null ? false : { intervalMs: hb.intervalMs, timeoutMs: hb.timeoutMs };
}

// ---- commands -----------------------------------------------------------------------------

interface ListenCmd {
  system: SystemName;
  hb: Heartbeat | null;
  port?: number;
  /** SO_REUSEPORT: several server processes on one port (longlink only; Node ≥ 22.12). */
  reusePort?: boolean;
}

async function listen(c: ListenCmd): Promise<Record<string, unknown>> {
  const hb = c.hb ?? { intervalMs: 1000, timeoutMs: 3000 };
  if (c.system === 'longlink') {
    const server = createServer({
      handlers: { echo: (p: unknown) => p },
      heartbeat: heartbeatOption(c.hb),
      maxConnections: 1_000_000,
    });
    server.on('connection', (conn) => ends.add(conn));
    const addr = await server.listen({
      port: c.port ?? 0,
      host: '127.0.0.1',
      backlog: 4096,
      ...(c.reusePort ? { reusePort: true } : {}),
    });
    servers.push({ close: () => server.destroy() });
    return { port: addr.port };
  }
  const srv = net.createServer({ allowHalfOpen: true, noDelay: true }, (socket) => {
    if (c.system === 'conn') ends.add(new Connection(socket, { framing }));
    else adoptRaw(socket, c.system, hb, 'server');
  });
  await new Promise<void>((resolve, reject) => {
    srv.once('error', reject);
    srv.listen({ port: c.port ?? 0, host: '127.0.0.1', backlog: 4096 }, resolve);
  });
  servers.push({ close: () => srv.close() });
  return { port: (srv.address() as net.AddressInfo).port };
}

interface ConnectCmd {
  system: SystemName;
  hb: Heartbeat | null;
  /** One port, or several taken in turn (several server processes). */
  port: number | number[];
  count: number;
  addrs: string[];
  concurrency: number;
}

function openRaw(port: number, localAddress: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port, localAddress });
    const onError = (err: Error) => reject(err);
    s.once('error', onError);
    s.once('connect', () => {
      s.off('error', onError);
      resolve(s);
    });
  });
}

function errorCode(err: unknown): string {
  let e = err as { code?: unknown; cause?: unknown } | undefined;
  // The innermost system error names the limit (EMFILE, EADDRNOTAVAIL …).
  while (e?.cause !== undefined && typeof e.cause === 'object') e = e.cause as typeof e;
  return typeof e?.code === 'string' ? e.code : String((err as Error)?.message ?? err).slice(0, 80);
}

async function openOne(c: ConnectCmd, port: number, localAddress: string): Promise<void> {
  const hb = c.hb ?? { intervalMs: 1000, timeoutMs: 3000 };
  switch (c.system) {
    case 'longlink': {
      const client = await connect({
        host: '127.0.0.1',
        port,
        heartbeat: heartbeatOption(c.hb),
        reconnect: false,
        connection: { localAddress },
      });
      clients.push(client);
      if (client.connection !== undefined) ends.add(client.connection);
      return;
    }
    case 'conn': {
      const conn = await Connection.connect({ host: '127.0.0.1', port, localAddress, framing });
      ends.add(conn);
      return;
    }
    default: {
      const s = await openRaw(port, localAddress);
      adoptRaw(s, c.system, hb, 'client');
    }
  }
}

let connectSeq = 0;

async function connectMany(c: ConnectCmd): Promise<Record<string, unknown>> {
  const t0 = performance.now();
  let next = 0;
  let opened = 0;
  let failed = 0;
  const errors: Record<string, number> = {};
  const ports = Array.isArray(c.port) ? c.port : [c.port];
  const lane = async (): Promise<void> => {
    while (next < c.count) {
      next++;
      // Round-robin over ports and source addresses, continued across connect commands.
      const k = connectSeq++;
      try {
        await openOne(c, ports[k % ports.length] as number, c.addrs[k % c.addrs.length] as string);
        opened++;
      } catch (err) {
        failed++;
        const code = errorCode(err);
        errors[code] = (errors[code] ?? 0) + 1;
        // A limit was hit: stop this lane rather than hammer it.
        if (failed > 50) return;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, c.concurrency) }, lane));
  return { opened, failed, errors, ms: performance.now() - t0, open: ends.size };
}

function bytes(): { bytesIn: number; bytesOut: number } {
  let bytesIn = 0;
  let bytesOut = 0;
  for (const e of ends) {
    bytesIn += endSocket(e).bytesRead;
    bytesOut += endSocket(e).bytesWritten;
  }
  return { bytesIn, bytesOut };
}

/**
 * CPU, loop lag and traffic over the next `ms`. Counters are read outside the window. With
 * `profile`, a V8 CPU profile of exactly the window is written to that path (.cpuprofile, the
 * format of `node --cpu-prof`; open it in Chrome DevTools).
 */
async function measure(
  ms: number,
  profile: string | undefined,
  allocProfile: string | undefined,
): Promise<Record<string, unknown>> {
  let session: Session | undefined;
  if (profile !== undefined || allocProfile !== undefined) {
    session = new Session();
    session.connect();
  }
  if (session !== undefined && profile !== undefined) {
    await session.post('Profiler.enable');
    await session.post('Profiler.start');
  }
  if (session !== undefined && allocProfile !== undefined) {
    // Every allocation counts, also those a scavenge frees at once: that is what costs GC time.
    await session.post('HeapProfiler.enable');
    await session.post('HeapProfiler.startSampling', {
      samplingInterval: 4096,
      includeObjectsCollectedByMajorGC: true,
      includeObjectsCollectedByMinorGC: true,
    });
  }
  const b0 = bytes();
  const f0 = { framesIn, framesOut };
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  lag.reset();
  await new Promise((resolve) => setTimeout(resolve, ms));
  const c1 = process.cpuUsage(c0);
  const seconds = (performance.now() - t0) / 1000;
  const h = { p50: lag.percentile(50), p99: lag.percentile(99), max: lag.max };
  const b1 = bytes();
  if (session !== undefined && profile !== undefined) {
    const { profile: p } = await session.post('Profiler.stop');
    mkdirSync(join(profile, '..'), { recursive: true });
    writeFileSync(profile, JSON.stringify(p));
  }
  if (session !== undefined && allocProfile !== undefined) {
    const { profile: p } = await session.post('HeapProfiler.stopSampling');
    mkdirSync(join(allocProfile, '..'), { recursive: true });
    writeFileSync(allocProfile, JSON.stringify(p));
  }
  session?.disconnect();
  const raw = f0.framesIn !== framesIn || framesOut !== f0.framesOut;
  return {
    seconds,
    cpuPct: ((c1.user + c1.system) / 1e6 / seconds) * 100,
    userPct: (c1.user / 1e6 / seconds) * 100,
    lagP50Ms: h.p50 / 1e6,
    lagP99Ms: h.p99 / 1e6,
    lagMaxMs: h.max / 1e6,
    bytesIn: b1.bytesIn - b0.bytesIn,
    bytesOut: b1.bytesOut - b0.bytesOut,
    framesIn: raw ? framesIn - f0.framesIn : undefined,
    framesOut: raw ? framesOut - f0.framesOut : undefined,
    open: ends.size,
    closes,
  };
}

async function fullGc(): Promise<void> {
  if (gc === undefined) throw new Error('run the worker with --expose-gc');
  for (let i = 0; i < 4; i++) {
    gc();
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function snapshot(): Promise<Record<string, unknown>> {
  await fullGc();
  const m = process.memoryUsage();
  const young = v8.getHeapSpaceStatistics().find((sp) => sp.space_name === 'new_space');
  return {
    open: ends.size,
    rss: m.rss,
    heapUsed: m.heapUsed,
    heapTotal: m.heapTotal,
    youngTotal: young?.space_size ?? 0,
    external: m.external,
    arrayBuffers: m.arrayBuffers,
  };
}

/**
 * The live heap by kind and constructor: `type:name` → [count, self bytes], from a heap snapshot
 * (only groups of at least `minCount` nodes). Two of these, taken N connections apart, say what
 * one connection keeps alive.
 */
async function heapClasses(minCount: number): Promise<Record<string, unknown>> {
  await fullGc();
  const file = v8.writeHeapSnapshot(
    join(tmpdir(), `longlink-bench-${process.pid}-${Date.now()}.heapsnapshot`),
  );
  try {
    const snap = JSON.parse(readFileSync(file, 'utf8')) as {
      snapshot: {
        meta: {
          node_fields: string[];
          node_types: [string[]];
          edge_fields: string[];
          edge_types: [string[]];
        };
      };
      nodes: number[];
      edges: number[];
      strings: string[];
    };
    const meta = snap.snapshot.meta;
    const width = meta.node_fields.length;
    const iType = meta.node_fields.indexOf('type');
    const iName = meta.node_fields.indexOf('name');
    const iSize = meta.node_fields.indexOf('self_size');
    const iEdges = meta.node_fields.indexOf('edge_count');
    const eWidth = meta.edge_fields.length;
    const eType = meta.edge_fields.indexOf('type');
    const eName = meta.edge_fields.indexOf('name_or_index');
    const eTo = meta.edge_fields.indexOf('to_node');
    const types = meta.node_types[0];
    const edgeTypes = meta.edge_types[0];
    const propertyEdge = edgeTypes.indexOf('property');
    const weakEdge = edgeTypes.indexOf('weak');
    const { nodes, edges, strings } = snap;
    const count = nodes.length / width;
    // Pass 1: where each node's edges start, and one strong retainer per node (node, edge).
    const firstEdge = new Uint32Array(count + 1);
    const retainer = new Int32Array(count).fill(-1);
    const retainerEdge = new Int32Array(count).fill(-1);
    for (let n = 0, e = 0; n < count; n++) {
      firstEdge[n] = e;
      const end = e + (nodes[n * width + iEdges] as number) * eWidth;
      for (; e < end; e += eWidth) {
        if (edges[e + eType] === weakEdge) continue;
        const to = (edges[e + eTo] as number) / width;
        if (retainer[to] === -1) {
          retainer[to] = n;
          retainerEdge[to] = e;
        }
      }
    }
    firstEdge[count] = edges.length;
    const edgeLabel = (e: number): string => {
      const t = edgeTypes[edges[e + eType] as number];
      const v = edges[e + eName] as number;
      return t === 'element' || t === 'hidden' ? `[${v}]` : `.${strings[v] ?? '?'}`;
    };
    const nameOf = (n: number): string => {
      const type = types[nodes[n * width + iType] as number] ?? '?';
      const name = strings[nodes[n * width + iName] as number] ?? '?';
      // Strings and code are grouped by kind only: their names are their contents.
      if (
        type === 'string' ||
        type === 'concatenated string' ||
        type === 'sliced string' ||
        type === 'code' ||
        type === 'number'
      )
        return '';
      if (type === 'object' && name === 'Object') {
        // Plain objects are told apart by their first property names: {peer,connection} …
        const props: string[] = [];
        for (
          let e = firstEdge[n] as number;
          e < (firstEdge[n + 1] as number) && props.length < 6;
          e += eWidth
        ) {
          if (edges[e + eType] !== propertyEdge) continue;
          const p = strings[edges[e + eName] as number] ?? '?';
          if (p !== '__proto__') props.push(p);
        }
        return `{${props.join(',')}}`;
      }
      return name.length > 50 ? `${name.slice(0, 47)}...` : name;
    };
    // Pass 2: group. Nameless things (backing arrays, anonymous closures, contexts, generic
    // containers) are named after what holds them, up to three levels: `array: ← Map ← Peer.pings`.
    const generic = (name: string): boolean =>
      name === '' ||
      name === 'Array' ||
      name === 'Map' ||
      name === 'Set' ||
      name === '{}' ||
      name === 'system / Context' ||
      name === 'system / PropertyArray' ||
      name.startsWith('(');
    const label = (n: number, depth: number): string => {
      const name = nameOf(n);
      const r = retainer[n] as number;
      if (depth >= 3 || !generic(name) || r === -1) return name;
      return `${name} ← ${label(r, depth + 1)}${edgeLabel(retainerEdge[n] as number)}`;
    };
    const groups = new Map<string, [number, number]>();
    for (let n = 0; n < count; n++) {
      const type = types[nodes[n * width + iType] as number] ?? '?';
      const plain = type === 'string' || type === 'code' || type === 'number' || type === 'synthetic';
      const name = plain ? nameOf(n) : label(n, 0);
      const key = `${type}:${name}`;
      const size = nodes[n * width + iSize] as number;
      const g = groups.get(key);
      if (g === undefined) groups.set(key, [1, size]);
      else {
        g[0]++;
        g[1] += size;
      }
    }
    const out: Record<string, [number, number]> = {};
    for (const [k, v] of groups) if (v[0] >= minCount) out[k] = v;
    return { open: ends.size, classes: out };
  } finally {
    rmSync(file, { force: true });
  }
}

/** Status for a driver that polls: no GC, cheap. */
let lastCpu = process.cpuUsage();
let lastAt = performance.now();
function status(): Record<string, unknown> {
  const c = process.cpuUsage(lastCpu);
  const now = performance.now();
  const cpuPct = ((c.user + c.system) / 1000 / (now - lastAt)) * 100;
  lastCpu = process.cpuUsage();
  lastAt = now;
  const out = {
    open: ends.size,
    rss: process.memoryUsage.rss(),
    cpuPct,
    lagP99Ms: lag.percentile(99) / 1e6,
    lagMaxMs: lag.max / 1e6,
    closes,
  };
  lag.reset();
  return out;
}

/** Bytes read per connection at `mark`, to tell at `check` which connections saw traffic since. */
let marks = new WeakMap<End, number>();
function mark(): Record<string, unknown> {
  marks = new WeakMap();
  for (const e of ends) marks.set(e, endSocket(e).bytesRead);
  return { open: ends.size };
}
function check(): Record<string, unknown> {
  let active = 0;
  let silent = 0;
  let unmarked = 0;
  for (const e of ends) {
    const b = marks.get(e);
    if (b === undefined) unmarked++;
    else if (endSocket(e).bytesRead > b) active++;
    else silent++;
  }
  return { open: ends.size, active, silent, unmarked };
}

/** Sends one echo request on each of `count` clients spread over this process's connections. */
async function sample(count: number, timeoutMs: number): Promise<Record<string, unknown>> {
  if (clients.length === 0) return { tried: 0, answered: 0, failed: 0, errors: {} };
  const n = Math.min(count, clients.length);
  const step = clients.length / n;
  let answered = 0;
  let failed = 0;
  const errors: Record<string, number> = {};
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: n }, async (_, i) => {
      const client = clients[Math.floor(i * step)] as Client;
      try {
        const v = await client.request('echo', { i }, { timeoutMs });
        if ((v as { i?: number })?.i === i) answered++;
        else throw new Error('wrong echo');
      } catch (err) {
        failed++;
        const code = errorCode(err);
        errors[code] = (errors[code] ?? 0) + 1;
      }
    }),
  );
  return { tried: n, answered, failed, errors, ms: performance.now() - t0 };
}

function shutdown(): Record<string, unknown> {
  if (wheel !== undefined) clearInterval(wheel);
  for (const s of servers) s.close();
  servers = [];
  for (const e of [...ends]) endAbort(e);
  setTimeout(() => process.exit(0), 200).unref();
  return { aborted: true };
}

async function run(cmd: Record<string, unknown>): Promise<Record<string, unknown>> {
  switch (cmd.cmd) {
    case 'listen':
      return listen(cmd as unknown as ListenCmd);
    case 'connect':
      return connectMany(cmd as unknown as ConnectCmd);
    case 'measure':
      return measure(
        Number(cmd.ms),
        typeof cmd.profile === 'string' ? cmd.profile : undefined,
        typeof cmd.allocProfile === 'string' ? cmd.allocProfile : undefined,
      );
    case 'snapshot':
      return snapshot();
    case 'heap-classes':
      return heapClasses(Number(cmd.minCount ?? 100));
    case 'status':
      return status();
    case 'mark':
      return mark();
    case 'check':
      return check();
    case 'sample':
      return sample(Number(cmd.count), Number(cmd.timeoutMs ?? 10_000));
    case 'shutdown':
      return shutdown();
    default:
      throw new Error(`unknown command ${String(cmd.cmd)}`);
  }
}

// Commands run one at a time, in order, so answers come back in the order asked.
let chain: Promise<void> = Promise.resolve();
const rl = createInterface({ input: process.stdin });
rl.on('line', (line) => {
  chain = chain.then(async () => {
    let out: Record<string, unknown>;
    try {
      out = { ok: true, ...(await run(JSON.parse(line) as Record<string, unknown>)) };
    } catch (err) {
      out = { ok: false, error: String((err as Error)?.stack ?? err) };
    }
    process.stdout.write(`${JSON.stringify(out)}\n`);
  });
});
rl.on('close', () => process.exit(0));
process.on('uncaughtException', (err) => {
  process.stderr.write(`worker: ${String(err?.stack ?? err)}\n`);
  process.exit(1);
});
