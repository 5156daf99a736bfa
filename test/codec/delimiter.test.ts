import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { delimiterFraming, lineFraming } from '../../src/codec/index.js';
import { FrameTooLargeError, InvalidArgumentError, TruncatedFrameError } from '../../src/errors.js';
import { assertEverySplit, assertThrowsCode, decodeChunks, encodeAll, hex } from './helpers.js';

const b = (s: string) => Buffer.from(s, 'latin1');
const frames = (...s: string[]) => s.map(b);

describe('lineFraming', () => {
  test('LF and CRLF lines, empty lines, split everywhere', () => {
    const framing = lineFraming();
    assert.equal(framing.name, 'line');
    assertEverySplit(framing, b('PING\r\nPONG\n\n\r\nx\ry\r\n'), frames('PING', 'PONG', '', '', 'x\ry'));
  });

  test('only one "\\r" before "\\n" is stripped', () => {
    assert.deepEqual(hex(decodeChunks(lineFraming(), [b('a\r\r\n')])), hex(frames('a\r')));
  });

  test('the encoder appends "\\n" and refuses what the decoder would read differently', () => {
    const framing = lineFraming();
    const payload = b('hello');
    const parts = framing.encoder.encode(payload);
    assert.equal(parts[0], payload);
    assert.equal(parts[1]!.toString(), '\n');
    assert.equal(framing.encoder.overhead(5), 1);
    assertThrowsCode(() => framing.encoder.encode(b('a\nb')), InvalidArgumentError, 'ERR_INVALID_ARGUMENT');
    assertThrowsCode(() => framing.encoder.encode(b('a\r')), InvalidArgumentError, 'ERR_INVALID_ARGUMENT');
  });

  test('fails fast: maxFrameLength + 1 bytes without "\\n" throw at once', () => {
    const decoder = lineFraming({ maxFrameLength: 10 }).createDecoder();
    assert.deepEqual(decoder.push(b('0123456789')), []);
    const err = assertThrowsCode(() => decoder.push(b('x')), FrameTooLargeError, 'ERR_FRAME_TOO_LARGE');
    assert.equal(err.length, 11);
    assertThrowsCode(() => decoder.push(b('\n')), FrameTooLargeError, 'ERR_FRAME_TOO_LARGE');
  });

  test('a trailing "\\r" may be the line ending: max bytes + "\\r" waits for "\\n"', () => {
    const decoder = lineFraming({ maxFrameLength: 10 }).createDecoder();
    assert.deepEqual(decoder.push(b('0123456789\r')), []);
    assert.deepEqual(hex(decoder.push(b('\n'))), hex(frames('0123456789')));
    const second = lineFraming({ maxFrameLength: 10 }).createDecoder();
    assert.deepEqual(second.push(b('0123456789\r')), []);
    assertThrowsCode(() => second.push(b('x')), FrameTooLargeError, 'ERR_FRAME_TOO_LARGE');
  });

  test('fails fast inside one big chunk, and on a complete line that is too long', () => {
    const framing = lineFraming({ maxFrameLength: 4 });
    assertThrowsCode(
      () => framing.createDecoder().push(b('ok\nabcdefgh')),
      FrameTooLargeError,
      'ERR_FRAME_TOO_LARGE',
    );
    assertThrowsCode(
      () => framing.createDecoder().push(b('abcde\n')),
      FrameTooLargeError,
      'ERR_FRAME_TOO_LARGE',
    );
    assert.deepEqual(hex(framing.createDecoder().push(b('abcd\r\n'))), hex(frames('abcd')));
  });

  test('end() with an unterminated line', () => {
    const decoder = lineFraming().createDecoder();
    decoder.push(b('abc'));
    assert.equal(decoder.bufferedBytes, 3);
    assert.equal(
      assertThrowsCode(() => decoder.end(), TruncatedFrameError, 'ERR_FRAME_TRUNCATED').bufferedBytes,
      3,
    );
  });
});

describe('delimiterFraming', () => {
  test('CRLF: name crlf, the delimiter straddling chunks', () => {
    const framing = delimiterFraming({ delimiter: '\r\n' });
    assert.equal(framing.name, 'crlf');
    assertEverySplit(framing, b('a\r\n\r\nbc\rd\r\n\r\r\n'), frames('a', '', 'bc\rd', '\r'));
  });

  test('a long, self-overlapping delimiter split at every offset', () => {
    const framing = delimiterFraming({ delimiter: 'abab' });
    assert.equal(framing.name, `delimiter:${b('abab').toString('hex')}`);
    // 'xabababy' holds 'abab' at 1: the frame is 'x' and 'aby' follows.
    assertEverySplit(framing, b('xabababyababaaabababab'), frames('x', 'aby', 'aa', ''));
  });

  test('stripDelimiter: false keeps it on every frame', () => {
    const framing = delimiterFraming({ delimiter: Buffer.of(0), stripDelimiter: false });
    assert.equal(framing.name, 'delimiter:00:keep');
    assertEverySplit(framing, Buffer.of(1, 2, 0, 0, 3, 0), [
      Buffer.of(1, 2, 0),
      Buffer.of(0),
      Buffer.of(3, 0),
    ]);
  });

  test('the encoder refuses a payload containing the delimiter, or that would end early', () => {
    const framing = delimiterFraming({ delimiter: 'abab' });
    assertThrowsCode(() => framing.encoder.encode(b('xababy')), InvalidArgumentError, 'ERR_INVALID_ARGUMENT');
    // 'xab' + 'abab' = 'xababab' holds the delimiter at 1, which would cut the frame to 'x'.
    assertThrowsCode(() => framing.encoder.encode(b('xab')), InvalidArgumentError, 'ERR_INVALID_ARGUMENT');
    // 'xa' + 'abab' is fine: 'aaba' is no delimiter.
    assert.deepEqual(hex(decodeChunks(framing, [encodeAll(framing, [b('xa')])])), hex(frames('xa')));
    // CRLF does not overlap itself, so a payload may end in '\r'.
    const crlf = delimiterFraming({ delimiter: '\r\n' });
    assert.deepEqual(hex(decodeChunks(crlf, [encodeAll(crlf, [b('a\r')])])), hex(frames('a\r')));
  });

  test('fails fast with a multi-byte delimiter, allowing for a delimiter already begun', () => {
    const framing = delimiterFraming({ delimiter: '\r\n', maxFrameLength: 4 });
    const decoder = framing.createDecoder();
    assert.deepEqual(decoder.push(b('abcd\r')), [], 'could still be "abcd" + CRLF');
    assert.deepEqual(hex(decoder.push(b('\n'))), hex(frames('abcd')));
    const over = framing.createDecoder();
    assertThrowsCode(() => over.push(b('abcde')), FrameTooLargeError, 'ERR_FRAME_TOO_LARGE');
    const dribble = framing.createDecoder();
    for (const c of 'abcd') dribble.push(b(c));
    assertThrowsCode(() => dribble.push(b('\n')), FrameTooLargeError, 'ERR_FRAME_TOO_LARGE');
  });

  test('keep mode counts the delimiter in maxFrameLength, in both directions', () => {
    const framing = delimiterFraming({ delimiter: '\r\n', stripDelimiter: false, maxFrameLength: 4 });
    assert.deepEqual(hex(decodeChunks(framing, [b('ab\r\n')])), hex(frames('ab\r\n')));
    assertThrowsCode(() => framing.createDecoder().push(b('abc')), FrameTooLargeError, 'ERR_FRAME_TOO_LARGE');
    assertThrowsCode(() => framing.encoder.encode(b('abc')), FrameTooLargeError, 'ERR_FRAME_TOO_LARGE');
  });

  test('many small pieces of one long frame are assembled correctly', () => {
    const framing = delimiterFraming({ delimiter: '\r\n' });
    const line = Buffer.alloc(10_000);
    for (let i = 0; i < line.length; i++) line[i] = 0x41 + (i % 26);
    const stream = Buffer.concat([line, b('\r\n'), line, b('\r\n')]);
    // Pieces of 1..700 bytes: some go to the scratch, some stay views of their chunk.
    const chunks: Buffer[] = [];
    for (let at = 0, n = 1; at < stream.length; at += n, n = (n * 7) % 701 || 1) {
      chunks.push(Buffer.from(stream.subarray(at, at + n)));
    }
    assert.deepEqual(hex(decodeChunks(framing, chunks)), hex([line, line]));
  });

  test('encodeParts refuses a delimiter formed across part boundaries', () => {
    const crlf = delimiterFraming({ delimiter: '\r\n' });
    assertThrowsCode(
      () => crlf.encoder.encodeParts([b('a\r'), b('\nb')]),
      InvalidArgumentError,
      'ERR_INVALID_ARGUMENT',
    );
    assertThrowsCode(
      () => crlf.encoder.encodeParts([b('a\r'), b(''), b('\nb')]),
      InvalidArgumentError,
      'ERR_INVALID_ARGUMENT',
    );
    const abab = delimiterFraming({ delimiter: 'abab' });
    // Across three parts, one of them shorter than the delimiter.
    assertThrowsCode(
      () => abab.encoder.encodeParts([b('xa'), b('b'), b('a'), b('by')]),
      InvalidArgumentError,
      'ERR_INVALID_ARGUMENT',
    );
    // The payload's end 'ab' would start a delimiter with the appended 'abab'.
    assertThrowsCode(
      () => abab.encoder.encodeParts([b('x'), b('a'), b('b')]),
      InvalidArgumentError,
      'ERR_INVALID_ARGUMENT',
    );
    const ok = abab.encoder.encodeParts([b('xa'), b('b'), b('b')]);
    assert.deepEqual(hex(decodeChunks(abab, [Buffer.concat(ok)])), hex(frames('xabb')));
    const line = lineFraming();
    assertThrowsCode(
      () => line.encoder.encodeParts([b('a'), b('\r'), b('')]),
      InvalidArgumentError,
      'ERR_INVALID_ARGUMENT',
    );
    assertThrowsCode(
      () => line.encoder.encodeParts([b('a'), b('b\nc')]),
      InvalidArgumentError,
      'ERR_INVALID_ARGUMENT',
    );
    assert.deepEqual(
      hex(decodeChunks(line, [Buffer.concat(line.encoder.encodeParts([b('a\r'), b('b')]))])),
      hex(frames('a\rb')),
    );
  });

  test('invalid options', () => {
    const bad: unknown[] = [
      { delimiter: '' },
      { delimiter: 5 },
      { delimiter: Buffer.alloc(257) },
      { delimiter: '\n', stripDelimiter: 'no' },
      { delimiter: 'abc', stripDelimiter: false, maxFrameLength: 2 },
    ];
    for (const options of bad) {
      assertThrowsCode(
        () => delimiterFraming(options as Parameters<typeof delimiterFraming>[0]),
        InvalidArgumentError,
        'ERR_INVALID_ARGUMENT',
      );
    }
  });

  test("the delimiter is copied: changing the caller's buffer later changes nothing", () => {
    const delimiter = Buffer.from('\n');
    const framing = delimiterFraming({ delimiter });
    delimiter[0] = 0x41;
    assert.deepEqual(hex(decodeChunks(framing, [b('A\n')])), hex(frames('A')));
  });
});
