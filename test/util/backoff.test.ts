/** The one backoff (util/backoff.ts): ceilings, caps, and what a long outage does to them. */

import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { backoffCeiling, fullJitter, spreadAround } from '../../src/util/backoff.js';

const policy = { initialDelayMs: 50, multiplier: 2, maxDelayMs: 5_000 };

test('ceilings grow by the multiplier and stop at the max', () => {
  assert.deepEqual(
    [1, 2, 3, 4, 7, 8, 100].map((n) => backoffCeiling(policy, n)),
    [50, 100, 200, 400, 3_200, 5_000, 5_000],
  );
});

test('a very long outage (attempt 5,000: the power overflows) still gives the max, and 0 stays 0 (not NaN)', () => {
  assert.equal(backoffCeiling(policy, 5_000), 5_000);
  assert.equal(backoffCeiling({ ...policy, initialDelayMs: 0 }, 5_000), 0);
  assert.equal(
    fullJitter({ ...policy, initialDelayMs: 0 }, 5_000, () => 0.5),
    0,
  );
});

test('full jitter is in [0, ceiling) for any attempt and policy', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 10_000 }),
      fc.integer({ min: 1, max: 100_000 }),
      fc.double({ min: 1, max: 10, noNaN: true }),
      fc.integer({ min: 1, max: 100_000 }),
      fc.double({ min: 0, max: 0.999_999, noNaN: true }),
      (initialDelayMs, attempt, multiplier, maxDelayMs, r) => {
        const p = { initialDelayMs, multiplier, maxDelayMs };
        const d = fullJitter(p, attempt, () => r);
        const c = backoffCeiling(p, attempt);
        return Number.isFinite(d) && d >= 0 && (c === 0 ? d === 0 : d < c) && c <= Math.max(maxDelayMs, 0);
      },
    ),
  );
});

test('spreadAround stays within ±spread', () => {
  assert.equal(
    spreadAround(1_000, 0.25, () => 0),
    750,
  );
  assert.equal(spreadAround(1_000, 0.25, () => 0.999_999_9) < 1_250, true);
});
