/**
 * The admin endpoint (serveAdmin): /api/summary and /api/connections against a live server, /metrics
 * with and without metrics, the dashboard's files (uplot from node_modules), loopback-only Host
 * names, GET only.
 */

import assert from 'node:assert/strict';
import http from 'node:http';
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
});
