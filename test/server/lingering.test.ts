// Work a peer starts outlives what it can see of it: a CANCEL, a handler timeout or a close answers
// a request at once, but a handler that ignores its signal runs on; an authenticate keeps running
// after its connection left. These tests pin that such work still counts (maxInFlight, the
// admission slot, maxAuthenticating) until it has settled, so a client cannot multiply it by
// cancelling, timing out or reconnecting (red team F1, F10), and the answers and timers at the edges
// that once went wrong (F3, F4, F11).
import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { after, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { type Client, connect } from '../../src/client/client.js';
import { InvalidArgumentError } from '../../src/errors.js';
import { RemoteError } from '../../src/protocol/errors.js';
import { createServer, type Server } from '../../src/server/server.js';
import { RefusedError } from '../../src/session/client-session.js';
import { Deadlines } from '../../src/util/deadlines.js';
import { waitFor } from '../helpers.js';
import { helloFrame, type RawPeer, rawConnect } from './edge-harness.js';

const servers: Server[] = [];
const clients: Client[] = [];
const peers: RawPeer[] = [];
after(async () => {
  for (const p of peers) p.destroy();
  for (const c of clients) c.destroy();
  for (const s of servers) await s.close({ graceMs: 0 });
});

/** Handlers that ignore their signal and end only when the test says so; counts what runs. */
function stubborn() {
  const pending: Array<() => void> = [];
  const state = { running: 0, peak: 0, aborted: 0 };
  const handler = (_p: unknown, ctx: { signal: AbortSignal }) => {
    state.running++;
    state.peak = Math.max(state.peak, state.running);
    ctx.signal.addEventListener('abort', () => state.aborted++);
    return new Promise<string>((resolve) => {
      pending.push(() => {
        state.running--;
        resolve('late');
      });
    });
  };
  const releaseAll = () => {
    for (const r of pending.splice(0)) r();
  };
  return { state, handler, releaseAll };
}

async function start(options: Parameters<typeof createServer>[0]): Promise<{ server: Server; port: number }> {
  const server = createServer(options);
  servers.push(server);
  const { port } = await server.listen({ port: 0 });
  return { server, port };
}

function codeOf(p: Promise<unknown>): Promise<string> {
  return p.then(
    () => 'ok',
    (e: unknown) => (e instanceof RemoteError ? e.code : ((e as { code?: string }).code ?? String(e))),
  );
}

describe('work that outlives its answer still counts', () => {
  test('regression (F1): cancelled requests whose handlers run on count toward maxInFlight', async () => {
    const s = stubborn();
    const { port } = await start({ handlers: { hold: s.handler }, maxInFlight: 4 });
    const c = await connect({ port, reconnect: false });
    clients.push(c);
    for (let i = 0; i < 4; i++) {
      const ac = new AbortController();
      const p = codeOf(c.request('hold', i, { signal: ac.signal, timeoutMs: 30_000 }));
      await waitFor(() => s.state.running === i + 1, 10_000, `handler ${i + 1} running`);
      ac.abort();
      assert.equal(await p, 'ERR_ABORTED');
      await waitFor(() => s.state.aborted === i + 1, 10_000, `handler ${i + 1} told to stop`);
    }
    // Four handlers still run although every one of their requests was answered (cancelled).
    assert.equal(await codeOf(c.request('hold', 5, { timeoutMs: 30_000 })), 'ERR_TOO_MANY_REQUESTS');
    assert.equal(s.state.peak, 4, 'no fifth handler ran');
    s.releaseAll();
    await waitFor(() => s.state.running === 0, 10_000, 'handlers done');
    const next = c.request('hold', 6, { timeoutMs: 30_000 });
    await waitFor(() => s.state.running === 1, 10_000, 'a new handler runs once the old ones ended');
    s.releaseAll();
    assert.equal(await next, 'late');
  });

  test('regression (F1): a closed connection keeps its slot while its handlers run; reconnecting cannot start more', async () => {
    const s = stubborn();
    const { server, port } = await start({
      handlers: { hold: s.handler },
      maxConnections: 2,
      maxInFlight: 2,
    });
    let refusedAt = -1;
    for (let round = 0; round < 4 && refusedAt < 0; round++) {
      let c: Client;
      try {
        c = await connect({ port, reconnect: false });
      } catch (err) {
        assert.ok(err instanceof RefusedError, `refused, not ${String(err)}`);
        refusedAt = round;
        break;
      }
      clients.push(c);
      const before = s.state.running;
      void c.request('hold', 1, { timeoutMs: 60_000 }).catch(() => {});
      void c.request('hold', 2, { timeoutMs: 60_000 }).catch(() => {});
      await waitFor(() => s.state.running === before + 2, 10_000, 'two handlers running');
      const gone = once(server, 'disconnect');
      c.destroy();
      await gone;
    }
    assert.equal(refusedAt, 2, 'the third connection is refused: two closed ones still hold their slots');
    assert.equal(s.state.peak, 4, 'at most maxConnections × maxInFlight handlers ran');
    assert.equal(server.stats().lingering, 2);
    await waitFor(() => server.stats().connections === 0, 10_000, 'the refused one closed too');
    assert.equal(s.state.aborted, 4, 'every handler was told its connection closed');
    s.releaseAll();
    await waitFor(() => server.stats().lingering === 0, 10_000, 'slots released when the handlers settled');
    const c = await connect({ port, reconnect: false });
    clients.push(c);
    const last = c.request('hold', 3, { timeoutMs: 60_000 });
    await waitFor(() => s.state.running === 1, 10_000, 'served again');
    s.releaseAll();
    assert.equal(await last, 'late');
  });

  test('regression (F1, legacy): a legacy connection closed mid-handler keeps its slot; its ctx.signal aborts', async () => {
    const pending: Array<() => void> = [];
    let aborted = 0;
    let running = 0;
    const { server, port } = await start({
      maxConnections: 1,
      legacy: {
        framing: 'line',
        handler: (_f, ctx) => {
          running++;
          ctx.signal.addEventListener('abort', () => aborted++);
          return new Promise((resolve) =>
            pending.push(() => {
              running--;
              resolve('late');
            }),
          );
        },
      },
    });
    const first = net.connect(port, '127.0.0.1');
    await once(first, 'connect');
    first.write('hello\n');
    await waitFor(() => running === 1, 10_000, 'the handler runs');
    // A reset: after a FIN the server would keep its side open to answer what was sent.
    const gone = once(server, 'disconnect');
    first.resetAndDestroy();
    await gone;
    assert.equal(aborted, 1, 'the handler was told');
    assert.equal(server.stats().lingering, 1);
    const second = await rawConnect(port);
    peers.push(second);
    await second.closed;
    assert.equal(
      server.stats().refused['max-connections'],
      1,
      'refused while the first still holds its slot',
    );
    for (const r of pending.splice(0)) r();
    await waitFor(() => server.stats().lingering === 0, 10_000, 'slot released');
    const third = await rawConnect(port);
    peers.push(third);
    third.write('again\n');
    await waitFor(() => running === 1, 10_000, 'served again');
    for (const r of pending.splice(0)) r();
  });

  test('regression (F10): authenticate gets a signal that aborts when the client leaves, and at most maxAuthenticating run', async () => {
    const pending: Array<(v: boolean) => void> = [];
    let aborted = 0;
    const { server, port } = await start({
      maxAuthenticating: 3,
      handlers: { echo: (p: unknown) => p },
      authenticate: (_cred, ctx) => {
        ctx.signal.addEventListener('abort', () => aborted++);
        return new Promise<boolean>((resolve) => pending.push(resolve));
      },
    });
    for (let i = 0; i < 3; i++) {
      const p = await rawConnect(port);
      peers.push(p);
      p.write(helloFrame({ credential: 'x' }));
      await waitFor(() => pending.length === i + 1, 10_000, `authenticate ${i + 1} called`);
      p.destroy();
      await waitFor(() => aborted === i + 1, 10_000, `authenticate ${i + 1} told the client left`);
    }
    assert.equal(server.stats().authenticating, 3);
    const fourth = await rawConnect(port);
    peers.push(fourth);
    fourth.write(helloFrame({ credential: 'x' }));
    await fourth.closed;
    assert.deepEqual(fourth.messages(), ['GOAWAY:ERR_TOO_MANY_CONNECTIONS']);
    assert.equal(pending.length, 3, 'no fourth check started');
    assert.equal(server.stats().refused.authenticating, 1);
    for (const r of pending.splice(0)) r(false);
    await waitFor(() => server.stats().authenticating === 0, 10_000, 'the checks settled');
    const fifth = await rawConnect(port);
    peers.push(fifth);
    fifth.write(helloFrame({ credential: 'x' }));
    await waitFor(() => pending.length === 1, 10_000, 'a new check starts');
    pending[0]?.(true);
    await waitFor(() => fifth.messages().includes('HELLO'), 10_000, 'admitted');
  });
});

describe('answers and timers at the edges', () => {
  test('regression (F11): an error whose text is longer than the frame limit is still answered, cut to fit', async () => {
    const { port } = await start({
      maxFrameLength: 1024,
      handlers: {
        wordy: async () => {
          throw new Error('é'.repeat(600)); // 1,200 bytes of UTF-8: more than the whole frame limit
        },
      },
    });
    const c = await connect({ port, reconnect: false });
    clients.push(c);
    const err = await c.request('wordy', null, { timeoutMs: 10_000 }).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(err instanceof RemoteError, `a RemoteError, not ${String(err)}`);
    assert.equal(err.code, 'ERR_HANDLER');
    assert.ok(err.message.length > 100 && err.message.length < 600, 'the text, cut on a character boundary');
    assert.ok(!err.message.includes('\uFFFD'), 'no broken character');
  });

  test('regression (F3): close({ graceMs }) refuses a bad value, and Infinity waits for the answer instead of aborting', async () => {
    const s = stubborn();
    const { server, port } = await start({ handlers: { hold: s.handler } });
    assert.throws(() => server.close({ graceMs: -1 }), InvalidArgumentError);
    assert.throws(() => server.close({ graceMs: Number.NaN }), InvalidArgumentError);
    assert.throws(() => server.close({ graceMs: 2 ** 31 }), InvalidArgumentError);
    const c = await connect({ port, reconnect: false });
    clients.push(c);
    const answer = c.request('hold', null, { timeoutMs: 60_000 });
    await waitFor(() => s.state.running === 1, 10_000, 'handler running');
    const closing = server.close({ graceMs: Number.POSITIVE_INFINITY });
    // The grace timer would have fired after 1 ms (an Infinity delay overflows): give it a turn.
    await sleep(20);
    s.releaseAll();
    assert.equal(await answer, 'late');
    const report = await closing;
    assert.equal(report.aborted, 0);
    assert.equal(report.unanswered, 0);
  });

  test('regression (F4): a deadline further off than a timer can wait does not fire at once (no overflow warning)', async () => {
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(w.name);
    process.on('warning', onWarning);
    try {
      const d = new Deadlines();
      let fired = false;
      d.add(2 ** 32, () => (fired = true), undefined);
      // An overflowing timer fires after 1 ms, so before this 20 ms one whatever the load.
      await sleep(20);
      assert.equal(fired, false);
      assert.equal(d.pending, 1);
      d.clear();
    } finally {
      process.off('warning', onWarning);
    }
    assert.ok(!warnings.includes('TimeoutOverflowWarning'), warnings.join(','));
  });
});
