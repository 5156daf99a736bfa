/**
 * Hostile clients against a server in its own process: every attack that once took the server
 * down or exhausted it (the table in the edge issue), and the ones found beside them. Each test
 * checks the same four things: the process stays up (an unhandled rejection would kill it), its
 * memory stays under a stated bound, a legitimate client is still served, and the offender is
 * closed with a typed reason.
 *
 * Timeouts are shortened through the server's options (frameTimeoutMs: 1 s instead of 30 s …) so
 * the tests wait seconds, not minutes; the defaults themselves are pinned in limits.test.ts.
 */

import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { type Client, connect } from '../../src/client/client.js';
import { RemoteError } from '../../src/protocol/errors.js';
import { RefusedError } from '../../src/session/client-session.js';
import type { Fixture } from '../faults/harness.js';
import { waitFor } from '../helpers.js';
import {
  disconnects,
  helloFrame,
  type RawPeer,
  rawConnect,
  requestFrame,
  rssOf,
  startEdgeServer,
} from './edge-harness.js';

const MiB = 1024 * 1024;
const fixtures: Fixture[] = [];
const peers: RawPeer[] = [];
const clients: Client[] = [];
after(async () => {
  for (const p of peers) p.destroy();
  for (const c of clients) c.destroy();
  for (const f of fixtures) f.kill('SIGKILL');
});

async function server(options: object) {
  const s = await startEdgeServer(options);
  fixtures.push(s.fixture);
  return s;
}

async function raw(port: number, localAddress?: string): Promise<RawPeer> {
  const p = await rawConnect(port, localAddress);
  peers.push(p);
  return p;
}

/** A legitimate client gets an answer: the server is up and serving. */
async function stillServes(port: number): Promise<void> {
  const c = await connect({ port, reconnect: false, connectTimeoutMs: 10_000 });
  clients.push(c);
  assert.deepEqual(await c.request('echo', { ok: 1 }, { timeoutMs: 10_000 }), { ok: 1 });
  await c.close({ graceMs: 0 });
}

function alive(f: Fixture): void {
  assert.equal(f.proc.exitCode, null, `server exited: ${f.stderr.join('')}`);
}

describe('hostile clients (server in its own process)', () => {
  test('regression: 300 HELLOs with 1 MiB names, never authenticated, cost nothing (was: heap out of memory)', async () => {
    const { fixture, port, pid } = await server({ authenticate: 'token:secret' });
    const before = rssOf(pid);
    const attackers: RawPeer[] = [];
    for (let i = 0; i < 300; i++) {
      const p = await raw(port);
      // A HELLO whose name alone is 1 MiB: refused at its header, before any of it is buffered.
      p.write(helloFrame({ name: `${i}-${'n'.repeat(MiB)}` }));
      attackers.push(p);
    }
    for (const p of attackers) await p.closed;
    // Each is told why, unless the server's RST (it closes with the rest of the HELLO unread)
    // overtook the ERROR in the attacker's receive queue: the reason is on the server's side too.
    for (const p of attackers) {
      const m = p.messages();
      assert.ok(m.length === 0 || (m.length === 1 && m[0] === 'ERROR:ERR_FRAME_TOO_LARGE'), String(m));
    }
    alive(fixture);
    const grown = rssOf(pid) - before;
    assert.ok(grown < 64 * MiB, `server RSS grew ${(grown / MiB).toFixed(1)} MiB`);
    await waitFor(
      () =>
        fixture.events.filter((e) => e.ev === 'disconnect' && e.code === 'ERR_FRAME_TOO_LARGE').length >= 300,
      10_000,
      'ERR_FRAME_TOO_LARGE closes',
    );
    const c = await connect({ port, reconnect: false, credential: 'secret' });
    clients.push(c);
    assert.deepEqual(await c.request('echo', 1), 1);
  });

  test('regression: unique names within the limits are not kept (2,000 named HELLOs, RSS flat)', async () => {
    const { fixture, port, pid } = await server({});
    const before = rssOf(pid);
    for (let batch = 0; batch < 20; batch++) {
      const ps = await Promise.all(Array.from({ length: 100 }, () => raw(port)));
      for (const [i, p] of ps.entries()) p.write(helloFrame({ name: `${batch}-${i}-${'n'.repeat(240)}` }));
      await waitFor(() => ps.every((p) => p.messages().includes('HELLO')), 10_000, 'HELLO answers');
      for (const p of ps) p.destroy();
      await Promise.all(ps.map((p) => p.closed));
    }
    await waitFor(() => fixture.find('disconnect').length >= 2000, 20_000, 'all closed');
    alive(fixture);
    assert.ok(rssOf(pid) - before < 64 * MiB, 'nothing per name is kept after its connection');
  });

  test('regression: a client that sends 64 KB echo requests and never reads is paused, then reset as a slow consumer', async () => {
    const { fixture, port, pid } = await server({
      options: { heartbeat: { intervalMs: 500, timeoutMs: 1500 } },
    });
    const before = rssOf(pid);
    const p = await raw(port);
    p.socket.pause(); // never reads
    p.write(helloFrame({ heartbeatIntervalMs: 500, heartbeatTimeoutMs: 1500 }));
    p.socket.resume();
    await waitFor(() => p.messages().includes('HELLO'), 5000, 'HELLO answer');
    p.socket.pause();
    const payload = 'x'.repeat(64 * 1024);
    let sent = 0;
    // Write until the kernel stops taking bytes (the server stopped reading): bounded by the loop.
    for (let id = 1; id <= 4000 && !p.socket.destroyed; id++) {
      sent += 64 * 1024;
      if (!p.write(requestFrame(id, 'echo', payload))) {
        // The server's reset ends this at once; else the kernel stopped taking bytes once no
        // drain came for 3 s (a window a loaded machine does not close by being slow).
        let timer: NodeJS.Timeout | undefined;
        const drained = await Promise.race([
          new Promise<boolean>((r) => p.socket.once('drain', () => r(true))),
          p.closed.then(() => false),
          new Promise<boolean>((r) => {
            timer = setTimeout(() => r(false), 3000);
          }),
        ]);
        clearTimeout(timer);
        if (!drained) break;
      }
    }
    // The server stopped reading long before 4,000 requests (256 MiB): backpressure, not growth.
    assert.ok(sent < 200 * MiB, `the server kept reading: ${(sent / MiB).toFixed(0)} MiB taken`);
    const peak = rssOf(pid) - before;
    assert.ok(peak < 128 * MiB, `server RSS grew ${(peak / MiB).toFixed(1)} MiB`);
    await fixture.next(
      (e) => e.ev === 'disconnect' && e.reason === 'slow-consumer',
      15_000,
      'slow-consumer close',
    );
    alive(fixture);
    await stillServes(port);
  });

  test('regression: legacy async handler fed 5,000 nested [ or an answer over the limit closes that connection, not the process', async () => {
    for (const handler of ['asyncEcho', 'asyncBig'] as const) {
      const { fixture, port } = await server({
        legacy: { framing: 'ascii:20', json: true, handler },
        options: { maxFrameLength: 64 * 1024 },
      });
      const ascii = (body: string) =>
        Buffer.concat([Buffer.from(String(body.length).padStart(20, '0')), Buffer.from(body)]);
      const bad = [
        '['.repeat(5000), // not JSON
        `${'['.repeat(5000)}${']'.repeat(5000)}`, // JSON, deeply nested
        JSON.stringify({ ok: 1 }),
      ];
      for (const body of bad) {
        const p = await raw(port);
        p.write(ascii(body));
        p.write(ascii(body)); // a second frame queued behind the first
        if (body.startsWith('{') && handler === 'asyncEcho') {
          await waitFor(() => p.received.length >= 2 * (20 + body.length), 5000, 'two echoes');
          p.destroy();
        }
        // Otherwise closed: not JSON (protocol-error); nested 5,000 deep, whose answer overflows
        // JSON.stringify's stack (handler-error; this was the unhandled rejection); or too large.
        await p.closed;
      }
      alive(fixture);
      if (handler === 'asyncBig') {
        await fixture.next(
          (e) => e.ev === 'disconnect' && e.reason === 'handler-error',
          10_000,
          'handler-error close',
        );
        await fixture.next((e) => e.ev === 'handlerError', 10_000, 'handlerError event');
      } else {
        await fixture.next(
          (e) => e.ev === 'disconnect' && e.reason === 'protocol-error',
          10_000,
          'not-JSON close',
        );
      }
      fixture.kill('SIGTERM');
      assert.equal(await fixture.exited, 0, `server exited badly: ${fixture.stderr.join('')}`);
    }
  });

  test('regression: 1,000 connections that send half a legacy header and stall are closed at frameTimeoutMs (was: never)', async () => {
    const { fixture, port } = await server({
      legacy: { framing: 'ascii:20', json: true, handler: 'echo' },
      options: { frameTimeoutMs: 1000 },
    });
    const ps = await Promise.all(Array.from({ length: 1000 }, () => raw(port)));
    for (const p of ps) p.write('0000000000'); // 10 of the 20 digits
    await waitFor(() => disconnects(fixture, 'frame-timeout') === 1000, 30_000, '1,000 frame-timeout closes');
    await Promise.all(ps.map((p) => p.closed));
    alive(fixture);
  });

  test('regression: 300 ready connections that announce 16 MiB and trickle bytes hold what arrived, and are closed at frameTimeoutMs', async () => {
    const { fixture, port, pid } = await server({ options: { frameTimeoutMs: 1500 } });
    const before = rssOf(pid);
    const ps = await Promise.all(Array.from({ length: 300 }, () => raw(port)));
    for (const p of ps) p.write(helloFrame({}));
    await waitFor(() => ps.every((p) => p.messages().includes('HELLO')), 10_000, 'HELLO answers');
    const head = Buffer.alloc(4);
    head.writeUInt32BE(16 * MiB, 0);
    for (const p of ps) p.write(Buffer.concat([head, Buffer.from([2, 0])]));
    const trickle = setInterval(() => {
      for (const p of ps) p.write(Buffer.from('x'));
    }, 200);
    try {
      await waitFor(() => disconnects(fixture, 'frame-timeout') === 300, 20_000, '300 frame-timeout closes');
    } finally {
      clearInterval(trickle);
    }
    // Announced: 300 × 16 MiB = 4.7 GiB. Held: what arrived, in buffers that start at 64 KiB.
    const grown = rssOf(pid) - before;
    assert.ok(grown < 96 * MiB, `server RSS grew ${(grown / MiB).toFixed(1)} MiB`);
    alive(fixture);
    await stillServes(port);
  });

  test('regression: with maxConnectionsPerAddress, 100 trickling connections from one address do not lock others out', async () => {
    const { fixture, port } = await server({
      options: { maxConnections: 100, maxConnectionsPerAddress: 50 },
    });
    const attackers = await Promise.all(Array.from({ length: 100 }, () => raw(port, '127.0.0.2')));
    for (const p of attackers) p.write(helloFrame({}));
    // Half are served; the other half are told why and closed.
    await waitFor(
      () => attackers.filter((p) => p.messages().includes('GOAWAY:ERR_TOO_MANY_CONNECTIONS')).length === 50,
      10_000,
      '50 refusals',
    );
    await fixture.next(
      (e) => e.ev === 'refused' && e.reason === 'max-connections-per-address',
      5000,
      'refusal',
    );
    await stillServes(port); // from 127.0.0.1
    alive(fixture);
  });

  test('regression: an authenticate that never settles cannot hold the slot past helloTimeoutMs; a second HELLO is ERR_PROTOCOL', async () => {
    const { fixture, port } = await server({ authenticate: 'never', options: { helloTimeoutMs: 800 } });
    const p = await raw(port);
    p.write(helloFrame({ credential: 'x' }));
    await p.closed;
    assert.deepEqual(p.messages(), ['ERROR:ERR_HELLO_REQUIRED']);
    const q = await raw(port);
    q.write(helloFrame({ credential: 'x' }));
    q.write(helloFrame({ credential: 'y' }));
    await q.closed;
    assert.deepEqual(q.messages(), ['ERROR:ERR_PROTOCOL']);
    alive(fixture);
  });

  test('handler failures of every kind are answered once with a typed ERROR and reported; none kills the process', async () => {
    const { fixture, port } = await server({ options: { maxFrameLength: 64 * 1024, handlerTimeoutMs: 300 } });
    const c = await connect({ port, reconnect: false });
    clients.push(c);
    const code = (p: Promise<unknown>) =>
      p.then(
        () => 'ok',
        (e: unknown) => (e instanceof RemoteError ? e.code : String(e)),
      );
    assert.equal(await code(c.request('throws')), 'ERR_HANDLER');
    assert.equal(await code(c.request('rejects')), 'ERR_HANDLER');
    assert.equal(await code(c.request('cyclic')), 'ERR_HANDLER');
    assert.equal(await code(c.request('big', 100 * 1024)), 'ERR_FRAME_TOO_LARGE');
    assert.equal(await code(c.request('never')), 'ERR_TIMEOUT');
    assert.equal(await c.request('nothing'), undefined, 'undefined round-trips as no payload');
    assert.deepEqual(await c.request('echo', 'still here'), 'still here');
    await waitFor(() => fixture.find('handlerError').length >= 5, 5000, 'five handlerError events');
    c.notify('throw', null); // a notify listener that throws is reported, not fatal
    await fixture.next((e) => e.ev === 'notify' && e.topic === 'throw', 5000, 'notify received');
    await waitFor(() => fixture.find('handlerError').length >= 6, 5000, 'the listener failure reported');
    alive(fixture);
  });

  test('the memory budget sheds the largest holders first (reason overload) instead of growing', async () => {
    const { fixture, port, pid } = await server({ options: { memoryBudget: 16 * MiB, frameTimeoutMs: 0 } });
    const before = rssOf(pid);
    const ps = await Promise.all(Array.from({ length: 8 }, () => raw(port)));
    for (const p of ps) p.write(helloFrame({}));
    await waitFor(() => ps.every((p) => p.messages().includes('HELLO')), 10_000, 'HELLO answers');
    // Each announces 8 MiB and sends 3 MiB of it: 24 MiB held in all, over the 16 MiB budget.
    const head = Buffer.alloc(4);
    head.writeUInt32BE(8 * MiB, 0);
    const chunk = Buffer.alloc(3 * MiB, 0x61);
    for (const p of ps) p.write(Buffer.concat([head, Buffer.from([2, 0]), chunk]));
    await waitFor(() => disconnects(fixture, 'overload') >= 3, 15_000, 'overload closes');
    await stillServes(port);
    const stats = (await (async () => {
      const c = await connect({ port, reconnect: false });
      clients.push(c);
      return c.request('stats');
    })()) as { memory: { usedBytes: number; shed: number; limitBytes: number } };
    assert.ok(stats.memory.shed >= 3);
    assert.ok(stats.memory.usedBytes <= stats.memory.limitBytes);
    assert.ok(rssOf(pid) - before < 128 * MiB);
    alive(fixture);
  });

  test('per-connection request rate: the excess gets ERR_TOO_MANY_REQUESTS with a retry hint, the rest are served', async () => {
    const { fixture, port } = await server({ options: { requestRate: { perSecond: 10, burst: 10 } } });
    const c = await connect({ port, reconnect: false });
    clients.push(c);
    const t0 = performance.now();
    const results = await Promise.allSettled(Array.from({ length: 50 }, (_, i) => c.request('echo', i)));
    const seconds = (performance.now() - t0) / 1000;
    const ok = results.filter((r) => r.status === 'fulfilled').length;
    const limited = results.filter(
      (r) =>
        r.status === 'rejected' &&
        r.reason instanceof RemoteError &&
        r.reason.code === 'ERR_TOO_MANY_REQUESTS',
    );
    // The burst of 10, plus what the bucket refilled (10 a second) while the 50 were handled: a
    // loaded machine takes longer and earns more, so the bound is the time it measured.
    assert.ok(ok >= 10 && ok <= 10 + Math.ceil(10 * seconds) + 1, `${ok} served in ${seconds.toFixed(2)} s`);
    assert.equal(ok + limited.length, 50);
    const first = (limited[0] as PromiseRejectedResult).reason as RemoteError;
    assert.ok((first.details as { retryAfterMs: number }).retryAfterMs > 0);
    alive(fixture);
  });

  test('per-address connection rate: a burst past it is refused with a jittered retry hint', async () => {
    const { fixture, port } = await server({
      options: { connectionRate: { perSecond: 5, burst: 5 }, retryAfterMs: 200 },
    });
    const outcomes = await Promise.allSettled(
      Array.from({ length: 12 }, () => connect({ port, reconnect: false }).then((c) => clients.push(c))),
    );
    const refused = outcomes.filter((o) => o.status === 'rejected' && o.reason instanceof RefusedError);
    assert.ok(refused.length >= 6, `${refused.length} refused`);
    for (const r of refused)
      assert.ok(((r as PromiseRejectedResult).reason as RefusedError).retryAfterMs >= 200);
    await fixture.next((e) => e.ev === 'refused' && e.reason === 'connection-rate', 5000, 'refusal event');
    alive(fixture);
  });
});
