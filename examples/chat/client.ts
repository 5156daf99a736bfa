/**
 * A chat client: logs in, joins rooms, sends each line typed on stdin and prints what the server
 * pushes. End stdin (Ctrl-D) to leave.
 *
 *   node dist/examples/chat/client.js --port 7070 --user alice --room lobby
 *
 * A line is said in the first room; `#room text` says it in another; `/announce text` goes to
 * everybody connected.
 */
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { connect, RemoteError } from 'longlink';
import type { Announcement, ChatMessage, Delivered, JoinResult, Presence } from './messages.js';

const { values: args } = parseArgs({
  options: {
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string', default: '7070' },
    user: { type: 'string', default: 'guest' },
    room: { type: 'string', multiple: true, default: ['lobby'] },
  },
});
const me = args.user;
const rooms = args.room;

const client = await connect({ host: args.host, port: Number(args.port), credential: me });

// Listen before joining: pushes can arrive before the join's own answer.
client.on('notify', (topic, payload) => {
  switch (topic) {
    case 'message': {
      const m = payload as ChatMessage;
      console.log(`[#${m.room}] ${m.from}: ${m.text}`);
      break;
    }
    case 'joined':
    case 'left': {
      const p = payload as Presence;
      if (p.user !== me) console.log(`* ${p.user} ${topic} #${p.room}`);
      break;
    }
    case 'announcement': {
      const a = payload as Announcement;
      console.log(`! ${a.from} announces: ${a.text}`);
      break;
    }
  }
});

for (const room of rooms) {
  const r = await client.request<JoinResult>('join', { room });
  console.log(`joined #${r.room} (${r.members.join(', ')})`);
}

for await (const line of createInterface({ input: process.stdin })) {
  const text = line.trim();
  if (text === '') continue;
  try {
    if (text.startsWith('/announce ')) {
      await client.request<Delivered>('announce', { text: text.slice('/announce '.length) });
    } else {
      const m = /^#(\S+)\s+(.*)$/.exec(text);
      await client.request<Delivered>('say', m ? { room: m[1], text: m[2] } : { room: rooms[0], text });
    }
  } catch (err) {
    // The server's own codes (ERR_NOT_A_MEMBER, ERR_BAD_ROOM …) come back as RemoteError.
    if (err instanceof RemoteError) console.log(`(${err.code}: ${err.message})`);
    else throw err;
  }
}

for (const room of rooms) await client.request('leave', { room });
await client.close();
console.log(`${me} left`);
