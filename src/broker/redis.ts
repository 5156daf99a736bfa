/**
 * The Redis broker: room pushes between servers through Redis pub/sub, each room's seq and
 * history in Redis (a counter and a Stream), assigned and appended atomically by one Lua script.
 *
 *   publish ─▶ EVALSHA publish.lua ─▶ seq = INCR-like (the clock × 1024 for a new room)
 *                                     XADD {room}:h <seq>-0 p <prev> t <ms> o <topic> d <payload>
 *                                     trim: MAXLEN n, then entries older than maxAgeMs
 *                                     PUBLISH room:<room> "<seq>:<prev>:<topic length>:<topic><payload>"
 *   every server subscribed to room:<room> ─▶ sink.deliver(room, entry)
 *   resume / repair ─▶ EVALSHA history.lua ─▶ GET seq + XREVRANGE (after … COUNT limit), one snapshot
 *
 * Stream ids are `<seq>-0`, so "what came after seq S" is an id range, and the history is bounded
 * by length and age. Keys carry the room in a hash tag (`{room}`): a room's keys share a cluster
 * slot, as a script needs.
 *
 * The client library is node-redis's `@redis/client` (an optional peer, loaded when
 * `redisBroker()` is called): Redis's own client, zero dependencies, Node ≥ 20, typed, RESP3,
 * cluster and sentinel support, and the outage behaviour we need: commands fail at once while
 * disconnected (`disableOfflineQueue`) instead of piling up, a bounded command queue
 * (`commandsQueueMaxLength`), a per-command timeout that also covers a command already sent
 * (`timeout` + `rejectInFlight`, which tells "never sent" from "sent, no answer"), reconnect with a
 * strategy we choose, and subscriptions kept and renewed across reconnects. ioredis does most of
 * this too, but queues offline commands by default, has no RESP3, and Redis recommends node-redis
 * for new projects.
 *
 * When Redis fails: publishes reject with BrokerUnavailableError at once while it is known down
 * (`sent: false`, certainly not published) or after `publishTimeoutMs` when it hangs (`sent:
 * true`, maybe published); nothing else breaks: the server serves its connections, rooms wait,
 * and when Redis is back every room's history is read for what the subscription missed
 * (`sink.resync`). Redis without persistence that restarts has lost the history: members get
 * `$gap` notices, and seqs go on from the clock, above the old ones.
 */

import { BrokerUnavailableError, InvalidArgumentError, LonglinkError } from '../errors.js';
import type { Broker, BrokerEntry, BrokerHistory, BrokerSink, HistoryRetention } from '../server/broker.js';
import { checkRetention } from '../server/broker.js';
import { loadPeer } from '../sys/peer.js';
import { now } from '../util/clock.js';
import type { Logger } from '../util/log.js';

/** Options of {@link redisBroker}. */
export interface RedisBrokerOptions {
  /** `redis://[user:password@]host:port[/db]`. Default `redis://127.0.0.1:6379`. */
  url?: string;
  /** Prefix of every key and channel. Default `longlink:`. */
  prefix?: string;
  /** How much of each room's history Redis keeps. Default 1 000 entries, 5 minutes. */
  history?: HistoryRetention;
  /** A publish (or history read) with no answer after this long fails with BrokerUnavailableError. Default 2 000 ms. */
  publishTimeoutMs?: number;
  /** Commands waiting for Redis at most; more fail at once (sent: false). Default 10 000. */
  maxQueued?: number;
  /** A room's keys expire this long after its last push. Default 86 400 000 (a day). */
  keyTtlMs?: number;
  /** How long `redisBroker()` waits for Redis before it returns anyway (and goes on trying). Default 5 000 ms. */
  connectTimeoutMs?: number;
  /** Where to log outages and recoveries (pino's shape). */
  logger?: Logger;
}

/** The parts of a node-redis client this adapter uses (kept narrow: its own types are vast). */
interface RedisClientLike {
  connect(): Promise<unknown>;
  on(event: string, listener: (...args: unknown[]) => void): unknown;
  sendCommand(args: ReadonlyArray<string | Buffer>, options?: object): Promise<unknown>;
  SUBSCRIBE(
    channel: string,
    listener: (message: Buffer, channel: Buffer) => void,
    buffers: true,
  ): Promise<void>;
  UNSUBSCRIBE(
    channel: string,
    listener: (message: Buffer, channel: Buffer) => void,
    buffers: true,
  ): Promise<void>;
  duplicate(): RedisClientLike;
  destroy(): void;
  readonly isReady: boolean;
}

interface RedisModule {
  createClient(options: object): RedisClientLike;
  RESP_TYPES: { BLOB_STRING: number };
  TimeoutReadError: new (...args: never[]) => Error;
  ErrorReply: new (...args: never[]) => Error;
}

// KEYS: seq, stream. ARGV: channel, maxLength, maxAgeMs, topic, payload, ttlMs.
const PUBLISH_LUA = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local prev = tonumber(redis.call('GET', KEYS[1]) or '0')
local seq
if prev == 0 then seq = now * 1024 + 1 else seq = prev + 1 end
local s = string.format('%.0f', seq)
local p = string.format('%.0f', prev)
redis.call('SET', KEYS[1], s, 'PX', ARGV[6])
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[2], s .. '-0', 'p', p, 't', now, 'o', ARGV[4], 'd', ARGV[5])
local maxAge = tonumber(ARGV[3])
if maxAge > 0 then
  local old = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 64)
  local cut = nil
  for _, e in ipairs(old) do
    if tonumber(e[2][4]) >= now - maxAge then cut = e[1] break end
  end
  if cut ~= nil then redis.call('XTRIM', KEYS[2], 'MINID', cut) end
end
redis.call('PEXPIRE', KEYS[2], ARGV[6])
redis.call('PUBLISH', ARGV[1], s .. ':' .. p .. ':' .. string.len(ARGV[4]) .. ':' .. ARGV[4] .. ARGV[5])
return s
`;

// KEYS: seq, stream. ARGV: after (exclusive), limit. Returns { head, entries newest first }.
const HISTORY_LUA = `
local head = redis.call('GET', KEYS[1]) or '0'
if tonumber(ARGV[2]) == 0 then return { head, {} } end
return { head, redis.call('XREVRANGE', KEYS[2], '+', '(' .. ARGV[1] .. '-0', 'COUNT', ARGV[2]) }
`;

// KEYS: the room's count hash. ARGV: prefix of node keys. Sums the counts of nodes still alive.
const COUNT_LUA = `
local all = redis.call('HGETALL', KEYS[1])
local n = 0
for i = 1, #all, 2 do
  if redis.call('EXISTS', ARGV[1] .. all[i]) == 1 then n = n + tonumber(all[i + 1])
  else redis.call('HDEL', KEYS[1], all[i]) end
end
return n
`;

/** A Lua script run by EVALSHA, loaded again (EVAL) when Redis does not have it (after a restart). */
class Script {
  private sha: string | undefined;
  constructor(readonly source: string) {}
  async run(
    c: RedisClientLike,
    keys: string[],
    args: Array<string | Buffer>,
    options: object,
  ): Promise<unknown> {
    const n = String(keys.length);
    if (this.sha !== undefined) {
      try {
        return await c.sendCommand(['EVALSHA', this.sha, n, ...keys, ...args], options);
      } catch (err) {
        if (!/NOSCRIPT/.test(String((err as Error)?.message))) throw err;
      }
    }
    const r = await c.sendCommand(['EVAL', this.source, n, ...keys, ...args], options);
    this.sha ??= await sha1(this.source);
    return r;
  }
}

async function sha1(text: string): Promise<string> {
  const { createHash } = await import('node:crypto');
  return createHash('sha1').update(text).digest('hex');
}

function decimal(b: unknown): number {
  const n = Number(Buffer.isBuffer(b) ? b.toString('latin1') : b);
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`not a seq: ${String(b)}`);
  return n;
}

/** `seq:prev:topicLength:topic payload` → an entry. */
function parseMessage(m: Buffer): BrokerEntry | undefined {
  let at = 0;
  const field = (): number => {
    const end = m.indexOf(0x3a, at);
    if (end < 0) throw new Error('bad message');
    const v = decimal(m.subarray(at, end));
    at = end + 1;
    return v;
  };
  try {
    const seq = field();
    const prev = field();
    const tl = field();
    if (at + tl > m.length) return undefined;
    const topic = m.toString('utf8', at, at + tl);
    return { seq, prev, topic, payload: m.subarray(at + tl) };
  } catch {
    return undefined;
  }
}

/** An XRANGE entry `[id, [p, prev, t, ms, o, topic, d, payload]]` → an entry. */
function parseStreamEntry(e: unknown): BrokerEntry | undefined {
  if (!Array.isArray(e) || !Array.isArray(e[1])) return undefined;
  const id = Buffer.isBuffer(e[0]) ? e[0].toString('latin1') : String(e[0]);
  const f = e[1] as Buffer[];
  const fields = new Map<string, Buffer>();
  for (let i = 0; i + 1 < f.length; i += 2) fields.set(String(f[i]), f[i + 1] as Buffer);
  const prev = fields.get('p');
  const topic = fields.get('o');
  const payload = fields.get('d');
  if (prev === undefined || topic === undefined || payload === undefined) return undefined;
  return { seq: decimal(id.split('-')[0]), prev: decimal(prev), topic: topic.toString('utf8'), payload };
}

class RedisBroker implements Broker {
  readonly name: string;
  private sink: BrokerSink | undefined;
  private readonly cmd: RedisClientLike;
  private readonly sub: RedisClientLike;
  private readonly retention: Required<HistoryRetention>;
  private readonly prefix: string;
  private readonly timeoutMs: number;
  private readonly ttl: string;
  private readonly nodeId = `${process.pid.toString(36)}-${Math.random().toString(36).slice(2, 10)}`;
  private readonly publishScript = new Script(PUBLISH_LUA);
  private readonly historyScript = new Script(HISTORY_LUA);
  private readonly countScript = new Script(COUNT_LUA);
  private readonly buffers: object;
  private readonly commandOptions: object;
  /** Up means: the command connection is ready and answered its last health check. */
  private up = false;
  private subReadyOnce = false;
  private closed = false;
  private readonly rooms = new Set<string>();
  private readonly identities = new Set<string>();
  private readonly dirtyCounts = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  private readonly onRoom = (message: Buffer, channel: Buffer) => this.roomMessage(message, channel);
  private readonly onIdentity = (message: Buffer, channel: Buffer) => this.identityMessage(message, channel);

  constructor(
    private readonly mod: RedisModule,
    readonly url: string,
    options: RedisBrokerOptions,
    private readonly log: Logger | undefined,
  ) {
    this.name = url.replace(/\/\/[^@/]*@/, '//***@');
    this.retention = checkRetention(options.history);
    this.prefix = options.prefix ?? 'longlink:';
    this.timeoutMs = options.publishTimeoutMs ?? 2000;
    this.ttl = String(options.keyTtlMs ?? 86_400_000);
    const blob = { [mod.RESP_TYPES.BLOB_STRING]: Buffer };
    this.buffers = { typeMapping: blob, timeout: this.timeoutMs, rejectInFlight: true };
    this.commandOptions = { timeout: this.timeoutMs, rejectInFlight: true };
    const clientOptions = {
      url,
      disableOfflineQueue: true,
      commandsQueueMaxLength: options.maxQueued ?? 10_000,
      socket: {
        connectTimeout: Math.min(this.timeoutMs, 5000),
        // 50 ms doubling to 2 s, with jitter: the servers of a fleet do not reconnect in step.
        reconnectStrategy: (retries: number) => Math.min(2000, 50 * 2 ** retries) * (0.5 + Math.random() / 2),
      },
    };
    this.cmd = mod.createClient(clientOptions);
    this.sub = this.cmd.duplicate();
    let downSince = 0;
    const down = (why: string) => {
      if (this.up || downSince === 0) {
        downSince = now();
        this.log?.warn({ broker: this.name, why }, 'broker unavailable');
      }
      this.up = false;
    };
    this.cmd.on('error', (err) => down((err as Error)?.message ?? String(err)));
    this.cmd.on('end', () => down('connection ended'));
    this.cmd.on('reconnecting', () => down('reconnecting'));
    this.cmd.on('ready', () => {
      if (!this.up && downSince !== 0) {
        this.log?.info({ broker: this.name, downMs: now() - downSince }, 'broker available again');
      }
      this.up = true;
      downSince = 0;
      for (const room of this.rooms) this.dirtyCounts.add(room);
    });
    this.sub.on('error', () => {});
    this.sub.on('ready', () => {
      // After a reconnect the subscriptions are renewed; what was published meanwhile is in the
      // rooms' history.
      if (this.subReadyOnce) this.sink?.resync();
      this.subReadyOnce = true;
    });
  }

  /** Connects both clients; resolves when both are ready, or after `ms` (they go on trying). */
  async start(ms: number): Promise<void> {
    void this.cmd.connect().catch(() => {});
    void this.sub.connect().catch(() => {});
    const deadline = now() + ms;
    while (!(this.cmd.isReady && this.sub.isReady) && now() < deadline && !this.closed) {
      await new Promise((r) => setTimeout(r, 10));
    }
    if (!(this.cmd.isReady && this.sub.isReady)) {
      this.log?.warn({ broker: this.name }, `no Redis within ${ms} ms: serving, and retrying`);
    } else await this.alive().catch(() => {});
    // Health: a PING every second. A Redis that hangs (SIGSTOP, a full disk) keeps the TCP
    // connection up and answers nothing: the timeout marks it down, so publishes fail at once
    // instead of each waiting out its own timeout; the first answer marks it up.
    this.timer = setInterval(() => void this.tick(), 1000);
    this.timer.unref();
  }

  private async tick(): Promise<void> {
    if (this.closed) return;
    try {
      await this.cmd.sendCommand(['PING'], this.commandOptions);
      if (!this.up && this.cmd.isReady) this.up = true;
      await this.alive();
      await this.flushCounts();
    } catch (err) {
      if (this.up)
        this.log?.warn({ broker: this.name, err: (err as Error)?.message }, 'broker not answering');
      this.up = false;
    }
  }

  /** This node's liveness key: counts of nodes without one are not counted (and are removed). */
  private alive(): Promise<unknown> {
    return this.cmd.sendCommand(
      ['SET', `${this.prefix}node:${this.nodeId}`, '1', 'PX', '5000'],
      this.commandOptions,
    );
  }

  private async flushCounts(): Promise<void> {
    const sink = this.sink;
    if (sink === undefined || this.dirtyCounts.size === 0) return;
    const rooms = [...this.dirtyCounts];
    this.dirtyCounts.clear();
    for (const room of rooms) {
      const n = sink.localCount(room);
      const key = `${this.prefix}{${room}}:n`;
      try {
        if (n > 0) await this.cmd.sendCommand(['HSET', key, this.nodeId, String(n)], this.commandOptions);
        else await this.cmd.sendCommand(['HDEL', key, this.nodeId], this.commandOptions);
      } catch (err) {
        this.dirtyCounts.add(room);
        throw err;
      }
    }
  }

  attach(sink: BrokerSink): void {
    if (this.sink !== undefined) throw new InvalidArgumentError('a broker serves one server');
    this.sink = sink;
  }

  private fail(err: unknown, what: string): LonglinkError {
    if (err instanceof LonglinkError) return err;
    const sent = err instanceof this.mod.TimeoutReadError;
    if (err instanceof this.mod.ErrorReply) {
      return new LonglinkError('ERR_BROKER', `${what}: Redis answered ${(err as Error).message}`, {
        cause: err,
      });
    }
    if (sent) this.up = false;
    return new BrokerUnavailableError(
      sent
        ? `${what}: no answer from ${this.name} within ${this.timeoutMs} ms (it may have been published)`
        : `${what}: ${this.name} is unavailable (${(err as Error)?.message ?? String(err)})`,
      sent,
      { cause: err },
    );
  }

  private keys(room: string): string[] {
    return [`${this.prefix}{${room}}:seq`, `${this.prefix}{${room}}:h`];
  }

  async publish(room: string, topic: string, payload: Buffer): Promise<number> {
    if (this.closed) throw new BrokerUnavailableError('broker closed', false);
    if (!this.up || !this.cmd.isReady) {
      throw new BrokerUnavailableError(`publish to ${room}: ${this.name} is unavailable`, false);
    }
    try {
      const seq = await this.publishScript.run(
        this.cmd,
        this.keys(room),
        [
          `${this.prefix}room:${room}`,
          String(this.retention.maxLength),
          String(this.retention.maxAgeMs),
          topic,
          payload,
          this.ttl,
        ],
        this.commandOptions,
      );
      return decimal(seq);
    } catch (err) {
      throw this.fail(err, `publish to ${room}`);
    }
  }

  async history(room: string, after: number, limit: number): Promise<BrokerHistory> {
    if (this.closed) throw new BrokerUnavailableError('broker closed', false);
    try {
      const r = (await this.historyScript.run(
        this.cmd,
        this.keys(room),
        [String(after), String(limit)],
        this.buffers,
      )) as [unknown, unknown[]];
      const entries: BrokerEntry[] = [];
      for (const e of r[1] ?? []) {
        const entry = parseStreamEntry(e);
        if (entry !== undefined) entries.push(entry);
      }
      entries.reverse();
      return { head: decimal(r[0]), entries };
    } catch (err) {
      throw this.fail(err, `history of ${room}`);
    }
  }

  async subscribe(room: string): Promise<void> {
    this.rooms.add(room);
    this.dirtyCounts.add(room);
    try {
      await this.sub.SUBSCRIBE(`${this.prefix}room:${room}`, this.onRoom, true);
    } catch (err) {
      throw this.fail(err, `subscribe to ${room}`);
    }
  }

  membersChanged(room: string): void {
    this.dirtyCounts.add(room);
  }

  unsubscribe(room: string): void {
    this.rooms.delete(room);
    this.dirtyCounts.add(room);
    void this.sub.UNSUBSCRIBE(`${this.prefix}room:${room}`, this.onRoom, true).catch(() => {});
  }

  private roomMessage(message: Buffer, channel: Buffer): void {
    const room = channel.toString('utf8').slice(this.prefix.length + 'room:'.length);
    const entry = parseMessage(message);
    if (entry !== undefined) this.sink?.deliver(room, entry);
  }

  private identityMessage(message: Buffer, channel: Buffer): void {
    const key = channel.toString('utf8').slice(this.prefix.length + 'id:'.length);
    const colon = message.indexOf(0x3a);
    if (colon < 0) return;
    const tl = Number(message.toString('latin1', 0, colon));
    if (!Number.isInteger(tl) || colon + 1 + tl > message.length) return;
    this.sink?.identity(
      key,
      message.toString('utf8', colon + 1, colon + 1 + tl),
      message.subarray(colon + 1 + tl),
    );
  }

  async publishIdentity(key: string, topic: string, payload: Buffer): Promise<void> {
    if (this.closed || !this.up || !this.cmd.isReady) {
      throw new BrokerUnavailableError(`push to ${key}: ${this.name} is unavailable`, false);
    }
    const t = Buffer.from(topic, 'utf8');
    const message = Buffer.concat([Buffer.from(`${t.length}:`), t, payload]);
    try {
      await this.cmd.sendCommand(['PUBLISH', `${this.prefix}id:${key}`, message], this.commandOptions);
    } catch (err) {
      throw this.fail(err, `push to ${key}`);
    }
  }

  subscribeIdentity(key: string): void {
    this.identities.add(key);
    void this.sub.SUBSCRIBE(`${this.prefix}id:${key}`, this.onIdentity, true).catch(() => {});
  }

  unsubscribeIdentity(key: string): void {
    this.identities.delete(key);
    void this.sub.UNSUBSCRIBE(`${this.prefix}id:${key}`, this.onIdentity, true).catch(() => {});
  }

  async count(room: string, local: number): Promise<number> {
    try {
      this.dirtyCounts.add(room);
      await this.alive();
      await this.flushCounts();
      const n = await this.countScript.run(
        this.cmd,
        [`${this.prefix}{${room}}:n`],
        [`${this.prefix}node:`],
        this.commandOptions,
      );
      return Number(n);
    } catch (err) {
      if (local >= 0) throw this.fail(err, `count of ${room}`);
      return local;
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.timer !== undefined) clearInterval(this.timer);
    // Our counts and liveness go with us, where Redis can still be told.
    if (this.cmd.isReady) {
      const ops = [...this.rooms].map((room) =>
        this.cmd.sendCommand(['HDEL', `${this.prefix}{${room}}:n`, this.nodeId], this.commandOptions),
      );
      ops.push(this.cmd.sendCommand(['DEL', `${this.prefix}node:${this.nodeId}`], this.commandOptions));
      await Promise.allSettled(ops);
    }
    this.cmd.destroy();
    this.sub.destroy();
  }
}

/**
 * A broker over Redis for servers on several processes or hosts: room pushes through pub/sub,
 * each room's seq and bounded history in Redis (see the file comment for the design, and
 * docs/SCALING.md). Needs the optional peer `@redis/client` (`npm install @redis/client`, or
 * `redis`, which includes it); rejects with MissingDependencyError without it. Resolves once
 * connected, or after `connectTimeoutMs` with Redis still away (it keeps trying; publishes fail
 * with BrokerUnavailableError meanwhile).
 *
 * @example
 * ```ts
 * const broker = await redisBroker({ url: 'redis://127.0.0.1:6379', history: { maxLength: 1000 } });
 * const server = createServer({ handlers, broker, authorizeRoom: (room, ctx) => ctx.identity !== undefined });
 * ```
 */
export async function redisBroker(options: RedisBrokerOptions = {}): Promise<Broker> {
  const url = options.url ?? 'redis://127.0.0.1:6379';
  if (!/^rediss?:\/\//.test(url)) {
    throw new InvalidArgumentError(
      `a Redis URL starts with redis:// or rediss://, got ${JSON.stringify(url)}`,
    );
  }
  for (const [k, v] of [
    ['publishTimeoutMs', options.publishTimeoutMs],
    ['maxQueued', options.maxQueued],
    ['keyTtlMs', options.keyTtlMs],
    ['connectTimeoutMs', options.connectTimeoutMs],
  ] as const) {
    if (v !== undefined && !(Number.isInteger(v) && v > 0)) {
      throw new InvalidArgumentError(`${k} must be a positive integer, got ${String(v)}`);
    }
  }
  const mod = await loadPeer<RedisModule>('@redis/client', 'the Redis broker (redisBroker)');
  const broker = new RedisBroker(mod, url, options, options.logger);
  await broker.start(options.connectTimeoutMs ?? 5000);
  return broker;
}
