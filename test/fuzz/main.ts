/**
 * `npm run fuzz -- --minutes N [--seed S] [--framing X] [--path P] [--strict | --strict=F1,…]`
 *
 * Runs the fuzz suite's generators against live servers for N minutes in all (split evenly over
 * the framing groups selected: `longlink`, the protocol server; or one legacy framing, with JSON
 * frames and raw ones), printing a progress line every ~10 s. On a broken invariant it stops
 * that group, shrinks the failing batch, prints the seed, the replay path, the invariant and the
 * shrunk streams as hex, and exits 1. Known findings (test/fuzz/findings.test.ts) are counted and
 * listed at the end; with --strict they fail the run too (--strict=F3: only those named).
 *
 * Replay a failure: `npm run fuzz -- --framing <group's framing> --seed S --path P`.
 */

import { type Failure, type Figures, fuzzGroup, rssBound } from './campaign.js';
import { groupsFor, MiB } from './model.js';
import { KNOWN_FINDINGS } from './oracle.js';

interface Args {
  minutes: number;
  seed: number;
  framing: string | undefined;
  path: string | undefined;
  strict: boolean | string[];
}

function parseArgs(argv: string[]): Args {
  const args: Args = {
    minutes: 1,
    seed: Number(process.env.LONGLINK_FUZZ_SEED ?? Math.floor(Math.random() * 0x7fff_ffff)),
    framing: undefined,
    path: undefined,
    strict: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    if (a === '--minutes') args.minutes = Number(value());
    else if (a === '--seed') args.seed = Number(value());
    else if (a === '--framing') args.framing = value();
    else if (a === '--path') args.path = value();
    else if (a === '--strict') args.strict = true;
    else if (a?.startsWith('--strict=')) args.strict = a.slice('--strict='.length).split(',');
    else if (a === '--help' || a === '-h') {
      console.log(
        'npm run fuzz -- --minutes N [--seed S] [--framing longlink|ascii:20|u32be|u16le|varint|line|delimiter:7c7c] [--path P] [--strict | --strict=F1,F3]',
      );
      process.exit(0);
    } else throw new Error(`unknown argument ${a} (try --help)`);
  }
  if (!(args.minutes > 0)) throw new Error('--minutes must be a positive number');
  if (!Number.isSafeInteger(args.seed)) throw new Error('--seed must be an integer');
  return args;
}

const mib = (n: number) => (n / MiB).toFixed(1);

function clock(ms: number): string {
  const s = Math.floor(ms / 1000);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
}

function knownLine(f: Figures): string {
  const k = Object.entries(f.known);
  return k.length === 0 ? 'none' : k.map(([id, v]) => `${id}×${v.count}`).join(' ');
}

function progressLine(f: Figures, rss: number): string {
  const s = f.elapsedMs / 1000;
  return (
    `[fuzz ${f.group} ${clock(f.elapsedMs)}] ${f.streams} streams (${(f.streams / Math.max(s, 0.001)).toFixed(1)}/s), ` +
    `${mib(f.bytes)} MiB written, ${f.connections} connections closed, server RSS ${mib(rss)} MiB ` +
    `(peak ${mib(f.peakRss)}, bound ${mib(f.rssBound)}), known findings: ${knownLine(f)}`
  );
}

function report(failure: Failure): string {
  return [
    `FUZZ FAILURE in group ${failure.group} after ${failure.numRuns} batches (${failure.numShrinks} shrinks)`,
    `seed ${failure.seed}${failure.path === null ? '' : `, path ${failure.path}`}`,
    `replay: npm run fuzz -- --framing ${failure.group} --seed ${failure.seed}${failure.path === null ? '' : ` --path ${failure.path}`}`,
    'invariant broken:',
    failure.message,
    'shrunk batch (each case: its stream as hex):',
    failure.counterexample,
  ].join('\n');
}

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2));
  const groups = groupsFor(args.framing);
  const perGroupMs = (args.minutes * 60_000) / groups.length;
  console.log(
    `fuzz: seed ${args.seed}, ${args.minutes} min over ${groups.length} group(s) (${groups.map((g) => g.name).join(', ')}), ` +
      `${(perGroupMs / 1000).toFixed(0)} s each; RSS bound = baseline + ${mib(rssBound(0))} MiB`,
  );
  const all: Figures[] = [];
  let failed = false;
  for (const group of groups) {
    const { figures, failure } = await fuzzGroup(group, {
      seed: args.seed,
      timeLimitMs: perGroupMs,
      ...(args.path === undefined ? {} : { path: args.path }),
      strict: args.strict,
      onProgress: (f, rss) => console.log(progressLine(f, rss)),
      progressMs: 10_000,
    });
    all.push(figures);
    console.log(`${progressLine(figures, figures.peakRss)} — done`);
    console.log(
      `  close reasons: ${JSON.stringify(figures.reasons)}; streams by kind: ${JSON.stringify(figures.labels)}`,
    );
    if (failure !== undefined) {
      console.log(report(failure));
      failed = true;
      break;
    }
  }
  const streams = all.reduce((n, f) => n + f.streams, 0);
  const bytes = all.reduce((n, f) => n + f.bytes, 0);
  const secs = all.reduce((n, f) => n + f.elapsedMs, 0) / 1000;
  console.log(
    `fuzz: ${streams} streams (${(streams / Math.max(secs, 0.001)).toFixed(1)}/s), ${mib(bytes)} MiB, ` +
      `peak server RSS ${mib(Math.max(...all.map((f) => f.peakRss)))} MiB, seed ${args.seed}: ${failed ? 'FAILED' : 'passed'}`,
  );
  const known = new Map<string, { count: number; example: string }>();
  for (const f of all) {
    for (const [id, v] of Object.entries(f.known)) {
      const k = known.get(id);
      if (k === undefined) known.set(id, { ...v });
      else k.count += v.count;
    }
  }
  for (const [id, v] of known) {
    console.log(
      `known finding ${id} (${KNOWN_FINDINGS[id as keyof typeof KNOWN_FINDINGS] ?? '?'}): seen ${v.count} times; first:\n  ${v.example}`,
    );
  }
  return failed ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(err);
    process.exit(2);
  },
);
