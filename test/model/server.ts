/**
 * The model test's server, run as its own process (dist/test/model/server.js) so that it can be
 * frozen with SIGSTOP, killed, and restarted on the same port, and so that the client's process
 * stays quiet: nothing but the client's own sockets and timers wakes its event loop, which is what
 * lets the model see a clock that went stale while the loop slept.
 *
 * argv[2]: JSON { log: path, gen, heartbeat: false | { intervalMs, timeoutMs } }; `gen` numbers the
 * processes of one run (connection ids restart in each process: `conn` below is `gen:id`).
 * stdin: one JSON command a line, each answered on stdout by one JSON line with the same `id`:
 *   { id, cmd: 'listen', port }          → { id, port }      a new server (port 0 the first time)
 *   { id, cmd: 'close', graceMs }        → { id, report }    GOAWAY, drain, close (the listener too)
 *   { id, cmd: 'destroy' }               → { id }            every connection aborted, listener closed
 *   { id, cmd: 'push', count }           → { id, sent }      `count` NOTIFYs to every ready connection
 *   { id, cmd: 'exit' }                  → (exits 0)
 * Nothing else is written to stdout: a line the client's loop has to read would wake it.
 *
 * What the invariants need is appended to the log file with synchronous writes, so it survives a
 * SIGKILL: one JSON line per event —
 *   { ev: 'exec', k }                     a handler ran request key k
 *   { ev: 'c2s', conn, seq }              a NOTIFY from the client arrived on connection conn
 *   { ev: 's2c', conn, n }                push number n (1, 2, … per connection) was sent on conn
 *
 * Handlers (params always carry the request's key `k`, the result echoes it):
 *   echo · delay {ms} · hang (answers only when cancelled) · ignore (never answers, ignores
 *   CANCEL) · fail (throws) · push {count, delayMs, follow?} (waits, pushes, answers)
 */

import { appendFileSync } from 'node:fs';
import type { ConnectionContext, HeartbeatSetting, Server } from '../../src/index.js';
import { createServer } from '../../src/index.js';

interface Options {
  log: string;
  gen: number;
  heartbeat: HeartbeatSetting;
}

interface Params {
  k: string;
  ms?: number;
  count?: number;
  delayMs?: number;
  follow?: unknown;
}

const opts = JSON.parse(process.argv[2] ?? '{}') as Options;
// Bounded whatever happens to the test that started it.
setTimeout(() => process.exit(3), 300_000).unref();

const log = (o: object): void => appendFileSync(opts.log, `${JSON.stringify(o)}\n`);
const reply = (o: object): void => {
  process.stdout.write(`${JSON.stringify(o)}\n`);
};

/** Ready connections (all servers of this process), and the pushes sent on each so far. */
const ready = new Map<string, { ctx: ConnectionContext; n: number }>();

function pushTo(conn: string, follow: unknown): boolean {
  const r = ready.get(conn);
  if (r === undefined) return false;
  try {
    // false would only say the queue is past its high-water mark: the NOTIFY is queued all the same.
    r.ctx.notify('s2c', { conn, n: r.n + 1, follow });
  } catch {
    return false; // closed under us: nothing was sent, the numbering stays contiguous
  }
  r.n++;
  log({ ev: 's2c', conn, n: r.n });
  return true;
}

const never = new Promise<never>(() => {});
const connOf = (id: string): string => `${opts.gen}:${id}`;

function build(): Server {
  const server = createServer({
    name: 'model-server',
    heartbeat: opts.heartbeat,
    // The client's heartbeat interval is short here: do not call it a ping flood.
    minPingIntervalMs: 1,
    handlerTimeoutMs: 0,
    handlers: {
      echo: (p) => {
        log({ ev: 'exec', k: (p as Params).k });
        return p;
      },
      delay: (p, ctx) => {
        const { k, ms = 0 } = p as Params;
        log({ ev: 'exec', k });
        return new Promise((resolve, reject) => {
          const t = setTimeout(() => resolve({ k }), ms);
          ctx.signal.addEventListener('abort', () => {
            clearTimeout(t);
            reject(ctx.signal.reason);
          });
        });
      },
      hang: (p, ctx) => {
        log({ ev: 'exec', k: (p as Params).k });
        return new Promise((_resolve, reject) => {
          ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason));
        });
      },
      ignore: (p) => {
        log({ ev: 'exec', k: (p as Params).k });
        return never;
      },
      fail: (p) => {
        log({ ev: 'exec', k: (p as Params).k });
        throw new Error('fails by design');
      },
      push: (p, ctx) => {
        const { k, count = 1, delayMs = 0, follow } = p as Params;
        log({ ev: 'exec', k });
        return new Promise((resolve, reject) => {
          const t = setTimeout(() => {
            for (let i = 0; i < count; i++) pushTo(connOf(ctx.connectionId), follow);
            resolve({ k });
          }, delayMs);
          ctx.signal.addEventListener('abort', () => {
            clearTimeout(t);
            reject(ctx.signal.reason);
          });
        });
      },
    },
  });
  server.on('ready', (ctx) => ready.set(connOf(ctx.connectionId), { ctx, n: 0 }));
  server.on('disconnect', (c) => ready.delete(connOf(c.id)));
  server.on('notify', (topic, payload, ctx) => {
    if (topic === 'c2s')
      log({ ev: 'c2s', conn: connOf(ctx.connectionId), seq: (payload as { seq: number }).seq });
  });
  return server;
}

let server: Server | undefined;

async function handle(c: { id: number; cmd: string; port?: number; graceMs?: number; count?: number }) {
  switch (c.cmd) {
    case 'listen': {
      server = build();
      const addr = await server.listen({ host: '127.0.0.1', port: c.port ?? 0 });
      reply({ id: c.id, port: addr.port });
      return;
    }
    case 'close': {
      const report = await server?.close({ graceMs: c.graceMs ?? 0 });
      reply({ id: c.id, report });
      return;
    }
    case 'destroy': {
      const s = server;
      s?.destroy();
      reply({ id: c.id });
      return;
    }
    case 'push': {
      let sent = 0;
      for (const conn of [...ready.keys()]) {
        for (let i = 0; i < (c.count ?? 1); i++) if (pushTo(conn, undefined)) sent++;
      }
      reply({ id: c.id, sent });
      return;
    }
    case 'exit':
      process.exit(0);
      return;
    default:
      reply({ id: c.id, error: `unknown command ${c.cmd}` });
  }
}

let buf = '';
process.stdin.setEncoding('utf8').on('data', (d: string) => {
  buf += d;
  for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
    const line = buf.slice(0, i);
    buf = buf.slice(i + 1);
    const c = JSON.parse(line) as { id: number; cmd: string };
    handle(c).catch((err: unknown) => reply({ id: c.id, error: String(err) }));
  }
});
process.stdin.on('end', () => process.exit(0));
