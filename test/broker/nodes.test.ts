/**
 * Rooms across server processes: three `longlink serve --broker redis://…` processes behind
 * haproxy (round robin: a client that reconnects lands on the next node), one redis-server, all
 * real. Clients join a room through the CLI's built-in `join`; a publisher on node 1 publishes
 * through its `publish` while clients are cut (RST), node 2 is restarted gracefully (SIGTERM, a
 * new process on its port) and node 3 crashes (SIGKILL) and comes back. Every client must end with
 * exactly the pushes published — each once, in order — and no gap.
 */

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type Client, connect, type RoomGap } from '../../src/client/client.js';
import { Fixture, freePort } from '../faults/harness.js';
import { waitFor } from '../helpers.js';
import { proxyUnavailable, type RunningProxy, startHaproxy } from '../server/proxies.js';
import { type RunningRedis, redisUnavailable, startRedis } from './redis-harness.js';

const MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const skip = redisUnavailable() ?? proxyUnavailable('haproxy');

/** One `longlink serve --broker` process on a fixed port (so that a restart takes the same one). */
class Node {
  fixture!: Fixture;
  constructor(
    readonly port: number,
    private readonly redisUrl: string,
  ) {}
  async start(): Promise<void> {
    this.fixture = new Fixture(`node:${this.port}`, process.execPath, [
      MAIN,
      'serve',
      '--port',
      String(this.port),
      '--broker',
      this.redisUrl,
      '--history-length',
      '100000',
      '--grace',
      '2000',
      '--log-format',
      'json',
    ]);
    await this.fixture.next((e) => (e as { msg?: string }).msg === 'listening', 15_000, 'listening');
  }
  async stop(signal: NodeJS.Signals): Promise<void> {
    this.fixture.kill(signal);
    await this.fixture.exited;
  }
}

let redis: RunningRedis;
let proxy: RunningProxy;
const nodes: Node[] = [];
const clients: Client[] = [];

before(async () => {
  if (skip !== undefined) return;
  redis = await startRedis();
  for (let i = 0; i < 3; i++) nodes.push(new Node(await freePort(), redis.url));
  await Promise.all(nodes.map((n) => n.start()));
  const [n1, n2, n3] = nodes as [Node, Node, Node];
  proxy = await startHaproxy({
    upstreamPort: n1.port,
    sendProxy: false,
    // Round robin over the three; a connect to a node that is down is retried on another.
    extra: `balance roundrobin\nretries 3\noption redispatch\nserver s2 127.0.0.1:${n2.port}\nserver s3 127.0.0.1:${n3.port}`,
  });
});

after(async () => {
  await Promise.allSettled(clients.map((c) => c.close({ graceMs: 0 })));
  await proxy?.stop();
  await Promise.allSettled(nodes.map((n) => n.stop('SIGKILL')));
  await redis?.stop();
});

describe('rooms across server processes behind haproxy', { skip }, () => {
  test('cuts, a graceful restart and a crash: every client gets every push once, in order', async () => {
    const members: Array<{
      client: Client;
      seqs: number[];
      gaps: RoomGap[];
      payloads: unknown[];
      reconnects: number;
    }> = [];
    for (let i = 0; i < 6; i++) {
      const client = await connect({
        port: proxy.port,
        reconnect: { initialDelayMs: 10, maxDelayMs: 200 },
        heartbeat: { intervalMs: 1000, timeoutMs: 3000 },
      });
      clients.push(client);
      const m = {
        client,
        seqs: [] as number[],
        gaps: [] as RoomGap[],
        payloads: [] as unknown[],
        reconnects: 0,
      };
      client.on('reconnect', () => m.reconnects++);
      client.on('notify', (_t, payload, push) => {
        if (push === undefined) return;
        m.seqs.push(push.seq);
        m.payloads.push(payload);
      });
      client.on('gap', (g) => m.gaps.push(g));
      await client.request('join', { room: 'fleet' });
      members.push(m);
    }
    const publisher = await connect({ port: (nodes[0] as Node).port });
    clients.push(publisher);
    const published: number[] = [];
    const K = 400;
    for (let i = 0; i < K; i++) {
      const r = await publisher.request<{ seq: number }>('publish', {
        room: 'fleet',
        topic: 't',
        payload: i,
      });
      published.push(r.seq);
      if (i % 40 === 20) members[((i / 40) % members.length) | 0]?.client.connection?.abort();
      if (i === 150) {
        await (nodes[1] as Node).stop('SIGTERM');
        await (nodes[1] as Node).start();
      }
      if (i === 280) {
        await (nodes[2] as Node).stop('SIGKILL');
        await (nodes[2] as Node).start();
      }
    }
    const last = published.at(-1);
    await waitFor(
      () => members.every((m) => m.seqs.at(-1) === last),
      30_000,
      `every member at the last push (${members.map((m) => m.seqs.length).join(', ')} of ${K})`,
    );
    for (const m of members) {
      assert.deepEqual(m.gaps, []);
      assert.equal(m.seqs.length, K, 'exactly K pushes');
      assert.deepEqual(m.seqs, published, 'in the order published, each once');
      assert.deepEqual(m.payloads, [...Array(K).keys()]);
    }
    // The cuts and restarts did happen: ten cuts, and the clients of two restarted nodes.
    const reconnects = members.reduce((n, m) => n + m.reconnects, 0);
    assert.ok(reconnects >= 12, `${reconnects} reconnects`);
  });
});
