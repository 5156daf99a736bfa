/**
 * Protocol 1.1 on the server: REQUEST metadata reaches the handler as ctx.metadata, and the
 * caller's remaining timeout bounds the handler (its signal aborts, the answer is ERR_TIMEOUT),
 * as gRPC's grpc-timeout does. A 1.0 client is served as before.
 */

import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { MessageKind } from '../../src/protocol/types.js';
import { createServer, type Server } from '../../src/server/server.js';
import type { RequestContext } from '../../src/server/server-peer.js';
import { waitFor } from '../helpers.js';
import { frame, helloFrame, type RawPeer, rawConnect } from './edge-harness.js';

const servers: Server[] = [];
const peers: RawPeer[] = [];
after(() => {
  for (const p of peers) p.destroy();
  for (const s of servers) s.destroy();
});

async function session(version?: number): Promise<{ p: RawPeer; aborted: string[] }> {
  const aborted: string[] = [];
  const server = createServer({
    handlers: {
      meta: (_p, ctx: RequestContext) => ({
        metadata: { ...ctx.metadata },
        timeoutMs: ctx.timeoutMs ?? null,
      }),
      wait: (_p, ctx: RequestContext) =>
        new Promise((_resolve, reject) => {
          ctx.signal.addEventListener('abort', () => {
            aborted.push(String((ctx.signal.reason as Error).message));
            reject(ctx.signal.reason);
          });
        }),
    },
  });
  servers.push(server);
  const { port } = await server.listen();
  const p = await rawConnect(port);
  peers.push(p);
  const hello = helloFrame({});
  if (version !== undefined) hello.writeUInt16BE(version, 6);
  p.write(hello);
  await waitFor(() => p.messages().includes('HELLO'), 5000, 'HELLO answer');
  return { p, aborted };
}

describe('protocol 1.1 on the server', () => {
  test('ctx.metadata and ctx.timeoutMs carry what the caller sent', async () => {
    const { p } = await session();
    p.write(
      frame({
        kind: MessageKind.REQUEST,
        id: 1,
        method: 'meta',
        payload: Buffer.alloc(0),
        metadata: { traceparent: '00-abc-def-01', tenant: 'acme' },
        timeoutMs: 2500,
      }),
    );
    await waitFor(() => p.responses().length === 1, 5000, 'answer');
    assert.deepEqual(p.responses()[0]?.payload, {
      metadata: { traceparent: '00-abc-def-01', tenant: 'acme' },
      timeoutMs: 2500,
    });
  });

  test("the caller's timeout aborts the handler's signal and answers ERR_DEADLINE_EXCEEDED", async () => {
    const { p, aborted } = await session();
    const t0 = performance.now();
    p.write(
      frame({ kind: MessageKind.REQUEST, id: 1, method: 'wait', payload: Buffer.alloc(0), timeoutMs: 100 }),
    );
    await waitFor(() => p.messages().includes('ERROR:ERR_DEADLINE_EXCEEDED'), 5000, 'ERR_DEADLINE_EXCEEDED');
    const took = performance.now() - t0;
    assert.ok(took >= 95, `answered after ${took.toFixed(0)} ms, before the caller's 100 ms`);
    assert.match(aborted[0] ?? '', /caller's deadline/);
  });

  test('a 1.0 client: no metadata, no timeout, flag bits ignored', async () => {
    const { p } = await session(0x0100);
    const req = frame({ kind: MessageKind.REQUEST, id: 1, method: 'meta', payload: Buffer.alloc(0) });
    req[5] = 0x03; // flags byte (after the 4-byte length prefix): set, but meaningless in 1.0
    p.write(req);
    await waitFor(() => p.responses().length === 1, 5000, 'answer');
    assert.deepEqual(p.responses()[0]?.payload, { metadata: {}, timeoutMs: null });
  });
});
