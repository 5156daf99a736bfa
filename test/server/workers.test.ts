/**
 * serveWorkers: N real worker processes on one port, under this test process as their primary.
 * Connections are dealt to every worker, a worker that exits unasked is started again after its
 * backoff (and counted), close() drains them all with GOAWAY and every one exits 0, and a worker
 * module that cannot make a server leaves nothing running. (The CLI's `serve --workers`, with
 * SIGTERM to the primary, is test/cli/workers.test.ts.)
 */

import assert from 'node:assert/strict';
import { once } from 'node:events';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type Client, connect } from '../../src/client/client.js';
import {
  reusePortSupported,
  serveWorkers,
  type WorkerExit,
  type WorkerGroup,
} from '../../src/server/workers.js';

const FIXTURE = new URL('../../../test/fixtures/workers/server.mjs', import.meta.url);
const NO_DEFAULT = fileURLToPath(new URL('../../../test/fixtures/workers/no-default.mjs', import.meta.url));

const groups: WorkerGroup[] = [];
const clients: Client[] = [];
after(() => {
  for (const c of clients) c.destroy();
  for (const g of groups) g.destroy();
});

interface Who {
  pid: number;
  id: number;
  mode: string;
  data: unknown;
}

async function clientsOf(port: number, n: number): Promise<Client[]> {
  const out: Client[] = [];
  // One at a time: the cluster's round-robin deals consecutive connections to consecutive workers.
  for (let i = 0; i < n; i++) {
    const c = await connect({ port, reconnect: { initialDelayMs: 20, maxDelayMs: 200 } });
    clients.push(c);
    out.push(c);
  }
  return out;
}

describe('serveWorkers (cluster)', () => {
  let group: WorkerGroup;
  let cs: Client[];

  test('two workers on one port: connections are dealt to both, each knows its id, the data reaches the factories', async () => {
    group = await serveWorkers({
      module: FIXTURE,
      workers: 2,
      data: { tag: 'blue' },
      graceMs: 5000,
      handleSignals: false,
    });
    groups.push(group);
    assert.equal(group.mode, 'cluster');
    const st = group.stats();
    assert.deepEqual(
      st.workers.map((w) => [w.id, w.state, w.restarts]),
      [
        [1, 'listening', 0],
        [2, 'listening', 0],
      ],
    );
    const pids = st.workers.map((w) => w.pid);
    assert.ok(!pids.includes(process.pid), 'workers are other processes');
    cs = await clientsOf(group.address.port, 8);
    const who = await Promise.all(cs.map((c) => c.request<Who>('whoami')));
    assert.deepEqual(new Set(who.map((w) => w.id)), new Set([1, 2]), 'both workers got connections');
    for (const w of who) {
      assert.equal(w.pid, pids[w.id - 1], 'the pid stats() shows for that id');
      assert.equal(w.mode, 'cluster');
      assert.deepEqual(w.data, { tag: 'blue' });
    }
  });

  test('a worker that exits unasked is started again after its backoff, which grows while it keeps failing; restarts are counted', async () => {
    const exits: WorkerExit[] = [];
    group.on('exit', (e) => exits.push(e));
    for (const round of [1, 2]) {
      // The clients of a worker that died moved to the other: new ones are dealt to both again.
      const fresh = round === 1 ? cs : await clientsOf(group.address.port, 2);
      const who = await Promise.all(fresh.map((c) => c.request<Who>('whoami')));
      const victim = who.find((w) => w.id === 1);
      assert.ok(victim !== undefined, 'a client on worker 1');
      const onVictim = fresh[who.indexOf(victim)] as Client;
      const restarted = once(group, 'restart');
      await onVictim.request('exit', 7).catch(() => {}); // the answer may or may not leave first
      const [info] = (await restarted) as [{ id: number; pid: number; restarts: number }];
      assert.equal(info.id, 1);
      assert.equal(info.restarts, round);
      assert.notEqual(info.pid, victim.pid);
      const e = exits[round - 1] as WorkerExit;
      assert.deepEqual([e.id, e.pid, e.code, e.signal, e.expected], [1, victim.pid, 7, null, false]);
      // ½–1 × 100 ms · 2^(n−1): the second failure in a row waits longer.
      const ceiling = 100 * 2 ** (round - 1);
      assert.ok(
        e.restartInMs !== undefined && e.restartInMs >= ceiling / 2 && e.restartInMs <= ceiling,
        `restart in ${e.restartInMs} ms`,
      );
    }
    assert.equal(group.stats().restarts, 2);
    assert.equal(group.stats().workers[0]?.restarts, 2);
    // The clients of the dead worker reconnected; every client is served.
    const who = await Promise.all(cs.map((c) => c.request<Who>('whoami')));
    assert.equal(who.length, 8);
    for (const c of clients.slice(8)) await c.close();
  });

  test('close(): every worker drains — GOAWAY, the requests in flight answered — and exits 0', async () => {
    // Every client has a request in flight on its worker when the drain starts.
    const inflight = cs.map((c) => c.request('sleep', 400));
    const busy = await Promise.all(cs.map((c) => c.request<Who>('whoami')));
    assert.equal(busy.length, 8);
    const goaways = cs.map((c) => once(c, 'goaway'));
    const report = await group.close();
    const answers = await Promise.allSettled(inflight);
    assert.deepEqual(
      answers.map((a) => a.status),
      cs.map(() => 'fulfilled'),
      'no request lost',
    );
    for (const g of await Promise.all(goaways)) assert.equal(g[0], 'ERR_SHUTTING_DOWN');
    assert.equal(report.killed, 0);
    assert.equal(report.aborted, 0);
    assert.equal(report.unanswered, 0);
    assert.equal(report.connections, 8, 'each worker reported its connections');
    assert.deepEqual(
      report.workers.map((w) => [w.id, w.exitCode, w.signal]),
      [
        [1, 0, null],
        [2, 0, null],
      ],
    );
    assert.deepEqual(
      group.stats().workers.map((w) => w.state),
      ['stopped', 'stopped'],
    );
    for (const c of cs) c.destroy();
  });

  test('a worker module without a default export: serveWorkers rejects with the reason, nothing keeps running', async () => {
    await assert.rejects(
      serveWorkers({ module: NO_DEFAULT, workers: 2, handleSignals: false, restart: false }),
      (err: Error & { code?: string }) => {
        assert.equal(err.code, 'ERR_WORKER_START');
        assert.match(err.message, /worker 1 failed to start: .*no default export/);
        return true;
      },
    );
  });

  test('bad options are refused where they are written', async () => {
    for (const bad of [
      { module: '' },
      { module: FIXTURE, workers: 0 },
      { module: FIXTURE, workers: 1.5 },
      { module: FIXTURE, mode: 'threads' },
      { module: FIXTURE, graceMs: -1 },
    ]) {
      await assert.rejects(serveWorkers(bad as never), { code: 'ERR_INVALID_ARGUMENT' }, JSON.stringify(bad));
    }
  });
});

describe('serveWorkers (reuse-port)', () => {
  test('where listen({ reusePort }) reaches the kernel, every worker listens itself on the one port; elsewhere an UnsupportedError says what it needs', async () => {
    const supported = await reusePortSupported();
    console.log(`# reusePort on node ${process.version}: ${supported ? 'supported' : 'not supported'}`);
    if (!supported) {
      await assert.rejects(
        serveWorkers({ module: FIXTURE, workers: 2, mode: 'reuse-port', handleSignals: false }),
        (err: Error & { code?: string }) => {
          assert.equal(err.code, 'ERR_UNSUPPORTED');
          assert.match(err.message, /Node >= 22\.12/);
          return true;
        },
      );
      return;
    }
    const group = await serveWorkers({
      module: FIXTURE,
      workers: 2,
      mode: 'reuse-port',
      handleSignals: false,
    });
    groups.push(group);
    assert.equal(group.mode, 'reuse-port');
    // The kernel picks by a hash of the 4-tuple: enough connections reach both.
    const cs = await clientsOf(group.address.port, 24);
    const who = await Promise.all(cs.map((c) => c.request<Who>('whoami')));
    assert.deepEqual(new Set(who.map((w) => w.id)), new Set([1, 2]));
    assert.ok(who.every((w) => w.mode === 'reuse-port'));
    const report = await group.close();
    assert.deepEqual(
      report.workers.map((w) => w.exitCode),
      [0, 0],
    );
    for (const c of cs) c.destroy();
  });
});
