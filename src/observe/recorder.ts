/**
 * The Recorder: what the metrics and the live view count, taken from the diagnostics channels
 * (util/channels.ts is the contract) into plain numbers and arrays. Nothing here allocates per
 * request beyond a stamp on the channel's own message, and nothing here knows prom-client: the
 * exposition (metrics.ts) and the live view (admin.ts) read these numbers when they are asked.
 *
 * Why not prom-client's own Counter and Histogram on the hot path: their `observe`/`inc` validate
 * and hash the label set on every call (an object and a string per call); at 200,000 requests a
 * second that alone costs more than the 10 % the metrics may cost. A request here is: one Map
 * lookup for its method (bounded: peer-chosen strings cannot grow it) and a few additions; a timed
 * one adds a clock reading at start and at the end and a bucket found by a short linear scan.
 * Every request is counted; above 10,000 a second per side one in `every` is timed, its timing
 * weighted by `every` (SideStats.every), since the clock readings are most of the cost.
 */

import type { CloseInfo } from '../connection/close-reason.js';
import type { RefusalInfo } from '../server/admission.js';
import { channels, type RequestTrace } from '../util/channels.js';
import { now } from '../util/clock.js';

/** Request duration buckets, seconds (a loopback echo is ~50 µs, a slow handler seconds). */
export const DURATION_BUCKETS: readonly number[] = [
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
];
/** Heartbeat round-trip buckets, seconds. */
export const RTT_BUCKETS: readonly number[] = [
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
];

/** Timings taken per second and side before they are sampled (SideStats.every). */
export const TIMED_PER_SECOND = 10_000;

/** The refusal reasons decided at admission: such a connection was served (its GOAWAY) first. */
const ADMISSION_REFUSALS: ReadonlySet<string> = new Set([
  'max-connections',
  'accept-rate',
  'max-connections-per-address',
  'connection-rate',
  'shutting-down',
]);

/** The label value that stands for every value past a table's cap. */
export const OTHER = 'other';

/** A cumulative histogram with fixed bounds; `counts[i]` holds observations in (bounds[i-1], bounds[i]]. */
export class Histogram {
  readonly counts: Float64Array;
  sum = 0;
  count = 0;
  constructor(readonly bounds: readonly number[]) {
    this.counts = new Float64Array(bounds.length);
  }
  /** One observation of `v`, standing for `weight` of them (a sampled timing: see SideStats.every). */
  observe(v: number, weight = 1): void {
    const b = this.bounds;
    let i = 0;
    while (i < b.length && v > (b[i] as number)) i++;
    if (i < b.length) this.counts[i] = (this.counts[i] as number) + weight;
    this.sum += v * weight;
    this.count += weight;
  }
}

/**
 * A map from a label value to its record, holding at most `max` distinct values; later ones share
 * the record of `other`. Method names and error codes are chosen by peers: without a cap a client
 * could make the metrics grow without end (one series per method it invents).
 */
export class BoundedTable<T> {
  readonly entries = new Map<string, T>();
  constructor(
    readonly max: number,
    private readonly make: () => T,
  ) {}
  get(key: string): T {
    let v = this.entries.get(key);
    if (v !== undefined) return v;
    const k = this.entries.size >= this.max && key !== OTHER ? OTHER : key;
    v = this.entries.get(k);
    if (v === undefined) {
      v = this.make();
      this.entries.set(k, v);
    }
    return v;
  }
}

/** One method's requests: durations, and counts by outcome code. */
export class MethodStats {
  readonly durations = new Histogram(DURATION_BUCKETS);
  /** Requests that succeeded (the common case: a field, not a lookup in `codes`). */
  ok = 0;
  /** Requests that failed, by error code. */
  readonly codes: BoundedTable<{ n: number }>;
  constructor(maxCodes: number) {
    this.codes = new BoundedTable(maxCodes, () => ({ n: 0 }));
  }
}

/**
 * The last ten seconds, one slot per second, each a histogram of microseconds in HDR style (eight
 * linear sub-buckets per power of two, found with integer operations: no logarithm per request):
 * the live view's rate and p50/p99 over the last complete seconds, within 7 % (half a
 * microsecond below 8 µs).
 */
export class LiveWindow {
  private static readonly SLOTS = 10;
  /** Values 0–7 µs get a bucket each, then 8 per power of two up to 2^31 µs (35 min). */
  private static readonly BUCKETS = 232;
  private readonly seconds = new Float64Array(LiveWindow.SLOTS).fill(-1);
  private readonly totals = new Float64Array(LiveWindow.SLOTS);
  private readonly slots: Float64Array[] = Array.from(
    { length: LiveWindow.SLOTS },
    () => new Float64Array(LiveWindow.BUCKETS),
  );

  /** One value (seconds) at time `tMs` (the clock of util/clock.ts), standing for `weight` of them. */
  record(tMs: number, valueS: number, weight = 1): void {
    const sec = Math.floor(tMs / 1000);
    const i = sec % LiveWindow.SLOTS;
    const slot = this.slots[i] as Float64Array;
    if (this.seconds[i] !== sec) {
      this.seconds[i] = sec;
      this.totals[i] = 0;
      slot.fill(0);
    }
    this.totals[i] = (this.totals[i] as number) + weight;
    const k = bucketOf(valueS);
    slot[k] = (slot[k] as number) + weight;
  }

  /**
   * Over the `seconds` complete seconds before `tMs`: how many per second, and the median and 99th
   * percentile in seconds (undefined when there were none).
   */
  query(tMs: number, seconds = 1): { rate: number; p50: number | undefined; p99: number | undefined } {
    const cur = Math.floor(tMs / 1000);
    const n = Math.max(1, Math.min(seconds, LiveWindow.SLOTS - 1));
    const merged = new Float64Array(LiveWindow.BUCKETS);
    let total = 0;
    for (let s = cur - n; s < cur; s++) {
      const i = ((s % LiveWindow.SLOTS) + LiveWindow.SLOTS) % LiveWindow.SLOTS;
      if (this.seconds[i] !== s) continue;
      total += this.totals[i] as number;
      const slot = this.slots[i] as Float64Array;
      for (let k = 0; k < LiveWindow.BUCKETS; k++) merged[k] = (merged[k] as number) + (slot[k] as number);
    }
    return { rate: total / n, p50: quantile(merged, total, 0.5), p99: quantile(merged, total, 0.99) };
  }
}

/** The LiveWindow bucket of a value in seconds. */
export function bucketOf(valueS: number): number {
  const us = valueS >= 2147 ? 0x7fff_ffff : valueS <= 0 ? 0 : Math.floor(valueS * 1e6);
  if (us < 8) return us;
  const octave = 31 - Math.clz32(us); // 3 … 30
  return (octave - 2) * 8 + ((us >>> (octave - 3)) & 7);
}

/** The middle of a LiveWindow bucket, in seconds. */
export function bucketMiddle(k: number): number {
  if (k < 8) return (k + 0.5) / 1e6;
  const octave = (k >> 3) + 2;
  const width = 2 ** (octave - 3);
  return ((8 + (k & 7)) * width + width / 2) / 1e6;
}

/** The value at quantile q of a LiveWindow histogram. */
function quantile(buckets: Float64Array, total: number, q: number): number | undefined {
  if (total === 0) return undefined;
  const rank = Math.max(1, Math.ceil(q * total));
  let seen = 0;
  for (let k = 0; k < buckets.length; k++) {
    seen += buckets[k] as number;
    if (seen >= rank) return bucketMiddle(k);
  }
  return undefined;
}

/** One side's requests (the server's handlers, or the client's requests). */
export class SideStats {
  readonly methods: BoundedTable<MethodStats>;
  /** Requests started and not yet ended (that this recorder saw start). */
  inflight = 0;
  /** Requests ended, all methods. */
  total = 0;
  readonly live = new LiveWindow();
  /** Whether `live` is fed (the live view asks for it; metrics alone do not need it). */
  liveOn = false;
  /**
   * One request in `every` is timed, and its timing stands for `every` of them. A timing is two
   * clock readings (40–110 ns each on the machines we measure: the largest part of what the
   * metrics cost a request); above TIMED_PER_SECOND requests a second there is no need for more
   * of them. Adjusted once a second; 1 (every request timed) below that rate, at most 64.
   */
  every = 1;
  /** Requests started, for choosing the timed ones. */
  seq = 0;
  /** `total` at the last adjustment. */
  totalBefore = 0;
  constructor(maxMethods: number, maxCodes: number) {
    this.methods = new BoundedTable(maxMethods, () => new MethodStats(maxCodes));
  }
}

/** The code a failed request ended with: the error's string code, or ERR_HANDLER (what the server answers for a plain throw). */
function outcome(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code.length > 0 && code.length <= 64 ? code : 'ERR_HANDLER';
}

/** Where a Recorder keeps its stamp on a trace (a symbol per recorder: two recorders never mix). */
type Stamped = RequestTrace & { [k: symbol]: number | undefined };

export interface RecorderOptions {
  /** Distinct method labels kept per side; the rest count as `other`. Default 100. */
  maxMethods?: number;
  /** Distinct outcome codes kept per method; the rest count as `other`. Default 20. */
  maxCodes?: number;
}

const noop = (): void => {};

/** Counts by a closed set of keys (close reasons, refusal reasons). */
export type Counts = Map<string, number>;

function bump(m: Counts, key: string, by = 1): void {
  m.set(key, (m.get(key) ?? 0) + by);
}

/**
 * Subscribes to every longlink channel while open; `close()` unsubscribes (and with no other
 * subscriber, publishers go back to doing nothing). Counts are process-wide: the channels carry
 * every server's and client's events.
 */
export class Recorder {
  readonly server: SideStats;
  readonly client: SideStats;
  /** Connections servers started serving (server:connection), refused at admission ones included. */
  opened = 0;
  /** Of those, refused at admission (served only their GOAWAY). */
  admissionRefused = 0;
  /** Refusals by reason. */
  readonly refused: Counts = new Map();
  /** Closes by `reason` + ' ' + `initiator`. */
  readonly closes: Counts = new Map();
  /** Bytes read and written by connections that closed. */
  closedBytesRead = 0;
  closedBytesWritten = 0;
  readonly rtt = new Histogram(RTT_BUCKETS);
  readonly rttLive = new LiveWindow();
  private closed = false;
  private readonly adapter: NodeJS.Timeout;
  private readonly kStart = Symbol('longlink.observe.start');
  private readonly serverHandlers;
  private readonly clientHandlers;

  constructor(options: RecorderOptions = {}) {
    const maxMethods = options.maxMethods ?? 100;
    const maxCodes = options.maxCodes ?? 20;
    this.server = new SideStats(maxMethods, maxCodes);
    this.client = new SideStats(maxMethods, maxCodes);
    this.serverHandlers = this.handlers(this.server);
    this.clientHandlers = this.handlers(this.client);
    channels.serverRequest.subscribe(this.serverHandlers);
    channels.clientRequest.subscribe(this.clientHandlers);
    channels.serverConnection.subscribe(this.onServerConnection);
    channels.serverRefused.subscribe(this.onRefused);
    channels.connectionClose.subscribe(this.onClose);
    channels.heartbeatRtt.subscribe(this.onRtt);
    this.adapter = setInterval(() => this.adapt(), 1000);
    this.adapter.unref();
  }

  /** Feeds the live windows from now on (the admin endpoint's per-second rates and percentiles). */
  startLive(): void {
    this.server.liveOn = true;
    this.client.liveOn = true;
  }

  /** Connections servers accepted and served (admitted): opened minus refused at admission. */
  get accepted(): number {
    return this.opened - this.admissionRefused;
  }

  private handlers(side: SideStats) {
    const k = this.kStart;
    const finish = (t: Stamped): void => {
      const t0 = t[k];
      if (t0 === undefined) return; // started before this recorder subscribed
      t[k] = undefined;
      side.inflight--;
      side.total++;
      const m = side.methods.get(t.method);
      if (t.error === undefined) m.ok++;
      else m.codes.get(outcome(t.error)).n++;
      if (t0 < 0) return; // counted, not timed: a timed one stands for it
      const t1 = now();
      const seconds = (t1 - t0) / 1000;
      m.durations.observe(seconds, side.every);
      if (side.liveOn) side.live.record(t1, seconds, side.every);
    };
    return {
      start: (msg: RequestTrace): void => {
        (msg as Stamped)[k] = side.every === 1 || ++side.seq % side.every === 0 ? now() : -1;
        side.inflight++;
      },
      // The server publishes `end` after a handler returned; a promise ends at asyncEnd instead.
      end: (msg: RequestTrace): void => {
        if (msg.async !== true) finish(msg as Stamped);
      },
      asyncEnd: (msg: RequestTrace): void => finish(msg as Stamped),
      // Node's types want all five; the outcome is read from `msg.error` at the end.
      asyncStart: noop,
      error: noop,
    };
  }

  /** @internal Once a second: how many requests to time (SideStats.every), from the last second's rate. */
  adapt(): void {
    for (const side of [this.server, this.client]) {
      const rate = side.total - side.totalBefore;
      side.totalBefore = side.total;
      let every = 1;
      while (every < 64 && rate / every > TIMED_PER_SECOND) every *= 2;
      side.every = every;
    }
  }

  private readonly onServerConnection = (): void => {
    this.opened++;
  };

  private readonly onRefused = (message: unknown): void => {
    const r = (message as { refusal: RefusalInfo }).refusal;
    bump(this.refused, r.reason);
    if (ADMISSION_REFUSALS.has(r.reason)) this.admissionRefused++;
  };

  private readonly onClose = (message: unknown): void => {
    const info = (message as { info: CloseInfo }).info;
    bump(this.closes, `${info.reason} ${info.initiator}`);
    this.closedBytesRead += info.bytesRead;
    this.closedBytesWritten += info.bytesWritten;
  };

  private readonly onRtt = (message: unknown): void => {
    const rttS = (message as { rttMs: number }).rttMs / 1000;
    this.rtt.observe(rttS);
    this.rttLive.record(now(), rttS);
  };

  /** Unsubscribes from every channel. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.adapter);
    channels.serverRequest.unsubscribe(this.serverHandlers);
    channels.clientRequest.unsubscribe(this.clientHandlers);
    channels.serverConnection.unsubscribe(this.onServerConnection);
    channels.serverRefused.unsubscribe(this.onRefused);
    channels.connectionClose.unsubscribe(this.onClose);
    channels.heartbeatRtt.unsubscribe(this.onRtt);
  }
}
