/**
 * longlink itself, through its public API only: `createServer({ handlers })` and
 * `connect({ codec })`, `client.request('echo', params)`.
 * json: codec 'json' (params and results are JSON values); binary: codec 'raw' (Buffers).
 */

import { connect, createServer } from '../../../src/index.js';
import type { Body, Payload, RpcClient } from '../common.js';

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
