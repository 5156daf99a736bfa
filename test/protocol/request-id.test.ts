import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { InvalidArgumentError } from '../../src/errors.js';
import {
  MAX_REQUEST_ID,
  type Outstanding,
  ProtocolError,
  RequestIdAllocator,
} from '../../src/protocol/index.js';

/** The allocator keeps the caller's record of each request; these tests only need its id. */
const entry = (): Outstanding => ({ id: 0, seq: 0 });
const ids$ = (list: Outstanding[]) => list.map((e) => e.id);
const split = (ids: RequestIdAllocator, lastId: number) => {
  const { accepted, notProcessed } = ids.splitOnGoaway(lastId);
  return { accepted: ids$(accepted), notProcessed: ids$(notProcessed) };
};

describe('RequestIdAllocator', () => {
  it('hands out 1, 2, 3 … and tracks what is outstanding', () => {
    const ids = new RequestIdAllocator();
    assert.deepEqual([ids.allocate(entry()), ids.allocate(entry()), ids.allocate(entry())], [1, 2, 3]);
    assert.equal(ids.size, 3);
    assert.ok(ids.has(2));
    assert.equal(ids.release(2)?.id, 2);
    assert.equal(ids.release(2), undefined, 'a second answer for the same id is reported');
    assert.equal(ids.release(77), undefined);
    assert.ok(!ids.has(2));
    assert.equal(ids.size, 2);
    assert.equal(ids.allocate(entry()), 4, 'released ids are not reused before the wrap');
  });

  it('wraps from 2^32-1 to 1, never 0', () => {
    const ids = new RequestIdAllocator({ firstId: MAX_REQUEST_ID - 1 });
    assert.deepEqual(
      [ids.allocate(entry()), ids.allocate(entry()), ids.allocate(entry())],
      [MAX_REQUEST_ID - 1, MAX_REQUEST_ID, 1],
    );
  });

  it('skips ids still outstanding when it comes round to them', () => {
    const ids = new RequestIdAllocator({ maxId: 10 });
    const first = Array.from({ length: 10 }, () => ids.allocate(entry()));
    assert.deepEqual(first, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    // 3, 4 and 9 are long-running; the rest are answered.
    for (const id of first) if (id !== 3 && id !== 4 && id !== 9) ids.release(id);
    const second = Array.from({ length: 7 }, () => ids.allocate(entry()));
    assert.deepEqual(second, [1, 2, 5, 6, 7, 8, 10]);
    ids.release(4);
    ids.release(1);
    assert.deepEqual([ids.allocate(entry()), ids.allocate(entry())], [1, 4], 'wraps again and skips 2, 3');
    assert.equal(ids.size, 10);
  });

  it('refuses when every id is outstanding, recovers when one is answered', () => {
    const ids = new RequestIdAllocator({ maxId: 3 });
    ids.allocate(entry());
    ids.allocate(entry());
    ids.allocate(entry());
    assert.throws(
      () => ids.allocate(entry()),
      (err: unknown) => err instanceof ProtocolError && err.code === 'ERR_TOO_MANY_REQUESTS',
    );
    ids.release(2);
    assert.equal(ids.allocate(entry()), 2);
  });

  it('holds tens of thousands outstanding', () => {
    const ids = new RequestIdAllocator();
    const n = 50_000;
    for (let i = 0; i < n; i++) ids.allocate(entry());
    assert.equal(ids.size, n);
    for (let i = 1; i <= n; i += 2) ids.release(i);
    assert.equal(ids.size, n / 2);
    assert.equal(ids.allocate(entry()), n + 1);
  });

  it('rejects bad options', () => {
    for (const firstId of [0, -1, 2 ** 32, 1.5, Number.NaN]) {
      assert.throws(() => new RequestIdAllocator({ firstId }), InvalidArgumentError);
    }
    for (const maxId of [0, 2 ** 32, 2.5]) {
      assert.throws(() => new RequestIdAllocator({ maxId }), InvalidArgumentError);
    }
    assert.throws(() => new RequestIdAllocator({ maxId: 5, firstId: 6 }), InvalidArgumentError);
  });
});

describe('RequestIdAllocator.splitOnGoaway', () => {
  it('forgets what the peer never read, keeps what it read', () => {
    const ids = new RequestIdAllocator();
    for (let i = 0; i < 4; i++) ids.allocate(entry()); // 1..4
    split(ids, 2);
    assert.equal(ids.size, 2);
    assert.ok(ids.has(1) && ids.has(2) && !ids.has(3) && !ids.has(4));
  });

  it('lastId outstanding: it and everything sent before were read', () => {
    const ids = new RequestIdAllocator();
    for (let i = 0; i < 6; i++) ids.allocate(entry()); // 1..6
    ids.release(2);
    assert.deepEqual(split(ids, 4), { accepted: [1, 3, 4], notProcessed: [5, 6] });
  });

  it('lastId already answered: the latest answer marks the point', () => {
    const ids = new RequestIdAllocator();
    for (let i = 0; i < 6; i++) ids.allocate(entry()); // 1..6
    ids.release(4);
    ids.release(2);
    assert.deepEqual(split(ids, 4), { accepted: [1, 3], notProcessed: [5, 6] });
  });

  it('lastId 0: nothing was read', () => {
    const ids = new RequestIdAllocator();
    ids.allocate(entry());
    ids.allocate(entry());
    assert.deepEqual(split(ids, 0), { accepted: [], notProcessed: [1, 2] });
  });

  it('goes by send order, not by id, once ids have wrapped', () => {
    const ids = new RequestIdAllocator({ maxId: 10, firstId: 8 });
    // Sent in this order: 8, 9, 10, 1, 2, 3.
    const sent = Array.from({ length: 6 }, () => ids.allocate(entry()));
    assert.deepEqual(sent, [8, 9, 10, 1, 2, 3]);
    // The peer read up to id 1: 8, 9, 10 and 1 were read, though 8 > 1.
    assert.deepEqual(split(ids, 1), { accepted: [8, 9, 10, 1], notProcessed: [2, 3] });
    // A long-running request from the previous lap keeps its place at the front.
    const lap = new RequestIdAllocator({ maxId: 5 });
    for (let i = 0; i < 5; i++) lap.allocate(entry()); // 1..5
    for (const id of [1, 2, 3, 5]) lap.release(id); // 4 runs on
    const next = [lap.allocate(entry()), lap.allocate(entry()), lap.allocate(entry())]; // 1, 2, 3 (skips nothing yet)
    assert.deepEqual(next, [1, 2, 3]);
    assert.deepEqual(split(lap, 1), { accepted: [4, 1], notProcessed: [2, 3] });
  });
});
