/**
 * `longlink call` beyond one request: a plain framing (one frame out, the reply frame printed),
 * raw text, a service that speaks first, and --follow for pushes until --count or Ctrl-C.
 */

import assert from 'node:assert/strict';
import net from 'node:net';
import { after, describe, test } from 'node:test';
import { killAll, run, serveOn } from './run.js';

after(killAll);

describe('longlink call', () => {
  test("--framing ascii:20 sends the sources' header + JSON frame and prints the reply; --raw sends text", async () => {
    const { srv, port } = await serveOn(['--framing', 'ascii:20']);
    const json = run(['call', '--framing', 'ascii:20', '--port', String(port), '{ "type": "data", "n": 1 }']);
    const raw = run(['call', '--framing', 'ascii:20', '--port', String(port), '--raw', 'plain text']);
    assert.equal(await json.exit, 0, json.err.join('\n'));
    assert.deepEqual(json.out, ['{"type":"data","n":1}']);
    assert.equal(await raw.exit, 0, raw.err.join('\n'));
    assert.deepEqual(raw.out, ['plain text']);
    srv.child.kill('SIGTERM');
    assert.equal(await srv.exit, 0);
  });

  test('--framing line --follow --count 2 prints the frames of a service that speaks first; a wrong framing says so', async () => {
    const server = net.createServer((s) => {
      s.on('error', () => {});
      s.write('hello\nworld\nmore\n');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    after(() => {
      server.close();
    });
    const port = String((server.address() as net.AddressInfo).port);
    const two = run(['call', '--framing', 'line', '--port', port, '--follow', '--count', '2']);
    assert.equal(await two.exit, 0, two.err.join('\n'));
    assert.deepEqual(two.out, ['hello', 'world']);
    const one = run(['call', '--framing', 'line', '--port', port]);
    assert.equal(await one.exit, 0);
    assert.deepEqual(one.out, ['hello']);
    // 'hell' read as an ASCII length header: not a digit.
    const wrong = run(['call', '--framing', 'ascii:4', '--port', port]);
    assert.equal(await wrong.exit, 1);
    assert.match(
      wrong.err.join('\n'),
      /^longlink: call: 127\.0\.0\.1:\d+ sent something that is not ascii:4 framing: .*ERR_BAD_FRAME_HEADER/,
    );
  });

  test('--follow --count 3 prints the result and three pushes as JSON lines; --follow alone ends on Ctrl-C with 0', async () => {
    const { srv, port } = await serveOn();
    const c = run([
      'call',
      '--port',
      String(port),
      '--follow',
      '--count',
      '3',
      'push',
      '{"topic":"news","count":3}',
    ]);
    assert.equal(await c.exit, 0, c.err.join('\n'));
    const pushes = c.out.filter((l) => l.startsWith('{"topic"')).map((l) => JSON.parse(l));
    assert.deepEqual(
      pushes,
      [0, 1, 2].map((seq) => ({ topic: 'news', payload: { seq, of: 3 } })),
    );
    assert.ok(c.out.includes('{"pushed":3}'), c.out.join('\n'));

    const listen = run(['call', '--port', String(port), '--follow']);
    await listen.line(/^following 127\.0\.0\.1:\d+: pushes as JSON lines; Ctrl-C to stop$/, 10_000, 'err');
    listen.child.kill('SIGINT');
    assert.equal(await listen.exit, 0, listen.err.join('\n'));
    srv.child.kill('SIGTERM');
    assert.equal(await srv.exit, 0);
  });
});
