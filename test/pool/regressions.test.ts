/**
 * Regressions of the pools found when shared mode was rebuilt on sessions (the Structure issue,
 * parts 2 and 3). Each test is named after the defect it pins; the first failed on the code
 * before the rebuild.
 */

import assert from 'node:assert/strict';
import type net from 'node:net';
import { after, describe, test } from 'node:test';
import { type ConnectionPool, createConnectionPool } from '../../src/pool/connection-pool.js';
import { listen, type TestServer, waitFor } from '../helpers.js';
import { framing } from './peer.js';

const raw: TestServer[] = [];
const pools: ConnectionPool[] = [];
after(async () => {
  await Promise.all(pools.map((p) => p.drain({ timeoutMs: 200 })));
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
