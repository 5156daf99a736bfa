/**
 * Seeing a running `longlink serve`: --metrics-port (the /metrics text checked by Prometheus's own
 * `promtool check metrics`, installed by scripts/ensure-test-tools.sh), `longlink top` against it,
 * and serve's log lines (a time and a level on each; --log-format json; --log-level).
 */

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import { after, describe, test } from 'node:test';
import { ensureTools, freePort } from '../faults/harness.js';
import { waitFor } from '../helpers.js';
import { skipTest } from '../skip.js';
import { killAll, logged, logLine, messages, run, serveOn } from './run.js';

after(killAll);

function get(port: number, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path }, (res) => {
        let body = '';
        res.setEncoding('utf8').on('data', (d: string) => {
          body += d;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      })
      .on('error', reject);
  });
}

/** `serve --metrics-port 0`: its port and its admin port (from the `admin` line). */
async function serveWithAdmin(args: string[] = []) {
  const { srv, port } = await serveOn(['--metrics-port', '0', ...args]);
  const line = await srv.line(logLine(/^admin /));
  const admin = Number(/admin 127\.0\.0\.1:(\d+) /.exec(logged(line) ?? '')?.[1]);
  return { srv, port, admin };
}

describe('serve --metrics-port, longlink top, serve logs', () => {
  test('/metrics passes promtool check metrics; the dashboard and /api are on the same port', async (t) => {
    const { srv, port, admin } = await serveWithAdmin();
    assert.ok(
      messages(srv).some((l) =>
        l.startsWith(`admin 127.0.0.1:${admin} dashboard=http://127.0.0.1:${admin}/ metrics=`),
      ),
    );
    for (let i = 0; i < 3; i++)
      assert.equal(await run(['call', '--port', String(port), 'echo', String(i)]).exit, 0);
    assert.equal(await run(['call', '--port', String(port), 'nope']).exit, 1);
    const m = await get(admin, '/metrics');
    assert.equal(m.status, 200);
    assert.match(m.body, /^longlink_server_requests_total\{method="echo",code="OK"\} 3$/m);
    assert.match(m.body, /^longlink_server_connections_accepted_total 4$/m);
    assert.equal((await get(admin, '/')).status, 200);
    assert.equal(JSON.parse((await get(admin, '/api/summary')).body).requests.total, 3);

    const skip = ensureTools('promtool');
    if (skip !== undefined) {
      skipTest(t, `promtool check metrics: ${skip}`);
    } else {
      const check = spawnSync('promtool', ['check', 'metrics'], {
        input: m.body,
        encoding: 'utf8',
        timeout: 30_000,
      });
      assert.equal(check.status, 0, `promtool check metrics:\n${check.stdout}${check.stderr}`);
      assert.equal(`${check.stdout}${check.stderr}`.trim(), '', 'no lint warnings');
    }
    srv.child.kill('SIGTERM');
    assert.equal(await srv.exit, 0);
  });

  test('longlink top: the header with totals and one row per connection; --json for scripts', async () => {
    const { srv, port, admin } = await serveWithAdmin();
    const slow = run(['call', '--port', String(port), 'sleep', '20000']);
    await waitFor(
      async () => JSON.parse((await get(admin, '/api/summary')).body).inflight === 1,
      10_000,
      'in flight',
    );

    const top = run(['top', '--port', String(admin), '--count', '1', '--sort', 'inflight']);
    assert.equal(await top.exit, 0, top.err.join('\n'));
    assert.match(
      top.out[0] ?? '',
      new RegExp(
        `^127\\.0\\.0\\.1:${port}  1 connections \\(0 accepting\\)  1 in flight  \\d[\\d,]* req/s  p50 .* ms  p99 .* ms  refused 0  closed \\d+  errors 0  \\d\\d:\\d\\d:\\d\\d$`,
      ),
    );
    assert.match(top.out[2] ?? '', /^peer +id +age +rtt ms +in flight +queued +tcp +retrans/);
    assert.match(top.out[3] ?? '', /^127\.0\.0\.1:\d+ +\d+ +\d+s +\S+ +1 +0 +(ESTABLISHED|–) /);

    const json = run(['top', '--port', String(admin), '--json', '--count', '2', '--interval', '100']);
    assert.equal(await json.exit, 0, json.err.join('\n'));
    assert.equal(json.out.length, 2, 'one line per refresh');
    const r = JSON.parse(json.out[0] ?? '{}');
    assert.equal(r.summary.connections, 1);
    assert.equal(r.connections.total, 1);
    assert.equal(r.connections.connections[0].inflight, 1);

    srv.child.kill('SIGINT');
    srv.child.kill('SIGINT');
    await srv.exit;
    await slow.exit;

    const nobody = run(['top', '--port', String(admin), '--count', '1']);
    assert.equal(await nobody.exit, 1);
    assert.match(
      nobody.err.join('\n'),
      /^longlink: top: nothing listens on 127\.0\.0\.1:\d+ \(connection refused\)/,
    );
    const usage = run(['top', '--port', String(admin), '--sort', 'size']);
    assert.equal(await usage.exit, 2);
  });

  test('regression F7: longlink top against an endpoint answering JSON of another shape says so in one line, exit 1', async () => {
    const shapes: Array<[string, string, string, RegExp]> = [
      [
        'nulls',
        '{"time":1,"requests":null}',
        '{"total":1,"connections":[null]}',
        /connections is not a number/,
      ],
      ['arrays', '[]', '[]', /\(not an object\)/],
      [
        'strings',
        '{"time":"x","connections":"x","requests":{"perSecond":"x"}}',
        '{"total":"x","connections":[{"id":"x","peer":{},"ageMs":"x","tcp":"x"}]}',
        /is not a number/,
      ],
      ['numbers', '1', '2', /\(not an object\)/],
    ];
    for (const [name, summary, connections, why] of shapes) {
      const fake = http.createServer((q, r) => {
        r.setHeader('content-type', 'application/json');
        r.end(q.url?.startsWith('/api/summary') ? summary : connections);
      });
      fake.listen(0, '127.0.0.1');
      await new Promise((r) => fake.once('listening', r));
      const port = (fake.address() as net.AddressInfo).port;
      try {
        for (const json of [[], ['--json']]) {
          const top = run(['top', '--port', String(port), '--count', '1', ...json]);
          assert.equal(await top.exit, 1, `${name} ${json.join('')}`);
          const err = top.err.join('\n');
          assert.match(
            err,
            /^longlink: top: 127\.0\.0\.1:\d+\/api\/\S+ answered JSON of another shape \(/,
            name,
          );
          assert.match(err, why, name);
          assert.doesNotMatch(err, /Cannot read|TypeError|toFixed|\n/, name);
        }
      } finally {
        fake.close();
      }
    }
  });

  test("serve logs: a time and a level on every line; json; the server's own refusal lines", async () => {
    const { srv, port } = await serveOn(['--log-format', 'json', '--max-connections-per-ip', '1']);
    const first = run(['call', '--port', String(port), 'sleep', '20000']);
    await waitFor(() => messages(srv).some((l) => l.includes('"msg":"open"')), 10_000, 'the first open');
    const second = run(['call', '--port', String(port), 'echo', '1']);
    assert.equal(await second.exit, 1, 'refused: one connection per address');
    await waitFor(
      () => srv.out.some((l) => l.includes('"msg":"connection refused"')),
      10_000,
      'the refusal line',
    );
    srv.child.kill('SIGTERM');
    srv.child.kill('SIGTERM');
    await srv.exit;
    await first.exit;
    const records = srv.out.map((l) => JSON.parse(l) as Record<string, unknown>);
    for (const r of records) {
      assert.match(String(r.time), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
      assert.ok(['debug', 'info', 'warn', 'error'].includes(String(r.level)));
    }
    const listening = records.find((r) => r.msg === 'listening');
    assert.equal(listening?.address, `127.0.0.1:${port}`);
    assert.equal(
      records.filter((r) => r.msg === 'listening').length,
      1,
      "serve's own line, not the server's too",
    );
    const refused = records.find((r) => r.msg === 'connection refused');
    assert.equal(refused?.level, 'warn');
    assert.equal(refused?.reason, 'max-connections-per-address');
    const open = records.find((r) => r.msg === 'open');
    assert.match(String(open?.peer), /^127\.0\.0\.1:\d+$/);
    const close = records.find((r) => r.msg === 'close');
    assert.equal(typeof close?.reason, 'string');

    // text (the default) with --log-level warn: the open/close lines dropped, the refusal kept.
    const qport = await freePort();
    const quiet = run([
      'serve',
      '--port',
      String(qport),
      '--log-level',
      'warn',
      '--max-connections-per-ip',
      '1',
    ]);
    // A plain TCP connection holds the address's one slot (admission counts it at accept). It is
    // the first connection the server sees: a probe before it could take the slot itself.
    let holder: net.Socket | undefined;
    await waitFor(
      async () => {
        const s = net.connect(qport, '127.0.0.1');
        const up = await new Promise<boolean>((resolve) => {
          s.once('connect', () => resolve(true));
          s.once('error', () => resolve(false));
        });
        if (up) holder = s;
        else s.destroy();
        return up;
      },
      10_000,
      'the quiet server to listen',
    );
    const denied = run(['call', '--port', String(qport), 'echo', '1']);
    assert.equal(await denied.exit, 1, 'denied while the holder is connected');
    assert.match(denied.err.join('\n'), /ERR_TOO_MANY_CONNECTIONS|closed/);
    await quiet.line(logLine(/^connection refused reason=max-connections-per-address /));
    quiet.child.kill('SIGTERM');
    quiet.child.kill('SIGTERM');
    await quiet.exit;
    holder?.destroy();
    assert.ok(quiet.out.length > 0);
    for (const l of quiet.out) assert.match(l, /^\S+Z (warn |error) /, 'only warn and error lines');
    const bad = run(['serve', '--port', '0', '--log-format', 'xml']);
    assert.equal(await bad.exit, 2);
  });
});
