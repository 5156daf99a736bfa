/**
 * Framing throughput: longlink's codecs against the decoder everyone writes by hand
 * (`buf = Buffer.concat([buf, chunk])`, then slice frames off the front) and against plain memcpy
 * of the same bytes. The stream is cut into 64 KiB chunks, as a socket read delivers it.
 *
 *   npm run build && node dist/bench/codec.js [--quick] [--codec=u32be,line] [--size=16,1024]
 *
 * Each measurement warms up, then runs ~300 ms (60 ms with --quick) as three rounds and reports the
 * best one: the machine may be shared, and load from elsewhere only ever slows a round down.
 */

import { Buffer } from 'node:buffer';
import { type FrameEncoder, type Framing, parseFraming } from '../src/codec/index.js';

const CHUNK = 64 * 1024;
const STREAM_TARGET = 4 * 1024 * 1024;
const SIZES = [16, 128, 1024, 16 * 1024, 64 * 1024, 1024 * 1024];
const CODECS = ['u32be', 'ascii:20', 'varint', 'line'];

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const pick = (name: string) =>
  args
    .find((a) => a.startsWith(`--${name}=`))
    ?.split('=')[1]
    ?.split(',');
const RUN_MS = quick ? 60 : 300;
const WARM_MS = quick ? 20 : 80;
const ROUNDS = 3;

/** Keeps the optimiser from dropping work whose result nobody reads. */
let sink = 0;

interface Result {
  bytesPerSecond: number;
  framesPerSecond: number;
}

/**
 * Call `fn` (one pass over the data: returns frames, moves `bytes`) for RUN_MS in all, as three
 * rounds; report the best round, so a burst of load from another process does not decide a ratio.
 */
function measure(fn: () => number, bytes: number): Result {
  const warmEnd = performance.now() + WARM_MS;
  while (performance.now() < warmEnd) sink += fn();
  let best: Result = { bytesPerSecond: 0, framesPerSecond: 0 };
  for (let round = 0; round < ROUNDS; round++) {
    let frames = 0;
    let passes = 0;
    const start = performance.now();
    let elapsed = 0;
    do {
      frames += fn();
      passes++;
      elapsed = performance.now() - start;
    } while (elapsed < RUN_MS / ROUNDS);
    const seconds = elapsed / 1000;
    if ((passes * bytes) / seconds > best.bytesPerSecond) {
      best = { bytesPerSecond: (passes * bytes) / seconds, framesPerSecond: frames / seconds };
    }
  }
  return best;
}

/** A payload of `size` bytes that holds no "\n" (so every framing takes it). */
function payloadOf(size: number): Buffer {
  const buf = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i++) buf[i] = 0x61 + (i % 26);
  return buf;
}

function chunksOf(stream: Buffer): Buffer[] {
  const chunks: Buffer[] = [];
  for (let at = 0; at < stream.length; at += CHUNK) chunks.push(stream.subarray(at, at + CHUNK));
  return chunks;
}

// ---------------------------------------------------------------------------------------------
// The hand-rolled decoders and encoders: what the sources' example and most codebases do.

type NaiveDecode = (buf: Buffer, frames: Buffer[]) => Buffer;

const naiveDecoders: Record<string, NaiveDecode> = {
  u32be(buf, frames) {
    while (buf.length >= 4) {
      const length = buf.readUInt32BE(0);
      if (buf.length < 4 + length) break;
      frames.push(buf.subarray(4, 4 + length));
      buf = buf.subarray(4 + length);
    }
    return buf;
  },
  'ascii:20'(buf, frames) {
    while (buf.length >= 20) {
      const length = Number.parseInt(buf.toString('ascii', 0, 20), 10);
      if (buf.length < 20 + length) break;
      frames.push(buf.subarray(20, 20 + length));
      buf = buf.subarray(20 + length);
    }
    return buf;
  },
  varint(buf, frames) {
    for (;;) {
      let length = 0;
      let shift = 0;
      let i = 0;
      for (; i < buf.length; i++) {
        const b = buf[i]!;
        length += (b & 0x7f) * 2 ** shift;
        shift += 7;
        if (b < 0x80) break;
      }
      if (i >= buf.length || buf.length < i + 1 + length) break;
      frames.push(buf.subarray(i + 1, i + 1 + length));
      buf = buf.subarray(i + 1 + length);
    }
    return buf;
  },
  line(buf, frames) {
    for (let nl = buf.indexOf(10); nl !== -1; nl = buf.indexOf(10)) {
      frames.push(buf.subarray(0, nl > 0 && buf[nl - 1] === 13 ? nl - 1 : nl));
      buf = buf.subarray(nl + 1);
    }
    return buf;
  },
};

const naiveEncoders: Record<string, (payload: Buffer) => Buffer> = {
  u32be(payload) {
    const header = Buffer.alloc(4);
    header.writeUInt32BE(payload.length);
    return Buffer.concat([header, payload]);
  },
  'ascii:20'(payload) {
    return Buffer.concat([Buffer.from(String(payload.length).padStart(20, '0')), payload]);
  },
  varint(payload) {
    const header: number[] = [];
    let n = payload.length;
    while (n >= 128) {
      header.push((n & 0x7f) | 0x80);
      n = Math.floor(n / 128);
    }
    header.push(n);
    return Buffer.concat([Buffer.from(header), payload]);
  },
  line(payload) {
    return Buffer.concat([payload, Buffer.from('\n')]);
  },
};

// ---------------------------------------------------------------------------------------------

interface Row {
  codec: string;
  size: number;
  op: 'decode' | 'encode';
  ours: Result;
  naive: Result;
  memcpy: Result;
}

function benchDecode(framing: Framing, chunks: Buffer[], streamBytes: number, naive: NaiveDecode) {
  const ours = measure(() => {
    const decoder = framing.createDecoder();
    let frames = 0;
    for (const chunk of chunks) {
      const out = decoder.push(chunk);
      frames += out.length;
      // Touch each frame as a consumer would, so views are not free by dead-code elimination.
      for (const f of out) sink += f.length;
    }
    decoder.end();
    return frames;
  }, streamBytes);
  const hand = measure(() => {
    let buf: Buffer = Buffer.alloc(0);
    let frames = 0;
    const out: Buffer[] = [];
    for (const chunk of chunks) {
      buf = Buffer.concat([buf, chunk]);
      buf = naive(buf, out);
      frames += out.length;
      for (const f of out) sink += f.length;
      out.length = 0;
    }
    return frames;
  }, streamBytes);
  return { ours, hand };
}

function benchEncode(encoder: FrameEncoder, payloads: Buffer[], naive: (p: Buffer) => Buffer, bytes: number) {
  const ours = measure(() => {
    for (const p of payloads) sink += encoder.encode(p).length;
    return payloads.length;
  }, bytes);
  const hand = measure(() => {
    for (const p of payloads) sink += naive(p).length;
    return payloads.length;
  }, bytes);
  return { ours, hand };
}

/** Plain memcpy of the same bytes in the same pieces: the floor any decoder that copies has. */
function benchMemcpy(pieces: Buffer[], bytes: number): Result {
  const target = Buffer.allocUnsafe(bytes);
  return measure(() => {
    let at = 0;
    for (const piece of pieces) at += piece.copy(target, at);
    return 0;
  }, bytes);
}

function human(size: number): string {
  if (size >= 1024 * 1024) return `${size / (1024 * 1024)} MiB`;
  if (size >= 1024) return `${size / 1024} KiB`;
  return `${size} B`;
}

function fmt(n: number, digits = 0): string {
  return n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

function main(): void {
  const codecs = pick('codec') ?? CODECS;
  const sizes = (pick('size') ?? SIZES.map(String)).map(Number);
  const rows: Row[] = [];
  for (const size of sizes) {
    const payload = payloadOf(size);
    const count = Math.max(4, Math.floor(STREAM_TARGET / size));
    const payloads = Array.from({ length: count }, () => payload);
    const memcpyPayloads = benchMemcpy(payloads, size * count);
    for (const spec of codecs) {
      const framing = parseFraming(spec, { maxFrameLength: 16 * 1024 * 1024 });
      const naiveDecode = naiveDecoders[spec];
      const naiveEncode = naiveEncoders[spec];
      if (naiveDecode === undefined || naiveEncode === undefined)
        throw new Error(`no naive codec for ${spec}`);
      const stream = Buffer.concat(payloads.flatMap((p) => framing.encoder.encode(p)));
      const chunks = chunksOf(stream);
      const memcpyStream = benchMemcpy(chunks, stream.length);
      const dec = benchDecode(framing, chunks, stream.length, naiveDecode);
      rows.push({ codec: spec, size, op: 'decode', ours: dec.ours, naive: dec.hand, memcpy: memcpyStream });
      const enc = benchEncode(framing.encoder, payloads, naiveEncode, stream.length);
      rows.push({ codec: spec, size, op: 'encode', ours: enc.ours, naive: enc.hand, memcpy: memcpyPayloads });
      process.stderr.write('.');
    }
  }
  process.stderr.write('\n');
  print(rows);
  if (sink === -1) console.log('');
}

function print(rows: Row[]): void {
  const header = ['codec', 'frame', 'op', 'MB/s', 'frames/s', 'naive MB/s', '× naive', '× memcpy'];
  const lines = rows.map((r) => [
    r.codec,
    human(r.size),
    r.op,
    fmt(r.ours.bytesPerSecond / 1e6),
    fmt(r.ours.framesPerSecond),
    fmt(r.naive.bytesPerSecond / 1e6),
    fmt(r.ours.bytesPerSecond / r.naive.bytesPerSecond, 2),
    fmt(r.ours.bytesPerSecond / r.memcpy.bytesPerSecond, 2),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  const line = (cells: string[]) =>
    `| ${cells.map((c, i) => (i < 3 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(' | ')} |`;
  console.log(
    `node ${process.version}, ${CHUNK / 1024} KiB chunks, ${RUN_MS} ms per measurement (best of ${ROUNDS})`,
  );
  console.log('× memcpy: against Buffer#copy of the same bytes (decode: the stream; encode: the payloads)');
  console.log(line(header));
  console.log(
    `|${widths.map((w, i) => (i < 3 ? ':' : '-').padEnd(w + 1, '-') + (i < 3 ? '-' : ':')).join('|')}|`,
  );
  for (const l of lines) console.log(line(l));
}

main();
