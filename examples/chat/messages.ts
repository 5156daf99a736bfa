/** What the chat server and its clients exchange: request results and server pushes. */

/** `join` → the room's members, the new one included. */
export interface JoinResult {
  room: string;
  members: string[];
}

/** `say` and `announce` → how many connections the push went to. */
export interface Delivered {
  delivered: number;
}

/** Pushed to a room's members (the sender too) on `say`: topic `message`. */
export interface ChatMessage {
  room: string;
  from: string;
  text: string;
}

/** Pushed to a room's members when someone joins or leaves it: topics `joined`, `left`. */
export interface Presence {
  room: string;
  user: string;
}

/** Pushed to every connected client: topic `announcement`. */
export interface Announcement {
  from: string;
  text: string;
}

/** Room names: short, lowercase, no spaces. */
export const ROOM_NAME = /^[a-z0-9][a-z0-9-]{0,31}$/;
