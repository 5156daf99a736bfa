/**
 * Protocol 1.1 from the client: `request(…, { metadata })` reaches the handler as ctx.metadata,
 * the caller's remaining timeout bounds the handler (its signal aborts before the caller gives
 * up), and against a 1.0 server neither is sent. The client tracing channel lets a subscriber add
 * metadata (what OpenTelemetry does with traceparent).
 */

import assert from 'node:assert/strict';
import diagnostics from 'node:diagnostics_channel';
import { after, describe, test } from 'node:test';
import { type Client, connect } from '../../src/client/client.js';
import { parseFraming } from '../../src/codec/index.js';
import { Connection } from '../../src/connection/connection.js';
import { answerHello } from '../../src/protocol/hello.js';
import { type Message, MessageKind, type RequestMessage } from '../../src/protocol/types.js';
import { decodeMessage, encodeMessage } from '../../src/protocol/wire.js';
import { createServer, type Server } from '../../src/server/server.js';
import type { Handler, RequestContext } from '../../src/server/server-peer.js';
import type { RequestTrace } from '../../src/util/channels.js';
import { listen, type TestServer, waitFor } from '../helpers.js';

const servers: Server[] = [];
const raws: TestServer[] = [];
const clients: Client[] = [];
after(async () => {
  for (const c of clients) c.destroy();
  for (const s of servers) s.destroy();
  for (const r of raws) await r.close();
});

async function serve(handlers: Record<string, Handler>): Promise<number> {
  const server = createServer({ handlers });
  servers.push(server);
  return (await server.listen()).port;
}

async function client(port: number): Promise<Client> {
  const c = await connect({ port, reconnect: false });
  clients.push(c);
  return c;
}

describe('protocol 1.1 from the client', () => {
  test('metadata and the remaining timeout reach the handler', async () => {
    const port = await serve({
      meta: (_p, ctx: RequestContext) => ({ metadata: { ...ctx.metadata }, timeoutMs: ctx.timeoutMs }),
    });
    const c = await client(port);
    const got = (await c.request('meta', null, { timeoutMs: 5000, metadata: { tenant: 'acme' } })) as {
      metadata: Record<string, string>;
      timeoutMs: number;
    };
    assert.deepEqual(got.metadata, { tenant: 'acme' });
    assert.ok(got.timeoutMs > 4000 && got.timeoutMs <= 5000, `timeoutMs ${got.timeoutMs}`);
  });

  test("the handler's signal aborts at the caller's deadline: the server stops when the caller gives up", async () => {
    let abortedAfter = -1;
    const port = await serve({
      wait: (_p, ctx: RequestContext) =>
        new Promise((_resolve, reject) => {
          const t0 = performance.now();
          ctx.signal.addEventListener('abort', () => {
            abortedAfter = performance.now() - t0;
            reject(ctx.signal.reason);
          });
        }),
    });
    const c = await client(port);
    await assert.rejects(c.request('wait', null, { timeoutMs: 200 }), { code: 'ERR_REQUEST_TIMEOUT' });
    await waitFor(() => abortedAfter >= 0, 5000, 'the handler aborted');
    assert.ok(abortedAfter > 100 && abortedAfter < 1000, `aborted after ${abortedAfter.toFixed(0)} ms`);
  });

  test('a bad metadata key is refused at the call, with nothing sent', async () => {
    const port = await serve({ meta: () => 1 });
    const c = await client(port);
    await assert.rejects(c.request('meta', null, { metadata: { Bad: 'x' } }), {
      code: 'ERR_INVALID_ARGUMENT',
    });
    assert.equal(await c.request('meta'), 1, 'the connection is fine');
  });

  test('against a 1.0 server neither the timeout nor the metadata is sent', async () => {
    const srv = await listen();
    raws.push(srv);
    const requests: RequestMessage[] = [];
    srv.server.on('connection', (s) => {
      const conn = new Connection(s, { framing: parseFraming('u32be') });
      conn.on('frame', (f) => {
        const m: Message = decodeMessage(f); // read as 1.1: flags a 1.0 peer never sent would show
        if (m.kind === MessageKind.HELLO) {
          conn.sendParts(encodeMessage(answerHello(m, { version: 0x0100 }).reply));
        } else if (m.kind === MessageKind.REQUEST) {
          requests.push(m);
          conn.sendParts(encodeMessage({ kind: MessageKind.RESPONSE, id: m.id, payload: Buffer.from('1') }));
        }
      });
    });
    const c = await client(srv.port);
    assert.equal(await c.request('x', null, { timeoutMs: 5000, metadata: { tenant: 'acme' } }), 1);
    assert.equal(requests.length, 1);
    assert.equal(requests[0]?.flags, 0);
    assert.equal(requests[0]?.timeoutMs, undefined);
    assert.equal(requests[0]?.metadata, undefined);
  });

  test('the client tracing channel: a subscriber adds metadata at start, and sees the settlement', async () => {
    const port = await serve({ meta: (_p, ctx: RequestContext) => ctx.metadata.traceparent ?? null });
    const events: string[] = [];
    const handlers = {
      start: (m: RequestTrace) => {
        events.push(`start ${m.method}`);
        if (m.metadata !== undefined) m.metadata.traceparent = '00-trace-span-01';
      },
      end: (m: RequestTrace) => events.push(`end ${m.method}`),
      asyncStart: (m: RequestTrace) => events.push(`asyncStart ${m.method} id=${m.requestId > 0}`),
      asyncEnd: (m: RequestTrace) => events.push(`asyncEnd ${m.method} ${JSON.stringify(m.result ?? null)}`),
      error: (m: RequestTrace) => events.push(`error ${m.method}`),
    };
    const tc = diagnostics.tracingChannel<object, RequestTrace>('longlink:client:request');
    tc.subscribe(handlers);
    try {
      const c = await client(port);
      assert.equal(await c.request('meta'), '00-trace-span-01');
      assert.deepEqual(events, [
        'start meta',
        'end meta',
        'asyncStart meta id=true',
        'asyncEnd meta "00-trace-span-01"',
      ]);
      await c.request('nope').catch(() => {});
      assert.equal(events.at(-3), 'error nope');
    } finally {
      tc.unsubscribe(handlers);
    }
  });
});

describe('metadata that runs code (red team, output slab)', () => {
  /** Two servers that record the params they were sent. */
  async function two(): Promise<{ ports: number[]; seen: string[][] }> {
    const seen: string[][] = [[], []];
    const ports: number[] = [];
    for (const s of seen) {
      ports.push(
        await serve({
          echo: (p) => {
            s.push(String(p));
            return p;
          },
        }),
      );
    }
    return { ports, seen };
  }

  test('regression: a metadata getter that sends on another client does not take the request with it', async () => {
    const { ports, seen } = await two();
    const a = await client(ports[0] as number);
    const b = await client(ports[1] as number);
    let calls = 0;
    let nested: Promise<unknown> | undefined;
    const metadata = {
      get tenant() {
        calls++;
        nested ??= b.request('echo', 'from-b');
        return 'acme';
      },
    };
    assert.equal(await a.request('echo', 'from-a', { metadata }), 'from-a');
    assert.equal(await nested, 'from-b');
    assert.deepEqual(seen, [['from-a'], ['from-b']], 'each request reached its own server');
    assert.equal(calls, 1, 'the metadata was read once, when the request was made');
  });

  test('regression: a message whose encoding runs code that sends elsewhere is still written to its own connection', async () => {
    // Below the snapshot newRequest takes: a session sent a message whose metadata runs code
    // (nothing in longlink does this now; the guard in peer.ts encodeFor is what this checks).
    const { ports, seen } = await two();
    const a = await client(ports[0] as number);
    const b = await client(ports[1] as number);
    const sessionA = (a as unknown as { session: { sendWithin(m: Message): number } }).session;
    let nested: Promise<unknown> | undefined;
    const metadata = {
      get tenant() {
        nested ??= b.request('echo', 'from-b');
        return 'acme';
      },
    };
    const payload = Buffer.from(JSON.stringify('stray-from-a'));
    // Id 4242: the server answers it on A's connection, and A drops the answer it did not ask for.
    sessionA.sendWithin({ kind: MessageKind.REQUEST, id: 4242, method: 'echo', payload, metadata });
    assert.equal(await nested, 'from-b');
    assert.equal(await a.request('echo', 'after'), 'after', 'A still works');
    await waitFor(() => (seen[0] as string[]).length === 2, 5000, 'both requests of A at server 1');
    assert.deepEqual(seen, [['stray-from-a', 'after'], ['from-b']]);
  });
});
