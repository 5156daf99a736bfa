/**
 * TIME_WAIT, the sources' problem made visible. N requests to the sources' legacy service
 * (ascii:20 header + JSON echo), first as short connections — connect, send one frame, read the
 * reply, close — then through a lease-mode pool, each against its own server port. Afterwards
 * the kernel's TCP table (/proc/net/tcp, as `ss -tan state time-wait` shows it) is read and the
 * TIME_WAIT sockets of each port are counted, side by side.
 *
 * The side that closes first keeps TIME_WAIT for 2·MSL (60 s on Linux): one socket per short
 * connection, each holding a local port the whole time. A pool closes its connections once.
 *
 *   npm run build && node dist/bench/pool/timewait.js [--requests=10000] [--concurrency=8] [--max-ms=30000]
 *
 * Only 127.0.0.1. Linux only for the counts (elsewhere they print as n/a).
 */

import { once } from 'node:events';
import net from 'node:net';
import { parseFraming } from '../../src/codec/index.js';
import { Connection } from '../../src/connection/connection.js';
import { createConnectionPool } from '../../src/pool/connection-pool.js';
import { readTcpTable } from '../../src/sys/tcp-table.js';

const args = process.argv.slice(2);
const arg = (name: string, fallback: number) => {
  const v = args.find((a) => a.startsWith(`--${name}=`))?.split('=')[1];
  return v === undefined ? fallback : Number(v);
};
const REQUESTS = arg('requests', 10_000);
const CONCURRENCY = arg('concurrency', 8);
const MAX_MS = arg('max-ms', 30_000);
const framing = parseFraming('ascii:20');

interface Server {
  port: number;
  accepted: number;
  close(): Promise<void>;
}

/** The legacy peer: echoes each JSON request in one ascii:20 frame. */
async function legacyServer(): Promise<Server> {
  const sockets = new Set<net.Socket>();
  const state = { port: 0, accepted: 0 };
  const server = net.createServer((socket) => {
    state.accepted++;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    socket.setNoDelay(true);
    const decoder = framing.createDecoder();
    socket.on('data', (chunk: Buffer) => {
      for (const f of decoder.push(chunk)) {
        const reply = Buffer.from(JSON.stringify({ echo: JSON.parse(f.toString()) }));
        socket.write(Buffer.concat(framing.encoder.encode(reply)));
      }
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  state.port = (server.address() as net.AddressInfo).port;
  return {
    get port() {
      return state.port;
    },
    get accepted() {
      return state.accepted;
    },
    close: async () => {
      for (const s of sockets) s.destroy();
      server.close();
      await once(server, 'close');
    },
  };
}

/** Runs `one(i)` for i < REQUESTS with CONCURRENCY workers, stopping at MAX_MS. */
async function drive(
  one: (i: number) => Promise<void>,
): Promise<{ done: number; ms: number; failed: number }> {
  let next = 0;
  let done = 0;
  let failed = 0;
  const start = performance.now();
  const worker = async () => {
    while (next < REQUESTS && performance.now() - start < MAX_MS) {
      const i = next++;
      try {
        await one(i);
        done++;
      } catch {
        failed++;
      }
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  return { done, ms: performance.now() - start, failed };
}

function request(i: number): Buffer {
  return Buffer.from(JSON.stringify({ op: 'quote', i }));
}

/** One short connection: connect, one request, one reply, close (FIN first: TIME_WAIT is ours). */
async function shortConnection(port: number, i: number): Promise<void> {
  const conn = await Connection.connect({ port, framing });
  const reply = new Promise<Buffer>((resolve, reject) => {
    conn.once('frame', resolve);
    conn.once('close', (info) => reject(info.error ?? new Error(`closed: ${info.reason}`)));
  });
  conn.send(request(i));
  await reply;
  await conn.close();
}

async function timeWait(port: number): Promise<number | undefined> {
  if (process.platform !== 'linux') return undefined;
  return (await readTcpTable({ port, state: 'TIME_WAIT' })).length;
}

async function main(): Promise<void> {
  console.log(
    `${REQUESTS} requests, concurrency ${CONCURRENCY}, ascii:20 + JSON echo on 127.0.0.1, node ${process.version}`,
  );

  const shortServer = await legacyServer();
  const short = await drive((i) => shortConnection(shortServer.port, i));
  const shortTw = await timeWait(shortServer.port);

  const poolServer = await legacyServer();
  const pool = createConnectionPool({ port: poolServer.port, framing, max: CONCURRENCY });
  const pooled = await drive(async (i) => {
    await pool.request(request(i));
  });
  const beforeDrain = await timeWait(poolServer.port);
  await pool.drain();
  const pooledTw = await timeWait(poolServer.port);

  const rows = [
    ['', 'short connections', 'pool (lease mode)'],
    ['requests done', String(short.done), String(pooled.done)],
    ['failed', String(short.failed), String(pooled.failed)],
    ['connections opened', String(shortServer.accepted), String(poolServer.accepted)],
    ['time', `${short.ms.toFixed(0)} ms`, `${pooled.ms.toFixed(0)} ms`],
    [
      'requests/s',
      (short.done / (short.ms / 1000)).toFixed(0),
      (pooled.done / (pooled.ms / 1000)).toFixed(0),
    ],
    ['TIME_WAIT while running', '—', String(beforeDrain ?? 'n/a')],
    ['TIME_WAIT afterwards', String(shortTw ?? 'n/a'), String(pooledTw ?? 'n/a')],
  ];
  console.log();
  for (const [a, b, c] of rows)
    console.log(`${(a ?? '').padEnd(26)}${(b ?? '').padStart(20)}${(c ?? '').padStart(20)}`);
  if (shortTw !== undefined && pooledTw !== undefined) {
    console.log(`\nTIME_WAIT sockets left behind: ${shortTw} vs ${pooledTw}`);
  }
  await shortServer.close();
  await poolServer.close();
}

await main();
