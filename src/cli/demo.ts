/**
 * `longlink demo`: the main job on one machine with nothing to set up. A server runs as its own
 * process; clients keep requests in flight and receive pushes; half-way through, the server is
 * restarted gracefully (SIGTERM → GOAWAY → drain → a new process on the same port) under load.
 * The report shows requests, errors (expected 0), latency percentiles and every close reason.
 */

import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { type Client, connect } from '../client/client.js';
import {
  type Command,
  count,
  type Io,
  intArg,
  onInterrupt,
  type ParsedArgs,
  secondsArg,
  signalExitCode,
} from './args.js';

export interface DemoOptions {
  clients: number;
  concurrency: number;
  durationMs: number;
  log: (line: string) => void;
  /** A progress line about once a second while the load runs. */
  progress?: (line: string) => void;
  /** Aborted: the load stops early and the report is printed. */
  signal?: AbortSignal;
}

interface ServerProcess {
  child: ChildProcess;
  port: number;
  lines: string[];
  exited: Promise<number | null>;
}

const MAIN = fileURLToPath(new URL('./main.js', import.meta.url));

/** Server processes still running: killed if the demo is aborted (a second Ctrl-C). */
const running = new Set<ChildProcess>();

function killRunning(): void {
  for (const c of running) c.kill('SIGKILL');
}

function startServer(port: number, log: (l: string) => void): Promise<ServerProcess> {
  // Its own process group: a Ctrl-C at the terminal is the demo's to handle, not the server's.
  const child = spawn(process.execPath, [MAIN, 'serve', '--host', '127.0.0.1', '--port', String(port)], {
    stdio: ['ignore', 'pipe', 'inherit'],
    detached: true,
  });
  if (running.size === 0) process.once('exit', killRunning);
  running.add(child);
  const lines: string[] = [];
  const exited = new Promise<number | null>((resolve) =>
    child.once('exit', (code) => {
      running.delete(child);
      resolve(code);
    }),
  );
  return new Promise((resolve, reject) => {
    let buf = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      buf += d;
      for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        lines.push(line);
        log(`  [server ${child.pid}] ${line}`);
        const m = / listening \S+:(\d+) /.exec(line);
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
  const started = performance.now();
  let deadline = started + o.durationMs;
  o.signal?.addEventListener('abort', () => {
    deadline = 0;
  });
  const progress = setInterval(() => {
    const t = Math.min(performance.now() - started, o.durationMs) / 1000;
    o.progress?.(
      `demo: ${t.toFixed(0)} / ${o.durationMs / 1000} s, ${count(n + errors)} requests, ${errors} errors, ${count(pushes)} pushes received`,
    );
  }, 1000);
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
  await new Promise<void>((r) => {
    const t = setTimeout(r, o.durationMs / 2);
    o.signal?.addEventListener('abort', () => {
      clearTimeout(t);
      r();
    });
  });
  log(`restarting the server under load (SIGTERM to ${server.child.pid})`);
  const t0 = performance.now();
  server.child.kill('SIGTERM');
  await server.exited;
  server = await startServer(port, log);
  const restartMs = performance.now() - t0;

  await Promise.all(work);
  clearInterval(progress);
  await Promise.all(clients.map((c) => c.close()));
  server.child.kill('SIGTERM');
  await server.exited;

  const sorted = latencies.subarray(0, n).sort();
  const seconds = Math.max(0.001, Math.min(performance.now() - started, o.durationMs) / 1000);
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

export const demoCommand: Command = {
  name: 'demo',
  summary: 'a server process and clients doing real work, with a graceful server restart under load',
  usage: ['[--clients N] [--concurrency N] [--seconds S]'],
  description:
    'Starts `longlink serve` as a child process, connects N clients with requests in flight and ' +
    'server pushes, restarts the server gracefully half-way (SIGTERM, GOAWAY, drain, a new process ' +
    'on the same port) and prints a report: requests, errors (expected 0), latency percentiles and ' +
    'every close reason. A progress line every second. Exit 0 when no request failed.\n\n' +
    'Ctrl-C once ends the load early and prints the report; twice stops at once.',
  options: {
    clients: { type: 'string', default: '4', arg: 'N', help: 'client connections' },
    concurrency: { type: 'string', default: '32', arg: 'N', help: 'requests in flight per client' },
    seconds: { type: 'string', default: '6', arg: 'S', help: 'how long the load runs (at least 1)' },
  },
  examples: [
    ['longlink demo', '4 clients × 32 in flight for 6 s, one graceful restart'],
    ['longlink demo --clients 16 --concurrency 8 --seconds 20', 'more connections, a longer run'],
  ],
  async run(args: ParsedArgs, io: Io): Promise<number> {
    const stop = new AbortController();
    const dispose = onInterrupt(
      () => stop.abort(),
      (signal) => {
        killRunning();
        process.exit(signalExitCode(signal));
      },
    );
    try {
      return await demo({
        clients: intArg(args, 'clients', 1, 10_000),
        concurrency: intArg(args, 'concurrency', 1, 10_000),
        durationMs: secondsArg(args, 'seconds', 1),
        log: io.out,
        progress: io.progress,
        signal: stop.signal,
      });
    } finally {
      dispose();
    }
  },
};
