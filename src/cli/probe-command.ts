/** `longlink probe` on the command line: its options, the run with its progress, the report. */

import { parseFraming } from '../codec/parse.js';
import type { Framing } from '../codec/types.js';
import { MAX_TIMER_MS } from '../util/check.js';
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
import { type Dialect, PROBE_NAME, type ProbeOptions, type ProbeReport, probeIdleTimeout } from './probe.js';
import type { Bracket } from './probe-plan.js';

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
    answerMs: intArg(args, 'answer-timeout', 1, MAX_TIMER_MS),
    connectTimeoutMs: intArg(args, 'connect-timeout', 1, MAX_TIMER_MS),
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
