/**
 * The admin endpoint (serveAdmin): /api/summary and /api/connections against a live server, /metrics
 * with and without metrics, the dashboard's files (uplot from node_modules), loopback-only Host
 * names, GET only.
 */

import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import net from 'node:net';
import { after, describe, test } from 'node:test';
import { type Client, connect } from '../../src/client/client.js';
import { type AdminConnections, type AdminSummary, serveAdmin } from '../../src/observe/admin.js';
import { enableMetrics } from '../../src/observe/metrics.js';
import { hiddenPeers } from '../../src/observe/peer.js';
import { createServer, type Server } from '../../src/server/server.js';
import { waitFor } from '../helpers.js';

const cleanup: Array<() => unknown> = [];
after(async () => {
  for (const f of cleanup.reverse()) await f();
});

function get(
  url: string,
  headers: Record<string, string> = {},
  method = 'GET',
): Promise<{ status: number; type: string; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => {
        body += d;
      });
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type']), body }),
      );
    });
    req.on('error', reject);
    req.end();
  });
}

async function live(): Promise<{ server: Server; port: number; clients: Client[] }> {
  const server = createServer({
    handlers: {
      echo: (p) => p,
      hold: () => new Promise(() => {}),
    },
    handlerTimeoutMs: 0,
  });
  cleanup.push(() => server.destroy());
  const { port } = await server.listen();
  const clients: Client[] = [];
  for (let i = 0; i < 2; i++) {
    const c = await connect({ port, reconnect: false });
    clients.push(c);
    cleanup.push(() => c.destroy());
  }
  return { server, port, clients };
}

describe('serveAdmin', () => {
  test('/api/summary and /api/connections describe the live server', async () => {
    const { server, clients } = await live();
    const admin = await serveAdmin(server);
    cleanup.push(() => admin.close());
    assert.equal(admin.address.address, '127.0.0.1', 'loopback by default');
    for (let i = 0; i < 20; i++) await (clients[0] as Client).request('echo', i);
    void (clients[1] as Client).request('hold').catch(() => {});
    await waitFor(() => server.inflightCount === 1, 5000, 'the held request');
    await (clients[0] as Client).ping();

    const s = JSON.parse((await get(`${admin.url}api/summary`)).body) as AdminSummary;
    assert.equal(s.connections, 2);
    assert.equal(s.inflight, 1);
    assert.equal(s.requests.total, 20);
    assert.equal(s.server, `127.0.0.1:${server.address()?.port}`);
    assert.equal(typeof s.requests.perSecond, 'number');
    assert.deepEqual(s, { ...s, refusedTotal: 0, closedTotal: 0, handlerErrors: 0 });

    const res = await get(`${admin.url}api/connections?sort=inflight`);
    assert.match(res.type, /^application\/json/);
    const c = JSON.parse(res.body) as AdminConnections;
    assert.equal(c.total, 2);
    assert.equal(c.sort, 'inflight');
    const [busy, idle] = c.connections;
    assert.equal(busy?.inflight, 1, 'sorted by in flight, largest first');
    assert.equal(idle?.inflight, 0);
    const ports = new Set(clients.map((x) => x.connection?.localPort));
    for (const x of c.connections) {
      assert.match(x.peer, /^127\.0\.0\.1:\d+$/);
      assert.ok(ports.has(Number(x.peer.split(':')[1])), 'the peer is one of our clients');
      assert.equal(x.state, 'open');
      assert.equal(x.ready, true);
      assert.equal(x.tls, null);
      assert.ok(x.ageMs >= 0);
      if (x.tcp !== null) {
        assert.equal(x.tcp.state, 'ESTABLISHED');
        assert.equal(typeof x.tcp.totalRetransmits, 'number');
      }
    }
    assert.equal(
      (JSON.parse((await get(`${admin.url}api/connections?limit=1`)).body) as AdminConnections).connections
        .length,
      1,
    );
    assert.equal((await get(`${admin.url}api/connections?sort=nope`)).status, 400);
  });

  test('/metrics: 404 without metrics, the Prometheus text with them', async () => {
    const { server } = await live();
    const plain = await serveAdmin(server);
    cleanup.push(() => plain.close());
    const none = await get(`${plain.url}metrics`);
    assert.equal(none.status, 404);
    assert.match(none.body, /not enabled/);

    const metrics = await enableMetrics();
    cleanup.push(() => metrics.close());
    const admin = await serveAdmin(server, { metrics });
    cleanup.push(() => admin.close());
    const res = await get(`${admin.url}metrics`);
    assert.equal(res.status, 200);
    assert.match(res.type, /^text\/plain; version=0\.0\.4/);
    assert.match(
      res.body,
      /^longlink_server_connections\{state="open"\} 2$/m,
      'serveAdmin watches its server',
    );
  });

  test('the dashboard page, its script and uplot from node_modules; a notice without uplot', async () => {
    const { server } = await live();
    const admin = await serveAdmin(server);
    cleanup.push(() => admin.close());
    const page = await get(admin.url);
    assert.equal(page.status, 200);
    assert.match(page.body, /<script src="\/assets\/uPlot\.iife\.min\.js">/);
    assert.match((await get(`${admin.url}assets/dashboard.js`)).body, /pollSummary/);
    const uplot = await get(`${admin.url}assets/uPlot.iife.min.js`);
    assert.equal(uplot.status, 200);
    assert.match(uplot.body, /uPlot/);
    assert.equal((await get(`${admin.url}assets/uPlot.min.css`)).status, 200);
    hiddenPeers.add('uplot');
    try {
      const missing = await get(`${admin.url}assets/uPlot.iife.min.js`);
      assert.equal(missing.status, 404);
      assert.match(missing.body, /npm install uplot/);
    } finally {
      hiddenPeers.delete('uplot');
    }
    assert.equal((await get(`${admin.url}nope`)).status, 404);
  });

  test('loopback only answers for local host names (DNS rebinding); GET only', async () => {
    const { server } = await live();
    const admin = await serveAdmin(server);
    cleanup.push(() => admin.close());
    assert.equal((await get(`${admin.url}api/summary`, { host: 'evil.example:80' })).status, 403);
    assert.equal(
      (await get(`${admin.url}api/summary`, { host: `localhost:${admin.address.port}` })).status,
      200,
    );
    assert.equal((await get(`${admin.url}api/summary`, {}, 'POST')).status, 405);
    await assert.rejects(serveAdmin(server, { port: admin.address.port }), { code: 'EADDRINUSE' });
  });

  /** One raw HTTP/1.1 request with exactly this Host line, over its own socket; the status, or 0 if closed unanswered. */
  function rawStatus(port: number, hostLine: string | undefined): Promise<number> {
    return new Promise((resolve, reject) => {
      const s = net.connect(port, '127.0.0.1');
      let got = '';
      s.setEncoding('latin1');
      s.on('data', (d: string) => {
        got += d;
      });
      s.on('error', reject);
      s.on('close', () => resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(got)?.[1] ?? 0)));
      s.write(
        `GET /api/summary HTTP/1.1\r\n${hostLine === undefined ? '' : `Host: ${hostLine}\r\n`}Connection: close\r\n\r\n`,
      );
    });
  }

  test('regression F2: the Host guard takes loopback IP literals and localhost only, not names that start with 127.', async () => {
    const { server } = await live();
    const admin = await serveAdmin(server);
    cleanup.push(() => admin.close());
    const port = admin.address.port;
    const refused = [
      `127.attacker.example:${port}`,
      '127.attacker.example',
      `127.0.0.1.nip.io:${port}`,
      `localhost.:${port}`,
      `localhost.evil.example:${port}`,
      `127.0.0.1.:${port}`,
      '127.1',
      `[127.0.0.1]:${port}`,
      `[::2]:${port}`,
      `[::1]x`,
      `127.0.0.1:${port}x`,
      `127.0.0.1:${port}:1`,
      `10.0.0.1:${port}`,
      `evil.example:${port}`,
      `[::ffff:10.0.0.1]:${port}`,
    ];
    const accepted = [
      `127.0.0.1:${port}`,
      '127.0.0.1',
      `127.255.0.9:${port}`,
      `localhost:${port}`,
      'LOCALHOST',
      `[::1]:${port}`,
      '[::1]',
      `[::ffff:127.0.0.1]:${port}`,
    ];
    for (const h of refused) assert.equal(await rawStatus(port, h), 403, `Host: ${h}`);
    for (const h of accepted) assert.equal(await rawStatus(port, h), 200, `Host: ${h}`);
  });

  test('regression F5: past maxConnections a new admin connection is closed unanswered; the longlink port keeps serving', async () => {
    const { server, clients } = await live();
    const admin = await serveAdmin(server, { maxConnections: 3, requestTimeoutMs: 600_000 });
    cleanup.push(() => admin.close());
    const port = admin.address.port;
    // Three idle sockets (half a request each) take every slot. Connected one after another, so the
    // kernel's accept queue, and Node's accept order, is theirs.
    const idle: net.Socket[] = [];
    for (let i = 0; i < 3; i++) {
      const s = net.connect(port, '127.0.0.1');
      cleanup.push(() => s.destroy());
      s.on('error', () => {});
      await once(s, 'connect');
      s.write('GET /api/summary HTTP/1.1\r\n');
      idle.push(s);
    }
    // The fourth is accepted and closed at once: no answer, the connection gone.
    const dropped = once((admin as unknown as { http: http.Server }).http, 'drop');
    assert.equal(await rawStatus(port, 'localhost'), 0);
    await dropped;
    // The longlink server is untouched.
    assert.deepEqual(await clients[0]?.request('echo', { ok: 1 }), { ok: 1 });
    // A freed slot is served again.
    const first = idle[0] as net.Socket;
    first.destroy();
    await waitFor(async () => (await rawStatus(port, 'localhost')) === 200, 5000, 'a freed slot');
    assert.equal(admin.address.port, port);
  });

  test('regression F5: an admin connection that never finishes its request is closed after requestTimeoutMs', async () => {
    const { server } = await live();
    const admin = await serveAdmin(server, { requestTimeoutMs: 200 });
    cleanup.push(() => admin.close());
    const port = admin.address.port;
    const silent = net.connect(port, '127.0.0.1');
    const trickle = net.connect(port, '127.0.0.1');
    for (const s of [silent, trickle]) {
      cleanup.push(() => s.destroy());
      s.on('error', () => {});
    }
    await Promise.all([once(silent, 'connect'), once(trickle, 'connect')]);
    trickle.write('GET /api/summary HTTP/1.1\r\nHost: localhost\r\n');
    // Waits on the close itself; the suite's own timeout is the bound. Node's default would hold
    // these for 60 s (headers) / 300 s (request).
    await Promise.all([once(silent, 'close'), once(trickle, 'close')]);
  });

  test('admin limits are validated', async () => {
    const { server } = await live();
    for (const bad of [0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, '3']) {
      await assert.rejects(serveAdmin(server, { maxConnections: bad as number }), {
        code: 'ERR_INVALID_ARGUMENT',
      });
    }
    for (const bad of [0, 2 ** 31, Number.POSITIVE_INFINITY, 1.5]) {
      await assert.rejects(serveAdmin(server, { requestTimeoutMs: bad }), { code: 'ERR_INVALID_ARGUMENT' });
    }
  });
});
