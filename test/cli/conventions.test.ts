/**
 * What every command shares: --version, --help with usage and examples, exit 2 for usage errors
 * and 1 for failures in one message style, errors that say their cause in words, IPv6 peers
 * printed [::1]:port, and a second Ctrl-C that aborts.
 */

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { after, describe, test } from 'node:test';
import { waitFor } from '../helpers.js';
import { skipTest, skipUnless } from '../skip.js';
import { killAll, logLine, messages, run, serveOn } from './run.js';

after(killAll);

const COMMANDS = ['serve', 'call', 'probe', 'doctor', 'inspect', 'demo', 'experiment'];
const PKG = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as {
  version: string;
};

/** A raw server on 127.0.0.1:0 running `onSocket` for each connection; closed in after(). */
async function rawServer(onSocket: (s: net.Socket) => void, host = '127.0.0.1'): Promise<number> {
  const server = net.createServer((s) => {
    s.on('error', () => {});
    onSocket(s);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, resolve);
  });
  after(() => {
    server.close();
  });
  return (server.address() as net.AddressInfo).port;
}

async function ipv6Loopback(): Promise<boolean> {
  const s = net.createServer();
  return new Promise((resolve) => {
    s.once('error', () => resolve(false));
    s.listen(0, '::1', () => s.close(() => resolve(true)));
  });
}

describe('CLI conventions', () => {
  test('--version prints the version from package.json', async () => {
    for (const flag of ['--version', '-V']) {
      const r = run([flag]);
      assert.equal(await r.exit, 0);
      assert.deepEqual(r.out, [`longlink ${PKG.version}`]);
    }
  });

  test('help lists every command; <command> --help and help <command> print usage, options and examples', async () => {
    const h = run(['help']);
    assert.equal(await h.exit, 0);
    for (const c of COMMANDS)
      assert.ok(
        h.out.some((l) => l.startsWith(`  ${c} `)),
        `help lists ${c}`,
      );
    await Promise.all(
      COMMANDS.flatMap((c) =>
        [
          [c, '--help'],
          [c, '-h'],
          ['help', c],
        ].map(async (args) => {
          const r = run(args);
          assert.equal(await r.exit, 0, args.join(' '));
          const text = r.out.join('\n');
          assert.match(text, new RegExp(`^usage: longlink ${c} `), args.join(' '));
          assert.match(text, /\n {2}-h, --help +this help\n/);
          assert.match(text, /\nexamples:\n {2}longlink /);
          assert.deepEqual(r.err, []);
        }),
      ),
    );
  });

  test('usage errors exit 2 as "longlink: <command>: <what>" plus the usage line; nothing is attempted', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['serve', '--bogus'], /^longlink: serve: unknown option --bogus$/],
      [
        ['call', '--port', 'abc', 'echo'],
        /^longlink: call: --port must be an integer from 0 to 65535, got "abc"$/,
      ],
      [['call', '--port', '1'], /^longlink: call: call needs a METHOD/],
      [
        // red-team F4: a timer this long fired after 1 ms, with a TimeoutOverflowWarning.
        ['call', '--port', '1', '--timeout', '99999999999', 'sleep', '10'],
        /^longlink: call: --timeout must be an integer from 1 to 2147483647, got "99999999999"$/,
      ],
      [
        ['probe', '--port', '1', '--connect-timeout', '2147483648'],
        /^longlink: probe: --connect-timeout must be an integer from 1 to 2147483647/,
      ],
      [['call', '--port', '1', 'echo', '{nope'], /^longlink: call: the JSON argument is not valid JSON/],
      [['call', '--framing', 'nope', 'x'], /^longlink: call: --framing: invalid framing spec "nope"/],
      [['probe'], /^longlink: probe: --port is required/],
      [
        ['probe', '--port', '1', '--max-idle', 'x'],
        /^longlink: probe: --max-idle must be a number of seconds/,
      ],
      [
        ['probe', '--port', '1', '--min-idle', '9', '--max-idle', '5'],
        /^longlink: probe: --min-idle must be below --max-idle$/,
      ],
      [
        ['doctor', '--connections', '0'],
        /^longlink: doctor: --connections must be an integer >= 1, got "0"$/,
      ],
      [['experiment', 'open'], /^longlink: experiment: unknown experiment "open"/],
      [['inspect', '--port'], /^longlink: inspect: option --port needs a value$/],
      [
        ['serve', '--heartbeat', 'fast'],
        /^longlink: serve: --heartbeat must be off, standard, strict or INTERVAL\/TIMEOUT/,
      ],
    ];
    await Promise.all(
      cases.map(async ([args, first]) => {
        const r = run(args);
        assert.equal(await r.exit, 2, args.join(' '));
        assert.match(r.err[0] ?? '', first, args.join(' '));
        assert.match(r.err.at(-1) ?? '', new RegExp(`^usage: longlink ${args[0]} .*--help for more`));
        assert.deepEqual(r.out, []);
      }),
    );
  });

  test('call says why in words: an HTTP server, a silent server (no HELLO within N ms), an IPv6 port nobody listens on', async () => {
    const http = await rawServer((s) => s.once('data', () => s.end('HTTP/1.1 400 Bad Request\r\n\r\n')));
    const silent = await rawServer(() => {});
    const a = run(['call', '--port', String(http), 'echo', '1']);
    const b = run(['call', '--port', String(silent), '--connect-timeout', '300', 'echo', '1']);
    assert.equal(await a.exit, 1);
    assert.match(
      a.err.join('\n'),
      /^longlink: call: 127\.0\.0\.1:\d+: the server answered like HTTP; it is not a longlink server \[closed: protocol-error\] \(ERR_CONNECTION_CLOSED\)$/,
    );
    assert.equal(await b.exit, 1);
    assert.match(
      b.err.join('\n'),
      /^longlink: call: no HELLO within 300 ms: 127\.0\.0\.1:\d+ accepted the connection and said nothing .*\(ERR_CONNECT_TIMEOUT\)$/,
    );
    if (await ipv6Loopback()) {
      const probe = net.createServer().listen(0, '::1');
      await new Promise((r) => probe.once('listening', r));
      const port = (probe.address() as net.AddressInfo).port;
      await new Promise((r) => probe.close(r));
      const c = run(['call', '--host', '::1', '--port', String(port), 'echo', '1']);
      assert.equal(await c.exit, 1);
      assert.match(
        c.err.join('\n'),
        /^longlink: call: nothing listens on \[::1\]:\d+ \(connection refused\) \(ERR_CONNECT\)$/,
      );
    }
  });

  test('IPv6 peers are printed [::1]:port: serve on ::1, its open/close lines, inspect', {
    skip: skipUnless(process.platform === 'linux', 'inspect reads /proc/net/tcp6', { kind: 'platform' }),
  }, async (t) => {
    if (!(await ipv6Loopback())) {
      skipTest(t, 'no IPv6 loopback here', { kind: 'platform' });
      return;
    }
    const { srv, port } = await serveOn(['--host', '::1']);
    assert.match(messages(srv)[0] ?? '', new RegExp(`^listening \\[::1\\]:${port} framing=longlink`));
    const c = run(['call', '--host', '::1', '--port', String(port), 'echo', '"v6"']);
    assert.equal(await c.exit, 0, c.err.join('\n'));
    assert.deepEqual(c.out, ['"v6"']);
    await srv.line(logLine(/^close \[::1\]:\d+ id=\d+ reason=/));
    assert.ok(
      messages(srv).some((l) => /^open {2}\[::1\]:\d+ id=\d+$/.test(l)),
      srv.out.join('\n'),
    );
    const i = run(['inspect', '--port', String(port)]);
    assert.equal(await i.exit, 0);
    assert.ok(
      i.out.some((l) => new RegExp(`^LISTEN +\\[::1\\]:${port} `).test(l)),
      i.out.join('\n'),
    );
    srv.child.kill('SIGTERM');
    assert.equal(await srv.exit, 0);
  });

  test('serve: the first SIGINT shuts down gracefully, the second aborts what is left (exit 130)', async () => {
    const { srv, port } = await serveOn(['--grace', '60000']);
    const slow = run(['call', '--port', String(port), 'sleep', '30000']);
    // The request is read once the server counts it in flight.
    await waitFor(
      async () => {
        const s = run(['call', '--port', String(port), 'stats']);
        await s.exit;
        return (JSON.parse(s.out[0] ?? '{}') as { inflight?: number }).inflight === 1;
      },
      10_000,
      'the slow request in flight',
    );
    srv.child.kill('SIGINT');
    await srv.line(logLine(/^SIGINT: graceful shutdown/));
    srv.child.kill('SIGINT');
    assert.equal(await srv.exit, 130);
    assert.ok(messages(srv).includes('SIGINT again: aborting every connection'), srv.out.join('\n'));
    assert.equal(await slow.exit, 1);
    assert.match(
      slow.err.join('\n'),
      /^longlink: call: .*remote-reset/,
      `${slow.err.join('\n')}\n${srv.out.join('\n')}`,
    );
  });
});
