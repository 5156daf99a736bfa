#!/usr/bin/env node
// Runs every compiled test file with node's built-in runner. Node 20's `--test` does not expand
// globs itself, so the file list is gathered here; the runner's own summary is the closing output.
//
// Before a full run, the system tools the tests need are made sure of, once, by
// scripts/ensure-test-tools.sh: its lines are shown as they come (each install is announced, with
// its reason, before it starts), and its verdict goes to the test files in LONGLINK_TOOLS so none
// of them runs the installer again. LONGLINK_NO_INSTALL=1: nothing is installed; the tests that
// need a missing tool skip and say why (fail, under LONGLINK_REQUIRE_FAULTS=1).
//
// Usage: node scripts/run-tests.mjs [substring ...]   (only the files whose path contains one;
// then each file that needs a tool runs the installer for that tool itself)
import { spawn, spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

function walk(dir, out = []) {
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p, out);
    else if (p.endsWith('.test.js')) out.push(p);
  }
  return out;
}

/** Runs the installer, echoing its lines as they come; resolves with { tool: its line }. */
async function ensureTestTools() {
  console.log(
    `test tools: scripts/ensure-test-tools.sh${process.env.LONGLINK_NO_INSTALL === '1' ? ' (LONGLINK_NO_INSTALL=1: install nothing)' : ' (LONGLINK_NO_INSTALL=1 to install nothing)'}`,
  );
  const child = spawn('bash', ['scripts/ensure-test-tools.sh'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const verdict = {};
  for await (const line of createInterface({ input: child.stdout })) {
    console.log(`test tools: ${line}`);
    const m = /^(ok|installed|missing) ([^ :]+)/.exec(line);
    if (m) verdict[m[2]] = line;
  }
  await new Promise((resolve) => (child.exitCode === null ? child.once('exit', resolve) : resolve()));
  return verdict;
}

const only = process.argv.slice(2);
const files = walk('dist/test').filter((f) => only.length === 0 || only.some((o) => f.includes(o)));
if (files.length === 0) {
  console.error('run-tests: no test files found under dist/test (did the build run?)');
  process.exit(1);
}
const env = { ...process.env };
if (only.length === 0) env.LONGLINK_TOOLS = JSON.stringify(await ensureTestTools());
// The per-file timeout is a guard against a hang, not a time limit: sized for a loaded 2-core
// machine (load 40-60: the longest files, model and close-experiments, take 2-4 times their
// quiet 20-40 s), while a whole run stays well under 10 minutes.
const FILE_TIMEOUT_MS = 300_000;
const r = spawnSync(
  process.execPath,
  ['--test', '--test-reporter=spec', '--test-concurrency=2', `--test-timeout=${FILE_TIMEOUT_MS}`, ...files],
  { stdio: 'inherit', env },
);
process.exit(r.status ?? 1);
