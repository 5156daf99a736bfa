/** The CLI as a child process, the way a user runs it: its output as lines, its exit as a promise. */

import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { linesInto, waitFor } from '../helpers.js';

export const MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

export interface Run {
  child: ChildProcess;
  out: string[];
  err: string[];
  exit: Promise<number | null>;
  /** The first stdout line matching `re` (waits for it; fails early if the child exits). */
  line(re: RegExp, timeoutMs?: number, stream?: 'out' | 'err'): Promise<string>;
}

const children: ChildProcess[] = [];

/** SIGKILLs every child still running; call it in after(). */
export function killAll(): void {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
}

/** Runs `longlink …args`, in network namespace `netns` when given (`ip netns exec` execs in place). */
export function run(args: string[], netns?: string): Run {
  const argv = [MAIN, ...args];
  const child =
    netns === undefined
      ? spawn(process.execPath, argv, { stdio: ['ignore', 'pipe', 'pipe'] })
      : spawn('ip', ['netns', 'exec', netns, process.execPath, ...argv], {
          stdio: ['ignore', 'pipe', 'pipe'],
        });
  children.push(child);
  const out: string[] = [];
  const err: string[] = [];
  child.stdout!.setEncoding('utf8').on('data', linesInto(out));
  child.stderr!.setEncoding('utf8').on('data', linesInto(err));
  let exited = false;
  const exit = new Promise<number | null>((resolve) =>
    child.once('exit', (code) => {
      exited = true;
      resolve(code);
    }),
  );
  return {
    child,
    out,
    err,
    exit,
    line: (re, timeoutMs = 10_000, stream = 'out') =>
      waitFor(
        () => {
          const l = (stream === 'out' ? out : err).find((x) => re.test(x));
          if (l === undefined && exited) {
            throw new Error(
              `exited before printing ${re}\nstdout:\n${out.join('\n')}\nstderr:\n${err.join('\n')}`,
            );
          }
          return l;
        },
        timeoutMs,
        `a line matching ${re}`,
      ),
  };
}

/** serve's text log prefix: the ISO time and the level (src/cli/log.ts). */
const LOG_PREFIX = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (?:debug|info |warn |error) /;

/** A serve log line without its time and level, or undefined when it is not one. */
export function logged(line: string): string | undefined {
  const m = LOG_PREFIX.exec(line);
  return m === null ? undefined : line.slice(m[0].length);
}

/** The messages of a serve's text log lines so far (other lines as they are). */
export function messages(r: { out: string[] }): string[] {
  return r.out.map((l) => logged(l) ?? l);
}

/** `re` matched against the message of serve's text log lines (after the time and the level). */
export function logLine(re: RegExp): RegExp {
  return new RegExp(`${LOG_PREFIX.source}${re.source.replace(/^\^/, '')}`, re.flags);
}

/** `longlink serve …` on a free port; resolves once it listens, with its port. */
export async function serveOn(args: string[] = [], netns?: string): Promise<{ srv: Run; port: number }> {
  const srv = run(['serve', '--port', '0', '--grace', '2000', ...args], netns);
  const json = args.includes('json');
  const line = await srv.line(
    json ? /^\{"time":"[^"]+","level":"info","msg":"listening"/ : logLine(/^listening /),
  );
  return { srv, port: Number(/:(\d+)[ "]/.exec(line)?.[1]) };
}
