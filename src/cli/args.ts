/**
 * What every command of the CLI shares: its description as data (usage, options, examples — one
 * source for `--help` and for parsing), argument parsing with `node:util` parseArgs, the exit
 * statuses, the one error style, endpoint formatting, and Ctrl-C handling.
 *
 * Exit statuses, the same for every command:
 *   0    done
 *   1    the command ran and failed (a refused connect, an error answer, a warning from doctor)
 *   2    usage: an unknown option, a missing or malformed argument (nothing was attempted)
 *   130  stopped by a second SIGINT (143 for SIGTERM): 128 + the signal's number, as a shell says
 *
 * Errors go to stderr as one line, `longlink: <command>: <what happened, in words> (<CODE>)`; a
 * usage error adds a second line pointing at `longlink <command> --help`.
 */

import { parseArgs } from 'node:util';

/** A mistake in the command line: exit 2, nothing was attempted. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** The command ran and failed; the message says why in words. Exit 1. */
export class CommandFailed extends Error {
  override readonly name = 'CommandFailed';
}

export const EXIT = { OK: 0, FAILED: 1, USAGE: 2 } as const;

/** 128 + the signal's number: what a shell reports for a process ended by it. */
export function signalExitCode(signal: NodeJS.Signals): number {
  return signal === 'SIGTERM' ? 143 : 130;
}

export interface OptionSpec {
  type: 'string' | 'boolean';
  short?: string;
  default?: string | boolean;
  /** The value's placeholder in the help (`--port P`). */
  arg?: string;
  help: string;
}

/** Where a command writes. Lines without their newline. */
export interface Io {
  out(line: string): void;
  err(line: string): void;
  /** A progress line (stderr): rewritten in place on a terminal, one line per call otherwise. */
  progress(line: string): void;
}

/** A command as data: its help is made from the same table its arguments are parsed with. */
export interface Command {
  name: string;
  /** One line for `longlink help`. */
  summary: string;
  /** Synopsis lines after `longlink <name> `. */
  usage: string[];
  /** Paragraphs for `--help`. */
  description: string;
  options: Record<string, OptionSpec>;
  /** [command line, what it does]. */
  examples: Array<[string, string]>;
  /** Whether positional arguments are accepted (their names are in `usage`). */
  positionals?: boolean;
  run(args: ParsedArgs, io: Io): Promise<number>;
}

export interface ParsedArgs {
  values: Record<string, string | boolean | undefined>;
  positionals: string[];
  /** For errors and help: the command's name. */
  command: string;
}

/** `--help`, `-h` anywhere before a `--`. */
export function wantsHelp(argv: readonly string[]): boolean {
  for (const a of argv) {
    if (a === '--') return false;
    if (a === '--help' || a === '-h') return true;
  }
  return false;
}

/** Parses `argv` for `cmd`; throws UsageError in words for anything parseArgs refuses. */
export function parseCommand(cmd: Command, argv: string[]): ParsedArgs {
  const options: Record<string, { type: 'string' | 'boolean'; short?: string; default?: string | boolean }> =
    {};
  for (const [name, o] of Object.entries(cmd.options)) {
    options[name] = {
      type: o.type,
      ...(o.short === undefined ? {} : { short: o.short }),
      ...(o.default === undefined ? {} : { default: o.default }),
    };
  }
  try {
    const { values, positionals } = parseArgs({
      args: argv,
      options,
      allowPositionals: cmd.positionals === true,
      strict: true,
    });
    return { values: values as ParsedArgs['values'], positionals, command: cmd.name };
  } catch (err) {
    throw new UsageError(parseArgsWords(err as NodeJS.ErrnoException));
  }
}

/** parseArgs' messages are long and point at `--`; say the same in a few words. */
function parseArgsWords(err: NodeJS.ErrnoException): string {
  const quoted = /'([^']+)'/.exec(err.message)?.[1];
  switch (err.code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION':
      return `unknown option ${quoted ?? err.message}`;
    case 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL':
      return `unexpected argument ${quoted === undefined ? '' : JSON.stringify(quoted)}`.trim();
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE': {
      const opt = /Option '(?:-\w, )?(--[\w-]+)/.exec(err.message)?.[1];
      return opt === undefined ? err.message : `option ${opt} needs a value`;
    }
    default:
      return err.message;
  }
}

function optionLabel(name: string, o: OptionSpec): string {
  const short = o.short === undefined ? '    ' : `-${o.short}, `;
  return `${short}--${name}${o.type === 'string' ? ` ${o.arg ?? 'VALUE'}` : ''}`;
}

/** The text of `longlink <cmd> --help`. */
export function commandHelp(cmd: Command): string {
  const lines: string[] = [];
  cmd.usage.forEach((u, i) => {
    lines.push(`${i === 0 ? 'usage:' : '      '} longlink ${cmd.name} ${u}`);
  });
  lines.push('', ...wrap(cmd.description, 100), '');
  const entries = Object.entries(cmd.options);
  if (entries.length > 0) {
    lines.push('options:');
    const width = Math.min(
      34,
      Math.max(...entries.map(([n, o]) => optionLabel(n, o).length), '-h, --help'.length) + 2,
    );
    for (const [name, o] of entries) {
      const label = optionLabel(name, o);
      const dflt = o.default === undefined || o.default === false ? '' : ` (default ${String(o.default)})`;
      const text = wrap(`${o.help}${dflt}`, 100 - width - 2);
      const pad = label.length + 2 > width ? `\n  ${' '.repeat(width)}` : ' '.repeat(width - label.length);
      lines.push(`  ${label}${pad}${text[0] ?? ''}`);
      for (const t of text.slice(1)) lines.push(`  ${' '.repeat(width)}${t}`);
    }
    lines.push(`  ${'-h, --help'.padEnd(width)}this help`, '');
  }
  if (cmd.examples.length > 0) {
    lines.push('examples:');
    for (const [line, what] of cmd.examples) {
      lines.push(`  ${line}`);
      for (const t of wrap(what, 94)) lines.push(`      ${t}`);
    }
  }
  return lines.join('\n');
}

/** Wraps each paragraph (blank-line separated) to `width`; lines starting with spaces are kept. */
export function wrap(text: string, width: number): string[] {
  const out: string[] = [];
  for (const para of text.split('\n\n')) {
    if (out.length > 0) out.push('');
    for (const raw of para.split('\n')) {
      if (/^\s/.test(raw)) {
        out.push(raw);
        continue;
      }
      let line = '';
      for (const word of raw.split(/\s+/).filter(Boolean)) {
        if (line.length > 0 && line.length + 1 + word.length > width) {
          out.push(line);
          line = word;
        } else line = line.length > 0 ? `${line} ${word}` : word;
      }
      if (line.length > 0) out.push(line);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Values

/** An integer in [min, max]; UsageError naming the option otherwise. */
export function intArg(args: ParsedArgs, name: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const v = args.values[name];
  if (typeof v !== 'string') throw new UsageError(`--${name} needs a value`);
  const n = Number(v);
  if (!/^\s*-?\d+\s*$/.test(v) || !Number.isSafeInteger(n) || n < min || n > max) {
    throw new UsageError(
      `--${name} must be an integer ${max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `from ${min} to ${max}`}, got ${JSON.stringify(v)}`,
    );
  }
  return n;
}

/** A number of seconds (fractions allowed) > 0 (or >= min), in milliseconds. */
export function secondsArg(args: ParsedArgs, name: string, minSeconds: number): number {
  const v = args.values[name];
  if (typeof v !== 'string') throw new UsageError(`--${name} needs a value`);
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n) || n < minSeconds) {
    throw new UsageError(`--${name} must be a number of seconds >= ${minSeconds}, got ${JSON.stringify(v)}`);
  }
  return Math.round(n * 1000);
}

export function portArg(args: ParsedArgs, name = 'port'): number {
  return intArg(args, name, 0, 65_535);
}

export function stringArg(args: ParsedArgs, name: string): string | undefined {
  const v = args.values[name];
  return typeof v === 'string' ? v : undefined;
}

/** `host:port`, with brackets around an IPv6 address (`[::1]:7070`), as in URLs (RFC 3986 3.2.2). */
export function endpoint(host: string | undefined, port: number | undefined): string {
  const h = host ?? '?';
  return `${h.includes(':') ? `[${h}]` : h}:${port ?? '?'}`;
}

// ---------------------------------------------------------------------------------------------
// Signals

/**
 * SIGINT/SIGTERM handling for long-running commands: the first signal asks `stop` to finish
 * gracefully, the second calls `abort` (which should end the process now). `process.once` would
 * leave the second Ctrl-C with no listener of ours and Node's default (exit) would not run either
 * once a listener had been added, so both stay installed until `dispose()`.
 */
export function onInterrupt(
  stop: (signal: NodeJS.Signals) => void,
  abort: (signal: NodeJS.Signals) => void,
): () => void {
  let count = 0;
  const handler = (signal: NodeJS.Signals) => {
    count++;
    if (count === 1) stop(signal);
    else abort(signal);
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  return () => {
    process.off('SIGINT', handler);
    process.off('SIGTERM', handler);
  };
}

// ---------------------------------------------------------------------------------------------
// Output

/** Io on the process's streams. Progress is rewritten in place on a terminal, else one line each. */
export function processIo(): Io {
  const tty = process.stderr.isTTY === true;
  // `longlink doctor | head`: the reader went away; there is nobody left to tell.
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
      throw err;
    });
  }
  let progressShown = false;
  const clearProgress = () => {
    if (progressShown) {
      process.stderr.write('\r\x1b[K');
      progressShown = false;
    }
  };
  return {
    out(line) {
      clearProgress();
      process.stdout.write(`${line}\n`);
    },
    err(line) {
      clearProgress();
      process.stderr.write(`${line}\n`);
    },
    progress(line) {
      if (tty) {
        const width = process.stderr.columns ?? 100;
        process.stderr.write(`\r\x1b[K${line.length >= width ? `${line.slice(0, width - 2)}…` : line}`);
        progressShown = true;
      } else process.stderr.write(`${line}\n`);
    },
  };
}

/** Thousands separators for counts in reports. */
export function count(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

/** 1500 → "1.5 s", 600000 → "600 s", 250 → "250 ms". */
export function duration(ms: number): string {
  if (!Number.isFinite(ms)) return String(ms);
  if (Math.abs(ms) < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  return `${s >= 100 ? s.toFixed(0) : s >= 10 ? s.toFixed(1) : s.toFixed(2)} s`;
}
