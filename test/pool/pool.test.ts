/** The generic pool core with in-process resources: the parts that need no socket to pin down. */

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { AbortedError, LonglinkError } from '../../src/errors.js';
import { Deque } from '../../src/pool/deque.js';
import {
  AcquireTimeoutError,
  EndpointUnavailableError,
  PoolClosedError,
  PoolError,
  PoolFullError,
} from '../../src/pool/errors.js';
import { Pool } from '../../src/pool/pool.js';
import type { PoolFactory, PoolOptions } from '../../src/pool/pool-options.js';
import { sleep, waitFor, withinTurn } from '../helpers.js';

interface Res {
  id: number;
  alive: boolean;
}

function factory(overrides: Partial<PoolFactory<Res>> = {}) {
  let next = 1;
  const log = { created: 0, destroyed: [] as Array<[number, string]>, attempts: 0 };
  const f: PoolFactory<Res> = {
    create: async () => {
      log.attempts++;
      log.created++;
      return { id: next++, alive: true };
    },
    destroy: (r, reason) => {
      r.alive = false;
      log.destroyed.push([r.id, reason]);
    },
    isUsable: (r) => r.alive,
    ...overrides,
  };
  return { f, log };
}

function pool(f: PoolFactory<Res>, options: PoolOptions = {}): Pool<Res> {
  return new Pool(f, { acquireTimeoutMs: 1000, ...options });
}

describe('Deque', () => {
  test('FIFO across wrap-around and growth; filter keeps order', () => {
    const d = new Deque<number>(4);
    const model: number[] = [];
    let n = 0;
    for (let round = 0; round < 200; round++) {
      const pushes = (round * 7) % 5;
      for (let i = 0; i < pushes; i++) {
        d.push(n);
        model.push(n++);
      }
      const shifts = (round * 3) % 4;
      for (let i = 0; i < shifts; i++) assert.equal(d.shift(), model.shift());
      assert.equal(d.length, model.length);
    }
    d.filter((x) => x % 2 === 0);
    const kept = model.filter((x) => x % 2 === 0);
    const out: number[] = [];
    d.forEach((x) => {
      out.push(x);
    });
    assert.deepEqual(out, kept);
    assert.equal(d.shift(), kept[0]);
  });
});

describe('Pool core', () => {
  test('errors are typed, branded and carry stable codes', () => {
    const cases: Array<[LonglinkError, string]> = [
      [new AcquireTimeoutError(5), 'ERR_ACQUIRE_TIMEOUT'],
      [new PoolFullError(3), 'ERR_POOL_FULL'],
      [new EndpointUnavailableError('h:1', 10), 'ERR_ENDPOINT_UNAVAILABLE'],
      [new PoolClosedError(), 'ERR_POOL_CLOSED'],
    ];
    for (const [err, code] of cases) {
      assert.equal(err.code, code);
      assert.ok(err instanceof PoolError);
      assert.ok(err instanceof LonglinkError);
    }
    assert.ok(!(new PoolFullError(1) instanceof AcquireTimeoutError));
  });

  test('rejects bad options synchronously', () => {
    const { f } = factory();
    assert.throws(() => new Pool(f, { max: 0 }), { code: 'ERR_INVALID_ARGUMENT' });
    assert.throws(() => new Pool(f, { min: 3, max: 2 }), { code: 'ERR_INVALID_ARGUMENT' });
    assert.throws(() => new Pool(f, { acquireTimeoutMs: -1 }), { code: 'ERR_INVALID_ARGUMENT' });
  });

  test('an aborted acquire rejects with ERR_ABORTED and leaves the queue', async () => {
    const { f } = factory();
    const p = pool(f, { max: 1 });
    const held = await p.acquire();
    const ac = new AbortController();
    const waiting = p.acquire({ signal: ac.signal });
    assert.equal(p.stats().pending, 1);
    ac.abort();
    await assert.rejects(waiting, AbortedError);
    assert.equal(p.stats().pending, 0);
    held.release();
    assert.equal(p.stats().idle, 1);
    await p.drain();
  });

  test('many timed-out waiters are compacted away and the queue stays correct', async () => {
    const { f } = factory();
    const p = pool(f, { max: 1 });
    const held = await p.acquire();
    const doomed = Array.from({ length: 200 }, () => p.acquire({ timeoutMs: 20 }).catch((e: unknown) => e));
    const survivor = p.acquire({ timeoutMs: 2000 });
    const results = await Promise.all(doomed);
    assert.ok(results.every((e) => e instanceof AcquireTimeoutError));
    assert.equal(p.stats().pending, 1);
    assert.equal(p.stats().totals.timeouts, 200);
    held.release();
    (await survivor).release();
    await p.drain();
  });

  test('release and destroy are idempotent; a stale lease cannot release a re-lent resource', async () => {
    const { f, log } = factory();
    const p = pool(f, { max: 1 });
    const a = await p.acquire();
    assert.equal(a.release(), true);
    const b = await p.acquire();
    assert.equal(b.resource, a.resource);
    assert.equal(a.release(), false);
    assert.equal(a.destroy(), false);
    assert.equal(p.stats().borrowed, 1);
    assert.equal(b.destroy('broken-by-test'), true);
    assert.deepEqual(log.destroyed, [[1, 'broken-by-test']]);
    await p.drain();
  });

  test('use() releases on success and on an application error, destroys when isBroken says so', async () => {
    const { f, log } = factory({ isBroken: (err) => (err as Error).message === 'fatal' });
    const p = pool(f, { max: 1 });
    assert.equal(await p.use((r) => r.id), 1);
    await assert.rejects(
      p.use(() => {
        throw new Error('app');
      }),
      /app/,
    );
    assert.equal(p.stats().idle, 1);
    await assert.rejects(
      p.use(() => {
        throw new Error('fatal');
      }),
      /fatal/,
    );
    assert.deepEqual(log.destroyed, [[1, 'broken']]);
    await p.drain();
  });

  test('create failures back off and open the breaker; no tight loop; a half-open probe closes it', async () => {
    let up = false;
    let attempts = 0;
    const { f } = factory({
      create: async () => {
        attempts++;
        if (!up) throw new Error('ECONNREFUSED (simulated)');
        return { id: attempts, alive: true };
      },
    });
    const p = pool(f, {
      min: 1,
      createRetryInitialMs: 5,
      breakerThreshold: 4,
      breakerCooldownMs: 100,
      acquireTimeoutMs: 5000,
    });
    const states: string[] = [];
    p.on('breakerOpen', () => states.push('open'));
    p.on('breakerHalfOpen', () => states.push('half-open'));
    p.on('breakerClose', () => states.push('closed'));
    const err = await p.acquire().catch((e: unknown) => e);
    assert.ok(err instanceof EndpointUnavailableError);
    assert.equal((err.cause as Error).message, 'ECONNREFUSED (simulated)');
    // No tight loop: at most 12 attempts a second, over the time it takes the breaker to go
    // open, half-open (a probe that fails) and open again — waited for, not assumed.
    const before = attempts;
    const t0 = performance.now();
    await waitFor(
      () => states.join(' ').startsWith('open half-open open'),
      10_000,
      'a failed half-open probe',
    );
    await sleep(500);
    const seconds = (performance.now() - t0) / 1000;
    assert.ok(
      attempts - before <= 12 * seconds + 1,
      `${attempts - before} attempts in ${seconds.toFixed(2)} s`,
    );
    up = true;
    await waitFor(() => p.stats().breaker.state === 'closed', 1000, 'breaker closed');
    await waitFor(() => p.stats().idle === 1, 1000, 'refilled');
    assert.deepEqual(states.slice(0, 3), ['open', 'half-open', 'open']);
    assert.equal(states.at(-1), 'closed');
    (await p.acquire()).release();
    await p.drain();
  });

  test('a create slower than createTimeoutMs counts as a failure and its late resource is destroyed', async () => {
    let slow = true;
    const { f, log } = factory({
      create: async () => {
        if (slow) {
          slow = false;
          await sleep(80);
          return { id: 99, alive: true };
        }
        return { id: 1, alive: true };
      },
    });
    const p = pool(f, { max: 1, createTimeoutMs: 20, createRetryInitialMs: 1 });
    const errors: unknown[] = [];
    p.on('createError', (e) => errors.push(e));
    const lease = await p.acquire();
    assert.equal(lease.resource.id, 1);
    assert.ok(errors[0] instanceof AbortedError);
    await waitFor(() => log.destroyed.some(([id]) => id === 99), 500, 'late resource destroyed');
    assert.deepEqual(log.destroyed, [[99, 'create-timeout']]);
    lease.release();
    await p.drain();
  });

  test('drain() abandons creates in flight: their signal aborts and a late resource is destroyed', async () => {
    let signal: AbortSignal | undefined;
    const { f, log } = factory({
      create: async (s) => {
        signal = s;
        await sleep(50);
        return { id: 7, alive: true };
      },
    });
    const p = pool(f, { max: 1 });
    const waiting = p.acquire().catch((e: unknown) => e);
    await waitFor(() => signal !== undefined, 5000, 'the create to start');
    // The create takes 50 ms (a timer); drain resolves before the loop even turns.
    await withinTurn(p.drain(), 'drain, which does not wait for the create');
    assert.ok((await waiting) instanceof PoolClosedError);
    assert.equal(signal?.aborted, true);
    await waitFor(() => log.destroyed.length === 1, 500, 'late resource destroyed');
    assert.deepEqual(log.destroyed, [[7, 'drain']]);
  });

  test('keepalive validates idle resources on an interval and drops the ones that fail', async () => {
    let validations = 0;
    const { f, log } = factory({
      validate: async (r) => {
        validations++;
        return r.id !== 2;
      },
    });
    const p = pool(f, { min: 2, max: 2, keepaliveIntervalMs: 40 });
    await waitFor(() => validations >= 4, 1000, 'keepalive ran');
    assert.ok(log.destroyed.some(([id, why]) => id === 2 && why === 'keepalive-failed'));
    await waitFor(() => p.stats().idle === 2, 1000, 'refilled');
    await p.drain();
  });

  test('max lifetime never retires a borrowed resource: it is retired on release', async () => {
    const { f, log } = factory();
    const p = pool(f, { max: 1, maxLifetimeMs: 30, maxLifetimeJitter: 0 });
    const lease = await p.acquire();
    await sleep(80);
    assert.equal(lease.active, true);
    assert.deepEqual(log.destroyed, []);
    lease.release();
    assert.deepEqual(log.destroyed, [[1, 'max-lifetime']]);
    await p.drain();
  });

  test('stats and events track every state', async () => {
    const { f } = factory();
    const p = pool(f, { max: 2 });
    const events: string[] = [];
    p.on('create', () => events.push('create'));
    p.on('acquire', () => events.push('acquire'));
    p.on('release', () => events.push('release'));
    p.on('destroy', (_r, why) => events.push(`destroy:${why}`));
    const a = await p.acquire();
    const s = p.stats();
    assert.equal(s.size, 1);
    assert.equal(s.borrowed, 1);
    assert.equal(s.idle, 0);
    assert.equal(s.state, 'open');
    a.release();
    await p.drain();
    assert.equal(p.stats().state, 'closed');
    assert.deepEqual(events, ['create', 'acquire', 'release', 'destroy:drain']);
    await assert.rejects(p.acquire(), PoolClosedError);
  });
});
