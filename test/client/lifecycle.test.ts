/**
 * The client's life between connections, each test a bug found in review: GOAWAY timing and
 * hints, close() during a reconnect, 'fail' mode, what keeps the process alive, ping() under
 * backpressure, the server's ping floor, and options that must be refused where they are written.
 */

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import net from 'node:net';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type Client, connect } from '../../src/client/client.js';
import { parseFraming } from '../../src/codec/index.js';
import { Connection } from '../../src/connection/connection.js';
import { InvalidArgumentError, RequestNotSentError } from '../../src/errors.js';
import { answerHello } from '../../src/protocol/hello.js';
import { type Message, MessageKind } from '../../src/protocol/types.js';
import { encodeMessage } from '../../src/protocol/wire.js';
import { createServer, type Server } from '../../src/server/server.js';
import { RefusedError } from '../../src/session/client-session.js';
import { keepAliveState } from '../../src/sys/sockopt.js';
import { beforeTimer, listen, sleep, type TestServer, waitFor, withinTurn } from '../helpers.js';
import { scriptedServer } from './scripted-server.js';

const framing = parseFraming('u32be');
const servers: Server[] = [];
const raw: TestServer[] = [];
const clients: Client[] = [];
after(async () => {
  for (const c of clients) c.destroy();
  for (const s of servers) s.destroy();
  for (const s of raw) await s.close();
});

const INDEX = JSON.stringify(fileURLToPath(new URL('../../src/index.js', import.meta.url)));

/**
 * Runs `body` as an ES module in a child process, after a prelude that connects a client
 * (`client`, with `clientOptions`) to a server on an ephemeral `port` and then loses the server.
 * What keeps a process alive can only be seen from outside it.
 */
function afterServerLoss(
  clientOptions: string,
  body: string,
): { status: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string } {
  const script = `
    import net from 'node:net';
    import { spawn } from 'node:child_process';
    import { createServer, connect } from ${INDEX};
    const server = createServer({ handlers: { x: () => 1 } });
    const { port } = await server.listen({ port: 0 });
    const client = await connect({ port, heartbeat: false, ${clientOptions} });
    const down = new Promise((r) => client.once('disconnect', r));
    server.destroy();
    await down;
    ${body}
  `;
  return spawnSync(process.execPath, ['--input-type=module', '-e', script], {
    encoding: 'utf8',
    timeout: 20_000,
  });
}

const goaway = (retryAfterMs: number): Message => ({
  kind: MessageKind.GOAWAY,
  lastId: 0,
  retryAfterMs,
  reason: 'ERR_SHUTTING_DOWN',
  message: 'bye',
});

describe('GOAWAY', () => {
  test('requests handed back by a GOAWAY are re-sent no sooner than its retryAfterMs', async () => {
    let goawayAt = 0;
    const s = await scriptedServer(raw, (conn, m, n) => {
      if (m.kind !== MessageKind.REQUEST) return;
      if (n === 1) {
        goawayAt = performance.now();
        conn.sendParts(encodeMessage(goaway(400)));
        void conn.close();
      } else
        conn.sendParts(encodeMessage({ kind: MessageKind.RESPONSE, id: m.id, payload: Buffer.from('1') }));
      return true;
    });
    const c = await connect({ port: s.port, heartbeat: false });
    clients.push(c);
    assert.equal(await c.request('x', null, { timeoutMs: 5000 }), 1);
    const gap = (s.accepts[1] as number) - goawayAt;
    assert.ok(gap >= 400, `reconnected ${gap.toFixed(0)} ms after GOAWAY(retryAfterMs=400)`);
  });

  test('a GOAWAY in the same read as the HELLO answer refuses connect(), and a reconnect tries again', async () => {
    // Connections in `away` are answered and sent away at once: two frames sent in one tick,
    // which the Connection coalesces into one write.
    const away = new Set([1, 3, 4]);
    const s = await scriptedServer(raw, (conn, m, n) => {
      if (m.kind === MessageKind.HELLO && away.has(n)) {
        conn.sendParts(encodeMessage(answerHello(m, {}).reply));
        conn.sendParts(encodeMessage(goaway(0)));
        void conn.close();
        return true;
      }
      if (m.kind === MessageKind.REQUEST)
        conn.sendParts(encodeMessage({ kind: MessageKind.RESPONSE, id: m.id, payload: Buffer.from('"ok"') }));
      return undefined;
    });
    // The first connect is refused with the server's reason, as a refusal before HELLO would be.
    await assert.rejects(connect({ port: s.port, heartbeat: false }), (e: unknown) => {
      assert.ok(e instanceof RefusedError);
      assert.equal(e.code, 'ERR_SHUTTING_DOWN');
      return true;
    });
    const c = await connect({ port: s.port, heartbeat: false, reconnect: { initialDelayMs: 20 } });
    clients.push(c);
    const reconnecting: number[] = [];
    c.on('reconnecting', (attempt) => reconnecting.push(attempt));
    const back = new Promise<void>((r) => c.once('reconnect', () => r()));
    c.connection?.abort();
    // The 3rd and 4th connections are sent away during HELLO: the client is not stuck, it backs
    // off and tries again, and the 5th serves.
    await back;
    assert.equal(s.accepts.length, 5);
    assert.deepEqual(reconnecting, [1, 2, 3]);
    assert.equal(await c.request('x'), 'ok');
  });
});

describe('close() and GOAWAY', () => {
  test('requests a GOAWAY hands back while close() waits fail at once, also those with no deadline', async () => {
    let release: (() => void) | undefined;
    const s = await scriptedServer(raw, (conn, m) => {
      if (m.kind !== MessageKind.REQUEST) return;
      const body = m.payload.toString();
      if (body === '"slow"') {
        // Answered only when the test says so; meanwhile the client is closing.
        release = () =>
          conn.sendParts(encodeMessage({ kind: MessageKind.RESPONSE, id: m.id, payload: m.payload }));
        return true;
      }
      // The second request: GOAWAY that says only the first was read, so it is handed back.
      conn.sendParts(encodeMessage({ ...goaway(0), lastId: m.id - 1 } as Message));
      return true;
    });
    const c = await connect({ port: s.port, heartbeat: false });
    const slow = c.request('x', 'slow');
    await waitFor(() => release !== undefined);
    const handedBack = c.request('x', 'second', { timeoutMs: 0 });
    const closing = c.close({ graceMs: 5000 });
    await assert.rejects(handedBack, RequestNotSentError);
    release?.();
    assert.equal(await slow, 'slow');
    await closing;
  });

  test('open() on an open client adds no connection', async () => {
    const server = createServer({ handlers: { x: () => 1 } });
    servers.push(server);
    const { port } = await server.listen();
    const c = await connect({ port, heartbeat: false });
    clients.push(c);
    assert.equal(await c.open(), c);
    await sleep(50);
    assert.equal(server.connectionCount, 1);
  });
});

describe('close() and destroy() during a reconnect', () => {
  test('a HELLO under way when close() is called is abandoned: no reconnect, no live socket', async () => {
    let n = 0;
    let answered: () => void = () => {};
    const secondAnswered = new Promise<void>((r) => {
      answered = r;
    });
    const server = createServer({
      handlers: { echo: (p) => p },
      // The second connection's HELLO is answered after 300 ms.
      authenticate: () =>
        ++n === 1
          ? true
          : sleep(300).then(() => {
              answered();
              return true;
            }),
    });
    servers.push(server);
    const { port } = await server.listen();
    const c = await connect({ port, reconnect: { initialDelayMs: 1 } });
    const events: string[] = [];
    c.on('reconnect', () => events.push('reconnect'));
    c.connection?.abort();
    await waitFor(() => n === 2); // the second HELLO is waiting for its answer
    await c.close();
    events.push('closed');
    // Once the server has answered that HELLO and let go of the connection, nothing can revive it.
    await secondAnswered;
    await waitFor(() => server.connectionCount === 0, 5000);
    assert.deepEqual(events, ['closed']);
    assert.equal(c.connected, false);
    assert.equal(c.connection, undefined);
  });
});

describe('close() during a reconnect whose TCP connect hangs', () => {
  test('close() aborts the connect at once: no socket, no timer keeps the process alive', () => {
    // The reconnect's SYN goes unanswered: the port is taken over by a listener in a stopped
    // process whose accept queue is full, so the kernel drops further SYNs (as a dead host would).
    const r = afterServerLoss(
      'connectTimeoutMs: 600000, reconnect: { initialDelayMs: 200, maxDelayMs: 200 }',
      `
      const holder = spawn(process.execPath, ['-e', "const s = require('node:net').createServer(); s.listen({ port: " + port + ", host: '127.0.0.1', backlog: 1 }, () => console.log('up'))"], { stdio: ['ignore', 'pipe', 'inherit'] });
      await new Promise((r) => holder.stdout.once('data', r));
      process.kill(holder.pid, 'SIGSTOP');
      process.on('exit', () => holder.kill('SIGKILL'));
      const fillers = [];
      for (let i = 0; i < 4; i++) { const f = net.connect(port, '127.0.0.1'); f.on('error', () => {}); f.unref(); fillers.push(f); }
      const connecting = () => fillers.filter((f) => f.pending).length;
      await new Promise((r) => setTimeout(r, 500));
      console.log('fillers left in SYN: ' + connecting());
      // A connect in SYN keeps a process alive even unref'd (libuv counts the request): the
      // fillers go now; those accepted by the kernel stay in its full queue all the same.
      for (const f of fillers) f.destroy();
      const t0 = performance.now();
      process.on('exit', () => console.log('exit after close: ' + Math.round(performance.now() - t0) + ' ms'));
      await client.close();
      holder.unref();
      holder.stdout.destroy();
    `,
    );
    // connectTimeoutMs is ten minutes: had close() left the connect (or its timer) alive, the
    // process would not exit by itself, and spawnSync would kill it at its 20 s bound.
    assert.equal(r.signal, null, `the process had to be killed: ${r.stdout}`);
    assert.equal(r.status, 0, r.stderr);
    // The queue is full when some fillers never got their SYN answered: so did the reconnect.
    assert.match(r.stdout, /fillers left in SYN: [1-9]/, r.stdout);
    assert.match(r.stdout, /exit after close: \d+ ms/, r.stdout);
  });
});

describe("whenDisconnected: 'fail'", () => {
  test('fails at once while a reconnect is under way', async () => {
    const server = createServer({ handlers: { x: () => 1 } });
    servers.push(server);
    const { port } = await server.listen();
    const c = await connect({
      port,
      heartbeat: false,
      whenDisconnected: 'fail',
      reconnect: { initialDelayMs: 2000, maxDelayMs: 2000 },
    });
    clients.push(c);
    const down = new Promise((r) => c.once('disconnect', r));
    server.destroy();
    await down;
    // At once — before the event loop turns — not at the next attempt 2 s away.
    await assert.rejects(withinTurn(c.request('x'), 'the refusal'), RequestNotSentError);
  });
});

describe('what keeps the process alive', () => {
  test('a request waiting for the reconnect keeps the process alive until it settles', () => {
    const r = afterServerLoss(
      'reconnect: { initialDelayMs: 500, maxDelayMs: 500 }',
      `
      await new Promise((r) => setTimeout(r, 20));
      process.on('exit', () => console.log('pending at exit: ' + client.pendingCount));
      try { await client.request('x', null, { timeoutMs: 1500 }); console.log('settled: resolved'); }
      catch (e) { console.log('settled: ' + e.name); }
      client.destroy();
    `,
    );
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /settled: RequestTimeoutError/);
    assert.match(r.stdout, /pending at exit: 0/);
  });
});

describe('ping()', () => {
  test('resolves with the round trip also when the send queue is above its high-water mark', async () => {
    const server = createServer({ handlers: { big: () => Buffer.from('ok') } });
    servers.push(server);
    const { port } = await server.listen();
    const c = await connect({ port, codec: 'raw', heartbeat: false });
    clients.push(c);
    // More than loopback's socket buffers take: bufferedAmount stays above 64 KiB for a while.
    const req = c.request('big', Buffer.alloc(12 * 1024 * 1024));
    const rtt = await c.ping();
    await req;
    assert.ok(Number.isFinite(rtt) && rtt >= 0, `rtt ${rtt}`);
    assert.ok(c.rttMs !== undefined);
  });

  test('a PING the server leaves unanswered resolves NaN once a later one is answered', async () => {
    let pings = 0;
    const s = await scriptedServer(raw, (conn, m) => {
      if (m.kind !== MessageKind.PING) return;
      // The first PING goes unanswered (as past a rate limit); the second is answered.
      if (++pings === 2) conn.sendParts(encodeMessage({ kind: MessageKind.PONG, data: m.data }));
      return true;
    });
    const c = await connect({ port: s.port, heartbeat: false });
    clients.push(c);
    const first = c.ping();
    const second = c.ping();
    const [a, b] = await Promise.all([first, second]);
    assert.ok(Number.isNaN(a), `the unanswered PING resolves NaN (${a})`);
    assert.ok(Number.isFinite(b), `the answered one gives the round trip (${b})`);
  });
});

describe('ping() with a timeout (red team H1)', () => {
  /** A server that answers HELLO and nothing else; it counts the PINGs and keeps the last. */
  async function silent() {
    const got: Array<{ conn: Connection; data: Buffer }> = [];
    const s = await scriptedServer(raw, (conn, m) => {
      if (m.kind !== MessageKind.PING) return;
      got.push({ conn, data: m.data });
      return true;
    });
    return { port: s.port, got };
  }

  test('regression: a PING never answered resolves NaN at its timeout, not before, and not never', async () => {
    const s = await silent();
    const c = await connect({ port: s.port, heartbeat: false });
    clients.push(c);
    const t0 = performance.now();
    const rtt = await c.ping({ timeoutMs: 200 });
    const waited = performance.now() - t0;
    assert.ok(Number.isNaN(rtt), `no PONG: NaN (${rtt})`);
    assert.ok(waited >= 199, `resolved after ${waited.toFixed(1)} ms, not before its 200 ms`);
    // The late PONG finds no waiter: the next ping is not answered by it.
    const late = s.got[0] as { conn: Connection; data: Buffer };
    late.conn.sendParts(encodeMessage({ kind: MessageKind.PONG, data: late.data }));
    const next = c.ping({ timeoutMs: 200 });
    await waitFor(() => s.got.length === 2, 5000, 'the second PING');
    const second = s.got[1] as { conn: Connection; data: Buffer };
    second.conn.sendParts(encodeMessage({ kind: MessageKind.PONG, data: second.data }));
    assert.ok(Number.isFinite(await next), 'the second PING is answered by its own PONG');
  });

  test("without a timeout given, the client's requestTimeoutMs bounds it; a bad timeout is refused", async () => {
    const s = await silent();
    const c = await connect({ port: s.port, heartbeat: false, requestTimeoutMs: 150 });
    clients.push(c);
    assert.ok(Number.isNaN(await c.ping()), 'NaN at requestTimeoutMs');
    for (const bad of [-1, Number.NaN, '5' as unknown as number]) {
      await assert.rejects(c.ping({ timeoutMs: bad }), InvalidArgumentError);
    }
  });
});

describe("the server's ping floor", () => {
  test('a server heartbeat below minPingIntervalMs: a client pinging at the agreed interval is never struck', async () => {
    // The interval is the subject (100 ms, under the 1 s floor); the timeout is long so that a
    // loaded machine's stall cannot end the connection by heartbeat-timeout meanwhile.
    const server = createServer({
      handlers: { echo: (p) => p },
      heartbeat: { intervalMs: 100, timeoutMs: 5000 },
    });
    servers.push(server);
    const { port } = await server.listen();
    const c = await connect({ port, heartbeat: { intervalMs: 100, timeoutMs: 5000 } });
    clients.push(c);
    assert.deepEqual(c.stats().heartbeat, { intervalMs: 100, timeoutMs: 5000 });
    const goaways: string[] = [];
    c.on('goaway', (reason) => goaways.push(reason));
    // Ten PINGs at the agreed interval, each answered (an 'rtt' each), and no strike for any.
    let answeredPings = 0;
    await beforeTimer(
      new Promise<void>((resolve) =>
        c.on('rtt', () => {
          if (++answeredPings === 10) resolve();
        }),
      ),
      20_000,
      'ten answered PINGs',
    );
    assert.deepEqual(goaways, []);
    assert.equal(c.connected, true);
  });
});

describe('options are refused where they are written', () => {
  test('client: reconnect, timeouts, keepalive, whenDisconnected', async () => {
    const server = createServer({ handlers: { x: () => 1 } });
    servers.push(server);
    const { port } = await server.listen();
    const bad: Array<Record<string, unknown>> = [
      { reconnect: { initialDelayMs: -100 } },
      { reconnect: { initialDelayMs: Number.NaN } },
      { reconnect: { multiplier: 0.5 } },
      { reconnect: { maxDelayMs: Number.POSITIVE_INFINITY } },
      { reconnect: { maxAttempts: Number.NaN } },
      { reconnect: { maxAttempts: 0 } },
      { requestTimeoutMs: Number.NaN },
      { connectTimeoutMs: 0 },
      { whenDisconnected: 'later' },
      { connection: { keepAlive: { idleMs: Number.NaN } } },
      { connection: { keepAlive: { count: 0 } } },
      { connection: { keepAlive: { intervalMs: 40_000_000 } } },
      // HELLO carries maxFrameLength as a u32 of at least 1 KiB: outside that nothing could connect.
      { maxFrameLength: 2 ** 32 },
      { maxFrameLength: 100 },
    ];
    for (const o of bad) {
      await assert.rejects(
        connect({ port, ...o } as Parameters<typeof connect>[0]),
        InvalidArgumentError,
        JSON.stringify(o, (_k, v) => (typeof v === 'number' && !Number.isFinite(v) ? String(v) : v)),
      );
    }
    assert.equal(server.connectionCount, 0, 'nothing was opened for a refused setting');
    // Infinity is a valid maxAttempts, and a partial keepAlive keeps the other defaults.
    const c = await connect({
      port,
      reconnect: { maxAttempts: Number.POSITIVE_INFINITY },
      connection: { keepAlive: { idleMs: 5000 } },
    });
    clients.push(c);
    assert.equal(await c.request('x'), 1);
    // A request's own timeout: NaN would mean no deadline at all; Infinity says so on purpose.
    await assert.rejects(c.request('x', null, { timeoutMs: Number.NaN }), InvalidArgumentError);
    assert.equal(c.pendingCount, 0);
    assert.equal(await c.request('x', null, { timeoutMs: Number.POSITIVE_INFINITY }), 1);
    const forever = await connect({ port, requestTimeoutMs: Number.POSITIVE_INFINITY });
    clients.push(forever);
    assert.equal(await forever.request('x'), 1);
    // A keepAlive field given as undefined keeps its default, as one not given does.
    const ka = await connect({
      port,
      connection: { keepAlive: { idleMs: 5000, count: undefined } as unknown as { idleMs: number } },
    });
    clients.push(ka);
    const state = keepAliveState((ka.connection as Connection).socket);
    if (state !== undefined) assert.deepEqual([state.idleS, state.intervalS, state.count], [5, 10, 6]);
  });

  test('server: minPingIntervalMs, timeouts, maxConnections, connection options', () => {
    for (const o of [
      { minPingIntervalMs: Number.NaN },
      { minPingIntervalMs: -1000 },
      { minPingIntervalMs: 0 },
      { helloTimeoutMs: 0 },
      { handlerTimeoutMs: -1 },
      { retryAfterMs: Number.NaN },
      { maxConnections: 1.5 },
      // Checked once at createServer, not at every accepted socket.
      { connection: { keepAlive: { count: 0 } } },
      { connection: { userTimeoutMs: Number.NaN } },
      { maxFrameLength: 2 ** 32 },
    ]) {
      assert.throws(
        () => createServer({ handlers: { x: () => 1 }, ...o }),
        InvalidArgumentError,
        JSON.stringify(o),
      );
    }
  });

  test('a Connection whose constructor throws leaves the socket as it was: no heartbeat, no reset', async () => {
    const srv = await listen();
    raw.push(srv);
    const accepted = new Promise<net.Socket>((r) => srv.server.once('connection', r));
    const sock = net.connect(srv.port, '127.0.0.1');
    await new Promise((r) => sock.once('connect', r));
    const peer = await accepted;
    let received = 0;
    let peerError: string | undefined;
    peer.on('data', (d: Buffer) => {
      received += d.length;
    });
    peer.on('error', (e: NodeJS.ErrnoException) => {
      peerError = e.code;
    });
    assert.throws(
      () =>
        new Connection(sock, {
          framing,
          heartbeat: { intervalMs: 50, timeoutMs: 150, frame: Buffer.from('hb') },
          userTimeoutMs: -1,
        }),
      InvalidArgumentError,
    );
    await sleep(400); // past the would-be heartbeat and its timeout
    assert.equal(received, 0, 'no heartbeat frame was sent');
    assert.equal(sock.destroyed, false, "the caller's socket is untouched");
    assert.equal(peerError, undefined);
    sock.destroy();
    peer.destroy();
  });
});
