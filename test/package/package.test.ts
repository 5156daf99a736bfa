/**
 * The package as a user gets it: `npm pack`, the tarball installed into a fresh project outside
 * the repository, then used from child processes the way users do — `require()`, `import()`,
 * TypeScript projects compiled to CommonJS (nodenext and the older node10 resolution) and to ESM,
 * type-checked against the shipped .d.ts with skipLibCheck off. Also what the tarball holds: no
 * test or bench files, no `@internal` member in the types, source maps that resolve.
 *
 * Needs npm and the built dist/ (npm test builds first). The install is offline from npm's cache
 * (koffi, the one dependency, is there after `npm ci`), falling back to the registry; without npm
 * or either way to install, the tests skip and say why.
 */

import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { after, before, describe, type TestContext, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { skipTest } from '../skip.js';

const run = promisify(execFile);
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const TSC = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
const TYPE_ROOTS = join(ROOT, 'node_modules', '@types');

interface Packed {
  dir: string;
  app: string;
  pkg: string;
  files: string[];
}

let packed: Packed | undefined;
let skipReason: string | undefined;

function npm(args: string[], cwd: string): { ok: boolean; out: string } {
  const r = spawnSync('npm', args, { cwd, encoding: 'utf8', timeout: 120_000, env: npmEnv() });
  return { ok: r.status === 0, out: `${r.stdout ?? ''}${r.stderr ?? ''}${r.error ? String(r.error) : ''}` };
}

/** Where the outer npm keeps its cache and registry settings: the inner npm uses the same. */
const KEEP = new Set(['npm_config_cache', 'npm_config_userconfig', 'npm_config_registry']);

/**
 * The rest of the npm_* variables an outer `npm test` sets (prefix, local_prefix, workspace
 * flags …) must not steer the inner npm to the repository.
 */
function npmEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!k.toLowerCase().startsWith('npm_') || KEEP.has(k.toLowerCase())) env[k] = v;
  }
  return env;
}

function setUp(): Packed | string {
  if (spawnSync('npm', ['--version'], { encoding: 'utf8' }).status !== 0) return 'npm is not on PATH';
  for (const f of ['dist/src/index.js', 'dist/cjs/index.js', 'dist/cjs/package.json']) {
    if (!existsSync(join(ROOT, f))) return `${f} is missing: run npm run build first`;
  }
  const dir = mkdtempSync(join(tmpdir(), 'longlink-pack-'));
  // --ignore-scripts: `prepare` would rebuild dist/ under the tests that are running from it.
  const pack = npm(['pack', '--ignore-scripts', '--json', '--pack-destination', dir], ROOT);
  if (!pack.ok) return `npm pack failed: ${pack.out.slice(-500)}`;
  const info = JSON.parse(pack.out.slice(pack.out.indexOf('['))) as Array<{
    filename: string;
    files: Array<{ path: string }>;
  }>;
  const tarball = join(dir, info[0]!.filename);
  const app = join(dir, 'app');
  mkdirSync(app);
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', private: true }));
  const common = ['install', '--no-audit', '--no-fund', '--ignore-scripts', '--no-package-lock', tarball];
  let install = npm([...common, '--offline'], app);
  if (!install.ok) {
    console.log('# package test: offline install failed (dependency not in npm cache?), trying the registry');
    install = npm([...common, '--prefer-offline'], app);
  }
  if (!install.ok) {
    rmSync(dir, { recursive: true, force: true });
    return `npm install of the tarball failed offline and from the registry: ${install.out.slice(-500)}`;
  }
  return { dir, app, pkg: join(app, 'node_modules', 'longlink'), files: info[0]!.files.map((f) => f.path) };
}

function nodeIn(cwd: string, args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, args, { cwd, encoding: 'utf8', timeout: 30_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function walk(dir: string, out: string[] = []): string[] {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) walk(p, out);
    else out.push(p);
  }
  return out;
}

before(() => {
  const r = setUp();
  if (typeof r === 'string') skipReason = r;
  else packed = r;
});

after(() => {
  if (packed !== undefined) rmSync(packed.dir, { recursive: true, force: true });
});

/** The set-up, or a skip with its reason. */
function need(t: TestContext): Packed | undefined {
  if (packed === undefined) skipTest(t, `package test: ${skipReason ?? 'not set up'}`);
  return packed;
}

describe('the packed tarball', () => {
  test('holds the builds, sources, docs, LICENSE and CHANGELOG, and no test or bench file', (t) => {
    const p = need(t);
    if (p === undefined) return;
    for (const f of [
      'package.json',
      'README.md',
      'LICENSE',
      'CHANGELOG.md',
      'dist/src/index.js',
      'dist/src/index.d.ts',
      'dist/src/cli/main.js',
      'dist/cjs/index.js',
      'dist/cjs/index.d.ts',
      'dist/cjs/package.json',
      'src/index.ts',
      'docs/errors.md',
    ]) {
      assert.ok(p.files.includes(f), `${f} is in the tarball`);
    }
    const stray = p.files.filter(
      (f) => /(^|\/)(test|tests|bench|fixtures|__tests__)\//.test(f) || /\.(test|spec)\.[cm]?[jt]s/.test(f),
    );
    assert.deepEqual(stray, [], 'no test or bench files');
    assert.deepEqual(
      p.files.filter((f) => f.startsWith('docs/api/') || f.startsWith('.')),
      [],
      'no generated docs or dotfiles',
    );
  });

  test('the .d.ts files carry no @internal member', (t) => {
    const p = need(t);
    if (p === undefined) return;
    const dts = walk(join(p.pkg, 'dist')).filter((f) => /\.d\.c?ts$/.test(f));
    assert.ok(dts.length > 40, `found ${dts.length} declaration files`);
    const tagged = dts.filter((f) => readFileSync(f, 'utf8').includes('@internal'));
    assert.deepEqual(tagged, [], 'stripInternal left no @internal declaration');
    // Members the public classes used to show (the 'Structure' issue's list, and their kin).
    // A member declaration, not a mention in a comment.
    const hidden =
      /^\s+(?:readonly\s+|static\s+|get\s+)*(sendPrefixed|sendPrefixedOne|frameTarget|commitFrame|sendOwnParts|flushNow|onWheel|lastReadAt|lastWriteAt|setHandler|setHeartbeat|pingIfIdle|peerNotify|peerClosed|netServer|rejectWaiters|unavailableError)\b\s*[(<:?]/m;
    for (const build of ['src', 'cjs']) {
      for (const f of [
        'connection/connection',
        'client/client',
        'server/server',
        'pool/pool',
        'pool/client-pool',
      ]) {
        const text = readFileSync(join(p.pkg, 'dist', build, `${f}.d.ts`), 'utf8');
        assert.doesNotMatch(text, hidden, `dist/${build}/${f}.d.ts`);
      }
    }
  });

  test('every source map resolves to shipped files', (t) => {
    const p = need(t);
    if (p === undefined) return;
    const all = walk(p.pkg);
    let maps = 0;
    for (const f of all) {
      const rel = relative(p.pkg, f);
      if (f.endsWith('.map')) {
        maps++;
        const map = JSON.parse(readFileSync(f, 'utf8')) as { sources: string[]; sourceRoot?: string };
        for (const s of map.sources) {
          const target = resolve(dirname(f), map.sourceRoot ?? '', s);
          assert.ok(existsSync(target), `${rel}: source ${s} is shipped`);
        }
      } else if (/\.(c?js|d\.c?ts)$/.test(f)) {
        const m = /\/\/# sourceMappingURL=(\S+)\s*$/.exec(readFileSync(f, 'utf8'));
        if (m !== null)
          assert.ok(existsSync(resolve(dirname(f), m[1]!)), `${rel}: its map ${m[1]} is shipped`);
      }
    }
    assert.ok(maps > 0, 'the package has source maps');
  });
});

describe('used from a fresh project', () => {
  test("require('longlink') loads the CommonJS build, without require(esm), and works", (t) => {
    const p = need(t);
    if (p === undefined) return;
    writeFileSync(
      join(p.app, 'cjs.cjs'),
      `
const assert = require('node:assert/strict');
const longlink = require('longlink');
const internal = require('longlink/internal');
const pkg = require('longlink/package.json');
assert.equal(pkg.name, 'longlink');
assert.match(require.resolve('longlink'), /dist[\\\\/]cjs[\\\\/]index\\.js$/);
assert.equal(typeof longlink.connect, 'function');
assert.equal(typeof internal.PayloadCodecRegistry, 'function');
assert.equal(longlink.u32be, undefined, 'presets are internal');
(async () => {
  const server = longlink.createServer({ handlers: { echo: (p) => p } });
  const { port } = await server.listen({ port: 0 });
  const client = await longlink.connect({ port, heartbeat: false });
  try {
    assert.deepEqual(await client.request('echo', { n: 1 }), { n: 1 });
  } finally {
    await client.close();
    await server.close({ graceMs: 100 });
  }
  console.log(JSON.stringify({ exports: Object.keys(longlink).sort(), native: longlink.nativeSocketOptions() }));
})().catch((e) => { console.error(e); process.exit(1); });
`,
    );
    // Node 20.0–20.18 cannot require() an ES module; this flag makes a newer Node behave the same,
    // so a stray ESM file in the CommonJS build's graph fails here.
    const flag = process.allowedNodeEnvironmentFlags.has('--no-experimental-require-module')
      ? ['--no-experimental-require-module']
      : [];
    const r = nodeIn(p.app, [...flag, 'cjs.cjs']);
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout) as { exports: string[]; native: { available: boolean; reason: string } };
    assert.ok(out.exports.includes('RefusedError'));
    if (process.platform === 'linux') assert.equal(out.native.available, true, out.native.reason);
  });

  test("import('longlink') loads the ESM build with the same exports; errors match across both copies", (t) => {
    const p = need(t);
    if (p === undefined) return;
    writeFileSync(
      join(p.app, 'esm.mjs'),
      `
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
const longlink = await import('longlink');
assert.match(import.meta.resolve('longlink'), /dist\\/src\\/index\\.js$/);
const cjs = createRequire(import.meta.url)('longlink');
assert.notEqual(cjs.Connection, longlink.Connection, 'two copies: the dual-package hazard');
assert.deepEqual(Object.keys(cjs).sort(), Object.keys(longlink).sort());
// The Symbol.for brand makes instanceof hold across the copies.
assert.ok(new cjs.ConnectionClosedError('x', 'local-abort') instanceof longlink.LonglinkError);
assert.ok(new longlink.FrameTooLargeError(2, 1) instanceof cjs.FramingError);
assert.ok(!(new cjs.ConnectError('x') instanceof longlink.FramingError));
const server = longlink.createServer({ handlers: { echo: (p) => p } });
const { port } = await server.listen({ port: 0 });
const client = await cjs.connect({ port, heartbeat: false });
try {
  assert.deepEqual(await client.request('echo', [1, 2]), [1, 2]);
} finally {
  await client.close();
  await server.close({ graceMs: 100 });
}
console.log(JSON.stringify({ native: longlink.nativeSocketOptions() }));
`,
    );
    const r = nodeIn(p.app, ['esm.mjs']);
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout) as { native: { available: boolean; reason: string } };
    if (process.platform === 'linux') assert.equal(out.native.available, true, out.native.reason);
  });

  test('TypeScript projects (CommonJS nodenext, CommonJS node10, ESM) type-check against it and run', async (t) => {
    const p = need(t);
    if (p === undefined) return;
    if (!existsSync(TSC)) {
      skipTest(t, `no TypeScript compiler at ${TSC}`);
      return;
    }
    const body = `
import {
  type ClientOptions,
  type CloseInfo,
  type Connection,
  connect,
  createServer,
  LonglinkError,
  parseFraming,
  type Pool,
  RefusedError,
  type Server,
} from 'longlink';

async function main(): Promise<void> {
  const server: Server = createServer({ handlers: { echo: (params) => params } });
  const { port } = await server.listen({ port: 0 });
  const options: ClientOptions = { port, heartbeat: false };
  const client = await connect(options);
  try {
    const answer = await client.request<{ n: number }>('echo', { n: 7 });
    console.log(answer.n, parseFraming('u32be').name, new RefusedError('ERR_X', 'x', 0) instanceof LonglinkError);
  } finally {
    await client.close();
    await server.close({ graceMs: 100 });
  }
}

/** Never called: what the published types must not show. */
export function internalsAreHidden(conn: Connection, pool: Pool<number>, server: Server, info: CloseInfo): void {
  console.log(info.reason);
  // @ts-expect-error internal
  conn.sendPrefixed([]);
  // @ts-expect-error internal
  conn.setHandler(undefined);
  // @ts-expect-error internal
  conn.lastReadAt = 0;
  // @ts-expect-error internal
  pool.rejectWaiters(new Error('x'));
  // @ts-expect-error internal
  server.netServer.close();
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
`;
    const projects = [
      {
        name: 'ts-cjs',
        type: 'commonjs',
        module: 'NodeNext',
        moduleResolution: 'NodeNext',
        run: 'out/index.js',
      },
      {
        name: 'ts-node10',
        type: 'commonjs',
        module: 'CommonJS',
        moduleResolution: 'Node10',
        run: 'out/index.js',
      },
      {
        name: 'ts-esm',
        type: 'module',
        module: 'NodeNext',
        moduleResolution: 'NodeNext',
        run: 'out/index.js',
      },
    ];
    for (const pr of projects) {
      const dir = join(p.app, pr.name);
      mkdirSync(dir, { recursive: true });
      writeFileSync(
        join(dir, 'package.json'),
        JSON.stringify({ name: pr.name, private: true, type: pr.type }),
      );
      writeFileSync(join(dir, 'index.ts'), body);
      writeFileSync(
        join(dir, 'tsconfig.json'),
        JSON.stringify({
          compilerOptions: {
            target: 'ES2022',
            module: pr.module,
            moduleResolution: pr.moduleResolution,
            strict: true,
            exactOptionalPropertyTypes: true,
            skipLibCheck: false,
            esModuleInterop: true,
            typeRoots: [TYPE_ROOTS],
            types: ['node'],
            outDir: 'out',
          },
          files: ['index.ts'],
        }),
      );
    }
    // Two at a time: the machine has two cores and the suite runs beside this.
    const results = await Promise.all(
      projects.map((pr) =>
        run(process.execPath, [TSC, '-p', join(p.app, pr.name)], { cwd: p.app }).then(
          () => '',
          (err: { stdout?: string; stderr?: string }) => `${pr.name}: ${err.stdout ?? ''}${err.stderr ?? ''}`,
        ),
      ),
    );
    assert.deepEqual(
      results.filter((r) => r !== ''),
      [],
      'tsc found no error',
    );
    for (const pr of projects) {
      const r = nodeIn(join(p.app, pr.name), [pr.run]);
      assert.equal(r.status, 0, `${pr.name}: ${r.stderr}`);
      assert.equal(r.stdout.trim(), '7 u32be true', pr.name);
    }
  });
});
