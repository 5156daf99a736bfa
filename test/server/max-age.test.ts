/**
 * Maximum connection age (gRFC A9): GOAWAY ERR_MAX_CONNECTION_AGE once a connection has lived its
 * jittered age, requests accepted before it answered, the client back on a new connection; the
 * grace cuts off what still runs after it. Also the shutdown's per-connection retry hints and the
 * server-wide accept rate, the two other pieces of moving clients between nodes without a wave.
 */

import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createConnection } from 'node:net';
import { after, describe, test } from 'node:test';
import { type Client, connect } from '../../src/client/client.js';
import { ConnectionClosedError } from '../../src/errors.js';
import { ErrorCode } from '../../src/protocol/errors.js';
import type { RefusalInfo } from '../../src/server/admission.js';
import { SERVER_DEFAULTS } from '../../src/server/limits.js';
import { AGE_STEPS, drawAge, maxAgeSettings } from '../../src/server/max-age.js';
import { createServer, type Server, type ServerOptions } from '../../src/server/server.js';
import { RefusedError } from '../../src/session/client-session.js';
import { waitFor } from '../helpers.js';

const servers: Server[] = [];
const clients: Client[] = [];
after(async () => {
  for (const c of clients) c.destroy();
  for (const s of servers) s.destroy();
});

async function start(options: ServerOptions) {
  const server = createServer(options);
  servers.push(server);
  const { port } = await server.listen({ port: 0 });
  return { server, port };
}

async function client(port: number, options: Partial<Parameters<typeof connect>[0]> = {}) {
  const c = await connect({ port, ...options });
  clients.push(c);
  return c;
}

/** A handler that answers when the test says so: `release()` resolves every call so far. */
function gate() {
  const waiting: Array<() => void> = [];
  return {
    handler: (p: unknown) => new Promise((resolve) => waiting.push(() => resolve(p))),
    get waiting() {
      return waiting.length;
    },
    release() {
      for (const w of waiting.splice(0)) w();
    },
  };
}

describe('max connection age: the draw', () => {
  test('ages are drawn on a grid of AGE_STEPS values spanning [1 − jitter, 1 + jitter] × the age', () => {
    const s = { ageMs: 10_000, jitter: 0.1, graceMs: 1000 };
    // Every step once, in order: the grid's ends are the bounds, and the steps are distinct.
    const grid = Array.from({ length: AGE_STEPS }, (_, i) => drawAge(s, () => (i + 0.5) / AGE_STEPS));
    assert.equal(grid[0], 9000);
    assert.equal(grid[AGE_STEPS - 1], 11_000);
    assert.equal(new Set(grid).size, AGE_STEPS);
    assert.deepEqual(
      grid,
      [...grid].sort((a, b) => a - b),
      'ascending with the random number',
    );
    // Math.random's end points stay inside.
    assert.equal(
      drawAge(s, () => 0),
      9000,
    );
    assert.equal(
      drawAge(s, () => 0.999_999_9),
      11_000,
    );
    // No jitter: the age itself.
    assert.equal(drawAge({ ...s, jitter: 0 }, Math.random), 10_000);
  });

  test('the options: off by default (and at 0 or Infinity), checked, defaults from SERVER_DEFAULTS', () => {
    assert.equal(maxAgeSettings({}, SERVER_DEFAULTS), undefined);
    assert.equal(maxAgeSettings({ maxConnectionAgeMs: 0 }, SERVER_DEFAULTS), undefined);
    assert.equal(
      maxAgeSettings({ maxConnectionAgeMs: Number.POSITIVE_INFINITY }, SERVER_DEFAULTS),
      undefined,
    );
    assert.deepEqual(maxAgeSettings({ maxConnectionAgeMs: 60_000 }, SERVER_DEFAULTS), {
      ageMs: 60_000,
      jitter: SERVER_DEFAULTS.maxConnectionAgeJitter,
      graceMs: SERVER_DEFAULTS.maxConnectionAgeGraceMs,
    });
    for (const bad of [
      { maxConnectionAgeMs: -1 },
      { maxConnectionAgeMs: Number.NaN },
      { maxConnectionAgeMs: 1000, maxConnectionAgeJitter: 1.5 },
      { maxConnectionAgeMs: 1000, maxConnectionAgeJitter: -0.1 },
      { maxConnectionAgeMs: 1000, maxConnectionAgeGraceMs: -1 },
      { maxConnectionAgeMs: 2 ** 31 },
    ]) {
      assert.throws(
        () => createServer({ handlers: {}, ...bad }),
        { code: 'ERR_INVALID_ARGUMENT' },
        JSON.stringify(bad),
      );
    }
  });
});

describe('max connection age: a real server', () => {
  test('GOAWAY ERR_MAX_CONNECTION_AGE with no retry hint; the request in flight is answered; the client reconnects', async () => {
    const g = gate();
    const { server, port } = await start({
      handlers: { hold: g.handler, echo: (p) => p },
      maxConnectionAgeMs: 400,
      maxConnectionAgeJitter: 0,
    });
    const c = await client(port);
    const firstConnection = c.connection;
    const held = c.request('hold', 'accepted before the GOAWAY');
    await waitFor(() => g.waiting === 1, 5000, 'the handler to run');
    const [reason, retryAfterMs] = await once(c, 'goaway');
    assert.equal(reason, ErrorCode.MAX_CONNECTION_AGE);
    assert.equal(retryAfterMs, 0);
    // Its connection stays up for what the server accepted: the answer arrives on it.
    g.release();
    assert.equal(await held, 'accepted before the GOAWAY');
    await once(c, 'reconnect');
    assert.notEqual(c.connection, firstConnection, 'a new connection');
    assert.equal(await c.request('echo', 7), 7);
    assert.ok(server.stats().maxConnectionAge.goaways >= 1);
    assert.equal(server.stats().maxConnectionAge.aborted, 0);
    assert.ok((server.stats().closed['local-graceful'] ?? 0) >= 1, 'closed gracefully by the server');
  });

  test('requests still running at the end of the grace are cut off: the connection is aborted', async () => {
    const g = gate();
    const { server, port } = await start({
      handlers: { hold: g.handler },
      maxConnectionAgeMs: 300,
      maxConnectionAgeJitter: 0,
      maxConnectionAgeGraceMs: 200,
    });
    const c = await client(port, { reconnect: false });
    const held = c.request('hold', 1);
    await once(c, 'goaway');
    await assert.rejects(held, (err: unknown) => {
      assert.ok(err instanceof ConnectionClosedError, String(err));
      return true;
    });
    await waitFor(() => server.stats().maxConnectionAge.aborted === 1, 5000, 'the abort to be counted');
    await waitFor(() => server.stats().closed['local-abort'] === 1, 5000, 'the close, reason local-abort');
    g.release();
  });

  test('without the option nothing ages, and a connection closed early leaves no deadline behind', async () => {
    const { server, port } = await start({ handlers: { echo: (p) => p } });
    const c = await client(port);
    assert.equal(await c.request('echo', 1), 1);
    assert.equal(server.stats().maxConnectionAge.goaways, 0);
    const aged = await start({ handlers: { echo: (p) => p }, maxConnectionAgeMs: 60_000 });
    const many = await Promise.all(Array.from({ length: 20 }, () => client(aged.port, { reconnect: false })));
    const ages = (aged.server as unknown as { ages: { size: number } }).ages;
    await waitFor(() => ages.size === 20, 5000, '20 connections tracked');
    await Promise.all(many.map((m) => m.close()));
    await waitFor(() => aged.server.connectionCount === 0, 5000, 'every connection closed');
    assert.equal(ages.size, 0, 'their deadlines were cancelled');
  });
});

describe('moving clients without a wave', () => {
  test("close(): each connection's GOAWAY carries its own hint in [retryAfterMs, 2 × retryAfterMs)", async () => {
    const { server, port } = await start({ handlers: { echo: (p) => p } });
    const cs = await Promise.all(Array.from({ length: 20 }, () => client(port, { reconnect: false })));
    const hints = cs.map(
      (c) => new Promise<[string, number]>((resolve) => c.once('goaway', (r, ms) => resolve([r, ms]))),
    );
    await server.close({ graceMs: 5000, retryAfterMs: 1000 });
    const got = await Promise.all(hints);
    for (const [reason, ms] of got) {
      assert.equal(reason, ErrorCode.SHUTTING_DOWN);
      assert.ok(ms >= 1000 && ms < 2000, `hint ${ms}`);
    }
    assert.ok(new Set(got.map(([, ms]) => ms)).size > 1, 'not one hint for all');
    assert.throws(() => createServer({ handlers: {} }).close({ retryAfterMs: -1 }), {
      code: 'ERR_INVALID_ARGUMENT',
    });
  });

  test('acceptRate: past the server-wide bucket a connection is refused (accept-rate) with a hint of at least the time to the next token', async () => {
    const { server, port } = await start({
      handlers: { echo: (p) => p },
      acceptRate: { perSecond: 0.5, burst: 2 },
      retryAfterMs: 100,
    });
    const refusals: RefusalInfo[] = [];
    server.on('refused', (r) => refusals.push(r));
    await client(port, { reconnect: false });
    await client(port, { reconnect: false });
    await assert.rejects(connect({ port, reconnect: false }), (err: unknown) => {
      assert.ok(err instanceof RefusedError, String(err));
      assert.equal(err.code, ErrorCode.TOO_MANY_CONNECTIONS);
      // A token every 2 s: the hint is at least the wait for it (more than the 100 ms base), jittered.
      assert.ok(err.retryAfterMs >= 1000 && err.retryAfterMs < 8000, `hint ${err.retryAfterMs}`);
      return true;
    });
    assert.equal(server.stats().refused['accept-rate'], 1);
    assert.equal(refusals[0]?.reason, 'accept-rate');
    assert.throws(() => createServer({ handlers: {}, acceptRate: { perSecond: 0 } }), {
      code: 'ERR_INVALID_ARGUMENT',
    });
  });

  test('a refused connection whose HELLO arrives before its close is not admitted: no HELLO back, no ready event', async () => {
    const { server, port } = await start({
      handlers: { echo: (p) => p },
      acceptRate: { perSecond: 0.01, burst: 1 },
    });
    let ready = 0;
    server.on('ready', () => ready++);
    await client(port, { reconnect: false });
    assert.equal(ready, 1);
    // A peer that sends its HELLO at once and keeps its end open: the server reads the HELLO
    // while its refusal (GOAWAY, then close) is under way.
    const socket = createConnection({ port });
    socket.on('connect', () => socket.write(Buffer.from('00000006010001007b7d', 'hex')));
    const chunks: Buffer[] = [];
    socket.on('data', (d: Buffer) => chunks.push(d));
    socket.on('error', () => {});
    await once(socket, 'close');
    const bytes = Buffer.concat(chunks);
    const kinds: number[] = [];
    for (let at = 0; at + 5 <= bytes.length; at += 4 + bytes.readUInt32BE(at))
      kinds.push(bytes[at + 4] as number);
    assert.deepEqual(kinds, [9], 'a GOAWAY only (kind 9), never a HELLO (kind 1)');
    assert.equal(ready, 1, 'the refused connection never became ready');
    assert.equal(server.stats().refused['accept-rate'], 1);
  });
});
