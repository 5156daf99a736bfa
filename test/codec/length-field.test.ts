import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { lengthFieldFraming, u8, u16be, u16le, u24be, u32be, u32le, u64be } from '../../src/codec/index.js';
import {
  BadFrameHeaderError,
  FrameTooLargeError,
  FramingError,
  InvalidArgumentError,
  TruncatedFrameError,
} from '../../src/errors.js';
import { assertEverySplit, assertThrowsCode, decodeChunks, encodeAll, HELLO, hex } from './helpers.js';

const bytes = (...parts: (string | number[])[]): Buffer =>
  Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p) : Buffer.from(p))));

// Each test below is one example of Netty's LengthFieldBasedFrameDecoder javadoc, with the
// options as given there (initialBytesToStrip always explicit: our default differs from Netty's).
describe('Netty LengthFieldBasedFrameDecoder javadoc examples', () => {
  test('2 bytes length field at offset 0, do not strip header', () => {
    const framing = lengthFieldFraming({ lengthFieldLength: 2, initialBytesToStrip: 0 });
    const wire = bytes([0x00, 0x0c], 'HELLO, WORLD');
    assert.equal(wire.length, 14);
    assertEverySplit(framing, Buffer.concat([wire, wire]), [wire, wire]);
  });

  test('2 bytes length field at offset 0, strip header', () => {
    const framing = lengthFieldFraming({ lengthFieldLength: 2, initialBytesToStrip: 2 });
    const wire = bytes([0x00, 0x0c], 'HELLO, WORLD');
    assertEverySplit(framing, Buffer.concat([wire, wire]), [HELLO, HELLO]);
  });

  test('2 bytes length field at offset 0, do not strip header, length counts the whole message', () => {
    const framing = lengthFieldFraming({
      lengthFieldLength: 2,
      lengthAdjustment: -2,
      initialBytesToStrip: 0,
    });
    const wire = bytes([0x00, 0x0e], 'HELLO, WORLD');
    assertEverySplit(framing, Buffer.concat([wire, wire]), [wire, wire]);
  });

  test('3 bytes length field at the end of 5 bytes header, do not strip header', () => {
    const framing = lengthFieldFraming({
      lengthFieldOffset: 2,
      lengthFieldLength: 3,
      lengthAdjustment: 0,
      initialBytesToStrip: 0,
    });
    const wire = bytes([0xca, 0xfe], [0x00, 0x00, 0x0c], 'HELLO, WORLD');
    assert.equal(wire.length, 17);
    assertEverySplit(framing, Buffer.concat([wire, wire]), [wire, wire]);
  });

  test('3 bytes length field at the beginning of 5 bytes header, do not strip header', () => {
    const framing = lengthFieldFraming({
      lengthFieldOffset: 0,
      lengthFieldLength: 3,
      lengthAdjustment: 2,
      initialBytesToStrip: 0,
    });
    const wire = bytes([0x00, 0x00, 0x0c], [0xca, 0xfe], 'HELLO, WORLD');
    assertEverySplit(framing, Buffer.concat([wire, wire]), [wire, wire]);
  });

  test('2 bytes length field at offset 1 in the middle of 4 bytes header, strip HDR1 and length', () => {
    const framing = lengthFieldFraming({
      lengthFieldOffset: 1,
      lengthFieldLength: 2,
      lengthAdjustment: 1,
      initialBytesToStrip: 3,
    });
    const wire = bytes([0xca], [0x00, 0x0c], [0xfe], 'HELLO, WORLD');
    assert.equal(wire.length, 16);
    const frame = bytes([0xfe], 'HELLO, WORLD');
    assert.equal(frame.length, 13);
    assertEverySplit(framing, Buffer.concat([wire, wire]), [frame, frame]);
  });

  test('2 bytes length field at offset 1, strip HDR1 and length, length counts the whole message', () => {
    const framing = lengthFieldFraming({
      lengthFieldOffset: 1,
      lengthFieldLength: 2,
      lengthAdjustment: -3,
      initialBytesToStrip: 3,
    });
    const wire = bytes([0xca], [0x00, 0x10], [0xfe], 'HELLO, WORLD');
    const frame = bytes([0xfe], 'HELLO, WORLD');
    assertEverySplit(framing, Buffer.concat([wire, wire]), [frame, frame]);
  });
});

describe('Netty LengthFieldPrepender equivalents', () => {
  test('2-byte length, lengthIncludesLengthField: value counts the field (LengthFieldPrepender(2, true))', () => {
    const framing = lengthFieldFraming({ lengthFieldLength: 2, lengthIncludesLengthField: true });
    const [header, payload] = framing.encoder.encode(HELLO);
    assert.deepEqual([...header!], [0x00, 0x0e]);
    assert.equal(payload, HELLO, 'the payload is passed through, not copied');
    assert.equal(framing.name, 'u16be:adj=-2');
    assertEverySplit(framing, encodeAll(framing, [HELLO, HELLO]), [HELLO, HELLO]);
  });

  test('positive lengthAdjustment: the payload starts with the fixed bytes after the field', () => {
    const framing = lengthFieldFraming({ lengthFieldLength: 3, lengthAdjustment: 2 });
    const payload = bytes([0xca, 0xfe], 'HELLO, WORLD');
    const [header] = framing.encoder.encode(payload);
    assert.deepEqual([...header!], [0x00, 0x00, 0x0c]);
    assertThrowsCode(
      () => framing.encoder.encode(Buffer.of(1)),
      InvalidArgumentError,
      'ERR_INVALID_ARGUMENT',
    );
  });

  test('an encoder with lengthFieldOffset > 0 refuses to encode', () => {
    const framing = lengthFieldFraming({ lengthFieldOffset: 1, lengthFieldLength: 2 });
    assertThrowsCode(() => framing.encoder.encode(HELLO), InvalidArgumentError, 'ERR_INVALID_ARGUMENT');
    assertThrowsCode(() => framing.encoder.overhead(5), InvalidArgumentError, 'ERR_INVALID_ARGUMENT');
    // The decoder still works.
    assert.deepEqual(hex(decodeChunks(framing, [bytes([9, 0, 1], 'x')])), hex([Buffer.from('x')]));
  });
});

describe('presets', () => {
  const cases = [
    { framing: u8(), header: [0x0c], name: 'u8' },
    { framing: u16be(), header: [0x00, 0x0c], name: 'u16be' },
    { framing: u16le(), header: [0x0c, 0x00], name: 'u16le' },
    { framing: u24be(), header: [0x00, 0x00, 0x0c], name: 'u24be' },
    { framing: u32be(), header: [0x00, 0x00, 0x00, 0x0c], name: 'u32be' },
    { framing: u32le(), header: [0x0c, 0x00, 0x00, 0x00], name: 'u32le' },
    { framing: u64be(), header: [0, 0, 0, 0, 0, 0, 0, 0x0c], name: 'u64be' },
  ];
  for (const { framing, header, name } of cases) {
    test(`${name}: header bytes, name, overhead, split everywhere`, () => {
      assert.equal(framing.name, name);
      const parts = framing.encoder.encode(HELLO);
      assert.equal(parts.length, 2);
      assert.deepEqual([...parts[0]!], header);
      assert.equal(parts[1], HELLO);
      assert.equal(framing.encoder.overhead(12), header.length);
      const empty = Buffer.alloc(0);
      const stream = encodeAll(framing, [HELLO, empty, Buffer.from('x'), empty]);
      assertEverySplit(framing, stream, [HELLO, empty, Buffer.from('x'), empty]);
    });
  }

  test('u24le and u64le decode little-endian', () => {
    const u24le = lengthFieldFraming({ lengthFieldLength: 3, byteOrder: 'le' });
    assert.equal(u24le.name, 'u24le');
    assert.deepEqual(hex(decodeChunks(u24le, [bytes([2, 0, 0], 'ab')])), hex([Buffer.from('ab')]));
    const u64le = lengthFieldFraming({ lengthFieldLength: 8, byteOrder: 'le' });
    assert.deepEqual(
      hex(decodeChunks(u64le, [bytes([2, 0, 0, 0, 0, 0, 0, 0], 'ab')])),
      hex([Buffer.from('ab')]),
    );
    assert.deepEqual([...u64le.encoder.encode(Buffer.alloc(0x0102))[0]!], [2, 1, 0, 0, 0, 0, 0, 0]);
  });

  test('u32be reads lengths with the top bit set as unsigned', () => {
    const decoder = u32be({ maxFrameLength: 1000 }).createDecoder();
    const err = assertThrowsCode(
      () => decoder.push(Buffer.of(0xff, 0xff, 0xff, 0xff, 1, 2)),
      FrameTooLargeError,
      'ERR_FRAME_TOO_LARGE',
    );
    assert.equal(err.length, 0xffffffff);
  });

  test('u32le and u16le round-trip lengths above 255', () => {
    for (const framing of [u16le(), u32le(), u24be(), u64be()]) {
      const payload = Buffer.alloc(40_000, 7);
      assert.deepEqual(hex(decodeChunks(framing, [encodeAll(framing, [payload])])), hex([payload]));
    }
  });
});

describe('errors', () => {
  test('a length above maxFrameLength fails as soon as the header is read', () => {
    const decoder = u32be({ maxFrameLength: 1024 }).createDecoder();
    const err = assertThrowsCode(
      () => decoder.push(Buffer.of(0, 0, 4, 1)),
      FrameTooLargeError,
      'ERR_FRAME_TOO_LARGE',
    );
    assert.ok(err instanceof FramingError);
    assert.equal(err.length, 1025);
    assert.equal(err.maxFrameLength, 1024);
  });

  test('a header split over chunks still fails before any body byte', () => {
    const decoder = u32be({ maxFrameLength: 1024 }).createDecoder();
    assert.deepEqual(decoder.push(Buffer.of(0x7f, 0xff)), []);
    assertThrowsCode(() => decoder.push(Buffer.of(0xff, 0xff)), FrameTooLargeError, 'ERR_FRAME_TOO_LARGE');
  });

  test('maxFrameLength bounds the emitted bytes: exactly max passes, max + 1 fails', () => {
    const framing = u16be({ maxFrameLength: 5 });
    assert.equal(decodeChunks(framing, [bytes([0, 5], 'abcde')]).length, 1);
    assertThrowsCode(() => decodeChunks(framing, [bytes([0, 6])]), FrameTooLargeError, 'ERR_FRAME_TOO_LARGE');
    // Keeping the header counts it: 2 + 4 > 5.
    const keep = lengthFieldFraming({ lengthFieldLength: 2, initialBytesToStrip: 0, maxFrameLength: 5 });
    assertThrowsCode(() => decodeChunks(keep, [bytes([0, 4])]), FrameTooLargeError, 'ERR_FRAME_TOO_LARGE');
  });

  test('u64 values above 2^53 - 1 are too large, never rounded', () => {
    const framing = u64be({ maxFrameLength: 2 ** 32 });
    assertThrowsCode(
      () => decodeChunks(framing, [Buffer.of(0x00, 0x20, 0, 0, 0, 0, 0, 0)]),
      FrameTooLargeError,
      'ERR_FRAME_TOO_LARGE',
    );
    assertThrowsCode(
      () => decodeChunks(framing, [Buffer.of(0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)]),
      FrameTooLargeError,
      'ERR_FRAME_TOO_LARGE',
    );
    // 2^53 - 1 itself is read exactly, and is too large for this max.
    const err = assertThrowsCode(
      () => decodeChunks(framing, [Buffer.of(0x00, 0x1f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)]),
      FrameTooLargeError,
      'ERR_FRAME_TOO_LARGE',
    );
    assert.equal(err.length, Number.MAX_SAFE_INTEGER);
  });

  test('a negative adjusted length is a bad header', () => {
    const framing = lengthFieldFraming({ lengthFieldLength: 2, lengthAdjustment: -2 });
    assertThrowsCode(
      () => decodeChunks(framing, [Buffer.of(0, 1)]),
      BadFrameHeaderError,
      'ERR_BAD_FRAME_HEADER',
    );
    assert.equal(decodeChunks(framing, [Buffer.of(0, 2)])[0]!.length, 0, 'exactly zero is legal');
  });

  test('a frame shorter than initialBytesToStrip is a bad header, found at the header', () => {
    const framing = lengthFieldFraming({ lengthFieldLength: 1, initialBytesToStrip: 4 });
    const decoder = framing.createDecoder();
    assertThrowsCode(() => decoder.push(Buffer.of(2)), BadFrameHeaderError, 'ERR_BAD_FRAME_HEADER');
  });

  test('initialBytesToStrip beyond the header skips body bytes too', () => {
    const framing = lengthFieldFraming({ lengthFieldLength: 1, initialBytesToStrip: 3 });
    assertEverySplit(framing, bytes([4], 'abcd', [2], 'xy'), [Buffer.from('cd'), Buffer.alloc(0)]);
  });

  test('the encoder refuses payloads above maxFrameLength or the field', () => {
    assertThrowsCode(() => u8().encoder.encode(Buffer.alloc(256)), FrameTooLargeError, 'ERR_FRAME_TOO_LARGE');
    assert.equal(u8().encoder.encode(Buffer.alloc(255))[0]![0], 255);
    assertThrowsCode(
      () => u32be({ maxFrameLength: 10 }).encoder.encode(Buffer.alloc(11)),
      FrameTooLargeError,
      'ERR_FRAME_TOO_LARGE',
    );
  });

  test('end() inside a frame is a TruncatedFrameError with the bytes held', () => {
    const decoder = u16be().createDecoder();
    decoder.push(Buffer.of(0, 10, 1, 2, 3));
    assert.equal(decoder.bufferedBytes, 5);
    const err = assertThrowsCode(() => decoder.end(), TruncatedFrameError, 'ERR_FRAME_TRUNCATED');
    assert.equal(err.bufferedBytes, 5);
    const headerOnly = u32be().createDecoder();
    headerOnly.push(Buffer.of(0, 0));
    assert.equal(
      assertThrowsCode(() => headerOnly.end(), TruncatedFrameError, 'ERR_FRAME_TRUNCATED').bufferedBytes,
      2,
    );
  });

  test('invalid options', () => {
    const bad: unknown[] = [
      { lengthFieldLength: 5 },
      { lengthFieldLength: 2, byteOrder: 'middle' },
      { lengthFieldLength: 2, lengthFieldOffset: -1 },
      { lengthFieldLength: 2, lengthAdjustment: 1.5 },
      { lengthFieldLength: 2, initialBytesToStrip: -1 },
      { lengthFieldLength: 2, maxFrameLength: 0 },
      { lengthFieldLength: 2, maxFrameLength: 2 ** 40 },
      // The bound is 2^32 on every Node version (Node 22+ would allow 2^53 − 1 byte Buffers).
      { lengthFieldLength: 2, maxFrameLength: 2 ** 32 + 1 },
      { lengthFieldLength: 2, lengthIncludesLengthField: 'yes' },
    ];
    for (const options of bad) {
      assertThrowsCode(
        () => lengthFieldFraming(options as Parameters<typeof lengthFieldFraming>[0]),
        InvalidArgumentError,
        'ERR_INVALID_ARGUMENT',
      );
    }
  });

  test('maxFrameLength may be as large as 2^32 − 1', () => {
    assert.equal(
      lengthFieldFraming({ lengthFieldLength: 4, maxFrameLength: 0xffff_ffff }).maxFrameLength,
      0xffff_ffff,
    );
  });

  test('canonical names', () => {
    assert.equal(lengthFieldFraming({ lengthFieldLength: 1, byteOrder: 'le' }).name, 'u8');
    assert.equal(
      lengthFieldFraming({
        lengthFieldOffset: 1,
        lengthFieldLength: 2,
        lengthAdjustment: 1,
        initialBytesToStrip: 3,
      }).name,
      'u16be:off=1:adj=1',
    );
    assert.equal(lengthFieldFraming({ lengthFieldLength: 2, initialBytesToStrip: 0 }).name, 'u16be:strip=0');
  });
});
