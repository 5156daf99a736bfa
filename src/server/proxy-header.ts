/**
 * The PROXY protocol header that a proxy in front of the server (haproxy `send-proxy` /
 * `send-proxy-v2`, nginx `proxy_protocol on`, a cloud load balancer) puts before the first byte of
 * each relayed connection, to say who the client really is. The spec is haproxy's
 * doc/proxy-protocol.txt, "The PROXY protocol, Versions 1 & 2"; the § numbers below are its
 * sections.
 *
 * This module is pure: bytes in, a header out, no socket. The server decides *whether* to read a
 * header — only from trusted proxy addresses (trusted-proxies.ts), never by guessing from the bytes
 * (§5: a client allowed to send the header can pretend to be anyone).
 *
 * The reader takes the stream in chunks of any size, one byte at a time included, and holds at most
 * the header's own bytes (never what follows it, which goes back as a view): at most 107 bytes for
 * v1 (§2.1) and `maxV2Bytes` for v2, a length refused as soon as its 16-byte fixed part is read.
 * Bytes that prove the header invalid throw at once — the first byte that is neither 'P' nor '\r'
 * included — since §2.1 asks the receiver to abort such a connection as soon as possible.
 */

// The global `Buffer` is an accessor property in Node 20 (see src/codec/length-prefixed.ts).
import { Buffer } from 'node:buffer';
import net from 'node:net';
import { InvalidArgumentError, ProxyHeaderError } from '../errors.js';

/** §2.1: the longest v1 line, "PROXY UNKNOWN <ipv6> <ipv6> 65535 65535\r\n", is 107 bytes. */
export const PROXY_V1_MAX_BYTES = 107;

/** §2.2: a v2 header's fixed part (12-byte signature, version+command, family, u16 length). */
export const PROXY_V2_FIXED_BYTES = 16;

/**
 * Default cap on a whole v2 header. The largest address block is 216 bytes (AF_UNIX, §2.2); what
 * haproxy and cloud load balancers add as TLVs — ALPN, AUTHORITY (the SNI, at most 255 bytes),
 * UNIQUE_ID (at most 128, §2.2.5), an SSL block with version, CN and cipher names, CRC32C, a
 * vendor's endpoint id — comes to a few hundred bytes at most. 1024 leaves room for all of it, fits
 * in the first read, and bounds what a misconfigured sender makes the server hold per pending
 * connection, where the u16 length alone would allow 65,551 bytes.
 */
export const DEFAULT_MAX_V2_BYTES = 1024;

/** The smallest `maxV2Bytes`: 16 + 216, so a header with any address family the spec defines fits. */
const MIN_MAX_V2_BYTES = PROXY_V2_FIXED_BYTES + 216;
const MAX_MAX_V2_BYTES = PROXY_V2_FIXED_BYTES + 0xffff;

/** §2.2: the TLV types registered so far (values of `ProxyHeader.tlvs[i].type`). */
export const PP2_TYPE = {
  ALPN: 0x01,
  AUTHORITY: 0x02,
  CRC32C: 0x03,
  NOOP: 0x04,
  UNIQUE_ID: 0x05,
  SSL: 0x20,
  NETNS: 0x30,
} as const;

/** An address the header carries: IP text as Node prints it (`127.0.0.1`, `::1`), or a UNIX path. */
export interface ProxyAddress {
  address: string;
  /** The TCP port; 0 for a UNIX socket, which has none. */
  port: number;
}

/** One v2 Type-Length-Value extension (§2.2): type u8, then `value` (at most 65,535 bytes). */
export interface ProxyTlv {
  type: number;
  value: Buffer;
}

/**
 * A parsed PROXY header. `source` and `destination` are present exactly when the header names the
 * relayed connection's endpoints (`command: 'proxy'` with family tcp4, tcp6 or unix). Without them
 * — v1 `UNKNOWN`, a v2 LOCAL command (a proxy's own health check, §2.2), or an unspecified or
 * datagram family — the server uses the connection's own addresses, as §2.1 and §2.2 ask.
 */
export interface ProxyHeader {
  version: 1 | 2;
  command: 'proxy' | 'local';
  family: 'tcp4' | 'tcp6' | 'unix' | 'unknown';
  source?: ProxyAddress;
  destination?: ProxyAddress;
  /** v2 only: the TLVs after the address block, in order (empty when there are none). */
  tlvs?: ProxyTlv[];
}

/** What the encoders take: a header whose version is the encoder's. */
export type ProxyHeaderFields = Omit<ProxyHeader, 'version'>;

/** A complete header and the bytes that followed it in the chunk that completed it. */
export interface ProxyHeaderResult {
  header: ProxyHeader;
  /** The stream's bytes after the header (a view of the last chunk pushed, often empty). */
  rest: Buffer;
}

export interface ProxyHeaderReaderOptions {
  /**
   * The largest v2 header accepted, fixed part included; a longer announced length throws
   * ProxyHeaderError `too-long` before any byte past the fixed part is held. Default
   * {@link DEFAULT_MAX_V2_BYTES} (1024); at least 232, at most 65,551.
   */
  maxV2Bytes?: number;
}

const CR = 0x0d;
const LF = 0x0a;
const P = 0x50;
const SPACE = 0x20;
/** §2.1: "PROXY" identifies v1. */
const V1_SIGNATURE = Buffer.from('PROXY', 'latin1');
/** §2.2: the 12 bytes that open a v2 header; the NUL and "QUIT" make other protocols fail fast. */
export const V2_SIGNATURE = Buffer.from([
  0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
]);
/** Returned by the measuring functions while the header's end is not in the bytes seen yet. */
const NEED_MORE = -1;

/**
 * Reads one PROXY header (v1 or v2) off the start of a stream.
 *
 * Push the connection's chunks as they come; `push` returns undefined while the header is not
 * complete, then `{ header, rest }` once, where `rest` is what followed the header in that chunk
 * (hand it to the protocol's decoder before the next chunk). A reader reads one header: pushing
 * after the result is a caller error. Malformed bytes throw {@link ProxyHeaderError} with a
 * `reason`; after a throw every call throws the same error (the stream position is lost).
 *
 * @example
 * ```ts
 * // At accept: a sender that resets at once (haproxy's bare health checks) has no address later.
 * const peer = { address: socket.remoteAddress, port: socket.remotePort };
 * const reader = new ProxyHeaderReader();
 * socket.on('data', function onData(chunk) {
 *   const done = reader.push(chunk); // throws ProxyHeaderError: destroy the socket
 *   if (done === undefined) return;
 *   socket.off('data', onData);
 *   startProtocol(socket, done.header.source ?? peer, done.rest); // rest: often the client's first bytes
 * });
 * ```
 */
export class ProxyHeaderReader {
  readonly maxV2Bytes: number;
  /**
   * The header's first bytes when it spans chunks, made on first need: 107 bytes for v1; for v2
   * 16, then exactly the header's length once that is known. Only header bytes are ever copied in.
   */
  private scratch: Buffer | undefined;
  private buffered = 0;
  /** v2: the whole header's length once its fixed part has been read; 0 before. */
  private v2Total = 0;
  private error: Error | undefined;
  private finished = false;

  constructor(options: ProxyHeaderReaderOptions = {}) {
    const max = options.maxV2Bytes ?? DEFAULT_MAX_V2_BYTES;
    if (!Number.isInteger(max) || max < MIN_MAX_V2_BYTES || max > MAX_MAX_V2_BYTES) {
      throw new InvalidArgumentError(
        `maxV2Bytes must be an integer from ${MIN_MAX_V2_BYTES} to ${MAX_MAX_V2_BYTES}, got ${String(options.maxV2Bytes)}`,
      );
    }
    this.maxV2Bytes = max;
  }

  /** Header bytes held while waiting for the rest of it. */
  get bufferedBytes(): number {
    return this.buffered;
  }

  /**
   * Takes the next chunk of the stream. Returns undefined while the header is incomplete, then
   * the header and the bytes after it. Throws ProxyHeaderError for bytes no valid header starts
   * with, InvalidArgumentError when called again after the header was returned.
   */
  push(chunk: Buffer): ProxyHeaderResult | undefined {
    if (this.error !== undefined) throw this.error;
    if (this.finished) {
      throw new InvalidArgumentError(
        "ProxyHeaderReader.push() after the header was read: the rest of the stream is not the reader's",
      );
    }
    try {
      const result = this.buffered === 0 ? this.first(chunk) : this.more(chunk);
      if (result !== undefined) {
        this.finished = true;
        this.scratch = undefined;
        this.buffered = 0;
      }
      return result;
    } catch (err) {
      this.error = err instanceof Error ? err : new Error(String(err));
      this.scratch = undefined;
      this.buffered = 0;
      throw err;
    }
  }

  /**
   * The stream ended. Throws ProxyHeaderError `truncated` when it ended inside a header (§2.2: the
   * receiver must reject partial headers); a stream that ended before its first byte is not an
   * error here — the caller decides what an empty connection means.
   */
  end(): void {
    if (this.error !== undefined) throw this.error;
    if (this.buffered === 0) return;
    this.error = new ProxyHeaderError(
      `stream ended inside a PROXY header (${this.buffered} bytes read)`,
      'truncated',
    );
    this.scratch = undefined;
    this.buffered = 0;
    throw this.error;
  }

  /** Nothing held yet: the whole header is often in this one chunk (§2 asks senders for that). */
  private first(chunk: Buffer): ProxyHeaderResult | undefined {
    const total = this.measure(chunk, 0, chunk.length);
    if (total !== NEED_MORE) return { header: decode(chunk, total, true), rest: chunk.subarray(total) };
    if (chunk.length > 0) {
      // Every byte of the chunk is a header byte: the header's end is not in it.
      this.scratch = Buffer.allocUnsafe(
        chunk[0] === P ? PROXY_V1_MAX_BYTES : Math.max(PROXY_V2_FIXED_BYTES, this.v2Total),
      );
      chunk.copy(this.scratch, 0);
      this.buffered = chunk.length;
    }
    return undefined;
  }

  /** A header started in an earlier chunk: copy in from `chunk` only bytes that belong to it. */
  private more(chunk: Buffer): ProxyHeaderResult | undefined {
    let p = 0;
    // At most two rounds for v2 (the fixed part, then the rest once its length is known), one for v1.
    while (p < chunk.length) {
      const n = this.headerBytesIn(chunk, p);
      let scratch = this.scratch!;
      if (this.buffered + n > scratch.length) {
        // v2 only: grow from the fixed part to the exact header length, checked against the cap.
        const grown = Buffer.allocUnsafe(this.v2Total);
        scratch.copy(grown, 0, 0, this.buffered);
        this.scratch = scratch = grown;
      }
      chunk.copy(scratch, this.buffered, p, p + n);
      const from = this.buffered;
      this.buffered += n;
      p += n;
      const total = this.measure(scratch, from, this.buffered);
      if (total !== NEED_MORE) return { header: decode(scratch, total, false), rest: chunk.subarray(p) };
    }
    return undefined;
  }

  /** How many bytes of `chunk` from `p` can belong to the header held so far (at least 1). */
  private headerBytesIn(chunk: Buffer, p: number): number {
    const room = chunk.length - p;
    if (this.scratch![0] === P) {
      const limit = Math.min(room, PROXY_V1_MAX_BYTES - this.buffered);
      const lf = chunk.subarray(p, p + limit).indexOf(LF);
      return lf >= 0 ? lf + 1 : limit;
    }
    const want =
      this.buffered < PROXY_V2_FIXED_BYTES
        ? PROXY_V2_FIXED_BYTES - this.buffered
        : this.v2Total - this.buffered;
    return Math.min(room, want);
  }

  /**
   * Checks the header bytes `buf[from, have)`, those before `from` having passed already. Returns
   * the header's total length once its end is within `buf[0, have)`, else NEED_MORE; throws as soon
   * as the bytes cannot start a valid header.
   */
  private measure(buf: Buffer, from: number, have: number): number {
    if (have === 0) return NEED_MORE;
    const first = buf[0]!;
    if (first === P) return measureV1(buf, from, have);
    if (first === CR) return this.measureV2(buf, from, have);
    throw notAHeader(0, first);
  }

  private measureV2(buf: Buffer, from: number, have: number): number {
    // §2.2: the 12-byte signature, checked byte by byte so a stranger fails on its first wrong byte.
    for (let i = from; i < Math.min(have, V2_SIGNATURE.length); i++) {
      if (buf[i] !== V2_SIGNATURE[i]) throw notAHeader(i, buf[i]!);
    }
    if (from <= 12 && have > 12) {
      // §2.2: "the receiver must only accept" version 2 in the high nibble; commands are 0 LOCAL and
      // 1 PROXY, and "receivers must drop connections presenting unexpected values here".
      const versionCommand = buf[12]!;
      if (versionCommand >> 4 !== 2) {
        throw new ProxyHeaderError(
          `PROXY v2 signature with version ${versionCommand >> 4}: only version 2 is defined`,
          'unsupported',
        );
      }
      if ((versionCommand & 0x0f) > 1) {
        throw new ProxyHeaderError(
          `PROXY v2 command ${versionCommand & 0x0f}: only 0 (LOCAL) and 1 (PROXY)`,
          'bad-v2',
        );
      }
    }
    if (from <= 13 && have > 13 && addressBytes(buf[13]!) < 0) {
      // §2.2: other family or protocol values "must be rejected as invalid by receivers".
      throw new ProxyHeaderError(`PROXY v2 family/protocol byte 0x${hex(buf[13]!)} is not defined`, 'bad-v2');
    }
    if (have < PROXY_V2_FIXED_BYTES) return NEED_MORE;
    const length = buf.readUInt16BE(14);
    const total = PROXY_V2_FIXED_BYTES + length;
    if (from < PROXY_V2_FIXED_BYTES) {
      // The fixed part just completed: judge the announced length before holding a byte more.
      if (total > this.maxV2Bytes) {
        throw new ProxyHeaderError(
          `PROXY v2 header of ${total} bytes exceeds maxV2Bytes ${this.maxV2Bytes}`,
          'too-long',
        );
      }
      // §2.2: a PROXY command's addresses must fit; a LOCAL one's block is ignored, whatever its size.
      const needed = (buf[12]! & 0x0f) === 1 ? addressBytes(buf[13]!) : 0;
      if (length < needed) {
        throw new ProxyHeaderError(
          `PROXY v2 length ${length} is shorter than the ${needed}-byte address block of family 0x${hex(buf[13]!)}`,
          'bad-v2',
        );
      }
      this.v2Total = total;
    }
    return have >= total ? total : NEED_MORE;
  }
}

/** §2.1: "PROXY", one space, then the line up to CRLF within 107 bytes. */
function measureV1(buf: Buffer, from: number, have: number): number {
  const end = Math.min(have, PROXY_V1_MAX_BYTES);
  for (let i = from; i < end; i++) {
    const c = buf[i]!;
    if (i < V1_SIGNATURE.length) {
      if (c !== V1_SIGNATURE[i]) throw notAHeader(i, c);
    } else if (i === V1_SIGNATURE.length) {
      if (c !== SPACE) throw badV1(`"PROXY" must be followed by exactly one space, got 0x${hex(c)}`);
    } else if (c === LF) {
      // §2.1: "The receiver must not tolerate a single CR or LF character to end the line".
      if (buf[i - 1] !== CR) throw badV1('line ends with LF without CR');
      return i + 1;
    } else if (buf[i - 1] === CR) {
      throw badV1('CR not followed by LF');
    }
  }
  if (have >= PROXY_V1_MAX_BYTES) {
    // §2.1: "If the CRLF sequence is not found in the first 107 characters, the receiver should
    // declare the line invalid."
    throw new ProxyHeaderError(
      `PROXY v1 line without CRLF in its first ${PROXY_V1_MAX_BYTES} bytes`,
      'too-long',
    );
  }
  return NEED_MORE;
}

/** Bytes of the v2 address block for a family/protocol byte (§2.2), or -1 for an undefined one. */
export function addressBytes(familyProtocol: number): number {
  switch (familyProtocol) {
    case 0x00: // UNSPEC
      return 0;
    case 0x11: // TCP over IPv4
    case 0x12: // UDP over IPv4
      return 12;
    case 0x21: // TCP over IPv6
    case 0x22: // UDP over IPv6
      return 36;
    case 0x31: // UNIX stream
    case 0x32: // UNIX datagram
      return 216;
    default:
      return -1;
  }
}

/**
 * The header in `buf[0, total)`, already measured (so its framing is valid). `borrowed` says that
 * `buf` is the caller's chunk: TLV values are then copied, so that a header kept for the life of a
 * long-lived connection does not pin the whole first read's memory.
 */
function decode(buf: Buffer, total: number, borrowed: boolean): ProxyHeader {
  return buf[0] === P ? decodeV1(buf.toString('latin1', 0, total - 2)) : decodeV2(buf, total, borrowed);
}

/** §2.1: "PROXY TCP4|TCP6 <src> <dst> <sport> <dport>" or "PROXY UNKNOWN[ anything]". */
function decodeV1(line: string): ProxyHeader {
  const fields = line.split(' ');
  const protocol = fields[1];
  // §2.1: for UNKNOWN "the receiver must ignore anything presented before the CRLF".
  if (protocol === 'UNKNOWN') return { version: 1, command: 'proxy', family: 'unknown' };
  if (protocol !== 'TCP4' && protocol !== 'TCP6') {
    throw badV1(`protocol ${JSON.stringify(protocol)}: only TCP4, TCP6 and UNKNOWN exist`);
  }
  if (fields.length !== 6) {
    throw badV1(
      `${JSON.stringify(line)} is not "PROXY ${protocol} <src> <dst> <sport> <dport>" with single spaces`,
    );
  }
  const family = protocol === 'TCP4' ? 'tcp4' : 'tcp6';
  return {
    version: 1,
    command: 'proxy',
    family,
    source: { address: v1Address(fields[2]!, family), port: v1Port(fields[4]!) },
    destination: { address: v1Address(fields[3]!, family), port: v1Port(fields[5]!) },
  };
}

/** §2.1: four decimal octets in [0, 255], single dots, no leading zeroes (they would read as octal). */
const IPV4_OCTET = '(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])';
const IPV4_CANONICAL = new RegExp(`^${IPV4_OCTET}(?:\\.${IPV4_OCTET}){3}$`);
/** §2.1: a decimal port in [0, 65535] without leading zeroes. */
const PORT = /^(?:0|[1-9][0-9]{0,4})$/;

function v1Address(text: string, family: 'tcp4' | 'tcp6'): string {
  if (family === 'tcp4') {
    if (IPV4_CANONICAL.test(text) && net.isIPv4(text)) return text;
    throw badV1(`${JSON.stringify(text)} is not an IPv4 address in canonical form`);
  }
  // §2.1 describes colon-separated hex groups with one "::"; what inet_pton(3) reads (haproxy's
  // and nginx's parser) is accepted, a zone id is not. Printed as Node prints addresses.
  if (net.isIPv6(text) && !text.includes('%')) return formatIPv6(text);
  throw badV1(`${JSON.stringify(text)} is not an IPv6 address`);
}

function v1Port(text: string): number {
  const port = PORT.test(text) ? Number(text) : -1;
  if (port < 0 || port > 0xffff)
    throw badV1(`${JSON.stringify(text)} is not a port (0-65535, no leading zeroes)`);
  return port;
}

/** §2.2: the fixed part, an address block sized by the family, then TLVs up to the length. */
function decodeV2(buf: Buffer, total: number, borrowed: boolean): ProxyHeader {
  const local = (buf[12]! & 0x0f) === 0;
  const familyProtocol = buf[13]!;
  const a = PROXY_V2_FIXED_BYTES;
  // TLVs after the addresses the header names must fill it exactly. Where the spec has the block
  // discarded — a LOCAL command, an UNSPEC family, which "may" carry addresses of no stated size,
  // or a datagram family — they are read only if the block is a well-formed TLV sequence (haproxy
  // sends its TLVs after a LOCAL health check's empty block), else skipped. haproxy's receiver
  // (conn_recv_proxy) reads TLVs for the PROXY command only.
  const named = !local && (familyProtocol === 0x11 || familyProtocol === 0x21 || familyProtocol === 0x31);
  const tlvs = decodeTlvs(buf, a + addressBytes(familyProtocol), total, borrowed, !named);
  // §2.2 LOCAL: "the receiver ... must use the real connection endpoints and discard the protocol
  // block including the family which is ignored".
  if (local) return { version: 2, command: 'local', family: 'unknown', tlvs };
  switch (familyProtocol) {
    case 0x11:
      return {
        version: 2,
        command: 'proxy',
        family: 'tcp4',
        source: { address: ipv4At(buf, a), port: buf.readUInt16BE(a + 8) },
        destination: { address: ipv4At(buf, a + 4), port: buf.readUInt16BE(a + 10) },
        tlvs,
      };
    case 0x21:
      return {
        version: 2,
        command: 'proxy',
        family: 'tcp6',
        source: { address: ipv6At(buf, a), port: buf.readUInt16BE(a + 32) },
        destination: { address: ipv6At(buf, a + 16), port: buf.readUInt16BE(a + 34) },
        tlvs,
      };
    case 0x31:
      return {
        version: 2,
        command: 'proxy',
        family: 'unix',
        source: { address: unixAt(buf, a), port: 0 },
        destination: { address: unixAt(buf, a + 108), port: 0 },
        tlvs,
      };
    default:
      // UNSPEC, or a datagram family a stream server cannot take: §2.2 has a receiver fall back to
      // UNSPEC for combinations it does not implement, i.e. use the real endpoints.
      return { version: 2, command: 'proxy', family: 'unknown', tlvs };
  }
}

/**
 * §2.2: TLVs (type u8, length u16, value) that fill the header exactly from `start` to `end`.
 * When they do not: ProxyHeaderError `bad-v2`, or no TLVs at all when `lenient`.
 */
function decodeTlvs(
  buf: Buffer,
  start: number,
  end: number,
  borrowed: boolean,
  lenient: boolean,
): ProxyTlv[] {
  const tlvs: ProxyTlv[] = [];
  if (start >= end) return tlvs;
  // Buffer.from(buffer) copies; the reader's own scratch is exactly the header and can be kept.
  const area = borrowed ? Buffer.from(buf.subarray(start, end)) : buf.subarray(start, end);
  for (let p = 0; p < area.length; ) {
    let problem: string | undefined;
    const length = area.length - p < 3 ? -1 : area.readUInt16BE(p + 1);
    if (length < 0) problem = `ends with ${area.length - p} bytes, too few for a TLV`;
    else if (p + 3 + length > area.length) {
      problem = `has a TLV 0x${hex(area[p]!)} of ${length} bytes that overruns it by ${p + 3 + length - area.length}`;
    }
    if (problem !== undefined) {
      if (lenient) return [];
      throw new ProxyHeaderError(`PROXY v2 header ${problem}`, 'bad-v2');
    }
    tlvs.push({ type: area[p]!, value: area.subarray(p + 3, p + 3 + length) });
    p += 3 + length;
  }
  return tlvs;
}

function ipv4At(buf: Buffer, at: number): string {
  return `${buf[at]}.${buf[at + 1]}.${buf[at + 2]}.${buf[at + 3]}`;
}

function ipv6At(buf: Buffer, at: number): string {
  let full = buf.readUInt16BE(at).toString(16);
  for (let i = 2; i < 16; i += 2) full += `:${buf.readUInt16BE(at + i).toString(16)}`;
  return formatIPv6(full);
}

/** An IPv6 address as Node prints `socket.remoteAddress` (libuv's inet_ntop: `::1`, `::ffff:1.2.3.4`). */
export function formatIPv6(address: string): string {
  return new net.SocketAddress({ address, family: 'ipv6' }).address;
}

/**
 * A 108-byte AF_UNIX address (§2.2): a path up to its NUL, or a Linux abstract name (a leading NUL,
 * printed with it as Node does); the block is NUL-padded, so an abstract name's trailing NULs are
 * lost.
 */
function unixAt(buf: Buffer, at: number): string {
  const raw = buf.subarray(at, at + 108);
  if (raw[0] === 0) {
    let last = raw.length - 1;
    while (last > 0 && raw[last] === 0) last--;
    return last === 0 ? '' : `\0${raw.toString('utf8', 1, last + 1)}`;
  }
  const nul = raw.indexOf(0);
  return raw.toString('utf8', 0, nul < 0 ? raw.length : nul);
}

function notAHeader(offset: number, byte: number): ProxyHeaderError {
  return new ProxyHeaderError(
    `not a PROXY protocol header: byte ${offset} is 0x${hex(byte)} (v1 starts "PROXY", v2 "\\r\\n\\r\\n\\0\\r\\nQUIT\\n")`,
    'bad-signature',
  );
}

function badV1(detail: string): ProxyHeaderError {
  return new ProxyHeaderError(`bad PROXY v1 line: ${detail}`, 'bad-v1');
}

export function hex(byte: number): string {
  return byte.toString(16).padStart(2, '0');
}

/**
 * Whether a connection's first bytes are a PROXY header: true or false as soon as `prefix` proves
 * it (one byte is often enough), undefined while it is a proper prefix of a signature ("PROXY" for
 * v1, the 12-byte v2 signature). Meant for connections from addresses *not* trusted to send one:
 * refuse those that do, rather than read their payload as the protocol.
 *
 * @example
 * ```ts
 * looksLikeProxyHeader(Buffer.from('PRO'));       // undefined
 * looksLikeProxyHeader(Buffer.from('PROXY TCP4')); // true
 * looksLikeProxyHeader(Buffer.from('GET /'));      // false
 * ```
 */
export function looksLikeProxyHeader(prefix: Buffer): boolean | undefined {
  if (prefix.length === 0) return undefined;
  const signature = prefix[0] === P ? V1_SIGNATURE : prefix[0] === CR ? V2_SIGNATURE : undefined;
  if (signature === undefined) return false;
  const n = Math.min(prefix.length, signature.length);
  for (let i = 1; i < n; i++) if (prefix[i] !== signature[i]) return false;
  return n === signature.length ? true : undefined;
}
