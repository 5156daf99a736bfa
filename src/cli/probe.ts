/**
 * `longlink probe`: how long may a connection stay silent on this path before something on it — a
 * NAT, a load balancer, a firewall, a proxy — drops it? Then: which heartbeat keeps it open.
 *
 * How it measures. Each probe connection opens, exchanges one message with the far end (a longlink
 * HELLO, or one frame echoed back), and then stays silent for its own target time. At the target it
 * writes one probe (a PING, or the frame again) and needs the answer within `answerMs`. Three
 * things can happen to it:
 *
 *   survived  the answer came: the path carries a flow idle that long          → lower bound
 *   closed    the path ended the flow while it was idle (FIN or RST arrived):   → the timeout itself,
 *             proxies such as nginx (proxy_timeout) and haproxy (timeout client/server) do this
 *   cut       the probe got a reset, or no answer within answerMs: the flow     → upper bound
 *             was dropped silently at some point before (a NAT or stateful firewall that forgot it)
 *
 * A connection tests one idle time, so many run in parallel:
 *
 *   round 1   a geometric ladder of targets from --min-idle to --max-idle (32 by default: each
 *             about 1.26 × the one before). The first close gives the answer outright; otherwise
 *             the shortest cut and the longest survivor bracket it, and targets above the cut are
 *             dropped at once.
 *   round 2+  targets spread evenly inside the bracket (16 by default), each round shrinking it
 *             ~17×, until it is within 2 % (or 50 ms), 4 rounds, or the time budget.
 *
 * So a path that closes at T answers in about T; a silent one in about 2.5 T. Every round runs
 * only if it can finish within the budget: 2 × --max-idle + 10 s from the start.
 *
 * The far end must answer and otherwise stay silent: a longlink server without a heartbeat of
 * its own (`longlink serve --heartbeat off --keepalive off`), or with --framing SPEC any echo for
 * that framing (`longlink serve --framing line --idle-timeout 0`, or an RFC 862 echo / `socat …
 * EXEC:cat` with --framing line). A peer that speaks while we are silent (its own PINGs) keeps
 * the path alive: the probe notices, says so, and cannot measure past it. TCP keepalive is off on
 * the probe's sockets, since keepalive packets refresh a NAT's idle timer (not a proxy's).
 *
 * This file holds the probe connections and the rounds; the plan (ladder, bracket, recommendation)
 * is in probe-plan.ts, the command line in probe-command.ts.
 */

import { setMaxListeners } from 'node:events';
import type tls from 'node:tls';
import { parseFraming } from '../codec/parse.js';
import type { Framing } from '../codec/types.js';
import type { CloseInfo } from '../connection/close-reason.js';
import { Connection } from '../connection/connection.js';
import { MessageKind, PROTOCOL_VERSION } from '../protocol/types.js';
import { decodeMessage, encodeMessage } from '../protocol/wire.js';
import { endpoint } from './args.js';
import { explain } from './explain.js';
import {
  Bracket,
  between,
  type Finding,
  ladder,
  type Outcome,
  type Recommendation,
  recommend,
} from './probe-plan.js';

// ---------------------------------------------------------------------------------------------
// One probe connection

/** What the probe speaks: the longlink protocol (HELLO, then PING/PONG), or one framing's frames. */
export type Dialect =
  | { kind: 'longlink'; credential?: string }
  | { kind: 'plain'; framing: Framing; frame: Buffer };

export interface ProbeOptions {
  host: string;
  port: number;
  dialect: Dialect;
  tls?: tls.ConnectionOptions;
  minIdleMs: number;
  maxIdleMs: number;
  /** Connections in the first round (the ladder); later rounds use half as many (at least 4). */
  connections: number;
  /** A probe needs its answer within this. */
  answerMs: number;
  connectTimeoutMs: number;
  /** Stop bisecting when the bracket is within this fraction (default 0.02). */
  precision?: number;
  /** Most rounds (default 4). */
  maxRounds?: number;
  onEvent?: (e: ProbeEvent) => void;
}

export type ProbeEvent =
  | { type: 'round'; round: number; targets: number[] }
  | { type: 'outcome'; target: number; outcome: Outcome; bracket: Bracket };

const LONGLINK_FRAMING = parseFraming('u32be', { maxFrameLength: 1 << 20 });
export const PROBE_NAME = 'longlink-probe';

class Session {
  conn: Connection | undefined;
  /** When the last byte was read: silence is measured from here. */
  lastActivity = 0;
  rttMs: number | undefined;
  private timer: NodeJS.Timeout | undefined;
  private phase: 'opening' | 'idle' | 'probing' | 'done' = 'opening';
  private seq = 0n;
  private sentAt = 0;
  private probeIdle = 0;
  private resolve!: (o: Outcome) => void;
  readonly outcome: Promise<Outcome>;
  result: Outcome | undefined;

  constructor(
    readonly target: number,
    private readonly o: ProbeOptions,
  ) {
    this.outcome = new Promise((r) => {
      this.resolve = r;
    });
  }

  get done(): boolean {
    return this.result !== undefined;
  }

  async start(signal: AbortSignal): Promise<void> {
    const d = this.o.dialect;
    try {
      this.conn = await Connection.connect({
        host: this.o.host,
        port: this.o.port,
        framing: d.kind === 'longlink' ? LONGLINK_FRAMING : d.framing,
        connectTimeoutMs: this.o.connectTimeoutMs,
        // Keepalive packets would refresh a NAT's idle timer while we measure silence.
        keepAlive: false,
        signal,
        ...(this.o.tls === undefined ? {} : { tls: this.o.tls }),
      });
    } catch (err) {
      this.finish({ kind: 'failed', error: explain(err, this.explainCtx()) });
      return;
    }
    if (this.done) {
      this.conn.abort();
      return;
    }
    const conn = this.conn;
    conn.on('frame', (f: Buffer) => this.onFrame(f));
    conn.on('close', (info: CloseInfo) => this.onClose(info));
    this.sentAt = performance.now();
    if (d.kind === 'longlink') {
      conn.sendParts(
        encodeMessage({
          kind: MessageKind.HELLO,
          version: PROTOCOL_VERSION,
          // No heartbeat proposal: we stay silent; the server's own heartbeat, if on, shows.
          params: {
            codecs: ['json'],
            name: PROBE_NAME,
            ...(d.credential === undefined ? {} : { credential: d.credential }),
          },
        }),
      );
    } else conn.send(d.frame);
    this.arm(this.o.answerMs, () =>
      this.fail(
        `no answer to the first ${d.kind === 'longlink' ? 'HELLO' : 'frame'} within ${this.o.answerMs} ms from ` +
          `${endpoint(this.o.host, this.o.port)}: the far end must answer — ` +
          (d.kind === 'longlink'
            ? 'a longlink server (or use --framing SPEC for an echo)'
            : `an echo for ${d.framing.name} (longlink serve --framing ${d.framing.name})`),
      ),
    );
  }

  private explainCtx() {
    return {
      host: this.o.host,
      port: this.o.port,
      connectTimeoutMs: this.o.connectTimeoutMs,
      protocol: this.o.dialect.kind === 'longlink',
    };
  }

  private arm(ms: number, fn: () => void): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(fn, Math.max(0, ms));
  }

  /** Idle until `target` (or earlier: `capMs`), then probe. */
  private idle(): void {
    this.phase = 'idle';
    this.arm(this.lastActivity + this.target - performance.now(), () => this.probe());
  }

  /** Shortens the silence to `capMs` when it is longer (used once the path's close time is known). */
  cap(capMs: number): void {
    if (this.phase !== 'idle' || capMs >= this.target) return;
    this.arm(this.lastActivity + capMs - performance.now(), () => this.probe());
  }

  private probe(): void {
    const conn = this.conn;
    if (conn === undefined || this.done) return;
    this.phase = 'probing';
    this.sentAt = performance.now();
    this.probeIdle = this.sentAt - this.lastActivity;
    try {
      if (this.o.dialect.kind === 'longlink') {
        const data = Buffer.alloc(8);
        data.writeBigUInt64BE(++this.seq);
        conn.sendParts(encodeMessage({ kind: MessageKind.PING, data }));
      } else conn.send(this.o.dialect.frame);
    } catch {
      this.finish({ kind: 'cut', idleMs: this.probeIdle, how: 'reset' });
      return;
    }
    this.arm(this.o.answerMs, () =>
      this.finish({ kind: 'cut', idleMs: this.probeIdle, how: 'silent' }, true),
    );
  }

  private onFrame(frame: Buffer): void {
    if (this.done) return;
    const now = performance.now();
    const outcome = this.o.dialect.kind === 'plain' ? this.plainFrame(now) : this.protocolFrame(frame, now);
    if (outcome === 'opened') this.opened(now);
    else if (outcome !== undefined) this.finish(outcome);
  }

  /** Any frame answers our frame; a frame while we are silent is the peer speaking. */
  private plainFrame(now: number): Outcome | 'opened' {
    if (this.phase === 'opening') return 'opened';
    if (this.phase === 'probing') return { kind: 'survived', idleMs: this.probeIdle };
    return { kind: 'spoke', idleMs: now - this.lastActivity, what: 'a frame of its own' };
  }

  private protocolFrame(frame: Buffer, now: number): Outcome | 'opened' | undefined {
    const ep = endpoint(this.o.host, this.o.port);
    let msg: ReturnType<typeof decodeMessage>;
    try {
      msg = decodeMessage(frame);
    } catch (err) {
      return {
        kind: 'failed',
        error: `${ep} does not speak the longlink protocol: ${(err as Error).message} (use --framing SPEC for an echo of another framing)`,
      };
    }
    const silentFor = now - this.lastActivity;
    switch (msg.kind) {
      case MessageKind.HELLO:
        return this.phase === 'opening' ? 'opened' : undefined;
      case MessageKind.ERROR:
        if (msg.id !== 0) return undefined;
        return {
          kind: 'failed',
          error:
            `${ep} refused the HELLO: ${msg.message} (${msg.code})` +
            (msg.code === 'ERR_UNAUTHENTICATED' ? ' — pass --credential' : ''),
        };
      case MessageKind.PONG:
        return this.phase === 'probing' && msg.data.readBigUInt64BE(0) === this.seq
          ? { kind: 'survived', idleMs: this.probeIdle }
          : undefined;
      case MessageKind.PING:
        // Answered, as the protocol requires; but the silence we were measuring is over.
        this.conn?.sendParts(encodeMessage({ kind: MessageKind.PONG, data: msg.data }));
        return this.phase === 'idle' ? { kind: 'spoke', idleMs: silentFor, what: 'PING' } : undefined;
      case MessageKind.GOAWAY:
        return this.phase === 'opening'
          ? { kind: 'failed', error: `${ep} is going away: ${msg.message} (${msg.reason})` }
          : { kind: 'spoke', idleMs: silentFor, what: `GOAWAY ${msg.reason}` };
      default:
        return this.phase === 'idle'
          ? { kind: 'spoke', idleMs: silentFor, what: `message kind ${msg.kind}` }
          : undefined;
    }
  }

  private opened(now: number): void {
    this.rttMs = now - this.sentAt;
    this.lastActivity = now;
    this.idle();
  }

  private onClose(info: CloseInfo): void {
    if (this.done) return;
    const now = performance.now();
    const how = info.reason === 'remote-fin' ? 'fin' : info.reason === 'remote-reset' ? 'reset' : info.reason;
    if (this.phase === 'opening') {
      const hint =
        info.reason === 'protocol-error' && info.error !== undefined
          ? `: what came back is not ${this.o.dialect.kind === 'longlink' ? 'the longlink protocol' : `a ${(this.o.dialect as { framing: Framing }).framing.name} frame`} (${info.error.message})`
          : info.bytesRead === 0
            ? ' without a word (not the service you meant, or a proxy with no upstream)'
            : '';
      this.fail(
        `${endpoint(this.o.host, this.o.port)} closed the connection (${info.reason}) before answering${hint}`,
      );
    } else if (this.phase === 'probing') this.finish({ kind: 'cut', idleMs: this.probeIdle, how });
    else this.finish({ kind: 'closed', idleMs: now - this.lastActivity, how });
  }

  private fail(error: string): void {
    this.finish({ kind: 'failed', error });
  }

  /** Settles the outcome; the connection is closed (aborted when it is dead or mid-probe). */
  finish(o: Outcome, abort = false): void {
    if (this.done) return;
    this.result = o;
    this.phase = 'done';
    clearTimeout(this.timer);
    const conn = this.conn;
    if (conn !== undefined && conn.state !== 'closed') {
      if (abort || o.kind === 'cut' || o.kind === 'failed' || o.kind === 'cancelled') conn.abort();
      else void conn.close({ timeoutMs: 1000 });
    }
    this.resolve(o);
  }
}

// ---------------------------------------------------------------------------------------------
// The probe

export interface ProbeReport {
  finding: Finding;
  recommendation: Recommendation;
  bracket: Bracket;
  rounds: number;
  connections: number;
  failed: number;
  firstFailure: string | undefined;
  rttMs: number | undefined;
  durationMs: number;
  /** Why it stopped before it was done, if it did. */
  stopped: 'interrupted' | 'budget' | undefined;
}

/** Runs the probe; resolves with what it found. `signal` stops it early (the report says so). */
export async function probeIdleTimeout(o: ProbeOptions, signal?: AbortSignal): Promise<ProbeReport> {
  const precision = o.precision ?? 0.02;
  const maxRounds = o.maxRounds ?? 4;
  const started = performance.now();
  const deadline = started + 2 * o.maxIdleMs + 10_000;
  const bracket = new Bracket();
  const all: Session[] = [];
  const abort = new AbortController();
  // Every connect in flight listens on it (16 at a time): not a leak.
  setMaxListeners(0, abort.signal);
  let stopped: ProbeReport['stopped'];
  const stopAll = (why: 'interrupted' | 'budget') => {
    stopped ??= why;
    abort.abort();
    for (const s of all) s.finish({ kind: 'cancelled' });
  };
  const onAbort = () => stopAll('interrupted');
  signal?.addEventListener('abort', onAbort, { once: true });
  const budget = setTimeout(() => stopAll('budget'), deadline - started);
  let rounds = 0;
  let failed = 0;
  let firstFailure: string | undefined;
  try {
    let targets = ladder(o.minIdleMs, o.maxIdleMs, o.connections);
    while (targets.length > 0 && stopped === undefined) {
      rounds++;
      o.onEvent?.({ type: 'round', round: rounds, targets });
      const round = targets.map((t) => new Session(t, o));
      all.push(...round);
      const settled = new Promise<void>((resolve) => {
        const check = () => {
          // Complete when every connection that can still tell something has told it.
          if (round.every((s) => s.done || s.target >= bracket.hi)) resolve();
        };
        for (const s of round) {
          void s.outcome.then((outcome) => {
            bracket.add(outcome);
            if (outcome.kind === 'failed') {
              failed++;
              firstFailure ??= outcome.error;
            }
            if (outcome.kind !== 'cancelled')
              o.onEvent?.({ type: 'outcome', target: s.target, outcome, bracket });
            if (outcome.kind === 'closed') {
              // The path closes idle flows at ~idleMs: the others will see the same within a moment.
              const cap = outcome.idleMs * 1.1 + 250;
              for (const other of all) other.cap(cap);
            } else if (outcome.kind === 'cut' && bracket.closes.length === 0) {
              // Silent: longer silences tell nothing more.
              for (const other of round) if (other.target > bracket.hi) other.finish({ kind: 'cancelled' });
            }
            check();
          });
        }
        check();
      });
      // At most 16 connects at a time: a burst of SYNs is not what we are measuring.
      await startAll(round, 16, abort.signal);
      await settled;
      if (round.every((s) => s.result?.kind === 'failed')) break;
      if (bracket.closes.length > 0 || !Number.isFinite(bracket.hi) || bracket.narrow(precision)) break;
      if (rounds >= maxRounds) break;
      const next = between(bracket.lo, bracket.hi, Math.max(4, Math.floor(o.connections / 2)));
      if (performance.now() + bracket.hi + o.answerMs + o.connectTimeoutMs > deadline) {
        stopped = 'budget';
        break;
      }
      targets = next;
    }
  } finally {
    clearTimeout(budget);
    signal?.removeEventListener('abort', onAbort);
    for (const s of all) s.finish({ kind: 'cancelled' });
  }
  const rtts = all
    .map((s) => s.rttMs)
    .filter((r): r is number => r !== undefined)
    .sort((a, b) => a - b);
  const finding = bracket.estimate();
  return {
    finding,
    recommendation: recommend(finding),
    bracket,
    rounds,
    connections: all.length,
    failed,
    firstFailure,
    rttMs: rtts.length === 0 ? undefined : rtts[Math.floor(rtts.length / 2)],
    durationMs: performance.now() - started,
    stopped,
  };
}

async function startAll(sessions: Session[], concurrency: number, signal: AbortSignal): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < sessions.length && !signal.aborted) {
      const s = sessions[next++] as Session;
      if (!s.done) await s.start(signal);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, sessions.length) }, worker));
}
