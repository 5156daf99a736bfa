/**
 * Rooms on one server: who is in which room, the per-room sequence every push carries, and the
 * catch-up of a client that comes back (docs/PROTOCOL.md §7.1, docs/SCALING.md).
 *
 * A push to a room goes to the broker (broker.ts), which numbers it and hands it to every server
 * with members in the room — this one too: a server delivers its own pushes when the broker hands
 * them back, so every member everywhere sees one order, the broker's.
 *
 *   server.to(room).notify ─▶ broker.publish ─▶ seq, history ─▶ every subscribed server
 *                                                                  │ deliver(room, entry)
 *   per room:  queue ─▶ [hole? entry.prev ≠ head: read history once] ─▶ forward
 *   per member: seq ≤ last: drop (duplicate) · prev ≠ last: `$gap` first · else the push
 *
 * A member's `last` is the seq it has (or was told it starts after). A join says where the member
 * starts (`$joined` with the room's head); a resume (`since`) first sends, from the history, what
 * was published after `since` — or a `$gap` where the history no longer covers it — while pushes
 * arriving meanwhile wait in the member's own queue. The per-member check (prev = last) makes every
 * hole visible: the client sees each push once, in order, or a `$gap` naming what it lost.
 *
 * Peers of 1.0 and 1.1 get room pushes as plain NOTIFYs (no seq, no notices, no resume).
 *
 * Membership ends with the connection. Every collection a peer can grow is bounded:
 * maxRoomsPerConnection rooms (joins and resumes), maxRoomNameBytes per name, maxResumeBacklog
 * pushes held for one member while its history is read (past it the member gets a `$gap`).
 *
 * Why it is over 800 lines: membership, fan-out from the broker and resume share one structure (a
 * member's queue and cursor), and each of the three changes it; the broker itself (broker.ts,
 * broker/redis.ts) and the wire format (protocol/wire.ts) are apart.
 */

import type { Connection } from '../connection/connection.js';
import {
  BrokerUnavailableError,
  ConnectionClosedError,
  InvalidArgumentError,
  LonglinkError,
  RoomLimitError,
} from '../errors.js';
import { jsonCodec, type PayloadCodec } from '../protocol/payload.js';
import { MAX_ROOM_SEQ, type Message, MessageKind } from '../protocol/types.js';
import { encodeMessage } from '../protocol/wire.js';
import type { Logger } from '../util/log.js';
import type { Broker, BrokerEntry, BrokerSink } from './broker.js';
import type { ConnectionContext, JoinOptions, RoomAuthorize, RoomPeer, RoomsHost } from './context.js';

/** The control notices of protocol 1.2: ROOM-flagged NOTIFYs with these topics and no payload. */
export const RoomNotice = {
  /** The connection is a member of the room; seq: where it starts (it has everything up to it). */
  JOINED: '$joined',
  /** It no longer is; seq: the last push it was sent. */
  LEFT: '$left',
  /** Pushes after the client's last seq, up to and including seq, are lost (not in the history). */
  GAP: '$gap',
} as const;

/** The built-in request a 1.2 client sends first after a reconnect: `{ rooms: { [room]: lastSeq } }`. */
export const RESUME_METHOD = '$resume';

/** Limits and hooks of the rooms of one server (ServerOptions.rooms plus SERVER_DEFAULTS). */
export interface RoomsConfig {
  broker: Broker;
  maxRoomsPerConnection: number;
  maxRoomNameBytes: number;
  maxResumeBacklog: number;
  /** Entries read from the history for one resume or repair (the newest ones). */
  maxReplay: number;
  authorize: RoomAuthorize | undefined;
  log: Logger | undefined;
}

class Member {
  /** The last seq this member was sent (or starts after). */
  last = 0;
  /** Pushes held while its join or resume reads the history; undefined once it is live. */
  held: BrokerEntry[] | undefined = undefined;
  /** The held queue overflowed: pushes were dropped, a `$gap` covers them. */
  overflow = false;
  /** Set while its join waits for the room to be ready: the connection closed, stop waiting. */
  cancelWait: (() => void) | undefined = undefined;
  constructor(
    readonly peer: RoomPeer,
    readonly room: Room,
  ) {}
}

class Room {
  readonly members = new Map<RoomPeer, Member>();
  /** The last seq forwarded here; meaningful once `ready`. */
  head = 0;
  /** Entries handed over by the broker, waiting their turn (a history read runs, or not ready yet). */
  readonly queue: BrokerEntry[] = [];
  /** The broker subscription is up and the head known. */
  ready = false;
  /** A history read runs for a hole. */
  repairing = false;
  /** The seq whose hole was already looked for in the history (forward it whatever came back). */
  repairedFor = -1;
  removed = false;
  /** Resolves when ready. */
  readonly whenReady: Promise<void>;
  resolveReady!: () => void;
  constructor(readonly name: string) {
    this.whenReady = new Promise((resolve) => {
      this.resolveReady = resolve;
    });
  }
}

interface PeerRooms {
  readonly rooms: Map<string, Member>;
  /** Joins waiting for the client's $resume (resumeExpected), with the caller's promise. */
  deferred:
    | Array<{ room: string; options: JoinOptions | undefined; done: (err?: unknown) => void }>
    | undefined;
  /** Where the client's $resume said it left each room, for the rooms `authorize` allowed. */
  cursors: Map<string, number> | undefined;
  /** Every room the $resume under way names (allowed or not yet asked): what `leave` must keep out. */
  claimed: Map<string, number> | undefined;
  identityKey: string | undefined;
  /** True while a $resume runs (it awaits `authorize` and history room by room). */
  resuming: boolean;
  /**
   * Rooms left (ctx.leave) while a $resume was expected or running, before it reached them: it
   * must not put the connection back in. Requests run concurrently, so a client that reconnects
   * and at once asks to leave a room can have its leave handled before its $resume (found by
   * test/broker/property.test.ts).
   */
  dropped: Set<string> | undefined;
}

/** A room entry's NOTIFY frames, built once per codec and framing and shared by every member. */
class FrameCache {
  private value: unknown;
  private decoded = false;
  private readonly frames = new Map<string, Buffer[] | null>();
  constructor(
    private readonly room: string,
    private readonly entry: BrokerEntry,
    private readonly brokerCodec: PayloadCodec,
  ) {}

  /** The frame for `peer` (chunks, the framing prefix filled in), or null if it cannot have it. */
  frame(peer: RoomPeer, withSeq: boolean): Buffer[] | null {
    const prefix = peer.connection.prefixLength ?? 0;
    const codec = peer.codec;
    const key = `${codec.name}/${withSeq ? 1 : 0}/${prefix}`;
    let f = this.frames.get(key);
    if (f !== undefined) return f;
    f = null;
    try {
      let payload = this.entry.payload;
      if (codec.name !== this.brokerCodec.name) {
        if (!this.decoded) {
          this.value = this.brokerCodec.decode(payload);
          this.decoded = true;
        }
        payload = codec.encode(this.value);
      }
      const e = this.entry;
      const msg: Message = withSeq
        ? { kind: MessageKind.NOTIFY, topic: e.topic, room: this.room, seq: e.seq, payload }
        : { kind: MessageKind.NOTIFY, topic: e.topic, payload };
      f = encodeMessage(msg, prefix);
    } catch {
      f = null;
    }
    this.frames.set(key, f);
    return f;
  }
}

function byteLength(parts: readonly Buffer[]): number {
  let n = 0;
  for (let i = 0; i < parts.length; i++) n += (parts[i] as Buffer).length;
  return n;
}

/** Queues a frame built with encodeMessage(…, prefix) on `c`; false if it could not be queued. */
function sendFrame(c: Connection, parts: Buffer[]): boolean {
  try {
    const prefix = c.prefixLength ?? 0;
    if (prefix === 0) c.sendOwnParts(parts);
    else if (parts.length === 1) c.sendPrefixedOne(parts[0] as Buffer);
    else c.sendPrefixed(parts);
    return true;
  } catch {
    return false;
  }
}

/** The key under which an identity is addressed: a string or number itself, or its `id`. */
export function identityKey(identity: unknown): string | undefined {
  if (typeof identity === 'string') return identity.length > 0 ? identity : undefined;
  if (typeof identity === 'number' && Number.isFinite(identity)) return String(identity);
  if (identity !== null && typeof identity === 'object') {
    const id = (identity as { id?: unknown }).id;
    if (typeof id === 'string' && id.length > 0) return id;
    if (typeof id === 'number' && Number.isFinite(id)) return String(id);
  }
  return undefined;
}

function minorOf(peer: RoomPeer): number {
  const a = peer.agreement;
  return a === undefined ? 0 : a.version & 0xff;
}

/** @internal The rooms of one server (see the file comment). */
export class Rooms implements RoomsHost, BrokerSink {
  private readonly rooms = new Map<string, Room>();
  private readonly peers = new Map<RoomPeer, PeerRooms>();
  private readonly identities = new Map<string, Set<RoomPeer>>();
  private readonly broker: Broker;
  private readonly brokerCodec: PayloadCodec = jsonCodec;
  private warnedAuthorize = false;
  private closed = false;

  constructor(private readonly config: RoomsConfig) {
    this.broker = config.broker;
    this.broker.attach(this);
  }

  // -------------------------------------------------------------------------------------------
  // Names and limits

  /** Throws InvalidArgumentError / RoomLimitError unless `room` is a valid room name here. */
  checkName(room: unknown): asserts room is string {
    if (typeof room !== 'string' || room.length === 0) {
      throw new InvalidArgumentError('a room name must be a non-empty string');
    }
    const bytes = Buffer.byteLength(room, 'utf8');
    if (bytes > this.config.maxRoomNameBytes) {
      throw new RoomLimitError(
        'maxRoomNameBytes',
        bytes,
        `room name of ${bytes} bytes is over maxRoomNameBytes ${this.config.maxRoomNameBytes}`,
      );
    }
  }

  private state(peer: RoomPeer): PeerRooms {
    let s = this.peers.get(peer);
    if (s === undefined) {
      s = {
        rooms: new Map(),
        deferred: undefined,
        cursors: undefined,
        claimed: undefined,
        identityKey: undefined,
        resuming: false,
        dropped: undefined,
      };
      this.peers.set(peer, s);
    }
    return s;
  }

  // -------------------------------------------------------------------------------------------
  // Membership (RoomsHost: what ctx.join / ctx.leave / ctx.rooms call)

  join(peer: RoomPeer, room: string, options: JoinOptions | undefined): Promise<void> {
    try {
      this.checkName(room);
      const since = options?.since;
      if (since !== undefined && !(Number.isSafeInteger(since) && since >= 0)) {
        throw new InvalidArgumentError(`since must be an integer in [0, 2^53-1], got ${String(since)}`);
      }
    } catch (err) {
      return Promise.reject(err);
    }
    if (this.closed || !peer.connection.writable) {
      return Promise.reject(new ConnectionClosedError('the connection is closed: no room to join'));
    }
    const s = this.state(peer);
    s.dropped?.delete(room);
    if (s.rooms.has(room) || s.deferred?.some((d) => d.room === room)) return Promise.resolve();
    const taken = s.rooms.size + (s.deferred?.length ?? 0);
    if (taken >= this.config.maxRoomsPerConnection) {
      return Promise.reject(
        new RoomLimitError(
          'maxRoomsPerConnection',
          taken + 1,
          `the connection is in ${taken} rooms already (maxRoomsPerConnection ${this.config.maxRoomsPerConnection})`,
        ),
      );
    }
    if (peer.resumeExpected && minorOf(peer) >= 2) {
      // The client resumes next: its $resume says where it left this room.
      return new Promise((resolve, reject) => {
        s.deferred ??= [];
        s.deferred.push({ room, options, done: (err) => (err === undefined ? resolve() : reject(err)) });
      });
    }
    const since = options?.since ?? s.cursors?.get(room);
    return this.enter(peer, s, room, since);
  }

  leave(peer: RoomPeer, room: string): boolean {
    const s = this.peers.get(peer);
    const m = s?.rooms.get(room);
    if (m === undefined && (peer.resumeExpected || (s?.resuming === true && s.claimed?.has(room) === true))) {
      // Before the $resume got to this room: it stays out (the $resume answer refuses it, and
      // the client forgets it). A server-side join still waiting for the $resume is dropped.
      const state = this.state(peer);
      state.dropped ??= new Set();
      state.dropped.add(room);
      const i = state.deferred?.findIndex((d) => d.room === room) ?? -1;
      if (i >= 0) state.deferred?.splice(i, 1)[0]?.done();
      return true;
    }
    if (s === undefined || m === undefined) return false;
    s.rooms.delete(room);
    // A join after this starts afresh, not from where a $resume said the client was (it would
    // replay what the connection already had: found by test/broker/property.test.ts).
    s.cursors?.delete(room);
    this.removeMember(m);
    this.notice(peer, RoomNotice.LEFT, room, m.last);
    return true;
  }

  roomsOf(peer: RoomPeer): ReadonlySet<string> {
    return new Set(this.peers.get(peer)?.rooms.keys());
  }

  /** The connection closed: it leaves every room (no notice: it is gone) and its identity. */
  peerClosed(peer: RoomPeer): void {
    const s = this.peers.get(peer);
    if (s === undefined) return;
    this.peers.delete(peer);
    for (const m of s.rooms.values()) {
      this.removeMember(m);
      // A join still waiting for the room (the broker down) ends now: its handler must not hold
      // the closed connection's slot until Redis is back (red team G2).
      m.cancelWait?.();
    }
    const closed = new ConnectionClosedError('the connection closed before the join');
    for (const d of s.deferred ?? []) d.done(closed);
    const key = s.identityKey;
    if (key !== undefined) {
      const set = this.identities.get(key);
      set?.delete(peer);
      if (set !== undefined && set.size === 0) {
        this.identities.delete(key);
        this.broker.unsubscribeIdentity(key);
      }
    }
  }

  /** The connection is ready: it can be addressed by its identity. */
  peerReady(peer: RoomPeer): void {
    const key = identityKey(peer.identity);
    if (key === undefined) return;
    this.state(peer).identityKey = key;
    let set = this.identities.get(key);
    if (set === undefined) {
      set = new Set();
      this.identities.set(key, set);
      this.broker.subscribeIdentity(key);
    }
    set.add(peer);
  }

  /**
   * The built-in $resume: the client names the rooms it was in and the last seq it has of each.
   * Rooms `authorize` allows are joined from there (history first); the others are refused (the
   * client forgets them). Joins the server made while waiting for this take the cursors too.
   */
  async resume(
    peer: RoomPeer,
    ctx: ConnectionContext,
    params: unknown,
  ): Promise<{ resumed: string[]; refused: string[] }> {
    const rooms = (params as { rooms?: unknown } | null)?.rooms;
    if (rooms === null || typeof rooms !== 'object' || Array.isArray(rooms)) {
      throw new InvalidArgumentError('$resume takes { rooms: { [room]: lastSeq } }');
    }
    const entries = Object.entries(rooms as Record<string, unknown>);
    if (entries.length > this.config.maxRoomsPerConnection) {
      throw new RoomLimitError(
        'maxRoomsPerConnection',
        entries.length,
        `$resume names ${entries.length} rooms (maxRoomsPerConnection ${this.config.maxRoomsPerConnection})`,
      );
    }
    const cursors = new Map<string, number>();
    for (const [room, seq] of entries) {
      this.checkName(room);
      if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 0 || seq > MAX_ROOM_SEQ) {
        throw new InvalidArgumentError(`$resume: the seq of ${room} must be an integer in [0, 2^53-1]`);
      }
      cursors.set(room, seq);
    }
    const s = this.state(peer);
    // Only the rooms `authorize` allows get a cursor: a join the application makes later starts
    // from a cursor the client claimed only where it may resume (red team G3).
    s.cursors = new Map();
    s.claimed = cursors;
    s.resuming = true;
    peer.resumeExpected = false;
    try {
      return await this.resumeRooms(peer, s, ctx, cursors);
    } finally {
      s.resuming = false;
      s.dropped = undefined;
      s.claimed = undefined;
    }
  }

  private async resumeRooms(
    peer: RoomPeer,
    s: PeerRooms,
    ctx: ConnectionContext,
    cursors: Map<string, number>,
  ): Promise<{ resumed: string[]; refused: string[] }> {
    // The server's own joins that waited for this, from where the client left off.
    const deferred = s.deferred ?? [];
    s.deferred = undefined;
    // The client's cursor counts for them only where it may resume the room.
    for (const d of deferred) {
      const claimed = cursors.get(d.room);
      void (async () => {
        const since =
          d.options?.since ??
          (claimed !== undefined && (await this.allows(d.room, ctx)) ? claimed : undefined);
        await this.enter(peer, s, d.room, since);
      })().then(
        () => d.done(),
        (err: unknown) => d.done(err),
      );
    }
    const resumed: string[] = [];
    const refused: string[] = [];
    for (const [room, since] of cursors) {
      if (s.rooms.has(room)) {
        resumed.push(room);
        continue;
      }
      const ok = await this.allows(room, ctx);
      if (!ok || s.dropped?.has(room) === true) {
        refused.push(room);
        continue;
      }
      s.cursors?.set(room, since);
      try {
        await this.join(peer, room, { since });
        resumed.push(room);
      } catch (err) {
        if (err instanceof RoomLimitError) refused.push(room);
        else throw err;
      }
    }
    return { resumed, refused };
  }

  /** May this connection re-enter `room` on its own cursor? (`authorize`; unset: no.) */
  private async allows(room: string, ctx: ConnectionContext): Promise<boolean> {
    const authorize = this.config.authorize;
    if (authorize === undefined) {
      if (!this.warnedAuthorize) {
        this.warnedAuthorize = true;
        this.config.log?.warn(
          { room },
          'a client asked to resume rooms and rooms.authorize is not set: refused (set it to allow resumes)',
        );
      }
      return false;
    }
    try {
      return (await authorize(room, ctx)) === true;
    } catch {
      return false;
    }
  }

  private async enter(peer: RoomPeer, s: PeerRooms, name: string, since: number | undefined): Promise<void> {
    let room = this.rooms.get(name);
    if (room === undefined) {
      room = new Room(name);
      this.rooms.set(name, room);
      this.open(room);
    }
    const m = new Member(peer, room);
    m.held = [];
    s.rooms.set(name, m);
    room.members.set(peer, m);
    this.broker.membersChanged?.(name);
    try {
      await new Promise<void>((resolve) => {
        m.cancelWait = resolve;
        void (room as Room).whenReady.then(resolve);
      });
      m.cancelWait = undefined;
      if (!this.peers.has(peer)) throw new ConnectionClosedError('the connection closed before the join');
      if (room.removed || room.members.get(peer) !== m) return; // left meanwhile
      if (since === undefined) {
        m.last = room.head;
        this.notice(peer, RoomNotice.JOINED, name, m.last);
        this.release(m);
        return;
      }
      m.last = since;
      this.notice(peer, RoomNotice.JOINED, name, since);
      let head = 0;
      let entries: readonly BrokerEntry[] = [];
      try {
        const h = await this.broker.history(name, since, this.config.maxReplay);
        head = h.head;
        entries = h.entries;
      } catch (err) {
        // No history to be had: whatever came since `since` is lost to this member, said so.
        this.config.log?.warn({ room: name, err: (err as Error)?.message }, 'history unavailable on resume');
      }
      if (room.removed || room.members.get(peer) !== m) return;
      if (since > head && head > 0) {
        // A cursor ahead of the room (another deployment's, or made up): pushes numbered at or
        // below it would be dropped as already seen. Start the member at the room's head, said
        // with a second `$joined` (the client takes it as its cursor) (red team G6).
        m.last = head;
        this.notice(peer, RoomNotice.JOINED, name, head);
      }
      // Paced by the connection (red team G4): past its high watermark the replay waits for
      // 'drain', so a client that resumes and does not read holds back the rest of its history
      // instead of making us queue all of it (until the slow-consumer reset ends it).
      const frames = entries.length > 0 ? new Map<BrokerEntry, FrameCache>() : undefined;
      for (const e of entries) {
        this.sendTo(m, e, frames?.get(e) ?? this.frameCache(name, e, frames));
        if (aboveHighWater(peer) && !(await this.drained(peer, room, m))) return;
      }
      if (head > m.last && !(m.held ?? []).some((e) => e.prev === m.last)) {
        // The history ends at head but does not reach back to the member: lost, said now.
        this.gap(m, head);
      }
      // What was held meanwhile goes out the same way, then the member is live.
      const held = m.held ?? [];
      while (held.length > 0) {
        const e = held.shift() as BrokerEntry;
        this.sendTo(m, e, new FrameCache(name, e, this.brokerCodec));
        if (held.length > 0 && aboveHighWater(peer) && !(await this.drained(peer, room, m))) return;
      }
      this.release(m);
    } catch (err) {
      this.leave(peer, name);
      throw err;
    }
  }

  /**
   * Waits until `peer`'s connection has drained to its low watermark or closed; then whether `m`
   * is still its member of `room` (a leave, a close or the room's end meanwhile: stop there).
   */
  private async drained(peer: RoomPeer, room: Room, m: Member): Promise<boolean> {
    const c = peer.connection;
    await new Promise<void>((resolve) => {
      const done = () => {
        c.off('drain', done);
        resolve();
      };
      c.on('drain', done);
      void c.closed.then(done);
    });
    return c.writable && !room.removed && room.members.get(peer) === m && this.peers.has(peer);
  }

  private frameCache(room: string, e: BrokerEntry, into?: Map<BrokerEntry, FrameCache>): FrameCache {
    const f = new FrameCache(room, e, this.brokerCodec);
    into?.set(e, f);
    return f;
  }

  /** The member's join is done: what was held for it goes out, then it is live. */
  private release(m: Member): void {
    const held = m.held ?? [];
    m.held = undefined;
    if (m.overflow) {
      m.overflow = false;
      const first = held[0];
      if (first !== undefined && first.prev > m.last) this.gap(m, first.prev);
    }
    for (const e of held) this.sendTo(m, e, new FrameCache(m.room.name, e, this.brokerCodec));
  }

  private removeMember(m: Member): void {
    const room = m.room;
    if (room.members.get(m.peer) !== m) return;
    room.members.delete(m.peer);
    this.broker.membersChanged?.(room.name);
    if (room.members.size === 0) {
      room.removed = true;
      this.rooms.delete(room.name);
      this.broker.unsubscribe(room.name);
      room.resolveReady();
    }
  }

  /** Subscribes, then reads the head: from then on no push of the room can be missed. */
  private open(room: Room): void {
    const start = async () => {
      for (let attempt = 0; !room.removed && !this.closed; attempt++) {
        try {
          await this.broker.subscribe(room.name);
          const h = await this.broker.history(room.name, MAX_ROOM_SEQ, 0);
          room.head = h.head;
          return;
        } catch (err) {
          // The broker is down: members wait (their pushes could not come anyway), then retry.
          if (attempt === 0) {
            this.config.log?.warn(
              { room: room.name, err: (err as Error)?.message },
              'room waits for the broker',
            );
          }
          await new Promise((r) => setTimeout(r, Math.min(2000, 100 * 2 ** attempt)).unref());
        }
      }
    };
    void start().then(() => {
      room.ready = true;
      room.resolveReady();
      this.pump(room);
    });
  }

  // -------------------------------------------------------------------------------------------
  // Delivery (BrokerSink)

  deliver(name: string, entry: BrokerEntry): void {
    const room = this.rooms.get(name);
    if (room === undefined) return;
    const q = room.queue;
    if (q.length >= this.config.maxResumeBacklog) q.shift(); // its hole is read from the history
    q.push(entry);
    if (room.ready && !room.repairing) this.pump(room);
  }

  identity(key: string, topic: string, payload: Buffer): void {
    const set = this.identities.get(key);
    if (set === undefined) return;
    let value: unknown;
    try {
      value = this.brokerCodec.decode(payload);
    } catch {
      return;
    }
    for (const peer of set) {
      if (!peer.connection.writable || peer.goawaySent) continue;
      try {
        peer.notify(topic, value);
      } catch {
        // closing: nothing to deliver to
      }
    }
  }

  resync(): void {
    for (const room of this.rooms.values()) {
      if (!room.ready || room.repairing) continue;
      // Whatever was published after our head while the subscription was down is in the history.
      room.repairing = true;
      this.broker.history(room.name, room.head, this.config.maxReplay).then(
        (h) => {
          room.repairing = false;
          if (room.removed) return;
          for (const e of h.entries) if (e.seq > room.head) room.queue.push(e);
          room.queue.sort((a, b) => a.seq - b.seq);
          this.pump(room);
        },
        () => {
          room.repairing = false;
          this.pump(room);
        },
      );
    }
  }

  localCount(room: string): number {
    return this.rooms.get(room)?.members.size ?? 0;
  }

  /** Forwards the room's queue in seq order; a hole is looked for in the history once. */
  private pump(room: Room): void {
    const q = room.queue;
    while (q.length > 0 && !room.repairing && !room.removed) {
      const e = q[0] as BrokerEntry;
      if (e.seq <= room.head) {
        q.shift();
        continue;
      }
      if (e.prev !== room.head && e.prev > room.head && room.repairedFor !== e.seq) {
        // A hole (room.head, e.prev]: lost on the way here (a subscription that dropped), or the
        // broker's own. The history may have it.
        room.repairing = true;
        room.repairedFor = e.seq;
        this.broker.history(room.name, room.head, this.config.maxReplay).then(
          (h) => {
            room.repairing = false;
            if (room.removed) return;
            for (const x of h.entries) if (x.seq > room.head && x.seq < e.seq) this.forward(room, x);
            this.pump(room);
          },
          () => {
            room.repairing = false;
            this.pump(room);
          },
        );
        return;
      }
      q.shift();
      this.forward(room, e);
    }
  }

  private forward(room: Room, e: BrokerEntry): void {
    room.head = e.seq;
    const frames = new FrameCache(room.name, e, this.brokerCodec);
    for (const m of room.members.values()) {
      const held = m.held;
      if (held !== undefined) {
        if (held.length >= this.config.maxResumeBacklog) {
          held.shift();
          m.overflow = true;
        }
        held.push(e);
        continue;
      }
      this.sendTo(m, e, frames);
    }
  }

  /** One entry to one member: dropped if it has it, after a `$gap` if it misses some before it. */
  private sendTo(m: Member, e: BrokerEntry, frames: FrameCache): void {
    if (e.seq <= m.last) return;
    // A hole before e: (last, prev]. A prev below last is a history that started again (a broker
    // that lost its state): whatever came between is unknown, so the gap runs up to e.
    if (e.prev !== m.last) this.gap(m, e.prev > m.last ? e.prev : e.seq - 1);
    m.last = e.seq;
    const peer = m.peer;
    const c = peer.connection;
    if (!c.writable || peer.goawaySent) return;
    const f = frames.frame(peer, minorOf(peer) >= 2);
    if (f === null) return;
    const a = peer.agreement;
    if (a !== undefined && byteLength(f) - (c.prefixLength ?? 0) > a.maxFrameLength) return;
    sendFrame(c, f);
  }

  private gap(m: Member, through: number): void {
    if (through <= m.last) return;
    m.last = through;
    this.notice(m.peer, RoomNotice.GAP, m.room.name, through);
  }

  /** A control notice (1.2 peers only). */
  private notice(peer: RoomPeer, topic: string, room: string, seq: number): void {
    if (minorOf(peer) < 2) return;
    const c = peer.connection;
    if (!c.writable || peer.goawaySent) return;
    sendFrame(
      c,
      encodeMessage(
        { kind: MessageKind.NOTIFY, topic, room, seq, payload: Buffer.alloc(0) },
        c.prefixLength ?? 0,
      ),
    );
  }

  // -------------------------------------------------------------------------------------------
  // Publishing

  /** Publishes to a room through the broker; resolves with the push's seq. */
  publish(room: string, topic: string, payload: unknown): Promise<number> {
    let bytes: Buffer;
    try {
      this.checkName(room);
      if (typeof topic !== 'string' || topic.length === 0 || Buffer.byteLength(topic) > 255) {
        throw new InvalidArgumentError('topic must be 1–255 UTF-8 bytes');
      }
      if (topic.startsWith('$')) {
        throw new InvalidArgumentError(`topics starting with $ are the protocol's notices, got ${topic}`);
      }
      bytes = this.brokerCodec.encode(payload);
    } catch (err) {
      return Promise.reject(err);
    }
    if (this.closed) return Promise.reject(new BrokerUnavailableError('the server is closed', false));
    return this.broker.publish(room, topic, bytes).catch((err: unknown) => {
      throw err instanceof LonglinkError
        ? err
        : new BrokerUnavailableError(`publish to ${room} failed: ${(err as Error)?.message}`, false, {
            cause: err,
          });
    });
  }

  /** Pushes to every connection of an identity, on every server of the broker. */
  publishIdentity(key: string, topic: string, payload: unknown): Promise<void> {
    let bytes: Buffer;
    try {
      if (typeof topic !== 'string' || topic.length === 0 || Buffer.byteLength(topic) > 255) {
        throw new InvalidArgumentError('topic must be 1–255 UTF-8 bytes');
      }
      bytes = this.brokerCodec.encode(payload);
    } catch (err) {
      return Promise.reject(err);
    }
    return this.broker.publishIdentity(key, topic, bytes);
  }

  count(room: string): Promise<number> {
    return this.broker.count(room, this.localCount(room));
  }

  /** Rooms with members here. */
  get size(): number {
    return this.rooms.size;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const room of this.rooms.values()) {
      room.removed = true;
      room.resolveReady();
    }
    this.rooms.clear();
    await this.broker.close();
  }
}

/** What {@link Server.to} returns: a room, to push to and count. */
export interface RoomTarget {
  readonly room: string;
  /**
   * Pushes `topic`/`payload` to every member of the room on every server of the broker; resolves
   * with the push's seq in the room once the broker has it. Rejects with BrokerUnavailableError
   * when the broker cannot take it (see `sent`), InvalidArgumentError for a `$` topic.
   */
  notify(topic: string, payload?: unknown): Promise<number>;
  /** Members on this server, now. */
  readonly localCount: number;
  /** Members on every server of the broker. */
  count(): Promise<number>;
}

/** What {@link Server.toIdentity} returns: every connection of one identity, on any server. */
export interface IdentityTarget {
  /** The key the identity is addressed by: the identity if a string or number, else its `id`. */
  readonly key: string;
  /** Pushes to each of its connections, wherever connected (plain NOTIFYs: no seq, no history). */
  notify(topic: string, payload?: unknown): Promise<void>;
}

/** The connection holds at least its high watermark of unsent bytes: a replay waits for 'drain'. */
function aboveHighWater(peer: RoomPeer): boolean {
  const c = peer.connection;
  return c.bufferedAmount >= c.settings.highWaterMark;
}
