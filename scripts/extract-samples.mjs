#!/usr/bin/env node
// Every ```ts sample in README.md and docs/*.md, compiled against the package's published types
// and run. Samples import from 'longlink', which resolves to this package itself (a package may
// import its own name through its `exports` map), so they compile against dist/src/*.d.ts — the
// stripped types users get — and run against dist/src: build first (npm run samples does).
//
// A comment on the line above a fence says what to do with it:
//   (none)                          compile and run; it must exit 0 by itself within RUN_TIMEOUT_MS
//   <!-- sample: compile-only -->   compile only: it needs a peer that is not there (an address of
//                                   another machine, a database), or it is a list of alternatives
//   <!-- sample: skip -->           neither: a fragment that cannot compile (keep these rare)
// Compile-only samples may use the names PRELUDE declares (a db, a socket, a handle() …).
//
//   node scripts/extract-samples.mjs [--extract-only] [name-substring…]
//
// Files go to .tmp/samples/ (gitignored): <doc>-<line>.ts, the prelude, a tsconfig, and out/.
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { basename, dirname, join, relative, resolve } from 'node:path';

const ROOT = resolve(dirname(new URL(import.meta.url).pathname), '..');
const OUT = join(ROOT, '.tmp', 'samples');
const RUN_TIMEOUT_MS = 15_000;
const PARALLEL = 2;

/** Names that compile-only fragments use without defining them: declarations, no values. */
const PRELUDE = `// Declarations for compile-only doc samples (scripts/extract-samples.mjs). Nothing here exists at run time.
declare const conn: import('longlink').Connection;
declare const frame: Buffer;
declare const payload: Buffer;
declare const socket: import('node:net').Socket;
declare function handle(message: unknown): void;
declare function retryElsewhere(): void;
declare const log: { info(fields: object, message: string): void };
declare class Db {
  static connect(options: { signal: AbortSignal }): Promise<Db>;
  readonly closed: boolean;
  readonly inTransaction: boolean;
  close(): Promise<void>;
  ping(): Promise<void>;
  query(sql: string): Promise<unknown[]>;
}
`;

const args = process.argv.slice(2);
const extractOnly = args.includes('--extract-only');
const filters = args.filter((a) => !a.startsWith('--'));

/** The fenced TypeScript blocks of one markdown file, with the mode its marker comment gives. */
function samplesOf(file) {
  const lines = readFileSync(file, 'utf8').split('\n');
  const out = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^(\s*)```(ts|typescript)\s*$/.exec(lines[i]);
    if (open === null) continue;
    const start = i;
    const body = [];
    for (i++; i < lines.length && !/^\s*```\s*$/.test(lines[i]); i++)
      body.push(lines[i].slice(open[1].length));
    let prev = start - 1;
    while (prev >= 0 && lines[prev].trim() === '') prev--;
    const marker = prev >= 0 ? /^<!--\s*sample:\s*([\w-]+)\s*-->$/.exec(lines[prev].trim()) : null;
    const mode = marker === null ? 'run' : marker[1];
    if (!['run', 'compile-only', 'skip'].includes(mode)) {
      throw new Error(`${relative(ROOT, file)}:${prev + 1}: unknown sample marker '${mode}'`);
    }
    const stem = relative(ROOT, file).replace(/\.md$/, '').replace(/[/\\]/g, '-');
    out.push({
      name: `${stem}-${start + 1}`,
      where: `${relative(ROOT, file)}:${start + 1}`,
      mode,
      code: body.join('\n'),
    });
  }
  return out;
}

const docs = [
  join(ROOT, 'README.md'),
  ...readdirSync(join(ROOT, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .sort()
    .map((f) => join(ROOT, 'docs', f)),
];
const samples = docs
  .flatMap(samplesOf)
  .filter((s) => filters.length === 0 || filters.some((f) => s.name.includes(f)));
const active = samples.filter((s) => s.mode !== 'skip');

rmSync(OUT, { recursive: true, force: true });
mkdirSync(OUT, { recursive: true });
writeFileSync(join(OUT, 'prelude.d.ts'), PRELUDE);
for (const s of active) {
  // `export {}` keeps a sample without imports a module: each has its own scope, and top-level await.
  writeFileSync(join(OUT, `${s.name}.ts`), `${s.code}\nexport {};\n`);
}
writeFileSync(
  join(OUT, 'tsconfig.json'),
  `${JSON.stringify(
    {
      compilerOptions: {
        target: 'ES2022',
        module: 'NodeNext',
        moduleResolution: 'NodeNext',
        lib: ['ES2023'],
        strict: true,
        exactOptionalPropertyTypes: true,
        skipLibCheck: true,
        types: ['node'],
        typeRoots: [join(ROOT, 'node_modules', '@types')],
        rootDir: '.',
        outDir: 'out',
      },
      include: ['*.ts'],
    },
    null,
    2,
  )}\n`,
);
console.log(
  `samples: ${samples.length} in ${docs.length} files (${samples.filter((s) => s.mode === 'run').length} to run, ` +
    `${samples.filter((s) => s.mode === 'compile-only').length} compile-only, ${samples.filter((s) => s.mode === 'skip').length} skipped) -> ${relative(ROOT, OUT)}/`,
);
if (extractOnly) process.exit(0);

// One tsc program for all of them: errors name the sample file, which names the doc and line.
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
const compiled = spawnSync(process.execPath, [tsc, '-p', OUT], { cwd: ROOT, encoding: 'utf8' });
if (compiled.status !== 0) {
  process.stdout.write(compiled.stdout);
  process.stderr.write(compiled.stderr);
  console.error('\nsamples: tsc failed (the file name is the doc and the line of its fence)');
  process.exit(1);
}
console.log(`samples: ${active.length} compiled`);

function runOne(s) {
  return new Promise((done) => {
    const started = Date.now();
    const child = spawn(process.execPath, [join(OUT, 'out', `${s.name}.js`)], {
      cwd: OUT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (d) => {
      output += d;
    });
    child.stderr.on('data', (d) => {
      output += d;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), RUN_TIMEOUT_MS);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const ms = Date.now() - started;
      const ok = code === 0;
      const why =
        signal === 'SIGKILL' ? `did not exit within ${RUN_TIMEOUT_MS} ms` : `exit ${code ?? signal}`;
      console.log(
        `${ok ? 'ok  ' : 'FAIL'} ${s.where} (${basename(s.name)}.ts, ${ms} ms)${ok ? '' : `: ${why}`}`,
      );
      if (!ok) console.log(output.replace(/^/gm, '     | '));
      done(ok);
    });
  });
}

const queue = samples.filter((s) => s.mode === 'run');
const results = [];
await Promise.all(
  Array.from({ length: PARALLEL }, async () => {
    for (let s = queue.shift(); s !== undefined; s = queue.shift()) results.push(await runOne(s));
  }),
);
const failed = results.filter((ok) => !ok).length;
console.log(`samples: ${results.length - failed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
