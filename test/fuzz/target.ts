/**
 * The server under test: the edge fixture (test/fixtures/edge/server.mjs) in its own process with
 * `trace` on. Its JSON lines are dispatched as they arrive: each fuzz connection comes from
 * 127.0.0.2 and is matched to its server-side id by the fixture's 'open' event (FIFO per port, so
 * a port the kernel reuses while the old connection is still being closed cannot be confused),
 * then to its 'disconnect' by id. Legitimate clients connect from 127.0.0.1 and are only counted.
 */

import { once } from 'node:events';
import { setTimeout as delay } from 'node:timers/promises';
import { type Client, connect } from '../../src/client/client.js';
import { parseFraming } from '../../src/codec/parse.js';
import { Connection } from '../../src/connection/connection.js';
import type { Fixture, FixtureEvent } from '../faults/harness.js';
import { rssOf, startEdgeServer } from '../server/edge-harness.js';
import { ALL_REASONS, fixtureOptions, type Group, LEGACY_LIMITS } from './model.js';

/** The address fuzz clients connect from (legitimate clients use 127.0.0.1). */
export const FUZZ_ADDRESS = '127.0.0.2';

/**
 * Protocol: ['i', kind, id, method, writable, ready, goawaySent, …] | ['o', kind, id, code] |
 * ['h', id] (a handler ran); legacy: ['i', len, writable] | ['o', len]. See the fixture.
 */
export type TraceEntry = ['i' | 'o' | 'h', ...Array<number | string>];

export interface Disconnect {
  reason: string;
  code: string | undefined;
  id: string;
  initiator: string;
  graceful: boolean;
  framesRead: number;
  bytesRead: number;
  trace: TraceEntry[];
  truncated?: boolean;
}

interface Waiter {
  port: number;
  id: string | undefined;
  resolve(d: Disconnect): void;
  /** Called once the server announced the connection ('open'). */
  opened(): void;
}

/** A fuzz connection as the server will report it. */
export interface Watch {
  /** The server accepted it (and knows its peer's address). */
  opened: Promise<void>;
  /** The server closed it. */
  closed: Promise<Disconnect>;
}

export interface ServerStatsEvent {
  connections: number;
  accepting: number;
  inflight: number;
  handlerErrors: number;
  closed: Record<string, number>;
  memory: { usedBytes: number; limitBytes: number; shed: number };
  rss: number;
  heap: number;
}

export class Target {
  readonly fixture: Fixture;
  readonly port: number;
  readonly pid: number;
  /** RSS once started and warmed up (set by the campaign after its first probe). */
  baselineRss = 0;
  peakRss = 0;
  /** Connections the server opened and closed, fuzz and legitimate. */
  opened = 0;
  closed = 0;
  /** Closes by reason, over every connection. */
  readonly reasons: Record<string, number> = {};
  /** Close events of legitimate connections whose reason is not a CloseReason (should stay empty). */
  readonly badReasons: string[] = [];
  handlerErrors = 0;
  /** Connections open on the server right now: id → who (for a report of what never closed). */
  readonly open = new Map<string, string>();
  private readonly unbound = new Map<number, Waiter[]>();
  private readonly bound = new Map<string, Waiter>();
  /** 'open' events of fuzz connections that came before their waiter (ids, oldest first, per port). */
  private readonly early = new Map<number, string[]>();
  /** Disconnects of those early connections, kept until their waiter comes. */
  private readonly earlyEnds = new Map<string, Disconnect>();
  private statsWaiter: ((s: ServerStatsEvent) => void) | undefined;
  private client: Client | undefined;
  private legacyConn: Connection | undefined;
  private probes = 0;

  private constructor(
    readonly group: Group,
    started: { fixture: Fixture; port: number; pid: number },
  ) {
    this.fixture = started.fixture;
    this.port = started.port;
    this.pid = started.pid;
    // The Fixture parses lines into `events` first (its listener came first); take them from there.
    this.fixture.proc.stdout?.on('data', () => this.dispatch());
    this.dispatch();
  }

  /** Starts the server; it exits by itself after `lifeMs` (a safety net should this process die). */
  static async start(group: Group, lifeMs = 10 * 60_000): Promise<Target> {
    const t = new Target(group, await startEdgeServer({ ...fixtureOptions(group), lifeMs }));
    t.baselineRss = rssOf(t.pid);
    t.peakRss = t.baselineRss;
    return t;
  }

  get alive(): boolean {
    return this.fixture.proc.exitCode === null && this.fixture.proc.signalCode === null;
  }

  /** Why the server is gone, for a report. */
  deathNote(): string {
    const p = this.fixture.proc;
    return `server exited (code ${p.exitCode}, signal ${p.signalCode}); stderr:\n${this.fixture.stderr.join('').slice(-4000)}`;
  }

  sampleRss(): number {
    if (!this.alive) return this.peakRss;
    const rss = rssOf(this.pid);
    if (rss > this.peakRss) this.peakRss = rss;
    return rss;
  }

  /** The server's account of the fuzz connection from this local port: accepted, then closed. */
  watch(port: number): Watch {
    let opened!: () => void;
    const openedP = new Promise<void>((resolve) => {
      opened = resolve;
    });
    const closed = new Promise<Disconnect>((resolve) => {
      const w: Waiter = { port, id: undefined, resolve, opened };
      const ids = this.early.get(port);
      if (ids !== undefined) {
        w.id = ids.shift() as string;
        if (ids.length === 0) this.early.delete(port);
        opened();
        const ended = this.earlyEnds.get(w.id);
        if (ended !== undefined) {
          this.earlyEnds.delete(w.id);
          resolve(ended);
          return;
        }
        this.bound.set(w.id, w);
        return;
      }
      const q = this.unbound.get(port);
      if (q === undefined) this.unbound.set(port, [w]);
      else q.push(w);
    });
    return { opened: openedP, closed };
  }

  /** Forgets a waiter whose connection never reached the server (a failed connect). */
  forget(port: number): void {
    this.unbound.delete(port);
  }

  /** The server's own counters (its `stats()`), asked over the fixture's stdin. */
  async serverStats(timeoutMs = 10_000): Promise<ServerStatsEvent> {
    const p = new Promise<ServerStatsEvent>((resolve) => {
      this.statsWaiter = resolve;
    });
    this.fixture.send('stats');
    const r = await Promise.race([p, delay(timeoutMs, undefined, { ref: false })]);
    if (r === undefined) throw new Error(`no stats from the server within ${timeoutMs} ms`);
    return r;
  }

  /**
   * A legitimate client is served: the library's `connect` (protocol) or a Connection with the
   * group's framing (legacy) sends one request and must get its answer. The client stays open
   * between probes (a long-lived connection through the whole run); `fresh` opens a new one.
   */
  async probe(fresh = false, timeoutMs = 10_000): Promise<void> {
    const n = ++this.probes;
    const work = async () => {
      if (this.group.kind === 'protocol') {
        if (fresh || this.client === undefined) {
          this.client?.destroy();
          this.client = await connect({ port: this.port, reconnect: false, connectTimeoutMs: timeoutMs });
        }
        const got = await this.client.request('echo', { probe: n }, { timeoutMs });
        if ((got as { probe?: number }).probe !== n)
          throw new Error(`probe ${n}: wrong answer ${JSON.stringify(got)}`);
        return;
      }
      if (fresh || this.legacyConn === undefined || !this.legacyConn.writable) {
        this.legacyConn?.abort();
        this.legacyConn = await Connection.connect({
          port: this.port,
          host: '127.0.0.1',
          framing: parseFraming(this.group.framing, { maxFrameLength: LEGACY_LIMITS.maxFrameLength }),
        });
      }
      const c = this.legacyConn;
      const payload = this.group.json ? JSON.stringify({ probe: n }) : `probe-${n}`;
      const answer = once(c, 'frame') as Promise<[Buffer]>;
      c.send(Buffer.from(payload));
      const [frame] = await answer;
      if (frame.toString() !== payload) throw new Error(`probe ${n}: wrong echo ${frame.toString()}`);
    };
    const outcome = await Promise.race([
      work().then(
        () => undefined,
        (err: unknown) => `probe ${n} failed: ${(err as Error)?.message ?? String(err)}`,
      ),
      delay(timeoutMs + 1000, `probe ${n}: no answer within ${timeoutMs} ms`, { ref: false }),
    ]);
    if (outcome !== undefined) throw new Error(`legitimate client not served: ${outcome}`);
  }

  /** Closes the legitimate clients (their disconnects are counted as they arrive). */
  async closeClients(): Promise<void> {
    await this.client?.close({ graceMs: 1000 });
    this.client = undefined;
    if (this.legacyConn !== undefined) await this.legacyConn.close({ timeoutMs: 2000 }).catch(() => {});
    this.legacyConn = undefined;
  }

  /** SIGTERM: the fixture closes gracefully and exits 0. Returns its exit code. */
  async stop(): Promise<number | null> {
    this.client?.destroy();
    this.legacyConn?.abort();
    if (!this.alive) return this.fixture.proc.exitCode;
    this.fixture.kill('SIGTERM');
    const code = await Promise.race([this.fixture.exited, delay(10_000, 'timeout' as const, { ref: false })]);
    if (code === 'timeout') {
      this.fixture.kill('SIGKILL');
      return null;
    }
    return code;
  }

  kill(): void {
    this.client?.destroy();
    this.legacyConn?.abort();
    this.fixture.kill('SIGKILL');
  }

  private dispatch(): void {
    const events = this.fixture.events.splice(0);
    for (const e of events) this.handle(e);
  }

  private handle(e: FixtureEvent): void {
    switch (e.ev) {
      case 'open': {
        this.opened++;
        this.open.set(e.id as string, `${e.addr}:${e.port}`);
        if (e.addr !== FUZZ_ADDRESS) return;
        const port = e.port as number;
        const q = this.unbound.get(port);
        const w = q?.shift();
        if (q !== undefined && q.length === 0) this.unbound.delete(port);
        if (w === undefined) {
          const ids = this.early.get(port);
          if (ids === undefined) this.early.set(port, [e.id as string]);
          else ids.push(e.id as string);
          return;
        }
        w.id = e.id as string;
        this.bound.set(w.id, w);
        w.opened();
        return;
      }
      case 'disconnect': {
        this.closed++;
        this.open.delete(e.id as string);
        const reason = String(e.reason);
        this.reasons[reason] = (this.reasons[reason] ?? 0) + 1;
        const w = this.bound.get(e.id as string);
        if (w === undefined) {
          const id = e.id as string;
          if ([...this.early.values()].some((ids) => ids.includes(id)))
            this.earlyEnds.set(id, e as unknown as Disconnect);
          else if (!ALL_REASONS.has(reason)) this.badReasons.push(reason);
          return;
        }
        this.bound.delete(e.id as string);
        w.resolve(e as unknown as Disconnect);
        return;
      }
      case 'stats': {
        const s = this.statsWaiter;
        this.statsWaiter = undefined;
        s?.(e as unknown as ServerStatsEvent);
        return;
      }
      case 'handlerError':
        this.handlerErrors++;
        return;
      default:
        return;
    }
  }
}
