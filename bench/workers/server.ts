/**
 * The worker module of bench/workers/throughput.ts: every worker process imports it and calls its
 * default export for the server it runs (an echo; nothing else on the request path).
 */

import { createServer, type Server, type WorkerContext } from '../../src/index.js';

export default function make(_ctx: WorkerContext): Server {
  return createServer({ handlers: { echo: (p: unknown) => p }, maxConnections: 100_000 });
}
