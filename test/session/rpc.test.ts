/** Server and client over real loopback sockets: matching, timeouts, cancellation, loss, limits. */

import assert from 'node:assert/strict';
import net from 'node:net';
import { after, describe, test } from 'node:test';
import { type Client, connect, RequestTimeoutError } from '../../src/client/client.js';
import { ConnectionClosedError, RequestNotSentError } from '../../src/errors.js';
import { RemoteError } from '../../src/protocol/errors.js';
import { MessageKind, PROTOCOL_VERSION } from '../../src/protocol/types.js';
import { decodeMessage, encodeMessage } from '../../src/protocol/wire.js';
import { createServer, type Server, type ServerOptions } from '../../src/server/server.js';
import { RefusedError } from '../../src/session/client-session.js';
import { readTcpTable } from '../../src/sys/tcp-table.js';
import { beforeTimer, sleep, waitFor } from '../helpers.js';

const servers: Server[] = [];
const clients: Client[] = [];
after(async () => {
  for (const c of clients) await c.close({ graceMs: 0 }).catch(() => {});
  for (const s of servers) s.destroy();
});

async function start(options: ServerOptions) {
  const server = createServer(options);
  servers.push(server);
  const { port } = await server.listen({ port: 0 });
  return { server, port };
}

async function client(port: number, options: Partial<Parameters<typeof connect>[0]> = {}) {
  const c = await connect({ port, ...options });
  clients.push(c);
  return c;
}

/** Frames a protocol message (or raw bytes) with the u32be length prefix, for hand-made peers. */
function framed(body: Buffer): Buffer {
  const h = Buffer.alloc(4);
  h.writeUInt32BE(body.length);
  return Buffer.concat([h, body]);
}

function helloBytes(version = PROTOCOL_VERSION): Buffer {
  return framed(
    Buffer.concat(encodeMessage({ kind: MessageKind.HELLO, version, params: { codecs: ['json'] } })),
  );
}

/** Reads framed protocol messages from a raw socket. */
function messages(socket: net.Socket) {
  const out: ReturnType<typeof decodeMessage>[] = [];
  let buf = Buffer.alloc(0);
  socket.on('data', (d: Buffer) => {
    buf = Buffer.concat([buf, d]);
    while (buf.length >= 4 && buf.length >= 4 + buf.readUInt32BE(0)) {
      const n = buf.readUInt32BE(0);
      out.push(decodeMessage(buf.subarray(4, 4 + n)));
      buf = buf.subarray(4 + n);
    }
  });
  return out;
}

async function rawConnect(port: number): Promise<net.Socket> {
  const s = net.connect(port, '127.0.0.1');
  s.on('error', () => {});
  await new Promise((r) => s.once('connect', r));
  return s;
}

describe('requests and responses', () => {
  test('10,000 concurrent requests on one connection are each matched to their own response', async () => {
    const { port } = await start({
      handlers: {
        // Answer out of order: a random delay per request.
        echo: (p) => new Promise((r) => setTimeout(() => r(p), Math.random() * 20)),
      },
    });
    const c = await client(port);
    const N = 10_000;
    const results = await Promise.all(
      Array.from({ length: N }, (_, i) => c.request('echo', { i, tag: `t${i}` })),
    );
    for (let i = 0; i < N; i++) assert.deepEqual(results[i], { i, tag: `t${i}` });
    assert.equal(c.pendingCount, 0);
  });

  test('raw codec carries bytes unchanged', async () => {
    const { port } = await start({ handlers: { rev: (p) => Buffer.from(p as Buffer).reverse() } });
    const c = await client(port, { codec: 'raw' });
    const out = await c.request<Buffer>('rev', Buffer.from([1, 2, 3]));
    assert.deepEqual([...out], [3, 2, 1]);
  });

  test('unknown method, handler errors and undecodable params come back as typed RemoteErrors', async () => {
    const { port } = await start({
      handlers: {
        boom: () => {
          throw new Error('kaput');
        },
        coded: async () => {
          throw Object.assign(new Error('no such user'), { code: 'E_NOT_FOUND', details: { id: 7 } });
        },
      },
    });
    const c = await client(port);
    await assert.rejects(
      c.request('nope'),
      (e: unknown) => e instanceof RemoteError && e.code === 'ERR_METHOD_NOT_FOUND',
    );
    await assert.rejects(c.request('boom'), { code: 'ERR_HANDLER', message: 'kaput' });
    await assert.rejects(c.request('coded'), (e: unknown) => {
      assert.ok(e instanceof RemoteError);
      assert.equal(e.code, 'E_NOT_FOUND');
      assert.deepEqual(e.details, { id: 7 });
      return true;
    });
    // The connection survives all of that.
    assert.equal(c.connected, true);
  });

  test('a request timeout rejects with ERR_REQUEST_TIMEOUT and cancels the handler on the server', async () => {
    let aborted: unknown;
    const { port } = await start({
      handlers: {
        hang: (_p, ctx) =>
          new Promise((_r, reject) => {
            ctx.signal.addEventListener('abort', () => {
              aborted = ctx.signal.reason;
              reject(ctx.signal.reason);
            });
          }),
      },
    });
    const c = await client(port);
    const t0 = performance.now();
    // Its deadline fires before a plain timer armed with it 400 ms later; not before 100 ms.
    await assert.rejects(
      beforeTimer(c.request('hang', null, { timeoutMs: 100 }), 500, 'the request deadline'),
      (e: unknown) => e instanceof RequestTimeoutError,
    );
    const elapsed = performance.now() - t0;
    assert.ok(elapsed >= 95, `timed out at 100 ms, not before (${elapsed.toFixed(0)})`);
    // Stopped on the server: by the client's CANCEL, or by the deadline the REQUEST carried (1.1),
    // whichever arrives first — both at the caller's deadline.
    await waitFor(() => aborted !== undefined, 2000, 'the server handler to be stopped');
    assert.ok(
      ['ERR_CANCELLED', 'ERR_DEADLINE_EXCEEDED'].includes((aborted as { code?: string }).code ?? ''),
      String((aborted as { code?: string }).code),
    );
  });

  test('an AbortSignal cancels one request; others on the connection are unaffected', async () => {
    const { port } = await start({
      handlers: { slow: (p) => new Promise((r) => setTimeout(() => r(p), 100)) },
    });
    const c = await client(port);
    const ac = new AbortController();
    const a = c.request('slow', 'a', { signal: ac.signal });
    const b = c.request('slow', 'b');
    ac.abort();
    await assert.rejects(a, { code: 'ERR_ABORTED' });
    assert.equal(await b, 'b');
    await assert.rejects(c.request('slow', 'x', { signal: AbortSignal.abort() }), { code: 'ERR_ABORTED' });
  });

  test('handler timeout on the server answers ERR_TIMEOUT and aborts the handler signal', async () => {
    let sawAbort = false;
    const { port } = await start({
      handlerTimeoutMs: 50,
      handlers: {
        hang: (_p, ctx) =>
          new Promise(() => {
            ctx.signal.addEventListener('abort', () => {
              sawAbort = true;
            });
          }),
      },
    });
    const c = await client(port);
    await assert.rejects(c.request('hang'), { code: 'ERR_TIMEOUT' });
    assert.equal(sawAbort, true);
  });

  test('notifies both ways: server push as events and as an async iterator, client notify to the server', async () => {
    const got: unknown[] = [];
    const { server, port } = await start({
      handlers: {
        subscribe: (p, ctx) => {
          for (let i = 0; i < 3; i++) ctx.notify('tick', { i, of: p });
          return 'subscribed';
        },
        seen: () => got,
      },
    });
    server.on('connection', (conn) => conn.on('frame', () => {}));
    const c = await client(port);
    const events: unknown[] = [];
    c.on('notify', (topic, payload) => events.push([topic, payload]));
    const it = c.notifications();
    assert.equal(await c.request('subscribe', 'x'), 'subscribed');
    const first = await it.next();
    assert.deepEqual(first.value, { topic: 'tick', payload: { i: 0, of: 'x' } });
    await waitFor(() => events.length === 3);
    assert.equal(server.broadcast('all', { hello: true }), 1);
    const rest = [await it.next(), await it.next(), await it.next()].map((r) => r.value?.topic);
    assert.deepEqual(rest, ['tick', 'tick', 'all']);
  });
});

describe('connection loss', () => {
  test('when the connection dies every pending request rejects at once with the close reason', async () => {
    const { server, port } = await start({ handlers: { never: () => new Promise(() => {}) } });
    const c = await client(port, { reconnect: false, requestTimeoutMs: 60_000 });
    const pending = Array.from({ length: 100 }, () => c.request('never'));
    const settled = Promise.allSettled(pending);
    await waitFor(() => server.inflightCount === 100);
    server.destroy(); // RST every connection
    // At once, not at their 60 s timeout: each fails with the close reason, none with a timeout.
    const results = await settled;
    for (const r of results) {
      assert.equal(r.status, 'rejected');
      const err = (r as PromiseRejectedResult).reason as ConnectionClosedError;
      assert.ok(err instanceof ConnectionClosedError);
      assert.equal(err.reason, 'remote-reset');
    }
  });

  test('destroy() aborts at once: pending requests fail with local-abort, the server sees a reset', async () => {
    const { server, port } = await start({ handlers: { never: () => new Promise(() => {}) } });
    const c = await client(port);
    const pending = c.request('never');
    await waitFor(() => server.inflightCount === 1);
    const serverSaw = new Promise<string>((r) => server.once('disconnect', (_c, info) => r(info.reason)));
    c.destroy();
    await assert.rejects(
      pending,
      (e: unknown) => e instanceof ConnectionClosedError && e.reason === 'local-abort',
    );
    assert.equal(await serverSaw, 'remote-reset');
    await assert.rejects(c.request('never'), { code: 'ERR_CONNECTION_CLOSED' });
  });

  test('requests made while disconnected wait for the reconnect (bounded) or fail fast, as chosen', async () => {
    const { server, port } = await start({ handlers: { echo: (p) => p } });
    const waiting = await client(port, { reconnect: { initialDelayMs: 20, maxDelayMs: 50 } });
    const failing = await client(port, {
      whenDisconnected: 'fail',
      reconnect: { initialDelayMs: 20, maxDelayMs: 50 },
    });
    server.destroy();
    await waitFor(() => !waiting.connected && !failing.connected);
    const later = waiting.request('echo', 'back', { timeoutMs: 5000 });
    await assert.rejects(failing.request('echo', 1), (e: unknown) => {
      // Never processed by any server: its own code, still a ConnectionClosedError.
      assert.ok(e instanceof RequestNotSentError && e instanceof ConnectionClosedError);
      assert.equal(e.code, 'ERR_NOT_SENT');
      return true;
    });
    await assert.rejects(waiting.request('echo', 'x', { timeoutMs: 100 }), { code: 'ERR_REQUEST_TIMEOUT' });
    const s2 = createServer({ handlers: { echo: (p) => p } });
    servers.push(s2);
    await s2.listen({ port });
    assert.equal(await later, 'back');
  });
});

describe('graceful shutdown', () => {
  test('GOAWAY under load: a server restarted on the same port three times loses no request', async () => {
    const handlers = {
      work: (p: unknown) => new Promise((r) => setTimeout(() => r(p), 5 + Math.random() * 20)),
    };
    let { server, port } = await start({ handlers });
    const c = await client(port, { reconnect: { initialDelayMs: 10, maxDelayMs: 100 } });
    let ok = 0;
    const failures: unknown[] = [];
    let stop = false;
    let seq = 0;
    // "Under load" is counted in answered requests, not in milliseconds: each phase (before the
    // first restart, after each) lasts until 200 more requests have been answered.
    let phaseEnd = 200;
    let phaseDone: () => void = () => {};
    const answered = (n: number) =>
      new Promise<void>((resolve) => {
        phaseEnd = n;
        phaseDone = resolve;
        if (ok >= n) resolve();
      });
    const worker = async () => {
      while (!stop) {
        const n = seq++;
        try {
          assert.equal(await c.request('work', n), n);
          if (++ok >= phaseEnd) phaseDone();
        } catch (err) {
          failures.push(err);
          if (failures.length > 1000) {
            // Bounded: stop, let the phase end, and the assertion below reports them.
            stop = true;
            phaseDone();
          }
        }
      }
    };
    const workers = Array.from({ length: 128 }, worker);
    await answered(200);
    for (let round = 0; round < 3; round++) {
      const report = await server.close({ graceMs: 5000 });
      assert.equal(report.aborted, 0);
      assert.equal(report.unanswered, 0);
      server = createServer({ handlers });
      servers.push(server);
      await server.listen({ port }); // same port, right away
      await answered(ok + 200);
    }
    stop = true;
    await Promise.all(workers);
    assert.deepEqual(failures, []);
    assert.ok(ok >= 800, `${ok} requests completed`);
  });

  test('close({ graceMs }) aborts what is left after the grace period and reports counts', async () => {
    const { server, port } = await start({ handlers: { never: () => new Promise(() => {}) } });
    const c = await client(port, { reconnect: false });
    const p = Promise.allSettled([c.request('never'), c.request('never')]);
    await waitFor(() => server.inflightCount === 2);
    const report = await server.close({ graceMs: 100 });
    assert.equal(report.connections, 1);
    assert.equal(report.aborted, 1);
    assert.equal(report.unanswered, 2);
    for (const r of await p) assert.equal(r.status, 'rejected');
  });

  test('a restart on the same port binds at once with TIME_WAIT sockets about', async () => {
    const { server, port } = await start({ handlers: { echo: (p) => p } });
    // Connections the server closes first: the server's side of each ends in TIME_WAIT.
    const cs = await Promise.all(Array.from({ length: 5 }, () => connect({ port, reconnect: false })));
    await Promise.all(cs.map((c, i) => c.request('echo', i)));
    await server.close({ graceMs: 1000 });
    if (process.platform === 'linux') {
      const tw = await readTcpTable({ localPort: port, state: 'TIME_WAIT' });
      assert.ok(tw.length > 0, 'TIME_WAIT sockets hold the port');
    }
    const again = createServer({ handlers: { echo: (p) => p } });
    servers.push(again);
    const addr = await again.listen({ port });
    assert.equal(addr.port, port);
    const c = await client(port);
    assert.equal(await c.request('echo', 'hi'), 'hi');
    for (const old of cs) await old.close({ graceMs: 0 });
  });
});

describe('limits and garbage', () => {
  test('connections over maxConnections are told why (GOAWAY ERR_TOO_MANY_CONNECTIONS, retry hint jittered) and closed', async () => {
    const { port } = await start({ maxConnections: 2, retryAfterMs: 250, handlers: { echo: (p) => p } });
    await client(port);
    await client(port);
    await assert.rejects(connect({ port, reconnect: false }), (e: unknown) => {
      assert.ok(e instanceof RefusedError && e instanceof RemoteError);
      assert.equal(e.code, 'ERR_TOO_MANY_CONNECTIONS');
      // The hint is jittered so a refused crowd does not come back in step: [base, 2 × base).
      assert.ok(e.retryAfterMs >= 250 && e.retryAfterMs < 500, `retryAfterMs ${e.retryAfterMs}`);
      return true;
    });
  });

  test('requests over maxInFlight get ERR_TOO_MANY_REQUESTS; the rest succeed', async () => {
    // The handlers answer only once the five over the limit were refused: no clock decides.
    let release: () => void = () => {};
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const { port } = await start({
      maxInFlight: 10,
      handlers: { slow: (p) => gate.then(() => p) },
    });
    const c = await client(port);
    const requests = Array.from({ length: 15 }, (_, i) => c.request('slow', i));
    let refused = 0;
    for (const r of requests) {
      r.catch(() => {
        if (++refused === 5) release();
      });
    }
    const results = await Promise.allSettled(requests);
    const ok = results.filter((r) => r.status === 'fulfilled').length;
    const limited = results.filter(
      (r) => r.status === 'rejected' && (r.reason as { code?: string }).code === 'ERR_TOO_MANY_REQUESTS',
    ).length;
    assert.equal(ok, 10);
    assert.equal(limited, 5);
  });

  test('a peer that connects and says nothing is closed after helloTimeoutMs', async () => {
    const { server, port } = await start({ helloTimeoutMs: 100, handlers: {} });
    const closed = new Promise<string>((r) => server.once('disconnect', (_c, info) => r(info.reason)));
    const s = await rawConnect(port);
    const got = messages(s);
    assert.equal(await closed, 'protocol-error');
    await waitFor(() => got.some((m) => m.kind === MessageKind.ERROR));
    assert.equal((got[0] as { code?: string }).code, 'ERR_HELLO_REQUIRED');
    s.destroy();
  });

  test('an oversize frame is refused with an ERROR before the body arrives, then the connection closes', async () => {
    const { server, port } = await start({ maxFrameLength: 4096, handlers: {} });
    const closed = new Promise<string>((r) => server.once('disconnect', (_c, info) => r(info.reason)));
    const s = await rawConnect(port);
    const got = messages(s);
    const h = Buffer.alloc(4);
    h.writeUInt32BE(1 << 30);
    s.write(h);
    assert.equal(await closed, 'protocol-error');
    await waitFor(() => got.length > 0);
    assert.equal((got[0] as { code?: string }).code, 'ERR_FRAME_TOO_LARGE');
    s.destroy();
  });

  test('garbage, unknown kinds, version mismatch and requests before HELLO: an ERROR, then protocol-error close', async () => {
    const cases: Array<[string, Buffer, string]> = [
      ['unknown kind', framed(Buffer.from([0x7f, 0, 1, 2, 3])), 'ERR_UNKNOWN_KIND'],
      ['malformed', framed(Buffer.from([MessageKind.REQUEST, 0, 0])), 'ERR_MALFORMED'],
      ['version mismatch', helloBytes(0x0900), 'ERR_VERSION'],
      [
        'request before HELLO',
        framed(
          Buffer.concat(
            encodeMessage({ kind: MessageKind.REQUEST, id: 1, method: 'echo', payload: Buffer.from('1') }),
          ),
        ),
        'ERR_HELLO_REQUIRED',
      ],
    ];
    const { server, port } = await start({ handlers: { echo: (p) => p } });
    for (const [name, bytes, code] of cases) {
      const closed = new Promise<string>((r) => server.once('disconnect', (_c, info) => r(info.reason)));
      const s = await rawConnect(port);
      const got = messages(s);
      s.write(bytes);
      assert.equal(await closed, 'protocol-error', name);
      await waitFor(() => got.some((m) => m.kind === MessageKind.ERROR), 2000, name);
      const err = got.find((m) => m.kind === MessageKind.ERROR) as { code: string };
      assert.equal(err.code, code, name);
      s.destroy();
    }
    // The server is still serving.
    const c = await client(port);
    assert.equal(await c.request('echo', 1), 1);
  });

  test('random garbage never crashes the server', async () => {
    const { server, port } = await start({ handlers: { echo: (p) => p } });
    for (let i = 0; i < 30; i++) {
      const s = await rawConnect(port);
      const closed = new Promise((r) => s.once('close', r));
      s.resume();
      const junk = Buffer.alloc(1 + Math.floor(Math.random() * 200));
      for (let j = 0; j < junk.length; j++) junk[j] = Math.floor(Math.random() * 256);
      s.end(junk);
      await closed;
    }
    await waitFor(() => server.connectionCount === 0);
    const c = await client(port);
    assert.equal(await c.request('echo', 'alive'), 'alive');
  });

  test('a credential check refuses with ERR_UNAUTHENTICATED', async () => {
    const { port } = await start({ authenticate: (cred) => cred === 's3cret', handlers: { echo: (p) => p } });
    await assert.rejects(connect({ port, credential: 'wrong', reconnect: false }), {
      code: 'ERR_UNAUTHENTICATED',
    });
    const c = await client(port, { credential: 's3cret' });
    assert.equal(await c.request('echo', 1), 1);
  });
});

describe("legacy mode (the sources' 20-digit ASCII header + JSON)", () => {
  test('echoes every frame in order, header and body exactly as the sources frame them', async () => {
    const { port } = await start({
      legacy: { framing: 'ascii:20', json: true, handler: (msg) => ({ echo: msg }) },
    });
    const s = await rawConnect(port);
    const bodies = [{ a: 1 }, { b: 'two' }, { c: [3] }].map((o) => Buffer.from(JSON.stringify(o)));
    // Several messages glued into one write, the way TCP delivers them.
    s.write(
      Buffer.concat(bodies.map((b) => Buffer.concat([Buffer.from(String(b.length).padStart(20, '0')), b]))),
    );
    let buf = Buffer.alloc(0);
    const replies: unknown[] = [];
    s.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 20) {
        const n = Number(buf.subarray(0, 20).toString());
        if (buf.length < 20 + n) break;
        replies.push(JSON.parse(buf.subarray(20, 20 + n).toString()));
        buf = buf.subarray(20 + n);
      }
    });
    await waitFor(() => replies.length === 3);
    assert.deepEqual(replies, [{ echo: { a: 1 } }, { echo: { b: 'two' } }, { echo: { c: [3] } }]);
    s.destroy();
  });

  test('an async handler that answers out of order still replies in request order (id-less protocol)', async () => {
    const { port } = await start({
      legacy: {
        framing: 'u32be',
        handler: async (frame) => {
          const n = Number((frame as Buffer).toString());
          await sleep(n % 2 === 0 ? 20 : 1); // even frames take longer
          return String(n * 10);
        },
      },
    });
    const s = await rawConnect(port);
    const replies: string[] = [];
    let buf = Buffer.alloc(0);
    s.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 4 && buf.length >= 4 + buf.readUInt32BE(0)) {
        replies.push(buf.subarray(4, 4 + buf.readUInt32BE(0)).toString());
        buf = buf.subarray(4 + buf.readUInt32BE(0));
      }
    });
    s.write(Buffer.concat(Array.from({ length: 10 }, (_, i) => framed(Buffer.from(String(i))))));
    await waitFor(() => replies.length === 10, 5000);
    assert.deepEqual(
      replies,
      Array.from({ length: 10 }, (_, i) => String(i * 10)),
    );
    s.destroy();
  });
});
