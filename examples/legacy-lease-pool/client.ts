/**
 * Calling a legacy "length header + JSON" service through longlink's lease pool. The service has
 * no request ids, so a connection carries one request at a time: the pool lends each caller a
 * connection of its own, checks it on return, pings idle ones, drops the ones the service closes,
 * and reports a borrower that never gives one back.
 *
 *   node dist/examples/legacy-lease-pool/client.js --port 7300
 */
import { EventEmitter, once } from 'node:events';
import { parseArgs } from 'node:util';
import { type Connection, createConnectionPool, parseFraming } from 'longlink';

const { values: args } = parseArgs({
  options: {
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string', default: '7300' },
  },
});

/** One message of the service's protocol: a JSON body (the pool's framing adds the header). */
const json = (message: object) => Buffer.from(JSON.stringify(message));
const parse = (frame: Buffer) =>
  JSON.parse(frame.toString('utf8')) as { ok: boolean; [key: string]: unknown };

let pings = 0;
const probes = new EventEmitter(); // 'ping' after each validate round trip, for the demo to wait on
const pool = createConnectionPool({
  host: args.host,
  port: Number(args.port),
  framing: parseFraming('u32be'), // a 4-byte big-endian body length, then the body
  min: 1,
  max: 4, // at most 4 connections: callers beyond that wait their turn
  acquireTimeoutMs: 2_000,
  // A round trip the service understands. Run before lending a connection idle for more than
  // validateAfterIdleMs (after the built-in check of the kernel's TCP state), and every
  // keepaliveIntervalMs on idle ones — which also keeps the service's idle timeout at bay.
  validate: async (conn: Connection) => {
    pings++;
    conn.send(json({ op: 'ping' }));
    const [pong] = (await once(conn, 'frame', { signal: AbortSignal.timeout(500) })) as [Buffer];
    probes.emit('ping');
    return parse(pong).ok;
  },
  validateAfterIdleMs: 500,
  keepaliveIntervalMs: 250,
  // A lease held longer than this is reported with the stack of its acquire(), and taken back.
  leakDetectionMs: 1_000,
  reclaimLeaked: true,
});
const destroyed: string[] = [];
pool.on('destroy', (_conn, reason) => destroyed.push(reason));

let requests = 0;
/** One request, one answer: acquire, send, await the next frame, release. */
async function call(message: object) {
  requests++;
  return parse(await pool.request(json(message)));
}

// 1. A burst: 40 callers at once share at most 4 connections.
const accounts = ['1001', '1002', '1003'];
const answers = await Promise.all(
  Array.from({ length: 40 }, (_, i) => call({ op: 'balance', account: accounts[i % 3] })),
);
console.log(
  `burst: ${answers.filter((a) => a.ok).length}/40 balances answered over ${pool.stats().size} connections`,
);

// 2. A teller session: the service keeps the login on the connection, so the whole exchange must
//    happen on one. use() lends it for the function's duration (and destroys it if that throws a
//    connection error).
const transfer = await pool.use(async (_conn, lease) => {
  const steps = [
    { op: 'login', teller: 'ada' },
    { op: 'transfer', from: '1001', to: '1003', cents: 2_500 },
    { op: 'balance', account: '1003' },
    { op: 'logout' },
  ];
  const out = [];
  for (const step of steps) {
    requests++;
    out.push(parse(await lease.request(json(step))));
  }
  return out;
});
console.log(
  `teller session: ${transfer.map((a) => (a.ok ? 'ok' : a.error)).join(', ')}; 1003 now holds ${transfer[2]!.cents} cents`,
);

// 3. Idle: the keepalive pings every idle connection through validate (watch the service: no
//    connection reaches its idle timeout).
const idle = pool.stats().idle;
const target = pings + idle;
while (pings < target) await once(probes, 'ping');
console.log(`idle: ${idle} idle connections pinged by the keepalive (${pings} pings so far)`);

// 4. The service closes connections behind the pool's back (a restart, a rotation): idle ones are
//    dropped the moment their FIN arrives, without waiting for a borrower to find them dead.
const before = destroyed.length;
const { closed } = (await call({ op: 'rotate' })) as unknown as { closed: number };
while (destroyed.length < before + closed) await once(pool, 'destroy');
console.log(
  `rotate: the service closed ${closed} connections; the pool dropped them (${destroyed.slice(before).join(', ')})`,
);
const again = await Promise.all(Array.from({ length: 20 }, () => call({ op: 'balance', account: '1003' })));
console.log(
  `after the rotation: ${again.filter((a) => a.ok).length}/20 answered, ${pool.stats().size} connections open`,
);

// 5. A leak: a lease acquired and never released. After leakDetectionMs the pool reports it with
//    the stack of the acquire() and, with reclaimLeaked, closes the connection and frees its slot.
pool.on('leak', (info) => {
  const where = info.stack.split('\n').find((line) => line.includes('legacy-lease-pool')) ?? '?';
  console.log(
    `leak: a lease held for ${Math.round(info.heldMs)} ms, acquired ${where.trim()}; reclaimed: ${info.reclaimed}`,
  );
});
const forgotten = await pool.acquire();
requests++;
await forgotten.request(json({ op: 'balance', account: '1001' })); // …and no release()
await once(pool, 'leak');
console.log(`the forgotten lease is active: ${forgotten.active}`);

// 6. What the pool did, then a graceful drain (FIN on every connection).
const endpoint = pool.stats().endpoints[0]!;
console.log(
  `pool: ${requests} requests; ${endpoint.totals.created} connections created, ${endpoint.totals.destroyed} destroyed, ` +
    `${endpoint.totals.acquired} leases, ${endpoint.totals.leaks} leak`,
);
await pool.drain();
console.log('drained');
