/**
 * A legacy "length header + JSON" service — the kind of peer longlink's lease pool is for. It is
 * written with plain node:net, as a foreign service would be, and knows nothing of longlink:
 *
 *   +----------------------+------------------------------+
 *   | body length (u32 BE) | body: one JSON object        |
 *   +----------------------+------------------------------+
 *
 * No request ids: on each connection it reads one request, writes its answer, reads the next. A
 * teller logs in on a connection before making transfers (state that lives on the connection),
 * and connections idle for `--idle-timeout` ms are closed, as such services do.
 *
 *   node dist/examples/legacy-lease-pool/legacy-service.js --port 7300
 */
import net from 'node:net';
import { parseArgs } from 'node:util';

const { values: args } = parseArgs({
  options: {
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string', default: '7300' },
    'idle-timeout': { type: 'string', default: '1000' },
  },
});
const MAX_BODY = 64 * 1024;

/** Balances in cents. */
const accounts = new Map([
  ['1001', 50_000],
  ['1002', 12_000],
  ['1003', 0],
]);

type Request =
  | { op: 'ping' }
  | { op: 'balance'; account: string }
  | { op: 'login'; teller: string }
  | { op: 'transfer'; from: string; to: string; cents: number }
  | { op: 'logout' }
  | { op: 'rotate' };

/** One connection's state: the service's idea of a session. */
interface Session {
  teller: string | undefined;
}

const sockets = new Set<net.Socket>();
let requests = 0;
let pings = 0;
let connections = 0;

function handle(req: Request, session: Session, socket: net.Socket): object {
  if (req.op === 'ping') {
    pings++;
    return { ok: true };
  }
  requests++;
  switch (req.op) {
    case 'balance': {
      const cents = accounts.get(req.account);
      return cents === undefined ? { ok: false, error: 'no such account' } : { ok: true, cents };
    }
    case 'login':
      session.teller = req.teller;
      return { ok: true };
    case 'logout':
      session.teller = undefined;
      return { ok: true };
    case 'transfer': {
      if (session.teller === undefined) return { ok: false, error: 'login first' };
      const from = accounts.get(req.from);
      const to = accounts.get(req.to);
      if (from === undefined || to === undefined) return { ok: false, error: 'no such account' };
      if (from < req.cents) return { ok: false, error: 'insufficient funds' };
      accounts.set(req.from, from - req.cents);
      accounts.set(req.to, to + req.cents);
      return { ok: true, teller: session.teller };
    }
    case 'rotate': {
      // Maintenance: close every other connection (FIN), as a service does before a restart.
      const others = [...sockets].filter((s) => s !== socket);
      for (const s of others) s.end();
      console.log(`rotate: closing ${others.length} other connections`);
      return { ok: true, closed: others.length };
    }
    default:
      return { ok: false, error: 'unknown op' };
  }
}

function write(socket: net.Socket, answer: object): void {
  const body = Buffer.from(JSON.stringify(answer));
  const header = Buffer.alloc(4);
  header.writeUInt32BE(body.length);
  socket.write(Buffer.concat([header, body]));
}

const server = net.createServer((socket) => {
  connections++;
  sockets.add(socket);
  const session: Session = { teller: undefined };
  let buffered = Buffer.alloc(0);
  socket.setTimeout(Number(args['idle-timeout']), () => socket.end());
  socket.on('data', (chunk) => {
    // TCP is a byte stream: a chunk may hold half a header, or several messages.
    buffered = Buffer.concat([buffered, chunk]);
    while (buffered.length >= 4) {
      const length = buffered.readUInt32BE(0);
      if (length > MAX_BODY) return void socket.destroy();
      if (buffered.length < 4 + length) return;
      const body = buffered.subarray(4, 4 + length);
      buffered = buffered.subarray(4 + length);
      let req: Request;
      try {
        req = JSON.parse(body.toString('utf8')) as Request;
      } catch {
        return void socket.destroy();
      }
      write(socket, handle(req, session, socket));
    }
  });
  socket.on('error', () => {});
  socket.on('close', () => sockets.delete(socket));
});

server.listen(Number(args.port), args.host, () => {
  const { address, port } = server.address() as net.AddressInfo;
  console.log(
    `legacy service listening on ${address}:${port} (u32be length + JSON; idle connections closed after ${args['idle-timeout']} ms)`,
  );
});

function stop(): void {
  server.close();
  for (const s of sockets) s.end();
  console.log(
    `legacy service stopped: served ${requests} requests and ${pings} pings on ${connections} connections`,
  );
}
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
