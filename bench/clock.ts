/**
 * What a clock reading costs: performance.now() (what every longlink deadline reads since the
 * clock caches were removed, see src/util/clock.ts) against a cached value reused for 8 calls
 * (what the pools used to do), in ns per call, median of 5 rounds.
 *
 *   npm run bench:clock
 */

import { now } from '../src/util/clock.js';

const N = 5_000_000;
function round(f: () => number): number {
  let sink = 0;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < N; i++) sink += f();
  const ns = Number(process.hrtime.bigint() - t0) / N;
  if (sink === -1) console.log(sink); // keep the loop
  return ns;
}
let cached = 0;
let uses = 0;
function reused(): number {
  if (uses > 0) {
    uses--;
    return cached;
  }
  cached = performance.now();
  uses = 7;
  return cached;
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
const real: number[] = [];
const cache: number[] = [];
for (let r = 0; r < 5; r++) {
  real.push(round(now));
  cache.push(round(reused));
}
const a = median(real);
const b = median(cache);
console.log('| reading | ns per call | ratio |\n| --- | ---: | ---: |');
console.log(`| clock.now() (performance.now) | ${a.toFixed(1)} | ${(a / b).toFixed(1)}× |`);
console.log(`| cached, reused 8 times | ${b.toFixed(1)} | 1.0× |`);
console.log(
  `\nAt 600,000 requests/s one reading per request costs ${((a * 600_000) / 1e6).toFixed(1)} ms of CPU per second (${((a * 600_000) / 1e7).toFixed(1)} % of a core).`,
);
