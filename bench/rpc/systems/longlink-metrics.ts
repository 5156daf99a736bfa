/**
 * longlink with its metrics on (`--only longlink,longlink+metrics`): enableMetrics() in the server
 * process (watching the server) and in the client process (watching the client), each scraped
 * once a second as a Prometheus would be, only faster. Otherwise the same as longlink.ts.
 */

import { connect, createServer, enableMetrics, type LonglinkMetrics } from '../../../src/index.js';
import type { Body, Payload, RpcClient } from '../common.js';

/** LONGLINK_BENCH_METRICS=server|client|both (default both): which process turns the metrics on. */
const where = process.env.LONGLINK_BENCH_METRICS ?? 'both';

/** Scrapes every second for the life of the process (the scrape's own cost is part of the figure). */
function scrape(metrics: LonglinkMetrics): void {
  setInterval(() => void metrics.metrics(), 1000).unref();
}

export async function startServer(_payload: Payload): Promise<number> {
  const server = createServer({ handlers: { echo: (params: unknown) => params } });
  if (where !== 'client') scrape(await enableMetrics({ servers: [server] }));
  const addr = await server.listen({ port: 0, host: '127.0.0.1' });
  return addr.port;
}

export async function startClient(port: number, payload: Payload): Promise<RpcClient> {
  const client = await connect({ host: '127.0.0.1', port, codec: payload === 'json' ? 'json' : 'raw' });
  if (where !== 'server') {
    const metrics = await enableMetrics({ clients: [client] });
    scrape(metrics);
  }
  return {
    call: (body: Body): Promise<unknown> => client.request('echo', body),
    close: () => client.close(),
  };
}
