#!/usr/bin/env node
// Enforces the architecture in STYLE.md: dependencies point one way,
//   errors, util ← codec ← protocol, sys ← connection ← session ← client / pool / server ← observe ← cli
// observe/ (metrics, traces, the admin endpoint) sits above the servers, clients and pools it
// reads (their stats() and connections) and below the CLI that serves it (serve --metrics-port, top).
// and the import graph of src/ has no cycle. A madge-style check without the dependency tree.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';

const root = resolve(dirname(new URL(import.meta.url).pathname), '..', 'src');
// Lower number = lower layer. A file may import only from its own layer or below.
const LAYERS = {
  'errors.ts': 0,
  util: 0,
  codec: 1,
  protocol: 2,
  sys: 2,
  connection: 3,
  session: 4,
  client: 5,
  server: 5,
  pool: 5,
  observe: 6,
  cli: 7,
  'index.ts': 8,
  'internal.ts': 8,
};

function layerOf(file) {
  const top = relative(root, file).split('/')[0];
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
for (const file of files) {
  const text = readFileSync(file, 'utf8');
  const deps = [];
  for (const m of text.matchAll(importRe)) {
    const target = resolve(dirname(file), m[1].replace(/\.js$/, '.ts').replace(/\.cjs$/, '.cts'));
    deps.push(target);
    if (layerOf(target) > layerOf(file)) {
      problems.push(`${relative(root, file)} imports ${relative(root, target)} from a higher layer`);
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

if (problems.length > 0) {
  for (const p of problems) console.error(`check-layers: ${p}`);
  process.exit(1);
}
console.log(`check-layers: ${files.length} files, layers respected, no import cycles`);
