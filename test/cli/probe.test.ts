/**
 * `longlink probe`: the plan as pure functions, then the command against paths with known idle
 * timeouts — real nginx (`proxy_timeout 3s`) and haproxy (`timeout client/server 5s`), which close
 * idle flows, and a relay in this process that drops them silently (or resets on the next write),
 * as a NAT or a stateful firewall does. The found value must be within ±10 % of the configured one.
 *
 * The probe measures time by nature; these tests assert on what it found, never on how long it
 * took, and wait on the child's exit.
 */

import assert from 'node:assert/strict';
import net from 'node:net';
import { after, describe, test } from 'node:test';
import { Bracket, between, ladder, recommend } from '../../src/cli/probe-plan.js';
import { ensureTools, netnsUnavailable, run as runCommand } from '../faults/harness.js';
import { proxyUnavailable, type RunningProxy, startHaproxy, startNginx } from '../server/proxies.js';
import { skipBecause } from '../skip.js';
import { killAll, run, serveOn } from './run.js';

const proxies: RunningProxy[] = [];
const namespaces: string[] = [];
const deleteNamespaces = () => {
  for (const ns of namespaces.splice(0)) runCommand('ip', ['netns', 'del', ns]);
};
after(async () => {
  killAll();
  for (const p of proxies) await p.stop();
  deleteNamespaces();
  process.off('exit', deleteNamespaces);
});

interface ProbeJson {
  how: 'closed' | 'silent' | 'reset' | 'none';
  timeoutMs: number | null;
  lowerMs: number;
  upperMs: number | null;
  recommendation: {
    idleBudgetMs: number | null;
    heartbeat: { intervalMs: number; timeoutMs: number } | 'standard';
  };
  peerSpoke: { idleMs: number; what: string } | null;
  survivedMs: number[];
  closedMs: number[];
  cut: Array<{ idleMs: number; how: string }>;
  rounds: number;
  failed: number;
}

/** Runs `longlink probe … --json` to its end; the parsed report. */
async function probe(args: string[], netns?: string): Promise<ProbeJson> {
  const r = run(['probe', '--json', ...args], netns);
  const code = await r.exit;
  assert.equal(code, 0, `probe exited ${code}\n${r.err.join('\n')}`);
  return JSON.parse(r.out.join('\n')) as ProbeJson;
}

function within(found: number | null, configured: number, tolerance = 0.1): void {
  assert.ok(found !== null, 'a timeout was found');
  assert.ok(
    Math.abs(found - configured) <= configured * tolerance,
    `found ${found} ms, configured ${configured} ms (±${tolerance * 100} %)`,
  );
}

/**
 * A relay that forgets a flow after `idleMs` without traffic, as a NAT does: nothing is sent when
 * it forgets; the next bytes either side sends are dropped (`silent`) or answered with a reset
 * (`reset`, a firewall that rejects). Closed in after().
 */
async function forgetfulRelay(
  upstreamPort: number,
  idleMs: number,
  mode: 'silent' | 'reset',
): Promise<number> {
  const server = net.createServer((client) => {
    const upstream = net.connect(upstreamPort, '127.0.0.1');
    let last = performance.now();
    let forgotten = false;
    const relay = (from: net.Socket, to: net.Socket) =>
      from.on('data', (d: Buffer) => {
        forgotten ||= performance.now() - last >= idleMs;
        if (forgotten) {
          if (mode === 'reset' && from === client) client.resetAndDestroy();
          return;
        }
        last = performance.now();
        to.write(d);
      });
    relay(client, upstream);
    relay(upstream, client);
    for (const [s, other] of [
      [client, upstream],
      [upstream, client],
    ] as const) {
      s.on('error', () => {});
      s.on('close', () => other.destroy());
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  after(() => {
    server.close();
  });
  return (server.address() as net.AddressInfo).port;
}

describe('longlink probe: the plan', () => {
  test('ladder: geometric from min to max; between: evenly inside the bracket', () => {
    const l = ladder(500, 600_000, 32);
    assert.equal(l.length, 32);
    assert.equal(l[0], 500);
    assert.equal(l.at(-1), 600_000);
    for (let i = 1; i < l.length; i++) {
      const r = (l[i] as number) / (l[i - 1] as number);
      assert.ok(r > 1.24 && r < 1.27, `step ${i}: ×${r}`);
    }
    assert.deepEqual(between(2000, 3000, 4), [2200, 2400, 2600, 2800]);
    assert.deepEqual(between(100, 102, 8), [101]);
  });

  test('Bracket: survivors raise the floor, cuts lower the ceiling, a close is the answer', () => {
    const b = new Bracket();
    b.add({ kind: 'survived', idleMs: 2480 });
    b.add({ kind: 'cut', idleMs: 3120, how: 'silent' });
    assert.deepEqual([b.lo, b.hi], [2480, 3120]);
    assert.equal(b.narrow(0.02), false);
    assert.deepEqual(b.estimate(), { how: 'silent', timeoutMs: 2800, lowerMs: 2480, upperMs: 3120 });
    b.add({ kind: 'survived', idleMs: 2690 });
    b.add({ kind: 'cut', idleMs: 2730, how: 'silent' });
    assert.equal(b.narrow(0.02), true);
    assert.equal(b.inconsistent, 0);
    b.add({ kind: 'cut', idleMs: 1000, how: 'silent' }); // below a survivor: a late answer
    assert.equal(b.inconsistent, 1);

    const c = new Bracket();
    c.add({ kind: 'survived', idleMs: 2480 });
    for (const t of [2990, 2985, 2995]) c.add({ kind: 'closed', idleMs: t, how: 'fin' });
    assert.deepEqual(c.estimate(), { how: 'closed', timeoutMs: 2990, lowerMs: 2985, upperMs: 2995 });
    assert.equal(c.narrow(0.02), true);

    const n = new Bracket();
    n.add({ kind: 'survived', idleMs: 1000 });
    n.add({ kind: 'spoke', idleMs: 1500, what: 'PING' });
    assert.deepEqual(n.estimate(), {
      how: 'none',
      timeoutMs: undefined,
      lowerMs: 1000,
      upperMs: undefined,
      peerSpokeMs: 1500,
    });
  });

  test('recommend: idleBudgetMs 10 % under the lower bound and the heartbeat resolveHeartbeat derives from it', () => {
    const short = recommend({ how: 'closed', timeoutMs: 3000, lowerMs: 2990, upperMs: 3000 });
    assert.equal(short.idleBudgetMs, 2600);
    assert.deepEqual(short.heartbeat, { intervalMs: 1000, timeoutMs: 3000 });
    const lb = recommend({ how: 'closed', timeoutMs: 350_000, lowerMs: 350_000, upperMs: 350_000 });
    assert.equal(lb.idleBudgetMs, 315_000);
    assert.equal(lb.heartbeat, 'standard');
    const tiny = recommend({ how: 'silent', timeoutMs: 900, lowerMs: 800, upperMs: 1000 });
    assert.match(tiny.warning ?? '', /not below the path's idle budget/);
    const none = recommend({ how: 'none', timeoutMs: undefined, lowerMs: 600_000, upperMs: undefined });
    assert.equal(none.idleBudgetMs, undefined);
    assert.equal(none.heartbeat, 'standard');
  });
});

describe('longlink probe: against paths with known idle timeouts', { concurrency: true }, () => {
  test('a relay that forgets idle flows silently after 2 s: found by probes left unanswered, ±10 %', async () => {
    const { port } = await serveOn(['--heartbeat', 'off', '--keepalive', 'off']);
    const relay = await forgetfulRelay(port, 2000, 'silent');
    const r = await probe(['--port', String(relay), '--answer-timeout', '500']);
    assert.equal(r.how, 'silent');
    within(r.timeoutMs, 2000);
    assert.ok(r.rounds >= 2, 'bisected after the ladder');
    assert.ok((r.upperMs ?? 0) - r.lowerMs <= 0.05 * 2000, `bracket ${r.lowerMs}–${r.upperMs}`);
    assert.ok(r.cut.every((c) => c.how === 'silent'));
    assert.equal(r.failed, 0);
    console.log(
      `# silent relay 2000 ms: found ${r.timeoutMs} ms (${r.lowerMs}–${r.upperMs}, ${r.rounds} rounds)`,
    );
  });

  test('a relay that resets the first write after 1.5 s of silence, through a plain line echo: ±10 %', async () => {
    const { port } = await serveOn(['--framing', 'line', '--idle-timeout', '0', '--keepalive', 'off']);
    const relay = await forgetfulRelay(port, 1500, 'reset');
    const r = await probe(['--port', String(relay), '--framing', 'line', '--answer-timeout', '500']);
    assert.equal(r.how, 'reset');
    within(r.timeoutMs, 1500);
    console.log(
      `# resetting relay 1500 ms: found ${r.timeoutMs} ms (${r.lowerMs}–${r.upperMs}, ${r.rounds} rounds)`,
    );
  });

  const firewallSkip = (() => {
    if (process.platform !== 'linux')
      return skipBecause('a network namespace with nftables needs Linux', { kind: 'platform' });
    const why = netnsUnavailable();
    if (why !== undefined) return skipBecause(why);
    const missing = ensureTools('nft');
    return missing === undefined ? undefined : skipBecause(missing);
  })();
  test('a stateful firewall (nftables + conntrack, established flows forgotten after 3 s) drops idle flows silently: ±10 %', {
    skip: firewallSkip ?? false,
  }, async () => {
    // A namespace of its own with only loopback: conntrack's timeouts are per namespace, and the
    // rule drops what conntrack calls INVALID — a mid-stream packet of a flow it forgot
    // (nf_conntrack_tcp_loose=0: it does not pick flows up again mid-stream), as a NAT or a
    // firewall in front of a server does. Nothing is sent when the entry expires.
    const ns = `longlink-${process.pid}-probe`;
    if (namespaces.length === 0) process.once('exit', deleteNamespaces);
    const must = (cmd: string, args: string[], input?: string) => {
      const r = runCommand(cmd, args, input);
      assert.ok(r.ok, `${cmd} ${args.join(' ')}: ${r.output}`);
    };
    must('ip', ['netns', 'add', ns]);
    namespaces.push(ns);
    must('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    must(
      'ip',
      ['netns', 'exec', ns, 'nft', '-f', '-'],
      'table inet fw {\n  chain input {\n    type filter hook input priority 0; policy accept;\n    ct state invalid drop\n  }\n}\n',
    );
    must('ip', [
      'netns',
      'exec',
      ns,
      'sysctl',
      '-q',
      '-w',
      'net.netfilter.nf_conntrack_tcp_timeout_established=3',
      'net.netfilter.nf_conntrack_tcp_loose=0',
    ]);
    const { port } = await serveOn(['--heartbeat', 'off', '--keepalive', 'off'], ns);
    const r = await probe(['--port', String(port), '--answer-timeout', '1000'], ns);
    assert.equal(r.how, 'silent', JSON.stringify(r));
    within(r.timeoutMs, 3000);
    console.log(
      `# conntrack established timeout 3000 ms: found ${r.timeoutMs} ms (${r.lowerMs}–${r.upperMs}, ${r.rounds} rounds)`,
    );
  });

  for (const kind of ['nginx', 'haproxy'] as const) {
    const idleMs = kind === 'nginx' ? 3000 : 5000;
    const skip = proxyUnavailable(kind);
    test(`${kind} with a ${idleMs / 1000} s idle timeout closes idle flows: found to ±10 %, and the heartbeat for it`, {
      skip: skip ?? false,
    }, async () => {
      // nginx in front of a line echo, haproxy in front of a longlink server: both dialects.
      const { port } =
        kind === 'nginx'
          ? await serveOn(['--framing', 'line', '--idle-timeout', '0', '--keepalive', 'off'])
          : await serveOn(['--heartbeat', 'off', '--keepalive', 'off']);
      const proxy =
        kind === 'nginx'
          ? await startNginx({ upstreamPort: port, proxyProtocol: false, idleTimeoutMs: idleMs })
          : await startHaproxy({ upstreamPort: port, sendProxy: false, idleTimeoutMs: idleMs });
      proxies.push(proxy);
      const r = await probe([
        '--port',
        String(proxy.port),
        ...(kind === 'nginx' ? ['--framing', 'line'] : []),
      ]);
      assert.equal(r.how, 'closed', JSON.stringify(r));
      within(r.timeoutMs, idleMs);
      assert.ok(r.survivedMs.length > 0 && Math.max(...r.survivedMs) < idleMs);
      assert.equal(r.rounds, 1, 'a close is the answer: no bisection');
      const budget = r.recommendation.idleBudgetMs ?? 0;
      assert.ok(budget > 0 && budget < idleMs, `idleBudgetMs ${budget}`);
      const hb = r.recommendation.heartbeat as { intervalMs: number; timeoutMs: number };
      assert.ok(hb.intervalMs < idleMs / 2, `PING after ${hb.intervalMs} ms of silence`);
      console.log(`# ${kind} idle timeout ${idleMs} ms: found ${r.timeoutMs} ms (${r.lowerMs}–${r.upperMs})`);
    });
  }

  test('a far end with its own heartbeat: the probe sees its PING and says it cannot measure past it', async () => {
    // PING after 1.5 × the interval of silence (the server lets a live client lead).
    const { port } = await serveOn(['--heartbeat', '1000/3000', '--keepalive', 'off']);
    const r = await probe(['--port', String(port), '--max-idle', '10']);
    assert.equal(r.how, 'none');
    assert.equal(r.peerSpoke?.what, 'PING');
    within(r.peerSpoke?.idleMs ?? null, 1500, 0.2);
    assert.equal(r.recommendation.heartbeat, 'standard');
  });

  test('text output and failures: the finding in words, nothing listening exits 1', async () => {
    const { port } = await serveOn(['--heartbeat', 'off', '--keepalive', 'off']);
    const relay = await forgetfulRelay(port, 1500, 'silent');
    // The answer timeout also bounds the first HELLO's answer: 32 connections at once through the
    // relay on a loaded machine took more than 300 ms (a fresh-clone run under load).
    const t = run(['probe', '--port', String(relay), '--answer-timeout', '1000', '--max-idle', '5']);
    assert.equal(await t.exit, 0, t.err.join('\n'));
    assert.match(
      t.out[0] ?? '',
      /^longlink probe 127\.0\.0\.1:\d+ \(longlink protocol, PING\/PONG\): \d+ connections in \d+ rounds/,
    );
    assert.ok(
      t.out.some((l) =>
        /^idle timeout {2}1\.\d\d s \(between 1\.\d\d s and 1\.\d\d s\): idle connections are dropped silently/.test(
          l,
        ),
      ),
      t.out.join('\n'),
    );
    assert.ok(
      t.out.some((l) =>
        /^heartbeat {5}idleBudgetMs: \d+ {2}→ {2}heartbeat: \{ intervalMs: 1000, timeoutMs: 3000 \}$/.test(l),
      ),
      t.out.join('\n'),
    );
    assert.ok(
      t.err.some((l) => /^probe 127\.0\.0\.1:\d+: [\d.]+ s: round 2: \d+ connections silent for/.test(l)),
      t.err.join('\n'),
    );

    const closed = net.createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const free = (closed.address() as net.AddressInfo).port;
    await new Promise((r) => closed.close(r));
    const f = run(['probe', '--port', String(free), '--max-idle', '5']);
    assert.equal(await f.exit, 1);
    assert.match(
      f.err.at(-1) ?? '',
      /^longlink: probe: nothing listens on 127\.0\.0\.1:\d+ \(connection refused\) \(ERR_CONNECT\)$/,
    );
  });
});
