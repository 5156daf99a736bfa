/**
 * Chat rooms on what a longlink Server offers today: the context of every connection that finished
 * its HELLO (`'ready'`; its `notify()` pushes to that client) and `'disconnect'` to forget it.
 *
 * longlink has rooms of its own (`await ctx.join(room)`, `ctx.leave(room)`, `ctx.rooms`,
 * `server.to(room).notify(topic, payload)`, across servers on Redis: docs/SCALING.md). This class
 * has the same shape, so that switching is a matter of deleting it and changing the calls in
 * server.ts — see README.md.
 */
import type { ConnectionContext, Server } from 'longlink';

/** Most rooms one connection may be in: a peer must not be able to grow our maps without bound. */
export const MAX_ROOMS_PER_CONNECTION = 16;

export class Rooms {
  /** Every ready connection's context, by connection id. */
  private readonly contexts = new Map<string, ConnectionContext>();
  /** room → connection ids of its members. */
  private readonly members = new Map<string, Set<string>>();
  /** connection id → the rooms it is in. */
  private readonly joined = new Map<string, Set<string>>();

  constructor(server: Server) {
    server.on('ready', (ctx) => this.contexts.set(ctx.connectionId, ctx));
  }

  /** Makes the connection of `ctx` a member of `room`. False when it is in too many rooms already. */
  join(ctx: ConnectionContext, room: string): boolean {
    const mine = this.joined.get(ctx.connectionId) ?? new Set<string>();
    if (mine.has(room)) return true;
    if (mine.size >= MAX_ROOMS_PER_CONNECTION) return false;
    mine.add(room);
    this.joined.set(ctx.connectionId, mine);
    const set = this.members.get(room) ?? new Set<string>();
    set.add(ctx.connectionId);
    this.members.set(room, set);
    return true;
  }

  /** Takes the connection of `ctx` out of `room`; false if it was not in it. */
  leave(ctx: ConnectionContext, room: string): boolean {
    return this.remove(ctx.connectionId, room);
  }

  /** The rooms the connection of `ctx` is in. */
  roomsOf(ctx: ConnectionContext): ReadonlySet<string> {
    return this.joined.get(ctx.connectionId) ?? new Set();
  }

  /** The contexts of a room's members. */
  membersOf(room: string): ConnectionContext[] {
    const out: ConnectionContext[] = [];
    for (const id of this.members.get(room) ?? []) {
      const ctx = this.contexts.get(id);
      if (ctx !== undefined) out.push(ctx);
    }
    return out;
  }

  /** A room to push to: every member gets the NOTIFY, the sender included. */
  to(room: string): { notify(topic: string, payload: unknown): number } {
    return {
      notify: (topic, payload) => {
        let sent = 0;
        for (const ctx of this.membersOf(room)) {
          try {
            ctx.notify(topic, payload); // false means backpressure: queued all the same
            sent++;
          } catch {
            // Closed a moment ago; its 'disconnect' is on its way and will remove it.
          }
        }
        return sent;
      },
    };
  }

  /** Forgets a closed connection; returns its context (if it got that far) and the rooms it was in. */
  drop(connectionId: string): { ctx: ConnectionContext | undefined; rooms: string[] } {
    const ctx = this.contexts.get(connectionId);
    const rooms = [...(this.joined.get(connectionId) ?? [])];
    for (const room of rooms) this.remove(connectionId, room);
    this.contexts.delete(connectionId);
    return { ctx, rooms };
  }

  private remove(connectionId: string, room: string): boolean {
    const mine = this.joined.get(connectionId);
    if (mine === undefined || !mine.delete(room)) return false;
    if (mine.size === 0) this.joined.delete(connectionId);
    const set = this.members.get(room);
    set?.delete(connectionId);
    if (set?.size === 0) this.members.delete(room);
    return true;
  }
}
