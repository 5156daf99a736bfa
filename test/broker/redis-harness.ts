/**
 * A real redis-server for tests, from Debian's packages (scripts/ensure-test-tools.sh installs it):
 * in the foreground, on 127.0.0.1:<free port>, with its own config on the command line — no
 * persistence (no RDB, no AOF: a restart loses everything, as the outage tests want), no daemon,
 * its working directory a temporary one.
 *
 * ```ts
 * const why = redisUnavailable();            // undefined, or the printed reason to skip
 * const redis = await startRedis();
 * redis.url;                                  // redis://127.0.0.1:<port>
 * redis.pause(); redis.resume();              // SIGSTOP / SIGCONT: a hung Redis
 * await redis.kill(); await redis.restart();  // SIGKILL, then a new process on the same port
 * await redis.stop();                         // in after()
 * ```
 */

import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureTools, Fixture, freePort } from '../faults/harness.js';
import { waitFor } from '../helpers.js';
import { skipBecause } from '../skip.js';

/** Why redis-server cannot run here (printed as a skip), or undefined. Installs it when missing. */
export function redisUnavailable(): string | undefined {
  if (process.platform !== 'linux') {
    return skipBecause("redis-server from Debian's packages needs Linux", { kind: 'platform' });
  }
  const missing = ensureTools('redis');
  return missing === undefined ? undefined : skipBecause(missing);
}

const running = new Set<RedisProcess>();
function killRunning(): void {
  for (const r of running) r.killNow();
}

/** One PING over a raw socket: true when redis answers +PONG. */
export function redisPing(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1' });
    let got = '';
    const done = (ok: boolean) => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(1000, () => done(false));
    s.once('connect', () => s.write('PING\r\n'));
    s.on('data', (d) => {
      got += d.toString();
      if (got.includes('\r\n')) done(got.startsWith('+PONG'));
    });
    s.once('error', () => done(false));
  });
}

/** Sends one command (inline) and resolves with the raw reply. For test checks only. */
export function redisCommand(port: number, ...args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host: '127.0.0.1' });
    let got = '';
    s.setTimeout(2000, () => {
      s.destroy();
      reject(new Error(`redis ${args.join(' ')}: no answer`));
    });
    s.once('connect', () => {
      const parts = args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('');
      s.write(`*${args.length}\r\n${parts}`);
    });
    s.on('data', (d) => {
      got += d.toString();
      // Good enough for the simple replies the tests read (integers, bulk strings, status).
      if (/\r\n$/.test(got) && !(got.startsWith('$') && got.split('\r\n').length < 3)) {
        s.end();
        resolve(got);
      }
    });
    s.once('error', reject);
  });
}

export interface RunningRedis {
  readonly port: number;
  readonly url: string;
  readonly fixture: Fixture;
  /** SIGSTOP: the process hangs, its sockets stay open. */
  pause(): void;
  /** SIGCONT. */
  resume(): void;
  /** SIGKILL, and waits for the exit. */
  kill(): Promise<void>;
  /** A new redis-server on the same port (after kill or stop), empty. */
  restart(): Promise<void>;
  /** SIGTERM (SIGKILL after 2 s), directory removed; idempotent. */
  stop(): Promise<void>;
}

class RedisProcess implements RunningRedis {
  fixture: Fixture;
  private stopped = false;
  constructor(
    readonly port: number,
    private readonly dir: string,
  ) {
    this.fixture = this.spawn();
  }
  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }
  private spawn(): Fixture {
    return new Fixture('redis-server', 'redis-server', [
      '--port',
      String(this.port),
      '--bind',
      '127.0.0.1',
      '--save',
      '',
      '--appendonly',
      'no',
      '--daemonize',
      'no',
      '--dir',
      this.dir,
      '--loglevel',
      'warning',
    ]);
  }
  async ready(): Promise<void> {
    const proc = this.fixture.proc;
    await waitFor(
      () => {
        if (proc.exitCode !== null || proc.signalCode !== null) {
          throw new Error(
            `redis-server exited (${proc.exitCode ?? proc.signalCode}): ${this.fixture.stderr.join('')}`,
          );
        }
        return redisPing(this.port);
      },
      10_000,
      `redis-server on ${this.port}`,
    );
  }
  pause(): void {
    this.fixture.proc.kill('SIGSTOP');
  }
  resume(): void {
    this.fixture.proc.kill('SIGCONT');
  }
  async kill(): Promise<void> {
    this.fixture.proc.kill('SIGCONT');
    this.fixture.kill('SIGKILL');
    await this.fixture.exited;
  }
  async restart(): Promise<void> {
    this.fixture = this.spawn();
    await this.ready();
  }
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.fixture.proc.kill('SIGCONT');
    this.fixture.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.fixture.exited, new Promise((r) => (timer = setTimeout(r, 2000)))]);
    clearTimeout(timer);
    this.fixture.kill('SIGKILL');
    await this.fixture.exited;
    rmSync(this.dir, { recursive: true, force: true });
    running.delete(this);
    if (running.size === 0) process.off('exit', killRunning);
  }
  killNow(): void {
    this.fixture.kill('SIGKILL');
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Starts redis-server on a free loopback port; retries on a port taken meanwhile. */
export async function startRedis(): Promise<RunningRedis> {
  for (let attempt = 1; ; attempt++) {
    const dir = mkdtempSync(join(tmpdir(), 'longlink-redis-'));
    const r = new RedisProcess(await freePort(), dir);
    if (running.size === 0) process.once('exit', killRunning);
    running.add(r);
    try {
      await r.ready();
      return r;
    } catch (err) {
      await r.stop();
      if (attempt < 3 && /in use|bind/i.test(r.fixture.stderr.join(''))) continue;
      throw err;
    }
  }
}
