// The decoder rules every codec shares, run against each of them.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  asciiFraming,
  DEFAULT_MAX_FRAME_LENGTH,
  delimiterFraming,
  type Framing,
  lengthFieldFraming,
  lineFraming,
  parseFraming,
  u8,
  u16le,
  u32be,
  u64be,
  varintFraming,
} from '../../src/codec/index.js';
import { FrameTooLargeError } from '../../src/errors.js';
import { allocations, assertEverySplit, cut, decodeChunks, encodeAll, hex } from './helpers.js';

const text = (n: number, seed: number) => {
  const buf = Buffer.alloc(n);
  for (let i = 0; i < n; i++) buf[i] = 0x61 + ((i + seed) % 26);
  return buf;
};

/** Every codec with options that round-trip payloads (no delimiter bytes in `text`). */
const codecs: Framing[] = [
  asciiFraming(),
  asciiFraming({ width: 8, pad: 'space', prefix: 'L=' }),
  asciiFraming({ width: 6, lengthIncludesHeader: true }),
  u8(),
  u16le(),
  u32be(),
  u64be(),
  lengthFieldFraming({ lengthFieldLength: 4, lengthIncludesLengthField: true }),
  varintFraming(),
  lineFraming(),
  delimiterFraming({ delimiter: '\r\n' }),
  delimiterFraming({ delimiter: Buffer.of(0xfe, 0xff, 0xfe) }),
];

for (const framing of codecs) {
  describe(`${framing.name}`, () => {
    test('default maxFrameLength is 16 MiB', () => {
      assert.equal(framing.maxFrameLength, DEFAULT_MAX_FRAME_LENGTH);
    });

    test('a multi-frame stream split at every offset, pair of offsets, one byte at a time', () => {
      const payloads = [text(3, 0), text(0, 0), text(17, 3), text(1, 5)];
      assertEverySplit(framing, encodeAll(framing, payloads), payloads);
    });

    test('many frames glued in one chunk are zero-copy views of it', () => {
      const payloads = Array.from({ length: 100 }, (_, i) => text(i % 9, i));
      const chunk = encodeAll(framing, payloads);
      const frames = framing.createDecoder().push(chunk);
      assert.deepEqual(hex(frames), hex(payloads));
      for (const frame of frames) assert.equal(frame.buffer, chunk.buffer, 'a view, not a copy');
    });

    test('a frame spanning chunks is one exactly sized copy', () => {
      const size = framing.name === 'u8' ? 200 : 5000;
      const payload = text(size, 1);
      const chunks = cut(encodeAll(framing, [payload]), [1, 40, 150, 4000]);
      const { result: frames, sizes } = allocations(() => decodeChunks(framing, chunks));
      assert.equal(frames.length, 1);
      assert.ok(frames[0]!.equals(payload));
      assert.equal(sizes.filter((s) => s === size).length, 1, `one allocation of ${size}: ${sizes}`);
      assert.ok(Math.max(...sizes) <= Math.max(size, 2048), `no bigger allocation: ${sizes}`);
      for (const chunk of chunks) chunk.fill(0);
      assert.ok(frames[0]!.equals(payload), 'a copy: overwriting the chunks leaves it intact');
      if (size > Buffer.poolSize >>> 1) assert.equal(frames[0]!.buffer.byteLength, size);
    });

    test('bufferedBytes counts the partial frame and returns to 0', () => {
      const wire = encodeAll(framing, [text(10, 0)]);
      const decoder = framing.createDecoder();
      assert.equal(decoder.bufferedBytes, 0);
      decoder.push(wire.subarray(0, wire.length - 1));
      assert.ok(decoder.bufferedBytes > 0 && decoder.bufferedBytes <= wire.length - 1);
      assert.equal(decoder.push(wire.subarray(wire.length - 1)).length, 1);
      assert.equal(decoder.bufferedBytes, 0);
      decoder.end();
    });

    test('after an error the decoder is poisoned, end() included', () => {
      const small = rebuild(framing, 4);
      const decoder = small.createDecoder();
      const wire = encodeAll(framing, [text(5, 0)]);
      let first: unknown;
      try {
        decoder.push(wire);
      } catch (err) {
        first = err;
      }
      assert.ok(first instanceof FrameTooLargeError, String(first));
      assert.throws(
        () => decoder.push(encodeAll(small, [text(1, 0)])),
        (err) => err === first,
      );
      assert.throws(
        () => decoder.end(),
        (err) => err === first,
      );
    });

    test('the encoder refuses payloads above maxFrameLength, and never copies the payload', () => {
      const small = rebuild(framing, 4);
      assert.throws(() => small.encoder.encode(text(5, 0)), FrameTooLargeError);
      const payload = text(4, 0);
      const parts = framing.encoder.encode(payload);
      assert.ok(parts.includes(payload));
      const overhead = parts.reduce((n, p) => n + p.length, 0) - payload.length;
      assert.equal(framing.encoder.overhead(4), overhead);
    });

    test('encodeParts frames the parts as one payload, passing them through uncopied', () => {
      const parts = [text(3, 0), text(0, 0), text(5, 7), text(1, 2)];
      const out = framing.encoder.encodeParts(parts);
      for (const part of parts) assert.ok(out.includes(part), 'each part is one of the chunks');
      const whole = Buffer.concat(parts);
      assert.deepEqual(hex([Buffer.concat(out)]), hex([Buffer.concat(framing.encoder.encode(whole))]));
      assert.deepEqual(hex(decodeChunks(framing, [Buffer.concat(out)])), hex([whole]));
      assert.throws(() => rebuild(framing, 8).encoder.encodeParts(parts), FrameTooLargeError);
      assert.equal(Buffer.concat(framing.encoder.encodeParts([])).length, framing.encoder.overhead(0));
    });

    test('decoders are independent', () => {
      const wire = encodeAll(framing, [text(6, 0)]);
      const a = framing.createDecoder();
      const b = framing.createDecoder();
      assert.deepEqual(a.push(wire.subarray(0, 3)), []);
      assert.equal(b.push(wire).length, 1);
      assert.equal(a.push(wire.subarray(3)).length, 1);
    });

    test('name is the canonical spec string: parseFraming(name) rebuilds the same framing', () => {
      const again = parseFraming(framing.name);
      assert.equal(again.name, framing.name);
      const payloads = [text(7, 2), text(0, 0)];
      assert.deepEqual(hex(decodeChunks(again, [encodeAll(framing, payloads)])), hex(payloads));
    });
  });
}

/** The same framing with another maxFrameLength, rebuilt from its name. */
function rebuild(framing: Framing, maxFrameLength: number): Framing {
  const rebuilt = parseFraming(framing.name, { maxFrameLength });
  assert.equal(rebuilt.name, framing.name);
  assert.equal(rebuilt.maxFrameLength, maxFrameLength);
  return rebuilt;
}

describe('writePrefix: the header written in place', () => {
  test('for every fixed-prefix framing, [prefix | payload] in one buffer equals encode()', async () => {
    const { parseFraming } = await import('../../src/codec/index.js');
    for (const spec of [
      'u8',
      'u16be',
      'u16le',
      'u24be',
      'u32be',
      'u32le',
      'u64be',
      'ascii:20',
      'ascii:8:space',
    ]) {
      const enc = parseFraming(spec).encoder;
      const n = enc.prefixLength;
      assert.equal(typeof n, 'number', spec);
      for (const len of [0, 1, 200]) {
        const payload = Buffer.alloc(len, 7);
        const one = Buffer.alloc((n as number) + len);
        enc.writePrefix?.(one, len);
        payload.copy(one, n as number);
        assert.deepEqual(one, Buffer.concat(enc.encode(payload)), `${spec} ${len}`);
      }
    }
    for (const spec of ['varint', 'line', 'crlf'])
      assert.equal(parseFraming(spec).encoder.prefixLength, undefined, spec);
  });
});
