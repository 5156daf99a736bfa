/**
 * Time, in one place. Every deadline, heartbeat, pool timestamp and round-trip time in longlink
 * reads the clock through `now()`: monotonic milliseconds (performance.now) from one source that
 * tests can replace, so a 30 s heartbeat can be tested in milliseconds with mocked timers and a
 * clock that jumps (see `setClockSource`).
 *
 * Why no cached reading. There used to be three caches (a per-turn reading for request deadlines,
 * one for the pools, one for connections) to save the 25–70 ns of a clock_gettime. One of them was
 * reset by an unref'd setImmediate, which does not keep the loop from blocking in poll: after a
 * quiet second the next I/O callback read a second-old time, and a request made there with a
 * 1000 ms timeout failed after 1 ms. A ref'd reset fixes that case but not the general one: a
 * reading cached for "this turn" is stale by however long the turn has run, and user code decides
 * that (50 ms of synchronous work, then a request: its deadline would fire 50 ms early). A
 * deadline must never fire before its time, so deadlines read the real clock when they are set.
 * Measured: 42–50 ns per reading on this machine (docs/benchmarks.md, "The clock"), about 2–3 % of
 * a client's CPU per request at 600 k req/s — the price of the guarantee.
 */

import { performance } from 'node:perf_hooks';

const realNow = (): number => performance.now();
let source: () => number = realNow;

/** Monotonic milliseconds (fractional). The one clock every longlink timer and deadline reads. */
export function now(): number {
  return source();
}

/**
 * @internal Replaces the clock (tests: with node:test's `mock.timers`, time then moves only when
 * the test says so). `undefined` restores the real one.
 */
export function setClockSource(next: (() => number) | undefined): void {
  source = next ?? realNow;
}
