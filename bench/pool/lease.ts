/**
 * Lease-mode request throughput: longlink's connection pool against the sources' own recipe —
 * generic-pool over raw net.Sockets with a hand-written ascii:20 reader (`Buffer.concat` the
 * chunks, cut the frame off the front). Same legacy echo server (in process, 127.0.0.1), same
 * pool size, same number of concurrent callers; rounds interleaved, median reported.
 *
 *   npm run build && node dist/bench/pool/lease.js [--ms=1000] [--rounds=3] [--size=64]
 */

import { once } from 'node:events';
import net from 'node:net';
import genericPool from 'generic-pool';
import { parseFraming } from '../../src/codec/index.js';
import { createConnectionPool } from '../../src/pool/connection-pool.js';

const args = process.argv.slice(2);
const arg = (name: string, fallback: number) => {
  const v = args.find((a) => a.startsWith(`--${name}=`))?.split('=')[1];
  return v === undefined ? fallback : Number(v);
};
const RUN_MS = arg('ms', 1000);
const ROUNDS = arg('rounds', 3);
const SIZE = arg('size', 64);
const MAX = 8;
const CONCURRENCY = [8, 32];
const framing = parseFraming('ascii:20');

async function echoServer(): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    socket.setNoDelay(true);
    const decoder = framing.createDecoder();
    socket.on('data', (chunk: Buffer) => {
      for (const f of decoder.push(chunk)) {
        socket.cork();
        for (const c of framing.encoder.encode(f)) socket.write(c);
        socket.uncork();
      }
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as net.AddressInfo).port,
    close: async () => {
      for (const s of sockets) s.destroy();
      server.close();
      await once(server, 'close');
    },
  };
}

interface Subject {
  name: string;
  request(payload: Buffer): Promise<Buffer>;
  close(): Promise<void>;
}

function longlink(port: number): Subject {
  const pool = createConnectionPool({ port, framing, max: MAX, maxWaiters: Number.POSITIVE_INFINITY });
  return { name: 'longlink', request: (p) => pool.request(p), close: () => pool.drain() };
}

/** The sources' recipe: generic-pool of sockets, a hand-written reader per request. */
function sourcesRecipe(port: number): Subject {
  const pool = genericPool.createPool<net.Socket>(
    {
      create: () =>
        new Promise((resolve, reject) => {
          const s = net.connect({ port, host: '127.0.0.1' }, () => resolve(s));
          s.setNoDelay(true);
          s.once('error', reject);
        }),
      destroy: async (s) => {
        s.destroy();
      },
    },
    { max: MAX, min: 0 },
  );
  const request = async (payload: Buffer): Promise<Buffer> => {
    const s = await pool.acquire();
    try {
      return await new Promise<Buffer>((resolve, reject) => {
        let buf = Buffer.alloc(0);
        const onData = (d: Buffer) => {
          buf = Buffer.concat([buf, d]);
          if (buf.length < 20) return;
          const len = Number(buf.subarray(0, 20).toString());
          if (buf.length < 20 + len) return;
          s.off('data', onData);
          s.off('error', reject);
          resolve(buf.subarray(20, 20 + len));
        };
        s.on('data', onData);
        s.once('error', reject);
        s.write(Buffer.concat([Buffer.from(String(payload.length).padStart(20, '0')), payload]));
      });
    } finally {
      void pool.release(s);
    }
  };
  return {
    name: 'generic-pool + hand framing',
    request,
    close: async () => {
      await pool.drain();
      await pool.clear();
    },
  };
}

async function run(subject: Subject, concurrency: number, ms: number): Promise<number> {
  const payload = Buffer.alloc(SIZE, 0x61);
  let ops = 0;
  const start = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() - start < ms) {
        await subject.request(payload);
        ops++;
      }
    }),
  );
  return ops / ((performance.now() - start) / 1000);
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;

async function main(): Promise<void> {
  const server = await echoServer();
  console.log(
    `lease-mode request/reply, ${SIZE}-byte payload, pool max ${MAX}, ${ROUNDS} round(s) of ${RUN_MS} ms`,
  );
  const results = new Map<string, number[]>();
  for (let r = 0; r < ROUNDS; r++) {
    for (const c of CONCURRENCY) {
      for (const make of [longlink, sourcesRecipe]) {
        const s = make(server.port);
        await run(s, c, 150);
        const v = await run(s, c, RUN_MS);
        await s.close();
        const key = `${s.name}@${c}`;
        results.set(key, [...(results.get(key) ?? []), v]);
      }
    }
  }
  console.log(
    `\n${'callers'.padEnd(10)}${'longlink'.padStart(14)}${'generic-pool + hand framing'.padStart(30)}   ratio`,
  );
  for (const c of CONCURRENCY) {
    const a = median(results.get(`longlink@${c}`) ?? []);
    const b = median(results.get(`generic-pool + hand framing@${c}`) ?? []);
    console.log(
      `${String(c).padEnd(10)}${`${a.toFixed(0)} req/s`.padStart(14)}${`${b.toFixed(0)} req/s`.padStart(30)}   ${(a / b).toFixed(2)}x`,
    );
  }
  await server.close();
}

await main();
