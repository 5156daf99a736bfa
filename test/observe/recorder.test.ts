/**
 * The Recorder's arithmetic: every request counted, timings sampled and weighted above 10,000 a
 * second, the live window's percentiles within their bucket width, tables capped.
 */

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  BoundedTable,
  bucketMiddle,
  bucketOf,
  LiveWindow,
  OTHER,
  Recorder,
} from '../../src/observe/recorder.js';
import { channels, type RequestTrace } from '../../src/util/channels.js';

function handled(n: number, method = 'echo'): void {
  const tc = channels.serverRequest;
  for (let i = 0; i < n; i++) {
    const t: RequestTrace = {
      side: 'server',
      method,
      requestId: i + 1,
      connectionId: '1',
      metadata: undefined,
    };
    tc.start.publish(t);
    tc.end.publish(t);
  }
}

describe('Recorder', () => {
  test('every request is counted; above 10,000 a second one in N is timed and weighs N', () => {
    const r = new Recorder();
    try {
      handled(5000);
      const m = r.server.methods.get('echo');
      assert.equal(m.ok, 5000);
      assert.equal(m.durations.count, 5000, 'below the rate, every request is timed');
      r.adapt(); // as the once-a-second timer does: 5,000 in the last second
      assert.equal(r.server.every, 1);
      handled(45_000);
      r.adapt(); // 45,000 in the last second: one in 8 is timed (45,000 / 8 ≤ 10,000)
      assert.equal(r.server.every, 8);
      handled(8000);
      assert.equal(m.ok, 58_000, 'counted exactly');
      assert.equal(m.durations.count, 58_000, '1,000 timings, each weighing 8');
      assert.equal(r.server.inflight, 0);
      assert.equal(r.server.total, 58_000);
      let buckets = 0;
      for (const c of m.durations.counts) buckets += c;
      assert.equal(buckets, 58_000);
    } finally {
      r.close();
    }
  });

  test('the live window: rate and percentiles over the last complete second, within 7 % (0.5 µs below 8 µs)', () => {
    const w = new LiveWindow();
    const t0 = 1_000_000; // ms
    for (let i = 1; i <= 1000; i++) w.record(t0 + i * 0.9, i * 1e-5); // 10 µs … 10 ms in one second
    const q = w.query(t0 + 2000, 1);
    assert.equal(q.rate, 0, 'nothing in the second before');
    const got = w.query(t0 + 1000, 1);
    assert.equal(got.rate, 1000);
    assert.ok(Math.abs((got.p50 as number) / 5e-3 - 1) < 0.07, `p50 ${got.p50}`);
    assert.ok(Math.abs((got.p99 as number) / 9.9e-3 - 1) < 0.07, `p99 ${got.p99}`);
    assert.equal(w.query(t0 + 20_000, 1).p50, undefined, 'old seconds are forgotten');
    for (const v of [8e-6, 1.234e-4, 0.5, 3, 600]) {
      const k = bucketOf(v);
      assert.ok(Math.abs(bucketMiddle(k) / v - 1) < 0.07, `${v} → bucket ${k} (${bucketMiddle(k)})`);
    }
    for (const v of [0, 1e-6, 7.9e-6]) {
      assert.ok(Math.abs(bucketMiddle(bucketOf(v)) - v) <= 0.5e-6 + 1e-12, `${v}: within half a microsecond`);
    }
  });

  test('a bounded table keeps max keys, then everything is other', () => {
    const t = new BoundedTable(2, () => ({ n: 0 }));
    for (const k of ['a', 'b', 'c', 'd', 'a']) t.get(k).n++;
    assert.deepEqual([...t.entries.keys()], ['a', 'b', OTHER]);
    assert.equal(t.get(OTHER).n, 2);
    assert.equal(t.get('a').n, 2);
  });
});
