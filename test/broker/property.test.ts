/**
 * Property: whatever the order of joins, leaves, publishes (from either server), cuts and moves of
 * clients between servers, every client ends with every push published to the room while it was a
 * member — each once, in seq order, nothing published while it was out — and, when the history is
 * shorter than a cut, a `$gap` that covers exactly what it did not get. Two servers in this process on one real redis-server, clients
 * over loopback; fast-check draws the runs (LONGLINK_ROOMS_SEED replays one).
 */

import assert from 'node:assert/strict';
import { once } from 'node:events';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import { redisBroker } from '../../src/broker/redis.js';
import { type Client, connect, type RoomGap } from '../../src/client/client.js';
import { createServer, type Server } from '../../src/server/server.js';
import { freePort } from '../faults/harness.js';
import { waitFor } from '../helpers.js';
import { type RunningRedis, redisUnavailable, startRedis } from './redis-harness.js';

const skip = redisUnavailable();
let redis: RunningRedis;
const servers: Array<{ server: Server; port: number }> = [];
const HISTORY = 8;

before(async () => {
  if (skip !== undefined) return;
  redis = await startRedis();
  deadPort = await freePort();
  for (let i = 0; i < 2; i++) {
    const broker = await redisBroker({ url: redis.url, prefix: 'prop:', history: { maxLength: HISTORY } });
    const server = createServer({
      handlers: {
        sub: async (p, ctx) => {
          await ctx.join((p as { room: string }).room);
          return true;
        },
        unsub: async (p, ctx) => {
          await ctx.leave((p as { room: string }).room);
          return true;
        },
      },
      broker,
      authorizeRoom: () => true,
    });
    servers.push({ server, port: (await server.listen({ port: 0 })).port });
  }
});
after(async () => {
  for (const s of servers) await s.server.close({ graceMs: 200 });
  await redis?.stop();
});

type Command =
  | { kind: 'publish'; from: number; count: number }
  | { kind: 'leave'; client: number }
  | { kind: 'join'; client: number }
  | { kind: 'cut'; client: number; to: number; away: number };

const command: fc.Arbitrary<Command> = fc.oneof(
  fc.record({ kind: fc.constant('leave' as const), client: fc.integer({ min: 0, max: 2 }) }),
  fc.record({ kind: fc.constant('join' as const), client: fc.integer({ min: 0, max: 2 }) }),
  fc.record({
    kind: fc.constant('publish' as const),
    from: fc.integer({ min: 0, max: 1 }),
    count: fc.integer({ min: 1, max: 4 }),
  }),
  fc.record({
    kind: fc.constant('cut' as const),
    client: fc.integer({ min: 0, max: 2 }),
    to: fc.integer({ min: 0, max: 1 }),
    // Pushes published while it is away: at most HISTORY (resumed) or more (a gap).
    away: fc.integer({ min: 0, max: HISTORY + 4 }),
  }),
);

interface Member {
  client: Client;
  seqs: number[];
  gaps: RoomGap[];
  /** In the room now (its sub answered, no unsub since). */
  member: boolean;
  /**
   * The pushes published, cut at each leave and join: `in` while it was a member (cuts included),
   * not while it was out. Membership takes effect at the node's view of the room, and a publish
   * returns once Redis gave it a seq, before any node delivered it: so a push published just
   * before a leave may not reach the member (the leave won the race), and one published just
   * before a join on the other node may. Hence: of a time in that ended with a leave, what the
   * member has (received or in a gap) is a prefix; of a time out, what it received is a suffix;
   * of the last time in (nobody leaves after it), everything.
   */
  spans: Array<{ in: boolean; seqs: number[] }>;
}

let runs = 0;
let deadPort = 0;

describe('exactly once, in order, or a gap that says so', { skip }, () => {
  test('random joins, leaves, publishes, cuts and moves between servers', async () => {
    const seed =
      process.env.LONGLINK_ROOMS_SEED === undefined
        ? Date.now() % 1_000_000
        : Number(process.env.LONGLINK_ROOMS_SEED);
    console.log(`# property seed ${seed} (LONGLINK_ROOMS_SEED=${seed} replays it)`);
    await fc.assert(
      fc.asyncProperty(fc.array(command, { minLength: 1, maxLength: 12 }), async (commands) => {
        const room = `r${++runs}`;
        const members: Member[] = [];
        const published: number[] = [];
        try {
          for (let i = 0; i < 3; i++) {
            const port = (servers[i % 2] as { port: number }).port;
            const m: Member = {
              client: await connect({ port, reconnect: { initialDelayMs: 1, maxDelayMs: 20 } }),
              seqs: [],
              gaps: [],
              member: false,
              spans: [],
            };
            m.client.on('notify', (_t, _p, push) => push !== undefined && m.seqs.push(push.seq));
            m.client.on('gap', (g) => m.gaps.push(g));
            await m.client.request('sub', { room });
            m.member = true;
            m.spans.push({ in: true, seqs: [] });
            members.push(m);
          }
          const publish = async (from: number, n: number) => {
            for (let k = 0; k < n; k++) {
              const seq = await (servers[from] as { server: Server }).server
                .to(room)
                .notify('t', published.length);
              published.push(seq);
              for (const m of members) m.spans.at(-1)?.seqs.push(seq);
            }
          };
          const join = async (m: Member) => {
            m.spans.push({ in: true, seqs: [] });
            await m.client.request('sub', { room });
            m.member = true;
          };
          for (const c of commands) {
            if (c.kind === 'publish') {
              await publish(c.from, c.count);
              continue;
            }
            if (c.kind === 'join' || c.kind === 'leave') {
              const m = members[c.client] as Member;
              if (c.kind === 'join' && !m.member) await join(m);
              if (c.kind === 'leave' && m.member) {
                // Out from the moment it asks: nothing published after this is owed to it.
                m.member = false;
                m.spans.push({ in: false, seqs: [] });
                await m.client.request('unsub', { room });
                // The client hears it is out ($left, or its $resume refused the room when the
                // leave came first): it will not resume the room on its next connection.
                await waitFor(() => !m.client.rooms.has(room), 10_000, 'the client to know it left');
              }
              continue;
            }
            const m = members[c.client] as Member;
            // The client's options are read at each reconnect: while it is away it tries a port
            // where nothing listens, then the server it moves to.
            const options = (m.client as unknown as { options: { port: number } }).options;
            options.port = deadPort;
            const gone = once(m.client, 'disconnect');
            const back = once(m.client, 'reconnect');
            m.client.connection?.abort();
            await gone;
            await publish(c.to, c.away);
            options.port = (servers[c.to] as { port: number }).port;
            await back;
          }
          // Everyone back in, and one last push, so every member has something to reach.
          for (const m of members) if (!m.member) await join(m);
          await publish(0, 1);
          const last = published.at(-1);
          await waitFor(
            () => members.every((m) => m.seqs.at(-1) === last),
            10_000,
            'every member at the last push',
          );
          for (const m of members) {
            const why = `got ${m.seqs.join(',')}, spans ${JSON.stringify(m.spans)}, gaps ${JSON.stringify(m.gaps)} (commands ${JSON.stringify(commands)})`;
            // Once each, increasing.
            for (let i = 1; i < m.seqs.length; i++)
              assert.ok((m.seqs[i] as number) > (m.seqs[i - 1] as number), `not increasing: ${why}`);
            const got = new Set(m.seqs);
            const gapped = (s: number) => m.gaps.filter((g) => s > g.afterSeq && s <= g.throughSeq).length;
            m.spans.forEach((span, i) => {
              const last = i === m.spans.length - 1;
              // Received, or in exactly one gap, never both.
              const has = span.seqs.map((s) => {
                const n = (got.has(s) ? 1 : 0) + (span.in ? gapped(s) : 0);
                assert.ok(n <= 1, `seq ${s} received and in a gap, or in two gaps: ${why}`);
                return n === 1;
              });
              if (span.in && last) assert.ok(has.every(Boolean), `a push missed while in: ${why}`);
              else if (span.in)
                assert.ok(
                  has.every((h, k) => h || !has.slice(k).some(Boolean)),
                  `not a prefix: ${why}`,
                );
              else
                assert.ok(
                  has.every((h, k) => !h || has.slice(k).every(Boolean)),
                  `not a suffix: ${why}`,
                );
            });
            const all = new Set(m.spans.flatMap((x) => x.seqs));
            for (const s of m.seqs) assert.ok(all.has(s), `received ${s}, never published: ${why}`);
          }
        } finally {
          await Promise.all(members.map((m) => m.client.close({ graceMs: 0 })));
        }
      }),
      { numRuns: Number(process.env.LONGLINK_ROOMS_RUNS ?? 25), seed },
    );
  });
});
