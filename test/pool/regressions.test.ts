/**
 * Regressions of the pools found when shared mode was rebuilt on sessions (the Structure issue,
 * parts 2 and 3). Each test is named after the defect it pins; the first failed on the code
 * before the rebuild.
 */

import assert from 'node:assert/strict';
import type net from 'node:net';
import { after, describe, test } from 'node:test';
import { InvalidArgumentError } from '../../src/errors.js';
import { type ClientPool, createClientPool } from '../../src/pool/client-pool.js';
import { type ConnectionPool, createConnectionPool } from '../../src/pool/connection-pool.js';
import { createServer, type Server } from '../../src/server/server.js';
import { listen, type TestServer, WAIT_FLOOR_MS, waitFor } from '../helpers.js';
import { frame, framing, legacyPeer } from './peer.js';

const raw: TestServer[] = [];
const servers: Server[] = [];
const pools: Array<ConnectionPool | ClientPool> = [];
after(async () => {
  await Promise.all(
    pools.map((p) => ('drain' in p ? p.drain({ timeoutMs: 200 }) : p.close({ timeoutMs: 200 }))),
  );
  for (const s of servers) s.destroy();
  for (const s of raw) await s.close();
});

describe('lease mode', () => {
  test("a lease released while its write() waits for 'drain' is destroyed (write-in-flight), not lent again", async () => {
    // A peer that accepts and never reads: a big enough write() stays queued above the watermark.
    const sink = await listen({ pauseOnConnect: true });
    raw.push(sink);
    const pool = createConnectionPool({ port: sink.port, framing, max: 2, acquireTimeoutMs: 2000 });
    pools.push(pool);
    const destroyed: string[] = [];
    pool.on('destroy', (_c, reason) => destroyed.push(reason));
    const lease = await pool.acquire();
    const first = lease.connection;
    const writing = first.write(Buffer.alloc(16 * 1024 * 1024)).then(
      () => 'drained',
      (e: unknown) => e,
    );
    lease.release();
    await waitFor(() => destroyed.length > 0, 2000, 'the release check');
    assert.deepEqual(destroyed, ['write-in-flight']);
    const next = await pool.acquire();
    assert.notEqual(next.connection, first, 'the next borrower gets another connection');
    next.release();
    assert.notEqual(await writing, 'drained', 'the parked write failed with the destroyed connection');
    const peerSockets: net.Socket[] = sink.sockets;
    assert.equal(peerSockets.length, 2);
  });
});

describe('lease mode: request deadlines (red-team F6)', () => {
  /** A request body (the pool's framing adds the length prefix). */
  const body = (o: object) => Buffer.from(JSON.stringify(o));
  /** Turns a hang into a failure (a guard, not a timing assertion). */
  function guard<T>(p: Promise<T>, what: string): Promise<T | string> {
    let t: NodeJS.Timeout | undefined;
    const late = new Promise<string>((r) => {
      t = setTimeout(() => r(`${what}: still pending after ${WAIT_FLOOR_MS} ms`), WAIT_FLOOR_MS);
    });
    return Promise.race([p, late]).finally(() => clearTimeout(t));
  }

  test('regression F6: pool.request(frame, { timeoutMs }) bounds the reply too; the silent connection is destroyed, not lent again with its late reply', async () => {
    const peer = await legacyPeer();
    raw.push({ close: () => peer.close() } as unknown as TestServer);
    const pool = createConnectionPool({ port: peer.port, framing, max: 1 });
    pools.push(pool);
    const destroyed: string[] = [];
    pool.on('destroy', (_c, reason) => destroyed.push(reason));
    const outcome = await guard(
      pool.request(body({ op: 'hang' }), { timeoutMs: 300 }).then(
        () => 'answered',
        (e: unknown) => e,
      ),
      'pool.request against a silent backend',
    );
    assert.equal((outcome as { code?: string }).code, 'ERR_REQUEST_TIMEOUT', String(outcome));
    assert.match(String((outcome as Error).message), /within 300 ms/);
    assert.deepEqual(destroyed, ['request-timeout']);
    assert.equal(pool.stats().borrowed, 0, 'the lease came back');
    // The backend answers the abandoned request now; the next borrower must not read that.
    for (const sock of peer.sockets) sock.write(frame({ late: true }));
    const next = JSON.parse(String(await pool.request(body({ n: 2 }), { timeoutMs: 5000 })));
    assert.deepEqual(next.echo, { n: 2 });
  });

  test('regression F6: lease.request({ timeoutMs }) rejects with RequestTimeoutError and the release destroys the connection', async () => {
    const peer = await legacyPeer();
    raw.push({ close: () => peer.close() } as unknown as TestServer);
    const pool = createConnectionPool({ port: peer.port, framing, max: 1 });
    pools.push(pool);
    const destroyed: string[] = [];
    pool.on('destroy', (_c, reason) => destroyed.push(reason));
    const lease = await pool.acquire();
    const outcome = await guard(
      lease.request(body({ op: 'hang' }), { timeoutMs: 100 }).then(
        () => 'answered',
        (e: unknown) => e,
      ),
      'lease.request against a silent backend',
    );
    assert.equal((outcome as { code?: string }).code, 'ERR_REQUEST_TIMEOUT', String(outcome));
    lease.release();
    assert.deepEqual(destroyed, ['request-timeout']);
    await assert.rejects(lease.request(body({}), { timeoutMs: 2 ** 31 }), InvalidArgumentError);
  });
});

describe('stats', () => {
  test('every pool stats() is JSON-safe', async () => {
    const server = createServer({ handlers: { echo: (p) => p } });
    servers.push(server);
    const { port } = await server.listen();
    const shared = createClientPool({ port, heartbeat: false });
    pools.push(shared);
    assert.equal(await shared.request('echo', 1), 1);
    const s = JSON.parse(JSON.stringify(shared.stats()));
    assert.equal(s.totals.requests, 1);
    assert.equal(s.endpoints[0].perConnection.length, 1);
    const sink = await listen();
    raw.push(sink);
    const lease = createConnectionPool({ port: sink.port, framing, min: 1 });
    pools.push(lease);
    await waitFor(() => lease.stats().idle === 1, 2000, 'the minimum');
    assert.equal(JSON.parse(JSON.stringify(lease.stats())).idle, 1);
  });
});

describe('shared mode', () => {
  test('bad session options are refused by createClientPool without opening anything', async () => {
    const server = createServer({ handlers: { echo: (p) => p } });
    servers.push(server);
    const { port } = await server.listen();
    for (const bad of [
      { codec: 'yaml' },
      { heartbeat: { intervalMs: 10, timeoutMs: 5 } },
      { requestTimeoutMs: Number.NaN },
      { maxFrameLength: 100 },
      { connection: { keepAlive: { count: 0 } } },
    ]) {
      assert.throws(
        () => createClientPool({ port, ...(bad as object) }),
        InvalidArgumentError,
        JSON.stringify(bad),
      );
    }
    assert.equal(server.connectionCount, 0);
  });

  test('an idle shared pool holds no session on loan: idle sessions are its Pool’s to time out', async () => {
    const server = createServer({ handlers: { echo: (p) => p } });
    servers.push(server);
    const { port } = await server.listen();
    const p = createClientPool({ port, heartbeat: false, connectionsPerEndpoint: 3, idleTimeoutMs: 100 });
    pools.push(p);
    const reasons: string[] = [];
    p.on('destroy', (_s, reason) => reasons.push(reason));
    await Promise.all(Array.from({ length: 30 }, (_, i) => p.request('echo', i)));
    await Promise.all(Array.from({ length: 30 }, (_, i) => p.request('echo', i)));
    await waitFor(() => p.stats().connections === 1, 3000, 'back to the minimum');
    assert.ok(reasons.length > 0 && reasons.every((r) => r === 'idle-timeout'), reasons.join());
    assert.equal(p.stats().inflight, 0);
  });
});
