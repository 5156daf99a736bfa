/**
 * `longlink demo`: the main job on one machine with nothing to set up. A server runs as its own
 * process; clients keep requests in flight and receive pushes; half-way through, the server is
 * restarted gracefully (SIGTERM → GOAWAY → drain → a new process on the same port) under load.
 * The report shows requests, errors (expected 0), latency percentiles and every close reason.
 */

import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { type Client, connect } from '../client/client.js';

export interface DemoOptions {
  clients: number;
  concurrency: number;
  durationMs: number;
  log: (line: string) => void;
}

interface ServerProcess {
  child: ChildProcess;
  port: number;
  lines: string[];
  exited: Promise<number | null>;
}

const MAIN = fileURLToPath(new URL('./main.js', import.meta.url));

function startServer(port: number, log: (l: string) => void): Promise<ServerProcess> {
  const child = spawn(process.execPath, [MAIN, 'serve', '--host', '127.0.0.1', '--port', String(port)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const lines: string[] = [];
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return new Promise((resolve, reject) => {
    let buf = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      buf += d;
      for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        lines.push(line);
        log(`  [server ${child.pid}] ${line}`);
        const m = /^listening \S+:(\d+)/.exec(line);
        if (m) resolve({ child, port: Number(m[1]), lines, exited });
      }
    });
    void exited.then((code) => reject(new Error(`server exited early with ${code}`)));
  });
}

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number;
}

/** Runs the demo; resolves with the exit code (0 when no request failed). */
export async function demo(o: DemoOptions): Promise<number> {
  const log = o.log;
  log(
    `longlink demo: ${o.clients} clients × ${o.concurrency} in flight, ${o.durationMs / 1000} s, one graceful server restart`,
  );
  let server = await startServer(0, log);
  const port = server.port;
  const clients: Client[] = [];
  const closeReasons = new Map<string, number>();
  let pushes = 0;
  for (let i = 0; i < o.clients; i++) {
    const c = await connect({ port, name: `demo-${i}`, reconnect: { initialDelayMs: 20, maxDelayMs: 500 } });
    c.on('disconnect', (info) => closeReasons.set(info.reason, (closeReasons.get(info.reason) ?? 0) + 1));
    c.on('notify', () => {
      pushes++;
    });
    clients.push(c);
  }
  const latencies = new Float64Array(5_000_000);
  let n = 0;
  let errors = 0;
  const errorCodes = new Map<string, number>();
  let pushRequests = 0;
  const deadline = performance.now() + o.durationMs;
  const worker = async (c: Client, w: number) => {
    let i = 0;
    while (performance.now() < deadline) {
      const t0 = performance.now();
      try {
        if (i % 50 === 0 && w === 0) {
          pushRequests++;
          await c.request('push', { topic: 'news', count: 5 });
        } else {
          await c.request('echo', { w, i, user: 'demo', items: [1, 2, 3], ts: Date.now() });
        }
        if (n < latencies.length) latencies[n++] = performance.now() - t0;
      } catch (err) {
        errors++;
        const code = (err as { code?: string }).code ?? 'unknown';
        errorCodes.set(code, (errorCodes.get(code) ?? 0) + 1);
      }
      i++;
    }
  };
  const work = clients.flatMap((c) => Array.from({ length: o.concurrency }, (_, w) => worker(c, w)));

  // Half-way: restart the server gracefully, under load, on the same port.
  await new Promise((r) => setTimeout(r, o.durationMs / 2));
  log(`restarting the server under load (SIGTERM to ${server.child.pid})`);
  const t0 = performance.now();
  server.child.kill('SIGTERM');
  await server.exited;
  server = await startServer(port, log);
  const restartMs = performance.now() - t0;

  await Promise.all(work);
  await Promise.all(clients.map((c) => c.close()));
  server.child.kill('SIGTERM');
  await server.exited;

  const sorted = latencies.subarray(0, n).sort();
  const seconds = o.durationMs / 1000;
  log('');
  log('report');
  log(
    `  requests      ${n + errors} (${Math.round((n + errors) / seconds)}/s), push requests ${pushRequests}, pushes received ${pushes}`,
  );
  log(
    `  errors        ${errors}${errors ? ` ${JSON.stringify(Object.fromEntries(errorCodes))}` : ' (expected 0)'}`,
  );
  log(
    `  latency       p50 ${percentile(sorted, 50).toFixed(3)} ms, p99 ${percentile(sorted, 99).toFixed(3)} ms, max ${percentile(sorted, 100).toFixed(3)} ms`,
  );
  log(`  restart       old server drained and a new one listening on :${port} in ${restartMs.toFixed(0)} ms`);
  log(`  client closes ${JSON.stringify(Object.fromEntries(closeReasons))}`);
  const serverReasons = new Map<string, number>();
  for (const line of server.lines) {
    const m = /reason=(\S+)/.exec(line);
    if (m) serverReasons.set(m[1] as string, (serverReasons.get(m[1] as string) ?? 0) + 1);
  }
  log(`  server closes ${JSON.stringify(Object.fromEntries(serverReasons))} (second server)`);
  return errors === 0 && pushes === pushRequests * 5 ? 0 : 1;
}
