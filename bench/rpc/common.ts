/**
 * Shared pieces of the request/response benchmark: the payloads, the contract every system
 * implements, and the percentile arithmetic. See docs/benchmarks.md.
 */

import { randomBytes } from 'node:crypto';

export type Payload = 'json' | 'binary';
export const PAYLOADS: readonly Payload[] = ['json', 'binary'];

/** Every system the driver knows, in the order the tables print them. `raw` is the baseline. */
export const SYSTEMS = ['raw', 'longlink', 'ws', 'socketio', 'undici', 'grpc'] as const;
/**
 * Variants run only when named with --only: `longlink+metrics` is longlink with enableMetrics()
 * on in both processes (the cost of the metrics: docs/observability.md).
 */
export const VARIANTS = ['longlink+metrics'] as const;
export type SystemName = (typeof SYSTEMS)[number] | (typeof VARIANTS)[number];

/** The ~100-byte JSON request. A fresh object per request, as a real caller would build it. */
export interface JsonBody {
  id: number;
  user: string;
  ts: number;
  items: string[];
  ok: boolean;
}

export type Body = JsonBody | Buffer;

const ITEMS = ['alpha', 'beta', 'gamma'];
const TS0 = 1_732_190_000_000;

/** `{"id":100001,"user":"ada.lovelace","ts":1732190000001,"items":["alpha","beta","gamma"],"ok":true}`: 96-97 bytes. */
export function jsonBody(seq: number): JsonBody {
  return { id: 100_000 + seq, user: 'ada.lovelace', ts: TS0 + seq, items: ITEMS, ok: true };
}

export const BINARY_BYTES = 100;

/** One random 100-byte buffer, sent (never mutated) by every binary request of a client. */
export function binaryBody(): Buffer {
  return randomBytes(BINARY_BYTES);
}

/** The client side of a system: one connection, any number of concurrent `call`s. */
export interface RpcClient {
  /** Sends `body`, resolves with the echoed value (an object for json, bytes for binary). */
  call(body: Body): Promise<unknown>;
  close(): Promise<void>;
}

/** What each module in systems/ exports. */
export interface RpcSystem {
  /** Starts an echo server on 127.0.0.1, port 0; resolves with the port. */
  startServer(payload: Payload): Promise<number>;
  /**
   * Opens ONE connection to the server. `inflight` is how many calls the driver will keep
   * outstanding, for systems that must be told (undici's pipelining depth).
   */
  startClient(port: number, payload: Payload, inflight: number): Promise<RpcClient>;
}

export function isSystemName(s: string): s is SystemName {
  return (SYSTEMS as readonly string[]).includes(s) || (VARIANTS as readonly string[]).includes(s);
}

export function isPayload(s: string): s is Payload {
  return (PAYLOADS as readonly string[]).includes(s);
}

export async function loadSystem(name: SystemName): Promise<RpcSystem> {
  return (await import(`./systems/${name.replace('+', '-')}.js`)) as RpcSystem;
}

/** The one line a client prints on stdout. */
export interface ClientResult {
  reqs: number;
  seconds: number;
  p50us: number;
  p99us: number;
  /** The client process's CPU over the measured window, % of one core. */
  cpuPct: number;
  /** 99.9th percentile and largest latency, µs. */
  p999us?: number;
  maxus?: number;
  /** Latencies counted by bucket: `hist[i]` counts those in [HIST_EDGES_US[i-1], HIST_EDGES_US[i]) µs. */
  hist?: number[];
}

/** Upper edges of the latency histogram's buckets, µs (powers of two from 16); the last bucket is open. */
export const HIST_EDGES_US: readonly number[] = Array.from({ length: 12 }, (_, i) => 16 * 2 ** i);

/** Counts latencies (ns) into the buckets of HIST_EDGES_US (plus one open bucket). */
export function histogram(latNs: Float64Array): number[] {
  const counts = new Array<number>(HIST_EDGES_US.length + 1).fill(0);
  for (let i = 0; i < latNs.length; i++) {
    const u = latNs[i]! / 1000;
    let b = 0;
    while (b < HIST_EDGES_US.length && u >= HIST_EDGES_US[b]!) b++;
    counts[b]!++;
  }
  return counts;
}

/** Nearest-rank percentile of an ascending array. */
export function percentile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil(q * sorted.length)));
  return sorted[rank - 1]!;
}

export function median(xs: readonly number[]): number {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** Rejects with a message naming `what` if `p` has not settled after `ms`. */
export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer after ${ms} ms`)), ms);
    timer.unref();
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Exits when stdin closes. The driver gives each child a stdin pipe and never writes to it, so it
 * closes exactly when the driver dies, even by SIGKILL: no orphan keeps loading the machine.
 */
export function exitWithParent(): void {
  process.stdin.on('end', () => process.exit(0));
  process.stdin.on('error', () => process.exit(0));
  process.stdin.resume();
}
