/**
 * Streams as the fuzz suite builds and reads them: how a stream is cut into writes, and what a
 * decoder makes of it before its first error (the server's decoder is the same code, fed the same
 * bytes in other chunks, so its frames must be a prefix of these).
 */

import fc from 'fast-check';
import type { Framing } from '../../src/codec/types.js';

/** One write of the stream: `size` bytes, then (when `pause`) a turn of the event loop. */
export interface Cut {
  size: number;
  pause: boolean;
}

/**
 * How a stream is split into writes: mostly small pieces (headers cut in the middle), sometimes
 * whole frames at once, sometimes a turn of the event loop between two writes (setImmediate, so
 * that the server is more likely to read them apart). What is left after the cuts goes in one write.
 */
export function cutsArb(): fc.Arbitrary<Cut[]> {
  const size = fc.oneof(
    { weight: 4, arbitrary: fc.integer({ min: 1, max: 16 }) },
    { weight: 3, arbitrary: fc.integer({ min: 1, max: 600 }) },
    { weight: 1, arbitrary: fc.integer({ min: 1, max: 70_000 }) },
  );
  const pause = fc.constantFrom(false, false, false, true);
  return fc.array(fc.record({ size, pause }), { maxLength: 24 });
}

/** The writes of `stream` under `cuts`, each with its pause flag. */
export function split(stream: Buffer, cuts: readonly Cut[]): Array<{ bytes: Buffer; pause: boolean }> {
  const out: Array<{ bytes: Buffer; pause: boolean }> = [];
  let at = 0;
  for (const c of cuts) {
    if (at >= stream.length) break;
    const end = Math.min(stream.length, at + c.size);
    out.push({ bytes: stream.subarray(at, end), pause: c.pause });
    at = end;
  }
  if (at < stream.length) out.push({ bytes: stream.subarray(at), pause: false });
  return out;
}

/** What a decoder reads from a whole stream. */
export interface Decoded {
  /** Every frame before the first error (copies). */
  frames: Buffer[];
  /** The first error's code, if the stream has one. */
  error: string | undefined;
  /** Bytes of an unfinished frame at the end (0 after an error). */
  partial: number;
}

/**
 * Decodes `stream` with a fresh decoder of `framing`, keeping the frames that precede the first
 * error. The decoder drops the frames of a push that throws, so the bytes of the failing piece
 * are fed again one at a time into a second decoder brought to the same state.
 */
export function decodeAll(framing: Framing, stream: Buffer): Decoded {
  const PIECE = 512;
  const frames: Buffer[] = [];
  const d = framing.createDecoder();
  for (let at = 0; at < stream.length; at += PIECE) {
    const piece = stream.subarray(at, Math.min(stream.length, at + PIECE));
    let got: Buffer[];
    try {
      got = d.push(piece);
    } catch {
      // Replay: the same bytes up to this piece (which did not throw), then this piece bytewise.
      const again = framing.createDecoder();
      again.push(Buffer.from(stream.subarray(0, at)));
      for (let i = 0; i < piece.length; i++) {
        try {
          for (const f of again.push(Buffer.from(piece.subarray(i, i + 1)))) frames.push(Buffer.from(f));
        } catch (err) {
          return { frames, error: (err as { code?: string }).code ?? String(err), partial: 0 };
        }
      }
      throw new Error('decodeAll: the bytewise replay did not fail where the piece did');
    }
    for (const f of got) frames.push(Buffer.from(f));
  }
  return { frames, error: undefined, partial: d.bufferedBytes };
}

/** Short hex of a buffer for reports: all of it up to `max` bytes, else head…tail with the length. */
export function hexOf(b: Buffer, max = 4096): string {
  if (b.length <= max) return b.toString('hex');
  const half = max / 2;
  return `${b.subarray(0, half).toString('hex')}…(${b.length} bytes)…${b.subarray(b.length - half).toString('hex')}`;
}
