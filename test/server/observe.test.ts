/**
 * Seeing a running server: its logger (pino's shape; silent by default; floods summarised), the
 * NODE_DEBUG=longlink fallback, and the diagnostics channels (server:connection, server:refused,
 * heartbeat:rtt, and the tracing channel around every handler).
 */

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import diagnostics from 'node:diagnostics_channel';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type Client, connect } from '../../src/client/client.js';
import { createServer, type Server } from '../../src/server/server.js';
import type { RequestTrace } from '../../src/util/channels.js';
import { captureLogger, type LogLine, waitFor } from '../helpers.js';

const servers: Server[] = [];
const clients: Client[] = [];
after(() => {
  for (const c of clients) c.destroy();
  for (const s of servers) s.destroy();
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

describe('logs', () => {
  test('handler failures are logged with context; a flood of refusals is one line, then one with the count held back', async () => {
    const { logger, lines } = captureLogger();
    const { server, port } = await serve({
      logger,
      maxConnections: 1,
      handlers: { boom: () => Promise.reject(Object.assign(new Error('kaput'), { code: 'E_APP' })) },
    });
    const c = await client(port);
    await assert.rejects(c.request('boom'));
    await waitFor(() => lines.some((l) => l.msg === 'handler failed'), 5000, 'handler failed line');
    const failed = lines.find((l) => l.msg === 'handler failed') as LogLine;
    assert.equal(failed.level, 'error');
    assert.equal(failed.obj.method, 'boom');
    assert.equal(failed.obj.code, 'E_APP');
    assert.equal(failed.obj.err, 'kaput');
    assert.equal(typeof failed.obj.connectionId, 'string');
    // Ten refusals in a burst: logged once (the rest are held back and counted).
    await Promise.allSettled(Array.from({ length: 10 }, () => connect({ port, reconnect: false })));
    await waitFor(() => (server.stats().refused['max-connections'] ?? 0) >= 10, 5000, 'ten refusals');
    const refusedLines = lines.filter((l) => l.msg === 'connection refused');
    assert.equal(refusedLines.length, 1, 'one line for the burst');
    assert.equal(refusedLines[0]?.obj.reason, 'max-connections');
    assert.ok(lines.some((l) => l.msg === 'listening'));
  });

  test('silent by default; NODE_DEBUG=longlink prints the same lines to stderr', () => {
    const script = fileURLToPath(new URL('../../src/internal.js', import.meta.url));
    const code = `
      const { createServer, connect } = await import(${JSON.stringify(script)});
      const s = createServer({ handlers: { boom: () => { throw new Error('kaput'); } } });
      const { port } = await s.listen();
      const c = await connect({ port, reconnect: false });
      await c.request('boom').catch(() => {});
      c.destroy(); s.destroy();`;
    const quiet = spawnSync(process.execPath, ['--input-type=module', '-e', code], { encoding: 'utf8' });
    assert.equal(quiet.status, 0, quiet.stderr);
    assert.equal(quiet.stderr, '');
    const loud = spawnSync(process.execPath, ['--input-type=module', '-e', code], {
      encoding: 'utf8',
      env: { ...process.env, NODE_DEBUG: 'longlink' },
    });
    assert.equal(loud.status, 0, loud.stderr);
    assert.match(loud.stderr, /LONGLINK \d+: error handler failed \{.*"method":"boom"/);
  });
});

describe('diagnostics channels', () => {
  test('the tracing channel around handlers: start/end for a sync one, asyncStart/asyncEnd for a promise, error for a failure', async () => {
    const events: string[] = [];
    const handlers = {
      start: (m: RequestTrace) => events.push(`start ${m.method} ${m.metadata?.k ?? '-'}`),
      end: (m: RequestTrace) => events.push(`end ${m.method}`),
      asyncStart: (m: RequestTrace) => events.push(`asyncStart ${m.method}`),
      asyncEnd: (m: RequestTrace) => events.push(`asyncEnd ${m.method} ${JSON.stringify(m.result ?? null)}`),
      error: (m: RequestTrace) => events.push(`error ${m.method} ${(m.error as Error).message}`),
    };
    const tc = diagnostics.tracingChannel<object, RequestTrace>('longlink:server:request');
    tc.subscribe(handlers);
    try {
      const { port } = await serve({
        handlers: {
          sync: () => 1,
          later: () => Promise.resolve(2),
          fails: () => Promise.reject(new Error('no')),
        },
      });
      const c = await client(port);
      await c.request('sync');
      await c.request('later');
      await c.request('fails').catch(() => {});
      assert.deepEqual(events, [
        'start sync -',
        'end sync',
        'start later -',
        'end later',
        'asyncStart later',
        'asyncEnd later 2',
        'start fails -',
        'end fails',
        'error fails no',
        'asyncStart fails',
        'asyncEnd fails null',
      ]);
    } finally {
      tc.unsubscribe(handlers);
    }
  });

  test('server:connection, server:refused and heartbeat:rtt', async () => {
    const seen: string[] = [];
    const onConn = () => seen.push('connection');
    const onRefused = (m: unknown) =>
      seen.push(`refused ${(m as { refusal: { reason: string } }).refusal.reason}`);
    const onRtt = (m: unknown) => seen.push(`rtt ${typeof (m as { rttMs: number }).rttMs}`);
    diagnostics.subscribe('longlink:server:connection', onConn);
    diagnostics.subscribe('longlink:server:refused', onRefused);
    diagnostics.subscribe('longlink:heartbeat:rtt', onRtt);
    try {
      const { port } = await serve({ maxConnections: 1, handlers: { echo: (x) => x } });
      const c = await client(port);
      await c.ping();
      await connect({ port, reconnect: false }).catch(() => {});
      await waitFor(() => seen.includes('refused max-connections'), 5000, 'refusal published');
      assert.ok(seen.includes('connection'));
      assert.ok(seen.includes('rtt number'));
    } finally {
      diagnostics.unsubscribe('longlink:server:connection', onConn);
      diagnostics.unsubscribe('longlink:server:refused', onRefused);
      diagnostics.unsubscribe('longlink:heartbeat:rtt', onRtt);
    }
  });
});
