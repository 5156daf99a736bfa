/** Lease-mode connection pool against real loopback peers (the sources' ascii:20 + JSON service). */

import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import type { Connection } from '../../src/connection/connection.js';
import { ConnectError, ConnectionClosedError } from '../../src/errors.js';
import {
  type ConnectionPool,
  type ConnectionPoolOptions,
  createConnectionPool,
} from '../../src/pool/connection-pool.js';
import {
  AcquireTimeoutError,
  EndpointUnavailableError,
  LeaseReclaimedError,
  PoolError,
  PoolFullError,
} from '../../src/pool/errors.js';
import { tcpInfo } from '../../src/sys/sockopt.js';
import { beforeTimer, sleep, waitFor, withinTurn } from '../helpers.js';
import { requiredOnLinux, skipTest } from '../skip.js';
import { body, framing, type LegacyPeer, legacyPeer } from './peer.js';

const peers: LegacyPeer[] = [];
const pools: ConnectionPool[] = [];
after(async () => {
  await Promise.all(pools.map((p) => p.drain({ timeoutMs: 200 })));
  await Promise.all(peers.map((p) => p.close()));
});

async function setup(options: Partial<ConnectionPoolOptions> = {}) {
  const peer = await legacyPeer();
  peers.push(peer);
  const pool = createConnectionPool({ port: peer.port, framing, acquireTimeoutMs: 2000, ...options });
  pools.push(pool);
  const destroyed: Array<{ reason: string; graceful: boolean }> = [];
  pool.on('destroy', (_c, reason, detail) => destroyed.push({ reason, graceful: detail.graceful }));
  return { peer, pool, destroyed };
}

/** A request body; the connection's framing adds the ascii:20 header. */
function req(payload: object = { hello: 1 }): Buffer {
  return Buffer.from(JSON.stringify(payload));
}

describe('sizes and queueing', () => {
  test('fills to min in the background and never opens more than max', async () => {
    const { peer, pool } = await setup({ min: 2, max: 3 });
    await waitFor(() => pool.stats().idle === 2 && peer.accepted === 2, 2000, 'refill to min');
    let maxSeen = 0;
    const uses = Array.from({ length: 12 }, (_, i) =>
      pool.use(async (_conn, lease) => {
        maxSeen = Math.max(maxSeen, pool.stats().borrowed);
        const r = body(await lease.request(req({ op: 'slow', ms: 10, i })));
        assert.equal(r.echo.i, i);
      }),
    );
    await Promise.all(uses);
    assert.equal(maxSeen, 3);
    assert.ok(peer.accepted <= 3, `accepted ${peer.accepted}`);
    assert.equal(pool.stats().size, 3);
  });

  test('waiters are served FIFO', async () => {
    const { pool } = await setup({ max: 1 });
    const held = await pool.acquire();
    const order: string[] = [];
    const waiters = ['a', 'b', 'c'].map((name) =>
      pool.acquire().then((lease) => {
        order.push(name);
        setImmediate(() => lease.release());
      }),
    );
    assert.equal(pool.stats().pending, 3);
    held.release();
    await Promise.all(waiters);
    assert.deepEqual(order, ['a', 'b', 'c']);
  });

  test('priority: higher first, FIFO within a priority', async () => {
    const { pool } = await setup({ max: 1 });
    const held = await pool.acquire();
    const order: string[] = [];
    const waiters = (
      [
        ['low1', 0],
        ['high1', 5],
        ['mid', 1],
        ['high2', 5],
        ['low2', 0],
      ] as const
    ).map(([name, priority]) =>
      pool.acquire({ priority }).then((lease) => {
        order.push(name);
        setImmediate(() => lease.release());
      }),
    );
    held.release();
    await Promise.all(waiters);
    assert.deepEqual(order, ['high1', 'high2', 'mid', 'low1', 'low2']);
  });

  test('acquire times out with ERR_ACQUIRE_TIMEOUT', async () => {
    const { pool } = await setup({ max: 1 });
    const held = await pool.acquire();
    const t0 = performance.now();
    // Its deadline fires before a plain timer armed with it for 500 ms; not before 60 ms.
    const err = await beforeTimer(pool.acquire({ timeoutMs: 60 }), 500, 'the acquire timeout').catch(
      (e: unknown) => e,
    );
    const elapsed = performance.now() - t0;
    assert.ok(err instanceof AcquireTimeoutError, String(err));
    assert.ok(err instanceof PoolError);
    assert.equal(err.code, 'ERR_ACQUIRE_TIMEOUT');
    assert.ok(elapsed >= 55, `timed out after ${elapsed.toFixed(0)} ms, not before`);
    assert.equal(pool.stats().pending, 0);
    held.release();
  });

  test('the acquire timeout is finite by default', async () => {
    const peer = await legacyPeer();
    peers.push(peer);
    const pool = createConnectionPool({ port: peer.port, framing, max: 1 });
    pools.push(pool);
    const held = await pool.acquire();
    const pending = pool.acquire();
    const err = await Promise.race([
      pending.catch((e: unknown) => e),
      sleep(200).then(() => 'still waiting'),
    ]);
    assert.equal(err, 'still waiting');
    held.release();
    (await pending).release();
    // The default is documented as 10 s; checking it without waiting 10 s: a waiter with the
    // default carries a deadline, which the stats cannot show, so assert on the option instead.
    const { Pool } = await import('../../src/pool/pool.js');
    const p = new Pool({ create: async () => ({}), destroy: () => {} }, { max: 1 });
    const lease = await p.acquire();
    const e2 = await beforeTimer(p.acquire({ timeoutMs: 30 }), 500, 'the acquire timeout').catch(
      (e: unknown) => e,
    );
    assert.ok(e2 instanceof AcquireTimeoutError, String(e2));
    lease.release();
    await p.drain();
  });

  test('the waiter cap refuses at once with ERR_POOL_FULL', async () => {
    const { pool } = await setup({ max: 1, maxWaiters: 2 });
    const held = await pool.acquire();
    const w1 = pool.acquire();
    const w2 = pool.acquire();
    const err = await withinTurn(pool.acquire(), 'the refusal').catch((e: unknown) => e);
    assert.ok(err instanceof PoolFullError, String(err));
    assert.equal((err as PoolFullError).code, 'ERR_POOL_FULL');
    held.release();
    (await w1).release();
    (await w2).release();
  });

  test('LIFO among idle connections: the most recently returned is lent first', async () => {
    const { pool } = await setup({ max: 3 });
    const leases = await Promise.all([pool.acquire(), pool.acquire(), pool.acquire()]);
    const conns = leases.map((l) => l.connection);
    for (const l of leases) l.release(); // returned 0, 1, 2
    const next = await pool.acquire();
    assert.equal(next.connection, conns[2]);
    const after2 = await pool.acquire();
    assert.equal(after2.connection, conns[1]);
    next.release();
    after2.release();
  });

  test('pause() holds acquirers, resume() serves them', async () => {
    const { pool } = await setup({ max: 2, min: 1 });
    await waitFor(() => pool.stats().idle === 1);
    pool.pause();
    let got = false;
    const p = pool.acquire().then((l) => {
      got = true;
      return l;
    });
    await sleep(50);
    assert.equal(got, false);
    pool.resume();
    (await p).release();
    assert.equal(got, true);
  });
});

describe('checks on borrow', () => {
  test('validate is skipped for a connection used within validateAfterIdleMs', async () => {
    let validations = 0;
    const { pool } = await setup({
      max: 1,
      validateAfterIdleMs: 150,
      validate: () => {
        validations++;
        return true;
      },
    });
    // Whether a borrow finds the connection idle for 150 ms is measured, not assumed: a loaded
    // machine can stretch the gap between two requests of the hot loop past it. Gaps within 10 ms
    // of the threshold may go either way.
    let last = performance.now();
    let sure = 0;
    let maybe = 0;
    const borrow = async (payload: object) => {
      const idle = performance.now() - last;
      if (idle >= 150 + 10) sure++;
      else if (idle > 150 - 10) maybe++;
      await pool.request(req(payload));
      last = performance.now();
    };
    const expect = (what: string) =>
      assert.ok(
        validations >= sure && validations <= sure + maybe,
        `${what}: ${validations} validations, ${sure} (+${maybe}) due`,
      );
    for (let i = 0; i < 20; i++) await borrow({ i });
    expect('hot connection: no validation unless it sat idle');
    await sleep(200);
    await borrow({});
    expect('idle past the threshold: validated once');
    await borrow({});
    expect('used again at once: not validated');
  });

  test('a failed validation destroys the connection and the borrower gets a fresh one', async () => {
    let fail = true;
    const { pool, destroyed, peer } = await setup({
      max: 1,
      validateAfterIdleMs: 0,
      validate: async () => {
        if (!fail) return true;
        fail = false; // the first validation fails, the rest pass
        return false;
      },
    });
    await pool.request(req());
    await sleep(5);
    const r = body(await pool.request(req({ n: 2 })));
    assert.equal(r.echo.n, 2);
    assert.ok(destroyed.some((d) => d.reason === 'validation-failed'));
    assert.equal(peer.accepted, 2);
  });

  test('stale sockets: a peer that closes idle connections behind our back never hands a borrower a dead one', async () => {
    const { pool, peer, destroyed } = await setup({ min: 3, max: 3, validateAfterIdleMs: 60_000 });
    let failures = 0;
    for (let round = 0; round < 5; round++) {
      // Three idle connections, and the peer holds those three (its accept can trail our
      // connect on a loaded machine; last round's are closed by now).
      await waitFor(
        () => pool.stats().idle === 3 && peer.sockets.size === 3,
        5000,
        `round ${round}: three idle`,
      );
      peer.closeIdle(); // FIN on every idle connection
      // The FINs are seen as events: the idle stack is purged without any borrow.
      await waitFor(
        () => (pool.stats().endpoints[0]?.totals.destroyed ?? 0) >= (round + 1) * 3,
        5000,
        `round ${round}: dead idle connections evicted`,
      );
      assert.equal(pool.stats().endpoints[0]?.totals.destroyed, (round + 1) * 3, `round ${round}`);
      const results = await Promise.allSettled(
        Array.from({ length: 6 }, (_, i) => pool.request(req({ round, i }))),
      );
      failures += results.filter((r) => r.status === 'rejected').length;
    }
    assert.equal(failures, 0);
    assert.ok(destroyed.filter((d) => d.reason === 'peer-fin').length >= 15);
  });

  test('a FIN already in the kernel but not yet read by Node is caught by the borrow-time kernel check', async (t) => {
    const { pool, peer, destroyed } = await setup({ min: 1, max: 1, validateAfterIdleMs: 0 });
    await waitFor(() => pool.stats().idle === 1);
    await sleep(5);
    const probe = await pool.acquire();
    if (tcpInfo(probe.connection.socket) === undefined) {
      probe.release();
      skipTest(t, 'no native socket helper: TCP_INFO unreadable', requiredOnLinux);
      return;
    }
    probe.release();
    await sleep(5);
    // destroy() closes the server's descriptor synchronously: the FIN is on the wire before our
    // event loop runs again, so Node has not seen it when acquire() looks at the connection.
    for (const s of peer.sockets) s.destroy();
    const lease = await pool.acquire();
    assert.ok(destroyed.some((d) => d.reason === 'validation-failed'));
    const r = body(await lease.request(req({ fresh: true })));
    assert.equal(r.echo.fresh, true);
    lease.release();
  });
});

describe('release checks (lease mode)', () => {
  test('a connection released with an unread frame is destroyed, not lent again', async () => {
    const { pool, destroyed } = await setup({ max: 1 });
    const lease = await pool.acquire();
    const first = body(await lease.request(req({ op: 'twice' })));
    assert.equal(first.echo.op, 'twice');
    // The second reply arrives with nobody listening.
    await waitFor(() => lease.connection.stats().framesRead === 2, 5000, 'the second reply');
    const conn = lease.connection;
    lease.release();
    assert.equal(destroyed.at(-1)?.reason, 'unread-frames');
    const next = await pool.acquire();
    assert.notEqual(next.connection, conn);
    assert.deepEqual(body(await next.request(req({ n: 1 }))).echo, { n: 1 });
    next.release();
  });

  test('a connection released mid-frame is destroyed', async () => {
    const { pool, destroyed } = await setup({ max: 1 });
    const lease = await pool.acquire();
    lease.connection.send(req({ op: 'partial' }));
    await waitFor(() => lease.connection.pendingFrameBytes > 0, 5000, 'the first part of the reply');
    lease.release();
    assert.equal(destroyed.at(-1)?.reason, 'partial-frame');
    assert.equal(destroyed.at(-1)?.graceful, false);
  });

  test('a connection released with its reply still on the way is destroyed; the next borrower gets its own reply', async () => {
    const { pool, destroyed } = await setup({ max: 1 });
    const lease = await pool.acquire();
    const abandoned = lease.request(req({ op: 'slow', ms: 30, who: 'first' }));
    abandoned.catch(() => {});
    lease.release();
    assert.equal(destroyed.at(-1)?.reason, 'request-in-flight');
    const r = body(await pool.request(req({ who: 'second' })));
    assert.equal(r.echo.who, 'second');
    await assert.rejects(abandoned, ConnectionClosedError);
  });

  test("the peer's FIN during a lease: the connection is not returned", async () => {
    const { pool, destroyed } = await setup({ max: 1 });
    const lease = await pool.acquire();
    await lease.request(req({ op: 'bye' }));
    await waitFor(() => lease.connection.state !== 'open', 5000, "the peer's FIN");
    lease.release();
    // Seen as the close event (evicted while borrowed) or by the release check.
    assert.match(destroyed.at(-1)?.reason ?? '', /^(not-open|closed-remote-fin)$/);
    const r = body(await pool.request(req({ n: 3 })));
    assert.equal(r.echo.n, 3);
  });

  test('listeners a borrower leaves behind are removed on a clean release', async () => {
    const { pool } = await setup({ max: 1 });
    let seen = 0;
    await pool.use(async (conn, lease) => {
      conn.on('frame', () => seen++);
      conn.on('close', () => {});
      await lease.request(req());
    });
    await pool.use(async (_conn, lease) => {
      await lease.request(req());
    });
    assert.equal(seen, 1);
  });

  test('use() releases after an application error and destroys after a connection error', async () => {
    const { pool, destroyed, peer } = await setup({ max: 1 });
    await assert.rejects(
      pool.use(async (_c, lease) => {
        await lease.request(req());
        throw new Error('application bug');
      }),
      /application bug/,
    );
    assert.equal(destroyed.length, 0);
    assert.equal(pool.stats().idle, 1);
    await assert.rejects(
      pool.use(async (_c, lease) => {
        const p = lease.request(req({ op: 'hang' }));
        await sleep(10);
        for (const s of peer.sockets) s.resetAndDestroy();
        await p;
      }),
      (err: unknown) => err instanceof ConnectionClosedError && err.reason === 'remote-reset',
    );
    await waitFor(() => destroyed.length === 1);
    assert.match(destroyed[0]?.reason ?? '', /closed-remote-reset|broken:ERR_CONNECTION_CLOSED/);
  });
});

describe('retirement', () => {
  test('idle connections above min are evicted after idleTimeoutMs, gracefully', async () => {
    const { pool, destroyed } = await setup({ min: 1, max: 4, idleTimeoutMs: 80 });
    const leases = await Promise.all([pool.acquire(), pool.acquire(), pool.acquire(), pool.acquire()]);
    const closed = leases.map((l) => l.connection.closed);
    for (const l of leases) l.release();
    assert.equal(pool.stats().size, 4);
    await waitFor(() => pool.stats().size === 1, 2000, 'evicted down to min');
    const evicted = destroyed.filter((d) => d.reason === 'idle-timeout');
    assert.equal(evicted.length, 3);
    assert.ok(evicted.every((d) => d.graceful));
    // Three of the four close (one stays, at min): wait for those three, whichever they are.
    const infos: Array<{ reason: string }> = [];
    for (const c of closed) void c.then((i) => infos.push(i));
    await waitFor(() => infos.length === 3, 5000, 'three evicted connections to close');
    const graceful = infos.filter((i) => i.reason === 'local-graceful');
    assert.equal(graceful.length, 3, 'closed with FIN, not RST');
  });

  test('max lifetime rotates connections under load with zero failed requests', async () => {
    const { pool, destroyed, peer } = await setup({
      min: 2,
      max: 4,
      maxLifetimeMs: 120,
      maxLifetimeJitter: 0.5,
    });
    let ok = 0;
    let failed = 0;
    // Under load until at least four connections were retired and 100 requests answered (counted,
    // not timed); bounded, should rotation never happen.
    const retiredSoFar = () => destroyed.filter((d) => d.reason === 'max-lifetime').length;
    const stopAt = performance.now() + 30_000;
    await Promise.all(
      Array.from({ length: 6 }, async (_, w) => {
        while ((retiredSoFar() < 4 || ok <= 100) && performance.now() < stopAt) {
          try {
            const r = body(await pool.request(req({ w, op: 'slow', ms: 5 })));
            assert.equal(r.echo.w, w);
            ok++;
          } catch {
            failed++;
          }
        }
      }),
    );
    assert.equal(failed, 0);
    assert.ok(ok > 100, `${ok} requests`);
    const retired = destroyed.filter((d) => d.reason === 'max-lifetime');
    assert.ok(retired.length >= 4, `${retired.length} retired`);
    assert.ok(peer.accepted > 4, `${peer.accepted} connections over the run`);
  });

  test("leak detection: 'leak' fires with the borrower's stack", async () => {
    const { pool } = await setup({ max: 2, leakDetectionMs: 40 });
    const leaks: Array<{ stack: string; heldMs: number; reclaimed: boolean }> = [];
    pool.on('leak', (info) => leaks.push(info));
    const lease = await pool.acquire();
    await waitFor(() => leaks.length === 1, 5000, 'leak event');
    assert.match(leaks[0]?.stack ?? '', /connection-pool\.test\.js/);
    assert.ok((leaks[0]?.heldMs ?? 0) >= 40);
    assert.equal(leaks[0]?.reclaimed, false);
    assert.equal(lease.active, true);
    await lease.request(req());
    lease.release();
  });

  test('leak detection with reclaimLeaked: the connection is taken back and its slot freed', async () => {
    const { pool, destroyed } = await setup({ max: 1, leakDetectionMs: 40, reclaimLeaked: true });
    const leaked = await pool.acquire();
    const waiter = pool.acquire({ timeoutMs: 1000 });
    const info = await leaked.connection.closed;
    assert.equal(leaked.active, false);
    assert.ok(info.error instanceof LeaseReclaimedError);
    assert.equal(destroyed[0]?.reason, 'leak-reclaimed');
    const next = await waiter;
    assert.notEqual(next.connection, leaked.connection);
    assert.equal(leaked.release(), false, 'a late release is a no-op');
    next.release();
    await assert.rejects(leaked.request(req()), /released/);
  });
});

describe('endpoint down', () => {
  test('server down: acquire fails fast with ERR_ENDPOINT_UNAVAILABLE, create attempts stay bounded, and the pool refills when it is back', async () => {
    const peer = await legacyPeer();
    peers.push(peer);
    await peer.stop();
    const pool = createConnectionPool({
      port: peer.port,
      framing,
      min: 2,
      max: 4,
      acquireTimeoutMs: 5000,
      createRetryInitialMs: 10,
      breakerThreshold: 3,
      breakerCooldownMs: 150,
    });
    pools.push(pool);
    let attempts = 0;
    const opened: unknown[] = [];
    pool.on('createError', () => attempts++);
    pool.on('create', () => attempts++);
    pool.on('breakerOpen', (i) => opened.push(i.error));

    // Fails fast: with the connect's error, not an acquire timeout 5 s later.
    const err = await pool.acquire().catch((e: unknown) => e);
    assert.ok(err instanceof EndpointUnavailableError, String(err));
    assert.equal(err.code, 'ERR_ENDPOINT_UNAVAILABLE');
    assert.ok(err.cause instanceof ConnectError);
    assert.equal(((err.cause as ConnectError).cause as NodeJS.ErrnoException).code, 'ECONNREFUSED');

    // While open: immediate (before the event loop turns).
    await assert.rejects(withinTurn(pool.acquire(), 'the refusal'), EndpointUnavailableError);

    // No tight loop: half-open probes keep trying (wait for two), at most 12 a second.
    const before = attempts;
    const t0 = performance.now();
    await waitFor(() => attempts - before >= 2, 10_000, 'half-open probes');
    await sleep(500);
    const seconds = (performance.now() - t0) / 1000;
    const made = attempts - before;
    assert.ok(made <= 12 * seconds + 1, `${made} create attempts in ${seconds.toFixed(2)} s`);
    assert.ok(pool.stats().endpoints[0]?.breaker.state !== 'closed');

    // Back up: the next probe succeeds, the breaker closes, the pool refills to min.
    const closedBreaker = new Promise<void>((resolve) => pool.once('breakerClose', () => resolve()));
    await peer.start();
    await closedBreaker;
    await waitFor(() => pool.stats().idle === 2, 2000, 'refilled to min');
    assert.deepEqual(body(await pool.request(req({ back: true }))).echo, { back: true });
  });
});

describe('drain, clear', () => {
  test('drain(): stops lending, waits for the borrowed connection, closes everything gracefully', async () => {
    const { pool, destroyed } = await setup({ min: 2, max: 3 });
    await waitFor(() => pool.stats().idle === 2);
    const lease = await pool.acquire();
    const conns: Connection[] = [lease.connection];
    let drained = false;
    const d = pool.drain().then(() => {
      drained = true;
    });
    await assert.rejects(pool.acquire(), { code: 'ERR_POOL_CLOSED' });
    await sleep(30);
    assert.equal(drained, false, 'waits for the borrowed connection');
    assert.equal(destroyed.filter((x) => x.reason === 'drain').length, 1);
    await lease.request(req()); // still usable while draining
    lease.release();
    await d;
    assert.equal(destroyed.filter((x) => x.reason === 'drain').length, 2);
    const info = await conns[0]?.closed;
    assert.equal(info?.reason, 'local-graceful');
    assert.equal(pool.stats().size, 0);
  });

  test('drain({ timeoutMs }) aborts connections that are not returned in time', async () => {
    const { pool, destroyed } = await setup({ max: 1 });
    const lease = await pool.acquire();
    await pool.drain({ timeoutMs: 50 });
    assert.equal(destroyed[0]?.reason, 'drain-timeout');
    assert.equal(destroyed[0]?.graceful, false);
    assert.equal((await lease.connection.closed).reason, 'local-abort');
  });

  test('clear() closes idle connections now and the pool refills to min', async () => {
    const { pool, destroyed, peer } = await setup({ min: 2, max: 2 });
    await waitFor(() => pool.stats().idle === 2);
    await pool.clear();
    assert.equal(destroyed.filter((d) => d.reason === 'clear').length, 2);
    await waitFor(() => pool.stats().idle === 2, 2000, 'refilled');
    assert.equal(peer.accepted, 4);
  });
});
