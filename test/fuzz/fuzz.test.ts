/**
 * The fuzz suite's short run (part of npm test): every framing group — the longlink protocol
 * server and a legacy server for each framing the CLI knows, JSON and raw — gets a fixed number of
 * batches of valid sessions, mutations of them and random bytes, written to a live server in its
 * own process, split at random points. What is checked is in oracle.ts and campaign.ts: the
 * process stays up, its RSS stays under the stated bound, every accepted request is answered
 * exactly once, every connection closes with a reason (offenders with the matching one), and a
 * legitimate client is served during and after.
 *
 * The seed is fixed so that the run is the same each time; LONGLINK_FUZZ_SEED=<n> runs another
 * (printed either way). Longer runs: `npm run fuzz -- --minutes N`.
 */

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { type Figures, fuzzGroup } from './campaign.js';
import { groupsFor, MiB } from './model.js';

const SEED = Number(process.env.LONGLINK_FUZZ_SEED ?? 20_250_601);
/** Batches (of up to 8 connections at once) per group: about 20 s for the thirteen groups on 2 cores. */
const BATCHES = { protocol: 120, legacy: 30 } as const;

function summary(f: Figures): string {
  const known = Object.entries(f.known)
    .map(([id, v]) => `${id}×${v.count}`)
    .join(' ');
  return (
    `# fuzz ${f.group}: ${f.streams} streams in ${(f.elapsedMs / 1000).toFixed(1)} s, ${(f.bytes / 1024).toFixed(0)} KiB, ` +
    `${f.connections} connections, RSS ${(f.baselineRss / MiB).toFixed(1)} → peak ${(f.peakRss / MiB).toFixed(1)} MiB ` +
    `(bound ${(f.rssBound / MiB).toFixed(1)}), known findings: ${known || 'none'}`
  );
}

describe(`fuzz: hostile byte streams against live servers (seed ${SEED})`, () => {
  console.log(
    `# fuzz seed ${SEED}: replay with LONGLINK_FUZZ_SEED=${SEED} node scripts/run-tests.mjs fuzz, or npm run fuzz -- --seed ${SEED}`,
  );
  for (const group of groupsFor()) {
    test(`${group.name}: the process stays up, memory bounded, exactly-once answers, every close with its reason`, async () => {
      const { figures, failure } = await fuzzGroup(group, { seed: SEED, numRuns: BATCHES[group.kind] });
      console.log(summary(figures));
      if (failure !== undefined) {
        assert.fail(
          `seed ${failure.seed}, path ${failure.path}: ${failure.message}\n` +
            `replay: npm run fuzz -- --framing ${failure.group} --seed ${failure.seed}${failure.path === null ? '' : ` --path ${failure.path}`}\n` +
            `shrunk batch:\n${failure.counterexample}`,
        );
      }
    });
  }
});
