/**
 * Prometheus metrics through prom-client, an optional peer dependency loaded only here, only when
 * `enableMetrics()` is called. Everything is built from the diagnostics channels (the Recorder)
 * and from `stats()` read at scrape time; with metrics off nothing subscribes and every publisher
 * stays a `hasSubscribers` check.
 *
 * The metrics are prom-client collectors of our own (objects with `get()`, which any prom-client
 * Registry takes): the hot path only bumps numbers in the Recorder, and the text is made when
 * Prometheus asks. The table of names, types and labels is in docs/observability.md.
 */

import { monitorEventLoopDelay } from 'node:perf_hooks';
import type { Connection } from '../connection/connection.js';
import { InvalidArgumentError } from '../errors.js';
import type { Server } from '../server/server.js';
import { loadPeer } from './peer.js';
import { type Counts, type Histogram, Recorder, type SideStats } from './recorder.js';

/**
 * What longlink needs of a prom-client `Registry` (pass your own, or one is made). Any prom-client
 * 15 Registry fits.
 */
export interface MetricsRegistry {
  /** The exposition text of every metric registered. */
  metrics(): Promise<string>;
  /** The Content-Type of that text. */
  readonly contentType: string;
  registerMetric(metric: never): void;
  removeSingleMetric(name: string): void;
  getSingleMetric(name: string): unknown;
}

/** A client whose connection the metrics watch (a `Client`: its current connection, if any). */
export interface MetricsClient {
  readonly connection: Connection | undefined;
}

/** What the pool gauges read from a pool's `stats()`: whichever of these fields it has. */
export interface MetricsPoolStats {
  idle?: number;
  borrowed?: number;
  validating?: number;
  creating?: number;
  draining?: number;
  /** Connections taking work (a client pool). */
  connections?: number;
  pending?: number;
  waiting?: number;
  inflight?: number;
  breaker?: { readonly state: string };
  endpoints?: ReadonlyArray<{ readonly endpoint: string; readonly breaker?: { readonly state: string } }>;
}

/** A pool the metrics watch: `Pool`, `ConnectionPool` and `ClientPool` all fit. */
export interface MetricsPool {
  stats(): MetricsPoolStats;
}

/** Options of {@link enableMetrics}. */
export interface MetricsOptions {
  /** The prom-client Registry to register in. Default: a new one (see `metrics.registry`). */
  registry?: MetricsRegistry;
  /** Prefix of every metric name. Default `longlink_`. */
  prefix?: string;
  /** Servers whose connections, states, queues and handler errors are read at scrape time. */
  servers?: readonly Server[];
  /** Clients whose connections are read at scrape time. */
  clients?: readonly MetricsClient[];
  /** Pools by name (the `pool` label), read through their `stats()` at scrape time. */
  pools?: Readonly<Record<string, MetricsPool>>;
  /** Event-loop delay gauges (perf_hooks.monitorEventLoopDelay). Default true. */
  eventLoop?: boolean;
  /**
   * Distinct `method` labels kept per side; later methods are counted as `other`. Methods are
   * chosen by peers: the cap keeps the number of series bounded. Default 100.
   */
  maxMethods?: number;
}

/** The handle {@link enableMetrics} returns. */
export interface LonglinkMetrics {
  /** The registry the metrics are in (yours, or the one made for you). */
  readonly registry: MetricsRegistry;
  /** The Content-Type of {@link LonglinkMetrics.metrics}'s text. */
  readonly contentType: string;
  /** The registry's exposition text (every metric in it, longlink's and yours). */
  metrics(): Promise<string>;
  /** Watch one more server. */
  addServer(server: Server): void;
  /** Watch one more client. */
  addClient(client: MetricsClient): void;
  /** Watch one more pool, labelled `pool="name"`. */
  addPool(name: string, pool: MetricsPool): void;
  /** Unsubscribes from the channels, stops the event-loop monitor, removes longlink's metrics from the registry. */
  close(): void;
}

interface Sample {
  value: number;
  labels: Record<string, string>;
  metricName?: string;
}

type MetricType = 'counter' | 'gauge' | 'histogram';

/**
 * One metric family as prom-client's Registry reads it: `get()` gives the samples. prom-client's
 * own classes do the same; the values here are read from the Recorder at scrape time.
 */
class Family {
  readonly aggregator = 'sum';
  constructor(
    readonly name: string,
    readonly help: string,
    readonly type: MetricType,
    private readonly read: () => Sample[],
  ) {}
  get(): Promise<{
    name: string;
    help: string;
    type: MetricType;
    aggregator: string;
    values: Sample[];
  }> {
    return Promise.resolve({
      name: this.name,
      help: this.help,
      type: this.type,
      aggregator: this.aggregator,
      values: this.read(),
    });
  }
  /** Registry.resetMetrics(): these count since the process began, as the channels do. */
  reset(): void {}
}

/** A histogram's samples: cumulative buckets, +Inf, sum and count. */
function histogramSamples(name: string, h: Histogram, labels: Record<string, string>, out: Sample[]): void {
  let cumulative = 0;
  for (let i = 0; i < h.bounds.length; i++) {
    cumulative += h.counts[i] as number;
    out.push({
      metricName: `${name}_bucket`,
      labels: { ...labels, le: String(h.bounds[i]) },
      value: cumulative,
    });
  }
  out.push({ metricName: `${name}_bucket`, labels: { ...labels, le: '+Inf' }, value: h.count });
  out.push({ metricName: `${name}_sum`, labels, value: h.sum });
  out.push({ metricName: `${name}_count`, labels, value: h.count });
}

function byKey(counts: Counts, label: string): Sample[] {
  return [...counts].map(([k, v]) => ({ labels: { [label]: k }, value: v }));
}

function requestFamilies(p: string, side: 'server' | 'client', s: SideStats): Family[] {
  const what =
    side === 'server' ? 'handled by the servers of this process' : 'made by the clients of this process';
  return [
    new Family(
      `${p}${side}_requests_total`,
      `Requests ${what}, by method and outcome code (OK or the error code).`,
      'counter',
      () => {
        const out: Sample[] = [];
        for (const [method, m] of s.methods.entries) {
          if (m.ok > 0) out.push({ labels: { method, code: 'OK' }, value: m.ok });
          for (const [code, c] of m.codes.entries) out.push({ labels: { method, code }, value: c.n });
        }
        return out;
      },
    ),
    new Family(
      `${p}${side}_request_duration_seconds`,
      side === 'server'
        ? 'Handler time, from the request read to the answer.'
        : 'Request time, from the call to its answer.',
      'histogram',
      () => {
        const out: Sample[] = [];
        for (const [method, m] of s.methods.entries) {
          histogramSamples(`${p}${side}_request_duration_seconds`, m.durations, { method }, out);
        }
        return out;
      },
    ),
    new Family(`${p}${side}_requests_in_flight`, `Requests ${what} and not answered yet.`, 'gauge', () => [
      { labels: {}, value: s.inflight },
    ]),
  ];
}

class Metrics implements LonglinkMetrics {
  readonly registry: MetricsRegistry;
  /** @internal What the metrics count from the channels (the live view shares it). */
  readonly recorder: Recorder;
  private readonly servers = new Set<Server>();
  private readonly clients = new Set<MetricsClient>();
  private readonly pools = new Map<string, MetricsPool>();
  private readonly families: Family[];
  private readonly loop: ReturnType<typeof monitorEventLoopDelay> | undefined;
  private closed = false;

  constructor(registry: MetricsRegistry, options: MetricsOptions) {
    const p = options.prefix ?? 'longlink_';
    if (!/^[a-zA-Z_:][a-zA-Z0-9_:]*$/.test(p)) {
      throw new InvalidArgumentError(`metrics prefix ${JSON.stringify(p)} is not a Prometheus name prefix`);
    }
    const maxMethods = options.maxMethods ?? 100;
    if (!Number.isInteger(maxMethods) || maxMethods < 1) {
      throw new InvalidArgumentError('maxMethods must be an integer >= 1');
    }
    this.registry = registry;
    for (const s of options.servers ?? []) this.servers.add(s);
    for (const c of options.clients ?? []) this.clients.add(c);
    for (const [name, pool] of Object.entries(options.pools ?? {})) this.pools.set(name, pool);
    if (options.eventLoop !== false) {
      this.loop = monitorEventLoopDelay({ resolution: 10 });
      this.loop.enable();
    }
    const r = new Recorder({ maxMethods });
    this.recorder = r;
    const loop = this.loop;
    this.families = [
      new Family(
        `${p}server_connections`,
        'Connections of the watched servers, by state (accepting: still in the PROXY/TLS stage).',
        'gauge',
        () => this.serverStates(),
      ),
      new Family(
        `${p}server_connections_accepted_total`,
        'Connections servers admitted and served.',
        'counter',
        () => [{ labels: {}, value: r.accepted }],
      ),
      new Family(
        `${p}server_connections_refused_total`,
        'Connections servers refused, by reason.',
        'counter',
        () => byKey(r.refused, 'reason'),
      ),
      new Family(
        `${p}server_handler_errors_total`,
        'Handler failures of the watched servers (threw, rejected, timed out, answer not sendable).',
        'counter',
        () => [{ labels: {}, value: this.sumServers((s) => s.stats().handlerErrors) }],
      ),
      ...requestFamilies(p, 'server', r.server),
      ...requestFamilies(p, 'client', r.client),
      new Family(
        `${p}client_connections`,
        'Watched clients by the state of their connection (disconnected: none).',
        'gauge',
        () => this.clientStates(),
      ),
      new Family(
        `${p}connection_closes_total`,
        'Connections closed, by close reason and by who started the close.',
        'counter',
        () =>
          [...r.closes].map(([k, v]) => {
            const [reason = '', initiator = ''] = k.split(' ');
            return { labels: { reason, initiator }, value: v };
          }),
      ),
      new Family(
        `${p}connection_received_bytes_total`,
        'Bytes read by closed connections and the watched ones still open.',
        'counter',
        () => [{ labels: {}, value: r.closedBytesRead + this.liveBytes('bytesRead') }],
      ),
      new Family(
        `${p}connection_sent_bytes_total`,
        'Bytes written by closed connections and the watched ones still open.',
        'counter',
        () => [{ labels: {}, value: r.closedBytesWritten + this.liveBytes('bytesWritten') }],
      ),
      new Family(
        `${p}connection_queued_bytes`,
        'Bytes queued for sending and not yet taken by the kernel, on watched connections.',
        'gauge',
        () => this.queued(),
      ),
      new Family(`${p}heartbeat_rtt_seconds`, 'Heartbeat round trips (PING to PONG).', 'histogram', () => {
        const out: Sample[] = [];
        histogramSamples(`${p}heartbeat_rtt_seconds`, r.rtt, {}, out);
        return out;
      }),
      new Family(`${p}pool_connections`, 'Pool connections by state.', 'gauge', () =>
        this.poolSamples('connections'),
      ),
      new Family(`${p}pool_waiting`, 'Acquirers or requests waiting for a pool connection.', 'gauge', () =>
        this.poolSamples('waiting'),
      ),
      new Family(`${p}pool_requests_in_flight`, 'Requests in flight on a client pool.', 'gauge', () =>
        this.poolSamples('inflight'),
      ),
      new Family(
        `${p}pool_breaker_state`,
        'Circuit breaker state per pool endpoint: 1 for the current state, 0 for the others.',
        'gauge',
        () => this.poolSamples('breaker'),
      ),
    ];
    if (loop !== undefined) {
      // Read and reset at each scrape: the delay since the previous one (prom-client's default
      // metrics do the same). Values are nanoseconds.
      let last = { p50: 0, p99: 0, max: 0 };
      let readAt = -1;
      const take = () => {
        // The three gauges are read in one scrape: take the reading once per scrape.
        const t = Date.now();
        if (t - readAt > 50) {
          readAt = t;
          last =
            loop.count > 0
              ? { p50: loop.percentile(50) / 1e9, p99: loop.percentile(99) / 1e9, max: loop.max / 1e9 }
              : { p50: 0, p99: 0, max: 0 };
          loop.reset();
        }
        return last;
      };
      this.families.push(
        new Family(
          `${p}event_loop_lag_p50_seconds`,
          'Median event-loop delay since the previous scrape.',
          'gauge',
          () => [{ labels: {}, value: take().p50 }],
        ),
        new Family(
          `${p}event_loop_lag_p99_seconds`,
          '99th percentile event-loop delay since the previous scrape.',
          'gauge',
          () => [{ labels: {}, value: take().p99 }],
        ),
        new Family(
          `${p}event_loop_lag_max_seconds`,
          'Longest event-loop delay since the previous scrape.',
          'gauge',
          () => [{ labels: {}, value: take().max }],
        ),
      );
    }
    for (const f of this.families) {
      if (registry.getSingleMetric(f.name) !== undefined) {
        this.recorder.close();
        this.loop?.disable();
        throw new InvalidArgumentError(
          `a metric named ${f.name} is already registered (metrics enabled twice on one registry? use another prefix)`,
        );
      }
    }
    for (const f of this.families) registry.registerMetric(f as never);
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  metrics(): Promise<string> {
    return this.registry.metrics();
  }

  addServer(server: Server): void {
    this.servers.add(server);
  }

  addClient(client: MetricsClient): void {
    this.clients.add(client);
  }

  addPool(name: string, pool: MetricsPool): void {
    if (typeof pool?.stats !== 'function') throw new InvalidArgumentError(`pool ${name} has no stats()`);
    this.pools.set(name, pool);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.recorder.close();
    this.loop?.disable();
    for (const f of this.families) this.registry.removeSingleMetric(f.name);
  }

  private sumServers(f: (s: Server) => number): number {
    let n = 0;
    for (const s of this.servers) n += f(s);
    return n;
  }

  private serverStates(): Sample[] {
    const counts = new Map<string, number>();
    let accepting = 0;
    for (const s of this.servers) {
      accepting += s.stats().accepting;
      for (const c of s.served()) counts.set(c.connection.state, (counts.get(c.connection.state) ?? 0) + 1);
    }
    counts.set('accepting', accepting);
    return byKey(counts, 'state');
  }

  private clientStates(): Sample[] {
    const counts = new Map<string, number>();
    for (const c of this.clients) {
      const state = c.connection?.state ?? 'disconnected';
      counts.set(state, (counts.get(state) ?? 0) + 1);
    }
    return byKey(counts, 'state');
  }

  private *watched(): Generator<[Connection, 'server' | 'client']> {
    for (const s of this.servers) for (const c of s.served()) yield [c.connection, 'server'];
    for (const c of this.clients) {
      const conn = c.connection;
      if (conn !== undefined && conn.state !== 'closed') yield [conn, 'client'];
    }
  }

  private liveBytes(which: 'bytesRead' | 'bytesWritten'): number {
    let n = 0;
    for (const [c] of this.watched()) n += c.socket[which];
    return n;
  }

  private queued(): Sample[] {
    const by = { server: 0, client: 0 };
    for (const [c, role] of this.watched()) by[role] += c.bufferedAmount;
    return [
      { labels: { role: 'server' }, value: by.server },
      { labels: { role: 'client' }, value: by.client },
    ];
  }

  private poolSamples(which: 'connections' | 'waiting' | 'inflight' | 'breaker'): Sample[] {
    const out: Sample[] = [];
    for (const [pool, p] of this.pools) {
      let s: MetricsPoolStats;
      try {
        s = p.stats();
      } catch {
        continue; // a closed pool may refuse: it has nothing to report
      }
      switch (which) {
        case 'connections':
          for (const state of ['idle', 'borrowed', 'validating', 'creating', 'draining'] as const) {
            const v = s[state];
            if (typeof v === 'number') out.push({ labels: { pool, state }, value: v });
          }
          if (typeof s.connections === 'number')
            out.push({ labels: { pool, state: 'active' }, value: s.connections });
          break;
        case 'waiting': {
          const v = s.pending ?? s.waiting;
          if (typeof v === 'number') out.push({ labels: { pool }, value: v });
          break;
        }
        case 'inflight':
          if (typeof s.inflight === 'number') out.push({ labels: { pool }, value: s.inflight });
          break;
        case 'breaker': {
          const breakers: Array<[string, string]> = [];
          if (s.endpoints !== undefined && s.endpoints.length > 0) {
            for (const e of s.endpoints) if (e.breaker) breakers.push([e.endpoint, e.breaker.state]);
          } else if (s.breaker) breakers.push(['default', s.breaker.state]);
          for (const [endpoint, current] of breakers) {
            for (const state of ['closed', 'open', 'half-open']) {
              out.push({ labels: { pool, endpoint, state }, value: state === current ? 1 : 0 });
            }
          }
          break;
        }
      }
    }
    return out;
  }
}

interface PromClient {
  Registry: new () => MetricsRegistry;
}

/**
 * Turns on Prometheus metrics: subscribes to longlink's diagnostics channels and registers
 * longlink's metrics in a prom-client registry (yours, or a new one). Needs the optional peer
 * dependency `prom-client` (`npm install prom-client`); rejects with MissingDependencyError
 * (`ERR_MISSING_DEPENDENCY`) without it. Metric names, types and labels: docs/observability.md.
 *
 * @example
 * ```ts
 * import { createServer, enableMetrics } from 'longlink';
 * const server = createServer({ handlers: { echo: (p) => p } });
 * const metrics = await enableMetrics({ servers: [server] });
 * // in your HTTP server: res.setHeader('content-type', metrics.contentType); res.end(await metrics.metrics());
 * ```
 */
export async function enableMetrics(options: MetricsOptions = {}): Promise<LonglinkMetrics> {
  let registry = options.registry;
  if (registry === undefined) {
    const prom = await loadPeer<PromClient & { default?: PromClient }>('prom-client', 'enableMetrics');
    const Registry = prom.Registry ?? prom.default?.Registry;
    registry = new Registry();
  }
  return new Metrics(registry, options);
}

/** @internal The Recorder behind a metrics handle (the live view shares it instead of a second one). */
export function recorderOf(metrics: LonglinkMetrics): Recorder | undefined {
  return metrics instanceof Metrics ? metrics.recorder : undefined;
}
