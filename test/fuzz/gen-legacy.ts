/**
 * Streams for legacy servers (a plain framing, one frame handler that echoes): valid sessions,
 * mutations of them and random bytes, for each framing the CLI knows, JSON frames or raw bytes.
 */

import fc from 'fast-check';
import { parseFraming } from '../../src/codec/parse.js';
import type { Framing } from '../../src/codec/types.js';
import { type EndMode, type Expect, type FuzzCase, printable } from './cases.js';
import { LEGACY_LIMITS, type LegacyFraming } from './model.js';
import { cutsArb, decodeAll } from './stream.js';

type Mutation =
  | { m: 'bitflip'; at: number; bit: number }
  | { m: 'truncate'; at: number }
  | { m: 'garbage'; at: number; bytes: Uint8Array; aligned: boolean }
  | { m: 'duplicate'; frame: number; gap: number }
  | { m: 'reorder'; a: number; b: number }
  | { m: 'length'; frame: number; delta: number }
  | { m: 'huge'; frame: number; size: number }
  | { m: 'not-json'; at: number }
  | { m: 'bad-header'; at: number };

const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ m: fc.constant('bitflip' as const), at: fc.nat(), bit: fc.nat(7) }) },
  { weight: 2, arbitrary: fc.record({ m: fc.constant('truncate' as const), at: fc.nat() }) },
  {
    weight: 2,
    arbitrary: fc.record({
      m: fc.constant('garbage' as const),
      at: fc.nat(),
      bytes: fc.uint8Array({ minLength: 1, maxLength: 64 }),
      aligned: fc.boolean(),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ m: fc.constant('duplicate' as const), frame: fc.nat(), gap: fc.nat(3) }),
  },
  { weight: 1, arbitrary: fc.record({ m: fc.constant('reorder' as const), a: fc.nat(), b: fc.nat() }) },
  {
    weight: 2,
    arbitrary: fc.record({
      m: fc.constant('length' as const),
      frame: fc.nat(),
      delta: fc.integer({ min: -9, max: 9 }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ m: fc.constant('huge' as const), frame: fc.nat(), size: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ m: fc.constant('not-json' as const), at: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ m: fc.constant('bad-header' as const), at: fc.nat() }) },
);

/** The delimiter bytes of a delimiter framing, or undefined for length-prefixed ones. */
function delimiterOf(spec: LegacyFraming): Buffer | undefined {
  if (spec === 'line') return Buffer.from('\n');
  if (spec.startsWith('delimiter:')) return Buffer.from(spec.slice('delimiter:'.length), 'hex');
  return undefined;
}

/** Makes a payload one the framing can carry: no delimiter byte, no line ending in "\r". */
function carriable(spec: LegacyFraming, payload: Buffer): Buffer {
  const delim = delimiterOf(spec);
  if (delim === undefined) return payload;
  const out = Buffer.from(payload);
  for (let i = 0; i < out.length; i++) {
    if (delim.includes(out[i] as number) || (spec === 'line' && out[i] === 0x0d)) out[i] = 0x21;
  }
  return out;
}

function encode(framing: Framing, payload: Buffer): Buffer {
  return Buffer.concat(framing.encoder.encode(payload));
}

/** A header announcing `size` bytes (over the limit), for length-prefixed framings. */
function hugeHeader(spec: LegacyFraming, size: number): Buffer | undefined {
  const over = LEGACY_LIMITS.maxFrameLength + 1;
  switch (spec) {
    case 'ascii:20':
      return Buffer.from(String(over + (size % 1e15)).padStart(20, '0'));
    case 'u32be': {
      const b = Buffer.alloc(4);
      b.writeUInt32BE(over + (size % (0xffff_ffff - over)), 0);
      return b;
    }
    case 'u16le': {
      const b = Buffer.alloc(2);
      b.writeUInt16LE(over + (size % (0xffff - over)), 0);
      return b;
    }
    case 'varint': {
      // LEB128 of a length in [over, 2^40).
      let n = over + (size % 2 ** 39);
      const bytes: number[] = [];
      while (n >= 0x80) {
        bytes.push((n % 0x80) | 0x80);
        n = Math.floor(n / 0x80);
      }
      bytes.push(n);
      return Buffer.from(bytes);
    }
    default:
      return undefined;
  }
}

/** The width of the length header of a length-prefixed framing (undefined: delimiters, varint). */
function headerWidth(spec: LegacyFraming): number | undefined {
  return spec === 'ascii:20' ? 20 : spec === 'u32be' ? 4 : spec === 'u16le' ? 2 : undefined;
}

function protocolError(code: string): Expect {
  return { reasons: ['protocol-error'], code };
}

/** One case in six: the client stops reading while it writes. */
const pauseArb = fc.constantFrom(false, false, false, false, false, true);

export function legacyCaseArb(spec: LegacyFraming, json: boolean): fc.Arbitrary<FuzzCase> {
  const framing = parseFraming(spec, { maxFrameLength: LEGACY_LIMITS.maxFrameLength });
  const payloadArb: fc.Arbitrary<Buffer> = json
    ? fc.oneof(
        { weight: 8, arbitrary: fc.jsonValue({ maxDepth: 3 }).map((v) => Buffer.from(JSON.stringify(v))) },
        {
          weight: 1,
          arbitrary: fc
            .nat(LEGACY_LIMITS.maxFrameLength - 2)
            .map((n) => Buffer.from(JSON.stringify('x'.repeat(n)))),
        },
      )
    : fc.oneof(
        { weight: 8, arbitrary: fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b)) },
        { weight: 1, arbitrary: fc.nat(LEGACY_LIMITS.maxFrameLength).map((n) => Buffer.alloc(n, 0x61)) },
      );
  // One valid session: the payloads, made carriable (a "|" in a JSON string becomes "!": still JSON).
  const sessionArb = fc.array(payloadArb, { maxLength: 30 }).map((ps) => ps.map((p) => carriable(spec, p)));
  const label = `${spec}${json ? '+json' : ''}`;
  const endArb = (w: Partial<Record<EndMode, number>>): fc.Arbitrary<EndMode> =>
    fc.oneof(
      ...(Object.entries(w) as Array<[EndMode, number]>).map(([e, weight]) => ({
        weight,
        arbitrary: fc.constant(e),
      })),
    );

  const valid = fc
    .tuple(sessionArb, endArb({ 'drain-fin': 5, fin: 3, reset: 1, stall: 1 }), pauseArb, cutsArb())
    .map(([payloads, endPref, pauseReads, cuts]) => {
      const frames = payloads.map((p) => encode(framing, p));
      // A stall at a frame boundary is the idle timeout's business: kept rare (it costs 0.6 s).
      const end: EndMode = endPref === 'stall' && payloads.length % 4 !== 0 ? 'drain-fin' : endPref;
      const expect: Expect =
        end === 'reset'
          ? { reasons: ['remote-reset', 'remote-fin', 'protocol-error'] }
          : end === 'stall'
            ? { reasons: ['idle-timeout'], answers: 'all' }
            : { reasons: ['remote-fin'], answers: 'all' };
      return printable({
        label: `legacy:${label}/valid/${end}`,
        stream: Buffer.concat(frames),
        cuts,
        end,
        expect,
        helloBytes: 0,
        pauseReads,
        requests: [],
        echoes: frames.length,
      });
    });

  const mutated = fc
    .tuple(
      sessionArb,
      fc.array(mutationArb, { minLength: 1, maxLength: 2 }),
      endArb({ fin: 10, reset: 1, stall: 1 }),
      pauseArb,
      cutsArb(),
    )
    .map(([payloads, mutations, endPref, pauseReads, cuts]) => {
      const frames = payloads.map((p) => encode(framing, p));
      let expect: Expect = {};
      let stream: Buffer = Buffer.concat(frames);
      let cutMidFrame = false;
      const starts = [0];
      for (const f of frames) starts.push((starts[starts.length - 1] as number) + f.length);
      for (const mu of mutations) {
        const len = stream.length;
        cutMidFrame = false;
        expect = {};
        switch (mu.m) {
          case 'bitflip':
            if (len > 0) {
              stream = Buffer.from(stream);
              const at = mu.at % len;
              stream[at] = (stream[at] as number) ^ (1 << mu.bit);
            }
            break;
          case 'truncate': {
            const at = mu.at % (len + 1);
            cutMidFrame = !starts.includes(at);
            stream = stream.subarray(0, at);
            break;
          }
          case 'garbage': {
            const at = mu.aligned
              ? Math.min(len, starts[mu.at % starts.length] as number)
              : mu.at % (len + 1);
            stream = Buffer.concat([stream.subarray(0, at), mu.bytes, stream.subarray(at)]);
            break;
          }
          case 'duplicate':
          case 'reorder': {
            if (frames.length === 0) break;
            const fs = frames.slice();
            if (mu.m === 'duplicate') {
              const i = mu.frame % fs.length;
              fs.splice(Math.min(fs.length, i + 1 + mu.gap), 0, fs[i] as Buffer);
            } else {
              const a = mu.a % fs.length;
              const b = mu.b % fs.length;
              [fs[a], fs[b]] = [fs[b] as Buffer, fs[a] as Buffer];
            }
            stream = Buffer.concat(fs);
            break;
          }
          case 'length': {
            // A length-prefixed header off by a little; a delimiter framing loses one delimiter.
            const w = headerWidth(spec);
            const i = frames.length === 0 ? -1 : mu.frame % frames.length;
            if (i < 0 || (starts[i] as number) >= len) break;
            const at = starts[i] as number;
            stream = Buffer.from(stream);
            if (spec === 'ascii:20' && at + 20 <= len) {
              const n = Math.max(0, Number(stream.subarray(at, at + 20).toString('latin1')) + mu.delta);
              stream.write(String(n).padStart(20, '0'), at, 'latin1');
            } else if (w === 4 && at + 4 <= len)
              stream.writeUInt32BE((stream.readUInt32BE(at) + mu.delta) >>> 0, at);
            else if (w === 2 && at + 2 <= len)
              stream.writeUInt16LE((stream.readUInt16LE(at) + mu.delta) & 0xffff, at);
            else if (spec === 'varint') stream[at] = ((stream[at] as number) + mu.delta) & 0xff;
            else {
              const end = (starts[i + 1] as number) - (delimiterOf(spec)?.length ?? 0);
              const d = delimiterOf(spec)?.length ?? 0;
              if (end + d <= len) stream = Buffer.concat([stream.subarray(0, end), stream.subarray(end + d)]);
            }
            break;
          }
          case 'huge': {
            const at = Math.min(len, starts[mu.frame % starts.length] as number);
            const head = hugeHeader(spec, mu.size);
            // Delimiter framings: more bytes than the limit without a delimiter.
            const insert = head ?? Buffer.alloc(LEGACY_LIMITS.maxFrameLength + 1 + (mu.size % 100), 0x61);
            stream = Buffer.concat([stream.subarray(0, at), insert, stream.subarray(at)]);
            expect = protocolError('ERR_FRAME_TOO_LARGE');
            break;
          }
          case 'not-json': {
            const at = Math.min(len, starts[mu.at % starts.length] as number);
            stream = Buffer.concat([
              stream.subarray(0, at),
              encode(framing, Buffer.from('{not json')),
              stream.subarray(at),
            ]);
            if (json) expect = protocolError('ERR_BAD_PAYLOAD');
            break;
          }
          case 'bad-header': {
            const at = Math.min(len, starts[mu.at % starts.length] as number);
            let bad: Buffer | undefined;
            if (spec === 'ascii:20') bad = Buffer.from('0000000000000000001x');
            else if (spec === 'varint') bad = Buffer.alloc(9, 0xff);
            if (bad !== undefined) {
              stream = Buffer.concat([stream.subarray(0, at), bad, stream.subarray(at)]);
              expect = protocolError('ERR_BAD_FRAME_HEADER');
            }
            break;
          }
        }
      }
      const decoded = decodeAll(framing, stream);
      let end = endPref;
      // A stall needs a reason for the server to close soon: an unfinished frame (frame timeout) or an error.
      if (end === 'stall' && decoded.partial === 0 && decoded.error === undefined) end = 'fin';
      if (mutations.length > 1 || end === 'reset') expect = {};
      else if (cutMidFrame) {
        expect =
          end === 'stall'
            ? { reasons: ['frame-timeout'], code: 'ERR_FRAME_TIMEOUT' }
            : protocolError('ERR_FRAME_TRUNCATED');
      }
      return printable({
        label: `legacy:${label}/mutated:${mutations.map((m) => m.m).join('+')}/${end}`,
        stream,
        cuts,
        end,
        expect,
        helloBytes: 0,
        pauseReads,
        requests: [],
        echoes: 0,
      });
    });

  const random = fc
    .tuple(fc.uint8Array({ maxLength: 2048 }), endArb({ fin: 12, reset: 1, stall: 1 }), cutsArb())
    .map(([bytes, endPref, cuts]) => {
      const stream = Buffer.from(bytes);
      const decoded = decodeAll(framing, stream);
      const end =
        endPref === 'stall' && decoded.partial === 0 && decoded.error === undefined ? 'fin' : endPref;
      return printable({
        label: `legacy:${label}/random/${end}`,
        stream,
        cuts,
        end,
        expect: {},
        helloBytes: 0,
        pauseReads: false,
        requests: [],
        echoes: 0,
      });
    });

  return fc.oneof(
    { weight: 4, arbitrary: valid },
    { weight: 4, arbitrary: mutated },
    { weight: 2, arbitrary: random },
  );
}
