/**
 * Heartbeats, idle detection and reconnection on loopback. The real faults (cut links, frozen
 * processes, middleboxes) are in test/faults; here the silent peer is a hand-made server that
 * completes HELLO and then says nothing more — to TCP it is alive, only the heartbeat can tell.
 */

import assert from 'node:assert/strict';
import net from 'node:net';
import { after, describe, test } from 'node:test';
import { type Client, type ClientStatus, connect } from '../../src/client/client.js';
import { parseFraming } from '../../src/codec/index.js';
import { Connection } from '../../src/connection/connection.js';
import { ConnectionClosedError } from '../../src/errors.js';
import { answerHello } from '../../src/protocol/hello.js';
import { MessageKind } from '../../src/protocol/types.js';
import { decodeMessage, encodeMessage } from '../../src/protocol/wire.js';
import { createServer, type Server } from '../../src/server/server.js';
import { HEARTBEAT_PRESETS, resolveHeartbeat } from '../../src/session/heartbeat.js';
import { beforeTimer, listen, sleep, type TestServer, waitFor } from '../helpers.js';

const framing = parseFraming('u32be');
const servers: Server[] = [];
const raw: TestServer[] = [];
const clients: Client[] = [];
after(async () => {
  for (const c of clients) await c.close({ graceMs: 0 }).catch(() => {});
  for (const s of servers) s.destroy();
  for (const s of raw) await s.close();
});

function frame(body: Buffer[]): Buffer {
  const b = Buffer.concat(body);
  const h = Buffer.alloc(4);
  h.writeUInt32BE(b.length);
  return Buffer.concat([h, b]);
}

/**
 * A longlink "server" that answers HELLO, then — while `alive` — PINGs with PONGs; once frozen it
 * reads nothing and answers nothing, though its kernel still ACKs: a hung process, as TCP sees it.
 */
async function silentServer(): Promise<{ port: number; freeze(): void; pings(): number }> {
  const srv = await listen();
  raw.push(srv);
  let frozen = false;
  let pings = 0;
  srv.server.on('connection', (s) => {
    const conn = new Connection(s, { framing, keepAlive: false });
    conn.on('frame', (f) => {
      if (frozen) return;
      const m = decodeMessage(f);
      if (m.kind === MessageKind.HELLO) {
        const { reply } = answerHello(m, { minHeartbeatIntervalMs: 10 });
        conn.sendParts(encodeMessage(reply));
      } else if (m.kind === MessageKind.PING) {
        pings++;
        conn.sendParts(encodeMessage({ kind: MessageKind.PONG, data: m.data }));
      }
    });
  });
  return {
    port: srv.port,
    freeze: () => {
      frozen = true;
      for (const s of srv.sockets) s.pause();
    },
    pings: () => pings,
  };
}

describe('protocol heartbeat', () => {
  test('a silent peer is declared dead timeoutMs after the last byte read; pending requests fail with heartbeat-timeout', async () => {
    const peer = await silentServer();
    const c = await connect({
      port: peer.port,
      heartbeat: { intervalMs: 100, timeoutMs: 300 },
      reconnect: false,
    });
    clients.push(c);
    await waitFor(() => peer.pings() >= 2, 3000, 'heartbeats answered while the peer is alive');
    assert.equal(c.connected, true, 'answered heartbeats keep the connection');
    assert.ok(c.rttMs !== undefined && c.rttMs >= 0, 'RTT measured from PING/PONG');

    peer.freeze();
    const frozenAt = performance.now();
    const pending = c.request('echo', 1, { timeoutMs: 10_000 });
    // Declared dead by the heartbeat's timer: before a plain timer armed now for the bound
    // (300 ms after the last read, which was before the freeze, + one tick + slack) fires.
    const disconnect = beforeTimer(
      new Promise<{ reason: string; at: number }>((resolve) =>
        c.once('disconnect', (info) => resolve({ reason: info.reason, at: performance.now() })),
      ),
      300 + 150,
      'the heartbeat-timeout',
    );
    await assert.rejects(pending, (e: unknown) => {
      assert.ok(e instanceof ConnectionClosedError);
      assert.equal(e.reason, 'heartbeat-timeout');
      return true;
    });
    const d = await disconnect;
    assert.equal(d.reason, 'heartbeat-timeout');
    const detection = d.at - frozenAt;
    // The last byte was read at most one interval before the freeze; the bound is timeoutMs after it.
    assert.ok(
      detection <= 300 + 150,
      `declared dead ${detection.toFixed(0)} ms after the freeze (bound 300 ms + slack)`,
    );
    assert.ok(detection >= 300 - 100 - 20, `not before the timeout (${detection.toFixed(0)} ms)`);
  });

  test('a busy connection sends no heartbeats; an idle one sends one per interval', async () => {
    const server = createServer({ handlers: { echo: (p) => p }, heartbeat: false, minPingIntervalMs: 50 });
    servers.push(server);
    const { port } = await server.listen();
    const c = await connect({ port, heartbeat: { intervalMs: 100, timeoutMs: 1000 } });
    clients.push(c);
    const beats: number[] = [];
    let onBeat: () => void = () => {};
    c.connection!.on('heartbeat', () => {
      beats.push(performance.now());
      onBeat();
    });
    // Busy: 40 requests back to back; every byte read is liveness. A PING is due only after a
    // whole interval with nothing read, which a loaded machine may cause: those silences are
    // measured, and there may be no more PINGs than there were silences of an interval (less the
    // wheel's 2 ms tick).
    let lastRead = performance.now();
    let silences = 0;
    for (let i = 0; i < 40; i++) {
      await c.request('echo', 1);
      const now = performance.now();
      if (now - lastRead >= 100 - 3) silences++;
      lastRead = now;
    }
    assert.ok(
      beats.length <= silences,
      `${beats.length} PINGs while answers kept arriving (${silences} silences)`,
    );
    // Idle: PINGs follow, one per 100 ms interval — not one per 1 s timeout, and never closer.
    const before = beats.length;
    await beforeTimer(
      new Promise<void>((resolve) => {
        onBeat = () => {
          if (beats.length >= before + 3) resolve();
        };
      }),
      10_000,
      'three PINGs on an idle connection',
    );
    const gaps = beats.slice(before).map((t, i, a) => (i === 0 ? t - lastRead : t - (a[i - 1] as number)));
    for (const g of gaps)
      assert.ok(g >= 100 - 3 && g < 1000, `PINGs ${gaps.map((x) => x.toFixed(0)).join(', ')} ms apart`);
    assert.equal(c.connected, true);
  });

  test('both sides agree on the heartbeat in HELLO: the smaller interval wins', async () => {
    const server = createServer({
      handlers: { echo: (p) => p },
      heartbeat: { intervalMs: 5000, timeoutMs: 15_000 },
    });
    servers.push(server);
    const { port } = await server.listen();
    const fast = await connect({ port, heartbeat: { intervalMs: 1000, timeoutMs: 3000 } });
    const slow = await connect({ port, heartbeat: { intervalMs: 20_000, timeoutMs: 60_000 } });
    const off = await connect({ port, heartbeat: false });
    clients.push(fast, slow, off);
    assert.deepEqual(fast.stats().heartbeat, { intervalMs: 1000, timeoutMs: 3000 });
    assert.deepEqual(slow.stats().heartbeat, { intervalMs: 5000, timeoutMs: 15_000 });
    assert.equal(off.stats().heartbeat, undefined, 'heartbeat off on this side: answers PINGs, sends none');
    assert.equal(await off.request('echo', 'x'), 'x');
  });

  test('a client that pings too often gets GOAWAY ERR_TOO_MANY_PINGS', async () => {
    const server = createServer({ handlers: { echo: (p) => p }, minPingIntervalMs: 1000 });
    servers.push(server);
    const { port } = await server.listen();
    const s = net.connect(port, '127.0.0.1');
    s.on('error', () => {});
    await new Promise((r) => s.once('connect', r));
    const got: ReturnType<typeof decodeMessage>[] = [];
    let buf = Buffer.alloc(0);
    s.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 4 && buf.length >= 4 + buf.readUInt32BE(0)) {
        got.push(decodeMessage(buf.subarray(4, 4 + buf.readUInt32BE(0))));
        buf = buf.subarray(4 + buf.readUInt32BE(0));
      }
    });
    s.write(frame(encodeMessage({ kind: MessageKind.HELLO, version: 0x0100, params: { codecs: ['json'] } })));
    await waitFor(() => got.some((m) => m.kind === MessageKind.HELLO));
    for (let i = 0; i < 10; i++) {
      s.write(frame(encodeMessage({ kind: MessageKind.PING, data: Buffer.alloc(8, i) })));
      await sleep(5);
    }
    const goaway = await waitFor(() => got.find((m) => m.kind === MessageKind.GOAWAY));
    assert.equal((goaway as { reason: string }).reason, 'ERR_TOO_MANY_PINGS');
    assert.ok(got.filter((m) => m.kind === MessageKind.PONG).length <= 3, 'abusive PINGs are not answered');
    s.destroy();
  });

  test('a PING after a request is not a strike: PING, REQUEST, PING, PING, PING stays under the limit', async () => {
    // Strikes are PINGs with no request in between (docs/options.md); the first PING after a
    // REQUEST starts a new count (the fuzz suite saw it counted against the PING before the REQUEST).
    const server = createServer({ handlers: { echo: (p) => p }, minPingIntervalMs: 1000 });
    servers.push(server);
    const { port } = await server.listen();
    const s = net.connect(port, '127.0.0.1');
    s.on('error', () => {});
    await new Promise((r) => s.once('connect', r));
    const got: ReturnType<typeof decodeMessage>[] = [];
    let buf = Buffer.alloc(0);
    s.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 4 && buf.length >= 4 + buf.readUInt32BE(0)) {
        got.push(decodeMessage(buf.subarray(4, 4 + buf.readUInt32BE(0))));
        buf = buf.subarray(4 + buf.readUInt32BE(0));
      }
    });
    s.write(frame(encodeMessage({ kind: MessageKind.HELLO, version: 0x0100, params: { codecs: ['json'] } })));
    await waitFor(() => got.some((m) => m.kind === MessageKind.HELLO));
    const ping = (i: number) => frame(encodeMessage({ kind: MessageKind.PING, data: Buffer.alloc(8, i) }));
    const request = (id: number) =>
      frame(encodeMessage({ kind: MessageKind.REQUEST, id, method: 'echo', payload: Buffer.from('1') }));
    // Two rounds in one write each, so no timing decides it: 1 + 3 PINGs around a REQUEST.
    s.write(Buffer.concat([ping(1), request(1), ping(2), ping(3), ping(4)]));
    s.write(Buffer.concat([request(2), ping(5), ping(6), ping(7), request(3)]));
    await waitFor(
      () =>
        got.filter((m) => m.kind === MessageKind.RESPONSE).length === 3 ||
        got.some((m) => m.kind === MessageKind.GOAWAY),
      5000,
      'three answers (or a GOAWAY)',
    );
    assert.equal(
      got.find((m) => m.kind === MessageKind.GOAWAY),
      undefined,
      `no GOAWAY: ${got.map((m) => m.kind).join(',')}`,
    );
    assert.equal(got.filter((m) => m.kind === MessageKind.PONG).length, 7, 'every PING answered');
    s.destroy();
  });
});

describe('plain-framing heartbeat and idle detection', () => {
  test('the user heartbeat frame is sent when idle; a silent peer is aborted with heartbeat-timeout', async () => {
    const srv = await listen();
    raw.push(srv);
    const hb = Buffer.from('{"type":"heartbeat"}');
    const conn = await Connection.connect({
      port: srv.port,
      framing: parseFraming('ascii:20'),
      heartbeat: { intervalMs: 80, timeoutMs: 400, frame: hb },
    });
    const peer = await srv.nextSocket();
    let echoed = 0;
    let received = '';
    peer.on('data', (d: Buffer) => {
      received += d.toString();
      if (echoed < 3) {
        echoed++;
        peer.write(d); // answer the first three heartbeats, then go silent
      }
    });
    const t0 = performance.now();
    const info = await conn.closed;
    const elapsed = performance.now() - t0;
    assert.match(received, /^00000000000000000020\{"type":"heartbeat"\}/);
    assert.equal(info.reason, 'heartbeat-timeout');
    assert.equal(info.error?.code, 'ERR_HEARTBEAT_TIMEOUT');
    assert.equal(info.graceful, false);
    assert.ok(elapsed >= 3 * 80 + 400 - 50, `lived while answered (${elapsed.toFixed(0)} ms)`);
  });

  test('reader, writer and all-idle events fire once per idle period; close: true closes with idle-timeout', async () => {
    const srv = await listen();
    raw.push(srv);
    const conn = await Connection.connect({
      port: srv.port,
      framing,
      idle: { readerMs: 60, writerMs: 120, allMs: 200 },
    });
    const peer = await srv.nextSocket();
    peer.resume();
    const events: string[] = [];
    conn.on('idle', (k) => events.push(k));
    await waitFor(() => events.includes('all'), 2000);
    assert.deepEqual(events, ['reader', 'writer', 'all']);
    conn.send(Buffer.from('x')); // writing clears writer- and all-idle, not reader-idle
    await waitFor(() => events.length >= 5, 2000);
    assert.deepEqual(events.slice(3), ['writer', 'all']);
    conn.abort();

    const closer = await Connection.connect({ port: srv.port, framing, idle: { allMs: 50, close: true } });
    const p2 = await srv.nextSocket();
    p2.resume();
    p2.on('end', () => p2.end());
    const info = await closer.closed;
    assert.equal(info.reason, 'idle-timeout');
    assert.equal(info.graceful, true);
  });
});

describe('heartbeat settings', () => {
  test("presets hold the sources' detection windows; the idle budget derives and checks the interval", () => {
    assert.deepEqual(HEARTBEAT_PRESETS.standard, { intervalMs: 10_000, timeoutMs: 30_000 });
    assert.deepEqual(HEARTBEAT_PRESETS.strict, { intervalMs: 2_000, timeoutMs: 6_000 });
    assert.ok(
      HEARTBEAT_PRESETS.standard.timeoutMs >= 30_000 && HEARTBEAT_PRESETS.standard.timeoutMs <= 40_000,
    );
    assert.ok(HEARTBEAT_PRESETS.strict.timeoutMs >= 6_000 && HEARTBEAT_PRESETS.strict.timeoutMs <= 9_000);
    const nginx = resolveHeartbeat(undefined, 60_000);
    assert.deepEqual(nginx.timing, { intervalMs: 20_000, timeoutMs: 60_000 });
    assert.equal(nginx.warning, undefined);
    const bad = resolveHeartbeat({ intervalMs: 90_000, timeoutMs: 270_000 }, 60_000);
    assert.match(bad.warning ?? '', /not below the path's idle budget/);
    assert.match(resolveHeartbeat(false, 350_000).warning ?? '', /heartbeat is off/);
    assert.throws(() => resolveHeartbeat({ intervalMs: 100, timeoutMs: 50 }), {
      code: 'ERR_INVALID_ARGUMENT',
    });
  });

  test('the client warns when its heartbeat cannot keep the path open', async () => {
    const server = createServer({ handlers: { echo: (p) => p } });
    servers.push(server);
    const { port } = await server.listen();
    const c = new (await import('../../src/client/client.js')).Client({
      port,
      heartbeat: { intervalMs: 5000, timeoutMs: 15_000 },
      idleBudgetMs: 3000,
    });
    const warning = new Promise<string>((r) => c.once('warning', r));
    await c.open();
    clients.push(c);
    assert.match(await warning, /idle budget 3000 ms/);
  });
});

describe('reconnection', () => {
  test('status iterator: disconnected with reason, reconnecting with attempt and delay, reconnected', async () => {
    let server = createServer({ handlers: { echo: (p) => p } });
    servers.push(server);
    const { port } = await server.listen();
    const c = await connect({ port, reconnect: { initialDelayMs: 50, maxDelayMs: 200 } });
    clients.push(c);
    const statuses: ClientStatus[] = [];
    const it = c.status();
    const reading = (async () => {
      for await (const s of it) {
        statuses.push(s);
        if (s.type === 'reconnected') break;
      }
    })();
    server.destroy();
    // A few refused attempts, backing off: wait for the second to be scheduled.
    await waitFor(
      () => statuses.filter((s) => s.type === 'reconnecting').length >= 2,
      10_000,
      'two attempts',
    );
    server = createServer({ handlers: { echo: (p) => p } });
    servers.push(server);
    await server.listen({ port });
    await reading;
    assert.equal(statuses[0]?.type, 'disconnected');
    assert.equal((statuses[0] as { info: { reason: string } }).info.reason, 'remote-reset');
    const attempts = statuses.filter((s) => s.type === 'reconnecting') as Array<{
      attempt: number;
      delayMs: number;
    }>;
    assert.ok(attempts.length >= 2, `several attempts while the server was down (${attempts.length})`);
    assert.deepEqual(
      attempts.map((a) => a.attempt),
      attempts.map((_, i) => i + 1),
    );
    for (const a of attempts) assert.ok(a.delayMs >= 0 && a.delayMs <= 200);
    assert.equal(statuses.at(-1)?.type, 'reconnected');
    assert.equal(await c.request('echo', 'back'), 'back');
  });
});
