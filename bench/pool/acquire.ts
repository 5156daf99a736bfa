/**
 * acquire + release throughput in process: longlink's Pool against generic-pool and tarn in the
 * same run, with trivial resources (the pool's own overhead, nothing else), max 10, with 1 and
 * 100 concurrent acquirers. Rounds are interleaved so the pools share the machine's state; the
 * median round is reported.
 *
 *   npm run build && node dist/bench/pool/acquire.js [--quick] [--ms=700] [--rounds=3]
 */

import genericPool from 'generic-pool';
import { Pool as TarnPool } from 'tarn';
import { Pool } from '../../src/pool/pool.js';

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const arg = (name: string, fallback: number) => {
  const v = args.find((a) => a.startsWith(`--${name}=`))?.split('=')[1];
  return v === undefined ? fallback : Number(v);
};
const RUN_MS = arg('ms', quick ? 200 : 700);
const ROUNDS = arg('rounds', quick ? 1 : 3);
const MAX = 10;
const CONCURRENCY = [1, 100];

interface Subject {
  name: string;
  /** One acquire + release. */
  op(): Promise<void>;
  close(): Promise<void>;
}

function longlink(): Subject {
  const pool = new Pool<object>(
    {
      create: async () => ({}),
      destroy: () => {},
    },
    { max: MAX, maxWaiters: Number.POSITIVE_INFINITY },
  );
  return {
    name: 'longlink',
    op: async () => {
      const lease = await pool.acquire();
      lease.release();
    },
    close: () => pool.drain(),
  };
}

function generic(): Subject {
  const pool = genericPool.createPool<object>(
    {
      create: async () => ({}),
      destroy: async () => {},
    },
    { max: MAX, min: 0 },
  );
  return {
    name: 'generic-pool',
    op: async () => {
      const r = await pool.acquire();
      void pool.release(r);
    },
    close: async () => {
      await pool.drain();
      await pool.clear();
    },
  };
}

function tarn(): Subject {
  const pool = new TarnPool<object>({
    create: async () => ({}),
    destroy: () => {},
    min: 0,
    max: MAX,
  });
  return {
    name: 'tarn',
    op: async () => {
      const r = await pool.acquire().promise;
      pool.release(r);
    },
    close: async () => {
      await pool.destroy();
    },
  };
}

/** `concurrency` loops of op() for `ms`; returns ops/s. */
async function run(subject: Subject, concurrency: number, ms: number): Promise<number> {
  let ops = 0;
  let stop = false;
  const start = performance.now();
  const worker = async () => {
    while (!stop) {
      for (let i = 0; i < 64; i++) await subject.op();
      ops += 64;
      if (performance.now() - start >= ms) stop = true;
    }
  };
  const workers: Promise<void>[] = [];
  for (let i = 0; i < concurrency; i++) workers.push(worker());
  await Promise.all(workers);
  return ops / ((performance.now() - start) / 1000);
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? 0;
};
const fmt = (n: number) => `${(n / 1000).toFixed(0).padStart(6)}k/s`;

async function main(): Promise<void> {
  const makers = [longlink, generic, tarn];
  console.log(`acquire+release, max ${MAX}, ${ROUNDS} round(s) of ${RUN_MS} ms, node ${process.version}`);
  const results = new Map<string, number[]>();
  for (let round = 0; round < ROUNDS; round++) {
    for (const c of CONCURRENCY) {
      for (const make of makers) {
        const s = make();
        await run(s, c, Math.min(100, RUN_MS / 4)); // warm-up: fill the pool, let the JIT settle
        const r = await run(s, c, RUN_MS);
        await s.close();
        const key = `${s.name}@${c}`;
        results.set(key, [...(results.get(key) ?? []), r]);
      }
    }
  }
  console.log(
    `\n${'concurrency'.padEnd(12)}${'longlink'.padStart(12)}${'generic-pool'.padStart(14)}${'tarn'.padStart(12)}   ratio vs generic-pool / tarn`,
  );
  for (const c of CONCURRENCY) {
    const ll = median(results.get(`longlink@${c}`) ?? []);
    const gp = median(results.get(`generic-pool@${c}`) ?? []);
    const tn = median(results.get(`tarn@${c}`) ?? []);
    console.log(
      `${String(c).padEnd(12)}${fmt(ll).padStart(12)}${fmt(gp).padStart(14)}${fmt(tn).padStart(12)}   ${(ll / gp).toFixed(2)}x / ${(ll / tn).toFixed(2)}x`,
    );
  }
}

await main();
