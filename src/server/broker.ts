/**
 * The broker behind rooms: what carries a room push from the server that publishes it to every
 * server with members in the room, gives it its per-room sequence, and keeps the room's recent
 * history for clients that come back after a cut. An adapter is a server-side plugin: this file
 * holds its contract (`Broker`) and the in-process one (`memoryBroker`, the default); the Redis
 * one is `redisBroker` in src/broker/redis.ts, a layer above, since it loads a client library.
 *
 * The contract, for an adapter's author:
 *
 * - `publish(room, topic, payload)` assigns the push the room's next sequence number, appends it
 *   to the room's history, and hands it to every attached server subscribed to the room — this one
 *   included — through `sink.deliver`, in sequence order per room. It resolves with the seq.
 * - Each entry carries `prev`, the seq of the push before it in the room: `seq − 1`, or 0 for the
 *   first push of a room's history (a room seen for the first time, or a broker that lost its
 *   state). Seqs only ever grow, also across such a loss: the first seq of a room is derived
 *   from the clock (ms × 1024), above any seq the room had before. `prev` is what lets a server
 *   see a hole: an entry whose prev is not the last seq it delivered.
 * - `history(room, after, limit)` returns the room's head (its last seq, 0 for none) and the
 *   retained entries with seq > `after`, oldest first, at most `limit` (the newest ones when more
 *   are retained). Atomic: the head and the entries are one snapshot.
 * - A broker that may have lost deliveries (a dropped subscription connection) calls
 *   `sink.resync()` once it is back: the server then reads each room's history for what it missed.
 */

import { BrokerUnavailableError, InvalidArgumentError } from '../errors.js';

/** One push in a room's history. */
export interface BrokerEntry {
  /** Its sequence in the room. */
  readonly seq: number;
  /** The seq of the push before it in the room; 0 when it opens the room's history. */
  readonly prev: number;
  readonly topic: string;
  /** The payload, encoded with the broker codec (json). */
  readonly payload: Buffer;
}

/** A snapshot of a room: its head and the retained entries after some seq. */
export interface BrokerHistory {
  /** The room's last seq (0: nothing published yet, or the broker lost it). */
  readonly head: number;
  /** Entries with seq > the `after` asked for, oldest first. */
  readonly entries: readonly BrokerEntry[];
}

/** What a broker calls on the server it is attached to. */
export interface BrokerSink {
  /** A push for `room` (one this server subscribed to), in seq order per room. */
  deliver(room: string, entry: BrokerEntry): void;
  /** A push addressed to an identity this server subscribed to. */
  identity(key: string, topic: string, payload: Buffer): void;
  /** Deliveries may have been lost (a subscription dropped and is back): re-read every room's history. */
  resync(): void;
  /** Members of `room` on this server (for counts across servers on one process). */
  localCount(room: string): number;
}

/** What a broker adapter does for one server. See the file comment for the contract. */
export interface Broker {
  /** A name for logs: `memory`, `redis://127.0.0.1:6379`. */
  readonly name: string;
  /** Called once by the server that uses this broker, before anything else. */
  attach(sink: BrokerSink): void;
  publish(room: string, topic: string, payload: Buffer): Promise<number>;
  /** Start handing this server the room's pushes; resolves once none can be missed from now on. */
  subscribe(room: string): Promise<void>;
  unsubscribe(room: string): void;
  history(room: string, after: number, limit: number): Promise<BrokerHistory>;
  publishIdentity(key: string, topic: string, payload: Buffer): Promise<void>;
  subscribeIdentity(key: string): void;
  unsubscribeIdentity(key: string): void;
  /** Members of the room on every server using this broker; `local` is this server's count. */
  count(room: string, local: number): Promise<number>;
  /** This server's member count of `room` changed (read it with `sink.localCount`). */
  membersChanged?(room: string): void;
  /** Detaches from the server and releases what the adapter holds (connections). Idempotent. */
  close(): Promise<void>;
}

/** How much of each room's history a broker keeps (for clients that resume). */
export interface HistoryRetention {
  /** Entries kept per room (the newest). Default 1 000. */
  maxLength?: number;
  /** Entries older than this are dropped, ms. Default 300 000 (5 min); 0: no age limit. */
  maxAgeMs?: number;
}

/** Defaults of {@link HistoryRetention}. */
export const HISTORY_DEFAULTS = { maxLength: 1000, maxAgeMs: 300_000 } as const;

/** Checks a retention; returns it with its defaults filled in. */
export function checkRetention(r: HistoryRetention | undefined): Required<HistoryRetention> {
  const maxLength = r?.maxLength ?? HISTORY_DEFAULTS.maxLength;
  const maxAgeMs = r?.maxAgeMs ?? HISTORY_DEFAULTS.maxAgeMs;
  if (!Number.isInteger(maxLength) || maxLength < 1 || maxLength > 1_000_000) {
    throw new InvalidArgumentError(`history.maxLength must be an integer in [1, 1000000], got ${maxLength}`);
  }
  if (!Number.isInteger(maxAgeMs) || maxAgeMs < 0) {
    throw new InvalidArgumentError(`history.maxAgeMs must be an integer ≥ 0, got ${maxAgeMs}`);
  }
  return { maxLength, maxAgeMs };
}

/**
 * The first seq of a room's history: the clock in ms × 1024, so it is above every seq the room
 * had before (a room cannot take 1024 pushes a millisecond for long: one broker does fewer than
 * that in total). Below 2^53 until the year 2248.
 */
export function firstSeq(nowMs: number): number {
  return Math.floor(nowMs) * 1024 + 1;
}

interface MemoryRoom {
  head: number;
  /** Entries with their time, oldest first; a ring would save the shift, the bound keeps it small. */
  entries: BrokerEntry[];
  times: number[];
  start: number;
}

/**
 * Rooms, history and identities in this process: the default broker of a server (one server:
 * pushes stay in it) and a way to run several servers in one process as if they were nodes
 * (tests). History is bounded by `retention` like the Redis adapter's.
 *
 * @example
 * ```ts
 * const hub = new MemoryBrokerHub();
 * const a = createServer({ handlers, broker: hub.broker() });
 * const b = createServer({ handlers, broker: hub.broker() }); // a push to a room reaches both
 * ```
 */
export class MemoryBrokerHub {
  private readonly rooms = new Map<string, MemoryRoom>();
  private readonly brokers = new Set<MemoryBroker>();
  readonly retention: Required<HistoryRetention>;
  /** @internal The clock (ms), for tests of the age limit. */
  now: () => number = Date.now;

  constructor(retention?: HistoryRetention) {
    this.retention = checkRetention(retention);
  }

  /** A broker for one server. */
  broker(): Broker {
    return new MemoryBroker(this);
  }

  /** @internal */
  add(b: MemoryBroker): void {
    this.brokers.add(b);
  }

  /** @internal */
  remove(b: MemoryBroker): void {
    this.brokers.delete(b);
  }

  /** @internal */
  publish(room: string, topic: string, payload: Buffer): number {
    const now = this.now();
    let r = this.rooms.get(room);
    if (r === undefined) {
      r = { head: 0, entries: [], times: [], start: 0 };
      this.rooms.set(room, r);
    }
    const seq = r.head === 0 ? firstSeq(now) : r.head + 1;
    const entry: BrokerEntry = { seq, prev: r.head, topic, payload };
    r.head = seq;
    r.entries.push(entry);
    r.times.push(now);
    this.trim(r, now);
    for (const b of this.brokers) b.deliver(room, entry);
    return seq;
  }

  private trim(r: MemoryRoom, now: number): void {
    const { maxLength, maxAgeMs } = this.retention;
    let drop = Math.max(0, r.entries.length - maxLength);
    if (maxAgeMs > 0) while (drop < r.times.length && (r.times[drop] as number) < now - maxAgeMs) drop++;
    if (drop > 0) {
      r.entries.splice(0, drop);
      r.times.splice(0, drop);
    }
  }

  /** @internal */
  history(room: string, after: number, limit: number): BrokerHistory {
    const r = this.rooms.get(room);
    if (r === undefined) return { head: 0, entries: [] };
    this.trim(r, this.now());
    let i = r.entries.length;
    while (i > 0 && (r.entries[i - 1] as BrokerEntry).seq > after) i--;
    const from = Math.max(i, r.entries.length - limit);
    return { head: r.head, entries: r.entries.slice(from) };
  }

  /** @internal */
  identity(key: string, topic: string, payload: Buffer): void {
    for (const b of this.brokers) b.identity(key, topic, payload);
  }

  /** @internal */
  count(room: string): number {
    let n = 0;
    for (const b of this.brokers) n += b.localCount(room);
    return n;
  }

  /** Forgets every room's history and head, as a broker restarted without persistence would. */
  reset(): void {
    this.rooms.clear();
  }
}

class MemoryBroker implements Broker {
  readonly name = 'memory';
  private sink: BrokerSink | undefined;
  private readonly subscribed = new Set<string>();
  private readonly identities = new Set<string>();
  private closed = false;

  constructor(private readonly hub: MemoryBrokerHub) {}

  attach(sink: BrokerSink): void {
    if (this.sink !== undefined) throw new InvalidArgumentError('a broker serves one server');
    this.sink = sink;
    this.hub.add(this);
  }

  deliver(room: string, entry: BrokerEntry): void {
    if (this.subscribed.has(room)) this.sink?.deliver(room, entry);
  }

  identity(key: string, topic: string, payload: Buffer): void {
    if (this.identities.has(key)) this.sink?.identity(key, topic, payload);
  }

  localCount(room: string): number {
    return this.sink?.localCount(room) ?? 0;
  }

  publish(room: string, topic: string, payload: Buffer): Promise<number> {
    if (this.closed) return Promise.reject(new BrokerUnavailableError('broker closed', false));
    return Promise.resolve(this.hub.publish(room, topic, payload));
  }

  subscribe(room: string): Promise<void> {
    this.subscribed.add(room);
    return Promise.resolve();
  }

  unsubscribe(room: string): void {
    this.subscribed.delete(room);
  }

  history(room: string, after: number, limit: number): Promise<BrokerHistory> {
    return Promise.resolve(this.hub.history(room, after, limit));
  }

  publishIdentity(key: string, topic: string, payload: Buffer): Promise<void> {
    if (this.closed) return Promise.reject(new BrokerUnavailableError('broker closed', false));
    this.hub.identity(key, topic, payload);
    return Promise.resolve();
  }

  subscribeIdentity(key: string): void {
    this.identities.add(key);
  }

  unsubscribeIdentity(key: string): void {
    this.identities.delete(key);
  }

  count(room: string): Promise<number> {
    return Promise.resolve(this.hub.count(room));
  }

  close(): Promise<void> {
    this.closed = true;
    this.hub.remove(this);
    this.subscribed.clear();
    this.identities.clear();
    return Promise.resolve();
  }
}

/** A broker for one server alone: pushes stay in this process, history in its memory. */
export function memoryBroker(retention?: HistoryRetention): Broker {
  return new MemoryBrokerHub(retention).broker();
}
