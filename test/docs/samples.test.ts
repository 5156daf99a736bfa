/**
 * Every TypeScript sample in README.md and docs/*.md compiles against the published types, and
 * the runnable ones run to completion (scripts/extract-samples.mjs; markers in the markdown say
 * which are compile-only). A doc whose sample no longer matches the API fails here.
 */

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

test('README and docs samples compile against the package and the runnable ones run', () => {
  const r = spawnSync(process.execPath, [join(ROOT, 'scripts', 'extract-samples.mjs')], {
    cwd: ROOT,
    encoding: 'utf8',
    timeout: 120_000,
  });
  assert.equal(r.status, 0, `${r.stdout}${r.stderr}`);
  assert.match(r.stdout, /samples: [1-9]\d* passed, 0 failed/);
});
