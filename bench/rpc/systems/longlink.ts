/**
 * longlink itself, through its public API only: `createServer({ handlers })` and
 * `connect({ codec })`, `client.request('echo', params)`.
 * json: codec 'json' (params and results are JSON values); binary: codec 'raw' (Buffers).
 */

import type * as Longlink from '../../../src/index.js';
import type { Body, Payload, RpcClient } from '../common.js';

/**
 * LONGLINK_BENCH_LIB=/path/to/dist/src/index.js runs another build of the library under the same
 * harness (bench/rpc/ab.ts compares two builds that way); by default, this tree's.
 */
const { connect, createServer } = (await import(
  process.env.LONGLINK_BENCH_LIB ?? '../../../src/index.js'
)) as typeof Longlink;

export async function startServer(_payload: Payload): Promise<number> {
  const server = createServer({ handlers: { echo: (params: unknown) => params } });
  const addr = await server.listen({ port: 0, host: '127.0.0.1' });
  return addr.port;
}

export async function startClient(port: number, payload: Payload): Promise<RpcClient> {
  const client = await connect({ host: '127.0.0.1', port, codec: payload === 'json' ? 'json' : 'raw' });
  return {
    call: (body: Body): Promise<unknown> => client.request('echo', body),
    close: () => client.close(),
  };
}
