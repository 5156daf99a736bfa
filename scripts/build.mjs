#!/usr/bin/env node
// Builds both module systems (npm run build):
//   dist/src, dist/test, dist/bench   ESM, tsconfig.json: what the tests and benchmarks run
//   dist/cjs                          CommonJS, tsconfig.cjs.json: the library only (index + internal),
//                                     for require('longlink') on Node versions without require(esm)
// dist/cjs gets a package.json {"type": "commonjs"} so that Node and TypeScript read its .js and
// .d.ts files as CommonJS although the package itself is "type": "module".
import { spawnSync } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';

const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
// A stale file in dist (its source deleted or moved) would be run by the tests and shipped by npm
// pack: every build starts from an empty dist.
rmSync('dist', { recursive: true, force: true });
for (const project of ['tsconfig.json', 'tsconfig.cjs.json']) {
  const r = spawnSync(process.execPath, [tsc, '-p', project], { stdio: 'inherit' });
  if (r.status !== 0) process.exit(r.status ?? 1);
}
writeFileSync('dist/cjs/package.json', '{ "type": "commonjs" }\n');
