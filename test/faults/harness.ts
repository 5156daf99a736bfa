/**
 * What the fault-injection tests share: child processes that speak JSON lines, the installer of
 * the tools they need, and network namespaces joined by a veth pair. (Skips: test/skip.ts.)
 *
 * Everything here acts on this machine only: loopback, or addresses inside namespaces the test
 * created itself (RFC 1918 10.213.x.y/30 on a veth pair that exists nowhere else).
 */

import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { waitFor } from '../helpers.js';

/** The repository root (tests run from dist/test/faults/). */
export const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const FIXTURES = fileURLToPath(new URL('../../../test/fixtures/faults/', import.meta.url));

/** One JSON line a fixture printed; `t` is Date.now() in that process. */
export interface FixtureEvent {
  t: number;
  ev: string;
  [key: string]: unknown;
}

/** A fixture process: its JSON events as they arrive, stderr for diagnostics, exit as a promise. */
export class Fixture {
  readonly proc: ChildProcess;
  readonly events: FixtureEvent[] = [];
  readonly stderr: string[] = [];
  readonly exited: Promise<number | null>;
  private exitCode: number | null | undefined;

  constructor(
    readonly name: string,
    command: string,
    args: string[],
  ) {
    this.proc = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    this.exited = new Promise((resolve) =>
      this.proc.once('exit', (code, signal) => {
        this.exitCode = code ?? (signal ? -1 : null);
        resolve(code);
      }),
    );
    this.proc.stdin!.on('error', () => {}); // a child that died before reading its stdin
    let buf = '';
    this.proc.stdout!.setEncoding('utf8').on('data', (d: string) => {
      buf += d;
      for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        try {
          this.events.push(JSON.parse(line) as FixtureEvent);
        } catch {
          this.stderr.push(`(stdout) ${line}`);
        }
      }
    });
    this.proc.stderr!.setEncoding('utf8').on('data', (d: string) => this.stderr.push(d));
  }

  /** Writes one command line to the fixture's stdin (an object is sent as JSON). */
  send(command: object | string): void {
    this.proc.stdin!.write(`${typeof command === 'string' ? command : JSON.stringify(command)}\n`);
  }

  /** The first event matching `pred`, waiting up to `timeoutMs` for it; fails early if the child died. */
  async next(pred: (e: FixtureEvent) => boolean, timeoutMs: number, what: string): Promise<FixtureEvent> {
    try {
      return await waitFor(
        () => {
          const e = this.events.find(pred);
          if (e === undefined && this.exitCode !== undefined) {
            throw new Error(`${this.name} exited (${this.exitCode}) before ${what}`);
          }
          return e;
        },
        timeoutMs,
        `${this.name}: ${what}`,
        true, // the window is the subject here
      );
    } catch (err) {
      throw new Error(`${(err as Error).message}\n--- ${this.name} stderr:\n${this.stderr.join('')}`);
    }
  }

  find(ev: string): FixtureEvent[] {
    return this.events.filter((e) => e.ev === ev);
  }

  kill(signal: NodeJS.Signals = 'SIGKILL'): void {
    if (this.exitCode === undefined) this.proc.kill(signal);
  }
}

/**
 * Starts test/fixtures/faults/<file> with `options` as its JSON argument, in network namespace
 * `netns` when given (`ip netns exec` execs node in place, so the pid is node's).
 */
export function startFixture(file: string, options: object, netns?: string): Fixture {
  const args = [`${FIXTURES}${file}`, JSON.stringify(options)];
  return netns === undefined
    ? new Fixture(file, process.execPath, args)
    : new Fixture(`${file}@${netns}`, 'ip', ['netns', 'exec', netns, process.execPath, ...args]);
}

/** Runs a command to completion; returns its status and output instead of throwing. */
export function run(command: string, args: string[], input?: string): { ok: boolean; output: string } {
  const r = spawnSync(command, args, { encoding: 'utf8', timeout: 60_000, input: input ?? '' });
  const output = `${r.stdout ?? ''}${r.stderr ?? ''}${r.error ? String(r.error) : ''}`.trim();
  return { ok: r.status === 0, output };
}

function mustRun(command: string, args: string[], input?: string): void {
  const r = run(command, args, input);
  if (!r.ok) throw new Error(`${command} ${args.join(' ')} failed: ${r.output}`);
}

/**
 * Makes sure the system `tools` (nft, nginx, haproxy, openssl, ip: see scripts/ensure-test-tools.sh
 * --list) are here; returns undefined when they all are, else the reason to skip (the installer's
 * `missing …` lines). Under npm test the runner (scripts/run-tests.mjs) ran the installer once,
 * before any test, and hands its verdict down in LONGLINK_TOOLS; a file run on its own runs the
 * installer itself, which installs what is missing from Debian's packages (unless
 * LONGLINK_NO_INSTALL=1) and says so. Its lines are printed either way.
 */
export function ensureTools(...tools: string[]): string | undefined {
  const verdict = JSON.parse(process.env.LONGLINK_TOOLS ?? '{}') as Record<string, string>;
  const unchecked = tools.filter((t) => verdict[t] === undefined);
  const lines = tools.filter((t) => verdict[t] !== undefined).map((t) => verdict[t] as string);
  if (unchecked.length > 0) {
    const r = spawnSync('bash', [`${ROOT}scripts/ensure-test-tools.sh`, ...unchecked], {
      encoding: 'utf8',
      timeout: 600_000,
    });
    const out = `${r.stdout ?? ''}${r.stderr ?? ''}`.trim().split('\n').filter(Boolean);
    if (r.status !== 0 && !out.some((l) => l.startsWith('missing'))) {
      out.push(`missing ${unchecked.join(', ')}: ensure-test-tools.sh failed (${r.status ?? r.signal})`);
    }
    lines.push(...out);
  }
  for (const l of lines) console.log(`# test tools: ${l}`);
  const missing = lines.filter((l) => l.startsWith('missing'));
  return missing.length === 0 ? undefined : missing.join('; ');
}

/** Why this machine cannot run network-namespace tests, or undefined when it can. */
export function netnsUnavailable(): string | undefined {
  if (process.platform !== 'linux') return `network namespaces need Linux (this is ${process.platform})`;
  if (process.getuid?.() !== 0) return 'network namespaces need root (ip netns add)';
  const r = run('ip', ['netns', 'list']);
  if (!r.ok) return `ip netns is unavailable: ${r.output || 'no ip command (iproute2)'}`;
  return undefined;
}

/** A port free on 127.0.0.1 a moment ago (for programs that must be told their port). */
export async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as net.AddressInfo;
  await new Promise((r) => s.close(r));
  return port;
}

/** Resolves once something accepts TCP connections on 127.0.0.1:port (bounded by timeoutMs). */
export async function accepting(port: number, timeoutMs: number, what: string): Promise<void> {
  await waitFor(
    () =>
      new Promise<boolean>((resolve) => {
        const s = net.connect(port, '127.0.0.1');
        s.once('connect', () => {
          s.destroy();
          resolve(true);
        });
        s.once('error', () => resolve(false));
      }),
    timeoutMs,
    what,
  );
}

/**
 * Two network namespaces, `a` and `b`, joined by a veth pair, with 10.213.N.1/30 in `a` and
 * 10.213.N.2/30 in `b`; loopback up in each. The names carry the pid and a random tag, so runs
 * never collide; `destroy()` deletes both namespaces (and with them the veth pair). A process exit
 * hook deletes them too, should the test die before its after().
 */
export class NetnsLink {
  readonly a: string;
  readonly b: string;
  readonly vethA: string;
  readonly vethB: string;
  readonly ipA: string;
  readonly ipB: string;
  private created: string[] = [];
  private readonly onExit = () => this.destroy();

  constructor() {
    const tag = `${process.pid.toString(36)}${Math.random().toString(36).slice(2, 6)}`;
    this.a = `longlink-${tag}-a`;
    this.b = `longlink-${tag}-b`;
    // Interface names are at most 15 bytes (IFNAMSIZ - 1).
    this.vethA = `lla${tag}`.slice(0, 15);
    this.vethB = `llb${tag}`.slice(0, 15);
    const n = Math.floor(Math.random() * 256);
    this.ipA = `10.213.${n}.1`;
    this.ipB = `10.213.${n}.2`;
  }

  /** Creates the namespaces and the link; throws with the failing command's output. */
  create(): this {
    process.once('exit', this.onExit);
    for (const ns of [this.a, this.b]) {
      mustRun('ip', ['netns', 'add', ns]);
      this.created.push(ns);
    }
    mustRun('ip', ['link', 'add', this.vethA, 'type', 'veth', 'peer', 'name', this.vethB]);
    mustRun('ip', ['link', 'set', this.vethA, 'netns', this.a]);
    mustRun('ip', ['link', 'set', this.vethB, 'netns', this.b]);
    for (const [ns, dev, ip] of [
      [this.a, this.vethA, this.ipA],
      [this.b, this.vethB, this.ipB],
    ] as const) {
      mustRun('ip', ['-n', ns, 'addr', 'add', `${ip}/30`, 'dev', dev]);
      mustRun('ip', ['-n', ns, 'link', 'set', dev, 'up']);
      mustRun('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    }
    return this;
  }

  /**
   * Cuts the link silently. With nftables: every packet arriving on the veth is dropped in each
   * namespace's INPUT hook — no FIN, no RST, no ICMP, and each side's TCP keeps its real
   * retransmission timing (dropping on OUTPUT instead makes the sender's own stack see the loss).
   * Without nft: the veth is taken down in namespace `a` (the carrier drops on both ends).
   */
  cut(method: 'nft' | 'link-down'): void {
    if (method === 'link-down') {
      mustRun('ip', ['-n', this.a, 'link', 'set', this.vethA, 'down']);
      return;
    }
    for (const [ns, dev] of [
      [this.b, this.vethB],
      [this.a, this.vethA],
    ] as const) {
      const rules = `table inet longlink_cut {
  chain input {
    type filter hook input priority raw; policy accept;
    iifname "${dev}" drop
  }
}
`;
      mustRun('ip', ['netns', 'exec', ns, 'nft', '-f', '-'], rules);
    }
  }

  destroy(): void {
    for (const ns of this.created.splice(0)) run('ip', ['netns', 'del', ns]);
    process.off('exit', this.onExit);
  }
}

/** Order statistics of a sample, for the printed figures. */
export function summary(values: number[]): { n: number; min: number; p50: number; p99: number; max: number } {
  const v = [...values].sort((x, y) => x - y);
  const at = (q: number) => v[Math.min(v.length - 1, Math.max(0, Math.ceil(q * v.length) - 1))] ?? Number.NaN;
  return {
    n: v.length,
    min: v[0] ?? Number.NaN,
    p50: at(0.5),
    p99: at(0.99),
    max: v[v.length - 1] ?? Number.NaN,
  };
}

/** The most values inside any window of `windowMs` (a sliding window over sorted values). */
export function densestWindow(values: number[], windowMs: number): number {
  const v = [...values].sort((x, y) => x - y);
  let best = 0;
  let lo = 0;
  for (let hi = 0; hi < v.length; hi++) {
    while ((v[hi] as number) - (v[lo] as number) >= windowMs) lo++;
    best = Math.max(best, hi - lo + 1);
  }
  return best;
}
