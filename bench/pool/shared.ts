/**
 * Shared-mode request throughput: `pool.request()` over N connections against one `Client`
 * (one connection), same longlink echo server in a child process (so the server's work does not
 * share this thread), same callers. Rounds interleaved, median reported, ratios vs the single
 * Client.
 *
 *   npm run build && node dist/bench/pool/shared.js [--ms=1000] [--rounds=3]
 */

import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { connect } from '../../src/client/client.js';
import { createClientPool } from '../../src/pool/client-pool.js';
import { createServer } from '../../src/server/server.js';

const args = process.argv.slice(2);
const arg = (name: string, fallback: number) => {
  const v = args.find((a) => a.startsWith(`--${name}=`))?.split('=')[1];
  return v === undefined ? fallback : Number(v);
};

if (args.includes('--serve')) {
  const server = createServer({ handlers: { echo: (p: unknown) => p } });
  const { port } = await server.listen();
  process.stdout.write(`${port}\n`);
  process.stdin.resume();
  process.stdin.on('end', () => process.exit(0)); // never outlive the driver
} else {
  await main();
}

interface Subject {
  name: string;
  request(body: object): Promise<unknown>;
  close(): Promise<void>;
}

async function main(): Promise<void> {
  const RUN_MS = arg('ms', 1000);
  const ROUNDS = arg('rounds', 3);
  const CONCURRENCY = [1, 64, 512];

  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), '--serve'], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const [line] = (await once(child.stdout, 'data')) as [Buffer];
  const port = Number(line.toString().trim());

  const client = await connect({ port });
  const pool1 = createClientPool({ port, connectionsPerEndpoint: 1 });
  const pool4 = createClientPool({ port, connectionsPerEndpoint: 4, minConnectionsPerEndpoint: 4 });
  const subjects: Subject[] = [
    { name: 'Client (1 connection)', request: (b) => client.request('echo', b), close: () => client.close() },
    { name: 'ClientPool N=1', request: (b) => pool1.request('echo', b), close: () => pool1.close() },
    { name: 'ClientPool N=4', request: (b) => pool4.request('echo', b), close: () => pool4.close() },
  ];
  // Warm up: connections open, JIT settled.
  for (const s of subjects) await run(s, 64, 300);

  const results = new Map<string, number[]>();
  for (const c of CONCURRENCY) {
    for (let r = 0; r < ROUNDS; r++) {
      for (const s of subjects) {
        const k = `${s.name}|${c}`;
        const list = results.get(k) ?? [];
        list.push(await run(s, c, RUN_MS));
        results.set(k, list);
      }
    }
  }

  console.log(
    `\nshared mode: echo requests/s, median of ${ROUNDS} × ${RUN_MS} ms, server in a child process\n`,
  );
  console.log(
    `| callers | ${subjects.map((s) => s.name).join(' | ')} | ${subjects
      .slice(1)
      .map((s) => `${s.name} vs Client`)
      .join(' | ')} |`,
  );
  console.log(
    `|---|${subjects.map(() => '---').join('|')}|${subjects
      .slice(1)
      .map(() => '---')
      .join('|')}|`,
  );
  for (const c of CONCURRENCY) {
    const med = subjects.map((s) => median(results.get(`${s.name}|${c}`) ?? []));
    const base = med[0] ?? 1;
    console.log(
      `| ${c} | ${med.map((m) => `${(m / 1000).toFixed(1)} k/s`).join(' | ')} | ${med
        .slice(1)
        .map((m) => `${(m / base).toFixed(2)}×`)
        .join(' | ')} |`,
    );
  }
  for (const s of subjects) await s.close();
  child.stdin?.end();
  child.kill();
}

/** `callers` loops sending one request after another for `ms`; returns requests per second. */
async function run(s: Subject, callers: number, ms: number): Promise<number> {
  let done = 0;
  let seq = 0;
  const t0 = performance.now();
  const stopAt = t0 + ms;
  await Promise.all(
    Array.from({ length: callers }, async () => {
      while (performance.now() < stopAt) {
        await s.request({ id: seq++, user: 'ada.lovelace', items: ['alpha', 'beta', 'gamma'], ok: true });
        done++;
      }
    }),
  );
  return done / ((performance.now() - t0) / 1000);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? 0;
}
