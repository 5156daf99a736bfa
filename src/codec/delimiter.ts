/**
 * Delimiter framing: frames end with a byte sequence that the payload never contains (Netty's
 * DelimiterBasedFrameDecoder, and LineBasedFrameDecoder for text lines).
 *
 * Search is `Buffer#indexOf`, native and memchr-fast. A frame inside one chunk is a `subarray`
 * view. A frame that spans chunks is held as a list of views of the chunks it arrived in (small
 * tails are copied into a reusable scratch instead, so a peer that dribbles one byte per read does
 * not cost one Buffer object per byte) and copied once into an exactly sized buffer when its
 * delimiter arrives. A multi-byte delimiter may straddle two chunks; the few bytes around the
 * boundary are checked through a small bridge buffer.
 *
 * The decoder keeps views of the chunks it was given until the frame they start completes, so a
 * caller must not reuse a chunk's memory after `push` (Node's `'data'` chunks are never reused).
 *
 * Limits fail fast: as soon as the buffered bytes prove the frame will exceed `maxFrameLength`,
 * not when the delimiter finally comes (which a hostile peer may never send).
 */

import { Buffer } from 'node:buffer';
import { FrameTooLargeError, InvalidArgumentError } from '../errors.js';
import { GuardedDecoder } from './guarded-decoder.js';
import { checkMaxFrameLength, checkOptions, optionalBoolean } from './options.js';
import { ConfiguredFraming, type FrameDecoder, type FrameEncoder, type Framing } from './types.js';

/** Options of {@link delimiterFraming}. */
export interface DelimiterFramingOptions {
  /** The byte sequence that ends each frame: a string (UTF-8) or bytes. 1–256 bytes. */
  delimiter: string | Uint8Array;
  /** Leave the delimiter off the emitted frames. Default true. */
  stripDelimiter?: boolean;
  /**
   * Largest frame, in bytes, the decoder emits (delimiter included when it is not stripped), and
   * therefore the largest payload the encoder accepts. Default 16 MiB.
   */
  maxFrameLength?: number;
}

/** Options of {@link lineFraming}. */
export interface LineFramingOptions {
  /** Largest line, in bytes, without its line ending. Default 16 MiB. */
  maxFrameLength?: number;
}

const LF = 0x0a;
const CR = 0x0d;
const MAX_DELIMITER = 256;
/** Tails up to this size are copied into the scratch rather than kept as views. */
const SMALL_PIECE = 256;
const SCRATCH_SIZE = 2048;

interface DelimiterConfig {
  readonly delimiter: Buffer;
  readonly strip: boolean;
  /** Line mode: the delimiter is "\n" and a "\r" just before it is stripped too. */
  readonly line: boolean;
  readonly maxFrameLength: number;
}

class DelimiterDecoder extends GuardedDecoder {
  private readonly delimiter: Buffer;
  private readonly d: number;
  /** The delimiter as a number when it is one byte: `indexOf(number)` is a plain memchr. */
  private readonly single: number;
  private readonly strip: boolean;
  private readonly line: boolean;
  /** The limit in force (see limit()); never above `ceiling`, the framing's own. */
  private maxFrameLength: number;
  private readonly ceiling: number;
  /** Most bytes a frame may have buffered before its delimiter starts. */
  private pendingLimit: number;
  /** Scratch size: held bytes never exceed maxFrameLength + d, so neither need the scratch. */
  private readonly scratchSize: number;
  /** Tails up to this size are copied into the scratch; it always fits an empty scratch. */
  private readonly smallPiece: number;

  /** The partial frame, as views in arrival order. */
  private readonly parts: Buffer[] = [];
  private pendingLength = 0;
  /** Scratch for small tails; reusable once the frame it holds is emitted (frames are copies). */
  private scratch: Buffer | null = null;
  private scratchUsed = 0;
  /** The last part is a view of `scratch` ending at `scratchUsed`, so it can grow in place. */
  private scratchOpen = false;
  private scratchStart = 0;
  /** Around a chunk boundary: the last d-1 bytes held plus the first d-1 bytes of the chunk. */
  private bridge: Buffer | null = null;

  constructor(config: DelimiterConfig) {
    super();
    this.delimiter = config.delimiter;
    this.d = config.delimiter.length;
    this.single = this.d === 1 ? config.delimiter[0]! : -1;
    this.strip = config.strip;
    this.line = config.line;
    this.maxFrameLength = this.ceiling = config.maxFrameLength;
    this.pendingLimit = config.strip ? config.maxFrameLength : config.maxFrameLength - this.d;
    this.scratchSize = Math.min(SCRATCH_SIZE, config.maxFrameLength + this.d);
    this.smallPiece = Math.min(SMALL_PIECE, this.scratchSize);
  }

  override get bufferedBytes(): number {
    return this.pendingLength;
  }

  limit(maxFrameLength: number): void {
    // Never below the delimiter a kept-delimiter frame must hold.
    this.maxFrameLength = Math.max(Math.min(maxFrameLength, this.ceiling), this.strip ? 0 : this.d);
    this.pendingLimit = this.strip ? this.maxFrameLength : this.maxFrameLength - this.d;
  }

  protected discard(): void {
    this.parts.length = 0;
    this.pendingLength = 0;
    this.scratch = null;
  }

  private find(chunk: Buffer, from: number): number {
    return this.single >= 0 ? chunk.indexOf(this.single, from) : chunk.indexOf(this.delimiter, from);
  }

  protected decode(chunk: Buffer): Buffer[] {
    const frames: Buffer[] = [];
    const end = chunk.length;
    let p = 0;
    if (this.pendingLength > 0) {
      p = this.finishPending(chunk, frames);
      if (p < 0) return frames;
    }
    // The hot loop: one indexOf and one view per frame (Buffer.from over the chunk's memory is
    // a cheaper `subarray`; see length-prefixed.ts).
    const d = this.d;
    const memory = chunk.buffer;
    const base = chunk.byteOffset;
    while (p < end) {
      const i = this.find(chunk, p);
      if (i === -1) break;
      let stop = this.strip ? i : i + d;
      if (this.line && stop > p && chunk[stop - 1] === CR) stop--;
      if (stop - p > this.maxFrameLength) throw new FrameTooLargeError(stop - p, this.maxFrameLength);
      frames.push(Buffer.from(memory, base + p, stop - p));
      p = i + d;
    }
    if (p < end) this.hold(chunk, p, end);
    return frames;
  }

  /**
   * A frame is pending: find where it ends, emit it and return the offset in `chunk` after its
   * delimiter, or hold all of `chunk` and return -1.
   */
  private finishPending(chunk: Buffer, frames: Buffer[]): number {
    const d = this.d;
    if (d > 1) {
      // A delimiter that began in the held bytes and ends in this chunk. indexOf on the bridge
      // finds the earliest such occurrence; one found at or after `tail` lies wholly in the
      // chunk and is left to the search below.
      const tail = Math.min(d - 1, this.pendingLength);
      const head = Math.min(d - 1, chunk.length);
      this.bridge ??= Buffer.allocUnsafe(2 * (d - 1));
      const bridge = this.bridge;
      this.copyTail(bridge, tail);
      chunk.copy(bridge, tail, 0, head);
      const j = bridge.indexOf(this.delimiter);
      if (j !== -1 && j < tail && j + d <= tail + head) {
        const content = this.pendingLength - tail + j;
        this.emitPending(chunk, this.strip ? content : content + d, frames);
        return j + d - tail;
      }
    }
    const i = this.find(chunk, 0);
    if (i === -1) {
      this.hold(chunk, 0, chunk.length);
      return -1;
    }
    let length = this.pendingLength + (this.strip ? i : i + d);
    if (this.line && (i > 0 ? chunk[i - 1] : this.lastHeldByte()) === CR) length--;
    this.emitPending(chunk, length, frames);
    return i + d;
  }

  /** Emit the first `length` bytes of held-then-chunk as one exactly sized copy. */
  private emitPending(chunk: Buffer, length: number, frames: Buffer[]): void {
    if (length > this.maxFrameLength) throw new FrameTooLargeError(length, this.maxFrameLength);
    const frame = Buffer.allocUnsafe(length);
    let at = 0;
    for (const part of this.parts) {
      if (at >= length) break;
      at += part.copy(frame, at, 0, Math.min(part.length, length - at));
    }
    if (at < length) chunk.copy(frame, at, 0, length - at);
    frames.push(frame);
    this.parts.length = 0;
    this.pendingLength = 0;
    this.scratchUsed = 0;
    this.scratchOpen = false;
  }

  /** Keep `chunk[start, end)` as part of the pending frame, then check the limit. */
  private hold(chunk: Buffer, start: number, end: number): void {
    const n = end - start;
    const parts = this.parts;
    if (n > this.smallPiece) {
      parts.push(chunk.subarray(start, end));
      this.scratchOpen = false;
    } else {
      let scratch = this.scratch;
      if (scratch === null || this.scratchUsed + n > scratch.length) {
        // A fresh scratch; parts still viewing the old one keep it alive until the frame ends.
        scratch = this.scratch = Buffer.allocUnsafe(this.scratchSize);
        this.scratchUsed = 0;
        this.scratchOpen = false;
      }
      if (!this.scratchOpen) {
        this.scratchStart = this.scratchUsed;
        parts.push(scratch);
        this.scratchOpen = true;
      }
      chunk.copy(scratch, this.scratchUsed, start, end);
      this.scratchUsed += n;
      parts[parts.length - 1] = scratch.subarray(this.scratchStart, this.scratchUsed);
    }
    this.pendingLength += n;
    if (this.pendingLength > this.pendingLimit) this.checkLimit();
  }

  /**
   * The held bytes exceed what a frame may hold before its delimiter, unless the delimiter has
   * already begun in their last bytes. Allow exactly that much, then fail fast.
   */
  private checkLimit(): void {
    const held = this.pendingLength;
    let begun = 0;
    if (this.line) {
      begun = this.lastHeldByte() === CR ? 1 : 0;
    } else if (this.d > 1) {
      const tail = Math.min(this.d - 1, held);
      this.bridge ??= Buffer.allocUnsafe(2 * (this.d - 1));
      this.copyTail(this.bridge, tail);
      for (let k = tail; k > 0 && begun === 0; k--) {
        if (this.bridge.compare(this.delimiter, 0, k, tail - k, tail) === 0) begun = k;
      }
    }
    const least = held - begun;
    if (least > this.pendingLimit) {
      throw new FrameTooLargeError(this.strip ? least : least + this.d, this.maxFrameLength);
    }
  }

  private lastHeldByte(): number | undefined {
    const last = this.parts[this.parts.length - 1];
    return last === undefined ? undefined : last[last.length - 1];
  }

  /** Copy the last `n` held bytes into `target[0, n)`. */
  private copyTail(target: Buffer, n: number): void {
    let need = n;
    for (let k = this.parts.length - 1; k >= 0 && need > 0; k--) {
      const part = this.parts[k]!;
      const take = Math.min(need, part.length);
      part.copy(target, need - take, part.length - take);
      need -= take;
    }
  }
}

const EMPTY = Buffer.alloc(0);

function containsDelimiter(): InvalidArgumentError {
  return new InvalidArgumentError('payload contains the delimiter');
}

class DelimiterEncoder implements FrameEncoder {
  private readonly delimiter: Buffer;
  private readonly single: number;
  private readonly line: boolean;
  private readonly maxPayload: number;
  /**
   * The k for which a payload ending with the delimiter's first k bytes would let a delimiter
   * start inside the payload (the delimiter overlaps itself by d-k bytes, like "abab").
   */
  private readonly overlaps: readonly number[];

  constructor(config: DelimiterConfig) {
    const delimiter = config.delimiter;
    const d = delimiter.length;
    this.delimiter = delimiter;
    this.single = d === 1 ? delimiter[0]! : -1;
    this.line = config.line;
    this.maxPayload = config.strip ? config.maxFrameLength : config.maxFrameLength - d;
    const overlaps: number[] = [];
    for (let k = 1; k < d; k++) {
      if (delimiter.compare(delimiter, 0, d - k, k, d) === 0) overlaps.push(k);
    }
    this.overlaps = overlaps;
  }

  /**
   * Returns `[payload, delimiter]`; the delimiter Buffer is shared by every call, do not write to
   * it. Refuses a payload the decoder would split differently: one containing the delimiter (or,
   * for lines, ending with "\r", which the decoder strips).
   */
  encode(payload: Buffer): Buffer[] {
    const length = payload.length;
    if (length > this.maxPayload) throw new FrameTooLargeError(length, this.maxPayload);
    const found = this.single >= 0 ? payload.indexOf(this.single) : payload.indexOf(this.delimiter);
    if (found !== -1) throw containsDelimiter();
    this.checkEnd(payload, length);
    return [payload, this.delimiter];
  }

  /** Returns `[...parts, delimiter]`, refusing a delimiter anywhere, across part boundaries too. */
  encodeParts(parts: readonly Buffer[]): Buffer[] {
    let length = 0;
    for (const part of parts) length += part.length;
    if (length > this.maxPayload) throw new FrameTooLargeError(length, this.maxPayload);
    const keep = this.delimiter.length - 1;
    // The last `keep` bytes seen so far: a delimiter crossing into the next part starts there.
    let carry: Buffer = EMPTY;
    for (const part of parts) {
      if (part.length === 0) continue;
      if (this.single >= 0 ? part.indexOf(this.single) !== -1 : part.indexOf(this.delimiter) !== -1) {
        throw containsDelimiter();
      }
      if (keep === 0) continue;
      if (carry.length > 0) {
        const window = Buffer.concat([carry, part.subarray(0, keep)]);
        const j = window.indexOf(this.delimiter);
        if (j !== -1 && j < carry.length) throw containsDelimiter();
      }
      carry =
        part.length >= keep
          ? part.subarray(part.length - keep)
          : Buffer.concat([carry, part]).subarray(-keep);
    }
    if (this.line) {
      let last: Buffer | undefined;
      for (const part of parts) if (part.length > 0) last = part;
      if (last !== undefined) this.checkEnd(last, length);
    } else {
      this.checkEnd(carry, length);
    }
    const out = parts.slice();
    out.push(this.delimiter);
    return out;
  }

  /**
   * `tail` ends the payload (`length` bytes in all): refuse an end the decoder would misread, a
   * start of the delimiter that the appended delimiter completes early, or a line's "\r".
   */
  private checkEnd(tail: Buffer, length: number): void {
    const t = tail.length;
    for (const k of this.overlaps) {
      if (k <= length && k <= t && tail.compare(this.delimiter, 0, k, t - k, t) === 0) {
        throw new InvalidArgumentError(
          'payload ends with the start of the delimiter, which would end it early',
        );
      }
    }
    if (this.line && t > 0 && tail[t - 1] === CR) {
      throw new InvalidArgumentError('payload ends with "\\r", which the line decoder would strip');
    }
  }

  overhead(): number {
    return this.delimiter.length;
  }
}

/**
 * Frames end with `delimiter`, any byte sequence. A multi-byte delimiter may arrive split across
 * chunks.
 *
 * @example
 * ```ts
 * const framing = delimiterFraming({ delimiter: '\r\n' });   // name 'crlf'
 * const nul = delimiterFraming({ delimiter: Buffer.of(0) }); // name 'delimiter:00'
 * ```
 */
export function delimiterFraming(options: DelimiterFramingOptions): Framing {
  const o = checkOptions(options, 'delimiterFraming');
  const raw = o.delimiter;
  let delimiter: Buffer;
  if (typeof raw === 'string') delimiter = Buffer.from(raw, 'utf8');
  else if (raw instanceof Uint8Array)
    delimiter = Buffer.from(raw); // a copy: later writes cannot change it
  else throw new InvalidArgumentError('delimiter must be a string or a Uint8Array');
  if (delimiter.length < 1 || delimiter.length > MAX_DELIMITER) {
    throw new InvalidArgumentError(`delimiter must be 1 to ${MAX_DELIMITER} bytes, got ${delimiter.length}`);
  }
  const strip = optionalBoolean('stripDelimiter', o.stripDelimiter, true);
  const maxFrameLength = checkMaxFrameLength(o.maxFrameLength);
  if (!strip && maxFrameLength < delimiter.length) {
    throw new InvalidArgumentError('maxFrameLength is smaller than the delimiter the frames keep');
  }
  const hex = delimiter.toString('hex');
  const name = strip && hex === '0d0a' ? 'crlf' : `delimiter:${hex}${strip ? '' : ':keep'}`;
  return delimiterFramingOf({ delimiter, strip, line: false, maxFrameLength }, name);
}

function delimiterFramingOf(config: DelimiterConfig, name: string): Framing {
  return new ConfiguredFraming(name, config, new DelimiterEncoder(config), newDelimiterDecoder);
}

function newDelimiterDecoder(config: DelimiterConfig): FrameDecoder {
  return new DelimiterDecoder(config);
}

/**
 * Text lines: frames end with "\n", and a "\r" just before it is stripped too, so both LF and
 * CRLF peers work (Netty's LineBasedFrameDecoder). The encoder ends lines with "\n".
 * `maxFrameLength` bounds the line without its ending.
 *
 * @example
 * ```ts
 * const decoder = lineFraming().createDecoder();
 * decoder.push(Buffer.from('PING\r\nPO'));  // [<PING>]
 * decoder.push(Buffer.from('NG\n'));        // [<PONG>]
 * ```
 */
export function lineFraming(options?: LineFramingOptions): Framing {
  const o = checkOptions(options, 'lineFraming');
  const maxFrameLength = checkMaxFrameLength(o.maxFrameLength);
  return delimiterFramingOf({ delimiter: Buffer.of(LF), strip: true, line: true, maxFrameLength }, 'line');
}
