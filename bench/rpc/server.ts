/**
 * Server half of one benchmark run: `node dist/bench/rpc/server.js SYSTEM PAYLOAD`.
 * Starts SYSTEM's echo server on 127.0.0.1:0, prints `{"port":N}` on stdout, and serves until it is
 * killed or its stdin closes (so it never outlives a driver that died without killing it).
 */

import { exitWithParent, isPayload, isSystemName, loadSystem } from './common.js';

const [name = '', payload = ''] = process.argv.slice(2);
if (!isSystemName(name) || !isPayload(payload)) {
  process.stderr.write('usage: node dist/bench/rpc/server.js SYSTEM json|binary\n');
  process.exit(2);
}

exitWithParent();

const system = await loadSystem(name);
const port = await system.startServer(payload);
process.stdout.write(`${JSON.stringify({ port })}\n`);
