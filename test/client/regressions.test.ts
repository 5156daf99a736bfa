/**
 * Regressions of the reconnecting client found when it was split into a session and its
 * supervisor (the Structure issue, part 2). Each test is named after the defect it pins and
 * failed on the code before the split.
 */

import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { type Client, type ClientStatus, connect } from '../../src/client/client.js';
import { parseFraming } from '../../src/codec/index.js';
import { Connection } from '../../src/connection/connection.js';
import { ConnectionClosedError, InvalidArgumentError, RequestNotSentError } from '../../src/errors.js';
import { type Message, MessageKind } from '../../src/protocol/types.js';
import { encodeMessage } from '../../src/protocol/wire.js';
import { createServer, type Server } from '../../src/server/server.js';
import { MAX_RETRY_HINT_MS } from '../../src/util/backoff.js';
import { MAX_TIMER_MS } from '../../src/util/check.js';
import { type TestServer, waitFor } from '../helpers.js';
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

const respond = (conn: Connection, id: number, body: string) =>
  conn.sendParts(
    encodeMessage({ kind: MessageKind.RESPONSE, id, payload: Buffer.from(JSON.stringify(body)) }),
  );

const goaway = (lastId: number): Message => ({
  kind: MessageKind.GOAWAY,
  lastId,
  retryAfterMs: 0,
  reason: 'ERR_SHUTTING_DOWN',
  message: 'bye',
});

/** Settles with `value` when `p` settles first, or with `late` after `ms` (a hang turned into a failure). */
function within<T>(p: Promise<T>, ms: number, late: string): Promise<T | string> {
  let t: NodeJS.Timeout | undefined;
  const guard = new Promise<string>((r) => {
    t = setTimeout(() => r(late), ms);
  });
  return Promise.race([p, guard]).finally(() => clearTimeout(t));
}

describe('close({ graceMs })', () => {
  test('close({ graceMs }) with a request the server never answers resolves after the grace period; the request fails with ConnectionClosedError', async () => {
    const server = createServer({ handlers: { never: () => new Promise(() => {}) } });
    servers.push(server);
    const { port } = await server.listen();
    const c = await connect({ port, heartbeat: false });
    clients.push(c);
    const outcome = c.request('never', null, { timeoutMs: 0 }).then(
      () => 'answered',
      (e: unknown) => e,
    );
    await waitFor(() => server.inflightCount === 1, 2000, 'the request to reach the handler');
    const t0 = performance.now();
    // The guard only turns the old hang into a failure; the close itself is awaited as an event.
    const closed = await within(
      c.close({ graceMs: 100 }).then(() => 'closed'),
      5000,
      'still pending after 5 s',
    );
    assert.equal(closed, 'closed');
    const ms = performance.now() - t0;
    assert.ok(ms >= 95, `waited out the grace period (${ms.toFixed(0)} ms)`);
    const err = await outcome;
    assert.ok(err instanceof ConnectionClosedError, String(err));
    assert.ok(!(err instanceof RequestNotSentError), 'it was sent: the server may have run it');
    assert.equal(err.reason, 'local-graceful');
    await waitFor(() => server.connectionCount === 0, 2000, 'the server to see the close');
  });

  test('close({ graceMs }) against a peer that never answers nor closes its side is bounded by closeTimeoutMs', async () => {
    const s = await scriptedServer(raw, (_conn, m) => m.kind === MessageKind.REQUEST || undefined, true);
    const c = await connect({ port: s.port, heartbeat: false, connection: { closeTimeoutMs: 300 } });
    clients.push(c);
    const outcome = c.request('x', null, { timeoutMs: 0 }).then(
      () => 'answered',
      (e: unknown) => e,
    );
    const closed = await within(
      c.close({ graceMs: 50 }).then(() => 'closed'),
      5000,
      'still pending after 5 s',
    );
    assert.equal(closed, 'closed');
    const err = await outcome;
    assert.ok(err instanceof ConnectionClosedError, String(err));
    assert.equal(err.reason, 'close-timeout');
  });

  test('close() fails a request still waiting for a connection with RequestNotSentError at once', async () => {
    const server = createServer({ handlers: { x: () => 1 } });
    servers.push(server);
    const { port } = await server.listen();
    const c = await connect({ port, heartbeat: false, reconnect: { initialDelayMs: 60_000 } });
    const down = new Promise((r) => c.once('disconnect', r));
    server.destroy();
    await down;
    const queued = c.request('x', null, { timeoutMs: 0 });
    await c.close({ graceMs: 1000 });
    await assert.rejects(queued, RequestNotSentError);
  });
});

describe('status events', () => {
  test("'reconnecting' is emitted after 'disconnect', also when the server sends GOAWAY", async () => {
    const handlers = { x: () => 1 };
    const first = createServer({ handlers });
    servers.push(first);
    const { port } = await first.listen();
    const c = await connect({ port, heartbeat: false, reconnect: { initialDelayMs: 20, maxDelayMs: 50 } });
    clients.push(c);
    const events: string[] = [];
    for (const e of ['goaway', 'disconnect', 'reconnecting', 'reconnect'] as const)
      c.on(e, () => events.push(e));
    const statuses: ClientStatus['type'][] = [];
    const it = c.status();
    const reading = (async () => {
      for await (const s of it) {
        statuses.push(s.type);
        if (s.type === 'reconnected') break;
      }
    })();
    const back = new Promise<void>((r) => c.once('reconnect', () => r()));
    await first.close({ graceMs: 100 }); // GOAWAY (retry after 100 ms), then the close
    const second = createServer({ handlers });
    servers.push(second);
    await second.listen({ port });
    await back;
    await reading;
    assert.equal(events[0], 'goaway');
    assert.equal(events[1], 'disconnect', events.join(' → '));
    assert.equal(events[2], 'reconnecting', events.join(' → '));
    assert.equal(events.at(-1), 'reconnect');
    assert.deepEqual(statuses.slice(0, 3), ['goaway', 'disconnected', 'reconnecting'], statuses.join(' → '));
    assert.equal(await c.request('x'), 1);
  });
});

describe('GOAWAY', () => {
  test('a second GOAWAY is ignored: the requests the first one accepted are answered where they are, not sent again', async () => {
    const seenOn = new Map<number, number>();
    const s = await scriptedServer(raw, (conn, m, n) => {
      if (m.kind !== MessageKind.REQUEST) return;
      seenOn.set(n, (seenOn.get(n) ?? 0) + 1);
      if (n > 1) {
        respond(conn, m.id, 'again');
        return true;
      }
      if (seenOn.get(1) === 2) {
        // Both read: the first GOAWAY accepts both; a second one (lastId 0) must not undo that.
        conn.sendParts(encodeMessage(goaway(m.id)));
        conn.sendParts(encodeMessage(goaway(0)));
        setImmediate(() => {
          respond(conn, m.id - 1, 'first');
          respond(conn, m.id, 'first');
          void conn.close();
        });
      }
      return true;
    });
    const c = await connect({ port: s.port, heartbeat: false, reconnect: { initialDelayMs: 5 } });
    clients.push(c);
    const goaways: string[] = [];
    c.on('goaway', (reason) => goaways.push(reason));
    const back = new Promise<void>((r) => c.once('reconnect', () => r()));
    const answers = await Promise.all([c.request('a'), c.request('b')]);
    assert.deepEqual(answers, ['first', 'first']);
    await back;
    // One request on the new connection: it is the only one that connection ever sees.
    assert.equal(await c.request('c'), 'again');
    assert.equal(seenOn.get(2), 1, 'nothing the server accepted was sent again');
    assert.deepEqual(goaways, ['ERR_SHUTTING_DOWN']);
  });
});

describe('stats', () => {
  test('JSON.stringify(client.stats()) works: TCP_INFO byte counters are numbers, not BigInt', async () => {
    const server = createServer({ handlers: { x: () => 1 } });
    servers.push(server);
    const { port } = await server.listen();
    const c = await connect({ port, heartbeat: false });
    clients.push(c);
    await c.request('x');
    const parsed = JSON.parse(JSON.stringify(c.stats()));
    assert.equal(parsed.connected, true);
    const info = parsed.connection.tcpInfo;
    if (info !== undefined) {
      assert.equal(typeof info.bytesAcked, 'number');
      assert.equal(typeof info.bytesReceived, 'number');
      assert.ok(info.bytesAcked > 0);
    }
    const conn = c.connection as Connection;
    assert.deepEqual(JSON.parse(JSON.stringify(conn.stats())).id, conn.id);
    assert.equal(typeof JSON.parse(JSON.stringify(server.stats())), 'object');
  });
});

describe('timers past 2^31-1 ms (red-team F4, F9)', () => {
  /** A GOAWAY with the largest hint the u32 wire field carries (~49.7 days). */
  const hugeGoaway: Message = {
    kind: MessageKind.GOAWAY,
    lastId: 0,
    retryAfterMs: 0xffff_ffff,
    reason: 'ERR_SHUTTING_DOWN',
    message: 'come back in 49 days',
  };
  const reconnect = { initialDelayMs: 5, maxDelayMs: 5 };
  const nthReconnecting = (c: Client, n: number) =>
    new Promise<unknown[]>((r) =>
      c.on('reconnecting', (...a: unknown[]) => {
        if (a[0] === n) r(a);
      }),
    ) as Promise<[number, number]>;

  test('regression F9: a GOAWAY hint above 2^31-1 ms on a live session makes the client wait (at most 10 min), not reconnect in a loop', async () => {
    let accepted = 0;
    let first: Connection | undefined;
    const s = await scriptedServer(raw, (conn, _m, n) => {
      accepted = n;
      if (n === 1) first = conn;
      return undefined;
    });
    const c = await connect({ port: s.port, heartbeat: false, reconnect });
    clients.push(c);
    const reconnecting = nthReconnecting(c, 1);
    first?.sendParts(encodeMessage(hugeGoaway));
    const [, delay] = await reconnecting;
    // Before the fix the delay was the raw hint (4294967295 ms + jitter), which setTimeout turned
    // into 1 ms: 733 reconnects in 2 s. Now the hint is capped and the wait is a real one.
    assert.ok(delay <= MAX_RETRY_HINT_MS + reconnect.maxDelayMs, `delay ${delay}`);
    assert.ok(delay >= MAX_RETRY_HINT_MS - 60_000, `delay ${delay} still honours the hint`);
    assert.equal(accepted, 1, 'one connection, no storm');
  });

  test('regression F9: a refusal at HELLO with a hint above 2^31-1 ms is capped too', async () => {
    let accepted = 0;
    let first: Connection | undefined;
    const s = await scriptedServer(raw, (conn, m, n) => {
      accepted = n;
      if (n === 1) first = conn;
      if (n === 1 || m.kind !== MessageKind.HELLO) return undefined;
      // The reconnect is refused at HELLO with the largest hint there is.
      conn.sendParts(encodeMessage(hugeGoaway));
      void conn.close();
      return true;
    });
    const c = await connect({ port: s.port, heartbeat: false, reconnect });
    clients.push(c);
    const reconnecting = nthReconnecting(c, 2);
    // One good session, then a GOAWAY without a hint: the client comes back at once.
    first?.sendParts(encodeMessage(goaway(0)));
    void first?.close();
    const [, delay] = await reconnecting;
    assert.ok(delay <= MAX_RETRY_HINT_MS + reconnect.maxDelayMs, `delay ${delay}`);
    assert.ok(delay >= MAX_RETRY_HINT_MS - 60_000, `delay ${delay} still honours the hint`);
    assert.equal(accepted, 2, 'the good session and the refused attempt, no storm');
  });

  test('regression F4: connectTimeoutMs, requestTimeoutMs and a request timeoutMs above 2^31-1 are refused, not turned into 1 ms', async () => {
    // A server that accepts and never answers HELLO: before the fix connectTimeoutMs 2^31 gave up
    // after ~4 ms with ERR_CONNECT_TIMEOUT.
    const silent = await scriptedServer(raw, () => true);
    await assert.rejects(connect({ port: silent.port, connectTimeoutMs: 2 ** 31, reconnect: false }), {
      code: 'ERR_INVALID_ARGUMENT',
    });
    await assert.rejects(
      Connection.connect({ port: silent.port, framing, connectTimeoutMs: 2 ** 31 }),
      InvalidArgumentError,
    );
    await assert.rejects(connect({ port: silent.port, requestTimeoutMs: 2 ** 32 + 5, reconnect: false }), {
      code: 'ERR_INVALID_ARGUMENT',
    });
    const server = createServer({ handlers: { x: () => 1 } });
    servers.push(server);
    const { port } = await server.listen();
    const c = await connect({ port, heartbeat: false, connectTimeoutMs: MAX_TIMER_MS });
    clients.push(c);
    for (const bad of [2 ** 31, 2 ** 31 + 1000, 1e300]) {
      await assert.rejects(async () => c.request('x', null, { timeoutMs: bad }), {
        code: 'ERR_INVALID_ARGUMENT',
      });
    }
    // The largest timer, and "none", still work.
    assert.equal(await c.request('x', null, { timeoutMs: MAX_TIMER_MS }), 1);
    assert.equal(await c.request('x', null, { timeoutMs: Number.POSITIVE_INFINITY }), 1);
    assert.equal(await c.request('x', null, { timeoutMs: 0 }), 1);
  });
});
