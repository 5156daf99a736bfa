/**
 * Messages ⇄ frame bodies. Pure: no sockets, no state beyond small caches of method names.
 *
 * The byte layouts are drawn in docs/PROTOCOL.md; the tests in test/protocol/wire.test.ts pin
 * them byte for byte. All integers are big-endian (network order).
 *
 * REQUEST and RESPONSE are the hot path (tens of thousands a second per connection): they use no
 * JSON, no closures and no `Buffer.concat`. The header is one small `allocUnsafe` buffer (Node
 * slices those from its 8 KiB pool); a large payload is returned as its own chunk, uncopied, for
 * the caller to write with `cork()`/`writev` (ws lib/sender.js does the same). Decoded payloads
 * are `subarray` views of the frame.
 *
 * Over 600 lines because it is every message kind's encoder and decoder side by side, each next to
 * its twin so a layout change is made in both at once; the byte diagrams they follow are in
 * docs/PROTOCOL.md.
 */

import { isUtf8 } from 'node:buffer';
import { InvalidArgumentError } from '../errors.js';
import { copyPlain, plainLength, plainView } from '../util/bytes.js';
import { ErrorCode, ProtocolError } from './errors.js';
import { decodeHelloParams, encodeHelloParams } from './hello.js';
import {
  type CancelMessage,
  type ErrorMessage,
  type GoawayMessage,
  type HelloMessage,
  MAX_NAME_BYTES,
  MAX_ROOM_SEQ,
  MAX_TEXT_BYTES,
  METADATA_LIMITS,
  type Message,
  MessageKind,
  messageKindName,
  NotifyFlag,
  type NotifyMessage,
  PING_DATA_BYTES,
  type PingMessage,
  type PongMessage,
  PROTOCOL_VERSION,
  RequestFlag,
  type RequestMessage,
  type ResponseMessage,
} from './types.js';

/**
 * Payloads up to this many bytes are copied into the header chunk so a small message is a single
 * write; larger ones are passed through as their own chunk. A memcpy of 512 bytes costs less than
 * one more entry in a writev.
 */
export const INLINE_PAYLOAD_MAX = 512;

// ---------------------------------------------------------------------------------------------
// Encoding

/**
 * Encoded method and topic names. Methods repeat, so each distinct name is UTF-8 encoded and
 * checked once; the cache is dropped wholesale when full, which keeps a peer that invents names
 * from growing it without bound.
 */
const nameCache = new Map<string, Buffer>();
const NAME_CACHE_MAX = 512;

function nameBytes(name: string, what: string): Buffer {
  let bytes = nameCache.get(name);
  if (bytes !== undefined) return bytes;
  if (typeof name !== 'string') throw new InvalidArgumentError(`${what} must be a string`);
  bytes = Buffer.from(name, 'utf8');
  if (bytes.length === 0 || bytes.length > MAX_NAME_BYTES) {
    throw new InvalidArgumentError(`${what} must be 1–${MAX_NAME_BYTES} UTF-8 bytes, got ${bytes.length}`);
  }
  if (nameCache.size >= NAME_CACHE_MAX) nameCache.clear();
  nameCache.set(name, bytes);
  return bytes;
}

/** A code (ERROR code, GOAWAY reason): 1–255 printable ASCII characters, 0x21–0x7E. */
function isValidCode(code: unknown): code is string {
  if (typeof code !== 'string' || code.length === 0 || code.length > MAX_NAME_BYTES) return false;
  for (let i = 0; i < code.length; i++) {
    const c = code.charCodeAt(i);
    if (c < 0x21 || c > 0x7e) return false;
  }
  return true;
}

function codeBytes(code: string, what: string): Buffer {
  if (!isValidCode(code)) {
    throw new InvalidArgumentError(`${what} must be 1–${MAX_NAME_BYTES} printable ASCII characters`);
  }
  return Buffer.from(code, 'latin1');
}

/**
 * Free text (ERROR and GOAWAY messages) as UTF-8, cut to 65535 bytes on a character boundary:
 * errors are often built from arbitrary handler messages, and failing to send an error because
 * its text is long would be worse than sending it shortened.
 */
function textBytes(text: string, what: string): Buffer {
  if (typeof text !== 'string') throw new InvalidArgumentError(`${what} must be a string`);
  const bytes = Buffer.from(text, 'utf8');
  if (bytes.length <= MAX_TEXT_BYTES) return bytes;
  let end = MAX_TEXT_BYTES;
  // Back off over UTF-8 continuation bytes (10xxxxxx) so no character is split.
  while (end > 0 && ((bytes[end] as number) & 0xc0) === 0x80) end--;
  return bytes.subarray(0, end);
}

function checkId(id: number, what: string, allowZero: boolean): void {
  if (id >>> 0 !== id || (id === 0 && !allowZero)) {
    throw new InvalidArgumentError(`${what} must be an integer in [${allowZero ? 0 : 1}, 2^32-1], got ${id}`);
  }
}

function checkU32(n: number, what: string): void {
  if (n >>> 0 !== n) throw new InvalidArgumentError(`${what} must be an integer in [0, 2^32-1], got ${n}`);
}

function flagsOf(msg: Message): number {
  const flags = msg.flags;
  if (flags === undefined) return 0;
  if ((flags & 0xff) !== flags) throw new InvalidArgumentError(`flags must be a u8, got ${flags}`);
  return flags;
}

function checkBytes(b: Buffer, what: string): void {
  if (!Buffer.isBuffer(b)) throw new InvalidArgumentError(`${what} must be a Buffer`);
}

/**
 * @internal Where a message may be encoded in place instead of into a Buffer of its own (the
 * connection's output slab, connection/slab.ts): `reserve(n)` returns the offset in `buf`, read
 * after the call, of `n` bytes reserved for the message.
 */
export interface EncodeTarget {
  readonly buf: Buffer;
  reserve(n: number): number;
}

/**
 * Payloads up to this many bytes are copied into an EncodeTarget with their header; larger ones
 * follow as their own chunk. Copying replaces the copy a flush would make of a small chunk anyway.
 */
const TARGET_INLINE_MAX = 4096;

/** Where withPayload put the header: the buffer, and the offset of its first byte (after the headroom). */
let wBuf: Buffer = Buffer.alloc(0);
let wAt = 0;

/**
 * Room for a header of `headerLength` bytes after `headroom`, with the payload appended or left
 * as a chunk: in `t` when given (the chunks returned are then only what follows the reservation),
 * else in a new buffer (the first chunk). Leaves the header's place in wBuf / wAt.
 */
function withPayload(
  headroom: number,
  headerLength: number,
  payload: Buffer,
  t: EncodeTarget | undefined,
): Buffer[] {
  const start = headroom + headerLength;
  // The payload is measured and copied without running code of its own (red team N2, P1): between
  // a reservation and its commit nothing else may write to the slab, and the length the header
  // says is the length of the bytes that follow. A payload passed on as a chunk of its own is a
  // view of longlink's making over the same bytes, so later code measures what was measured here.
  const length = plainLength(payload);
  if (length < 0) throw new InvalidArgumentError('payload must be a Buffer');
  if (t !== undefined) {
    const inline = length <= TARGET_INLINE_MAX;
    const at = t.reserve(start + (inline ? length : 0));
    wBuf = t.buf;
    wAt = at + headroom;
    if (!inline) return [plainView(payload) as Buffer];
    copyPlain(wBuf, payload, at + start);
    return NOTHING;
  }
  wAt = headroom;
  if (length <= INLINE_PAYLOAD_MAX) {
    const buf = Buffer.allocUnsafe(start + length);
    copyPlain(buf, payload, start);
    wBuf = buf;
    return [buf];
  }
  wBuf = Buffer.allocUnsafe(start);
  return [wBuf, plainView(payload) as Buffer];
}

/** No chunks after a reservation (never modified). */
const NOTHING: Buffer[] = [];

/**
 * Encodes `msg` as a frame body, returned as chunks to write in order (with `cork()`/`writev`).
 *
 * The first chunk holds the header (and any payload of up to {@link INLINE_PAYLOAD_MAX} bytes);
 * a larger payload is the second chunk, a view of the caller's bytes, not copied — do not modify them
 * until written. `headroom` reserves that many uninitialised bytes at the start of the first chunk
 * for the framing's prefix, so a framed small message is one buffer: the caller writes the
 * prefix there (for `u32be`, `chunks[0].writeUInt32BE(bodyLength, 0)`, where bodyLength is the
 * sum of the chunks' lengths minus `headroom`).
 *
 * Throws InvalidArgumentError for a field out of range (id 0 or above 2^32-1, empty or > 255-byte
 * method, non-ASCII code, PING data not 8 bytes …). Text longer than 65535 bytes is cut.
 *
 * @example
 * ```ts
 * const chunks = encodeMessage({ kind: MessageKind.REQUEST, id: 1, method: 'echo', payload });
 * socket.cork(); for (const c of chunks) socket.write(c); socket.uncork();
 * ```
 */
export function encodeMessage(msg: Message, headroom = 0): Buffer[] {
  return encodeMessageInto(msg, headroom, undefined);
}

/**
 * @internal {@link encodeMessage}, in place when `t` is given: REQUEST, RESPONSE, NOTIFY and ERROR
 * are then written into `t` (one reservation: headroom, header and a payload of up to 4 KiB), and
 * the chunks returned are what follows the reservation (a larger payload, or none). Other kinds
 * ignore `t` and return their chunks as encodeMessage does; `t` then has no reservation.
 */
export function encodeMessageInto(msg: Message, headroom: number, t: EncodeTarget | undefined): Buffer[] {
  if (headroom >>> 0 !== headroom || headroom > 64) {
    throw new InvalidArgumentError(`headroom must be an integer in [0, 64], got ${headroom}`);
  }
  switch (msg.kind) {
    case MessageKind.REQUEST:
      return encodeRequest(msg, headroom, t);
    case MessageKind.RESPONSE:
      return encodeResponse(msg, headroom, t);
    case MessageKind.NOTIFY:
      return encodeNotify(msg, headroom, t);
    case MessageKind.ERROR:
      return encodeError(msg, headroom, t);
    case MessageKind.CANCEL:
      return encodeCancel(msg, headroom);
    case MessageKind.PING:
    case MessageKind.PONG:
      return encodePingPong(msg, headroom);
    case MessageKind.GOAWAY:
      return encodeGoaway(msg, headroom);
    case MessageKind.HELLO:
      return encodeHello(msg, headroom);
    default:
      throw new InvalidArgumentError(`cannot encode message of kind ${(msg as { kind: unknown }).kind}`);
  }
}

// REQUEST: kind flags id:u32 [timeout:u32] methodLen:u8 method [metadata] payload…
// (the bracketed fields are 1.1's, present when their flag is set)
function encodeRequest(msg: RequestMessage, headroom: number, t: EncodeTarget | undefined): Buffer[] {
  checkId(msg.id, 'request id', false);
  const method = nameBytes(msg.method, 'method');
  checkBytes(msg.payload, 'payload');
  let flags = flagsOf(msg) & ~(RequestFlag.METADATA | RequestFlag.TIMEOUT);
  const timeoutMs = msg.timeoutMs;
  if (timeoutMs !== undefined) {
    checkU32(timeoutMs, 'timeoutMs');
    flags |= RequestFlag.TIMEOUT;
  }
  const meta = msg.metadata === undefined ? undefined : metadataBytes(msg.metadata);
  if (meta !== undefined) flags |= RequestFlag.METADATA;
  const at = timeoutMs === undefined ? 6 : 10;
  const header = at + 1 + method.length + (meta?.length ?? 0);
  const chunks = withPayload(headroom, header, msg.payload, t);
  const buf = wBuf;
  const h = wAt;
  buf[h] = MessageKind.REQUEST;
  buf[h + 1] = flags;
  buf.writeUInt32BE(msg.id, h + 2);
  if (timeoutMs !== undefined) buf.writeUInt32BE(timeoutMs, h + 6);
  buf[h + at] = method.length;
  method.copy(buf, h + at + 1);
  meta?.copy(buf, h + at + 1 + method.length);
  return chunks;
}

const METADATA_KEY_RE = /^[a-z0-9._-]{1,64}$/;

/**
 * A metadata block: count:u8, then per entry keyLen:u8 key valueLen:u16 value (UTF-8). Undefined
 * for no entries (no block, no flag). Throws InvalidArgumentError past METADATA_LIMITS.
 */
function metadataBytes(metadata: Readonly<Record<string, string>>): Buffer | undefined {
  if (typeof metadata !== 'object' || metadata === null)
    throw new InvalidArgumentError('metadata must be an object of strings');
  const entries = Object.entries(metadata);
  if (entries.length === 0) return undefined;
  if (entries.length > METADATA_LIMITS.entries) {
    throw new InvalidArgumentError(
      `metadata has ${entries.length} entries, at most ${METADATA_LIMITS.entries}`,
    );
  }
  const parts: Array<[Buffer, Buffer]> = [];
  let size = 1;
  for (const [k, v] of entries) {
    if (!METADATA_KEY_RE.test(k)) {
      throw new InvalidArgumentError(
        `metadata key ${JSON.stringify(k)} must be 1–64 characters of [a-z0-9._-]`,
      );
    }
    if (typeof v !== 'string') throw new InvalidArgumentError(`metadata value of ${k} must be a string`);
    const value = Buffer.from(v, 'utf8');
    if (value.length > METADATA_LIMITS.valueBytes) {
      throw new InvalidArgumentError(
        `metadata value of ${k} is ${value.length} bytes, at most ${METADATA_LIMITS.valueBytes}`,
      );
    }
    parts.push([Buffer.from(k, 'latin1'), value]);
    size += 3 + k.length + value.length;
  }
  if (size > METADATA_LIMITS.blockBytes) {
    throw new InvalidArgumentError(`metadata is ${size} bytes, at most ${METADATA_LIMITS.blockBytes}`);
  }
  const out = Buffer.allocUnsafe(size);
  out[0] = parts.length;
  let p = 1;
  for (const [k, v] of parts) {
    out[p] = k.length;
    k.copy(out, p + 1);
    p += 1 + k.length;
    out.writeUInt16BE(v.length, p);
    v.copy(out, p + 2);
    p += 2 + v.length;
  }
  return out;
}

// RESPONSE: kind flags id:u32 payload…
function encodeResponse(msg: ResponseMessage, headroom: number, t: EncodeTarget | undefined): Buffer[] {
  checkId(msg.id, 'request id', false);
  checkBytes(msg.payload, 'payload');
  const chunks = withPayload(headroom, 6, msg.payload, t);
  const buf = wBuf;
  const h = wAt;
  buf[h] = MessageKind.RESPONSE;
  buf[h + 1] = flagsOf(msg);
  buf.writeUInt32BE(msg.id, h + 2);
  return chunks;
}

// NOTIFY: kind flags topicLen:u8 topic [roomLen:u8 room seq:u64] payload…
// (the bracketed fields are 1.2's, present when the ROOM flag is set)
function encodeNotify(msg: NotifyMessage, headroom: number, t: EncodeTarget | undefined): Buffer[] {
  const topic = nameBytes(msg.topic, 'topic');
  checkBytes(msg.payload, 'payload');
  let flags = flagsOf(msg) & ~NotifyFlag.ROOM;
  let room: Buffer | undefined;
  const seq = msg.seq ?? 0;
  if (msg.room !== undefined) {
    room = nameBytes(msg.room, 'room');
    checkSeq(seq);
    flags |= NotifyFlag.ROOM;
  }
  const header = 3 + topic.length + (room === undefined ? 0 : 1 + room.length + 8);
  const chunks = withPayload(headroom, header, msg.payload, t);
  const buf = wBuf;
  const h = wAt;
  buf[h] = MessageKind.NOTIFY;
  buf[h + 1] = flags;
  buf[h + 2] = topic.length;
  topic.copy(buf, h + 3);
  if (room !== undefined) {
    const at = h + 3 + topic.length;
    buf[at] = room.length;
    room.copy(buf, at + 1);
    writeSeq(buf, seq, at + 1 + room.length);
  }
  return chunks;
}

function checkSeq(seq: number): void {
  if (!Number.isSafeInteger(seq) || seq < 0 || seq > MAX_ROOM_SEQ) {
    throw new InvalidArgumentError(`room seq must be an integer in [0, 2^53-1], got ${seq}`);
  }
}

/** A room sequence as a u64, big-endian (two u32 halves: no BigInt). */
export function writeSeq(buf: Buffer, seq: number, at: number): void {
  buf.writeUInt32BE(Math.floor(seq / 0x1_0000_0000), at);
  buf.writeUInt32BE(seq >>> 0, at + 4);
}

// ERROR: kind flags id:u32 codeLen:u8 code messageLen:u16 message details…
function encodeError(msg: ErrorMessage, headroom: number, t: EncodeTarget | undefined): Buffer[] {
  checkId(msg.id, 'request id', true);
  const code = codeBytes(msg.code, 'error code');
  const text = textBytes(msg.message, 'error message');
  checkBytes(msg.details, 'details');
  const textAt = 7 + code.length + 2;
  const chunks = withPayload(headroom, textAt + text.length, msg.details, t);
  const buf = wBuf;
  const h = wAt;
  buf[h] = MessageKind.ERROR;
  buf[h + 1] = flagsOf(msg);
  buf.writeUInt32BE(msg.id, h + 2);
  buf[h + 6] = code.length;
  code.copy(buf, h + 7);
  buf.writeUInt16BE(text.length, h + textAt - 2);
  text.copy(buf, h + textAt);
  return chunks;
}

// CANCEL: kind flags id:u32
function encodeCancel(msg: CancelMessage, headroom: number): Buffer[] {
  checkId(msg.id, 'request id', false);
  const buf = Buffer.allocUnsafe(headroom + 6);
  buf[headroom] = MessageKind.CANCEL;
  buf[headroom + 1] = flagsOf(msg);
  buf.writeUInt32BE(msg.id, headroom + 2);
  return [buf];
}

// PING / PONG: kind flags data[8]
function encodePingPong(msg: PingMessage | PongMessage, headroom: number): Buffer[] {
  checkBytes(msg.data, 'ping data');
  if (msg.data.length !== PING_DATA_BYTES) {
    throw new InvalidArgumentError(`ping data must be ${PING_DATA_BYTES} bytes, got ${msg.data.length}`);
  }
  const buf = Buffer.allocUnsafe(headroom + 2 + PING_DATA_BYTES);
  buf[headroom] = msg.kind;
  buf[headroom + 1] = flagsOf(msg);
  msg.data.copy(buf, headroom + 2);
  return [buf];
}

/*
 * The heartbeat's own encoding, without Message objects: a heartbeat is the one message every idle
 * connection sends, so its cost is counted in CPU per ten thousand connections (bench/heartbeat).
 * A PING's data is a sequence number as a u64 (two u32 halves: no BigInt on the hot path); a PONG
 * copies the data of the PING it answers. One buffer each, with the framing's headroom in front.
 */

/** The frame body of PING `seq` (kind PING, flags 0, seq as a u64) after `headroom` bytes of room. */
export function encodePing(seq: number, headroom: number): Buffer {
  const buf = Buffer.allocUnsafe(headroom + 2 + PING_DATA_BYTES);
  buf[headroom] = MessageKind.PING;
  buf[headroom + 1] = 0;
  buf.writeUInt32BE(Math.floor(seq / 0x1_0000_0000), headroom + 2);
  buf.writeUInt32BE(seq >>> 0, headroom + 6);
  return buf;
}

/** The PONG answering `ping` (a PING frame body, as read), after `headroom` bytes of room. */
export function encodePong(ping: Buffer, headroom: number): Buffer {
  const buf = Buffer.allocUnsafe(headroom + 2 + PING_DATA_BYTES);
  buf[headroom] = MessageKind.PONG;
  buf[headroom + 1] = 0;
  ping.copy(buf, headroom + 2, 2, 2 + PING_DATA_BYTES);
  return buf;
}

/**
 * The kind of a frame body when it is a well-formed PING or PONG (the heartbeat's fast path),
 * else 0: anything unusual takes the full decodeMessage.
 */
export function pingKind(frame: Buffer): 0 | 7 | 8 {
  const kind = frame[0];
  if (frame.length !== 2 + PING_DATA_BYTES) return 0;
  return kind === MessageKind.PING || kind === MessageKind.PONG ? kind : 0;
}

/** The sequence number a PING (or the PONG answering it) carries, as encodePing wrote it. */
export function pingSequence(frame: Buffer): number {
  return frame.readUInt32BE(2) * 0x1_0000_0000 + frame.readUInt32BE(6);
}

// GOAWAY: kind flags lastId:u32 retryAfterMs:u32 reasonLen:u8 reason messageLen:u16 message
function encodeGoaway(msg: GoawayMessage, headroom: number): Buffer[] {
  checkId(msg.lastId, 'last request id', true);
  checkU32(msg.retryAfterMs, 'retryAfterMs');
  const reason = codeBytes(msg.reason, 'reason');
  const text = textBytes(msg.message, 'message');
  const textAt = 11 + reason.length + 2;
  const buf = Buffer.allocUnsafe(headroom + textAt + text.length);
  buf[headroom] = MessageKind.GOAWAY;
  buf[headroom + 1] = flagsOf(msg);
  buf.writeUInt32BE(msg.lastId, headroom + 2);
  buf.writeUInt32BE(msg.retryAfterMs, headroom + 6);
  buf[headroom + 10] = reason.length;
  reason.copy(buf, headroom + 11);
  buf.writeUInt16BE(text.length, headroom + textAt - 2);
  text.copy(buf, headroom + textAt);
  return [buf];
}

// HELLO: kind flags version:u16 params(JSON object, UTF-8)…
function encodeHello(msg: HelloMessage, headroom: number): Buffer[] {
  if ((msg.version & 0xffff) !== msg.version) {
    throw new InvalidArgumentError(`version must be a u16, got ${msg.version}`);
  }
  const params = encodeHelloParams(msg.params);
  const buf = Buffer.allocUnsafe(headroom + 4 + params.length);
  buf[headroom] = MessageKind.HELLO;
  buf[headroom + 1] = flagsOf(msg);
  buf.writeUInt16BE(msg.version, headroom + 2);
  params.copy(buf, headroom + 4);
  return [buf];
}

// ---------------------------------------------------------------------------------------------
// Decoding

/**
 * `frame[from…]` as a view: what `subarray` returns, made the way the decoders make frames
 * (codec/length-prefixed.ts): `subarray` goes through Symbol.species and the legacy Buffer
 * constructor, 20–30 % dearer per call in Node 20 — and a REQUEST or RESPONSE makes one each.
 */
function tail(frame: Buffer, from: number): Buffer {
  return Buffer.from(frame.buffer, frame.byteOffset + from, frame.length - from);
}

function malformed(kind: number, why: string): ProtocolError {
  return new ProtocolError(ErrorCode.MALFORMED, `malformed ${messageKindName(kind)}: ${why}`);
}

/**
 * Decoded ASCII names, by a hash of their bytes. Methods repeat, so most lookups hit: a hit costs
 * a byte compare instead of a string allocation, and hands back the same string object each time,
 * whose hash V8 has already computed for the handler-map lookup that follows.
 */
const NAME_SLOTS = 256; // a power of two
const slotNames: string[] = new Array(NAME_SLOTS).fill('');

/**
 * A method or topic: `end - start` bytes of UTF-8. ASCII (every method anyone uses) needs no
 * validation and goes through the cache; anything else must be valid UTF-8, since a name that
 * decoded to U+FFFD would silently route to the wrong handler.
 */
function readName(frame: Buffer, start: number, end: number, kind: number): string {
  const n = end - start;
  let h = n;
  for (let i = start; i < end; i++) {
    const c = frame[i] as number;
    if (c >= 0x80) return readUtf8Name(frame, start, end, kind);
    h = (Math.imul(h, 31) + c) | 0;
  }
  const slot = h & (NAME_SLOTS - 1);
  const cached = slotNames[slot] as string;
  if (cached.length === n) {
    // The cached string is ASCII, one char per byte: compare in place, no allocation.
    let i = 0;
    while (i < n && cached.charCodeAt(i) === frame[start + i]) i++;
    if (i === n) return cached;
  }
  const name = frame.toString('latin1', start, end);
  slotNames[slot] = name;
  return name;
}

function readUtf8Name(frame: Buffer, start: number, end: number, kind: number): string {
  const bytes = frame.subarray(start, end);
  if (!isUtf8(bytes)) throw malformed(kind, 'name is not valid UTF-8');
  return bytes.toString('utf8');
}

/** A code: printable ASCII only (0x21–0x7E). */
function readCode(frame: Buffer, start: number, end: number, kind: number): string {
  for (let i = start; i < end; i++) {
    const c = frame[i] as number;
    if (c < 0x21 || c > 0x7e) throw malformed(kind, 'code is not printable ASCII');
  }
  return frame.toString('latin1', start, end);
}

/**
 * Decodes one frame body. The result's payload / details / data fields are `subarray` views of
 * `frame`: copy them to keep them beyond the frame's life if the frame is a view into a larger
 * socket chunk.
 *
 * Throws ProtocolError with code ERR_UNKNOWN_KIND for a kind byte this version does not define,
 * and ERR_MALFORMED for anything truncated, overlong or invalid; never any other error.
 *
 * @example
 * ```ts
 * for (const frame of decoder.push(chunk)) {
 *   const msg = decodeMessage(frame);
 *   if (msg.kind === MessageKind.RESPONSE) pending.get(msg.id)?.resolve(msg.payload);
 * }
 * ```
 */
export function decodeMessage(frame: Buffer, minor = PROTOCOL_VERSION & 0xff): Message {
  const len = frame.length;
  if (len === 0) throw new ProtocolError(ErrorCode.MALFORMED, 'empty message');
  const kind = frame[0] as number;
  if (kind === 0 || kind > MessageKind.GOAWAY) {
    throw new ProtocolError(ErrorCode.UNKNOWN_KIND, `unknown message kind ${kind}`);
  }
  if (len < 2) throw malformed(kind, 'no flags byte');
  const flags = frame[1] as number;
  switch (kind) {
    case MessageKind.REQUEST:
      return decodeRequest(frame, flags, minor);
    case MessageKind.RESPONSE:
      return decodeResponse(frame, flags);
    case MessageKind.NOTIFY:
      return decodeNotify(frame, flags, minor);
    case MessageKind.ERROR:
      return decodeError(frame, flags);
    case MessageKind.CANCEL:
      return decodeCancel(frame, flags);
    case MessageKind.PING:
    case MessageKind.PONG:
      return decodePingPong(frame, kind, flags);
    case MessageKind.GOAWAY:
      return decodeGoaway(frame, flags);
    default:
      return decodeHello(frame, flags);
  }
}

function decodeRequest(frame: Buffer, flags: number, minor: number): RequestMessage {
  const len = frame.length;
  // 1.1's fields exist only when the agreed minor defines them: on a 1.0 connection the flags
  // byte is ignored, as 1.0 says unknown bits are.
  const timeout = minor >= 1 && (flags & RequestFlag.TIMEOUT) !== 0;
  const at = timeout ? 10 : 6;
  // kind flags id:u32 [timeout:u32] methodLen:u8 and at least one method byte.
  if (len < at + 2) throw malformed(MessageKind.REQUEST, `${len} bytes is shorter than the header`);
  const id = frame.readUInt32BE(2);
  if (id === 0) throw malformed(MessageKind.REQUEST, 'request id 0');
  const n = frame[at] as number;
  let end = at + 1 + n;
  if (n === 0) throw malformed(MessageKind.REQUEST, 'empty method');
  if (end > len) throw malformed(MessageKind.REQUEST, 'method runs past the end');
  const method = readName(frame, at + 1, end, MessageKind.REQUEST);
  let metadata: Record<string, string> | undefined;
  if (minor >= 1 && (flags & RequestFlag.METADATA) !== 0) {
    const block = readMetadata(frame, end);
    metadata = block.metadata;
    end = block.end;
  }
  // Object literals, no spreads: a 1.1 client sends its timeout with every request.
  const payload = tail(frame, end);
  if (!timeout) {
    return metadata === undefined
      ? { kind: MessageKind.REQUEST, flags, id, method, payload }
      : { kind: MessageKind.REQUEST, flags, id, method, payload, metadata };
  }
  const timeoutMs = frame.readUInt32BE(6);
  return metadata === undefined
    ? { kind: MessageKind.REQUEST, flags, id, method, payload, timeoutMs }
    : { kind: MessageKind.REQUEST, flags, id, method, payload, timeoutMs, metadata };
}

/** Reads a metadata block at `p` (see metadataBytes); every limit checked before anything is kept. */
function readMetadata(frame: Buffer, p: number): { metadata: Record<string, string>; end: number } {
  const len = frame.length;
  const bad = (why: string) => malformed(MessageKind.REQUEST, `metadata: ${why}`);
  if (p >= len) throw bad('no entry count');
  const count = frame[p] as number;
  if (count === 0 || count > METADATA_LIMITS.entries)
    throw bad(`${count} entries (1–${METADATA_LIMITS.entries})`);
  const start = p;
  p++;
  const metadata: Record<string, string> = Object.create(null);
  for (let i = 0; i < count; i++) {
    if (p >= len) throw bad('runs past the end');
    const kl = frame[p] as number;
    if (kl === 0 || kl > METADATA_LIMITS.keyLength || p + 1 + kl + 2 > len)
      throw bad('key runs past the end or is too long');
    const key = frame.toString('latin1', p + 1, p + 1 + kl);
    if (!METADATA_KEY_RE.test(key)) throw bad(`key ${JSON.stringify(key)} is not [a-z0-9._-]`);
    p += 1 + kl;
    const vl = frame.readUInt16BE(p);
    if (vl > METADATA_LIMITS.valueBytes || p + 2 + vl > len)
      throw bad(`value of ${key} runs past the end or is too long`);
    const value = frame.subarray(p + 2, p + 2 + vl);
    if (!isUtf8(value)) throw bad(`value of ${key} is not UTF-8`);
    if (key in metadata) throw bad(`key ${key} twice`);
    metadata[key] = value.toString('utf8');
    p += 2 + vl;
    if (p - start > METADATA_LIMITS.blockBytes) throw bad(`block over ${METADATA_LIMITS.blockBytes} bytes`);
  }
  return { metadata, end: p };
}

function decodeResponse(frame: Buffer, flags: number): ResponseMessage {
  if (frame.length < 6) {
    throw malformed(MessageKind.RESPONSE, `${frame.length} bytes is shorter than the header`);
  }
  const id = frame.readUInt32BE(2);
  if (id === 0) throw malformed(MessageKind.RESPONSE, 'request id 0');
  return { kind: MessageKind.RESPONSE, flags, id, payload: tail(frame, 6) };
}

function decodeNotify(frame: Buffer, flags: number, minor: number): NotifyMessage {
  const len = frame.length;
  if (len < 4) throw malformed(MessageKind.NOTIFY, `${len} bytes is shorter than the header`);
  const n = frame[2] as number;
  const end = 3 + n;
  if (n === 0) throw malformed(MessageKind.NOTIFY, 'empty topic');
  if (end > len) throw malformed(MessageKind.NOTIFY, 'topic runs past the end');
  const topic = readName(frame, 3, end, MessageKind.NOTIFY);
  // 1.2's room fields exist only when the agreed minor defines them (as 1.1's REQUEST fields).
  if (minor < 2 || (flags & NotifyFlag.ROOM) === 0) {
    return { kind: MessageKind.NOTIFY, flags, topic, payload: tail(frame, end) };
  }
  if (end >= len) throw malformed(MessageKind.NOTIFY, 'no room');
  const r = frame[end] as number;
  const roomEnd = end + 1 + r;
  if (r === 0) throw malformed(MessageKind.NOTIFY, 'empty room');
  if (roomEnd + 8 > len) throw malformed(MessageKind.NOTIFY, 'room or seq runs past the end');
  const hi = frame.readUInt32BE(roomEnd);
  if (hi > 0x1f_ffff) throw malformed(MessageKind.NOTIFY, 'seq above 2^53-1');
  return {
    kind: MessageKind.NOTIFY,
    flags,
    topic,
    payload: frame.subarray(roomEnd + 8),
    room: readName(frame, end + 1, roomEnd, MessageKind.NOTIFY),
    seq: hi * 0x1_0000_0000 + frame.readUInt32BE(roomEnd + 4),
  };
}

function decodeError(frame: Buffer, flags: number): ErrorMessage {
  const len = frame.length;
  // kind flags id:u32 codeLen:u8 code(≥1) messageLen:u16
  if (len < 10) throw malformed(MessageKind.ERROR, `${len} bytes is shorter than the header`);
  const id = frame.readUInt32BE(2);
  const n = frame[6] as number;
  if (n === 0) throw malformed(MessageKind.ERROR, 'empty code');
  const codeEnd = 7 + n;
  if (codeEnd + 2 > len) throw malformed(MessageKind.ERROR, 'code runs past the end');
  const code = readCode(frame, 7, codeEnd, MessageKind.ERROR);
  const textEnd = codeEnd + 2 + frame.readUInt16BE(codeEnd);
  if (textEnd > len) throw malformed(MessageKind.ERROR, 'message runs past the end');
  return {
    kind: MessageKind.ERROR,
    flags,
    id,
    code,
    // Free text is decoded leniently (invalid sequences become U+FFFD): it is for humans.
    message: frame.toString('utf8', codeEnd + 2, textEnd),
    details: frame.subarray(textEnd),
  };
}

function decodeCancel(frame: Buffer, flags: number): CancelMessage {
  if (frame.length !== 6) throw malformed(MessageKind.CANCEL, `length ${frame.length}, expected 6`);
  const id = frame.readUInt32BE(2);
  if (id === 0) throw malformed(MessageKind.CANCEL, 'request id 0');
  return { kind: MessageKind.CANCEL, flags, id };
}

function decodePingPong(frame: Buffer, kind: 7 | 8, flags: number): PingMessage | PongMessage {
  if (frame.length !== 2 + PING_DATA_BYTES) {
    throw malformed(kind, `length ${frame.length}, expected ${2 + PING_DATA_BYTES}`);
  }
  return { kind, flags, data: frame.subarray(2) };
}

function decodeGoaway(frame: Buffer, flags: number): GoawayMessage {
  const len = frame.length;
  // kind flags lastId:u32 retryAfterMs:u32 reasonLen:u8 reason(≥1) messageLen:u16
  if (len < 14) throw malformed(MessageKind.GOAWAY, `${len} bytes is shorter than the header`);
  const n = frame[10] as number;
  if (n === 0) throw malformed(MessageKind.GOAWAY, 'empty reason');
  const reasonEnd = 11 + n;
  if (reasonEnd + 2 > len) throw malformed(MessageKind.GOAWAY, 'reason runs past the end');
  const reason = readCode(frame, 11, reasonEnd, MessageKind.GOAWAY);
  const textEnd = reasonEnd + 2 + frame.readUInt16BE(reasonEnd);
  if (textEnd !== len) {
    throw malformed(MessageKind.GOAWAY, textEnd > len ? 'message runs past the end' : 'trailing bytes');
  }
  return {
    kind: MessageKind.GOAWAY,
    flags,
    lastId: frame.readUInt32BE(2),
    retryAfterMs: frame.readUInt32BE(6),
    reason,
    message: frame.toString('utf8', reasonEnd + 2, textEnd),
  };
}

function decodeHello(frame: Buffer, flags: number): HelloMessage {
  // kind flags version:u16 and a JSON object, which is at least `{}`.
  if (frame.length < 6) {
    throw malformed(MessageKind.HELLO, `${frame.length} bytes is shorter than the header`);
  }
  return {
    kind: MessageKind.HELLO,
    flags,
    version: frame.readUInt16BE(2),
    params: decodeHelloParams(frame.subarray(4)),
  };
}
