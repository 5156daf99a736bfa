/**
 * What the client and the pools log (issue "Seeing", item 1): a logger with pino's shape hears
 * disconnects with their reason, GOAWAYs, failed reconnect attempts, the reconnect and giving up;
 * the pools' endpoints, failed connects (summarised), the circuit breaker and leaks. Every wait
 * is on a logged line or an event, never on time.
 */

import assert from 'node:assert/strict';
import { once } from 'node:events';
import { after, describe, test } from 'node:test';
import { type Client, connect } from '../../src/client/client.js';
import { parseFraming } from '../../src/codec/index.js';
import { createClientPool } from '../../src/pool/client-pool.js';
import { createConnectionPool } from '../../src/pool/connection-pool.js';
import { createServer, type Server } from '../../src/server/server.js';
import { captureLogger, type LogLine, listen, waitFor } from '../helpers.js';

const servers: Server[] = [];
const clients: Client[] = [];
const closers: Array<() => Promise<unknown> | unknown> = [];
after(async () => {
  for (const c of clients) c.destroy();
  for (const s of servers) s.destroy();
  for (const c of closers) await c();
});

const find = (lines: LogLine[], msg: string) => lines.find((l) => l.msg === msg);

/** A port nothing listens on: one a listener had, then closed. */
async function deadPort(): Promise<number> {
  const srv = await listen();
  const port = srv.port;
  await srv.close();
  return port;
}

describe('client logger', () => {
  test('GOAWAY, disconnect with its reason, failed attempts and the reconnect', async () => {
    const first = createServer({ handlers: { echo: (p) => p } });
    servers.push(first);
    const { port } = await first.listen({ port: 0 });
    const { logger, lines } = captureLogger();
    const c = await connect({ port, logger, reconnect: { initialDelayMs: 10, maxDelayMs: 50 } });
    clients.push(c);
    assert.equal(await c.request('echo', 1), 1);

    await first.close(); // GOAWAY, then the close: the client reconnects to nobody for a while
    await waitFor(() => find(lines, 'reconnect attempt failed'), 10_000, 'a failed attempt logged');
    const goaway = find(lines, 'server sent GOAWAY');
    assert.ok(goaway, 'GOAWAY logged');
    assert.equal(goaway.level, 'info');
    assert.equal(goaway.obj.reason, 'ERR_SHUTTING_DOWN');
    const disc = lines.find((l) => l.msg?.startsWith('disconnected: '));
    assert.ok(disc, 'disconnect logged');
    assert.equal(disc.level, 'info', `a server's clean close is news, not a warning: ${disc.msg}`);
    const failed = find(lines, 'reconnect attempt failed') as LogLine;
    assert.equal(failed.level, 'warn');
    assert.equal(typeof failed.obj.attempt, 'number');
    assert.equal(typeof failed.obj.err, 'string', 'the error as words, not an object');

    const second = createServer({ handlers: { echo: (p) => p } });
    servers.push(second);
    await second.listen({ port });
    await waitFor(() => find(lines, 'reconnected'), 10_000, 'the reconnect logged');
    assert.equal(await c.request('echo', 2), 2);
  });

  test('a connection reset is a warning; giving up is an error', async () => {
    const s = createServer({ handlers: { echo: (p) => p } });
    servers.push(s);
    const { port } = await s.listen({ port: 0 });
    const { logger, lines } = captureLogger();
    const c = await connect({
      port,
      logger,
      reconnect: { initialDelayMs: 1, maxDelayMs: 5, maxAttempts: 2 },
    });
    clients.push(c);
    s.destroy(); // every connection reset, no GOAWAY: an unexpected loss
    await waitFor(() => find(lines, 'gave up reconnecting'), 10_000, 'giving up logged');
    const disc = lines.find((l) => l.msg?.startsWith('disconnected: '));
    assert.ok(disc);
    assert.equal(disc.level, 'warn', `${disc.msg}`);
    assert.equal((find(lines, 'gave up reconnecting') as LogLine).level, 'error');
  });

  test('silent without a logger (no NODE_DEBUG): nothing is built', async () => {
    const s = createServer({ handlers: { echo: (p) => p } });
    servers.push(s);
    const { port } = await s.listen({ port: 0 });
    const c = await connect({ port, reconnect: false });
    clients.push(c);
    assert.equal((c as unknown as { log: unknown }).log, undefined);
  });
});

describe('pool loggers', () => {
  test('connection pool: endpoint added, failed connects summarised, breaker open', async () => {
    const { logger, lines } = captureLogger();
    const port = await deadPort();
    const pool = createConnectionPool({
      framing: parseFraming('u32be'),
      port,
      logger,
      breakerThreshold: 3,
      createRetryInitialMs: 1,
      createRetryMaxMs: 2,
      acquireTimeoutMs: 10_000,
    });
    closers.push(() => pool.drain());
    const opened = once(pool, 'breakerOpen');
    await assert.rejects(
      pool.acquire(),
      (err: Error & { code?: string }) => err.code === 'ERR_ENDPOINT_UNAVAILABLE',
    );
    await opened;
    assert.equal(find(lines, 'endpoint added')?.obj.endpoint, `127.0.0.1:${port}`);
    const failed = lines.filter((l) => l.msg === 'connect failed');
    assert.ok(failed.length >= 1, 'a failed connect logged');
    assert.ok(
      failed.length < 3,
      `three failures inside a second are one line (plus a summary later), got ${failed.length}`,
    );
    assert.equal(failed[0]?.obj.code, 'ERR_CONNECT');
    assert.match(String(failed[0]?.obj.err), /ECONNREFUSED/, 'the cause in words');
    const open = find(lines, 'circuit breaker open: failing fast') as LogLine;
    assert.equal(open.level, 'warn');
    assert.equal(open.obj.consecutiveFailures, 3);
  });

  test('connection pool: a leaked lease is logged with the borrower stack', async () => {
    const srv = await listen();
    closers.push(() => srv.close());
    const { logger, lines } = captureLogger();
    const pool = createConnectionPool({
      framing: parseFraming('u32be'),
      port: srv.port,
      logger,
      leakDetectionMs: 20,
    });
    closers.push(() => pool.drain({ timeoutMs: 0 }));
    const lease = await pool.acquire();
    await waitFor(() => find(lines, 'lease held too long (leak?)'), 10_000, 'the leak logged');
    const leak = find(lines, 'lease held too long (leak?)') as LogLine;
    assert.equal(leak.level, 'warn');
    assert.match(String(leak.obj.stack), /Lease acquired at:/);
    lease.release();
  });

  test('shared pool: breaker open and closed again when the server comes back', async () => {
    const { logger, lines } = captureLogger();
    const port = await deadPort();
    const pool = createClientPool({
      port,
      logger,
      breakerThreshold: 2,
      breakerCooldownMs: 20,
      createRetryInitialMs: 1,
      createRetryMaxMs: 2,
    });
    closers.push(() => pool.close());
    await waitFor(() => find(lines, 'circuit breaker open: failing fast'), 10_000, 'the breaker to open');
    const s = createServer({ handlers: { echo: (p) => p } });
    servers.push(s);
    await s.listen({ port });
    await waitFor(() => find(lines, 'circuit breaker closed: endpoint back'), 20_000, 'the breaker to close');
    assert.equal(await pool.request('echo', 3), 3);
  });
});
