/**
 * One server node of the fan-out benchmark (bench/rooms/fanout.ts), in its own process:
 * `node node.js <longlink|socketio> <redis-url>`. It prints `{"port":N}` on stdout once listening
 * and exits when its stdin closes (the driver's end).
 *
 * Both systems do the same thing: a `join {room}` puts the connection in the room; a
 * `publish {room, t}` sends `{t}` to every member of the room on every node through Redis.
 * longlink: redisBroker (pub/sub + a Stream of history per room); socket.io 4 with
 * @socket.io/redis-adapter 8 (pub/sub only) on the same @redis/client, websocket transport only.
 */

import { createServer as createHttpServer } from 'node:http';
import { createClient } from '@redis/client';
import { createAdapter } from '@socket.io/redis-adapter';
import { Server as IoServer } from 'socket.io';
import { redisBroker } from '../../src/broker/redis.js';
import { createServer } from '../../src/server/server.js';
import { exitWithParent } from '../rpc/common.js';

interface PublishParams {
  room: string;
  t: number;
}

async function longlink(url: string): Promise<number> {
  const broker = await redisBroker({ url, prefix: 'bench:', history: { maxLength: 1000 } });
  const server: ReturnType<typeof createServer> = createServer({
    handlers: {
      join: async (p, ctx) => {
        await ctx.join((p as { room: string }).room);
        return true;
      },
      publish: async (p) => {
        const { room, t } = p as PublishParams;
        return server.to(room).notify('m', { t });
      },
    },
    broker,
    maxConnections: 100_000,
  });
  return (await server.listen({ port: 0, host: '127.0.0.1' })).port;
}

async function socketio(url: string): Promise<number> {
  const pub = createClient({ url });
  const sub = pub.duplicate();
  await Promise.all([pub.connect(), sub.connect()]);
  const http = createHttpServer();
  const io = new IoServer(http, { transports: ['websocket'], adapter: createAdapter(pub, sub) });
  io.on('connection', (socket) => {
    socket.on('join', (room: string, ack: (ok: boolean) => void) => {
      void socket.join(room);
      ack(true);
    });
    socket.on('publish', (p: PublishParams, ack: (ok: boolean) => void) => {
      io.to(p.room).emit('m', { t: p.t });
      ack(true);
    });
  });
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  const a = http.address();
  if (a === null || typeof a === 'string') throw new Error('no port');
  return a.port;
}

async function main(): Promise<void> {
  const [system, url] = process.argv.slice(2);
  if (url === undefined) throw new Error('usage: node.js <longlink|socketio> <redis-url>');
  exitWithParent();
  const port = system === 'longlink' ? await longlink(url) : await socketio(url);
  process.stdout.write(`${JSON.stringify({ port })}\n`);
}

main().catch((err) => {
  process.stderr.write(`${String(err?.stack ?? err)}\n`);
  process.exit(1);
});
