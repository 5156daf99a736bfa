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
 */

import { setMaxListeners } from 'node:events';
import type tls from 'node:tls';
import { parseFraming } from '../codec/parse.js';
import type { Framing } from '../codec/types.js';
import type { CloseInfo } from '../connection/close-reason.js';
import { Connection } from '../connection/connection.js';
import { MessageKind, PROTOCOL_VERSION } from '../protocol/types.js';
import { decodeMessage, encodeMessage } from '../protocol/wire.js';
import { resolveHeartbeat } from '../session/heartbeat.js';
import {
  type Command,
  CommandFailed,
  count,
  duration,
  EXIT,
  endpoint,
  type Io,
  intArg,
  onInterrupt,
  type ParsedArgs,
  portArg,
  secondsArg,
  signalExitCode,
  stringArg,
  UsageError,
} from './args.js';
import { TLS_OPTIONS, tlsFromArgs } from './call.js';
import { explain } from './explain.js';

// ---------------------------------------------------------------------------------------------
// The plan: pure functions of what has been seen so far

/** `n` idle targets from `minMs` to `maxMs`, each the same factor above the one before. */
export function ladder(minMs: number, maxMs: number, n: number): number[] {
  if (n <= 1 || maxMs <= minMs) return [Math.max(minMs, maxMs)];
  const r = (maxMs / minMs) ** (1 / (n - 1));
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(Math.round(minMs * r ** i));
  out[n - 1] = maxMs;
  return [...new Set(out)];
}

/** `k` targets evenly inside (lo, hi), excluding both ends. */
export function between(lo: number, hi: number, k: number): number[] {
  const out: number[] = [];
  for (let i = 1; i <= k; i++) out.push(Math.round(lo + ((hi - lo) * i) / (k + 1)));
  return [...new Set(out)].filter((t) => t > lo && t < hi);
}

export type Outcome =
  | { kind: 'survived'; idleMs: number }
  | { kind: 'closed'; idleMs: number; how: string }
  | { kind: 'cut'; idleMs: number; how: string }
  | { kind: 'spoke'; idleMs: number; what: string }
  | { kind: 'failed'; error: string }
  | { kind: 'cancelled' };

/**
 * What the results so far say about the path's idle timeout T. `lo`: the longest idle time a
 * connection survived (T > lo). `hi`: the shortest idle time after which a connection was found
 * dead (T ≤ hi). `closes`: idle times at which the path itself ended a connection (T exactly).
 */
export class Bracket {
  lo = 0;
  hi = Number.POSITIVE_INFINITY;
  readonly closes: number[] = [];
  readonly cuts: Array<{ idleMs: number; how: string }> = [];
  readonly survivors: number[] = [];
  /** The shortest silence after which the peer spoke (its own PING …), if it ever did. */
  peerSpoke: { idleMs: number; what: string } | undefined;
  /** Cuts below a survivor: a probe answer that came too late, or a path that is not monotonic. */
  inconsistent = 0;

  add(o: Outcome): void {
    switch (o.kind) {
      case 'survived':
        if (o.idleMs >= this.hi) this.inconsistent++;
        this.survivors.push(o.idleMs);
        this.lo = Math.max(this.lo, o.idleMs);
        break;
      case 'closed':
        this.closes.push(o.idleMs);
        this.hi = Math.min(this.hi, o.idleMs);
        break;
      case 'cut':
        if (o.idleMs <= this.lo) this.inconsistent++;
        this.cuts.push({ idleMs: o.idleMs, how: o.how });
        this.hi = Math.min(this.hi, o.idleMs);
        break;
      case 'spoke':
        if (this.peerSpoke === undefined || o.idleMs < this.peerSpoke.idleMs) {
          this.peerSpoke = { idleMs: o.idleMs, what: o.what };
        }
        break;
      default:
        break;
    }
  }

  /** Whether anything was learnt about the path (a survivor, a close, a cut, the peer speaking). */
  get informed(): boolean {
    return this.survivors.length + this.closes.length + this.cuts.length > 0 || this.peerSpoke !== undefined;
  }

  /** Whether (lo, hi] is narrow enough: `precision` of hi, or 50 ms. */
  narrow(precision: number): boolean {
    return this.closes.length > 0 || this.hi - this.lo <= Math.max(precision * this.hi, 50);
  }

  /** The finding so far. */
  estimate(): Finding {
    if (this.closes.length > 0) {
      const sorted = [...this.closes].sort((a, b) => a - b);
      return {
        how: 'closed',
        timeoutMs: sorted[Math.floor((sorted.length - 1) / 2)] as number,
        lowerMs: sorted[0] as number,
        upperMs: sorted[sorted.length - 1] as number,
      };
    }
    if (Number.isFinite(this.hi)) {
      const lower = Math.min(this.lo, this.hi);
      return {
        how: this.cuts.some((c) => c.how === 'reset') ? 'reset' : 'silent',
        timeoutMs: Math.round((lower + this.hi) / 2),
        lowerMs: lower,
        upperMs: this.hi,
      };
    }
    return {
      how: 'none',
      timeoutMs: undefined,
      lowerMs: this.lo,
      upperMs: undefined,
      ...(this.peerSpoke === undefined ? {} : { peerSpokeMs: this.peerSpoke.idleMs }),
    };
  }
}

export interface Finding {
  /** closed: the path ends idle flows itself; silent/reset: found dead on the next write; none: no cut seen. */
  how: 'closed' | 'silent' | 'reset' | 'none';
  /** The estimate (median close, or the bracket's middle); undefined when nothing was cut. */
  timeoutMs: number | undefined;
  /** Idle time known to be survivable (or the earliest close). */
  lowerMs: number;
  upperMs: number | undefined;
  /** The far end spoke on its own after this much silence (its heartbeat): nothing past it was measured. */
  peerSpokeMs?: number;
}

export interface Recommendation {
  /** For connect()/createServer(): the path's idle budget, with a 10 % margin below what was found. */
  idleBudgetMs: number | undefined;
  heartbeat: { intervalMs: number; timeoutMs: number } | 'standard';
  /** What the settings do, in words. */
  text: string;
  warning: string | undefined;
}

/** Heartbeat settings for a path whose idle time is safe up to `lowerMs` (undefined: no cut found). */
export function recommend(f: Finding): Recommendation {
  if (f.timeoutMs === undefined && f.peerSpokeMs !== undefined) {
    return {
      idleBudgetMs: undefined,
      heartbeat: 'standard',
      text:
        `the path was not measured past ${duration(f.peerSpokeMs)}, where the far end's own PING ends the silence: ` +
        'a heartbeat at least that frequent keeps the path open as far as this probe can tell',
      warning: undefined,
    };
  }
  if (f.timeoutMs === undefined) {
    return {
      idleBudgetMs: undefined,
      heartbeat: 'standard',
      text:
        `no cut up to ${duration(f.lowerMs)} of silence: heartbeat 'standard' (PING after 10 s of silence, a dead ` +
        'peer found within 30 s) is for finding dead peers; the path itself needs none that short',
      warning: undefined,
    };
  }
  const budget = Math.max(1, Math.floor((f.lowerMs * 0.9) / 100) * 100 || Math.floor(f.lowerMs * 0.9));
  const derived = resolveHeartbeat(undefined, budget);
  const timing = derived.timing as { intervalMs: number; timeoutMs: number };
  if (budget >= 15_000) {
    return {
      idleBudgetMs: budget,
      heartbeat: 'standard',
      text:
        `heartbeat 'standard' (PING after 10 s of silence) keeps this path open; idleBudgetMs: ${budget} makes ` +
        `longlink warn about a heartbeat slower than the path allows (derived alone: PING after ${duration(timing.intervalMs)}, ` +
        `dead after ${duration(timing.timeoutMs)})`,
      warning: undefined,
    };
  }
  return {
    idleBudgetMs: budget,
    heartbeat: timing,
    text:
      derived.warning === undefined
        ? `PING after ${duration(timing.intervalMs)} of silence keeps this path open; a dead peer is found within ` +
          `${duration(timing.timeoutMs)}`
        : `a PING at most once a second (the server's floor) cannot keep a path this short open: keep the ` +
          'connection busy otherwise, or lengthen the timeout on the path',
    warning:
      derived.warning ??
      (timing.intervalMs * 2 > budget
        ? `the path allows less than two heartbeat intervals of silence (the server's PING floor is 1 s): one late PING and the path drops the connection`
        : undefined),
  };
}

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
const PROBE_NAME = 'longlink-probe';

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

// ---------------------------------------------------------------------------------------------
// The command

function describeFinding(r: ProbeReport): string[] {
  const f = r.finding;
  const b = r.bracket;
  const lines: string[] = [];
  const lived =
    b.survivors.length > 0 ? `; ${count(b.survivors.length)} silent up to ${duration(b.lo)} lived` : '';
  switch (f.how) {
    case 'closed':
      lines.push(
        `idle timeout  ${duration(f.timeoutMs as number)}: the path closes idle connections itself ` +
          `(${b.closes.length} closed after ${duration(f.lowerMs)}${f.upperMs !== f.lowerMs ? `–${duration(f.upperMs as number)}` : ''} of silence${lived})`,
      );
      break;
    case 'silent':
    case 'reset':
      lines.push(
        `idle timeout  ${duration(f.timeoutMs as number)} (between ${duration(f.lowerMs)} and ${duration(f.upperMs as number)}): ` +
          (f.how === 'silent'
            ? 'idle connections are dropped silently — after that much silence a write gets no answer'
            : 'after that much silence a write is answered with a reset') +
          ` (${b.cuts.length} cut${lived})`,
      );
      break;
    case 'none':
      lines.push(
        b.peerSpoke !== undefined
          ? `idle timeout  none seen up to ${duration(Math.max(b.lo, b.peerSpoke.idleMs))}: the far end sends its own ${b.peerSpoke.what} ` +
              `after ${duration(b.peerSpoke.idleMs)} of silence, which keeps the path open; to measure longer silences ` +
              'run it with `longlink serve --heartbeat off --keepalive off`'
          : r.stopped !== undefined
            ? `idle timeout  none seen up to ${duration(f.lowerMs)} (stopped before --max-idle)`
            : `idle timeout  none up to ${duration(f.lowerMs)} (--max-idle): every connection lived`,
      );
      break;
  }
  if (f.how === 'closed' && (f.timeoutMs as number) < 50) {
    lines.push(
      'note          the far end (or the path) closes connections right after answering: not a peer that keeps connections open',
    );
  }
  if (b.peerSpoke !== undefined && f.how !== 'none') {
    lines.push(
      `note          the far end sent its own ${b.peerSpoke.what} after ${duration(b.peerSpoke.idleMs)} of silence`,
    );
  }
  if (b.inconsistent > 0) {
    lines.push(
      `note          ${b.inconsistent} result(s) disagree (a cut shorter than a survivor): an answer later than ` +
        '--answer-timeout on a busy path, or a path whose timeout varies',
    );
  }
  return lines;
}

export const probeCommand: Command = {
  name: 'probe',
  summary: "measures the path's idle timeout (NAT, load balancer, proxy) and recommends a heartbeat",
  usage: ['--host H --port P [--max-idle S] [--framing longlink|SPEC] [--json]'],
  description:
    'Holds idle connections to H:P for growing silences and watches which die, to find how long the ' +
    'path — a NAT, a load balancer, a firewall, a proxy such as nginx or haproxy — lets a connection ' +
    'stay silent. A path that closes idle flows (FIN or RST) is timed to the millisecond; one that drops ' +
    'them silently is found by a probe write that gets no answer within --answer-timeout. Many ' +
    'connections run in parallel on a ladder of silences, then bisect between the longest survivor ' +
    'and the shortest casualty; total time at most 2 × --max-idle + 10 s, usually about the timeout ' +
    'itself (a closing path) or 2.5 × it (a silent one). Then it prints the heartbeat settings that ' +
    'keep such a path open (idleBudgetMs, heartbeat { intervalMs, timeoutMs }).\n\n' +
    'The far end must answer and otherwise stay silent: `longlink serve --heartbeat off --keepalive off` ' +
    '(the longlink protocol: HELLO, then PING/PONG), or with --framing SPEC any echo of that framing ' +
    '(`longlink serve --framing line --idle-timeout 0`, or a plain TCP echo with --framing line). ' +
    'A far end that sends PINGs of its own keeps the path open; the probe says so.\n\n' +
    'Ctrl-C once stops and prints what is known so far; twice quits at once.',
  options: {
    host: {
      type: 'string',
      default: '127.0.0.1',
      arg: 'HOST',
      help: 'the far end (through the path to measure)',
    },
    port: { type: 'string', arg: 'PORT', help: 'its port (required)' },
    'max-idle': { type: 'string', default: '600', arg: 'S', help: 'longest silence to test, in seconds' },
    'min-idle': { type: 'string', default: '0.5', arg: 'S', help: 'shortest silence to test, in seconds' },
    connections: {
      type: 'string',
      default: '32',
      arg: 'N',
      help: 'connections in the first round (the ladder); later rounds use half as many',
    },
    'answer-timeout': {
      type: 'string',
      default: '2000',
      arg: 'MS',
      help: 'a probe without an answer within this finds the connection dead (a silent drop)',
    },
    'connect-timeout': { type: 'string', default: '5000', arg: 'MS', help: 'deadline for each TCP connect' },
    framing: {
      type: 'string',
      default: 'longlink',
      arg: 'SPEC',
      help: "'longlink' (a longlink server: PING/PONG), or a plain framing for an echo peer: line, u32be, ascii:20 …",
    },
    frame: {
      type: 'string',
      default: PROBE_NAME,
      arg: 'TEXT',
      help: "with --framing: the probe frame (e.g. your protocol's heartbeat message); any frame back is its answer",
    },
    credential: {
      type: 'string',
      arg: 'TOKEN',
      help: 'HELLO credential, for a longlink server that requires one',
    },
    ...TLS_OPTIONS,
    json: { type: 'boolean', help: 'machine-readable output' },
  },
  examples: [
    [
      'longlink serve --port 7070 --heartbeat off --keepalive off   # on the far side',
      'a quiet far end for the probe',
    ],
    [
      'longlink probe --host lb.example --port 7070',
      'through the load balancer: its idle timeout and the heartbeat for it',
    ],
    [
      'longlink probe --host 10.0.0.5 --port 7 --framing line --max-idle 1800',
      'against a plain TCP echo, up to 30 min',
    ],
  ],
  run: runProbe,
};

async function runProbe(args: ParsedArgs, io: Io): Promise<number> {
  if (args.values.port === undefined)
    throw new UsageError('--port is required (the far end, through the path)');
  const host = stringArg(args, 'host') ?? '127.0.0.1';
  const port = portArg(args);
  const maxIdleMs = secondsArg(args, 'max-idle', 0.1);
  const minIdleMs = secondsArg(args, 'min-idle', 0.05);
  if (minIdleMs >= maxIdleMs) throw new UsageError('--min-idle must be below --max-idle');
  const framingSpec = stringArg(args, 'framing') ?? 'longlink';
  let dialect: Dialect;
  if (framingSpec === 'longlink') {
    const credential = stringArg(args, 'credential');
    dialect = { kind: 'longlink', ...(credential === undefined ? {} : { credential }) };
  } else {
    if (args.values.credential !== undefined)
      throw new UsageError('--credential goes with --framing longlink');
    let framing: Framing;
    try {
      framing = parseFraming(framingSpec);
    } catch (err) {
      throw new UsageError(`--framing: ${(err as Error).message}`);
    }
    dialect = { kind: 'plain', framing, frame: Buffer.from(stringArg(args, 'frame') ?? PROBE_NAME, 'utf8') };
  }
  const tlsOptions = tlsFromArgs(args);
  const o: ProbeOptions = {
    host,
    port,
    dialect,
    minIdleMs,
    maxIdleMs,
    connections: intArg(args, 'connections', 2, 1000),
    answerMs: intArg(args, 'answer-timeout', 1),
    connectTimeoutMs: intArg(args, 'connect-timeout', 1),
    ...(tlsOptions === undefined ? {} : { tls: tlsOptions }),
  };
  const ep = endpoint(host, port);
  const what = dialect.kind === 'longlink' ? 'longlink protocol, PING/PONG' : `${dialect.framing.name} echo`;
  const json = args.values.json === true;
  const t0 = performance.now();
  const elapsed = () => `${((performance.now() - t0) / 1000).toFixed(1)} s`;
  let last = '';
  const progress = (line: string) => {
    if (line !== last) io.progress(`probe ${ep}: ${elapsed()}: ${line}`);
    last = line;
  };
  const state = (b: Bracket) =>
    `longest silence survived ${b.survivors.length > 0 ? duration(b.lo) : '—'}` +
    (b.closes.length > 0
      ? `, closed by the path after ${duration(Math.min(...b.closes))}`
      : Number.isFinite(b.hi)
        ? `, shortest cut ${duration(b.hi)}`
        : ', nothing cut yet');
  let latest: Bracket | undefined;
  let openCount = 0;
  o.onEvent = (e) => {
    if (e.type === 'round') {
      openCount = e.targets.length;
      progress(
        `round ${e.round}: ${e.targets.length} connections silent for ${duration(e.targets[0] as number)} … ${duration(e.targets[e.targets.length - 1] as number)}`,
      );
    } else {
      latest = e.bracket;
      if (e.outcome.kind === 'failed') progress(`a connection failed: ${e.outcome.error}`);
      else progress(state(e.bracket));
    }
  };
  const ticker = setInterval(
    () => {
      if (latest !== undefined) progress(`${state(latest)} (waiting)`);
      else progress(`${openCount} connections silent, nothing back yet (waiting)`);
    },
    process.stderr.isTTY ? 1000 : 10_000,
  );
  const stop = new AbortController();
  const dispose = onInterrupt(
    () => stop.abort(),
    (signal) => process.exit(signalExitCode(signal)),
  );
  let report: ProbeReport;
  try {
    io.progress(
      `probe ${ep} (${what}): silences from ${duration(minIdleMs)} to ${duration(maxIdleMs)}, at most ${duration(2 * maxIdleMs + 10_000)}`,
    );
    report = await probeIdleTimeout(o, stop.signal);
  } finally {
    clearInterval(ticker);
    dispose();
  }
  if (!report.bracket.informed) {
    if (report.stopped === 'interrupted') return signalExitCode('SIGINT');
    throw new CommandFailed(report.firstFailure ?? 'no probe connection could be opened');
  }
  const rec = report.recommendation;
  if (json) {
    io.out(
      JSON.stringify(
        {
          host,
          port,
          framing: dialect.kind === 'longlink' ? 'longlink' : dialect.framing.name,
          ...report.finding,
          recommendation: rec,
          survivedMs: report.bracket.survivors,
          closedMs: report.bracket.closes,
          cut: report.bracket.cuts,
          peerSpoke: report.bracket.peerSpoke ?? null,
          rounds: report.rounds,
          connections: report.connections,
          failed: report.failed,
          rttMs: report.rttMs,
          durationMs: Math.round(report.durationMs),
          stopped: report.stopped ?? null,
        },
        (_k, v) => (typeof v === 'number' && !Number.isInteger(v) ? Math.round(v * 10) / 10 : v),
      ),
    );
  } else {
    io.out(
      `longlink probe ${ep} (${what}): ${report.connections} connections in ${report.rounds} round${report.rounds === 1 ? '' : 's'}, ` +
        `${duration(report.durationMs)}${report.rttMs === undefined ? '' : `, rtt ${report.rttMs.toFixed(1)} ms`}` +
        (report.stopped === 'interrupted'
          ? ' — interrupted, partial result'
          : report.stopped === 'budget'
            ? ' — time budget spent, partial result'
            : ''),
    );
    io.out('');
    for (const l of describeFinding(report)) io.out(l);
    if (rec.idleBudgetMs !== undefined) {
      const hb =
        rec.heartbeat === 'standard'
          ? "'standard'"
          : `{ intervalMs: ${rec.heartbeat.intervalMs}, timeoutMs: ${rec.heartbeat.timeoutMs} }`;
      io.out(`heartbeat     idleBudgetMs: ${rec.idleBudgetMs}  →  heartbeat: ${hb}`);
      io.out(`              ${rec.text}`);
      io.out(
        `              connect({ host, port, ${rec.heartbeat === 'standard' ? "heartbeat: 'standard', " : ''}idleBudgetMs: ${rec.idleBudgetMs} }); longlink serve --idle-budget ${rec.idleBudgetMs}`,
      );
    } else io.out(`heartbeat     ${rec.text}`);
    if (rec.warning !== undefined) io.out(`warning       ${rec.warning}`);
    if (report.failed > 0)
      io.out(`note          ${report.failed} connection(s) failed: ${report.firstFailure}`);
  }
  return report.stopped === 'interrupted' ? signalExitCode('SIGINT') : EXIT.OK;
}
