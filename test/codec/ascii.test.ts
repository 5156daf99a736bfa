import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { asciiFraming } from '../../src/codec/index.js';
import {
  BadFrameHeaderError,
  FrameTooLargeError,
  FramingError,
  InvalidArgumentError,
  TruncatedFrameError,
} from '../../src/errors.js';
import { assertEverySplit, assertThrowsCode, decodeChunks, encodeAll, HELLO, hex } from './helpers.js';

const ascii = (s: string) => Buffer.from(s, 'latin1');

describe('asciiFraming', () => {
  test("the sources' header: 20 characters, zero-padded, body length only", () => {
    const framing = asciiFraming();
    assert.equal(framing.name, 'ascii:20');
    const body = Buffer.from('{"cmd":"ping"}');
    const [header, payload] = framing.encoder.encode(body);
    assert.equal(header!.toString('latin1'), '00000000000000000014');
    assert.equal(payload, body);
    assert.equal(framing.encoder.overhead(14), 20);
    const wire = ascii(`00000000000000000014{"cmd":"ping"}00000000000000000000`);
    assertEverySplit(framing, Buffer.concat([wire, ascii('00000000000000000002hi')]), [
      body,
      Buffer.alloc(0),
      Buffer.from('hi'),
    ]);
  });

  test('space padding: right-aligned, leading zeros also accepted, a lone 0 for empty', () => {
    const framing = asciiFraming({ width: 6, pad: 'space' });
    assert.equal(framing.name, 'ascii:6:space');
    assert.equal(framing.encoder.encode(HELLO)[0]!.toString('latin1'), '    12');
    assert.equal(framing.encoder.encode(Buffer.alloc(0))[0]!.toString('latin1'), '     0');
    const stream = ascii('    12HELLO, WORLD000002hi     0 00003abc');
    assertEverySplit(framing, stream, [HELLO, Buffer.from('hi'), Buffer.alloc(0), Buffer.from('abc')]);
  });

  test('space padding refuses what it cannot read without guessing', () => {
    const framing = asciiFraming({ width: 4, pad: 'space' });
    for (const header of ['    ', '12  ', ' 1 2', '  -1', '  +1', '\t 12', ' 0x1']) {
      assertThrowsCode(
        () => decodeChunks(framing, [ascii(`${header}abcdefghijklmnopqrstuvwxyz`)]),
        BadFrameHeaderError,
        'ERR_BAD_FRAME_HEADER',
      );
    }
  });

  test('zero padding refuses spaces and every non-digit', () => {
    const framing = asciiFraming({ width: 4 });
    for (const header of ['  12', '12  ', '00a1', '-001', '+001', '0x01', '\u00b9000']) {
      const err = assertThrowsCode(
        () => decodeChunks(framing, [ascii(`${header}abcdefghijklmnopqrstuvwxyz`)]),
        BadFrameHeaderError,
        'ERR_BAD_FRAME_HEADER',
      );
      assert.ok(err instanceof FramingError);
    }
  });

  test('prefix: the article\'s "length:" header counts toward the width', () => {
    const framing = asciiFraming({ prefix: 'length:' });
    assert.equal(framing.name, `ascii:20:prefix=${Buffer.from('length:').toString('hex')}`);
    const [header] = framing.encoder.encode(HELLO);
    assert.equal(header!.toString('latin1'), 'length:0000000000012');
    assertEverySplit(framing, encodeAll(framing, [HELLO, Buffer.alloc(0)]), [HELLO, Buffer.alloc(0)]);
    assertThrowsCode(
      () => decodeChunks(framing, [ascii('Length:0000000000012HELLO, WORLD')]),
      BadFrameHeaderError,
      'ERR_BAD_FRAME_HEADER',
    );
    // The header is checked as soon as its 20 bytes are in, never later, whatever the body.
    const decoder = framing.createDecoder();
    assert.deepEqual(decoder.push(ascii('lengthX000000000001')), []);
    assertThrowsCode(() => decoder.push(ascii('2')), BadFrameHeaderError, 'ERR_BAD_FRAME_HEADER');
  });

  test('lengthIncludesHeader: the number counts the header too', () => {
    const framing = asciiFraming({ width: 4, lengthIncludesHeader: true });
    assert.equal(framing.name, 'ascii:4:incl');
    assert.equal(framing.encoder.encode(HELLO)[0]!.toString('latin1'), '0016');
    assertEverySplit(framing, ascii('0016HELLO, WORLD00040006ab'), [
      HELLO,
      Buffer.alloc(0),
      Buffer.from('ab'),
    ]);
    assertThrowsCode(
      () => decodeChunks(framing, [ascii('0003')]),
      BadFrameHeaderError,
      'ERR_BAD_FRAME_HEADER',
    );
  });

  test('too large: fails on the header, before the body; exactly max passes', () => {
    const framing = asciiFraming({ maxFrameLength: 12 });
    assert.equal(decodeChunks(framing, [ascii('00000000000000000012HELLO, WORLD')]).length, 1);
    const decoder = framing.createDecoder();
    const err = assertThrowsCode(
      () => decoder.push(ascii('99999999999999999999')),
      FrameTooLargeError,
      'ERR_FRAME_TOO_LARGE',
    );
    assert.ok(err.length > 1e19);
    // Poisoned: the next push throws the same error.
    assert.equal(
      assertThrowsCode(() => decoder.push(ascii('x')), FrameTooLargeError, 'ERR_FRAME_TOO_LARGE'),
      err,
    );
  });

  test('the encoder refuses lengths the width cannot spell, and payloads above max', () => {
    const framing = asciiFraming({ width: 2 });
    assert.equal(framing.encoder.encode(Buffer.alloc(99))[0]!.toString('latin1'), '99');
    assertThrowsCode(
      () => framing.encoder.encode(Buffer.alloc(100)),
      FrameTooLargeError,
      'ERR_FRAME_TOO_LARGE',
    );
    const incl = asciiFraming({ width: 2, lengthIncludesHeader: true });
    assertThrowsCode(() => incl.encoder.encode(Buffer.alloc(98)), FrameTooLargeError, 'ERR_FRAME_TOO_LARGE');
    assertThrowsCode(
      () => asciiFraming({ maxFrameLength: 3 }).encoder.encode(Buffer.alloc(4)),
      FrameTooLargeError,
      'ERR_FRAME_TOO_LARGE',
    );
  });

  test('end() inside the header or the body', () => {
    const decoder = asciiFraming().createDecoder();
    decoder.push(ascii('0000000000'));
    assert.equal(decoder.bufferedBytes, 10);
    const err = assertThrowsCode(() => decoder.end(), TruncatedFrameError, 'ERR_FRAME_TRUNCATED');
    assert.equal(err.bufferedBytes, 10);
    const body = asciiFraming().createDecoder();
    assert.deepEqual(hex(body.push(ascii('00000000000000000005abc'))), []);
    assert.equal(body.bufferedBytes, 23);
    assertThrowsCode(() => body.end(), TruncatedFrameError, 'ERR_FRAME_TRUNCATED');
  });

  test('invalid options', () => {
    const bad: unknown[] = [
      { width: 0 },
      { width: 65 },
      { width: 2.5 },
      { pad: 'tab' },
      { prefix: 'abc', width: 3 },
      { prefix: 'é' },
      { prefix: 5 },
      { lengthIncludesHeader: 1 },
      { width: 12, prefix: 'abcdefghijk', lengthIncludesHeader: true },
      { maxFrameLength: -1 },
    ];
    for (const options of bad) {
      assertThrowsCode(
        () => asciiFraming(options as Parameters<typeof asciiFraming>[0]),
        InvalidArgumentError,
        'ERR_INVALID_ARGUMENT',
      );
    }
  });
});
