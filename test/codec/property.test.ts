// Property tests for every codec (fast-check): encoded frames survive any chunking, and garbage
// never throws anything but a FramingError, never hangs, never allocates past the limit, and is
// read the same whatever the chunking (up to the frames lost with a chunk that throws).

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import {
  asciiFraming,
  delimiterFraming,
  type Framing,
  lengthFieldFraming,
  lineFraming,
  u8,
  u16le,
  u24be,
  u32be,
  u32le,
  u64be,
  varintFraming,
} from '../../src/codec/index.js';
import { FramingError, InvalidArgumentError } from '../../src/errors.js';
import { allocations, cut, decodeChunks, hex } from './helpers.js';

/** Bounded so the suite stays fast; raise with FC_RUNS=5000 for a deeper run. */
const NUM_RUNS = Number(process.env.FC_RUNS ?? 200);

interface Case {
  /** Build the framing; `max` is its maxFrameLength when given. */
  make: (max?: number) => Framing;
  /** What the decoder emits for a payload (the payload itself unless the delimiter is kept). */
  emitted?: (payload: Buffer) => Buffer;
}

const lim = (max?: number) => (max === undefined ? {} : { maxFrameLength: max });

const roundTripCases: Case[] = [
  { make: (m) => asciiFraming(lim(m)) },
  { make: (m) => asciiFraming({ width: 7, pad: 'space', ...lim(m) }) },
  { make: (m) => asciiFraming({ width: 12, prefix: 'len:', lengthIncludesHeader: true, ...lim(m) }) },
  { make: (m) => u8(lim(m)) },
  { make: (m) => u16le(lim(m)) },
  { make: (m) => u24be(lim(m)) },
  { make: (m) => u32be(lim(m)) },
  { make: (m) => u32le(lim(m)) },
  { make: (m) => u64be(lim(m)) },
  { make: (m) => lengthFieldFraming({ lengthFieldLength: 2, lengthIncludesLengthField: true, ...lim(m) }) },
  { make: (m) => lengthFieldFraming({ lengthFieldLength: 3, lengthAdjustment: 2, ...lim(m) }) },
  {
    make: (m) =>
      lengthFieldFraming({ lengthFieldLength: 8, byteOrder: 'le', lengthAdjustment: -5, ...lim(m) }),
  },
  { make: (m) => varintFraming(lim(m)) },
  { make: (m) => lineFraming(lim(m)) },
  { make: (m) => delimiterFraming({ delimiter: '\r\n', ...lim(m) }) },
  { make: (m) => delimiterFraming({ delimiter: 'abab', ...lim(m) }) },
  {
    make: (m) => delimiterFraming({ delimiter: Buffer.of(0), stripDelimiter: false, ...lim(m) }),
    emitted: (p) => Buffer.concat([p, Buffer.of(0)]),
  },
];

/** Codecs only ever decoded (their encoder cannot produce them): garbage tests only. */
const decodeOnlyCases: Case[] = [
  {
    make: (m) =>
      lengthFieldFraming({
        lengthFieldOffset: 2,
        lengthFieldLength: 2,
        lengthAdjustment: -3,
        initialBytesToStrip: 1,
        ...lim(m),
      }),
  },
  { make: (m) => lengthFieldFraming({ lengthFieldLength: 1, initialBytesToStrip: 0, ...lim(m) }) },
  { make: (m) => lengthFieldFraming({ lengthFieldLength: 8, byteOrder: 'le', ...lim(m) }) },
];

/** Bytes biased toward what the codecs look for: digits, spaces, delimiters, varint high bits. */
const interestingByte = fc.oneof(
  fc.integer({ min: 0, max: 255 }),
  fc.constantFrom(0x00, 0x01, 0x02, 0x0a, 0x0d, 0x20, 0x30, 0x31, 0x39, 0x61, 0x62, 0x80, 0xff),
);
const payloadArb = fc.array(interestingByte, { maxLength: 300 }).map((a) => Buffer.from(a));
const cutsArb = fc.array(fc.nat(), { maxLength: 12 });

function offsets(cuts: readonly number[], length: number): number[] {
  return cuts.map((c) => c % (length + 1)).sort((a, b) => a - b);
}

/** Does the encoder take this payload? (Delimiter encoders refuse payloads holding the delimiter.) */
function encodes(framing: Framing, payload: Buffer): boolean {
  try {
    framing.encoder.encode(payload);
    return true;
  } catch (err) {
    if (err instanceof InvalidArgumentError) return false;
    throw err;
  }
}

interface Outcome {
  frames: string[];
  code: string | null;
}

/** Push the chunks and end(); any throw must be a FramingError, and stops the run. */
function run(framing: Framing, chunks: readonly Buffer[]): Outcome {
  const decoder = framing.createDecoder();
  const frames: Buffer[] = [];
  try {
    for (const chunk of chunks) frames.push(...decoder.push(chunk));
    decoder.end();
    return { frames: hex(frames), code: null };
  } catch (err) {
    assert.ok(err instanceof FramingError, `not a FramingError: ${String(err)}`);
    return { frames: hex(frames), code: err.code };
  }
}

for (const c of roundTripCases) {
  const name = c.make().name;
  describe(`property: ${name}`, () => {
    test('random frames, encoded, cut at random points, decode to themselves', () => {
      const framing = c.make();
      const emitted = c.emitted ?? ((p: Buffer) => p);
      fc.assert(
        fc.property(fc.array(payloadArb, { maxLength: 20 }), cutsArb, (raw, cuts) => {
          const payloads = raw.filter((p) => encodes(framing, p));
          const wire = Buffer.concat(payloads.flatMap((p) => framing.encoder.encode(p)));
          const frames = decodeChunks(framing, cut(wire, offsets(cuts, wire.length)));
          assert.deepEqual(hex(frames), hex(payloads.map(emitted)));
        }),
        { numRuns: NUM_RUNS },
      );
    });

    test('encodeParts(parts) is encode(concat(parts)): same bytes, or the same refusal', () => {
      const framing = c.make(400);
      fc.assert(
        fc.property(
          fc.array(
            payloadArb.map((p) => p.subarray(0, 60)),
            { maxLength: 8 },
          ),
          (parts) => {
            const outcome = (fn: () => Buffer[]) => {
              try {
                return Buffer.concat(fn()).toString('hex');
              } catch (err) {
                assert.ok(err instanceof FramingError || err instanceof InvalidArgumentError, String(err));
                return (err as { code: string }).code;
              }
            };
            const joined = Buffer.concat(parts);
            assert.equal(
              outcome(() => framing.encoder.encodeParts(parts)),
              outcome(() => framing.encoder.encode(joined)),
            );
          },
        ),
        { numRuns: NUM_RUNS },
      );
    });
  });
}

for (const c of [...roundTripCases, ...decodeOnlyCases]) {
  const name = c.make().name;
  describe(`property: ${name} on garbage`, () => {
    const MAX = 64;
    const framing = c.make(MAX);
    const valid = c.make();
    // Garbage of two kinds: random bytes, and a valid stream with a few bytes overwritten.
    const garbage = fc.oneof(
      fc.array(interestingByte, { maxLength: 400 }).map((a) => Buffer.from(a)),
      fc
        .tuple(
          fc.array(payloadArb, { maxLength: 6 }),
          fc.array(fc.tuple(fc.nat(), interestingByte), { maxLength: 4 }),
        )
        .map(([payloads, flips]) => {
          const wire = Buffer.concat(
            payloads.filter((p) => encodes(valid, p)).flatMap((p) => tryEncode(valid, p)),
          );
          for (const [at, byte] of flips) if (wire.length > 0) wire[at % wire.length] = byte;
          return wire;
        }),
    );

    test('only FramingErrors, the same outcome for any chunking, no allocation past the limit', () => {
      fc.assert(
        fc.property(garbage, cutsArb, (bytes, cuts) => {
          const chunks = cut(bytes, offsets(cuts, bytes.length));
          const bytewise = cut(
            bytes,
            Array.from({ length: Math.max(0, bytes.length - 1) }, (_, i) => i + 1),
          );
          const outcomes: Outcome[] = [];
          const { sizes } = allocations(() => {
            for (const c of [bytewise, [bytes], chunks]) outcomes.push(run(framing, c));
          });
          const largest = Math.max(0, ...sizes);
          // Fed one byte at a time the decoder emits every frame before the bad bytes; a push that
          // throws returns nothing, so bigger chunks may lose the frames that shared the bad chunk.
          const [reference, ...others] = outcomes as [Outcome, ...Outcome[]];
          for (const other of others) {
            assert.equal(other.code, reference.code);
            assert.deepEqual(other.frames, reference.frames.slice(0, other.frames.length));
            if (reference.code === null) assert.equal(other.frames.length, reference.frames.length);
          }
          // Frames are at most MAX; scratch space for headers and delimiters is a few bytes more.
          assert.ok(largest <= MAX + 64, `allocated ${largest} bytes`);
        }),
        { numRuns: NUM_RUNS },
      );
    });
  });
}

/** Encode for the garbage generator; an encoder that cannot encode (offset > 0) gives nothing. */
function tryEncode(framing: Framing, payload: Buffer): Buffer[] {
  try {
    return framing.encoder.encode(payload).map((b) => Buffer.from(b));
  } catch {
    return [];
  }
}
