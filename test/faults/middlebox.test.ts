/**
 * Middleboxes that drop idle connections: nginx's stream proxy (`proxy_timeout 3s`) and haproxy in
 * TCP mode (`timeout client 3s`, `timeout server 3s`), each run here in the foreground with its own
 * config, in front of a longlink server on loopback.
 *
 * Without heartbeats an idle connection through either proxy is cut at ~3 s, and the client's
 * close reason says how (the proxy's FIN or RST). With a 1 s heartbeat the same connection carries
 * a PING/PONG every second and stays up for 60 s (LONGLINK_MIDDLEBOX_SECONDS shortens that for a
 * local run), after which a request still succeeds. All four cases run at once: the suite pays
 * the 60 s once.
 */

import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { type Client, connect } from '../../src/client/client.js';
import type { CloseInfo } from '../../src/connection/close-reason.js';
import { createServer, type Server } from '../../src/server/server.js';
import { waitFor } from '../helpers.js';
import { skipBecause } from '../skip.js';
import { accepting, ensureTools, Fixture, freePort } from './harness.js';

const IDLE_TIMEOUT_MS = 3000;
const HEARTBEAT = { intervalMs: 1000, timeoutMs: 3000 };
const SECONDS = Number(process.env.LONGLINK_MIDDLEBOX_SECONDS ?? 60);
const STREAM_MODULE = '/usr/lib/nginx/modules/ngx_stream_module.so';

const fixtures: Fixture[] = [];
const servers: Server[] = [];
const clients: Client[] = [];
const dirs: string[] = [];
after(async () => {
  for (const c of clients) await c.close({ graceMs: 0 }).catch(() => {});
  for (const f of fixtures) {
    f.kill('SIGTERM');
    // nginx and haproxy stop at once on SIGTERM; SIGKILL whatever is still there a moment later.
    await Promise.race([f.exited, new Promise((r) => setTimeout(r, 2000))]);
    f.kill('SIGKILL');
  }
  for (const s of servers) s.destroy();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

let skip: string | undefined;
if (!(Number.isFinite(SECONDS) && SECONDS > 0)) {
  throw new Error(
    `LONGLINK_MIDDLEBOX_SECONDS must be a positive number, got ${process.env.LONGLINK_MIDDLEBOX_SECONDS}`,
  );
}
if (process.platform !== 'linux') {
  skip = skipBecause(`nginx and haproxy from Debian's packages need Linux`, { kind: 'platform' });
} else {
  const missing = ensureTools('nginx', 'haproxy');
  if (missing !== undefined) skip = skipBecause(missing);
}

type ProxyKind = 'nginx' | 'haproxy';

/** Starts the proxy in the foreground on 127.0.0.1:<free port> → 127.0.0.1:upstream; resolves with its port. */
async function startProxy(kind: ProxyKind, upstream: number): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), `longlink-${kind}-`));
  dirs.push(dir);
  const port = await freePort();
  let proc: Fixture;
  if (kind === 'nginx') {
    const conf = join(dir, 'nginx.conf');
    writeFileSync(
      conf,
      `${existsSync(STREAM_MODULE) ? `load_module ${STREAM_MODULE};\n` : ''}` +
        // One process, so killing it leaves no orphaned worker.
        `master_process off;\npid ${dir}/nginx.pid;\nerror_log ${dir}/error.log info;\n` +
        `events { worker_connections 64; }\n` +
        `stream {\n  server {\n    listen 127.0.0.1:${port};\n    proxy_pass 127.0.0.1:${upstream};\n` +
        `    proxy_timeout ${IDLE_TIMEOUT_MS / 1000}s;\n    proxy_connect_timeout 1s;\n  }\n}\n`,
    );
    proc = new Fixture('nginx', 'nginx', ['-g', 'daemon off;', '-c', conf, '-p', dir]);
  } else {
    const cfg = join(dir, 'haproxy.cfg');
    writeFileSync(
      cfg,
      `global\n  maxconn 64\n\ndefaults\n  mode tcp\n  timeout connect 1s\n` +
        `  timeout client ${IDLE_TIMEOUT_MS / 1000}s\n  timeout server ${IDLE_TIMEOUT_MS / 1000}s\n\n` +
        `frontend fe\n  bind 127.0.0.1:${port}\n  default_backend be\n\n` +
        `backend be\n  server s1 127.0.0.1:${upstream}\n`,
    );
    proc = new Fixture('haproxy', 'haproxy', ['-db', '-f', cfg]);
  }
  fixtures.push(proc);
  try {
    await accepting(port, 10_000, `${kind} to listen on ${port}`);
  } catch (err) {
    throw new Error(`${(err as Error).message}\n${kind} said: ${proc.stderr.join('')}`);
  }
  return port;
}

interface Watched {
  client: Client;
  connectedAt: number;
  disconnects: Array<{ t: number; info: CloseInfo }>;
}

async function clientThrough(port: number, heartbeat: typeof HEARTBEAT | false): Promise<Watched> {
  const client = await connect({ port, heartbeat, reconnect: false });
  clients.push(client);
  const w: Watched = { client, connectedAt: Date.now(), disconnects: [] };
  client.on('disconnect', (info) => w.disconnects.push({ t: Date.now(), info }));
  return w;
}

async function serverWith(heartbeat: typeof HEARTBEAT | false): Promise<number> {
  const server = createServer({ handlers: { echo: (p) => p }, heartbeat });
  servers.push(server);
  return (await server.listen({ port: 0 })).port;
}

// concurrency: nginx and haproxy side by side, so the long window is paid once.
describe('middlebox idle timeouts', { skip: skip ?? false, concurrency: true }, () => {
  for (const kind of ['nginx', 'haproxy'] as const) {
    test(`${kind}: an idle connection without heartbeats is cut at ~${IDLE_TIMEOUT_MS / 1000} s (remote FIN or reset); with a 1 s heartbeat it stays up ${SECONDS} s`, {
      concurrency: true,
      timeout: (SECONDS + 60) * 1000,
    }, async (t) => {
      const quiet = await startProxy(kind, await serverWith(false));
      const beating = await startProxy(kind, await serverWith(HEARTBEAT));

      await Promise.all([
        t.test('without heartbeats: cut by the proxy at its idle timeout', { timeout: 30_000 }, async () => {
          const w = await clientThrough(quiet, false);
          assert.equal(await w.client.request('echo', 'through'), 'through');
          const lastActivity = Date.now();
          await waitFor(
            () => w.disconnects.length > 0,
            IDLE_TIMEOUT_MS + 10_000,
            `${kind} to cut the idle connection`,
          );
          const d = w.disconnects[0]!;
          const after = d.t - lastActivity;
          console.log(
            `# middlebox: ${kind} cut the idle connection ${after} ms after its last request (reason ${d.info.reason})`,
          );
          assert.ok(
            d.info.reason === 'remote-fin' || d.info.reason === 'remote-reset',
            `close reason ${d.info.reason}, initiator ${d.info.initiator}`,
          );
          assert.equal(d.info.initiator, 'remote');
          assert.ok(
            after >= IDLE_TIMEOUT_MS - 300 && after <= IDLE_TIMEOUT_MS + 2000,
            `cut ${after} ms after the last request, expected ~${IDLE_TIMEOUT_MS} ms`,
          );
        }),
        t.test(`with a 1 s heartbeat: up for ${SECONDS} s`, { timeout: (SECONDS + 30) * 1000 }, async () => {
          const w = await clientThrough(beating, HEARTBEAT);
          assert.equal(await w.client.request('echo', 'through'), 'through');
          const end = Date.now() + SECONDS * 1000;
          // Fail fast on a drop, else wait out the window (bounded by SECONDS).
          while (Date.now() < end && w.disconnects.length === 0) {
            await new Promise((r) => setTimeout(r, Math.min(250, Math.max(0, end - Date.now()))));
          }
          assert.deepEqual(
            w.disconnects.map((d) => `${d.info.reason} after ${d.t - w.connectedAt} ms`),
            [],
            `the heartbeat keeps the connection through ${kind}`,
          );
          assert.equal(await w.client.request('echo', 'still here', { timeoutMs: 5000 }), 'still here');
          assert.equal(w.disconnects.length, 0);
          console.log(
            `# middlebox: ${kind} kept the heartbeating connection ${Date.now() - w.connectedAt} ms, rtt ${w.client.rttMs?.toFixed(2)} ms`,
          );
        }),
      ]);
    });
  }
});
