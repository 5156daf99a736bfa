/**
 * Every example in examples/ run as a user runs it: its compiled scripts as child processes over
 * loopback, each waited on by the lines it prints (never by time), its answers checked. Keeps the
 * README's examples working as the library changes.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { linesInto, waitFor } from '../helpers.js';

const EXAMPLES = fileURLToPath(new URL('../../examples/', import.meta.url));
const children: ChildProcess[] = [];
after(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

interface Proc {
  child: ChildProcess;
  out: string[];
  err: string[];
  exit: Promise<number | null>;
  /** The first stdout line (from line `from` on) matching `re`; fails early if the process exits. */
  line(re: RegExp, from?: number): Promise<string>;
  /** Writes one line to its stdin. */
  type(text: string): void;
}

/** `node dist/examples/<script> …args`, stdout and stderr collected as lines. */
function start(script: string, args: string[] = []): Proc {
  const child = spawn(process.execPath, [`${EXAMPLES}${script}`, ...args], {
    stdio: ['pipe', 'pipe', 'pipe'],
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
  const show = () => `${script}\nstdout:\n${out.join('\n')}\nstderr:\n${err.join('\n')}`;
  return {
    child,
    out,
    err,
    exit,
    line: (re, from = 0) =>
      waitFor(
        () => {
          const l = out.slice(from).find((x) => re.test(x));
          if (l === undefined && exited) throw new Error(`exited before printing ${re}\n${show()}`);
          return l;
        },
        15_000,
        `${script} to print ${re}\n${show()}`,
      ),
    type: (text) => child.stdin!.write(`${text}\n`),
  };
}

/** The port in a "listening on 127.0.0.1:PORT" line. */
const portOf = (line: string) => Number(/127\.0\.0\.1:(\d+)/.exec(line)![1]);

describe('examples', { concurrency: true }, () => {
  it('rpc-service: two servers, a shared pool, typed answers, metadata, errors, deadlines, metrics, logs', async () => {
    const servers = ['a', 'b'].map((name) =>
      start('rpc-service/server.js', ['--name', name, '--port', '0', '--admin-port', '0']),
    );
    const ports = await Promise.all(servers.map(async (s) => portOf(await s.line(/ listening on /))));
    const client = start('rpc-service/client.js', [
      '--endpoints',
      ports.map((p) => `127.0.0.1:${p}`).join(','),
      '--metrics-port',
      '0',
      '--requests',
      '120',
      '--tenant',
      'shop-test',
      '--stay',
    ]);
    // 120 quotes of qty 1..12 over the four SKUs, computed here as the server prices them.
    const prices = [45, 320, 780, 1150];
    let cents = 0;
    for (let i = 0; i < 120; i++) {
      const qty = 1 + (i % 12);
      cents += Math.round(prices[i % 4]! * qty * (qty >= 10 ? 0.9 : 1));
    }
    const quotes = await client.line(/^quotes: /);
    assert.match(
      quotes,
      new RegExp(`^quotes: 120 in \\d+ ms, total ${(cents / 100).toFixed(2)}; by server: `),
    );
    const spread = [...quotes.matchAll(/\b([ab])=(\d+)/g)].map((m) => Number(m[2]));
    assert.equal(
      spread.reduce((a, b) => a + b, 0),
      120,
    );
    assert.match(quotes, /tenant seen by the servers: shop-test$/);
    assert.equal(await client.line(/^caviar: /), 'caviar: ERR_UNKNOWN_SKU {"sku":"caviar"}');
    assert.equal(
      await client.line(/^forecast coffee: /),
      `forecast coffee: ${Math.round(1150 * 1.03)} cents`,
    );
    assert.match(await client.line(/^forecast cheese: /), /^forecast cheese: ERR_REQUEST_TIMEOUT \(/);
    // The server got the caller's deadline with the request and abandoned the work when it passed.
    const abandoned = await Promise.race(servers.map((s) => s.line(/^forecast cheese: abandoned/)));
    assert.ok(abandoned);
    const waited = servers.flatMap((s) => s.out).find((l) => l.startsWith('forecast cheese: 5000 ms'));
    const told = Number(/the caller waits (\d+) ms/.exec(waited ?? '')?.[1]);
    assert.ok(told > 0 && told <= 200, `the server was told the caller's remaining time: ${waited}`);
    assert.match(await client.line(/^pool: /), /^pool: \d+ connections over 2 endpoints, 124 requests$/);

    // The client's metrics count each outcome by the code the server answered with.
    const url = /(http:\S+\/metrics)/.exec(await client.line(/^client metrics at /))![1]!;
    await client.line(/^staying up/);
    const text = await (await fetch(url)).text();
    assert.match(text, /^longlink_client_requests_total\{method="price\.quote",code="OK"\} 120$/m);
    assert.match(text, /^longlink_client_requests_total\{method="price\.quote",code="ERR_UNKNOWN_SKU"\} 1$/m);
    assert.match(
      text,
      /^longlink_client_requests_total\{method="price\.forecast",code="ERR_REQUEST_TIMEOUT"\} 1$/m,
    );
    // … and the servers' own, on their admin ports; their logs are JSON lines on stderr.
    const served = await Promise.all(
      servers.map(async (s) => {
        const admin = /(http:\S+\/metrics)/.exec(await s.line(/ listening on /))![1]!;
        const m = /^longlink_server_requests_total\{method="price\.quote",code="OK"\} (\d+)$/m.exec(
          await (await fetch(admin)).text(),
        );
        return Number(m?.[1] ?? 0);
      }),
    );
    assert.equal(served[0]! + served[1]!, 120);
    const failed = servers
      .flatMap((s) => s.err)
      .map((l) => JSON.parse(l) as { msg: string; code?: string })
      .filter((l) => l.msg === 'handler failed');
    assert.deepEqual(
      failed.map((l) => l.code).filter((c) => c === 'ERR_UNKNOWN_SKU'),
      ['ERR_UNKNOWN_SKU'],
    );

    client.child.kill('SIGINT');
    await client.line(/^client stopped$/);
    assert.equal(await client.exit, 0);
    for (const s of servers) s.child.kill('SIGTERM');
    for (const s of servers) {
      assert.match(
        await s.line(/ stopped: /),
        /stopped: 0 connections, 0 closed gracefully, 0 requests unanswered$/,
      );
      assert.equal(await s.exit, 0);
    }
  });

  it('chat: rooms over server pushes, an announcement to all, membership ending with the connection', async () => {
    const server = start('chat/server.js', ['--port', '0']);
    const port = String(portOf(await server.line(/^chat server listening on /)));
    const alice = start('chat/client.js', ['--port', port, '--user', 'alice', '--room', 'lobby']);
    assert.equal(await alice.line(/^joined #lobby/), 'joined #lobby (alice)');
    const bob = start('chat/client.js', [
      '--port',
      port,
      '--user',
      'bob',
      '--room',
      'lobby',
      '--room',
      'ops',
    ]);
    assert.equal(await bob.line(/^joined #lobby/), 'joined #lobby (alice, bob)');
    await bob.line(/^joined #ops/);
    await alice.line(/^\* bob joined #lobby$/);

    alice.type('hello bob');
    await bob.line(/^\[#lobby\] alice: hello bob$/);
    await alice.line(/^\[#lobby\] alice: hello bob$/);
    bob.type('#ops deploy at noon'); // alice is not in #ops: she must not get it
    await bob.line(/^\[#ops\] bob: deploy at noon$/);
    bob.type('/announce tea in five');
    await alice.line(/^! bob announces: tea in five$/);
    await bob.line(/^! bob announces: tea in five$/);
    alice.type('#ops let me in');
    await alice.line(/^\(ERR_NOT_A_MEMBER: join #ops first\)$/);
    assert.ok(!alice.out.some((l) => l.includes('deploy at noon')), 'a push went to a room she is not in');

    // A client that dies without a word leaves its rooms too (the server's 'disconnect').
    const carol = start('chat/client.js', ['--port', port, '--user', 'carol', '--room', 'lobby']);
    await carol.line(/^joined #lobby/);
    const from = alice.out.length;
    carol.child.kill('SIGKILL');
    await alice.line(/^\* carol left #lobby$/, from);
    await server.line(/^carol disconnected \(/);

    bob.child.stdin!.end(); // Ctrl-D: leave the rooms, close
    assert.equal(await bob.line(/^bob left$/), 'bob left');
    assert.equal(await bob.exit, 0);
    await alice.line(/^\* bob left #lobby$/);
    alice.child.stdin!.end();
    await alice.line(/^alice left$/);
    assert.equal(await alice.exit, 0);
    server.child.kill('SIGTERM');
    await server.line(/^chat server stopped/);
    assert.equal(await server.exit, 0);
  });

  it('device-gateway: many devices on ascii:20 + JSON, heartbeats, frozen devices dropped on silence', async () => {
    const gateway = start('device-gateway/gateway.js', ['--port', '0']);
    const port = String(portOf(await gateway.line(/^gateway listening on /)));
    const devices = start('device-gateway/devices.js', [
      '--port',
      port,
      '--devices',
      '24',
      '--messages',
      '8',
      '--every',
      '50',
      '--silent',
      'sensor-3',
      '--silent',
      'sensor-17',
    ]);
    assert.equal(await devices.exit, 0, devices.out.join('\n'));
    const summary = devices.out.find((l) => l.startsWith('devices: '));
    assert.equal(summary, 'devices: 24, telemetry acked: 184, dropped by the gateway: sensor-3, sensor-17');
    assert.match(
      devices.out.find((l) => l.startsWith('sensor-3: '))!,
      /^sensor-3: 4\/8 telemetry acked, .*\(remote-reset\)$/,
    );
    assert.match(
      devices.out.find((l) => l.startsWith('sensor-1: '))!,
      /^sensor-1: 8\/8 telemetry acked, .*\(local-graceful\)$/,
    );
    // The gateway probed the frozen devices, then declared them dead by their silence alone.
    await gateway.line(/^device sensor-3 silent for \d+ ms: probing$/);
    // (A device freezes at its 4th ack; more messages may have been on their way by then.)
    await gateway.line(
      /^device sensor-3 offline: heartbeat-timeout after \d+ ms of silence \([4-8] telemetry/,
    );
    await gateway.line(/^device sensor-17 offline: heartbeat-timeout /);
    await gateway.line(/^device sensor-24 offline: remote-fin \(8 telemetry/);
    gateway.child.kill('SIGTERM');
    const stopped = await gateway.line(/^gateway stopped/);
    const m = /^gateway stopped: 24 devices, (\d+) telemetry messages; 0 still connected at shutdown/.exec(
      stopped,
    );
    assert.ok(m !== null, stopped);
    // The acked ones, and those a frozen device sent before its 4th ack reached it.
    assert.ok(Number(m[1]) >= 184 && Number(m[1]) <= 192, stopped);
    assert.equal(await gateway.exit, 0);
  });

  it('legacy-lease-pool: a lease pool against a service without request ids', async () => {
    const service = start('legacy-lease-pool/legacy-service.js', ['--port', '0']);
    const port = String(portOf(await service.line(/^legacy service listening on /)));
    const client = start('legacy-lease-pool/client.js', ['--port', port]);
    assert.equal(await client.exit, 0, `${client.out.join('\n')}\n${client.err.join('\n')}`);
    const said = (prefix: string) => client.out.find((l) => l.startsWith(prefix)) ?? `(no ${prefix} line)`;
    assert.equal(said('burst:'), 'burst: 40/40 balances answered over 4 connections');
    assert.equal(said('teller session:'), 'teller session: ok, ok, ok, ok; 1003 now holds 2500 cents');
    assert.match(said('idle:'), /^idle: [1-4] idle connections pinged by the keepalive/);
    assert.match(
      said('rotate:'),
      /^rotate: the service closed (\d+) connections; the pool dropped them \(peer-fin(, peer-fin)*\)$/,
    );
    assert.match(said('after the rotation:'), /^after the rotation: 20\/20 answered/);
    assert.match(
      said('leak:'),
      /^leak: a lease held for \d+ ms, acquired at .*legacy-lease-pool\/client\.js:\d+:\d+; reclaimed: true$/,
    );
    assert.equal(said('the forgotten lease'), 'the forgotten lease is active: false');
    assert.match(
      said('pool:'),
      /^pool: 66 requests; \d+ connections created, \d+ destroyed, \d+ leases, 1 leak$/,
    );
    assert.equal(said('drained'), 'drained');
    service.child.kill('SIGTERM');
    assert.match(
      await service.line(/^legacy service stopped/),
      /^legacy service stopped: served 66 requests and \d+ pings/,
    );
    assert.equal(await service.exit, 0);
  });
});
