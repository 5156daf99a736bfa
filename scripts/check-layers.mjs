#!/usr/bin/env node
// Enforces the architecture in STYLE.md: dependencies point one way,
//   errors ← util ← codec ← protocol, sys ← connection ← session ← client / pool / server ← observe ← cli
// observe/ (metrics, traces, the admin endpoint) sits above the servers, clients and pools it
// reads (their stats() and connections) and below the CLI that serves it (serve --metrics-port, top).
// broker/ (the Redis adapter) is a server-side plugin beside it: it implements the Broker contract
// of server/broker.ts and loads its client library as an optional peer, as observe/ does.
// and the import graph of src/ has no cycle. A madge-style check without the dependency tree.
//
// Units on one layer are siblings and do not import each other: client, pool and server all
// build on session (a pool pools sessions, not Clients), protocol and sys on what is below.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';

const root = resolve(dirname(new URL(import.meta.url).pathname), '..', 'src');
// Lower number = lower layer. A file may import from its own unit (top-level file or folder) or
// from a lower layer; never from a higher one, nor from a sibling unit on its own layer.
const LAYERS = {
  'errors.ts': 0,
  util: 1,
  codec: 2,
  protocol: 3,
  sys: 3,
  connection: 4,
  session: 5,
  client: 6,
  server: 6,
  pool: 6,
  observe: 7,
  broker: 7,
  cli: 8,
  'index.ts': 9,
  'internal.ts': 9,
};

function unitOf(file) {
  return relative(root, file).split('/')[0];
}

function layerOf(file) {
  const top = unitOf(file);
  const layer = LAYERS[top];
  if (layer === undefined) throw new Error(`check-layers: ${relative(root, file)} is in no known layer`);
  return layer;
}

function walk(dir, out = []) {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p, out);
    else if (p.endsWith('.ts') || p.endsWith('.cts')) out.push(p);
  }
  return out;
}

const files = walk(root);
const graph = new Map();
const problems = [];
const importRe = /(?:^|\n)\s*(?:import|export)\s[^;]*?from\s+'(\.[^']+)'/g;
// STYLE: a file does one job; one over MAX_LINES says in its header comment why it is long (the
// note names its size in lines: "Why it stays near 900 lines: …").
const MAX_LINES = 600;
for (const file of files) {
  const text = readFileSync(file, 'utf8');
  const lines = text.split('\n').length;
  if (lines > MAX_LINES) {
    const header = /^\/\*\*[\s\S]*?\*\//.exec(text)?.[0] ?? '';
    if (!/\blines\b/.test(header)) {
      problems.push(
        `${relative(root, file)} has ${lines} lines: split it by job, or say in its header comment why it is long`,
      );
    }
  }
  const deps = [];
  for (const m of text.matchAll(importRe)) {
    const target = resolve(dirname(file), m[1].replace(/\.js$/, '.ts').replace(/\.cjs$/, '.cts'));
    deps.push(target);
    if (layerOf(target) > layerOf(file)) {
      problems.push(`${relative(root, file)} imports ${relative(root, target)} from a higher layer`);
    } else if (layerOf(target) === layerOf(file) && unitOf(target) !== unitOf(file)) {
      problems.push(
        `${relative(root, file)} imports ${relative(root, target)} from a sibling on its own layer`,
      );
    }
  }
  graph.set(file, deps);
}

// Cycle detection (iterative DFS colouring).
const colour = new Map();
function visit(start) {
  const stack = [[start, 0]];
  const path = [start];
  colour.set(start, 1);
  while (stack.length > 0) {
    const top = stack[stack.length - 1];
    const deps = graph.get(top[0]) ?? [];
    if (top[1] < deps.length) {
      const next = deps[top[1]++];
      const c = colour.get(next) ?? 0;
      if (c === 1) {
        const cycle = path.slice(path.indexOf(next)).concat(next);
        problems.push(`import cycle: ${cycle.map((f) => relative(root, f)).join(' -> ')}`);
      } else if (c === 0 && graph.has(next)) {
        colour.set(next, 1);
        stack.push([next, 0]);
        path.push(next);
      }
    } else {
      colour.set(top[0], 2);
      stack.pop();
      path.pop();
    }
  }
}
for (const f of files) if ((colour.get(f) ?? 0) === 0) visit(f);

// examples/ are what a user copies: they import the package's public entry ('longlink'), node:
// built-ins and files of their own example, nothing else (not 'longlink/internal', not ../src).
const examplesRoot = resolve(root, '..', 'examples');
const anyImportRe = /(?:^|\n)\s*(?:import|export)\s[^;]*?from\s+'([^']+)'/g;
let exampleFiles = 0;
for (const file of walkIfExists(examplesRoot)) {
  exampleFiles++;
  const text = readFileSync(file, 'utf8');
  for (const m of text.matchAll(anyImportRe)) {
    const spec = m[1];
    if (spec === 'longlink' || spec.startsWith('node:')) continue;
    const own =
      spec.startsWith('./') && !relative(dirname(file), resolve(dirname(file), spec)).startsWith('..');
    if (!own) {
      problems.push(
        `examples/${relative(examplesRoot, file)} imports '${spec}': examples import 'longlink', node: and their own files`,
      );
    }
  }
}

function walkIfExists(dir) {
  try {
    return walk(dir);
  } catch {
    return [];
  }
}

if (problems.length > 0) {
  for (const p of problems) console.error(`check-layers: ${p}`);
  process.exit(1);
}
console.log(
  `check-layers: ${files.length} files, layers respected, no import cycles; ${exampleFiles} example files import only 'longlink'`,
);
