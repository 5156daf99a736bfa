/**
 * Prometheus metrics (enableMetrics): built from the diagnostics channels and stats(), in the
 * user's prom-client registry or a new one; nothing subscribed before or after; method labels
 * capped; a clear typed error without prom-client. The client side is checked against the
 * channel contract (util/channels.ts) by publishing as the client will.
 */

import assert from 'node:assert/strict';
import { after, afterEach, describe, test } from 'node:test';
import { Registry } from 'prom-client';
import { type Client, connect } from '../../src/client/client.js';
import { MissingDependencyError } from '../../src/errors.js';
import { enableMetrics, type LonglinkMetrics } from '../../src/observe/metrics.js';
import { hiddenPeers } from '../../src/observe/peer.js';
import { createServer, type Server } from '../../src/server/server.js';
import { channels, type RequestTrace } from '../../src/util/channels.js';
import { waitFor } from '../helpers.js';

const servers: Server[] = [];
const clients: Client[] = [];
const handles: LonglinkMetrics[] = [];
after(() => {
  for (const c of clients) c.destroy();
  for (const s of servers) s.destroy();
});
afterEach(() => {
  for (const h of handles.splice(0)) h.close();
});

async function serve(opts: Parameters<typeof createServer>[0]): Promise<{ server: Server; port: number }> {
  const server = createServer(opts);
  servers.push(server);
  const { port } = await server.listen();
  return { server, port };
}

async function client(port: number): Promise<Client> {
  const c = await connect({ port, reconnect: false });
  clients.push(c);
  return c;
}

async function metrics(options: Parameters<typeof enableMetrics>[0] = {}): Promise<LonglinkMetrics> {
  const m = await enableMetrics(options);
  handles.push(m);
  return m;
}

/** The value of one sample line `name{labels} value` (labels in any order), or undefined. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (m === null || m[1] !== name) continue;
    const got: Record<string, string> = {};
    for (const kv of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g))
      got[kv[1] as string] = kv[2] as string;
    if (
      Object.entries(labels).every(([k, v]) => got[k] === v) &&
      Object.keys(got).length === Object.keys(labels).length
    )
      return Number(m[3]);
  }
  return undefined;
}

const anyChannelSubscribed = (): boolean =>
  channels.serverRequest.hasSubscribers ||
  channels.clientRequest.hasSubscribers ||
  channels.serverConnection.hasSubscribers ||
  channels.serverRefused.hasSubscribers ||
  channels.connectionClose.hasSubscribers ||
  channels.heartbeatRtt.hasSubscribers;

describe('enableMetrics', () => {
  test('nothing subscribes to the channels before, and nothing after close()', async () => {
    assert.equal(anyChannelSubscribed(), false, 'no subscriber before metrics are on');
    const m = await enableMetrics();
    assert.equal(channels.serverRequest.hasSubscribers, true);
    m.close();
    m.close(); // idempotent
    assert.equal(anyChannelSubscribed(), false, 'publishers are back to a hasSubscribers check');
  });

  test('server requests by method and code, durations, in flight, accepted, refusals, closes, bytes', async () => {
    let release: (() => void) | undefined;
    const { server, port } = await serve({
      maxConnections: 1,
      handlers: {
        echo: (p) => p,
        boom: () => {
          throw Object.assign(new Error('no'), { code: 'ERR_MINE' });
        },
        hold: () =>
          new Promise<string>((resolve) => {
            release = () => resolve('done');
          }),
      },
    });
    const m = await metrics({ servers: [server] });
    const c = await client(port);
    for (let i = 0; i < 5; i++) await c.request('echo', i);
    await assert.rejects(c.request('boom'), { code: 'ERR_MINE' });
    const held = c.request('hold');
    await waitFor(() => release, 5000, 'the held handler');
    let text = await m.metrics();
    assert.equal(sample(text, 'longlink_server_requests_in_flight'), 1);
    assert.equal(sample(text, 'longlink_server_connections', { state: 'open' }), 1);
    assert.equal(sample(text, 'longlink_server_connections_accepted_total'), 1);
    (release as () => void)();
    await held;

    // A second connection is refused (maxConnections 1): counted by reason, not as accepted.
    const refusedBefore = server.stats().refused['max-connections'] ?? 0;
    await assert.rejects(connect({ port, reconnect: false }));
    await waitFor(() => (server.stats().refused['max-connections'] ?? 0) > refusedBefore, 5000, 'refusal');
    await c.close();
    await waitFor(() => server.connectionCount === 0, 5000, 'server side closed');

    text = await m.metrics();
    assert.equal(sample(text, 'longlink_server_requests_total', { method: 'echo', code: 'OK' }), 5);
    assert.equal(sample(text, 'longlink_server_requests_total', { method: 'boom', code: 'ERR_MINE' }), 1);
    assert.equal(sample(text, 'longlink_server_requests_total', { method: 'hold', code: 'OK' }), 1);
    assert.equal(sample(text, 'longlink_server_request_duration_seconds_count', { method: 'echo' }), 5);
    assert.equal(
      sample(text, 'longlink_server_request_duration_seconds_bucket', { method: 'echo', le: '+Inf' }),
      5,
    );
    assert.equal(sample(text, 'longlink_server_requests_in_flight'), 0);
    assert.equal(sample(text, 'longlink_server_handler_errors_total'), 1);
    assert.equal(
      sample(text, 'longlink_server_connections_accepted_total'),
      1,
      'the refused one is not accepted',
    );
    assert.equal(sample(text, 'longlink_server_connections_refused_total', { reason: 'max-connections' }), 1);
    assert.ok(
      (sample(text, 'longlink_connection_closes_total', { reason: 'refused', initiator: 'local' }) ?? 0) >= 1,
      text,
    );
    assert.ok((sample(text, 'longlink_connection_received_bytes_total') ?? 0) > 0);
    assert.ok((sample(text, 'longlink_connection_sent_bytes_total') ?? 0) > 0);
    assert.equal(sample(text, 'longlink_server_connections', { state: 'accepting' }), 0);
    // Cumulative buckets never decrease.
    let last = 0;
    for (const le of ['0.0001', '0.001', '0.01', '0.1', '1', '10', '30', '+Inf']) {
      const v = sample(text, 'longlink_server_request_duration_seconds_bucket', { method: 'hold', le }) ?? -1;
      assert.ok(v >= last, `bucket le=${le}`);
      last = v;
    }
  });

  test('heartbeat RTT, queued bytes and client connection states', async () => {
    const { server, port } = await serve({ handlers: { echo: (p) => p } });
    const c = await client(port);
    const m = await metrics({ servers: [server], clients: [c] });
    await c.ping();
    await c.ping();
    const text = await m.metrics();
    assert.equal(sample(text, 'longlink_heartbeat_rtt_seconds_count'), 2);
    assert.equal(sample(text, 'longlink_client_connections', { state: 'open' }), 1);
    assert.equal(sample(text, 'longlink_connection_queued_bytes', { role: 'server' }), 0);
    assert.equal(sample(text, 'longlink_connection_queued_bytes', { role: 'client' }), 0);
    assert.ok((sample(text, 'longlink_event_loop_lag_max_seconds') ?? -1) >= 0);
  });

  test('method labels are capped: peer-chosen names past maxMethods count as other', async () => {
    const { port } = await serve({ router: () => () => 'ok' });
    const m = await metrics({ maxMethods: 3 });
    const c = await client(port);
    for (let i = 0; i < 10; i++) await c.request(`m${i}`);
    const text = await m.metrics();
    const methods = new Set(
      [...text.matchAll(/longlink_server_requests_total\{method="([^"]+)"/g)].map((x) => x[1]),
    );
    assert.deepEqual([...methods].sort(), ['m0', 'm1', 'm2', 'other']);
    assert.equal(sample(text, 'longlink_server_requests_total', { method: 'other', code: 'OK' }), 7);
  });

  test("in the user's registry, beside their own metrics; twice on one registry is refused", async () => {
    const registry = new Registry();
    const { Counter } = await import('prom-client');
    new Counter({ name: 'app_things_total', help: 'things', registers: [registry] }).inc(3);
    const m = await metrics({ registry });
    assert.equal(m.registry, registry);
    assert.equal(m.contentType, registry.contentType);
    const text = await registry.metrics();
    assert.equal(sample(text, 'app_things_total'), 3);
    assert.ok(text.includes('# TYPE longlink_server_requests_total counter'));
    await assert.rejects(enableMetrics({ registry }), { code: 'ERR_INVALID_ARGUMENT' });
    const other = await metrics({ registry, prefix: 'second_' });
    assert.ok((await other.metrics()).includes('second_server_requests_total'));
    m.close();
    assert.ok(!(await registry.metrics()).includes('longlink_server_requests_total'), 'close() unregisters');
  });

  test('pools are read through stats() at scrape time: states, waiting, breaker per endpoint', async () => {
    let pending = 2;
    const m = await metrics({
      pools: {
        leases: {
          stats: () => ({ idle: 3, borrowed: 1, pending, breaker: { state: 'closed' } }),
        },
      },
    });
    m.addPool('shared', {
      stats: () => ({
        connections: 4,
        waiting: 0,
        inflight: 9,
        endpoints: [
          { endpoint: 'a:1', breaker: { state: 'open' } },
          { endpoint: 'b:2', breaker: { state: 'closed' } },
        ],
      }),
    });
    let text = await m.metrics();
    assert.equal(sample(text, 'longlink_pool_connections', { pool: 'leases', state: 'idle' }), 3);
    assert.equal(sample(text, 'longlink_pool_connections', { pool: 'leases', state: 'borrowed' }), 1);
    assert.equal(sample(text, 'longlink_pool_waiting', { pool: 'leases' }), 2);
    assert.equal(sample(text, 'longlink_pool_connections', { pool: 'shared', state: 'active' }), 4);
    assert.equal(sample(text, 'longlink_pool_requests_in_flight', { pool: 'shared' }), 9);
    assert.equal(
      sample(text, 'longlink_pool_breaker_state', { pool: 'shared', endpoint: 'a:1', state: 'open' }),
      1,
    );
    assert.equal(
      sample(text, 'longlink_pool_breaker_state', { pool: 'shared', endpoint: 'a:1', state: 'closed' }),
      0,
    );
    assert.equal(
      sample(text, 'longlink_pool_breaker_state', { pool: 'leases', endpoint: 'default', state: 'closed' }),
      1,
    );
    pending = 5;
    text = await m.metrics();
    assert.equal(sample(text, 'longlink_pool_waiting', { pool: 'leases' }), 5, 'read at scrape time');
  });

  test('the client side, from the tracing channel contract (start, asyncStart/asyncEnd, error)', async () => {
    const m = await metrics();
    const tc = channels.clientRequest;
    const request = (method: string, error?: unknown): void => {
      const t: RequestTrace = {
        side: 'client',
        method,
        requestId: 0,
        connectionId: '7',
        metadata: undefined,
      };
      tc.start.publish(t);
      t.requestId = 1;
      if (error !== undefined) {
        t.error = error;
        tc.error.publish(t);
      }
      tc.asyncStart.publish(t);
      tc.asyncEnd.publish(t);
    };
    request('echo');
    request('echo');
    request('echo', Object.assign(new Error('late'), { code: 'ERR_REQUEST_TIMEOUT' }));
    const t: RequestTrace = {
      side: 'client',
      method: 'slow',
      requestId: 0,
      connectionId: '7',
      metadata: undefined,
    };
    tc.start.publish(t);
    let text = await m.metrics();
    assert.equal(sample(text, 'longlink_client_requests_total', { method: 'echo', code: 'OK' }), 2);
    assert.equal(
      sample(text, 'longlink_client_requests_total', { method: 'echo', code: 'ERR_REQUEST_TIMEOUT' }),
      1,
    );
    assert.equal(sample(text, 'longlink_client_request_duration_seconds_count', { method: 'echo' }), 3);
    assert.equal(sample(text, 'longlink_client_requests_in_flight'), 1);
    tc.asyncStart.publish(t);
    tc.asyncEnd.publish(t);
    text = await m.metrics();
    assert.equal(sample(text, 'longlink_client_requests_in_flight'), 0);
  });

  test('a real client request is counted on the client side', async () => {
    const { port } = await serve({ handlers: { echo: (p) => p } });
    const m = await metrics();
    const c = await client(port);
    await c.request('echo', 1);
    const text = await m.metrics();
    assert.equal(sample(text, 'longlink_client_requests_total', { method: 'echo', code: 'OK' }), 1);
  });

  // Regression: the client publishes `end` right after `start` (the call returned), and the
  // recorder finished every client request there, as OK, before its answer came.
  test("a real client request is counted with the server's error code, and in flight until answered", async () => {
    let answer: (() => void) | undefined;
    const { port } = await serve({
      handlers: {
        boom: () => {
          throw Object.assign(new Error('no'), { code: 'ERR_MINE' });
        },
        wait: () => new Promise<void>((resolve) => (answer = resolve)),
      },
    });
    const m = await metrics();
    const c = await client(port);
    await assert.rejects(c.request('boom'), { code: 'ERR_MINE' });
    const waiting = c.request('wait');
    await waitFor(() => answer, 5000, 'the wait handler to run');
    let text = await m.metrics();
    assert.equal(sample(text, 'longlink_client_requests_total', { method: 'boom', code: 'ERR_MINE' }), 1);
    assert.equal(sample(text, 'longlink_client_requests_total', { method: 'boom', code: 'OK' }), undefined);
    assert.equal(sample(text, 'longlink_client_requests_in_flight'), 1);
    answer!();
    await waiting;
    text = await m.metrics();
    assert.equal(sample(text, 'longlink_client_requests_total', { method: 'wait', code: 'OK' }), 1);
    assert.equal(sample(text, 'longlink_client_requests_in_flight'), 0);
  });

  test('without prom-client: MissingDependencyError saying what to install', async () => {
    hiddenPeers.add('prom-client');
    try {
      await assert.rejects(enableMetrics(), (err: unknown) => {
        assert.ok(err instanceof MissingDependencyError);
        assert.equal(err.code, 'ERR_MISSING_DEPENDENCY');
        assert.equal(err.packageName, 'prom-client');
        assert.match(err.message, /npm install prom-client/);
        return true;
      });
      assert.equal(anyChannelSubscribed(), false, 'nothing subscribed by the failed attempt');
    } finally {
      hiddenPeers.delete('prom-client');
    }
  });

  test('bad options are refused where they are written', async () => {
    await assert.rejects(enableMetrics({ prefix: 'no-dashes' }), { code: 'ERR_INVALID_ARGUMENT' });
    await assert.rejects(enableMetrics({ maxMethods: 0 }), { code: 'ERR_INVALID_ARGUMENT' });
    assert.equal(anyChannelSubscribed(), false);
  });
});
