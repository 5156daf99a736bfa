#!/usr/bin/env node
// The test suite under c8 (npm run coverage; not part of npm test): V8's own coverage of the
// compiled dist/src, mapped back to src/*.ts through the source maps, every library file counted
// (--all) whether a test loaded it or not. Child processes (CLI, fixtures, samples) are covered
// too: c8 passes NODE_V8_COVERAGE down. Prints c8's per-file table, then lines and branches per
// directory. Reports land in .tmp/coverage/ (gitignored); arguments are passed to run-tests.mjs
// (a filter), e.g. `node scripts/coverage.mjs codec/`.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, relative } from 'node:path';

const dir = '.tmp/coverage';
const c8 = createRequire(import.meta.url).resolve('c8/bin/c8.js');
const r = spawnSync(
  process.execPath,
  [
    c8,
    '--all',
    '--src=dist/src',
    '--include=dist/src/**',
    '--reporter=text',
    '--reporter=json-summary',
    `--report-dir=${dir}`,
    `--temp-directory=${dir}/tmp`,
    process.execPath,
    'scripts/run-tests.mjs',
    ...process.argv.slice(2),
  ],
  { stdio: 'inherit' },
);

// Per directory: the sum of its files' counts (c8's table shows per-file percentages only).
const summary = JSON.parse(readFileSync(`${dir}/coverage-summary.json`, 'utf8'));
const dirs = new Map();
for (const [file, s] of Object.entries(summary)) {
  if (file === 'total') continue;
  const d = relative(process.cwd(), dirname(file));
  const acc = dirs.get(d) ?? { lines: [0, 0], branches: [0, 0], functions: [0, 0] };
  for (const k of ['lines', 'branches', 'functions']) {
    acc[k][0] += s[k].covered;
    acc[k][1] += s[k].total;
  }
  dirs.set(d, acc);
}
const pct = ([c, t]) => (t === 0 ? '   -  ' : `${((100 * c) / t).toFixed(1).padStart(5)}%`);
console.log('\ncoverage per directory   lines    branches  functions');
for (const [d, a] of [...dirs].sort()) {
  console.log(`  ${d.padEnd(21)} ${pct(a.lines)}   ${pct(a.branches)}   ${pct(a.functions)}`);
}
const t = summary.total;
console.log(
  `  ${'all'.padEnd(21)} ${pct([t.lines.covered, t.lines.total])}   ${pct([t.branches.covered, t.branches.total])}   ${pct([t.functions.covered, t.functions.total])}`,
);
process.exit(r.status ?? 1);
