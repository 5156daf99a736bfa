/**
 * A silent link cut between two hosts: client and server in two network namespaces joined by a
 * veth pair; mid-connection every packet arriving on either end is dropped (nftables, INPUT hook),
 * so neither side ever sees a FIN, an RST or an ICMP error — a pulled cable, a dead router.
 *
 * With a 1 s / 3 s heartbeat the client declares the server dead `timeoutMs` after the last byte
 * it read, and the request pending on the connection fails with reason heartbeat-timeout. Plain
 * sockets over the same cut link (one idle, one writing; no heartbeat, no keepalive) notice
 * nothing in the same window, which is why the heartbeat exists.
 */

import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { sleep } from '../helpers.js';
import { requiredOnLinux, requireFaults, skipBecause } from '../skip.js';
import {
  ensureTools,
  type Fixture,
  type FixtureEvent,
  NetnsLink,
  netnsUnavailable,
  startFixture,
} from './harness.js';

const HEARTBEAT = { intervalMs: 1000, timeoutMs: 3000 };
/** Timer slack and a loaded 2-core machine: the bound is asserted with this margin. */
const SLACK_MS = 1000;

const fixtures: Fixture[] = [];
let link: NetnsLink | undefined;
after(() => {
  for (const f of fixtures) f.kill();
  link?.destroy();
});

let skip: string | undefined = netnsUnavailable();
let cutMethod: 'nft' | 'link-down' = 'nft';
if (skip === undefined) {
  try {
    link = new NetnsLink();
    link.create();
  } catch (err) {
    link?.destroy();
    link = undefined;
    skip = `cannot create network namespaces and a veth pair here: ${(err as Error).message}`;
  }
}
if (skip === undefined && process.env.LONGLINK_CUT_METHOD === 'link-down') {
  cutMethod = 'link-down';
} else if (skip === undefined) {
  const noNft = ensureTools('nft');
  if (noNft !== undefined && requireFaults) {
    // The fallback below is for machines without nftables; where faults are required, so is nft.
    skip = skipBecause(noNft);
  } else if (noNft !== undefined) {
    cutMethod = 'link-down';
    console.log(`# note: ${noNft}; cutting the link with 'ip link set down' instead of nftables`);
  }
} else {
  skipBecause(skip, requiredOnLinux);
}

test('silent link cut between two namespaces: the heartbeat declares the peer dead within the bound; plain sockets do not notice', {
  skip: skip ?? false,
  timeout: 60_000,
}, async () => {
  const l = link as NetnsLink;
  const server = startFixture(
    'server.mjs',
    { host: l.ipB, port: 0, heartbeat: HEARTBEAT, plain: true, lifeMs: 60_000 },
    l.b,
  );
  fixtures.push(server);
  const listening = await server.next((e) => e.ev === 'listening', 10_000, 'listening');

  const client = startFixture(
    'client.mjs',
    {
      host: l.ipB,
      port: listening.port,
      plainPort: listening.plainPort,
      heartbeat: HEARTBEAT,
      reconnect: false,
      lifeMs: 60_000,
    },
    l.a,
  );
  fixtures.push(client);
  await client.next((e) => e.ev === 'ready', 10_000, 'connected through the veth pair');

  // Traffic flows across the namespaces, then a request stays pending across the cut.
  client.send({ cmd: 'request', id: 'echo', method: 'echo', params: { over: 'veth' } });
  const echo = await client.next((e) => e.ev === 'result' && e.id === 'echo', 5000, 'echo');
  assert.deepEqual(echo.value, { over: 'veth' });
  client.send({ cmd: 'request', id: 'pending', method: 'sleep', params: 60_000 });
  // Idle for longer than the heartbeat interval: the healthy connection is kept, not declared dead.
  // The cut lands mid-interval, so 'after the cut' and 'after the last read' differ visibly.
  await sleep(2.5 * HEARTBEAT.intervalMs);
  assert.equal(client.find('disconnect').length, 0, 'a healthy idle connection stays up');
  assert.equal(client.find('plain').length, 0, 'the plain sockets are up');

  const cutStart = Date.now();
  l.cut(cutMethod);
  const cutAt = Date.now();
  console.log(`# link cut with ${cutMethod} in ${cutAt - cutStart} ms`);

  const down = await client.next(
    (e) => e.ev === 'disconnect',
    HEARTBEAT.timeoutMs + SLACK_MS + 4000,
    'the heartbeat to declare the server dead',
  );
  const pending = await client.next((e) => e.ev === 'result' && e.id === 'pending', 2000, 'pending');
  const afterCut = down.t - cutStart;
  const afterLastRead = down.t - (down.lastReadAt as number);
  console.log(
    `# link-cut: client declared the server dead ${afterCut} ms after the cut, ` +
      `${afterLastRead} ms after its last read (bound: ${HEARTBEAT.timeoutMs} ms after the last read)`,
  );
  assert.equal(down.reason, 'heartbeat-timeout', JSON.stringify(down));
  assert.equal(down.initiator, 'local');
  assert.equal(down.error, 'ERR_HEARTBEAT_TIMEOUT', JSON.stringify(down));
  assert.ok((down.lastReadAt as number) <= cutAt + 50, 'nothing was read after the cut');
  // Declared dead timeoutMs after the last byte read: not earlier, and not much later.
  assert.ok(
    afterLastRead >= HEARTBEAT.timeoutMs - 250,
    `declared dead ${afterLastRead} ms after the last read: before the ${HEARTBEAT.timeoutMs} ms timeout`,
  );
  assert.ok(
    afterCut <= HEARTBEAT.timeoutMs + SLACK_MS,
    `declared dead ${afterCut} ms after the cut: over the ${HEARTBEAT.timeoutMs} ms bound (+${SLACK_MS} ms slack)`,
  );
  assert.equal(pending.ok, false);
  assert.equal(pending.code, 'ERR_CONNECTION_CLOSED', JSON.stringify(pending));
  assert.equal(pending.reason, 'heartbeat-timeout', JSON.stringify(pending));

  // The server's side, in the other namespace, reached the same verdict on its own.
  const serverDown = await server
    .next((e) => e.ev === 'disconnect', HEARTBEAT.timeoutMs + SLACK_MS, 'the server to notice too')
    .catch(() => undefined);
  console.log(
    `# link-cut: server ${serverDown ? `declared the client dead ${serverDown.t - cutStart} ms after the cut (${serverDown.reason})` : 'did not report a disconnect in the window'}`,
  );
  if (serverDown !== undefined) assert.equal(serverDown.reason, 'heartbeat-timeout');

  // The contrast: plain sockets across the same cut, no heartbeat, no keepalive.
  const windowEnd = cutStart + HEARTBEAT.timeoutMs + 2000;
  await sleep(Math.max(0, windowEnd - Date.now()));
  const plain: FixtureEvent[] = client.find('plain');
  console.log(
    `# link-cut: plain idle and writing sockets saw ${plain.length === 0 ? 'nothing' : JSON.stringify(plain)} ` +
      `${HEARTBEAT.timeoutMs + 2000} ms after the cut`,
  );
  assert.deepEqual(plain, [], 'a plain socket does not notice a silent link cut');
});
