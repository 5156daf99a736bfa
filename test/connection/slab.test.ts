/**
 * The output slab (src/connection/slab.ts): small frames of every connection are encoded into one
 * shared buffer, each connection's run of frames a slice of it. These tests hold it to what the
 * plain queue promised, over real sockets: every frame arrives whole, once, in order, on its own
 * connection, whatever the interleaving of connections, sizes, framings and resets; and a peer
 * that stops reading holds what it was sent, not the slab around it.
 */

import assert from 'node:assert/strict';
import type net from 'node:net';
import { after, describe, test } from 'node:test';
import v8 from 'node:v8';
import vm from 'node:vm';
import fc from 'fast-check';
import { type Framing, parseFraming } from '../../src/codec/index.js';
import { Connection } from '../../src/connection/connection.js';
import { drain, listen, type TestServer } from '../helpers.js';

/** Bounded so the suite stays fast; raise with FC_RUNS=500 for a deeper run. */
const NUM_RUNS = Number(process.env.FC_RUNS ?? 25);

/** Framings with a fixed prefix take the slab; varint and line do not, and must mix with those that do. */
const FRAMINGS = ['u32be', 'ascii:20', 'u16le', 'varint', 'line'] as const;

interface Op {
  conn: number;
  /** 'send': one frame; 'parts': sendParts of two; 'tick': let the microtask flush run; 'abort': RST. */
  kind: 'send' | 'parts' | 'tick' | 'abort';
  size: number;
}

const opArb: fc.Arbitrary<Op> = fc.record({
  conn: fc.integer({ min: 0, max: 2 }),
  kind: fc.constantFrom<Op['kind']>('send', 'send', 'send', 'parts', 'tick', 'abort'),
  // Mostly small (the slab's frames), some around the 4 KiB line, a few far above it.
  size: fc.oneof(
    { weight: 6, arbitrary: fc.integer({ min: 0, max: 300 }) },
    { weight: 2, arbitrary: fc.integer({ min: 4070, max: 4110 }) },
    { weight: 1, arbitrary: fc.integer({ min: 4111, max: 40_000 }) },
  ),
});

/** A payload that names its connection and place: a frame on the wrong connection, cut or reordered is seen. */
function payload(conn: number, index: number, size: number): Buffer {
  const b = Buffer.alloc(size);
  // Letters only: a 'line' frame cannot hold a newline.
  for (let i = 0; i < size; i++) b[i] = 0x41 + ((conn * 7 + index * 13 + i) % 26);
  return b;
}

function decodeAll(framing: Framing, bytes: Buffer): Buffer[] {
  const d = framing.createDecoder();
  const out = d.push(bytes);
  return out.map((f) => Buffer.from(f));
}

describe('output slab', () => {
  const servers: TestServer[] = [];
  after(async () => {
    for (const s of servers) await s.close();
  });

  test('property: every frame arrives whole, once, in order, on its own connection — whatever the interleaving', async () => {
    const srv = await listen();
    servers.push(srv);
    await fc.assert(
      fc.asyncProperty(
        fc.array(opArb, { minLength: 1, maxLength: 60 }),
        fc.array(fc.constantFrom(...FRAMINGS), { minLength: 3, maxLength: 3 }),
        async (ops, specs) => {
          const framings = specs.map((s) => parseFraming(s));
          const conns: Connection[] = [];
          const peers: Array<Promise<{ bytes: Buffer }>> = [];
          for (const framing of framings) {
            conns.push(await Connection.connect({ port: srv.port, framing }));
            peers.push(drain(await srv.nextSocket()));
          }
          const sent: Buffer[][] = [[], [], []];
          const aborted = [false, false, false];
          for (const op of ops) {
            const c = conns[op.conn] as Connection;
            const list = sent[op.conn] as Buffer[];
            if (op.kind === 'tick') {
              await Promise.resolve();
              continue;
            }
            if (op.kind === 'abort') {
              if (!aborted[op.conn]) c.abort();
              aborted[op.conn] = true;
              continue;
            }
            if (aborted[op.conn]) continue;
            const p = payload(op.conn, list.length, op.size);
            if (op.kind === 'send') c.send(p);
            else c.sendParts([p.subarray(0, op.size >> 1), p.subarray(op.size >> 1)]);
            list.push(p);
          }
          for (let i = 0; i < conns.length; i++) {
            if (!aborted[i]) await (conns[i] as Connection).close();
          }
          for (let i = 0; i < conns.length; i++) {
            const { bytes } = await (peers[i] as Promise<{ bytes: Buffer }>);
            const expected = sent[i] as Buffer[];
            // Whole frames only: an RST may cut the stream anywhere, and the decoder keeps the rest.
            const got = decodeAll(framings[i] as Framing, bytes);
            if (aborted[i]) {
              assert.ok(got.length <= expected.length, `connection ${i}: more frames than sent`);
              assert.deepEqual(
                got,
                expected.slice(0, got.length),
                `connection ${i}: a prefix, intact and in order`,
              );
            } else assert.deepEqual(got, expected, `connection ${i} (${specs[i]}): every frame, in order`);
          }
        },
      ),
      { numRuns: NUM_RUNS },
    );
  });

  test('a peer that stops reading holds the bytes it was sent, not the slab they were encoded in', async () => {
    const srv = await listen();
    servers.push(srv);
    const conn = await Connection.connect({
      port: srv.port,
      framing: parseFraming('u32be'),
      highWaterMark: 64 * 1024 * 1024,
      maxQueuedBytes: 128 * 1024 * 1024,
    });
    const peer: net.Socket = await srv.nextSocket();
    peer.pause();
    const frame = Buffer.alloc(100, 0x61);
    // Until the kernel's buffers are full and Node holds our writes: one flush per round.
    let rounds = 0;
    while (conn.socket.writableLength === 0 && rounds < 10_000) {
      for (let i = 0; i < 50; i++) conn.send(frame);
      await new Promise<void>((r) => setImmediate(r));
      rounds++;
    }
    assert.ok(conn.socket.writableLength > 0, 'the socket never backed up');
    // Written while the socket was backed up: each must own its memory (the first write that
    // backed it up is libuv's, in flight, and not in this list).
    for (let i = 0; i < 20; i++) {
      for (let k = 0; k < 3; k++) conn.send(frame);
      await new Promise<void>((r) => setImmediate(r));
    }
    const queued = (conn.socket as unknown as { writableBuffer: Array<{ chunk: Buffer }> }).writableBuffer;
    assert.ok(queued.length >= 20, `writes queued by Node: ${queued.length}`);
    for (const { chunk } of queued) {
      assert.ok(
        chunk.buffer.byteLength <= 2 * chunk.length,
        `a ${chunk.length}-byte write keeps a ${chunk.buffer.byteLength}-byte buffer alive`,
      );
    }
    conn.abort();
    await conn.closed;
    peer.destroy();
  });

  test('a frame reserved but not committed (too large for the peer) leaves nothing behind', async () => {
    // Through the public API: a server answer over the agreed limit becomes ERR_FRAME_TOO_LARGE,
    // and the answers around it arrive intact (the reservation the big answer made was reused).
    const { createServer, connect } = await import('../../src/index.js');
    const server = createServer({
      maxFrameLength: 8 * 1024,
      handlers: { echo: (p: unknown) => p, big: () => Buffer.alloc(9000, 1) },
    });
    const addr = await server.listen({ port: 0, host: '127.0.0.1' });
    const c = await connect({ port: addr.port, codec: 'raw', reconnect: false });
    try {
      const calls = [
        c.request('echo', Buffer.from('one')),
        c.request('big').then(
          () => 'ok',
          (e: { code?: string }) => e.code,
        ),
        c.request('echo', Buffer.from('two')),
      ];
      const [one, big, two] = await Promise.all(calls);
      assert.equal(String(one), 'one');
      assert.equal(big, 'ERR_FRAME_TOO_LARGE');
      assert.equal(String(two), 'two');
    } finally {
      await c.close();
      await server.close();
    }
  });
});

describe('what the slab keeps alive', () => {
  test('regression (red team): a closed client is not kept alive by the process-wide frame target', async () => {
    const { createServer, connect } = await import('../../src/index.js');
    const server = createServer({ handlers: { echo: (p: unknown) => p } });
    const { port } = await server.listen({ port: 0, host: '127.0.0.1' });
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as () => void;
    let ref: WeakRef<object> | undefined;
    await (async () => {
      const c = await connect({ port, codec: 'raw', reconnect: false });
      await c.request('echo', Buffer.alloc(100), { timeoutMs: 0 });
      ref = new WeakRef(c.connection as object);
      await c.close(); // its GOAWAY is the last frame the process encodes
    })();
    // A WeakRef's target is kept until the job that deref'd it ends: collect in a later one.
    const tick = () => new Promise<void>((r) => setImmediate(r));
    let collected = false;
    for (let i = 0; i < 6 && !collected; i++) {
      await tick();
      gc();
      await tick();
      collected = ref?.deref() === undefined;
    }
    await server.close();
    assert.ok(collected, 'the closed connection was collected');
  });
});

describe('Connection.send input', () => {
  test('a frame that is not bytes is refused with a typed error, and nothing is queued', async () => {
    const srv = await listen();
    const conn = await Connection.connect({ port: srv.port, framing: parseFraming('u32be') });
    const peer = drain(await srv.nextSocket());
    const { InvalidArgumentError } = await import('../../src/errors.js');
    for (const bad of ['text', 42, null, { length: 3 }]) {
      assert.throws(() => conn.send(bad as unknown as Buffer), InvalidArgumentError);
    }
    conn.send(Uint8Array.of(1, 2, 3) as Buffer);
    await conn.close();
    const { bytes } = await peer;
    assert.deepEqual([...bytes], [0, 0, 0, 3, 1, 2, 3], 'only the good frame went out');
    await srv.close();
  });
});

type Pair = [Connection, Promise<{ bytes: Buffer }>];

/** Two connections to `srv`, each with what its peer reads until the close. */
async function twoPairs(srv: TestServer, framing: Framing): Promise<[Pair, Pair]> {
  const one = async (): Promise<Pair> => {
    const c = await Connection.connect({ port: srv.port, framing });
    return [c, drain(await srv.nextSocket())];
  };
  const first = await one();
  return [first, await one()];
}

describe('frames whose bytes run code (red team, second pass)', () => {
  /** A Buffer whose own `length` getter runs `onRead` (Buffer.isBuffer still says true). */
  function sneaky(text: string, onRead: () => void): Buffer {
    const lengthOf = Object.getOwnPropertyDescriptor(Object.getPrototypeOf(Uint8Array.prototype), 'length')
      ?.get as (this: unknown) => number;
    const b = Buffer.from(text);
    Object.setPrototypeOf(
      b,
      Object.create(Buffer.prototype, {
        length: {
          get() {
            onRead();
            return lengthOf.call(this);
          },
        },
      }),
    );
    return b;
  }

  test('regression (N1): a frame whose length getter sends on another connection: both streams stay whole', async () => {
    const srv = await listen();
    const framing = parseFraming('u32be');
    const [[a, peerA], [b, peerB]] = await twoPairs(srv, framing);
    let armed = true;
    a.send(Buffer.from('A-first'));
    a.send(
      sneaky('A-secret', () => {
        if (!armed) return;
        armed = false;
        b.send(Buffer.from('B-audit'));
      }),
    );
    a.send(Buffer.from('A-last'));
    await a.close();
    await b.close();
    const got = async (p: Promise<{ bytes: Buffer }>) =>
      framing
        .createDecoder()
        .push((await p).bytes)
        .map((f) => f.toString());
    assert.deepEqual(await got(peerA), ['A-first', 'A-secret', 'A-last']);
    assert.deepEqual(await got(peerB), armed ? [] : ['B-audit']);
    await srv.close();
  });

  test('regression (N2): a payload whose length getter sends on another client: each server gets only its own', async () => {
    const { createServer, connect } = await import('../../src/index.js');
    const seen: string[][] = [[], []];
    const servers = seen.map((s) =>
      createServer({
        handlers: {
          echo: (p: unknown) => {
            s.push(String(p));
            return p;
          },
        },
      }),
    );
    const ports: number[] = [];
    for (const s of servers) ports.push((await s.listen({ port: 0, host: '127.0.0.1' })).port);
    const a = await connect({ port: ports[0] as number, codec: 'raw', reconnect: false });
    const b = await connect({ port: ports[1] as number, codec: 'raw', reconnect: false });
    const nested: Array<Promise<unknown>> = [];
    const payload = sneaky('A-secret-payload', () => {
      if (nested.length < 3) nested.push(b.request('echo', Buffer.from(`B-audit-${nested.length + 1}`)));
    });
    assert.equal(String(await a.request('echo', payload)), 'A-secret-payload');
    assert.equal((await Promise.all(nested)).length, nested.length);
    assert.deepEqual(seen[0], ['A-secret-payload']);
    assert.deepEqual(
      seen[1],
      nested.map((_, i) => `B-audit-${i + 1}`),
      "server 2 got only B's requests, whole",
    );
    await Promise.all([a.close(), b.close()]);
    await Promise.all(servers.map((s) => s.close()));
  });

  test("regression (N3): one flush's chunks are never views of several slabs, whatever the interleaving", async () => {
    // c's frames are split across slabs by d's filling each slab between them; every write of c
    // that is not its flush's only chunk must own its memory (else a write the kernel takes in
    // part would keep each of those slabs alive).
    const srv = await listen();
    const framing = parseFraming('u32be');
    const [[c, peerC], [d, peerD]] = await twoPairs(srv, framing);
    const writes: Buffer[][] = [];
    let batch: Buffer[] | undefined;
    const write = c.socket.write.bind(c.socket) as (chunk: Buffer, cb?: () => void) => boolean;
    (c.socket as unknown as { write: typeof write }).write = (chunk, cb) => {
      if (batch === undefined) {
        batch = [];
        writes.push(batch);
        queueMicrotask(() => {
          batch = undefined;
        });
      }
      batch.push(chunk);
      return write(chunk, cb);
    };
    const { slab } = await import('../../src/connection/slab.js');
    const half = Buffer.alloc(2046, 0x63);
    const filler = Buffer.alloc(2046, 0x64);
    for (let round = 0; round < 4; round++) {
      c.send(half);
      c.send(half);
      const before = slab.buf;
      while (slab.buf === before) d.send(filler);
    }
    await c.close();
    await d.close();
    await Promise.all([peerC, peerD]);
    const multi = writes.filter((w) => w.length > 1);
    assert.ok(
      multi.length > 0,
      `a flush of several chunks happened (writes: ${writes.map((w) => w.length)})`,
    );
    for (const w of multi) {
      for (const chunk of w) {
        assert.ok(
          chunk.buffer.byteLength <= 2 * chunk.length,
          `a ${chunk.length}-byte chunk of a ${w.length}-chunk flush keeps a ${chunk.buffer.byteLength}-byte buffer alive`,
        );
      }
    }
    await srv.close();
  });
});

describe('bytes the queue measures (red team, third pass)', () => {
  test('regression (P2): Uint8Array frames of every path reach the peer, and no flush throws', async () => {
    const srv = await listen();
    // varint: no in-place prefix, the frame is queued as it is (coalesce called .copy on it).
    const v = await Connection.connect({ port: srv.port, framing: parseFraming('varint') });
    const peerV = drain(await srv.nextSocket());
    v.send(Uint8Array.of(1, 2, 3) as Buffer);
    v.send(Uint8Array.of(4) as Buffer);
    // u32be, 5000 bytes viewed in a 64 KiB ArrayBuffer, sent while the socket has bytes waiting
    // (unpinned called .copy on it).
    const u = await Connection.connect({
      port: srv.port,
      framing: parseFraming('u32be'),
      highWaterMark: 64 * 1024 * 1024,
      maxQueuedBytes: 128 * 1024 * 1024,
    });
    const stuck = await srv.nextSocket();
    stuck.pause();
    const big = new Uint8Array(new ArrayBuffer(64 * 1024), 1000, 5000).fill(7);
    for (let i = 0; i < 2000 && u.socket.writableLength === 0; i++) {
      u.send(Buffer.alloc(60_000));
      await new Promise<void>((r) => setImmediate(r));
    }
    assert.ok(u.socket.writableLength > 0, 'the socket backed up');
    u.send(big as Buffer);
    await new Promise<void>((r) => setImmediate(r)); // the flush that used to throw
    u.abort();
    stuck.destroy();
    await v.close();
    const frames = parseFraming('varint')
      .createDecoder()
      .push((await peerV).bytes)
      .map((f) => [...f]);
    assert.deepEqual(frames, [[1, 2, 3], [4]]);
    await srv.close();
  });

  test('regression (P1): a frame whose length lies after it was sent goes out as the bytes it has, under the header that says so', async () => {
    const srv = await listen();
    const framing = parseFraming('u32be');
    const c = await Connection.connect({ port: srv.port, framing });
    const peer = drain(await srv.nextSocket());
    const real = 5000;
    let mode = 'honest';
    let calls = 0;
    const b = Buffer.alloc(real, 0x41);
    Object.setPrototypeOf(
      b,
      Object.create(Buffer.prototype, {
        length: {
          get() {
            if (mode === 'honest') return real;
            return calls++ < 2 ? 100 : 0;
          },
        },
      }),
    );
    // Other connections' bytes in Node's pool, where a short copy would have found them.
    for (let i = 0; i < 40; i++) Buffer.from(JSON.stringify({ token: `SECRET-${i}` }));
    c.send(b);
    mode = 'flush';
    await c.close();
    const frames = framing.createDecoder().push((await peer).bytes);
    assert.equal(frames.length, 1);
    assert.equal((frames[0] as Buffer).length, real);
    assert.ok(
      (frames[0] as Buffer).every((x) => x === 0x41),
      'only the frame bytes, nothing from the pool',
    );
    await srv.close();
  });
});
