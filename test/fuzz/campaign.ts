/**
 * A fuzz campaign against one framing group: a server process, fast-check generating batches of
 * cases (each batch = up to `batch` connections at once), every case checked by the oracle, the
 * server's RSS against a bound after every batch, a legitimate client served during and after.
 *
 * fast-check owns the randomness: the run is replayed from its seed (and path), and a failing batch
 * is shrunk to a small one before it is reported with the hex of its streams.
 */

import fc from 'fast-check';
import type { FuzzCase } from './cases.js';
import { describeCase } from './cases.js';
import { drive, NEVER_MS, type Observation, within } from './driver.js';
import { legacyCaseArb } from './gen-legacy.js';
import { protocolCaseArb } from './gen-protocol.js';
import { type Group, MiB, PROTOCOL_LIMITS } from './model.js';
import { checkLegacy, checkProtocol, KNOWN_FINDINGS, legacyFraming, type Violation } from './oracle.js';
import { decodeAll, hexOf } from './stream.js';
import { Target } from './target.js';

/** Connections in flight at once (one batch). */
export const BATCH = 8;

/**
 * The RSS bound, from first principles. Per connection the server can be made to hold at most:
 *   a read chunk (libuv reads up to 64 KiB)                                         64 KiB
 * + the frame being read (buffers grow with the bytes that arrived, ≤ maxFrameLength) 64 KiB
 * + request bytes held by running handlers (maxInFlightBytes; reading pauses there)
 *   plus the rest of the read that crossed it                          256 + 64 = 320 KiB
 * + answers queued to the client (reset past maxQueuedBytes; one answer may cross it)
 *                                                                      1 MiB + 64 KiB
 * + the fixture's trace (at most 4,000 entries of < 100 bytes)                   400 KiB
 *   ≈ 2 MiB per connection (legacy: 16 KiB frames and no handler bytes, less).
 * In flight at once: BATCH fuzz connections + 1 legitimate client = 9 → 18 MiB.
 * Garbage not yet collected: V8's young generation (two 16 MiB semi-spaces on 64-bit Node 20)
 * plus old-space growth before the next mark-compact and malloc arenas that keep freed
 * Buffer memory: 64 MiB of slack.
 * Bound: the RSS at start, after a warm-up probe, + 18 MiB + 64 MiB → baseline + 82 MiB, rounded up
 * to baseline + 96 MiB (baseline ≈ 57 MiB here: bound ≈ 153 MiB).
 * Measured in ten-minute runs (45,000–62,000 connections per framing): RSS levels off at
 * baseline + 40–44 MiB within the first few thousand connections and stays there. The ~50 MiB
 * left are crossed by a leak of 1 KiB per connection within such a run, by anything per byte
 * far sooner.
 */
export function rssBound(baseline: number): number {
  const perConnection =
    64 * 1024 + PROTOCOL_LIMITS.maxFrameLength + PROTOCOL_LIMITS.maxInFlightBytes + 64 * 1024;
  const queue = PROTOCOL_LIMITS.maxQueuedBytes + PROTOCOL_LIMITS.maxFrameLength;
  const trace = 400 * 1024;
  const inFlight = (BATCH + 1) * (perConnection + queue + trace);
  return baseline + Math.ceil((inFlight + 64 * MiB) / (16 * MiB)) * 16 * MiB;
}

export interface Figures {
  group: string;
  streams: number;
  batches: number;
  bytes: number;
  /** Server-side connections closed (fuzz and legitimate). */
  connections: number;
  baselineRss: number;
  peakRss: number;
  rssBound: number;
  /** Known findings seen (counted, not failing unless strict), with a first example each. */
  known: Record<string, { count: number; example: string }>;
  reasons: Record<string, number>;
  labels: Record<string, number>;
  elapsedMs: number;
  restarts: number;
}

export interface Failure {
  group: string;
  seed: number;
  path: string | null;
  /** The invariant that broke and why. */
  message: string;
  /** The shrunk batch: each case with its stream as hex. */
  counterexample: string;
  numRuns: number;
  numShrinks: number;
}

export interface CampaignOptions {
  seed: number;
  /** Batches to run (fast-check's numRuns). */
  numRuns?: number;
  /** Stop after this long (fast-check interruptAfterTimeLimit); the run counts as passed if nothing failed. */
  timeLimitMs?: number;
  /** Replay: fast-check's counterexample path (with the same seed). */
  path?: string;
  /** Known findings fail too: all of them (true) or those listed ('F1', …). */
  strict?: boolean | readonly string[];
  /** Called about every `progressMs` with the figures so far. */
  onProgress?: (f: Figures, rss: number) => void;
  progressMs?: number;
}

class CaseFailure extends Error {}

/**
 * Runs one case and returns its violations. A dead server is itself the violation (the process
 * must never exit), reported with its stderr.
 */
async function runCase(
  target: Target,
  group: Group,
  c: FuzzCase,
): Promise<{ obs: Observation | undefined; violations: Violation[] }> {
  let obs: Observation;
  try {
    obs = await drive(target, c, completeFor(group, c));
  } catch (err) {
    return {
      obs: undefined,
      violations: [
        {
          invariant: 'the server process stays up',
          detail: target.alive ? String((err as Error).message) : target.deathNote(),
        },
      ],
    };
  }
  const violations =
    group.kind === 'protocol'
      ? checkProtocol(c, obs)
      : checkLegacy(c, legacyFraming(group.framing), group.json, obs);
  return { obs, violations };
}

/** drain-fin: when has the client read every answer the case waits for? */
function completeFor(group: Group, c: FuzzCase): (received: Buffer) => boolean {
  if (group.kind === 'legacy') {
    const framing = legacyFraming(group.framing);
    return (received) => decodeAll(framing, received).frames.length >= c.echoes;
  }
  const want = new Set(c.requests.map((r) => r.id));
  return (received) => {
    if (want.size === 0) return true;
    const seen = new Set<number>();
    let p = 0;
    while (p + 4 <= received.length) {
      const n = received.readUInt32BE(p);
      if (p + 4 + n > received.length) break;
      const kind = received[p + 4];
      if ((kind === 3 || kind === 4) && n >= 6) seen.add(received.readUInt32BE(p + 6));
      p += 4 + n;
    }
    for (const id of want) if (!seen.has(id)) return false;
    return true;
  };
}

export async function fuzzGroup(
  group: Group,
  options: CampaignOptions,
): Promise<{ figures: Figures; failure: Failure | undefined }> {
  const t0 = performance.now();
  const lifeMs = (options.timeLimitMs ?? 10 * 60_000) + 10 * 60_000;
  let target = await Target.start(group, lifeMs);
  await target.probe();
  target.baselineRss = target.sampleRss();
  const figures: Figures = {
    group: group.name,
    streams: 0,
    batches: 0,
    bytes: 0,
    connections: 0,
    baselineRss: target.baselineRss,
    peakRss: target.baselineRss,
    rssBound: rssBound(target.baselineRss),
    known: {},
    reasons: {},
    labels: {},
    elapsedMs: 0,
    restarts: 0,
  };
  const closedBefore = { n: 0, reasons: {} as Record<string, number> };
  const refresh = () => {
    figures.elapsedMs = performance.now() - t0;
    figures.connections = closedBefore.n + target.closed;
    const reasons: Record<string, number> = { ...closedBefore.reasons };
    for (const [k, v] of Object.entries(target.reasons)) reasons[k] = (reasons[k] ?? 0) + v;
    figures.reasons = reasons;
    figures.peakRss = Math.max(figures.peakRss, target.peakRss);
  };
  const progress =
    options.onProgress === undefined
      ? undefined
      : setInterval(() => {
          refresh();
          options.onProgress?.(figures, target.alive ? target.sampleRss() : 0);
        }, options.progressMs ?? 10_000);
  progress?.unref();

  /** After a crash, shrinking needs a server again: start a new one (counted). */
  const ensureServer = async () => {
    if (target.alive) return;
    closedBefore.n += target.closed;
    for (const [k, v] of Object.entries(target.reasons))
      closedBefore.reasons[k] = (closedBefore.reasons[k] ?? 0) + v;
    target.kill();
    target = await Target.start(group, lifeMs);
    figures.restarts++;
  };

  const arb = group.kind === 'protocol' ? protocolCaseArb() : legacyCaseArb(group.framing, group.json);
  // A live server makes each shrink step cost a batch: bounded, so that a report comes in minutes.
  const batchArb = fc.limitShrink(fc.array(arb, { minLength: 1, maxLength: BATCH }), 400);
  const property = fc.asyncProperty(batchArb, async (cases) => {
    await ensureServer();
    const results = await Promise.all(cases.map((c) => runCase(target, group, c)));
    figures.batches++;
    const problems: string[] = [];
    for (const [i, r] of results.entries()) {
      const c = cases[i] as FuzzCase;
      figures.streams++;
      figures.bytes += r.obs?.bytesWritten ?? 0;
      // 'valid', 'mutated' or 'random' (the label's second part, without its details).
      const kind = (c.label.split('/')[1] ?? '').replace(/[:+].*$/, '');
      figures.labels[kind] = (figures.labels[kind] ?? 0) + 1;
      for (const v of r.violations) {
        const strict =
          options.strict === true || (Array.isArray(options.strict) && options.strict.includes(v.known));
        // Excused only while the finding is listed as unfixed; a fixed one fails the run again.
        if (v.known !== undefined && v.known in KNOWN_FINDINGS && !strict) {
          figures.known[v.known] ??= { count: 0, example: '' };
          const k = figures.known[v.known] as { count: number; example: string };
          k.count++;
          if (k.example === '') k.example = `${v.invariant}: ${v.detail}\n  case: ${describeCase(c)}`;
          continue;
        }
        problems.push(
          `case ${i}: ${v.invariant}${v.known === undefined ? '' : ` [${v.known}]`}: ${v.detail}\n  ${c.label}, stream hex: ${hexOf(c.stream, 256)}`,
        );
      }
    }
    if (!target.alive) problems.push(`the server process stays up: ${target.deathNote()}`);
    const rss = target.alive ? target.sampleRss() : 0;
    if (rss > figures.rssBound) {
      problems.push(
        `RSS ${(rss / MiB).toFixed(1)} MiB over the bound ${(figures.rssBound / MiB).toFixed(1)} MiB (baseline ${(target.baselineRss / MiB).toFixed(1)} MiB)`,
      );
    }
    // The legitimate client is served during the run (every 16th batch: a request on its long-lived connection).
    if (problems.length === 0 && figures.batches % 16 === 0) {
      try {
        await target.probe();
      } catch (err) {
        problems.push(String((err as Error).message));
      }
    }
    if (problems.length > 0) {
      if (process.env.LONGLINK_FUZZ_DEBUG)
        console.error(`# batch ${figures.batches} failed:\n${problems.join('\n')}`);
      throw new CaseFailure(problems.join('\n'));
    }
  });

  const details = await fc.check(property, {
    seed: options.seed,
    ...(options.path === undefined ? {} : { path: options.path }),
    numRuns: options.numRuns ?? Number.MAX_SAFE_INTEGER,
    ...(options.timeLimitMs === undefined
      ? {}
      : { plugins: [fc.interruptAfterTimeLimit(options.timeLimitMs)] }),
    verbose: 0,
  });
  if (progress !== undefined) clearInterval(progress);

  let failure: Failure | undefined;
  if (details.failed) {
    failure = {
      group: group.name,
      seed: details.seed,
      path: details.counterexamplePath,
      message:
        details.errorInstance instanceof Error
          ? details.errorInstance.message
          : String(details.errorInstance ?? 'interrupted'),
      counterexample: ((details.counterexample as [FuzzCase[]] | null)?.[0] ?? [])
        .map((c, i) => `  [${i}] ${describeCase(c, 128 * 1024)}`)
        .join('\n'),
      numRuns: details.numRuns,
      numShrinks: details.numShrinks,
    };
  }

  // After the run: still up, the legitimate client served (on a new connection), nothing held.
  const after: string[] = [];
  try {
    if (!target.alive) after.push(`the server process stays up: ${target.deathNote()}`);
    else {
      await target.probe(true);
      await target.closeClients();
      const stats = await settledStats(target);
      if (stats.connections !== 0) {
        after.push(
          `${stats.connections} connections still open after the run: ${[...target.open].map(([id, who]) => `#${id} from ${who}`).join(', ')}`,
        );
      }
      if (stats.inflight !== 0) after.push(`${stats.inflight} requests still in flight after the run`);
      if (stats.memory.usedBytes !== 0)
        after.push(`the memory budget still counts ${stats.memory.usedBytes} bytes`);
      if (target.closed !== target.opened) {
        after.push(`the server opened ${target.opened} connections and reported ${target.closed} closed`);
      }
      if (target.badReasons.length > 0)
        after.push(`close reasons outside CloseReason: ${target.badReasons.join(', ')}`);
      target.sampleRss();
      const code = await target.stop();
      if (code !== 0) after.push(`the server did not exit cleanly on SIGTERM (exit ${code})`);
    }
  } catch (err) {
    after.push(String((err as Error).message));
  } finally {
    target.kill();
  }
  refresh();
  if (after.length > 0 && failure === undefined) {
    failure = {
      group: group.name,
      seed: options.seed,
      path: null,
      message: after.join('\n'),
      counterexample: '(found after the run: the whole run is the reproduction)',
      numRuns: details.numRuns,
      numShrinks: 0,
    };
  }
  return { figures, failure };
}

/** The server's stats once the last disconnects are in (its counters settle within a turn or two). */
async function settledStats(target: Target) {
  const deadline = performance.now() + NEVER_MS;
  for (;;) {
    const s = await target.serverStats();
    const left = deadline - performance.now();
    if ((s.connections === 0 && target.closed === target.opened) || left <= 0) return s;
    // Wait for the next line from the server (a disconnect) rather than for time.
    await within(
      new Promise<void>((resolve) => target.fixture.proc.stdout?.once('data', () => resolve())),
      left,
      undefined,
    );
  }
}
