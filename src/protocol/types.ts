/**
 * The longlink protocol's messages as data. One message travels in one frame; the frame's body
 * starts with a kind byte and a flags byte (docs/PROTOCOL.md has the byte diagram of each kind).
 */

/**
 * Protocol version 1.2, as carried in HELLO: major in the high byte, minor in the low byte.
 * Peers with different majors cannot talk; the minor agreed is the lower of the two, and a peer
 * uses only what the agreed minor defines (1.1 adds REQUEST metadata and the caller's timeout,
 * 1.2 room pushes with a per-room sequence).
 */
export const PROTOCOL_VERSION = 0x0102;

/**
 * NOTIFY flags defined by protocol 1.2 (docs/PROTOCOL.md §3.5.1): a sender sets them only on a
 * connection whose agreed minor is at least 2; on an older one a receiver ignores them.
 */
export const NotifyFlag = {
  /** A room push: the room's name and the push's sequence in that room follow the topic. */
  ROOM: 0x01,
} as const;

/** Largest room sequence number: 2^53 − 1 (carried as a u64; larger values are ERR_MALFORMED). */
export const MAX_ROOM_SEQ = Number.MAX_SAFE_INTEGER;

/**
 * REQUEST flags defined by protocol 1.1 (a 1.0 connection never sets them, and a 1.1 receiver on a
 * 1.0 connection ignores them): each adds a field to the REQUEST's header (docs/PROTOCOL.md §3.2).
 */
export const RequestFlag = {
  /** A metadata block (key/value strings) follows the method. */
  METADATA: 0x01,
  /** The caller's remaining timeout (u32 ms) follows the id. */
  TIMEOUT: 0x02,
} as const;

/** Limits of a REQUEST's metadata (1.1): what a receiver accepts; more is ERR_MALFORMED. */
export const METADATA_LIMITS = {
  /** Entries per request. */
  entries: 32,
  /** Key length: 1–64 characters of [a-z0-9._-]. */
  keyLength: 64,
  /** Value length in UTF-8 bytes. */
  valueBytes: 4096,
  /** The whole block in bytes. */
  blockBytes: 8192,
} as const;

/**
 * The kind byte. 0 is never valid; 10–127 are reserved for later minor versions of the protocol,
 * 128–255 for private extensions. A kind is only ever sent once the HELLO exchange showed the peer
 * knows it, so an unknown kind is always an error (ERR_UNKNOWN_KIND).
 */
export const MessageKind = {
  HELLO: 1,
  REQUEST: 2,
  RESPONSE: 3,
  ERROR: 4,
  NOTIFY: 5,
  CANCEL: 6,
  PING: 7,
  PONG: 8,
  GOAWAY: 9,
} as const;

/** A value of {@link MessageKind}. */
export type MessageKind = (typeof MessageKind)[keyof typeof MessageKind];

/** Largest request id; ids are u32 and 0 is reserved ("no request"). */
export const MAX_REQUEST_ID = 0xffff_ffff;
/** Largest method / topic / code, in UTF-8 bytes (a u8 length). */
export const MAX_NAME_BYTES = 255;
/** Largest ERROR / GOAWAY message text in UTF-8 bytes (a u16 length); longer text is cut. */
export const MAX_TEXT_BYTES = 0xffff;
/** Size of a PING / PONG's opaque data. */
export const PING_DATA_BYTES = 8;

/**
 * Fields every message has. `flags` is the message's flags byte: protocol 1.0 defines no flag, so
 * senders leave it 0 (or omit it) and receivers ignore bits they do not know. A later minor version
 * may define flags, and a peer sends one only when the agreed version defines it.
 * decodeMessage always sets it.
 */
interface MessageBase {
  readonly flags?: number;
}

/**
 * Extensible connection parameters, a JSON object in HELLO. Every field is optional on the wire;
 * receivers ignore keys they do not know. The client's HELLO proposes, the server's answers with
 * the agreed values (see `answerHello`).
 */
export interface HelloParams {
  /** Send a PING after this long without receiving anything. */
  readonly heartbeatIntervalMs?: number;
  /** Declare the connection dead after this long without receiving anything. */
  readonly heartbeatTimeoutMs?: number;
  /** Largest frame body (message) this side accepts; the agreed value binds both directions. */
  readonly maxFrameLength?: number;
  /** Most REQUESTs one side may have outstanding toward the other. */
  readonly maxInFlight?: number;
  /** Client: payload codec names it supports, most preferred first. Absent means `["json"]`. */
  readonly codecs?: readonly string[];
  /** Server: the payload codec chosen for the connection. */
  readonly codec?: string;
  /** Client: an opaque credential the server checks (a token, a password). */
  readonly credential?: string;
  /** A name for this peer, for logs and metrics. */
  readonly name?: string;
  /**
   * Client, 1.2: its first request will be `$resume` (it was in rooms on an earlier connection).
   * The server holds room joins for this connection until then, so that a join made when the
   * connection opens starts where the client left off, not at the room's head.
   */
  readonly resume?: boolean;
}

/** HELLO: the first message in each direction. Negotiates version and parameters. */
export interface HelloMessage extends MessageBase {
  readonly kind: typeof MessageKind.HELLO;
  /** Protocol version, `major << 8 | minor`. */
  readonly version: number;
  readonly params: HelloParams;
}

/** REQUEST: asks the peer to run `method`; answered by exactly one RESPONSE or ERROR. */
export interface RequestMessage extends MessageBase {
  readonly kind: typeof MessageKind.REQUEST;
  /** 1 … 2^32-1, unique among the sender's outstanding requests. */
  readonly id: number;
  /** 1–255 UTF-8 bytes. */
  readonly method: string;
  /** Encoded with the agreed payload codec. Decoded messages hold a view into the frame. */
  readonly payload: Buffer;
  /** 1.1: what the caller attaches (a `traceparent`, a tenant …): lowercase keys, string values. */
  readonly metadata?: Readonly<Record<string, string>>;
  /** 1.1: how long the caller still waits for the answer, in ms (the responder may stop after it). */
  readonly timeoutMs?: number;
}

/** RESPONSE: the successful answer to REQUEST `id`. */
export interface ResponseMessage extends MessageBase {
  readonly kind: typeof MessageKind.RESPONSE;
  readonly id: number;
  readonly payload: Buffer;
}

/** ERROR: the failed answer to REQUEST `id`, or with id 0 an error about the whole connection. */
export interface ErrorMessage extends MessageBase {
  readonly kind: typeof MessageKind.ERROR;
  /** The request answered, or 0 for a connection-level error. */
  readonly id: number;
  /** A stable code, 1–255 printable ASCII bytes (0x21–0x7E), e.g. `ERR_METHOD_NOT_FOUND`. */
  readonly code: string;
  /** Human-readable text, at most 65535 UTF-8 bytes (longer text is cut when encoding). */
  readonly message: string;
  /** Optional details encoded with the agreed payload codec (JSON before HELLO); may be empty. */
  readonly details: Buffer;
}

/** NOTIFY: a one-way message in either direction; never answered. */
export interface NotifyMessage extends MessageBase {
  readonly kind: typeof MessageKind.NOTIFY;
  /** 1–255 UTF-8 bytes. */
  readonly topic: string;
  readonly payload: Buffer;
  /**
   * 1.2: the room this push was published to (1–255 UTF-8 bytes). Set together with `seq`; when
   * set, the encoder sets the ROOM flag.
   */
  readonly room?: string;
  /** 1.2: the push's sequence in its room, 0 … 2^53 − 1. */
  readonly seq?: number;
}

/** CANCEL: the requester no longer wants the answer to request `id` (it still gets one). */
export interface CancelMessage extends MessageBase {
  readonly kind: typeof MessageKind.CANCEL;
  readonly id: number;
}

/** PING: must be answered with a PONG echoing `data`. */
export interface PingMessage extends MessageBase {
  readonly kind: typeof MessageKind.PING;
  /** Exactly 8 opaque bytes (a timestamp, a sequence number …). */
  readonly data: Buffer;
}

/** PONG: the answer to a PING, echoing its data. */
export interface PongMessage extends MessageBase {
  readonly kind: typeof MessageKind.PONG;
  readonly data: Buffer;
}

/** GOAWAY: the sender is closing the connection cleanly; see docs/PROTOCOL.md for the sequence. */
export interface GoawayMessage extends MessageBase {
  readonly kind: typeof MessageKind.GOAWAY;
  /** The last REQUEST the sender read (0 if none): it and every earlier request will be answered. */
  readonly lastId: number;
  /** How long the peer should wait before reconnecting, in ms; 0 for no hint. */
  readonly retryAfterMs: number;
  /** Why, as a stable code (1–255 printable ASCII bytes), e.g. `ERR_SHUTTING_DOWN`. */
  readonly reason: string;
  /** Human-readable text, at most 65535 UTF-8 bytes. */
  readonly message: string;
}

/** Any protocol message, discriminated on `kind`. */
export type Message =
  | HelloMessage
  | RequestMessage
  | ResponseMessage
  | ErrorMessage
  | NotifyMessage
  | CancelMessage
  | PingMessage
  | PongMessage
  | GoawayMessage;

const kindNames: readonly string[] = [
  'KIND_0',
  'HELLO',
  'REQUEST',
  'RESPONSE',
  'ERROR',
  'NOTIFY',
  'CANCEL',
  'PING',
  'PONG',
  'GOAWAY',
];

/** `'REQUEST'` for 2 …; `'KIND_<n>'` for a kind this version does not define. For logs. */
export function messageKindName(kind: number): string {
  return kindNames[kind] ?? `KIND_${kind}`;
}
