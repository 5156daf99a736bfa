/** The CLI as a user runs it: real child processes, real signals, real sockets. */

import assert from 'node:assert/strict';
import net from 'node:net';
import { after, describe, test } from 'node:test';
import { connect } from '../../src/client/client.js';
import { WAIT_FLOOR_MS, waitFor } from '../helpers.js';
import { skipUnless } from '../skip.js';
import { killAll, messages, type Run, run, serveOn } from './run.js';

after(killAll);

/**
 * Resolves once the server reports at least `n` requests in flight (built-in `stats`, which does
 * not count itself), asking again after each answer. Ready means the `call` child has started and
 * sent its request, which a loaded machine can delay by seconds: the asks go on while that child
 * runs (its exit before the count is seen fails at once, with its output), bounded by a guard
 * against a hang that no loaded run comes near.
 */
async function inflightAtLeast(port: number, n: number, caller: Run): Promise<void> {
  const probe = await connect({ port, reconnect: false, heartbeat: false });
  let exited = false;
  void caller.exit.then(() => (exited = true));
  try {
    const deadline = Date.now() + 2 * WAIT_FLOOR_MS;
    for (;;) {
      const stats = (await probe.request('stats', null, { timeoutMs: 10_000 })) as { inflight: number };
      if (stats.inflight >= n) return;
      if (exited) {
        throw new Error(
          `the call exited before the server had ${n} request(s) in flight\n${caller.out.join('\n')}\n${caller.err.join('\n')}`,
        );
      }
      if (Date.now() > deadline) throw new Error(`the server never had ${n} request(s) in flight`);
    }
  } finally {
    await probe.close({ graceMs: 0 });
  }
}

describe('longlink CLI', () => {
  test('serve + call: built-in methods, error codes and exit statuses, logged close reasons, SIGTERM drains', async () => {
    const { srv, port } = await serveOn();
    const echo = run(['call', '--port', String(port), 'echo', '{"hello":"world"}']);
    assert.equal(await echo.exit, 0);
    assert.deepEqual(JSON.parse(echo.out[0] ?? ''), { hello: 'world' });

    const stats = run(['call', '--port', String(port), 'stats']);
    assert.equal(await stats.exit, 0);
    assert.equal(typeof JSON.parse(stats.out[0] ?? '{}').requests, 'number');

    const missing = run(['call', '--port', String(port), 'nope']);
    assert.equal(await missing.exit, 1);
    assert.match(
      missing.err.join('\n'),
      /^longlink: call: 127\.0\.0\.1:\d+ answered with an error: .*\(ERR_METHOD_NOT_FOUND\)$/,
    );

    const timeout = run(['call', '--port', String(port), '--timeout', '100', 'sleep', '5000']);
    assert.equal(await timeout.exit, 1);
    assert.match(
      timeout.err.join('\n'),
      /^longlink: call: request sleep got no answer within 100 ms \(ERR_REQUEST_TIMEOUT\)$/,
    );

    const badJson = run(['call', '--port', String(port), 'echo', '{nope']);
    assert.equal(await badJson.exit, 2);

    // One line per connection open and close, with the close reason.
    await waitFor(() => messages(srv).filter((l) => l.startsWith('close ')).length >= 4, 5000, 'close lines');
    assert.ok(
      messages(srv).some((l) => /^close .* reason=going-away/.test(l)),
      srv.out.join('\n'),
    );

    // A request in flight when SIGTERM arrives still gets its answer. SIGTERM only once the
    // server is handling it: its 'open' line comes before HELLO, let alone the REQUEST, so the
    // server's own count of requests in flight (built-in stats, which leaves itself out) says when.
    // A second's sleep, so that a loaded machine's scheduling cannot let it end between two asks.
    const slow = run(['call', '--port', String(port), 'sleep', '1000']);
    await inflightAtLeast(port, 1, slow);
    srv.child.kill('SIGTERM');
    assert.equal(await slow.exit, 0);
    assert.deepEqual(JSON.parse(slow.out[0] ?? ''), { slept: 1000 });
    assert.equal(await srv.exit, 0);
    assert.ok(
      messages(srv).some((l) => /^shutdown .* aborted=0 .* unanswered=0/.test(l)),
      srv.out.join('\n'),
    );
  });

  test("serve --framing ascii:20 echoes the sources' header + JSON frames unchanged", async () => {
    const { srv, port } = await serveOn(['--framing', 'ascii:20']);
    const s = net.connect(port, '127.0.0.1');
    const body = Buffer.from(JSON.stringify({ type: 'data', n: 1 }));
    const frame = Buffer.concat([Buffer.from(String(body.length).padStart(20, '0')), body]);
    let got = Buffer.alloc(0);
    s.on('data', (d: Buffer) => {
      got = Buffer.concat([got, d]);
    });
    // Header and body in separate writes, split mid-header, as the sources' client sends them
    // (the second once the first is handed to the kernel).
    await new Promise((r) => s.write(frame.subarray(0, 7), r));
    s.write(frame.subarray(7));
    await waitFor(() => got.length >= frame.length, 5000, 'echo');
    assert.deepEqual(got, frame);
    s.end();
    srv.child.kill('SIGTERM');
    assert.equal(await srv.exit, 0);
  });

  test('call to a port nobody listens on exits 1: nothing listens there (ERR_CONNECT)', async () => {
    const probe = net.createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
    const port = (probe.address() as net.AddressInfo).port;
    await new Promise((r) => probe.close(r));
    const c = run(['call', '--port', String(port), 'echo', '1']);
    assert.equal(await c.exit, 1);
    assert.match(
      c.err.join('\n'),
      /^longlink: call: nothing listens on 127\.0\.0\.1:\d+ \(connection refused\) \(ERR_CONNECT\)$/,
    );
  });

  test('demo: server and clients do real work through a graceful restart with 0 errors', async () => {
    const d = run(['demo', '--seconds', '2', '--clients', '2', '--concurrency', '8']);
    const code = await d.exit;
    const report = d.out.join('\n');
    assert.equal(code, 0, report);
    assert.match(report, /errors {8}0 \(expected 0\)/);
    assert.match(report, /restarting the server under load/);
    assert.match(report, /client closes .*going-away/);
    // A progress line about once a second on stderr (one line each when stderr is not a terminal).
    assert.ok(
      d.err.some((l) => /^demo: \d+ \/ 2 s, [\d,]+ requests, 0 errors, [\d,]+ pushes received$/.test(l)),
      d.err.join('\n'),
    );
  });

  test("experiment close reproduces the sources' netstat observations for graceful and abort", {
    skip: skipUnless(process.platform === 'linux', 'needs /proc/net/tcp', { kind: 'platform' }),
  }, async () => {
    const g = run(['experiment', 'close', '--mode', 'graceful']);
    assert.equal(await g.exit, 0);
    const graceful = g.out.join('\n');
    // The sources' netstat: the closer in FIN_WAIT1 with data queued, the peer ESTABLISHED with data unread.
    assert.match(
      graceful,
      /2\. right after close\(\):\n.*\n\s+client\s+FIN_WAIT1 .* [1-9]\d*\s+0\n\s+server\s+ESTABLISHED .* 0\s+[1-9]\d*/,
    );
    assert.match(graceful, /received 200000 of 200000 bytes, then clean end/);
    assert.match(graceful, /reason=local-graceful .* graceful=true unsentBytes=0/);

    const a = run(['experiment', 'close', '--mode', 'abort']);
    assert.equal(await a.exit, 0);
    const abort = a.out.join('\n');
    assert.match(abort, /2\. right after abort\(\):\n.*\n\s+\(no connection left in the kernel\)/);
    assert.match(abort, /reason=local-abort .* unsentBytes=[1-9]\d*/);
    assert.match(abort, /then error ECONNRESET/);
  });

  test('unknown command prints usage and exits 2', async () => {
    const r = run(['frobnicate']);
    assert.equal(await r.exit, 2);
    assert.match(r.err.join('\n'), /^longlink: unknown command "frobnicate"/);
    assert.match(r.err.join('\n'), /usage: longlink <command>/);
  });
});
