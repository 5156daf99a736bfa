/**
 * What handlers, notify listeners and `authenticate` are told about a connection and a request
 * (the contexts), the handler and router types, and what a protocol session reports to its server.
 */

import type { TLSSocket } from 'node:tls';
import type { CloseInfo } from '../connection/close-reason.js';
import type { Connection } from '../connection/connection.js';
import type { HelloAgreement, HelloPolicy } from '../protocol/hello.js';
import type { PayloadCodec, PayloadCodecRegistry } from '../protocol/payload.js';
import type { Deadlines } from '../util/deadlines.js';
import type { RateLimit, Refusal } from './admission.js';

/** The TLS side of a connection, when it came over TLS. */
export interface TlsInfo {
  /** The negotiated version: 'TLSv1.3', 'TLSv1.2'. */
  readonly protocol: string | null;
  /** Whether the client's certificate was verified against the server's CAs (mTLS). */
  readonly authorized: boolean;
  /** Why it was not, when a certificate was asked for. */
  readonly authorizationError: string | undefined;
  /** The client certificate's subject as a DN string (`CN=alice,O=example`), when one was sent. */
  readonly peerSubject: string | undefined;
}

/** Who is on the other end of a connection: what handlers, notify listeners and `authenticate` see. */
export interface ConnectionContext {
  /** The connection's id (unique in this process). */
  readonly connectionId: string;
  /** The client's address: the PROXY header's source when it came through a trusted proxy. */
  readonly remoteAddress: string | undefined;
  readonly remotePort: number | undefined;
  /** The TLS session, or null on a plaintext connection. */
  readonly tls: TlsInfo | null;
  /**
   * What `authenticate` returned for this connection when it returned something other than
   * `true`; with mTLS and no `authenticate`, the verified client certificate's subject.
   */
  readonly identity: unknown;
  /** Pushes a NOTIFY to this client (server push). Returns false on backpressure; throws once closed. */
  notify(topic: string, payload: unknown): boolean;
  /**
   * Makes this connection a member of `room` (until it leaves or closes): pushes to the room
   * (`server.to(room).notify`) reach it, from every server of the broker, each with its seq.
   * Resolves once it is a member (a 1.2 client has been told where it starts); joining a room it
   * is in does nothing. Rejects with RoomLimitError past maxRoomsPerConnection or
   * maxRoomNameBytes. With `since`, the pushes published after that seq are sent first, from the
   * room's history (or a `$gap` notice where the history no longer has them).
   *
   * @example
   * ```ts
   * handlers: { subscribe: async ({ room }, ctx) => { await ctx.join(room); return { joined: room }; } }
   * ```
   */
  join(room: string, options?: JoinOptions): Promise<void>;
  /** Leaves `room` (a 1.2 client is told); false when it was not a member. */
  leave(room: string): boolean;
  /** The rooms this connection is a member of, now. */
  readonly rooms: ReadonlySet<string>;
}

/** Options of {@link ConnectionContext.join}. */
export interface JoinOptions {
  /** Resume: the last seq the client has of this room; what came after it is sent first. */
  since?: number;
}

/**
 * Decides whether a client may (re)join `room` on its own initiative: its `$resume` after a
 * reconnect (and the CLI's built-in `join`). Joins your handlers make with `ctx.join` are your
 * decision already and are not asked about. Without it, resumes are refused.
 */
export type RoomAuthorize = (room: string, ctx: ConnectionContext) => boolean | Promise<boolean>;

/** @internal What rooms need of a connection: a ServerPeer. */
export interface RoomPeer {
  readonly connection: Connection;
  readonly codec: PayloadCodec;
  readonly agreement: HelloAgreement | undefined;
  readonly goawaySent: boolean;
  readonly identity: unknown;
  /** The client said its first request will be $resume: joins wait for it. */
  resumeExpected: boolean;
  notify(topic: string, payload: unknown): boolean;
}

/** @internal What a ServerPeer's join/leave/rooms call: the server's Rooms. */
export interface RoomsHost {
  join(peer: RoomPeer, room: string, options: JoinOptions | undefined): Promise<void>;
  leave(peer: RoomPeer, room: string): boolean;
  roomsOf(peer: RoomPeer): ReadonlySet<string>;
}

/** What a handler gets besides its params. */
export interface RequestContext extends ConnectionContext {
  /** The request's method. */
  readonly method: string;
  /** The request id on this connection. */
  readonly requestId: number;
  /**
   * Fires when the client cancels the request, when the handler timeout or the caller's own
   * deadline passes, or when the connection dies. Pass it on to whatever the handler waits for.
   */
  readonly signal: AbortSignal;
  /** What the caller attached (protocol 1.1): lowercase keys, string values; empty when nothing. */
  readonly metadata: Readonly<Record<string, string>>;
  /**
   * How long the caller still waited when the request arrived, in ms (protocol 1.1, like
   * gRPC's grpc-timeout); undefined when it did not say. `signal` aborts when it passes.
   */
  readonly timeoutMs: number | undefined;
}

/** A request handler: returns the result, or a promise of it; throwing answers with an ERROR. */
export type Handler = (params: unknown, ctx: RequestContext) => unknown;

/** Looks up the handler of a method; undefined answers ERR_METHOD_NOT_FOUND. */
export type Router = (method: string) => Handler | undefined;

/** What `authenticate` sees besides the credential: the connection, and the name the client gave. */
export interface AuthContext extends ConnectionContext {
  /** The `name` in the client's HELLO, if any. */
  readonly peerName: string | undefined;
  /**
   * Aborted when the connection closes before the check is done — the client left, or the HELLO
   * deadline passed. Pass it on to what the check waits for (a database, an identity provider):
   * a check still running counts against `maxAuthenticating` until it settles.
   */
  readonly signal: AbortSignal;
}

/**
 * Checks a HELLO's credential. `false` (or null/undefined, or a throw, or a rejection) refuses the
 * connection with ERR_UNAUTHENTICATED; `true` admits it; any other value admits it and becomes
 * its `identity`. Runs under the HELLO deadline: a check that does not settle in time refuses.
 */
export type Authenticate = (credential: string | undefined, ctx: AuthContext) => unknown;

/** A handler failure the server could only answer with an ERROR (or, in legacy mode, a close). */
export interface HandlerFailure {
  /** What went wrong: the handler's own error, or a LonglinkError (ERR_TIMEOUT, ERR_FRAME_TOO_LARGE …). */
  readonly error: unknown;
  readonly method: string | undefined;
  readonly requestId: number | undefined;
  readonly connectionId: string;
  readonly remoteAddress: string | undefined;
  readonly identity: unknown;
}

/** Where a peer reports to its server: one object for every peer, no closure per connection. */
export interface ServerPeerEvents {
  peerClosed(peer: ServerPeerLike, info: CloseInfo): void;
  /** A closed peer's last running handler settled: its admission slot is free now. */
  peerReleased(peer: ServerPeerLike): void;
  /** A HELLO is to be checked: a Refusal when too many async checks are under way already. */
  peerAuthAdmit(peer: ServerPeerLike): Refusal | undefined;
  /** An async authenticate started (counted until peerAuthEnd). */
  peerAuthStart(peer: ServerPeerLike): void;
  peerAuthEnd(peer: ServerPeerLike): void;
  peerHandlerError(failure: HandlerFailure): void;
  peerNotify(peer: ServerPeerLike, topic: string, payload: unknown): void;
  peerReady(peer: ServerPeerLike): void;
}

/** Per-connection settings the server hands to each ServerPeer. */
export interface ServerPeerOptions {
  router: Router;
  codecs: PayloadCodecRegistry;
  hello: HelloPolicy;
  authenticate: Authenticate | undefined;
  handlerTimeoutMs: number;
  helloTimeoutMs: number;
  deadlines: Deadlines;
  /** Run the heartbeat with the agreed timing (false: answer PINGs, send none). */
  heartbeat: boolean;
  /**
   * PINGs closer together than this (with no request in between) are strikes; after
   * `maxPingStrikes` the client gets GOAWAY ERR_TOO_MANY_PINGS (gRPC's ENHANCE_YOUR_CALM).
   */
  minPingIntervalMs: number;
  maxPingStrikes: number;
  /** Request bytes held by running handlers at which reading pauses until some finish. */
  maxInFlightBytes: number;
  /** Requests per second per connection, or undefined for no limit. */
  requestRate: Required<RateLimit> | undefined;
  events: ServerPeerEvents;
  /** @internal Membership (ctx.join / leave / rooms). */
  rooms: RoomsHost;
}

/** Where a connection really comes from, when that is not its socket's peer (PROXY protocol). */
export interface PeerOrigin {
  readonly address: string | undefined;
  readonly port: number | undefined;
}

/** The TLS view of a socket: computed when asked (no field per connection). */
export function tlsInfoOf(socket: unknown): TlsInfo | null {
  const s = socket as Partial<TLSSocket>;
  if (s.encrypted !== true || typeof s.getProtocol !== 'function') return null;
  const t = s as TLSSocket;
  const cert = t.getPeerCertificate();
  const subject =
    cert !== undefined && cert !== null && 'subject' in cert && cert.subject ? cert.subject : undefined;
  const err = t.authorizationError as Error | string | null | undefined;
  return {
    protocol: t.getProtocol(),
    authorized: t.authorized === true,
    authorizationError: err === null || err === undefined ? undefined : String((err as Error).message ?? err),
    peerSubject:
      subject === undefined
        ? undefined
        : Object.entries(subject)
            .map(([k, v]) => `${k}=${Array.isArray(v) ? v.join('+') : String(v)}`)
            .join(','),
  };
}

/** What a server is handed about one of its protocol sessions (the ServerPeer, seen from above). */
export interface ServerPeerLike extends ConnectionContext {
  readonly connection: Connection;
}
