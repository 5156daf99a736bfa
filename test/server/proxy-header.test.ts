// The PROXY protocol header reader (haproxy's proxy-protocol.txt, v1 and v2): every valid form read
// whole, one byte at a time and split at every offset; every malformed form refused with its
// reason, at the byte that proves it; limits; encoders; fast-check round trips and garbage.

import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { InvalidArgumentError, LonglinkError, ProxyHeaderError } from '../../src/errors.js';
import { encodeProxyV1, encodeProxyV2 } from '../../src/server/proxy-encode.js';
import {
  DEFAULT_MAX_V2_BYTES,
  looksLikeProxyHeader,
  PP2_TYPE,
  PROXY_V1_MAX_BYTES,
  type ProxyHeader,
  type ProxyHeaderFields,
  ProxyHeaderReader,
  type ProxyHeaderReaderOptions,
} from '../../src/server/proxy-header.js';
import { allocations, cut } from '../codec/helpers.js';

/** Bounded so the suite stays fast; raise with FC_RUNS=5000 for a deeper run. */
const NUM_RUNS = Number(process.env.FC_RUNS ?? 300);

const SIG = Buffer.from('0d0a0d0a000d0a515549540a', 'hex');

/** A v2 header built by hand (not by the encoder under test): signature, two bytes, u16 length, body. */
function v2(
  versionCommand: number,
  familyProtocol: number,
  body: Buffer | number[],
  length?: number,
): Buffer {
  const b = Buffer.from(body);
  const fixed = Buffer.alloc(4);
  fixed[0] = versionCommand;
  fixed[1] = familyProtocol;
  fixed.writeUInt16BE(length ?? b.length, 2);
  return Buffer.concat([SIG, fixed, b]);
}

const u16 = (n: number) => [n >> 8, n & 0xff];
const tlv = (type: number, value: string | Buffer) => {
  const v = Buffer.from(value);
  return Buffer.concat([Buffer.from([type, ...u16(v.length)]), v]);
};
const unixBlock = (path: string) => {
  const b = Buffer.alloc(108);
  b.write(path, 'utf8');
  return b;
};
const ascii = (s: string) => Buffer.from(s, 'latin1');

/** What reading `chunks` gave: the header and every byte after it, or the error's reason. */
interface Outcome {
  header?: ProxyHeader;
  after?: string;
  reason?: string;
  /** Bytes pushed when the result or error came. */
  at: number;
  maxBuffered: number;
  /** Sizes of the Buffer.allocUnsafe calls made inside push() (the reader's only allocator for scratch). */
  allocated: number[];
}

function read(chunks: readonly Buffer[], options?: ProxyHeaderReaderOptions): Outcome {
  const allocated: number[] = [];
  const reader = new ProxyHeaderReader(options);
  let at = 0;
  let maxBuffered = 0;
  for (let i = 0; i < chunks.length; i++) {
    const chunk = chunks[i]!;
    at += chunk.length;
    let result: ReturnType<ProxyHeaderReader['push']>;
    try {
      const pushed = allocations(() => {
        try {
          return { value: reader.push(chunk) };
        } catch (err) {
          return { err };
        }
      });
      allocated.push(...pushed.sizes);
      if ('err' in pushed.result) throw pushed.result.err;
      result = pushed.result.value;
    } catch (err) {
      assert.ok(err instanceof ProxyHeaderError, `not a ProxyHeaderError: ${String(err)}`);
      assert.equal(err.code, 'ERR_PROXY_HEADER');
      return { reason: err.reason, at, maxBuffered, allocated };
    }
    maxBuffered = Math.max(maxBuffered, reader.bufferedBytes);
    if (result !== undefined) {
      const after = Buffer.concat([result.rest, ...chunks.slice(i + 1)]);
      return {
        header: result.header,
        after: after.toString('hex'),
        at: at - result.rest.length,
        maxBuffered,
        allocated,
      };
    }
  }
  try {
    reader.end();
  } catch (err) {
    assert.ok(err instanceof ProxyHeaderError);
    return { reason: err.reason, at, maxBuffered, allocated };
  }
  return { at, maxBuffered, allocated };
}

const bytewise = (b: Buffer) =>
  cut(
    b,
    Array.from({ length: Math.max(0, b.length - 1) }, (_, i) => i + 1),
  );

/**
 * `wire` followed by a trailer reads as `expected` with the trailer intact: whole, one byte at a
 * time, split at every offset and, for short headers, at every pair; never holding more than the
 * header.
 */
function assertReads(wire: Buffer, expected: ProxyHeader): void {
  const trailer = Buffer.from('\r\nafter the header: PROXY TCP4\r\n\0');
  const stream = Buffer.concat([wire, trailer]);
  const want = { header: expected, after: trailer.toString('hex'), at: wire.length };
  const check = (o: Outcome, how: string) => {
    assert.deepEqual({ header: o.header, after: o.after, at: o.at }, want, how);
    assert.ok(
      o.maxBuffered < wire.length,
      `${how}: held ${o.maxBuffered} bytes of a ${wire.length}-byte header`,
    );
  };
  check(read([stream]), 'whole');
  check(read([wire, trailer]), 'header, then trailer');
  check(read(bytewise(stream)), 'one byte at a time');
  for (let i = 0; i <= stream.length; i++) check(read(cut(stream, [i])), `split at ${i}`);
  if (wire.length <= 60) {
    for (let i = 1; i < wire.length; i++) {
      for (let j = i; j <= wire.length; j++) check(read(cut(stream, [i, j])), `split at ${i} and ${j}`);
    }
  }
}

const FFFF8 = 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff';

interface Valid {
  name: string;
  wire: Buffer;
  header: ProxyHeader;
  /** The encoder produces exactly `wire` from `header`. */
  canonical?: boolean;
}

const VALID: Valid[] = [
  {
    name: 'v1 TCP4 (the spec’s example, §2.1)',
    wire: ascii('PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n'),
    header: {
      version: 1,
      command: 'proxy',
      family: 'tcp4',
      source: { address: '192.168.0.1', port: 56324 },
      destination: { address: '192.168.0.11', port: 443 },
    },
    canonical: true,
  },
  {
    name: 'v1 TCP4, extreme addresses and ports',
    wire: ascii('PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n'),
    header: {
      version: 1,
      command: 'proxy',
      family: 'tcp4',
      source: { address: '0.0.0.0', port: 0 },
      destination: { address: '255.255.255.255', port: 65535 },
    },
    canonical: true,
  },
  {
    name: 'v1 TCP6, compressed',
    wire: ascii('PROXY TCP6 2001:db8::1 ::1 50000 443\r\n'),
    header: {
      version: 1,
      command: 'proxy',
      family: 'tcp6',
      source: { address: '2001:db8::1', port: 50000 },
      destination: { address: '::1', port: 443 },
    },
    canonical: true,
  },
  {
    name: 'v1 TCP6, the longest line (104 bytes), upper case and uncompressed: printed as Node does',
    wire: ascii(`PROXY TCP6 ${FFFF8.toUpperCase()} 0000:0000:0000:0000:0000:0000:0000:0001 65535 65535\r\n`),
    header: {
      version: 1,
      command: 'proxy',
      family: 'tcp6',
      source: { address: FFFF8, port: 65535 },
      destination: { address: '::1', port: 65535 },
    },
  },
  {
    name: 'v1 TCP6, IPv4-mapped',
    wire: ascii('PROXY TCP6 ::ffff:127.0.0.2 ::ffff:7f00:1 1 2\r\n'),
    header: {
      version: 1,
      command: 'proxy',
      family: 'tcp6',
      source: { address: '::ffff:127.0.0.2', port: 1 },
      destination: { address: '::ffff:127.0.0.1', port: 2 },
    },
  },
  {
    name: 'v1 UNKNOWN, short form',
    wire: ascii('PROXY UNKNOWN\r\n'),
    header: { version: 1, command: 'proxy', family: 'unknown' },
    canonical: true,
  },
  {
    name: 'v1 UNKNOWN, the worst case (107 bytes): the rest of the line is ignored',
    wire: ascii(`PROXY UNKNOWN ${FFFF8} ${FFFF8} 65535 65535\r\n`),
    header: { version: 1, command: 'proxy', family: 'unknown' },
  },
  {
    name: 'v1 UNKNOWN with anything before the CRLF',
    wire: ascii('PROXY UNKNOWN \0\xff whatever\r\n'),
    header: { version: 1, command: 'proxy', family: 'unknown' },
  },
  {
    name: 'v2 PROXY TCP4',
    wire: v2(0x21, 0x11, [127, 0, 0, 2, 127, 0, 0, 1, ...u16(40000), ...u16(9000)]),
    header: {
      version: 2,
      command: 'proxy',
      family: 'tcp4',
      source: { address: '127.0.0.2', port: 40000 },
      destination: { address: '127.0.0.1', port: 9000 },
      tlvs: [],
    },
    canonical: true,
  },
  {
    name: 'v2 PROXY TCP6',
    wire: v2(0x21, 0x21, [
      ...[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
      ...[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 1, 2, 3],
      ...u16(1),
      ...u16(65535),
    ]),
    header: {
      version: 2,
      command: 'proxy',
      family: 'tcp6',
      source: { address: '2001:db8::1', port: 1 },
      destination: { address: '::ffff:10.1.2.3', port: 65535 },
      tlvs: [],
    },
    canonical: true,
  },
  {
    name: 'v2 PROXY UNIX stream: a path and an abstract name',
    wire: v2(0x21, 0x31, Buffer.concat([unixBlock('/run/app.sock'), unixBlock('\0abstract')])),
    header: {
      version: 2,
      command: 'proxy',
      family: 'unix',
      source: { address: '/run/app.sock', port: 0 },
      destination: { address: '\0abstract', port: 0 },
      tlvs: [],
    },
    canonical: true,
  },
  {
    name: 'v2 PROXY TCP4 with TLVs (AUTHORITY, UNIQUE_ID, an empty NOOP, a custom type)',
    wire: v2(
      0x21,
      0x11,
      Buffer.concat([
        Buffer.from([10, 0, 0, 1, 10, 0, 0, 2, ...u16(1234), ...u16(443)]),
        tlv(PP2_TYPE.AUTHORITY, 'example.com'),
        tlv(PP2_TYPE.UNIQUE_ID, Buffer.from('00112233445566778899', 'hex')),
        tlv(PP2_TYPE.NOOP, ''),
        tlv(0xe0, 'custom'),
      ]),
    ),
    header: {
      version: 2,
      command: 'proxy',
      family: 'tcp4',
      source: { address: '10.0.0.1', port: 1234 },
      destination: { address: '10.0.0.2', port: 443 },
      tlvs: [
        { type: 0x02, value: Buffer.from('example.com') },
        { type: 0x05, value: Buffer.from('00112233445566778899', 'hex') },
        { type: 0x04, value: Buffer.alloc(0) },
        { type: 0xe0, value: Buffer.from('custom') },
      ],
    },
    canonical: true,
  },
  {
    name: 'v2 LOCAL (a health check), empty',
    wire: v2(0x20, 0x00, []),
    header: { version: 2, command: 'local', family: 'unknown', tlvs: [] },
    canonical: true,
  },
  {
    name: 'v2 LOCAL with TLVs (haproxy sends its TLVs after a check’s empty block)',
    wire: v2(0x20, 0x00, tlv(PP2_TYPE.UNIQUE_ID, 'abc')),
    header: {
      version: 2,
      command: 'local',
      family: 'unknown',
      tlvs: [{ type: 0x05, value: Buffer.from('abc') }],
    },
    canonical: true,
  },
  {
    name: 'v2 LOCAL with an IPv4 block: the block and the family are ignored (§2.2)',
    wire: v2(0x20, 0x11, [1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2]),
    header: { version: 2, command: 'local', family: 'unknown', tlvs: [] },
  },
  {
    name: 'v2 LOCAL with a family and a block shorter than its addresses: ignored too',
    wire: v2(0x20, 0x21, [1, 2, 3]),
    header: { version: 2, command: 'local', family: 'unknown', tlvs: [] },
  },
  {
    name: 'v2 PROXY UNSPEC',
    wire: v2(0x21, 0x00, []),
    header: { version: 2, command: 'proxy', family: 'unknown', tlvs: [] },
    canonical: true,
  },
  {
    name: 'v2 PROXY UNSPEC with address bytes that are not TLVs: skipped (§2.2 "if present")',
    wire: v2(0x21, 0x00, [127, 0, 0, 1, 127, 0, 0, 1, 0x30, 0x39, 0x01, 0xbb]),
    header: { version: 2, command: 'proxy', family: 'unknown', tlvs: [] },
  },
  {
    name: 'v2 PROXY UDP over IPv4: falls back to UNSPEC (§2.2), TLVs still read',
    wire: v2(
      0x21,
      0x12,
      Buffer.concat([Buffer.from([1, 2, 3, 4, 5, 6, 7, 8, 0, 53, 0, 53]), tlv(0x01, 'dns')]),
    ),
    header: {
      version: 2,
      command: 'proxy',
      family: 'unknown',
      tlvs: [{ type: 0x01, value: Buffer.from('dns') }],
    },
  },
  {
    name: 'v2 PROXY UNIX datagram: falls back to UNSPEC',
    wire: v2(0x21, 0x32, Buffer.concat([unixBlock('/a'), unixBlock('/b')])),
    header: { version: 2, command: 'proxy', family: 'unknown', tlvs: [] },
  },
];

describe('ProxyHeaderReader: valid headers', () => {
  for (const c of VALID) {
    test(`${c.name}: whole, byte by byte, split at every offset; the bytes after it intact`, () => {
      assertReads(c.wire, c.header);
      if (c.canonical) {
        const encoded = c.header.version === 1 ? encodeProxyV1(c.header) : encodeProxyV2(c.header);
        assert.equal(encoded.toString('hex'), c.wire.toString('hex'), 'the encoder writes the same bytes');
      }
      assert.equal(looksLikeProxyHeader(c.wire), true);
    });
  }

  test('the worst-case v1 line is exactly 107 bytes (§2.1) and the longest TCP6 line 104', () => {
    assert.equal(VALID.find((c) => c.name.includes('worst case'))!.wire.length, PROXY_V1_MAX_BYTES);
    assert.equal(VALID.find((c) => c.name.includes('longest line'))!.wire.length, 104);
  });

  test('rest is a view of the chunk that completed the header, not a copy', () => {
    const header = VALID[0]!.wire;
    const chunk = Buffer.concat([header, Buffer.from('payload')]);
    const whole = new ProxyHeaderReader().push(chunk)!;
    assert.equal(whole.rest.buffer, chunk.buffer);
    assert.equal(whole.rest.byteOffset, chunk.byteOffset + header.length);
    assert.equal(whole.rest.toString(), 'payload');

    const reader = new ProxyHeaderReader();
    assert.equal(reader.push(chunk.subarray(0, 10)), undefined);
    const tail = Buffer.from(chunk.subarray(10));
    const split = reader.push(tail)!;
    assert.equal(split.rest.buffer, tail.buffer);
    assert.equal(split.rest.toString(), 'payload');
    assert.equal(reader.bufferedBytes, 0);
  });

  test('TLV values do not pin the caller’s chunk: copied out of it, intact when the chunk is reused', () => {
    const c = VALID.find((v) => v.name.includes('with TLVs ('))!;
    const chunk = Buffer.concat([c.wire, Buffer.alloc(60_000)]);
    const { header } = new ProxyHeaderReader().push(chunk)!;
    chunk.fill(0xee);
    assert.deepEqual(header, c.header);
    for (const t of header.tlvs!) assert.notEqual(t.value.buffer, chunk.buffer);
  });

  test('empty chunks change nothing, before, inside and at the end of a header', () => {
    const wire = VALID[0]!.wire;
    const reader = new ProxyHeaderReader();
    assert.equal(reader.push(Buffer.alloc(0)), undefined);
    assert.equal(reader.push(wire.subarray(0, 5)), undefined);
    assert.equal(reader.push(Buffer.alloc(0)), undefined);
    assert.equal(reader.bufferedBytes, 5);
    const done = reader.push(wire.subarray(5))!;
    assert.deepEqual(done.header, VALID[0]!.header);
    assert.equal(done.rest.length, 0);
  });

  test('push() after the header was read is a caller error (InvalidArgumentError); end() is then a no-op', () => {
    const reader = new ProxyHeaderReader();
    assert.ok(reader.push(VALID[0]!.wire));
    assert.throws(() => reader.push(Buffer.from('more')), InvalidArgumentError);
    reader.end();
  });
});

interface Malformed {
  name: string;
  bytes: Buffer;
  reason: string;
  /** Bytes pushed one at a time when the error comes: the byte that proves the header invalid. */
  at: number;
}

const ipv4Body = [127, 0, 0, 1, 127, 0, 0, 1, 0, 1, 0, 2];
const longV1 = ascii(`PROXY UNKNOWN ${'a'.repeat(200)}\r\n`);

const MALFORMED: Malformed[] = [
  { name: 'HTTP', bytes: ascii('GET / HTTP/1.1\r\n\r\n'), reason: 'bad-signature', at: 1 },
  { name: 'a TLS ClientHello', bytes: Buffer.from('160301020001', 'hex'), reason: 'bad-signature', at: 1 },
  {
    name: 'a longlink frame (binary length)',
    bytes: Buffer.from('0000000c', 'hex'),
    reason: 'bad-signature',
    at: 1,
  },
  { name: '"PRXY"', bytes: ascii('PRXY TCP4'), reason: 'bad-signature', at: 3 },
  { name: '"PROXz"', bytes: ascii('PROXz TCP4'), reason: 'bad-signature', at: 5 },
  { name: 'v2 signature wrong at byte 4 (NUL)', bytes: ascii('\r\n\r\nX'), reason: 'bad-signature', at: 5 },
  {
    name: 'v2 signature wrong at its last byte',
    bytes: Buffer.concat([SIG.subarray(0, 11), Buffer.from([0x0d])]),
    reason: 'bad-signature',
    at: 12,
  },
  { name: 'v2 version 1', bytes: v2(0x11, 0x11, ipv4Body), reason: 'unsupported', at: 13 },
  { name: 'v2 version 3', bytes: v2(0x31, 0x11, ipv4Body), reason: 'unsupported', at: 13 },
  { name: 'v2 command 2', bytes: v2(0x22, 0x11, ipv4Body), reason: 'bad-v2', at: 13 },
  { name: 'v2 command 15', bytes: v2(0x2f, 0x11, ipv4Body), reason: 'bad-v2', at: 13 },
  { name: 'v2 family 4', bytes: v2(0x21, 0x41, ipv4Body), reason: 'bad-v2', at: 14 },
  { name: 'v2 protocol 3', bytes: v2(0x21, 0x13, ipv4Body), reason: 'bad-v2', at: 14 },
  { name: 'v2 AF_INET with UNSPEC protocol (0x10)', bytes: v2(0x20, 0x10, []), reason: 'bad-v2', at: 14 },
  {
    name: `v2 length over the default cap (${DEFAULT_MAX_V2_BYTES}): refused at byte 16`,
    bytes: v2(0x21, 0x11, Buffer.alloc(DEFAULT_MAX_V2_BYTES - 15)),
    reason: 'too-long',
    at: 16,
  },
  { name: 'v2 length 65535', bytes: v2(0x21, 0x00, [], 0xffff), reason: 'too-long', at: 16 },
  {
    name: 'v2 TCP4 block of 11 bytes',
    bytes: v2(0x21, 0x11, ipv4Body.slice(0, 11)),
    reason: 'bad-v2',
    at: 16,
  },
  { name: 'v2 TCP6 block of 35 bytes', bytes: v2(0x21, 0x21, Buffer.alloc(35)), reason: 'bad-v2', at: 16 },
  { name: 'v2 UNIX block of 215 bytes', bytes: v2(0x21, 0x31, Buffer.alloc(215)), reason: 'bad-v2', at: 16 },
  {
    name: 'v2 TLV overrunning the header',
    bytes: v2(0x21, 0x11, [...ipv4Body, 0x02, 0, 10, 1, 2, 3, 4, 5]),
    reason: 'bad-v2',
    at: 16 + 12 + 8,
  },
  {
    name: 'v2 header ending in a 2-byte TLV fragment',
    bytes: v2(0x21, 0x11, [...ipv4Body, 0x02, 0]),
    reason: 'bad-v2',
    at: 16 + 12 + 2,
  },
  { name: '"PROXY" without its space', bytes: ascii('PROXYTCP4 1.2.3.4'), reason: 'bad-v1', at: 6 },
  { name: 'protocol TCP5', bytes: ascii('PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n'), reason: 'bad-v1', at: 32 },
  {
    name: 'lower-case protocol',
    bytes: ascii('PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n'),
    reason: 'bad-v1',
    at: 32,
  },
  {
    name: 'UDP4 (v1 has none)',
    bytes: ascii('PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n'),
    reason: 'bad-v1',
    at: 32,
  },
  { name: '"UNKNOWNX"', bytes: ascii('PROXY UNKNOWNX\r\n'), reason: 'bad-v1', at: 16 },
  {
    name: 'two spaces after PROXY',
    bytes: ascii('PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n'),
    reason: 'bad-v1',
    at: 33,
  },
  { name: 'LF without CR', bytes: ascii('PROXY TCP4 1.2.3.4 5.6.7.8 1 2\nxx'), reason: 'bad-v1', at: 31 },
  { name: 'a lone CR', bytes: ascii('PROXY TCP4 1.2.3.4\r5.6.7.8 1 2\r\n'), reason: 'bad-v1', at: 20 },
  { name: 'a lone CR in an UNKNOWN line', bytes: ascii('PROXY UNKNOWN \rx\r\n'), reason: 'bad-v1', at: 16 },
  { name: 'CR CR LF', bytes: ascii('PROXY UNKNOWN\r\r\n'), reason: 'bad-v1', at: 15 },
  { name: 'missing port', bytes: ascii('PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n'), reason: 'bad-v1', at: 30 },
  { name: 'extra field', bytes: ascii('PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n'), reason: 'bad-v1', at: 34 },
  { name: 'trailing space', bytes: ascii('PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n'), reason: 'bad-v1', at: 33 },
  {
    name: 'octet with a leading zero',
    bytes: ascii('PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n'),
    reason: 'bad-v1',
    at: 33,
  },
  { name: 'octet 256', bytes: ascii('PROXY TCP4 256.2.3.4 5.6.7.8 1 2\r\n'), reason: 'bad-v1', at: 34 },
  { name: 'three octets', bytes: ascii('PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n'), reason: 'bad-v1', at: 30 },
  { name: 'IPv6 in a TCP4 line', bytes: ascii('PROXY TCP4 ::1 ::1 1 2\r\n'), reason: 'bad-v1', at: 24 },
  {
    name: 'IPv4 in a TCP6 line',
    bytes: ascii('PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n'),
    reason: 'bad-v1',
    at: 32,
  },
  { name: 'two "::"', bytes: ascii('PROXY TCP6 1::2::3 ::1 1 2\r\n'), reason: 'bad-v1', at: 28 },
  { name: 'an IPv6 zone id', bytes: ascii('PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n'), reason: 'bad-v1', at: 33 },
  { name: 'port 65536', bytes: ascii('PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n'), reason: 'bad-v1', at: 36 },
  {
    name: 'port with a leading zero',
    bytes: ascii('PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n'),
    reason: 'bad-v1',
    at: 33,
  },
  { name: 'negative port', bytes: ascii('PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n'), reason: 'bad-v1', at: 33 },
  { name: 'hex port', bytes: ascii('PROXY TCP4 1.2.3.4 5.6.7.8 0x10 2\r\n'), reason: 'bad-v1', at: 35 },
  { name: 'no CRLF within 107 bytes', bytes: longV1, reason: 'too-long', at: PROXY_V1_MAX_BYTES },
  {
    name: 'a 108-byte line (CRLF one byte too late)',
    bytes: ascii(`PROXY UNKNOWN ${'a'.repeat(92)}\r\n`),
    reason: 'too-long',
    at: PROXY_V1_MAX_BYTES,
  },
];

describe('ProxyHeaderReader: malformed headers', () => {
  for (const c of MALFORMED) {
    test(`${c.name}: ${c.reason}, thrown at byte ${c.at} whatever the chunking`, () => {
      const whole = read([c.bytes]);
      assert.equal(whole.reason, c.reason, 'whole');
      const one = read(bytewise(c.bytes));
      assert.deepEqual(
        { reason: one.reason, at: one.at },
        { reason: c.reason, at: c.at },
        'one byte at a time',
      );
      assert.ok(one.maxBuffered < c.at, `held ${one.maxBuffered} bytes`);
      for (let i = 0; i <= c.bytes.length; i++)
        assert.equal(read(cut(c.bytes, [i])).reason, c.reason, `split at ${i}`);
    });
  }

  test('the error is a LonglinkError with code ERR_PROXY_HEADER; the reader then throws it again', () => {
    const reader = new ProxyHeaderReader();
    let first: unknown;
    try {
      reader.push(ascii('GET /'));
    } catch (err) {
      first = err;
    }
    assert.ok(first instanceof ProxyHeaderError);
    assert.ok(first instanceof LonglinkError);
    assert.equal(first.code, 'ERR_PROXY_HEADER');
    assert.equal(first.reason, 'bad-signature');
    assert.match(first.message, /byte 0 is 0x47/);
    assert.throws(
      () => reader.push(VALID[0]!.wire),
      (err) => err === first,
    );
    assert.throws(
      () => reader.end(),
      (err) => err === first,
    );
  });

  test('end() inside a header: truncated (§2.2: partial headers are rejected); before any byte: nothing', () => {
    for (const c of VALID) {
      for (const n of [1, 5, 13, 16, c.wire.length - 1]) {
        if (n >= c.wire.length) continue;
        const reader = new ProxyHeaderReader();
        assert.equal(reader.push(c.wire.subarray(0, n)), undefined);
        assert.throws(
          () => reader.end(),
          (err) =>
            err instanceof ProxyHeaderError &&
            err.reason === 'truncated' &&
            err.message.includes(`${n} bytes`),
          `${c.name}, ended after ${n} bytes`,
        );
      }
    }
    new ProxyHeaderReader().end();
  });
});

describe('ProxyHeaderReader: limits', () => {
  test(`maxV2Bytes: default ${DEFAULT_MAX_V2_BYTES}; a header of exactly the cap is read, one byte more is refused at byte 16`, () => {
    const body = (total: number) =>
      Buffer.concat([Buffer.from(ipv4Body), tlv(PP2_TYPE.NOOP, Buffer.alloc(total - 31))]);
    for (const max of [undefined, 232, 300, 4096, 65551]) {
      const cap = max ?? DEFAULT_MAX_V2_BYTES;
      const fits = v2(0x21, 0x11, body(cap));
      assert.equal(fits.length, cap);
      const ok = read([fits], max === undefined ? {} : { maxV2Bytes: max });
      assert.equal(ok.header?.family, 'tcp4', `cap ${cap}`);
      if (cap === 65551) continue; // the u16 length cannot say more
      const over = v2(0x21, 0x11, body(cap + 1));
      const refused = read(bytewise(over), max === undefined ? {} : { maxV2Bytes: max });
      assert.deepEqual(
        { reason: refused.reason, at: refused.at },
        { reason: 'too-long', at: 16 },
        `cap ${cap}`,
      );
    }
  });

  test('maxV2Bytes must be an integer from 232 (16 + the UNIX address block) to 65551', () => {
    for (const bad of [
      0,
      231,
      65552,
      1024.5,
      Number.NaN,
      Number.POSITIVE_INFINITY,
      '1024' as unknown as number,
    ]) {
      assert.throws(() => new ProxyHeaderReader({ maxV2Bytes: bad }), InvalidArgumentError, String(bad));
    }
    assert.equal(new ProxyHeaderReader({ maxV2Bytes: 232 }).maxV2Bytes, 232);
    assert.equal(new ProxyHeaderReader().maxV2Bytes, 1024);
  });

  test('scratch memory: nothing when the header comes whole; at most the header (or 107 bytes for v1) when split', () => {
    for (const c of VALID) {
      const stream = Buffer.concat([c.wire, Buffer.alloc(1000)]);
      assert.deepEqual(read([stream]).allocated, [], c.name);
      const sizes = read(bytewise(c.wire)).allocated;
      const bound = c.header.version === 1 ? PROXY_V1_MAX_BYTES : c.wire.length;
      assert.ok(
        sizes.every((s) => s <= bound),
        `${c.name}: allocated ${sizes.join(', ')}`,
      );
    }
  });
});

describe('looksLikeProxyHeader', () => {
  test('true or false as soon as the bytes prove it, undefined before', () => {
    const cases: Array<[string | Buffer, boolean | undefined]> = [
      ['', undefined],
      ['P', undefined],
      ['PROX', undefined],
      ['PROXY', true],
      ['PROXY TCP4 ', true],
      ['PROXx', false],
      ['G', false],
      ['GET / HTTP/1.1', false],
      [Buffer.from('16030100', 'hex'), false],
      ['\r', undefined],
      ['\r\n\r\n', undefined],
      [SIG.subarray(0, 11), undefined],
      [SIG, true],
      [Buffer.concat([SIG, Buffer.from([0x21])]), true],
      ['\r\n\r\nX', false],
      ['\r\n', undefined],
      ['\n', false],
    ];
    for (const [input, want] of cases) {
      const b = typeof input === 'string' ? ascii(input) : input;
      assert.equal(looksLikeProxyHeader(b), want, JSON.stringify(b.toString('latin1')));
    }
  });

  test('agrees with the reader: false exactly when the reader refuses the signature', () => {
    fc.assert(
      fc.property(garbageArb, (bytes) => {
        const looks = looksLikeProxyHeader(bytes);
        const outcome = read([bytes]);
        if (looks === false) assert.equal(outcome.reason, 'bad-signature');
        else assert.notEqual(outcome.reason, 'bad-signature');
      }),
      { numRuns: NUM_RUNS },
    );
  });
});

describe('encoders', () => {
  const tcp4: ProxyHeaderFields = {
    command: 'proxy',
    family: 'tcp4',
    source: { address: '127.0.0.2', port: 1 },
    destination: { address: '127.0.0.1', port: 2 },
  };

  test('v2 LOCAL is the 16-byte fixed part with UNSPEC, whatever addresses are given (§2.2)', () => {
    assert.equal(
      encodeProxyV2({ ...tcp4, command: 'local' }).toString('hex'),
      `${SIG.toString('hex')}20000000`,
    );
  });

  test('IPv6 addresses are written in Node’s form (v1) and read back so (v2)', () => {
    const h: ProxyHeaderFields = {
      command: 'proxy',
      family: 'tcp6',
      source: { address: '0:0:0:0:0:FFFF:7F00:2', port: 1 },
      destination: { address: '2001:DB8:0:0:0:0:0:0', port: 2 },
    };
    assert.equal(encodeProxyV1(h).toString('latin1'), 'PROXY TCP6 ::ffff:127.0.0.2 2001:db8:: 1 2\r\n');
    const back = new ProxyHeaderReader().push(encodeProxyV2(h))!.header;
    assert.deepEqual([back.source?.address, back.destination?.address], ['::ffff:127.0.0.2', '2001:db8::']);
  });

  test('what a header cannot carry is refused with InvalidArgumentError', () => {
    const bad: Array<[string, () => unknown]> = [
      ['v1 LOCAL', () => encodeProxyV1({ ...tcp4, command: 'local' })],
      ['v1 UNIX', () => encodeProxyV1({ ...tcp4, family: 'unix' })],
      [
        'v1 without source',
        () => encodeProxyV1({ command: 'proxy', family: 'tcp4', destination: tcp4.destination! }),
      ],
      ['v1 IPv6 in TCP4', () => encodeProxyV1({ ...tcp4, source: { address: '::1', port: 1 } })],
      ['v1 port 65536', () => encodeProxyV1({ ...tcp4, source: { address: '1.2.3.4', port: 65536 } })],
      ['v1 port 1.5', () => encodeProxyV1({ ...tcp4, destination: { address: '1.2.3.4', port: 1.5 } })],
      ['v2 IPv4 in TCP6', () => encodeProxyV2({ ...tcp4, family: 'tcp6' })],
      [
        'v2 zone id',
        () => encodeProxyV2({ ...tcp4, family: 'tcp6', source: { address: 'fe80::1%lo', port: 1 } }),
      ],
      ['v2 unknown command', () => encodeProxyV2({ ...tcp4, command: 'relay' as 'proxy' })],
      ['v2 unknown family', () => encodeProxyV2({ ...tcp4, family: 'udp4' as 'tcp4' })],
      ['v2 TLV type 256', () => encodeProxyV2({ ...tcp4, tlvs: [{ type: 256, value: Buffer.alloc(0) }] })],
      [
        'v2 TLV of 65536 bytes',
        () => encodeProxyV2({ ...tcp4, tlvs: [{ type: 1, value: Buffer.alloc(65536) }] }),
      ],
      [
        'v2 body over 65535 bytes',
        () => encodeProxyV2({ ...tcp4, tlvs: [{ type: 1, value: Buffer.alloc(65535 - 3 - 11) }] }),
      ],
      [
        'v2 UNIX path over 108 bytes',
        () => encodeProxyV2({ ...tcp4, family: 'unix', source: { address: `/${'a'.repeat(108)}`, port: 0 } }),
      ],
    ];
    for (const [name, fn] of bad) assert.throws(fn, InvalidArgumentError, name);
    // The largest body the u16 length can carry is fine.
    assert.equal(
      encodeProxyV2({ ...tcp4, tlvs: [{ type: 1, value: Buffer.alloc(65535 - 3 - 12) }] }).length,
      65551,
    );
  });
});

// ---------------------------------------------------------------------------------------------
// Properties

const portArb = fc.integer({ min: 0, max: 65535 });
const ipv6Arb = fc.ipV6();
const unixPathArb = fc
  .string({ unit: 'grapheme', maxLength: 60 })
  .filter((s) => !s.includes('\0') && Buffer.byteLength(s) <= 108);
const tlvsArb = fc.array(
  fc.record({
    type: fc.integer({ min: 0, max: 255 }),
    value: fc.uint8Array({ maxLength: 40 }).map((a) => Buffer.from(a)),
  }),
  { maxLength: 5 },
);

const endpoints = <T>(address: fc.Arbitrary<T>) =>
  fc.record({
    source: fc.record({ address, port: portArb }),
    destination: fc.record({ address, port: portArb }),
  });

/** A header and the version to encode it with. */
const headerArb: fc.Arbitrary<{ version: 1 | 2; fields: ProxyHeaderFields }> = fc.oneof(
  fc.record({
    version: fc.constant(1 as const),
    fields: fc.oneof(
      endpoints(fc.ipV4()).map((e) => ({ command: 'proxy' as const, family: 'tcp4' as const, ...e })),
      endpoints(ipv6Arb).map((e) => ({ command: 'proxy' as const, family: 'tcp6' as const, ...e })),
      fc.constant({ command: 'proxy' as const, family: 'unknown' as const }),
    ),
  }),
  fc.record({
    version: fc.constant(2 as const),
    fields: fc
      .tuple(
        fc.oneof(
          endpoints(fc.ipV4()).map((e) => ({ command: 'proxy' as const, family: 'tcp4' as const, ...e })),
          endpoints(ipv6Arb).map((e) => ({ command: 'proxy' as const, family: 'tcp6' as const, ...e })),
          endpoints(unixPathArb).map((e) => ({
            command: 'proxy' as const,
            family: 'unix' as const,
            source: { address: e.source.address, port: 0 },
            destination: { address: e.destination.address, port: 0 },
          })),
          fc.constant({ command: 'proxy' as const, family: 'unknown' as const }),
          fc.constant({ command: 'local' as const, family: 'unknown' as const }),
        ),
        tlvsArb,
      )
      .map(([f, tlvs]): ProxyHeaderFields => ({ ...f, tlvs })),
  }),
);

/** What the reader returns for a header the encoder took: v2 LOCAL drops addresses, IPv6 in Node's form. */
function expected(version: 1 | 2, f: ProxyHeaderFields): ProxyHeader {
  const h: ProxyHeader = {
    version,
    command: f.command,
    family: f.command === 'local' ? 'unknown' : f.family,
  };
  const norm = (a: { address: string; port: number }) => ({
    address:
      f.family === 'tcp6' ? new net.SocketAddress({ address: a.address, family: 'ipv6' }).address : a.address,
    port: a.port,
  });
  if (h.family !== 'unknown') {
    h.source = norm(f.source!);
    h.destination = norm(f.destination!);
  }
  // fc.record builds null-prototype objects; the reader's are plain.
  if (version === 2) h.tlvs = (f.tlvs ?? []).map((t) => ({ type: t.type, value: t.value }));
  return h;
}

const cutsArb = fc.array(fc.nat(), { maxLength: 8 });
const offsets = (cuts: readonly number[], length: number) =>
  cuts.map((c) => c % (length + 1)).sort((a, b) => a - b);

/** Bytes biased toward what the reader looks for: the signatures, spaces, CR, LF, digits, dots, colons. */
const interestingByte = fc.oneof(
  fc.integer({ min: 0, max: 255 }),
  fc.constantFrom(...ascii('PROXY TCP46UNKNOW.:0129af\r\n'), ...SIG, 0x20, 0x21, 0x11, 0x00, 0xff),
);
const garbageArb = fc.oneof(
  fc.array(interestingByte, { maxLength: 300 }).map((a) => Buffer.from(a)),
  // A signature, then random bytes: reaches the length and TLV checks.
  fc
    .tuple(fc.constantFrom(ascii('PROXY '), SIG), fc.array(interestingByte, { maxLength: 300 }))
    .map(([head, tail]) => Buffer.concat([head, Buffer.from(tail)])),
  // A valid header with a few bytes overwritten.
  fc
    .tuple(headerArb, fc.array(fc.tuple(fc.nat(), interestingByte), { minLength: 1, maxLength: 4 }))
    .map(([{ version, fields }, flips]) => {
      const wire = Buffer.from(version === 1 ? encodeProxyV1(fields) : encodeProxyV2(fields));
      for (const [at, byte] of flips) wire[at % wire.length] = byte;
      return wire;
    }),
);

describe('property: round trip', () => {
  test('any header, encoded, followed by any bytes and cut anywhere, reads back as itself with the bytes intact', () => {
    fc.assert(
      fc.property(
        headerArb,
        fc.uint8Array({ maxLength: 64 }),
        cutsArb,
        ({ version, fields }, trailer, cuts) => {
          const wire = version === 1 ? encodeProxyV1(fields) : encodeProxyV2(fields);
          const stream = Buffer.concat([wire, trailer]);
          const got = read(cut(stream, offsets(cuts, stream.length)));
          assert.deepEqual(got.header, expected(version, fields));
          assert.equal(got.after, Buffer.from(trailer).toString('hex'));
          assert.equal(got.at, wire.length);
          assert.ok(got.maxBuffered < wire.length);
        },
      ),
      { numRuns: NUM_RUNS },
    );
  });
});

describe('property: garbage', () => {
  test('only ProxyHeaderErrors, the same outcome for any chunking, never more held than the cap', () => {
    const options = { maxV2Bytes: 300 };
    fc.assert(
      fc.property(garbageArb, cutsArb, (bytes, cuts) => {
        const outcomes = [
          read([bytes], options),
          read(cut(bytes, offsets(cuts, bytes.length)), options),
          read(bytewise(bytes), options),
        ];
        // The header and what follows it, or the reason: the same however the bytes were cut.
        const [whole, ...others] = outcomes.map((o) => ({
          header: o.header,
          after: o.after,
          reason: o.reason,
        }));
        for (const o of others) assert.deepEqual(o, whole);
        for (const o of outcomes) {
          assert.ok(o.maxBuffered < Math.max(PROXY_V1_MAX_BYTES, options.maxV2Bytes));
          assert.ok(
            o.allocated.every((s) => s <= options.maxV2Bytes),
            `allocated ${o.allocated.join(', ')}`,
          );
        }
      }),
      { numRuns: NUM_RUNS * 3 },
    );
  });
});
