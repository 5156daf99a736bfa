/**
 * An internal RPC service: a small pricing service. Run two (or more) of them; the client spreads
 * its requests over all through one shared pool. Each logs through a pino-shaped logger and serves
 * Prometheus metrics, its connections and a live dashboard on an admin port.
 *
 *   node dist/examples/rpc-service/server.js --name a --port 7101 --admin-port 9101
 *   node dist/examples/rpc-service/server.js --name b --port 7102 --admin-port 9102
 */
import { setTimeout as delay } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { createServer, enableMetrics, type Handler, type Logger, serveAdmin } from 'longlink';
import {
  ERR_BAD_QTY,
  ERR_UNKNOWN_SKU,
  type Method,
  type PricingApi,
  type Quote,
  type QuoteRequest,
  type ServerInfo,
} from './api.js';

const { values: args } = parseArgs({
  options: {
    name: { type: 'string', default: 'a' },
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string', default: '7101' },
    'admin-port': { type: 'string', default: '9101' },
  },
});

/**
 * longlink logs nothing unless given a logger of pino's shape: pass `pino()` itself, or, as here,
 * a few lines of JSON to stderr. It logs listening, refusals, failed handlers, shutdown.
 */
const line =
  (level: string) =>
  (obj: object, msg?: string): void => {
    process.stderr.write(`${JSON.stringify({ level, server: args.name, msg, ...obj })}\n`);
  };
const logger: Logger = { debug: () => {}, info: line('info'), warn: line('warn'), error: line('error') };

/** Prices in cents, by SKU. */
const CATALOG = new Map([
  ['apple', 45],
  ['bread', 320],
  ['cheese', 780],
  ['coffee', 1150],
]);

/** A handler that throws an error with a `code` (and `details`) answers the request with them. */
class ServiceError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly details?: unknown,
  ) {
    super(message);
  }
}

const handlers = {
  'catalog.list': (): PricingApi['catalog.list']['result'] => [...CATALOG.keys()],
  'price.quote': (params, ctx): Quote => {
    const { sku, qty } = params as QuoteRequest;
    const cents = CATALOG.get(sku);
    if (cents === undefined) throw new ServiceError(ERR_UNKNOWN_SKU, `no such product: ${sku}`, { sku });
    if (!Number.isInteger(qty) || qty < 1) throw new ServiceError(ERR_BAD_QTY, 'qty is a whole number ≥ 1');
    // Ten or more: 10 % off.
    const totalCents = Math.round(cents * qty * (qty >= 10 ? 0.9 : 1));
    // ctx.metadata: what the caller attached to this request (a tenant, a traceparent …).
    return { sku, qty, totalCents, server: args.name, tenant: ctx.metadata.tenant ?? '-' };
  },
  'price.forecast': async (params, ctx): Promise<PricingApi['price.forecast']['result']> => {
    const { sku, workMs } = params as PricingApi['price.forecast']['params'];
    // The caller's remaining time travels with the request (ctx.timeoutMs) and ctx.signal aborts
    // when it passes: the work stops instead of finishing for nobody.
    console.log(`forecast ${sku}: ${workMs} ms of work, the caller waits ${ctx.timeoutMs ?? '?'} ms`);
    try {
      await delay(workMs, undefined, { signal: ctx.signal });
    } catch (err) {
      if (ctx.signal.aborted) console.log(`forecast ${sku}: abandoned, the caller's deadline passed`);
      throw err;
    }
    return { sku, cents: Math.round((CATALOG.get(sku) ?? 0) * 1.03) };
  },
  'server.info': (): ServerInfo => ({
    name: args.name,
    pid: process.pid,
    uptimeS: Math.round(process.uptime()),
  }),
} satisfies Record<Method, Handler>; // every method of the contract, and nothing else

const server = createServer({ name: `pricing-${args.name}`, handlers, logger });

const { address, port } = await server.listen({ host: args.host, port: Number(args.port) });
// Metrics need prom-client (an optional peer: npm install prom-client).
const metrics = await enableMetrics({ servers: [server] });
const admin = await serveAdmin(server, { host: '127.0.0.1', port: Number(args['admin-port']), metrics });
console.log(`pricing ${args.name} listening on ${address}:${port}, metrics at ${admin.url}metrics`);

async function stop(): Promise<void> {
  // GOAWAY to every client: requests already read are answered, then each connection closes.
  const report = await server.close({ graceMs: 5_000 });
  await admin.close();
  metrics.close();
  console.log(
    `pricing ${args.name} stopped: ${report.connections} connections, ${report.closedGracefully} closed gracefully, ${report.unanswered} requests unanswered`,
  );
}
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
