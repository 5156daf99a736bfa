/**
 * A chat server: clients log in with their name, join rooms, and what one says in a room is pushed
 * to every member (server push: NOTIFY frames on each member's own connection). `announce` goes
 * to everybody connected (`server.broadcast`).
 *
 *   node dist/examples/chat/server.js --port 7070
 */
import { parseArgs } from 'node:util';
import { createServer, type RequestContext } from 'longlink';
import {
  type Announcement,
  type ChatMessage,
  type Delivered,
  type JoinResult,
  type Presence,
  ROOM_NAME,
} from './messages.js';
import { MAX_ROOMS_PER_CONNECTION, Rooms } from './rooms.js';

const { values: args } = parseArgs({
  options: {
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string', default: '7070' },
  },
});

/** A handler that throws an error with a `code` (and `details`) answers the request with them. */
class ChatError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly details?: unknown,
  ) {
    super(message);
  }
}

function roomOf(params: unknown): string {
  const room = (params as { room?: unknown } | null)?.room;
  if (typeof room !== 'string' || !ROOM_NAME.test(room)) {
    throw new ChatError('ERR_BAD_ROOM', 'a room name is 1-32 of a-z, 0-9 and -', { room });
  }
  return room;
}

/** The name the client logged in with (what `authenticate` returned). */
const userOf = (ctx: RequestContext) => ctx.identity as string;

const server = createServer({
  // The HELLO's credential is the user's name here; a real server would check a token.
  authenticate: (credential) =>
    credential !== undefined && /^\w{1,24}$/.test(credential) ? credential : false,
  handlers: {
    join: (params, ctx): JoinResult => {
      const room = roomOf(params);
      if (!rooms.join(ctx, room)) {
        throw new ChatError('ERR_TOO_MANY_ROOMS', `at most ${MAX_ROOMS_PER_CONNECTION} rooms per connection`);
      }
      rooms.to(room).notify('joined', { room, user: userOf(ctx) } satisfies Presence);
      console.log(`${userOf(ctx)} joined #${room}`);
      return { room, members: rooms.membersOf(room).map((m) => m.identity as string) };
    },
    leave: (params, ctx): Delivered => {
      const room = roomOf(params);
      if (!rooms.leave(ctx, room)) return { delivered: 0 };
      return { delivered: rooms.to(room).notify('left', { room, user: userOf(ctx) } satisfies Presence) };
    },
    say: (params, ctx): Delivered => {
      const room = roomOf(params);
      const text = (params as { text?: unknown }).text;
      if (typeof text !== 'string' || text.length === 0 || text.length > 2000) {
        throw new ChatError('ERR_BAD_TEXT', 'text is a string of 1-2000 characters');
      }
      if (!rooms.roomsOf(ctx).has(room)) throw new ChatError('ERR_NOT_A_MEMBER', `join #${room} first`);
      const message: ChatMessage = { room, from: userOf(ctx), text };
      return { delivered: rooms.to(room).notify('message', message) };
    },
    announce: (params, ctx): Delivered => {
      const text = String((params as { text?: unknown }).text ?? '').slice(0, 2000);
      const announcement: Announcement = { from: userOf(ctx), text };
      return { delivered: server.broadcast('announcement', announcement) };
    },
  },
});
const rooms = new Rooms(server);

// Membership ends with the connection: tell the rooms it was in.
server.on('disconnect', (connection, info) => {
  const { ctx, rooms: left } = rooms.drop(connection.id);
  if (ctx === undefined) return; // it never finished its HELLO
  const user = ctx.identity as string;
  for (const room of left) rooms.to(room).notify('left', { room, user } satisfies Presence);
  console.log(`${user} disconnected (${info.reason})`);
});

const { address, port } = await server.listen({ host: args.host, port: Number(args.port) });
console.log(`chat server listening on ${address}:${port}`);

async function stop(): Promise<void> {
  server.broadcast('announcement', { from: 'server', text: 'shutting down' } satisfies Announcement);
  const report = await server.close({ graceMs: 2_000 });
  console.log(`chat server stopped (${report.connections} clients were connected)`);
}
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
