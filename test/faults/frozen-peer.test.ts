/**
 * A frozen peer: the server process is stopped with SIGSTOP. Its kernel is alive — it completes
 * handshakes, ACKs data and answers TCP keepalive probes — but nothing above it runs: the state a
 * process is in during a long GC pause, a swap storm, a debugger, or a deadlock.
 *
 * The heartbeat notices `timeoutMs` after the last byte read; a plain socket with TCP keepalive at
 * its most eager setting (1 s) notices nothing, because the kernel answers the probes. After
 * SIGCONT the client reconnects on its own and requests flow again.
 */

import assert from 'node:assert/strict';
import net from 'node:net';
import { after, test } from 'node:test';
import { type Client, connect } from '../../src/client/client.js';
import type { CloseInfo } from '../../src/connection/close-reason.js';
import { ConnectionClosedError } from '../../src/errors.js';
import { sleep, waitFor } from '../helpers.js';
import { skipBecause } from '../skip.js';
import { type Fixture, startFixture } from './harness.js';

const HEARTBEAT = { intervalMs: 1000, timeoutMs: 3000 };
const SLACK_MS = 1000;

const fixtures: Fixture[] = [];
const clients: Client[] = [];
const sockets: net.Socket[] = [];
after(async () => {
  for (const f of fixtures) {
    f.kill('SIGCONT');
    f.kill();
  }
  for (const s of sockets) s.destroy();
  for (const c of clients) await c.close({ graceMs: 0 }).catch(() => {});
});

const skip =
  process.platform === 'win32'
    ? skipBecause('SIGSTOP/SIGCONT need a POSIX system', { kind: 'platform' })
    : undefined;

test('SIGSTOPped server: the heartbeat notices within the bound, TCP keepalive does not; after SIGCONT the client reconnects and traffic flows', {
  skip: skip ?? false,
  timeout: 60_000,
}, async () => {
  const server = startFixture('server.mjs', { heartbeat: HEARTBEAT, plain: true, lifeMs: 60_000 });
  fixtures.push(server);
  const { port, plainPort } = await server.next((e) => e.ev === 'listening', 10_000, 'listening');

  const client = await connect({
    port: port as number,
    heartbeat: HEARTBEAT,
    // Small delays; a stopped server still completes TCP handshakes, so each attempt ends at
    // the HELLO deadline, not at a refused connect.
    reconnect: { initialDelayMs: 100, maxDelayMs: 500 },
    connectTimeoutMs: 1000,
    requestTimeoutMs: 120_000,
  });
  clients.push(client);
  let lastReadAt = Date.now();
  const watched = new WeakSet<net.Socket>();
  const watchReads = () => {
    const s = client.connection?.socket;
    if (s === undefined || watched.has(s)) return;
    watched.add(s);
    s.on('data', () => {
      lastReadAt = Date.now();
    });
  };
  watchReads();
  const disconnects: Array<{ t: number; lastReadAt: number; info: CloseInfo }> = [];
  const seen: { reconnectedAt?: number } = {};
  client.on('disconnect', (info) => disconnects.push({ t: Date.now(), lastReadAt, info }));
  client.on('reconnect', () => {
    watchReads();
    seen.reconnectedAt ??= Date.now();
  });

  // The contrast: a plain socket with TCP keepalive probing after 1 s of silence.
  const ka = net.connect(plainPort as number, '127.0.0.1');
  sockets.push(ka);
  const kaEvents: string[] = [];
  ka.setKeepAlive(true, 1000);
  for (const ev of ['end', 'close']) ka.on(ev, () => kaEvents.push(ev));
  ka.on('error', (e: NodeJS.ErrnoException) => kaEvents.push(`error:${e.code}`));
  await new Promise((r) => ka.once('connect', r));

  assert.equal(await client.request('echo', 'before'), 'before');
  const pending = client.request('sleep', 60_000).then(
    () => undefined,
    (e: unknown) => e,
  );
  await sleep(1500); // idle past one heartbeat interval: still up
  assert.equal(disconnects.length, 0, 'a healthy idle connection stays up');

  const stoppedAt = Date.now();
  server.kill('SIGSTOP');
  await waitFor(
    () => disconnects.length > 0,
    HEARTBEAT.timeoutMs + SLACK_MS + 4000,
    'the heartbeat to notice the frozen server',
  );
  const down = disconnects[0]!;
  const afterStop = down.t - stoppedAt;
  const afterLastRead = down.t - down.lastReadAt;
  console.log(
    `# frozen-peer: declared dead ${afterStop} ms after SIGSTOP, ${afterLastRead} ms after the last read ` +
      `(bound: ${HEARTBEAT.timeoutMs} ms after the last read)`,
  );
  assert.equal(down.info.reason, 'heartbeat-timeout', JSON.stringify(down.info));
  assert.equal(down.info.initiator, 'local');
  assert.equal(down.info.error?.code, 'ERR_HEARTBEAT_TIMEOUT');
  assert.ok(afterLastRead >= HEARTBEAT.timeoutMs - 250, `declared dead early: ${afterLastRead} ms`);
  assert.ok(
    afterStop <= HEARTBEAT.timeoutMs + SLACK_MS,
    `declared dead ${afterStop} ms after SIGSTOP: over the ${HEARTBEAT.timeoutMs} ms bound (+${SLACK_MS} ms)`,
  );
  const err = await pending;
  assert.ok(err instanceof ConnectionClosedError, String(err));
  assert.equal(err.reason, 'heartbeat-timeout');

  // Keepalive: probes every second since 1 s of silence, all answered by the stopped process's kernel.
  await sleep(Math.max(0, stoppedAt + HEARTBEAT.timeoutMs + 2000 - Date.now()));
  console.log(
    `# frozen-peer: keepalive-only socket (1 s) saw ${kaEvents.length ? kaEvents.join(',') : 'nothing'} ` +
      `${Date.now() - stoppedAt} ms after SIGSTOP`,
  );
  assert.deepEqual(kaEvents, [], 'TCP keepalive does not notice a frozen peer');
  assert.equal(seen.reconnectedAt, undefined, 'no reconnect while the server is frozen');

  const contAt = Date.now();
  server.kill('SIGCONT');
  const reconnectedAt = await waitFor(
    () => seen.reconnectedAt,
    10_000,
    'the client to reconnect after SIGCONT',
  );
  console.log(`# frozen-peer: reconnected ${reconnectedAt - contAt} ms after SIGCONT`);
  assert.equal(await client.request('echo', 'after', { timeoutMs: 5000 }), 'after');
  assert.equal(client.connected, true);
});
