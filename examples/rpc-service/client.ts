/**
 * A caller of the pricing service: one shared pool over every server (requests carry ids, so each
 * connection carries many at once), a batch of concurrent typed quotes carrying metadata, a typed
 * error, a deadline the server honours, and the client's own metrics on /metrics.
 *
 *   node dist/examples/rpc-service/client.js --endpoints 127.0.0.1:7101,127.0.0.1:7102
 *
 * `--stay` keeps it (and its /metrics) up after the batch, until Ctrl-C.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseArgs } from 'node:util';
import { createClientPool, enableMetrics, RemoteError, RequestTimeoutError } from 'longlink';
import { call, ERR_UNKNOWN_SKU } from './api.js';

const { values: args } = parseArgs({
  options: {
    endpoints: { type: 'string', default: '127.0.0.1:7101,127.0.0.1:7102' },
    requests: { type: 'string', default: '200' },
    tenant: { type: 'string', default: 'shop-eu' },
    concurrency: { type: 'string', default: '16' },
    'metrics-port': { type: 'string', default: '9200' },
    stay: { type: 'boolean', default: false },
  },
});
const endpoints = args.endpoints.split(',').map((hostPort) => {
  const i = hostPort.lastIndexOf(':');
  return { host: hostPort.slice(0, i), port: Number(hostPort.slice(i + 1)) };
});

const pool = createClientPool({
  endpoints,
  connectionsPerEndpoint: 2, // N connections per server, opened as load grows
  requestTimeoutMs: 2_000, // and any other connect() option: heartbeat, credential, codec …
});
pool.on('goaway', (endpoint, reason) => console.log(`${endpoint} is draining (${reason})`));

// The client's side of the metrics: requests by method and outcome, their durations, the pool.
const metrics = await enableMetrics({ pools: { pricing: pool } });
const scrape = http.createServer(async (req, res) => {
  if (req.url !== '/metrics') {
    res.writeHead(404).end();
    return;
  }
  res.setHeader('content-type', metrics.contentType);
  res.end(await metrics.metrics());
});
await new Promise<void>((resolve) => scrape.listen(Number(args['metrics-port']), '127.0.0.1', resolve));
console.log(`client metrics at http://127.0.0.1:${(scrape.address() as AddressInfo).port}/metrics`);

async function stop(): Promise<void> {
  await pool.close(); // answers in flight arrive, then every connection closes gracefully
  metrics.close();
  scrape.closeAllConnections();
  await new Promise((resolve) => scrape.close(resolve));
  console.log('client stopped');
}

const skus = await call(pool, 'catalog.list', undefined);
const tenants = new Set<string>();
const total = Number(args.requests);
const byServer = new Map<string, number>();
let totalCents = 0;
let next = 0;
const started = performance.now();
// `concurrency` callers, each asking for the next quote as soon as it has its answer.
await Promise.all(
  Array.from({ length: Number(args.concurrency) }, async () => {
    while (next < total) {
      const i = next++;
      const quote = await call(
        pool,
        'price.quote',
        { sku: skus[i % skus.length]!, qty: 1 + (i % 12) },
        { metadata: { tenant: args.tenant } }, // the handler reads it as ctx.metadata
      );
      tenants.add(quote.tenant);
      byServer.set(quote.server, (byServer.get(quote.server) ?? 0) + 1);
      totalCents += quote.totalCents;
    }
  }),
);
const ms = performance.now() - started;
const spread = [...byServer].map(([server, n]) => `${server}=${n}`).join(' ');
console.log(
  `quotes: ${total} in ${ms.toFixed(0)} ms, total ${(totalCents / 100).toFixed(2)}; by server: ${spread}; tenant seen by the servers: ${[...tenants].join(',')}`,
);

// The service's own error codes arrive as RemoteError, with their details.
try {
  await call(pool, 'price.quote', { sku: 'caviar', qty: 1 });
} catch (err) {
  if (!(err instanceof RemoteError && err.code === ERR_UNKNOWN_SKU)) throw err;
  console.log(`caviar: ${err.code} ${JSON.stringify(err.details)}`);
}

// Deadlines: the request's timeout goes to the server with it. A forecast that fits is answered;
// one that does not fails here with RequestTimeoutError and is abandoned there (ctx.signal).
const fast = await call(pool, 'price.forecast', { sku: 'coffee', workMs: 20 }, { timeoutMs: 2_000 });
console.log(`forecast coffee: ${fast.cents} cents`);
try {
  await call(pool, 'price.forecast', { sku: 'cheese', workMs: 5_000 }, { timeoutMs: 200 });
} catch (err) {
  if (!(err instanceof RequestTimeoutError)) throw err;
  console.log(`forecast cheese: ${err.code} (${err.message})`);
}

const stats = pool.stats();
console.log(
  `pool: ${stats.connections} connections over ${stats.endpoints.length} endpoints, ${stats.totals.requests} requests`,
);

if (args.stay) {
  console.log('staying up for /metrics; Ctrl-C to stop');
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
} else {
  await stop();
}
