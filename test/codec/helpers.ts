/** Helpers shared by the codec tests: feeding a decoder in pieces and comparing frames. */

import assert from 'node:assert/strict';
import type { Framing } from '../../src/codec/index.js';

/** Frames as hex strings: assert.deepEqual on them prints a readable diff. */
export function hex(frames: readonly Uint8Array[]): string[] {
  return frames.map((f) => Buffer.from(f.buffer, f.byteOffset, f.byteLength).toString('hex'));
}

/** Push every chunk, then end(); return all frames. */
export function decodeChunks(framing: Framing, chunks: readonly Buffer[]): Buffer[] {
  const decoder = framing.createDecoder();
  const frames: Buffer[] = [];
  for (const chunk of chunks) frames.push(...decoder.push(chunk));
  decoder.end();
  return frames;
}

/** Cut `buf` at the given ascending offsets; each piece is a copy, as a socket read would be. */
export function cut(buf: Buffer, offsets: readonly number[]): Buffer[] {
  const pieces: Buffer[] = [];
  let from = 0;
  for (const at of [...offsets, buf.length]) {
    pieces.push(Buffer.from(buf.subarray(from, at)));
    from = at;
  }
  return pieces;
}

/** The wire bytes of `payloads` under `framing`. */
export function encodeAll(framing: Framing, payloads: readonly Buffer[]): Buffer {
  return Buffer.concat(payloads.flatMap((p) => framing.encoder.encode(p)));
}

/**
 * Decode `stream` whole, one byte at a time, split at every single offset and (for short streams)
 * at every pair of offsets; every way must give `expected`.
 */
export function assertEverySplit(framing: Framing, stream: Buffer, expected: readonly Buffer[]): void {
  const want = hex(expected);
  assert.deepEqual(hex(decodeChunks(framing, [stream])), want, 'whole stream');
  const bytes = Array.from({ length: stream.length }, (_, i) => i + 1).slice(0, -1);
  assert.deepEqual(hex(decodeChunks(framing, cut(stream, bytes))), want, 'one byte at a time');
  for (let i = 0; i <= stream.length; i++) {
    assert.deepEqual(hex(decodeChunks(framing, cut(stream, [i]))), want, `split at ${i}`);
  }
  if (stream.length <= 80) {
    for (let i = 0; i <= stream.length; i++) {
      for (let j = i; j <= stream.length; j++) {
        assert.deepEqual(hex(decodeChunks(framing, cut(stream, [i, j]))), want, `split at ${i} and ${j}`);
      }
    }
  }
}

/** Assert that `fn` throws a longlink error with this code and class; return it. */
export function assertThrowsCode<T extends Error>(
  fn: () => unknown,
  cls: abstract new (...args: never[]) => T,
  code: string,
): T {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof cls, `expected ${cls.name}, got ${String(caught)}`);
  assert.equal((caught as { code?: unknown }).code, code);
  return caught as T;
}

/** Run `fn`, recording the size of every Buffer.allocUnsafe call (the codecs' only allocator). */
export function allocations<T>(fn: () => T): { result: T; sizes: number[] } {
  const { allocUnsafe } = Buffer;
  const sizes: number[] = [];
  Buffer.allocUnsafe = (size: number) => {
    sizes.push(size);
    return allocUnsafe(size);
  };
  try {
    return { result: fn(), sizes };
  } finally {
    Buffer.allocUnsafe = allocUnsafe;
  }
}

export const HELLO = Buffer.from('HELLO, WORLD');
