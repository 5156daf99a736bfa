/**
 * Real PROXY protocol senders for tests: haproxy (`send-proxy` for v1, `send-proxy-v2`) and nginx's
 * stream proxy (`proxy_protocol on;`, which sends v1 only), each run in the foreground with its own
 * config in a temporary directory, listening on 127.0.0.1 in front of an upstream on loopback.
 *
 * ```ts
 * const why = proxyUnavailable('haproxy'); // undefined, or the printed reason to skip
 * const proxy = await startHaproxy({ upstreamPort: server.port, sendProxy: 'v2' });
 * net.connect({ port: proxy.port, host: '127.0.0.1', localAddress: '127.0.0.2' });
 * await proxy.stop(); // in after(): SIGTERM, SIGKILL if still there after 2 s, temp dir removed
 * ```
 *
 * Readiness is a TCP connect to the proxy's port from {@link PROBE_ADDRESS}, which the proxy is
 * configured to refuse before it opens anything upstream: the upstream sees only the test's
 * connections (and haproxy's health checks when asked for). A port taken between `freePort()` and
 * the proxy's bind is retried on a new port.
 */

import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureTools, Fixture, freePort } from '../faults/harness.js';
import { waitFor } from '../helpers.js';
import { skipBecause } from '../skip.js';

/** The loopback address readiness probes come from; both proxies refuse it. Do not test from it. */
export const PROBE_ADDRESS = '127.0.0.254';

/** Debian's dynamic stream module (libnginx-mod-stream); absent when nginx has it built in. */
const STREAM_MODULE = '/usr/lib/nginx/modules/ngx_stream_module.so';

export type ProxyKind = 'haproxy' | 'nginx';

/** A proxy process started by {@link startHaproxy} or {@link startNginx}. */
export interface RunningProxy {
  readonly kind: ProxyKind;
  /** Where clients connect: always 127.0.0.1. */
  readonly host: string;
  readonly port: number;
  /** The process, its stderr (`fixture.stderr`) and exit (`fixture.exited`). */
  readonly fixture: Fixture;
  /** The config it was started with, for diagnostics. */
  readonly config: string;
  /** Stops the process (SIGTERM, then SIGKILL after 2 s) and removes its directory; idempotent. */
  stop(): Promise<void>;
}

export interface HaproxyOptions {
  upstreamPort: number;
  /** Default 127.0.0.1. */
  upstreamHost?: string;
  /** `send-proxy` (v1), `send-proxy-v2`, or no header. */
  sendProxy: 'v1' | 'v2' | false;
  /**
   * Health checks of the upstream: `check inter <intervalMs>` (default 2000), plus
   * `check-send-proxy` when `sendProxy` is set — a v2 check then opens with a LOCAL header, a v1
   * check with a TCP4 line naming the check connection's own addresses. Default off.
   *
   * Without `expect` a check is a bare connect: haproxy sends the header and resets at once, often
   * before Node's `'connection'` callback runs, when `socket.remoteAddress` is already undefined.
   * With `expect` it is `option tcp-check` + `tcp-check expect string <expect>`: haproxy keeps the
   * connection until the upstream sends that string (a server-speaks-first check), then resets.
   */
  healthCheck?: boolean | { intervalMs?: number; expect?: string };
  /** `timeout client` and `timeout server`: how long an idle connection lives. Default 60 s. */
  idleTimeoutMs?: number;
  /** Appended to the `server` line, e.g. `proxy-v2-options authority,unique-id`. */
  serverOptions?: string;
  /** Lines appended to the backend section, e.g. `option tcp-check`. */
  extra?: string;
}

export interface NginxOptions {
  upstreamPort: number;
  /** Default 127.0.0.1. */
  upstreamHost?: string;
  /** `proxy_protocol on;` — nginx sends v1 only. */
  proxyProtocol: boolean;
  /** `proxy_timeout`: how long an idle connection lives. Default 60 s. */
  idleTimeoutMs?: number;
  /** Directives appended inside the stream `server { }` block. */
  extra?: string;
}

/**
 * Why `kind` cannot run here (not Linux, not installed and not installable), printed as the test
 * runner shows skips; undefined when it can. Installs it from Debian's packages when missing.
 */
export function proxyUnavailable(kind: ProxyKind): string | undefined {
  if (process.platform !== 'linux') {
    return skipBecause(`${kind} from Debian's packages and 127.0.0.0/8 source addresses need Linux`, {
      kind: 'platform',
    });
  }
  const missing = ensureTools(kind);
  return missing === undefined ? undefined : skipBecause(missing);
}

/**
 * Starts haproxy in TCP mode on 127.0.0.1:<free port> → upstream, one thread, in the foreground.
 *
 * @example
 * ```ts
 * const proxy = await startHaproxy({ upstreamPort, sendProxy: 'v2', healthCheck: { intervalMs: 200, expect: 'hello' } });
 * ```
 */
export function startHaproxy(options: HaproxyOptions): Promise<RunningProxy> {
  const upstream = `${options.upstreamHost ?? '127.0.0.1'}:${options.upstreamPort}`;
  const idle = options.idleTimeoutMs ?? 60_000;
  let server = `server s ${upstream}`;
  if (options.sendProxy === 'v1') server += ' send-proxy';
  if (options.sendProxy === 'v2') server += ' send-proxy-v2';
  let backend = '';
  if (options.healthCheck) {
    const check = typeof options.healthCheck === 'object' ? options.healthCheck : {};
    server += ` check inter ${check.intervalMs ?? 2000}ms`;
    if (options.sendProxy !== false) server += ' check-send-proxy';
    if (check.expect !== undefined) {
      // haproxy's config words: a backslash escapes a space, '#', a quote or itself.
      backend += `  option tcp-check\n  tcp-check expect string ${check.expect.replace(/[\s#"'\\]/g, '\\$&')}\n`;
    }
  }
  if (options.serverOptions) server += ` ${options.serverOptions}`;
  return start('haproxy', (dir, port) => {
    const config =
      `global\n  nbthread 1\n  maxconn 1024\n\n` +
      `defaults\n  mode tcp\n  timeout connect 2s\n  timeout client ${idle}ms\n  timeout server ${idle}ms\n\n` +
      `frontend fe\n  bind 127.0.0.1:${port}\n` +
      // Rejected at accept, before a stream (and so an upstream connection) exists.
      `  tcp-request connection reject if { src ${PROBE_ADDRESS} }\n  default_backend be\n\n` +
      `backend be\n  ${server}\n${backend}${indent(options.extra)}`;
    const file = join(dir, 'haproxy.cfg');
    writeFileSync(file, config);
    return { config, args: ['-db', '-f', file] };
  });
}

/**
 * Starts nginx's stream proxy on 127.0.0.1:<free port> → upstream: one process
 * (`master_process off`, so a kill leaves no orphaned worker), its error log on stderr.
 *
 * @example
 * ```ts
 * const proxy = await startNginx({ upstreamPort, proxyProtocol: true });
 * ```
 */
export function startNginx(options: NginxOptions): Promise<RunningProxy> {
  const upstream = `${options.upstreamHost ?? '127.0.0.1'}:${options.upstreamPort}`;
  const idle = options.idleTimeoutMs ?? 60_000;
  return start('nginx', (dir, port) => {
    const config =
      `${existsSync(STREAM_MODULE) ? `load_module ${STREAM_MODULE};\n` : ''}` +
      `master_process off;\npid ${dir}/nginx.pid;\nerror_log stderr notice;\n` +
      `events { worker_connections 1024; }\n` +
      `stream {\n  server {\n    listen 127.0.0.1:${port};\n` +
      // ngx_stream_access_module: refused in the access phase, before proxy_pass connects.
      `    deny ${PROBE_ADDRESS};\n` +
      `    proxy_pass ${upstream};\n    proxy_protocol ${options.proxyProtocol ? 'on' : 'off'};\n` +
      `    proxy_timeout ${idle}ms;\n    proxy_connect_timeout 2s;\n${indent(options.extra, '    ')}  }\n}\n`;
    const file = join(dir, 'nginx.conf');
    writeFileSync(file, config);
    // -e: the error log before the config is read (else nginx opens /var/log/nginx/error.log).
    return { config, args: ['-e', 'stderr', '-g', 'daemon off;', '-c', file, '-p', dir] };
  });
}

function indent(lines: string | undefined, pad = '  '): string {
  if (!lines) return '';
  return `${lines
    .split('\n')
    .map((l) => `${pad}${l.trim()}`)
    .join('\n')}\n`;
}

/**
 * Proxies not stopped yet. Should the test process exit without its after() (an uncaught error,
 * process.exit()), the exit hook kills them: an orphaned haproxy or nginx would outlive the run. A
 * signal that kills node itself (SIGTERM, SIGKILL) bypasses the hook.
 */
const running = new Set<ProxyProcess>();
function killRunning(): void {
  for (const p of running) p.kill();
}

/** Runs the proxy `write` configures until it accepts on its port; retries when the port was taken. */
async function start(
  kind: ProxyKind,
  write: (dir: string, port: number) => { config: string; args: string[] },
): Promise<RunningProxy> {
  for (let attempt = 1; ; attempt++) {
    const dir = mkdtempSync(join(tmpdir(), `longlink-${kind}-`));
    const port = await freePort();
    const { config, args } = write(dir, port);
    if (running.size === 0) process.once('exit', killRunning);
    const proxy = new ProxyProcess(kind, port, new Fixture(kind, kind, args), config, dir);
    running.add(proxy);
    try {
      await proxy.ready();
      return proxy;
    } catch (err) {
      await proxy.stop();
      // freePort() closed its socket before the proxy bound: someone may have taken the port.
      const taken = /in use|cannot bind/i.test(proxy.fixture.stderr.join(''));
      if (taken && attempt < 3) continue;
      throw err;
    }
  }
}

class ProxyProcess implements RunningProxy {
  readonly host = '127.0.0.1';
  private stopped: Promise<void> | undefined;

  constructor(
    readonly kind: ProxyKind,
    readonly port: number,
    readonly fixture: Fixture,
    readonly config: string,
    private readonly dir: string,
  ) {}

  /** Resolves once the proxy accepts on its port; rejects with its stderr if it exits first. */
  async ready(): Promise<void> {
    const proc = this.fixture.proc;
    try {
      await waitFor(
        () => {
          if (proc.exitCode !== null || proc.signalCode !== null) {
            throw new Error(`${this.kind} exited (${proc.exitCode ?? proc.signalCode}) before listening`);
          }
          return probe(this.port);
        },
        10_000,
        `${this.kind} to listen on ${this.port}`,
      );
    } catch (err) {
      throw new Error(
        `${(err as Error).message}\n--- ${this.kind} stderr:\n${this.fixture.stderr.join('')}\n--- config:\n${this.config}`,
      );
    }
  }

  stop(): Promise<void> {
    this.stopped ??= (async () => {
      this.fixture.kill('SIGTERM');
      // Both stop at once on SIGTERM; the timer only bounds a stuck one.
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([this.fixture.exited, new Promise((r) => (timer = setTimeout(r, 2000)))]);
      clearTimeout(timer);
      this.fixture.kill('SIGKILL');
      await this.fixture.exited;
      rmSync(this.dir, { recursive: true, force: true });
      running.delete(this);
      if (running.size === 0) process.off('exit', killRunning);
    })();
    return this.stopped;
  }

  /** Synchronous and final, for the exit hook. */
  kill(): void {
    this.fixture.kill('SIGKILL');
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * One connect from {@link PROBE_ADDRESS}: true when something listens. The proxy refuses the probe,
 * often before libuv sees its connect complete, so a reset counts as listening; a refusal does not.
 */
function probe(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host: '127.0.0.1', localAddress: PROBE_ADDRESS });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', (err: NodeJS.ErrnoException) =>
      resolve(err.code === 'ECONNRESET' || err.code === 'EPIPE'),
    );
  });
}
