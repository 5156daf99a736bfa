import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { varintFraming } from '../../src/codec/index.js';
import {
  BadFrameHeaderError,
  FrameTooLargeError,
  InvalidArgumentError,
  TruncatedFrameError,
} from '../../src/errors.js';
import { assertEverySplit, assertThrowsCode, decodeChunks, encodeAll, HELLO } from './helpers.js';

describe('varintFraming', () => {
  test('protobuf varint lengths: 1, 2 and 3 bytes', () => {
    const framing = varintFraming();
    assert.equal(framing.name, 'varint');
    const cases: [number, number[]][] = [
      [0, [0x00]],
      [1, [0x01]],
      [127, [0x7f]],
      [128, [0x80, 0x01]],
      [300, [0xac, 0x02]],
      [16_383, [0xff, 0x7f]],
      [16_384, [0x80, 0x80, 0x01]],
    ];
    for (const [length, header] of cases) {
      const parts = framing.encoder.encode(Buffer.alloc(length));
      assert.deepEqual([...parts[0]!], header, `length ${length}`);
      assert.equal(framing.encoder.overhead(length), header.length);
    }
    assert.equal(framing.encoder.overhead(2 ** 53 - 1), 8);
  });

  test('split everywhere, including inside a two-byte varint', () => {
    const framing = varintFraming();
    const big = Buffer.alloc(200, 0x61);
    const payloads = [HELLO, Buffer.alloc(0), big, Buffer.from('z')];
    assertEverySplit(framing, encodeAll(framing, payloads), payloads);
  });

  test('non-minimal encodings are accepted (0x80 0x00 is 0)', () => {
    const frames = decodeChunks(varintFraming(), [Buffer.of(0x80, 0x00, 0x82, 0x00, 0x61, 0x62)]);
    assert.deepEqual(
      frames.map((f) => f.toString()),
      ['', 'ab'],
    );
  });

  test('a ninth varint byte is a bad header, detected without waiting for more', () => {
    const decoder = varintFraming().createDecoder();
    assert.deepEqual(decoder.push(Buffer.alloc(7, 0xff)), []);
    assertThrowsCode(() => decoder.push(Buffer.of(0xff)), BadFrameHeaderError, 'ERR_BAD_FRAME_HEADER');
    assertThrowsCode(() => decoder.push(Buffer.of(0x00)), BadFrameHeaderError, 'ERR_BAD_FRAME_HEADER');
  });

  test('8-byte varints above maxFrameLength are too large, not bad', () => {
    const header = Buffer.of(0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f); // 2^56 - 1
    assertThrowsCode(
      () => decodeChunks(varintFraming(), [header]),
      FrameTooLargeError,
      'ERR_FRAME_TOO_LARGE',
    );
  });

  test('too large on the header; exactly max passes', () => {
    const framing = varintFraming({ maxFrameLength: 300 });
    assert.equal(decodeChunks(framing, [encodeAll(framing, [Buffer.alloc(300)])]).length, 1);
    const decoder = framing.createDecoder();
    const err = assertThrowsCode(
      () => decoder.push(Buffer.of(0xad, 0x02)),
      FrameTooLargeError,
      'ERR_FRAME_TOO_LARGE',
    );
    assert.equal(err.length, 301);
    assertThrowsCode(
      () => framing.encoder.encode(Buffer.alloc(301)),
      FrameTooLargeError,
      'ERR_FRAME_TOO_LARGE',
    );
  });

  test('end() inside a varint or a body', () => {
    const decoder = varintFraming().createDecoder();
    decoder.push(Buffer.of(0x80));
    assert.equal(
      assertThrowsCode(() => decoder.end(), TruncatedFrameError, 'ERR_FRAME_TRUNCATED').bufferedBytes,
      1,
    );
    const body = varintFraming().createDecoder();
    body.push(Buffer.of(0x03, 0x61));
    assert.equal(
      assertThrowsCode(() => body.end(), TruncatedFrameError, 'ERR_FRAME_TRUNCATED').bufferedBytes,
      2,
    );
  });

  test('invalid options', () => {
    for (const options of [{ maxFrameLength: 0 }, { maxFrameLength: 1.5 }, { maxFrameLength: '10' }]) {
      assertThrowsCode(
        () => varintFraming(options as Parameters<typeof varintFraming>[0]),
        InvalidArgumentError,
        'ERR_INVALID_ARGUMENT',
      );
    }
  });
});
