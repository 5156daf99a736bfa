/**
 * Rooms on real loopback sockets, brokers in this process (MemoryBrokerHub): membership, the
 * per-room seq, identity addressing, counts, limits, resume after a cut (exactly the missed
 * pushes, in order, once), `$gap` when the history no longer covers the cut, and 1.1 peers.
 * The same with Redis and server processes: test/broker/.
 */

import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { after, describe, test } from 'node:test';
import { type Client, connect, type RoomGap } from '../../src/client/client.js';
import { parseFraming } from '../../src/codec/parse.js';
import { RoomLimitError } from '../../src/errors.js';
import { RemoteError } from '../../src/protocol/errors.js';
import { type Message, MessageKind } from '../../src/protocol/types.js';
import { decodeMessage, encodeMessage } from '../../src/protocol/wire.js';
import { MemoryBrokerHub } from '../../src/server/broker.js';
import type { ServerOptions } from '../../src/server/options.js';
import { createServer, type Server } from '../../src/server/server.js';
import { waitFor } from '../helpers.js';
import { helloFrame, requestFrame } from './edge-harness.js';

const cleanup: Array<() => Promise<unknown> | unknown> = [];
after(async () => {
  for (const c of cleanup.reverse()) await c();
});

/** A server whose `sub`/`unsub` methods join and leave rooms (any room: authorizeRoom allows all). */
async function roomServer(
  options: Partial<ServerOptions> & { open?: boolean } = {},
): Promise<{ server: Server; port: number }> {
  const { open = true, ...rest } = options;
  const server = createServer({
    handlers: {
      sub: async (p, ctx) => {
        await ctx.join((p as { room: string }).room);
        return [...ctx.rooms];
      },
      unsub: (p, ctx) => ctx.leave((p as { room: string }).room),
      me: (_p, ctx) => ctx.identity ?? null,
    },
    ...(open ? { authorizeRoom: () => true } : {}),
    ...rest,
  });
  const { port } = await server.listen({ port: 0 });
  cleanup.push(() => server.close({ graceMs: 1000 }));
  return { server, port };
}

/** A client that records its room pushes, gaps and notices. */
async function member(port: number, options: object = {}) {
  const client = await connect({ port, reconnect: { initialDelayMs: 5, maxDelayMs: 50 }, ...options });
  cleanup.push(() => client.close({ graceMs: 0 }));
  const pushes: Array<{ topic: string; payload: unknown; room: string; seq: number }> = [];
  const gaps: RoomGap[] = [];
  const left: string[] = [];
  client.on('notify', (topic, payload, push) => {
    if (push !== undefined) pushes.push({ topic, payload, room: push.room, seq: push.seq });
  });
  client.on('gap', (g) => gaps.push(g));
  client.on('left', (room) => left.push(room));
  return { client, pushes, gaps, left };
}

/** Cuts the client's connection (RST) and waits until it is back and has resumed its rooms. */
async function cutAndWait(client: Client): Promise<void> {
  const back = once(client, 'reconnect');
  client.connection?.abort();
  await back;
}

describe('rooms on one server', () => {
  test('a push reaches every member once, with increasing seqs; non-members get nothing', async () => {
    const { server, port } = await roomServer();
    const a = await member(port);
    const b = await member(port);
    const c = await member(port);
    const joined: Array<[string, number]> = [];
    a.client.on('joined', (room, seq) => joined.push([room, seq]));
    assert.deepEqual(await a.client.request('sub', { room: 'r' }), ['r']);
    await b.client.request('sub', { room: 'r' });
    await c.client.request('sub', { room: 'other' });
    assert.equal(server.to('r').localCount, 2);
    assert.equal(await server.to('r').count(), 2);
    assert.equal(joined.length, 1);
    assert.equal(a.client.rooms.get('r'), joined[0]?.[1]);
    const seqs: number[] = [];
    for (let i = 0; i < 50; i++) seqs.push(await server.to('r').notify('t', { i }));
    for (let i = 1; i < seqs.length; i++) assert.equal(seqs[i], (seqs[i - 1] as number) + 1);
    await waitFor(() => a.pushes.length === 50 && b.pushes.length === 50, 10_000, '50 pushes each');
    for (const m of [a, b]) {
      assert.deepEqual(
        m.pushes.map((p) => p.seq),
        seqs,
      );
      assert.deepEqual(
        m.pushes.map((p) => (p.payload as { i: number }).i),
        [...Array(50).keys()],
      );
    }
    assert.equal(c.pushes.length, 0);
    assert.equal(a.client.rooms.get('r'), seqs[49]);
    // Leaving: no more pushes, and the client is told.
    assert.equal(await a.client.request('unsub', { room: 'r' }), true);
    await waitFor(() => a.left.includes('r'), 5000, "'left'");
    await server.to('r').notify('t', { i: 50 });
    await waitFor(() => b.pushes.length === 51, 5000, 'the 51st push');
    assert.equal(a.pushes.length, 50);
    assert.equal(server.to('r').localCount, 1);
  });

  test('membership ends with the connection', async () => {
    const { server, port } = await roomServer();
    const a = await member(port, { reconnect: false });
    await a.client.request('sub', { room: 'gone' });
    assert.equal(server.to('gone').localCount, 1);
    await a.client.close();
    await waitFor(() => server.to('gone').localCount === 0, 5000, 'membership to end');
    assert.equal(server.stats().rooms, 0);
  });

  test('limits: rooms per connection, name length, $ topics', async () => {
    const { server, port } = await roomServer({ maxRoomsPerConnection: 3, maxRoomNameBytes: 8 });
    const a = await member(port);
    for (const room of ['a', 'b', 'c']) await a.client.request('sub', { room });
    await assert.rejects(a.client.request('sub', { room: 'd' }), (e: unknown) => {
      assert.ok(e instanceof RemoteError);
      assert.equal(e.code, 'ERR_ROOM_LIMIT');
      return true;
    });
    await assert.rejects(a.client.request('sub', { room: 'x'.repeat(9) }), { code: 'ERR_ROOM_LIMIT' });
    assert.throws(() => server.to('x'.repeat(9)), RoomLimitError);
    await assert.rejects(server.to('a').notify('$gap', 1), { code: 'ERR_INVALID_ARGUMENT' });
    // Joining a room it is in takes no slot.
    assert.deepEqual(await a.client.request('sub', { room: 'a' }), ['a', 'b', 'c']);
  });

  test('identity addressing reaches every connection of the identity, and only those', async () => {
    const hub = new MemoryBrokerHub();
    const auth = (credential: string | undefined) => ({ id: credential });
    const one = await roomServer({ broker: hub.broker(), authenticate: auth });
    const two = await roomServer({ broker: hub.broker(), authenticate: auth });
    const alice1 = await member(one.port, { credential: 'alice' });
    const alice2 = await member(two.port, { credential: 'alice' });
    const bob = await member(two.port, { credential: 'bob' });
    const got = new Map<Client, unknown[]>();
    for (const m of [alice1, alice2, bob]) {
      got.set(m.client, []);
      m.client.on('notify', (topic, payload, push) => {
        if (push === undefined && topic === 'dm') got.get(m.client)?.push(payload);
      });
    }
    await one.server.toIdentity('alice').notify('dm', { hi: 1 });
    await waitFor(
      () => got.get(alice1.client)?.length === 1 && got.get(alice2.client)?.length === 1,
      5000,
      'dm',
    );
    assert.deepEqual(got.get(bob.client), []);
    assert.throws(() => one.server.toIdentity({}), { code: 'ERR_INVALID_ARGUMENT' });
  });

  test('counts across servers of one broker', async () => {
    const hub = new MemoryBrokerHub();
    const one = await roomServer({ broker: hub.broker() });
    const two = await roomServer({ broker: hub.broker() });
    const members = [await member(one.port), await member(two.port), await member(two.port)];
    for (const m of members) await m.client.request('sub', { room: 'lobby' });
    assert.equal(await one.server.to('lobby').count(), 3);
    assert.equal(one.server.to('lobby').localCount, 1);
    const seq = await two.server.to('lobby').notify('hello', 'all');
    await waitFor(() => members.every((m) => m.pushes.at(-1)?.seq === seq), 5000, 'one push everywhere');
  });
});

describe('resume', () => {
  test('after a cut, the client gets exactly what it missed, in order, once, on another server', async () => {
    const hub = new MemoryBrokerHub();
    const one = await roomServer({ broker: hub.broker() });
    const two = await roomServer({ broker: hub.broker() });
    // The client knows two ports: a cut sends it to the other server.
    let port = one.port;
    const a = await member(one.port);
    const watcher = await member(two.port);
    await a.client.request('sub', { room: 'r' });
    await watcher.client.request('sub', { room: 'r' });
    const published: number[] = [];
    for (let i = 0; i < 20; i++) published.push(await one.server.to('r').notify('t', i));
    await waitFor(() => a.pushes.length === 20, 5000, '20 pushes');
    // Close server one's side under the client (its reconnect goes to two: port is read anew).
    (a.client as unknown as { options: { port: number } }).options.port = two.port;
    port = two.port;
    const back = once(a.client, 'reconnect');
    a.client.connection?.abort();
    for (let i = 20; i < 40; i++) published.push(await two.server.to('r').notify('t', i));
    await back;
    for (let i = 40; i < 50; i++) published.push(await two.server.to('r').notify('t', i));
    await waitFor(() => a.pushes.length >= 50, 10_000, `50 pushes (have ${a.pushes.length})`);
    assert.deepEqual(
      a.pushes.map((p) => p.seq),
      published,
    );
    assert.deepEqual(
      a.pushes.map((p) => p.payload),
      [...Array(50).keys()],
    );
    assert.deepEqual(a.gaps, []);
    assert.equal(two.server.to('r').localCount, 2, `resumed on ${port}`);
  });

  test('when the history no longer covers the cut, the client gets a gap, then the newest', async () => {
    const hub = new MemoryBrokerHub({ maxLength: 5 });
    const { server, port } = await roomServer({ broker: hub.broker() });
    const a = await member(port);
    await a.client.request('sub', { room: 'g' });
    const first = await server.to('g').notify('t', 0);
    await waitFor(() => a.pushes.length === 1, 5000, 'first push');
    // Pushes published while the client is away: more than the history keeps.
    const held = new Promise<void>((resolve) => a.client.once('disconnect', () => resolve()));
    const back = once(a.client, 'reconnect');
    a.client.connection?.abort();
    await held;
    const later: number[] = [];
    for (let i = 1; i <= 12; i++) later.push(await server.to('g').notify('t', i));
    await back;
    await waitFor(() => a.pushes.length === 6, 5000, `1 + 5 pushes (have ${a.pushes.length})`);
    assert.deepEqual(a.gaps, [{ room: 'g', afterSeq: first, throughSeq: later[6] }]);
    assert.deepEqual(
      a.pushes.slice(1).map((p) => p.seq),
      later.slice(7),
    );
  });

  test('a resume is refused without authorizeRoom: the client is told it left', async () => {
    const hub = new MemoryBrokerHub();
    const { server, port } = await roomServer({ broker: hub.broker(), open: false });
    const a = await member(port);
    await a.client.request('sub', { room: 'private' });
    await cutAndWait(a.client);
    await waitFor(() => a.left.includes('private'), 5000, "'left' after the refused resume");
    assert.equal(a.client.rooms.size, 0);
    assert.equal(server.to('private').localCount, 0);
  });

  test('a join the server makes when the connection opens waits for the resume and starts where the client left', async () => {
    const hub = new MemoryBrokerHub();
    const server = createServer({
      handlers: {},
      broker: hub.broker(),
      authorizeRoom: () => true,
    });
    server.on('ready', (ctx) => void ctx.join('auto'));
    const { port } = await server.listen({ port: 0 });
    cleanup.push(() => server.close({ graceMs: 1000 }));
    const a = await member(port);
    await waitFor(() => a.client.rooms.has('auto'), 5000, 'the server-side join');
    const seqs = [await server.to('auto').notify('t', 1)];
    await waitFor(() => a.pushes.length === 1, 5000, 'first push');
    const gone = new Promise<void>((resolve) => a.client.once('disconnect', () => resolve()));
    const back = once(a.client, 'reconnect');
    a.client.connection?.abort();
    await gone;
    for (let i = 2; i <= 5; i++) seqs.push(await server.to('auto').notify('t', i));
    await back;
    await waitFor(() => a.pushes.length === 5, 5000, `5 pushes (have ${a.pushes.length})`);
    assert.deepEqual(
      a.pushes.map((p) => p.seq),
      seqs,
    );
    assert.deepEqual(a.gaps, []);
  });
});

describe('older peers', () => {
  test('a 1.1 client gets room pushes as plain NOTIFYs: no seq, no notices', async () => {
    const { server, port } = await roomServer();
    const socket = net.connect({ port, host: '127.0.0.1' });
    await once(socket, 'connect');
    cleanup.push(() => socket.destroy());
    const framing = parseFraming('u32be');
    const decoder = framing.createDecoder();
    const got: Message[] = [];
    socket.on('data', (chunk: Buffer) => {
      for (const f of decoder.push(chunk)) got.push(decodeMessage(Buffer.from(f), 1));
    });
    const send = (m: Message) => socket.write(Buffer.concat(framing.encoder.encodeParts(encodeMessage(m))));
    send({ kind: MessageKind.HELLO, version: 0x0101, params: {} });
    await waitFor(() => got.some((m) => m.kind === MessageKind.HELLO), 5000, 'HELLO');
    send({ kind: MessageKind.REQUEST, id: 1, method: 'sub', payload: Buffer.from('{"room":"old"}') });
    await waitFor(() => got.some((m) => m.kind === MessageKind.RESPONSE), 5000, 'the answer');
    await server.to('old').notify('t', { v: 1 });
    const n = (await waitFor(
      () => got.find((m) => m.kind === MessageKind.NOTIFY),
      5000,
      'NOTIFY',
    )) as Message;
    assert.equal(n.kind, MessageKind.NOTIFY);
    if (n.kind !== MessageKind.NOTIFY) return;
    assert.equal(n.topic, 't');
    assert.equal(n.flags, 0);
    assert.deepEqual(JSON.parse(n.payload.toString()), { v: 1 });
    assert.equal(got.filter((m) => m.kind === MessageKind.NOTIFY).length, 1, 'no $joined notice');
  });
});

describe('red team G2, G3, G6', () => {
  test('regression (G2): a join waiting for a broker that is down ends when its connection closes; the slot comes back', async () => {
    const inner = new MemoryBrokerHub().broker();
    // Redis down: the room's subscription never completes, so the join waits.
    const down = new Proxy(inner, {
      get(target, key) {
        if (key === 'subscribe') return () => new Promise<void>(() => {});
        const v = Reflect.get(target, key);
        return typeof v === 'function' ? v.bind(target) : v;
      },
    });
    const { server, port } = await roomServer({ broker: down, maxConnections: 2 });
    // Another member keeps the room (so it is not dropped when the first one leaves).
    const keeper = await connect({ port, reconnect: false });
    cleanup.push(() => keeper.destroy());
    void keeper.request('sub', { room: 'waits' }, { timeoutMs: 60_000 }).catch(() => {});
    await waitFor(() => server.stats().inflight === 1, 5000, "the keeper's join is under way");
    const a = await connect({ port, reconnect: false });
    const joining = a.request('sub', { room: 'waits' }, { timeoutMs: 60_000 }).catch(() => 'failed');
    await waitFor(() => server.stats().inflight === 2, 5000, 'the join is under way');
    const gone = once(server, 'disconnect');
    a.destroy();
    await gone;
    assert.equal(await joining, 'failed');
    await waitFor(() => server.stats().lingering === 0, 5000, 'the handler ended with its connection');
    const b = await connect({ port, reconnect: false });
    cleanup.push(() => b.close({ graceMs: 0 }));
    assert.equal(await b.request('me'), null, 'the next client gets the slot');
  });

  test('regression (G3): a refused $resume leaves no cursor behind: a later join by the application replays nothing', async () => {
    const hub = new MemoryBrokerHub();
    const { server, port } = await roomServer({
      broker: hub.broker(),
      open: false,
      authorizeRoom: (room) => room !== 'secret',
    });
    // The room exists with history before the client may see it.
    const keeper = await member(port);
    await keeper.client.request('sub', { room: 'secret' });
    const seqs: number[] = [];
    for (let i = 0; i < 5; i++) seqs.push(await server.to('secret').notify('old', i));
    // A client claims to have been in it, just before those five.
    const a = await member(port, { rooms: { secret: (seqs[0] as number) - 1 } });
    await waitFor(() => a.left.includes('secret'), 5000, 'the resume refused');
    await a.client.request('sub', { room: 'secret' }); // the application lets it in now
    const next = await server.to('secret').notify('new', 5);
    await waitFor(() => a.pushes.length >= 1, 5000, 'the new push');
    assert.deepEqual(
      a.pushes.map((p) => p.seq),
      [next],
      'nothing from before it was let in',
    );
  });

  test('regression (G4): a $resume is paced by its connection: a client that does not read holds back the rest of the history', async () => {
    const hub = new MemoryBrokerHub();
    const { server, port } = await roomServer({ broker: hub.broker() });
    // 400 pushes of 32 KiB (12.5 MiB): more than loopback's socket buffers hold.
    const blob = 'x'.repeat(32 * 1024);
    const seqs: number[] = [];
    for (let i = 0; i < 400; i++) seqs.push(await server.to('r').notify('t', { i, blob }));
    const s = net.connect({ port, host: '127.0.0.1' });
    cleanup.push(() => s.destroy());
    await once(s, 'connect');
    s.write(helloFrame({ resume: true }));
    s.write(requestFrame(1, '$resume', { rooms: { r: 0 } }));
    // Not reading: the kernel's buffers fill, then Node's queue holds our writes.
    const conn = await waitFor(
      () => server.served().find((x) => x.ready && (x.connection.socket.writableLength ?? 0) > 0)?.connection,
      10_000,
      'the server blocked on the client that does not read',
    );
    const hwm = conn.settings.highWaterMark;
    // What one entry adds as it is replayed: its frame (the JSON of 32 KiB and a header).
    const entry = 33 * 1024;
    assert.ok(
      conn.bufferedAmount <= hwm + 2 * entry,
      `queued for it: ${conn.bufferedAmount} bytes, the high watermark ${hwm} plus one entry at most`,
    );
    // Reading again, the client gets the whole history, in order, once.
    const decoder = parseFraming('u32be').createDecoder();
    const got: number[] = [];
    s.on('data', (chunk: Buffer) => {
      for (const f of decoder.push(chunk)) {
        const m = decodeMessage(f, 2);
        if (m.kind === MessageKind.NOTIFY && m.room === 'r' && m.topic === 't') got.push(m.seq ?? 0);
      }
    });
    await waitFor(
      () => got.length >= seqs.length,
      30_000,
      `the history (have ${got.length} of ${seqs.length})`,
    );
    assert.deepEqual(got, seqs);
  });

  test("regression (G6): a resume cursor ahead of the room starts at the room's head: later pushes arrive", async () => {
    const hub = new MemoryBrokerHub();
    const { server, port } = await roomServer({ broker: hub.broker() });
    const keeper = await member(port);
    await keeper.client.request('sub', { room: 'r' });
    const first = await server.to('r').notify('t', 0);
    const a = await member(port, { rooms: { r: first + 1_000_000 } });
    await waitFor(() => a.client.rooms.has('r') && server.to('r').localCount === 2, 5000, 'resumed');
    const seqs: number[] = [];
    for (let i = 1; i <= 3; i++) seqs.push(await server.to('r').notify('t', i));
    await waitFor(() => a.pushes.length === 3, 5000, `3 pushes (have ${a.pushes.length})`);
    assert.deepEqual(
      a.pushes.map((p) => p.seq),
      seqs,
    );
  });
});
