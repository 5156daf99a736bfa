#!/usr/bin/env node
// Every skip in the suite goes through test/skip.ts, which prints why and turns a `required` skip
// into a failure under LONGLINK_REQUIRE_FAULTS=1. A skip written by hand would do neither, so
// this check (part of npm run lint) refuses, in test/ outside test/skip.ts:
//   t.skip(…), test.skip(…), describe.skip(…), it.skip(…)      → skipTest(t, why) / skipBecause(why)
//   { skip: 'why' }, { skip: cond ? false : 'why' }             → { skip: skipUnless(cond, 'why') }
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const HELPER = 'test/skip.ts';
const RULES = [
  { re: /\.skip\s*\(/, fix: 'use skipTest(t, why) or skipBecause(why) from test/skip.ts' },
  {
    re: /\bskip\s*:\s*(['"`]|[^,}\n]*\?[^,}\n]*['"`])/,
    fix: 'use { skip: skipUnless(cond, why) } from test/skip.ts',
  },
];

function walk(dir, out = []) {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p, out);
    else if (/\.(ts|mjs|js)$/.test(p)) out.push(p);
  }
  return out;
}

const problems = [];
for (const file of walk(join(root, 'test'))) {
  const rel = relative(root, file);
  if (rel === HELPER) continue;
  readFileSync(file, 'utf8')
    .split('\n')
    .forEach((line, i) => {
      for (const { re, fix } of RULES)
        if (re.test(line)) problems.push(`${rel}:${i + 1}: ${line.trim()}\n    ${fix}`);
    });
}
if (problems.length > 0) {
  console.error(
    `check-skips: ${problems.length} skip(s) not made through ${HELPER}:\n${problems.join('\n')}`,
  );
  process.exit(1);
}
