/**
 * Several server hosts on one machine, for the tests of rolling restarts, node failures and
 * rebalancing (docs/SCALING.md):
 *
 *                       ┌──────────── namespace `edge` ────────────┐
 *   clients (fixtures) ─┤ 127.0.0.1:7000 haproxy (leastconn,       │
 *   bound to 127.1.k.j  │   health checks that speak HELLO,        │
 *                       │   send-proxy-v2)          ┌── 10.214.1.1 ┼── veth ── 10.214.1.2:7070  namespace host 1 (a node)
 *   pools (fixtures) ───┤ direct, from 10.214.i.3 ──┼── 10.214.2.1 ┼── veth ── 10.214.2.2:7070  namespace host 2
 *                       │                           └── 10.214.3.1 ┼── veth ── 10.214.3.2:7070  namespace host 3 …
 *                       └──────────────────────────────────────────┘
 *
 * Each host is a network namespace with its own veth link to `edge`: the node listens on its
 * address there, trusts PROXY headers from haproxy's address on that link (10.214.i.1, set as
 * haproxy's `source`) and sees everyone else (the pools, from 10.214.i.3) as direct clients.
 * Nothing leaves the namespaces the test made; the names carry the pid and a random tag.
 *
 * A place is kept for Redis (the rooms' broker): it would run in `edge`, reachable from every host
 * at its edge address (see `redisAddress`), once the rooms work lands on main.
 */

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensureTools, Fixture, type FixtureEvent, netnsUnavailable, run } from '../faults/harness.js';
import { waitFor } from '../helpers.js';

const FIXTURES = fileURLToPath(new URL('../../../test/fixtures/hosts/', import.meta.url));

/** The port every node listens on, in its own namespace. */
export const NODE_PORT = 7070;
/** haproxy's frontend, on the edge namespace's loopback. */
export const PROXY_PORT = 7000;

/** Why these tests cannot run here (printed as the skip reason), or undefined. */
export function hostsUnavailable(): string | undefined {
  return netnsUnavailable() ?? ensureTools('ip', 'haproxy');
}

function mustRun(command: string, args: string[]): void {
  const r = run(command, args);
  if (!r.ok) throw new Error(`${command} ${args.join(' ')} failed: ${r.output}`);
}

/** One host: its namespace and its link to `edge`. */
export interface Host {
  readonly index: number;
  readonly name: string;
  readonly ns: string;
  /** The node's address (in the host's namespace). */
  readonly ip: string;
  /** haproxy's address on this link (the node's trusted proxy). */
  readonly proxyIp: string;
  /** The address direct clients (pools) come from on this link. */
  readonly directIp: string;
}

/** The edge namespace and the hosts linked to it; see the top of this file. */
export class HostNet {
  readonly edge: string;
  readonly hosts: Host[] = [];
  private readonly tag: string;
  private readonly namespaces: string[] = [];
  private readonly onExit = () => this.destroy();

  constructor() {
    this.tag = `${process.pid.toString(36)}${Math.random().toString(36).slice(2, 5)}`;
    this.edge = `longlink-${this.tag}-edge`;
  }

  /** Creates `edge` and `hosts` host namespaces; throws with the failing command's output. */
  create(hosts: number): this {
    process.once('exit', this.onExit);
    mustRun('ip', ['netns', 'add', this.edge]);
    this.namespaces.push(this.edge);
    mustRun('ip', ['-n', this.edge, 'link', 'set', 'lo', 'up']);
    for (let i = 0; i < hosts; i++) this.addHost();
    return this;
  }

  /** One more host namespace, linked to `edge`. */
  addHost(): Host {
    const index = this.hosts.length + 1;
    const ns = `longlink-${this.tag}-h${index}`;
    mustRun('ip', ['netns', 'add', ns]);
    this.namespaces.push(ns);
    // Interface names: at most 15 bytes.
    const e = `lle${this.tag}${index}`.slice(0, 15);
    const h = `llh${this.tag}${index}`.slice(0, 15);
    const host: Host = {
      index,
      name: `h${index}`,
      ns,
      ip: `10.214.${index}.2`,
      proxyIp: `10.214.${index}.1`,
      directIp: `10.214.${index}.3`,
    };
    mustRun('ip', ['link', 'add', e, 'type', 'veth', 'peer', 'name', h]);
    mustRun('ip', ['link', 'set', e, 'netns', this.edge]);
    mustRun('ip', ['link', 'set', h, 'netns', ns]);
    mustRun('ip', ['-n', this.edge, 'addr', 'add', `${host.proxyIp}/24`, 'dev', e]);
    mustRun('ip', ['-n', this.edge, 'addr', 'add', `${host.directIp}/24`, 'dev', e]);
    mustRun('ip', ['-n', this.edge, 'link', 'set', e, 'up']);
    mustRun('ip', ['-n', ns, 'addr', 'add', `${host.ip}/24`, 'dev', h]);
    mustRun('ip', ['-n', ns, 'link', 'set', h, 'up']);
    mustRun('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    // Direct clients leave from .3 unless they bind; haproxy names .1 as its `source`.
    mustRun('ip', ['-n', this.edge, 'route', 'replace', `${host.ip}/32`, 'dev', e, 'src', host.directIp]);
    this.hosts.push(host);
    return host;
  }

  destroy(): void {
    for (const ns of this.namespaces.splice(0).reverse()) run('ip', ['netns', 'del', ns]);
    process.off('exit', this.onExit);
  }
}

/** Starts test/fixtures/hosts/<file> with `options` as its JSON argument, in namespace `ns`. */
export function startIn(ns: string, file: string, options: object, label = file): Fixture {
  return new Fixture(label, 'ip', [
    'netns',
    'exec',
    ns,
    process.execPath,
    `${FIXTURES}${file}`,
    JSON.stringify(options),
  ]);
}

/** What a node fixture is started with (test/fixtures/hosts/node.mjs). */
export interface NodeOptions {
  /** ServerOptions beyond the fixture's own (JSON-able). */
  server?: Record<string, unknown>;
  closeRetryAfterMs?: number;
  graceMs?: number;
}

/** A node process on `host`, listening once this resolves. */
export async function startNode(host: Host, options: NodeOptions = {}): Promise<Fixture> {
  const f = startIn(
    host.ns,
    'node.mjs',
    { name: host.name, host: host.ip, port: NODE_PORT, trusted: host.proxyIp, lifeMs: 170_000, ...options },
    `node ${host.name}`,
  );
  await f.next((e) => e.ev === 'listening', 15_000, 'listening');
  return f;
}

/** SIGTERM, then the graceful close's report and exit 0 (the drain). */
export async function drainNode(f: Fixture): Promise<FixtureEvent> {
  f.kill('SIGTERM');
  const closed = await f.next((e) => e.ev === 'closed', 30_000, 'its graceful close');
  const code = await f.exited;
  if (code !== 0) throw new Error(`${f.name} exited ${code} after its drain`);
  return closed;
}

/** Client connections open on a node now, by its events (ready minus gone). */
export function openOn(f: Fixture): number {
  return f.find('ready').length - f.find('gone').length;
}

// ---------------------------------------------------------------------------------------------
// haproxy

/** One haproxy server line's state, from `show stat`. */
export interface ServerStat {
  status: string;
  /** Sessions now. */
  scur: number;
  /** Sessions in all. */
  stot: number;
}

/** haproxy in `edge`, in front of the hosts; its admin socket answers `show stat`. */
export class Haproxy {
  readonly fixture: Fixture;
  readonly dir: string;
  readonly config: string;

  private constructor(fixture: Fixture, dir: string, config: string) {
    this.fixture = fixture;
    this.dir = dir;
    this.config = config;
  }

  /**
   * Starts haproxy: TCP, leastconn (connections live long: the least loaded node takes the next
   * one), a failed connect retried on another node (`retries 3`, `option redispatch 1`), PROXY v2
   * to every node, and health checks that speak the protocol: PROXY LOCAL, a HELLO, and the
   * node's HELLO expected back (a draining node, which stopped listening, fails them).
   */
  static async start(net: HostNet, hosts: Host[]): Promise<Haproxy> {
    const dir = mkdtempSync(join(tmpdir(), 'longlink-hosts-haproxy-'));
    // HELLO 1.0 with params {}: u32be length 6, kind 1, flags 0, version 0x0100, "{}".
    const hello = '00000006010001007b7d';
    const servers = hosts
      .map((h) => `  server ${h.name} ${h.ip}:${NODE_PORT} source ${h.proxyIp}`)
      .join('\n');
    const config =
      `global\n  nbthread 1\n  maxconn 8000\n  stats socket ${dir}/admin.sock mode 600 level admin\n\n` +
      `defaults\n  mode tcp\n  timeout connect 1s\n  timeout client 120s\n  timeout server 120s\n` +
      `  retries 3\n  option redispatch 1\n\n` +
      `frontend fe\n  bind 127.0.0.1:${PROXY_PORT}\n  default_backend nodes\n\n` +
      `backend nodes\n  balance leastconn\n  option tcp-check\n  tcp-check send-binary ${hello}\n` +
      // The answer as hex: 4 length bytes, then kind 1 (HELLO) — or 9, a GOAWAY refusing the check
      // at a limit (the accept rate during a storm): a node that answers the protocol is up. One
      // that drains has closed its listener, and a dead one answers nothing: those are down.
      `  tcp-check expect rbinary ^.{8}0[19]\n` +
      `  default-server send-proxy-v2 check-send-proxy check inter 200ms fall 2 rise 1\n${servers}\n`;
    const file = join(dir, 'haproxy.cfg');
    writeFileSync(file, config);
    const fixture = new Fixture('haproxy', 'ip', ['netns', 'exec', net.edge, 'haproxy', '-db', '-f', file]);
    const p = new Haproxy(fixture, dir, config);
    try {
      await waitFor(
        async () => {
          if (fixture.proc.exitCode !== null) throw new Error(`haproxy exited (${fixture.proc.exitCode})`);
          return (await p.stat().catch(() => undefined)) !== undefined;
        },
        10_000,
        'haproxy to answer on its admin socket',
      );
    } catch (err) {
      await p.stop();
      throw new Error(`${(err as Error).message}\n${fixture.stderr.join('')}\n--- config:\n${config}`);
    }
    return p;
  }

  /** `show stat` for the backend's servers, by name. */
  stat(): Promise<Map<string, ServerStat>> {
    return new Promise((resolve, reject) => {
      const s = createConnection(join(this.dir, 'admin.sock'));
      let text = '';
      s.setEncoding('utf8');
      s.on('connect', () => s.write('show stat\n'));
      s.on('data', (d: string) => {
        text += d;
      });
      s.on('error', reject);
      s.on('end', () => {
        const lines = text.split('\n').filter((l) => l.length > 0);
        const head = (lines[0] ?? '').replace(/^# /, '').split(',');
        const col = (name: string) => head.indexOf(name);
        const out = new Map<string, ServerStat>();
        for (const l of lines.slice(1)) {
          const f = l.split(',');
          if (f[col('pxname')] !== 'nodes' || f[col('svname')] === 'BACKEND') continue;
          out.set(f[col('svname')] as string, {
            status: f[col('status')] as string,
            scur: Number(f[col('scur')]),
            stot: Number(f[col('stot')]),
          });
        }
        if (head.length < 10) reject(new Error(`unexpected show stat answer: ${text.slice(0, 200)}`));
        else resolve(out);
      });
    });
  }

  /** Waits until haproxy's health checks say `status` (UP, DOWN) for server `name`. */
  async waitStatus(name: string, status: 'UP' | 'DOWN', timeoutMs = 15_000): Promise<void> {
    await waitFor(
      async () => (await this.stat()).get(name)?.status.startsWith(status) === true,
      timeoutMs,
      `haproxy to see ${name} ${status}`,
    );
  }

  async stop(): Promise<void> {
    this.fixture.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.fixture.exited, new Promise((r) => (timer = setTimeout(r, 2000)))]);
    clearTimeout(timer);
    this.fixture.kill('SIGKILL');
    await this.fixture.exited;
    rmSync(this.dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------
// Clients

/** One client's record, from the clients fixture's report. */
export interface ClientRecord {
  addr: string;
  goaways: Array<[number, string, number]>;
  disconnects: number[];
  reconnects: number[];
}

export interface Totals {
  sent: number;
  answered: number;
  lost: number;
  mismatched: number;
  failed: Record<string, number>;
}

/** `count` Clients through haproxy, in `processes` fixtures; resolves once all answered once. */
export async function startProxyClients(
  net: HostNet,
  count: number,
  processes: number,
  options: { pauseMs: number; retryLost?: boolean; reconnect?: object },
): Promise<Fixture[]> {
  const fs: Fixture[] = [];
  for (let k = 0; k < processes; k++) {
    const n = Math.floor(count / processes) + (k < count % processes ? 1 : 0);
    const addrs = Array.from({ length: n }, (_, j) => `127.1.${k + 1}.${j + 1}`);
    fs.push(
      startIn(
        net.edge,
        'clients.mjs',
        { mode: 'proxy', host: '127.0.0.1', port: PROXY_PORT, addrs, lifeMs: 170_000, ...options },
        `clients ${k + 1}`,
      ),
    );
  }
  await Promise.all(fs.map((f) => f.next((e) => e.ev === 'ready', 60_000, 'every client connected')));
  return fs;
}

/** `pools` ClientPools over every host directly, `loops` request loops each, in one fixture. */
export async function startPoolClients(
  net: HostNet,
  hosts: Host[],
  options: { pools: number; loops: number; pauseMs: number; pool?: object },
): Promise<Fixture> {
  const f = startIn(
    net.edge,
    'clients.mjs',
    {
      mode: 'pool',
      endpoints: hosts.map((h) => ({ host: h.ip, port: NODE_PORT })),
      lifeMs: 170_000,
      ...options,
    },
    'pool clients',
  );
  await f.next((e) => e.ev === 'ready', 60_000, 'the pools answering');
  return f;
}

/** Stops every fixture's loops; resolves with their summed totals and every client's record. */
export async function stopClients(
  fs: Fixture[],
): Promise<{ totals: Totals; clients: ClientRecord[]; latency: Array<Record<string, number>> }> {
  for (const f of fs) f.send('stop');
  const stopped = await Promise.all(
    fs.map((f) => f.next((e) => e.ev === 'stopped', 90_000, 'its loops to stop')),
  );
  const totals: Totals = { sent: 0, answered: 0, lost: 0, mismatched: 0, failed: {} };
  for (const s of stopped) {
    const t = s.totals as Totals;
    totals.sent += t.sent;
    totals.answered += t.answered;
    totals.lost += t.lost;
    totals.mismatched += t.mismatched;
    for (const [k, v] of Object.entries(t.failed)) totals.failed[k] = (totals.failed[k] ?? 0) + v;
  }
  return {
    totals,
    clients: stopped.flatMap((s) => s.clients as ClientRecord[]),
    latency: stopped.map((s) => s.latency as Record<string, number>),
  };
}

/** Times from each `from` to the first `to` at or after it (e.g. disconnect → reconnect). */
export function gaps(from: number[], to: number[]): number[] {
  const sorted = [...to].sort((a, b) => a - b);
  const out: number[] = [];
  for (const f of from) {
    const t = sorted.find((x) => x >= f);
    if (t !== undefined) out.push(t - f);
  }
  return out;
}

/** The most events in any `windowMs` window: the peak rate. */
export { densestWindow, summary } from '../faults/harness.js';
