/**
 * The Redis broker against a real redis-server (started here, no persistence): servers in this
 * process, each with its own redisBroker, clients on loopback. Exact delivery across servers,
 * history and resume, gaps from a trimmed stream, counts and identities across servers, and the
 * outages: a hung Redis (SIGSTOP), a dead one (SIGKILL) and its return, empty.
 * Server processes and haproxy: nodes.test.ts.
 */

import assert from 'node:assert/strict';
import { once } from 'node:events';
import { after, before, describe, test } from 'node:test';
import { redisBroker } from '../../src/broker/redis.js';
import { type Client, connect, type RoomGap } from '../../src/client/client.js';
import { BrokerUnavailableError, MissingDependencyError } from '../../src/errors.js';
import type { HistoryRetention } from '../../src/server/broker.js';
import type { ServerOptions } from '../../src/server/options.js';
import { createServer, type Server } from '../../src/server/server.js';
import { hiddenPeers } from '../../src/sys/peer.js';
import { waitFor } from '../helpers.js';
import { type RunningRedis, redisCommand, redisUnavailable, startRedis } from './redis-harness.js';

const skip = redisUnavailable();
let redis: RunningRedis;
const cleanup: Array<() => Promise<unknown> | unknown> = [];

before(async () => {
  if (skip === undefined) redis = await startRedis();
});
after(async () => {
  for (const c of cleanup.reverse()) await c();
  await redis?.stop();
});

let prefixes = 0;
/** A server on its own redisBroker; every test uses its own key prefix. */
async function node(
  prefix: string,
  history?: HistoryRetention,
  options: Partial<ServerOptions> = {},
): Promise<{ server: Server; port: number }> {
  const broker = await redisBroker({
    url: redis.url,
    prefix,
    publishTimeoutMs: 500,
    ...(history === undefined ? {} : { history }),
  });
  const server = createServer({
    handlers: {
      sub: async (p, ctx) => {
        await ctx.join((p as { room: string }).room);
        return true;
      },
      echo: (p) => p,
    },
    broker,
    authorizeRoom: () => true,
    ...options,
  });
  const { port } = await server.listen({ port: 0 });
  cleanup.push(() => server.close({ graceMs: 500 }));
  return { server, port };
}

async function member(port: number, options: object = {}) {
  const client = await connect({ port, reconnect: { initialDelayMs: 5, maxDelayMs: 100 }, ...options });
  cleanup.push(() => client.close({ graceMs: 0 }));
  const seqs: number[] = [];
  const payloads: unknown[] = [];
  const gaps: RoomGap[] = [];
  client.on('notify', (_topic, payload, push) => {
    if (push === undefined) return;
    seqs.push(push.seq);
    payloads.push(payload);
  });
  client.on('gap', (g) => gaps.push(g));
  return { client, seqs, payloads, gaps };
}

/** Cuts the client's connection (RST) and resolves once it is gone. */
function cut(client: Client): { gone: Promise<unknown>; back: Promise<unknown> } {
  const gone = once(client, 'disconnect');
  const back = once(client, 'reconnect');
  client.connection?.abort();
  return { gone, back };
}

describe('the Redis broker', { skip }, () => {
  test('one push, every member on every server, once, in one order', async () => {
    const p = `t${++prefixes}:`;
    const a = await node(p);
    const b = await node(p);
    const members = [await member(a.port), await member(a.port), await member(b.port), await member(b.port)];
    for (const m of members) await m.client.request('sub', { room: 'lobby' });
    const published: number[] = [];
    // From both servers, interleaved and concurrent: the broker decides the one order.
    const sends: Array<Promise<number>> = [];
    for (let i = 0; i < 200; i++) sends.push((i % 2 === 0 ? a : b).server.to('lobby').notify('t', i));
    published.push(...(await Promise.all(sends)));
    published.sort((x, y) => x - y);
    for (let i = 1; i < published.length; i++) assert.equal(published[i], (published[i - 1] as number) + 1);
    await waitFor(() => members.every((m) => m.seqs.length === 200), 10_000, '200 pushes per member');
    for (const m of members) {
      assert.deepEqual(m.seqs, published);
      assert.deepEqual(m.gaps, []);
    }
    // The same order of payloads everywhere.
    for (const m of members) assert.deepEqual(m.payloads, members[0]?.payloads);
    // Counts across servers are as fresh as each server's last report (once a second).
    await waitFor(async () => (await a.server.to('lobby').count()) === 4, 5000, 'a count of 4');
  });

  test('a client cut from one server resumes on another: exactly the missed pushes, in order', async () => {
    const p = `t${++prefixes}:`;
    const a = await node(p);
    const b = await node(p);
    const m = await member(a.port);
    await m.client.request('sub', { room: 'r' });
    const published: number[] = [];
    for (let i = 0; i < 10; i++) published.push(await a.server.to('r').notify('t', i));
    await waitFor(() => m.seqs.length === 10, 5000, '10 pushes');
    // Its next connection goes to b.
    (m.client as unknown as { options: { port: number } }).options.port = b.port;
    const { gone, back } = cut(m.client);
    await gone;
    for (let i = 10; i < 30; i++) published.push(await a.server.to('r').notify('t', i));
    await back;
    for (let i = 30; i < 40; i++) published.push(await a.server.to('r').notify('t', i));
    await waitFor(() => m.seqs.length >= 40, 10_000, `40 pushes (have ${m.seqs.length})`);
    assert.deepEqual(m.seqs, published);
    assert.deepEqual(m.payloads, [...Array(40).keys()]);
    assert.deepEqual(m.gaps, []);
    assert.equal(b.server.to('r').localCount, 1);
  });

  test('a gap when the stream was trimmed past the cut', async () => {
    const p = `t${++prefixes}:`;
    const a = await node(p, { maxLength: 4 });
    const m = await member(a.port);
    await m.client.request('sub', { room: 'g' });
    const first = await a.server.to('g').notify('t', 0);
    await waitFor(() => m.seqs.length === 1, 5000, 'first push');
    // The client goes (its process, say), keeping its cursor; 10 pushes while it is away.
    const cursor = Object.fromEntries(m.client.rooms);
    await m.client.close();
    const later: number[] = [];
    for (let i = 1; i <= 10; i++) later.push(await a.server.to('g').notify('t', i));
    const again = await member(a.port, { rooms: cursor });
    await waitFor(() => again.seqs.length === 4, 5000, `4 pushes (have ${again.seqs.length})`);
    assert.deepEqual(again.gaps, [{ room: 'g', afterSeq: first, throughSeq: later[5] }]);
    assert.deepEqual(again.seqs, later.slice(6));
    // The stream holds 4 entries, no more.
    assert.match(await redisCommand(redis.port, 'XLEN', `${p}{g}:h`), /^:4\r\n/);
  });

  test('identities across servers', async () => {
    const p = `t${++prefixes}:`;
    const auth = { authenticate: (c: string | undefined) => c ?? false };
    const a = await node(p, undefined, auth);
    const b = await node(p, undefined, auth);
    const got: unknown[] = [];
    const c1 = await connect({ port: b.port, credential: 'carol' });
    cleanup.push(() => c1.close({ graceMs: 0 }));
    c1.on('notify', (topic, payload) => topic === 'dm' && got.push(payload));
    // The subscription is made when the connection is ready; a push right after may race it.
    await waitFor(
      async () => {
        await a.server.toIdentity('carol').notify('dm', 'hi');
        return got.length > 0;
      },
      5000,
      'a push to carol on the other server',
    );
  });

  test('Redis hangs (SIGSTOP), then dies (SIGKILL) and comes back empty: typed errors, the server serves, the room recovers with a gap', async () => {
    const p = `t${++prefixes}:`;
    const a = await node(p);
    const m = await member(a.port);
    await m.client.request('sub', { room: 'o' });
    const before = await a.server.to('o').notify('t', 'before');
    await waitFor(() => m.seqs.length === 1, 5000, 'first push');

    redis.pause();
    try {
      const err = await a.server
        .to('o')
        .notify('t', 'hung')
        .then(
          () => undefined,
          (e: unknown) => e,
        );
      assert.ok(err instanceof BrokerUnavailableError, `got ${String(err)}`);
      // The server keeps serving its own connections meanwhile.
      assert.equal(await m.client.request('echo', 'still here'), 'still here');
      // Once marked down, a publish fails at once, unsent.
      const fast = await a.server
        .to('o')
        .notify('t', 'fast')
        .catch((e: unknown) => e);
      assert.ok(fast instanceof BrokerUnavailableError);
      assert.equal((fast as BrokerUnavailableError).sent, false);
    } finally {
      redis.resume();
    }
    // Back: publishes work again (the first health check marks it up).
    const afterStop = await waitFor(
      () =>
        a.server
          .to('o')
          .notify('t', 'after-stop')
          .catch(() => undefined),
      10_000,
      'a publish after SIGCONT',
    );
    assert.ok(afterStop > before);

    await redis.kill();
    const dead = await a.server
      .to('o')
      .notify('t', 'dead')
      .catch((e: unknown) => e);
    assert.ok(dead instanceof BrokerUnavailableError);
    assert.equal(await m.client.request('echo', 'serving'), 'serving');
    await redis.restart();
    const fresh = await waitFor(
      () =>
        a.server
          .to('o')
          .notify('t', 'fresh')
          .catch(() => undefined),
      15_000,
      'a publish after the restart',
    );
    // An empty Redis: the room's seq starts again from the clock, above the old ones.
    assert.ok(fresh > afterStop);
    await waitFor(() => m.seqs.at(-1) === fresh, 10_000, 'the push after the restart');
    // What the old Redis had published before dying was delivered; what lies between is a gap.
    assert.ok(m.seqs.includes(before));
    assert.equal(new Set(m.seqs).size, m.seqs.length, 'no duplicates');
    for (let i = 1; i < m.seqs.length; i++) assert.ok((m.seqs[i] as number) > (m.seqs[i - 1] as number));
    assert.equal(m.gaps.length, 1, JSON.stringify(m.gaps));
    assert.equal(m.gaps[0]?.throughSeq, fresh - 1);
  });

  test('without @redis/client: MissingDependencyError saying what to install', async () => {
    hiddenPeers.add('@redis/client');
    try {
      await assert.rejects(redisBroker({ url: redis.url }), (e: unknown) => {
        assert.ok(e instanceof MissingDependencyError);
        assert.equal(e.packageName, '@redis/client');
        return true;
      });
    } finally {
      hiddenPeers.delete('@redis/client');
    }
  });
});
