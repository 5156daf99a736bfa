/**
 * A binary length field of 1, 2, 3, 4 or 8 bytes, either byte order, anywhere in a fixed header:
 * the breadth of Netty's LengthFieldBasedFrameDecoder, with its exact arithmetic:
 *
 *     frame = lengthFieldOffset + lengthFieldLength + value + lengthAdjustment   (bytes on the wire)
 *     emitted = frame minus its first initialBytesToStrip bytes
 *
 * Two deliberate differences from Netty, both documented in docs/framing.md:
 *   - `initialBytesToStrip` defaults to the end of the length field (frames are the bodies), where
 *     Netty defaults to 0; pass 0 explicitly to keep the header, as in Netty's first example.
 *   - `maxFrameLength` bounds the emitted bytes (the Framing contract), where Netty bounds the whole
 *     frame, header included. With the default strip they differ by the header size only.
 */

import { Buffer } from 'node:buffer';
import { BadFrameHeaderError, FrameTooLargeError, InvalidArgumentError } from '../errors.js';
import { LengthPrefixedDecoder, LengthPrefixedEncoder, NEED_MORE } from './length-prefixed.js';
import {
  checkInteger,
  checkMaxFrameLength,
  checkOptions,
  optionalBoolean,
  optionalChoice,
  optionalInteger,
} from './options.js';
import { ConfiguredFraming, type FrameDecoder, type Framing } from './types.js';

/** Width of the length field in bytes. */
export type LengthFieldLength = 1 | 2 | 3 | 4 | 8;

/** Options of {@link lengthFieldFraming}; the names and meaning are Netty's. */
export interface LengthFieldFramingOptions {
  /** Size of the length field: 1, 2, 3, 4 or 8 bytes, read unsigned. */
  lengthFieldLength: LengthFieldLength;
  /** Byte order of the length field. Default `'be'` (network order). */
  byteOrder?: 'be' | 'le';
  /** Bytes before the length field (a fixed header part). Default 0. Range 0–65536. */
  lengthFieldOffset?: number;
  /**
   * Added to the field's value to get the bytes that follow the length field. Negative when the
   * value counts the header too (e.g. -2 for a 2-byte field that counts itself), positive when
   * fixed header bytes follow the field and the value does not count them. Default 0.
   */
  lengthAdjustment?: number;
  /**
   * Bytes at the start of each frame not emitted. Default `lengthFieldOffset + lengthFieldLength`
   * (emit what follows the length field); 0 keeps the whole header, as Netty's default does.
   */
  initialBytesToStrip?: number;
  /**
   * The value counts the length field itself, like Netty LengthFieldPrepender's
   * `lengthIncludesLengthFieldLength`. Shorthand for `lengthAdjustment -= lengthFieldLength`.
   * Default false.
   */
  lengthIncludesLengthField?: boolean;
  /** Largest frame, in bytes, the decoder emits and payload the encoder accepts. Default 16 MiB. */
  maxFrameLength?: number;
}

/** Options of the presets ({@link u32be} …): everything but the field's size and byte order. */
export type LengthFieldPresetOptions = Omit<LengthFieldFramingOptions, 'lengthFieldLength' | 'byteOrder'>;

const MAX_OFFSET = 65536;
const MAX_ADJUSTMENT = 2 ** 32;
const TWO_32 = 2 ** 32;

interface LengthFieldConfig {
  readonly offset: number;
  readonly fieldLength: LengthFieldLength;
  readonly littleEndian: boolean;
  /** `lengthFieldOffset + lengthFieldLength`: the header bytes needed to know the frame length. */
  readonly endOffset: number;
  /** The effective adjustment, `lengthIncludesLengthField` folded in. */
  readonly adjustment: number;
  readonly strip: number;
  readonly maxFrameLength: number;
  /** {@link readerKind} of the field. */
  readonly kind: number;
}

/** Field size and order as one small integer, so the per-frame read is a single `switch`. */
function readerKind(fieldLength: LengthFieldLength, littleEndian: boolean): number {
  return fieldLength * 2 + (littleEndian ? 1 : 0);
}

class LengthFieldDecoder extends LengthPrefixedDecoder {
  /** Shared by every decoder of one framing: a decoder holds one pointer, not five fields. */
  private readonly config: LengthFieldConfig;

  constructor(config: LengthFieldConfig) {
    super(config.endOffset, config.maxFrameLength);
    this.config = config;
    this.strip = config.strip;
  }

  protected parseHeader(buf: Buffer, start: number, end: number): number {
    const config = this.config;
    const endOffset = config.endOffset;
    if (end - start < endOffset) return NEED_MORE;
    const at = start + config.offset;
    let value: number;
    switch (config.kind) {
      case 2:
      case 3:
        value = buf[at]!;
        break;
      case 4:
        value = (buf[at]! << 8) | buf[at + 1]!;
        break;
      case 5:
        value = buf[at]! | (buf[at + 1]! << 8);
        break;
      case 6:
        value = (buf[at]! << 16) | (buf[at + 1]! << 8) | buf[at + 2]!;
        break;
      case 7:
        value = buf[at]! | (buf[at + 1]! << 8) | (buf[at + 2]! << 16);
        break;
      case 8:
        // `* 2 ** 24` rather than `<< 24`: a shift would go negative for a top byte >= 0x80.
        value = buf[at]! * 0x1000000 + ((buf[at + 1]! << 16) | (buf[at + 2]! << 8) | buf[at + 3]!);
        break;
      case 9:
        value = buf[at + 3]! * 0x1000000 + ((buf[at + 2]! << 16) | (buf[at + 1]! << 8) | buf[at]!);
        break;
      default:
        value = this.readU64(buf, at);
    }
    const total = endOffset + value + config.adjustment;
    if (total < endOffset) {
      throw new BadFrameHeaderError(
        `length field ${value} with lengthAdjustment ${config.adjustment} gives a negative frame length`,
      );
    }
    return total;
  }

  /**
   * An unsigned 64-bit value. Anything from 2^34 up is refused at once as too large: no
   * configuration can accept it (maxFrameLength <= 2^32, |lengthAdjustment| <= 2^32), and the
   * frame arithmetic stays exact. The error reports the field's value (exact up to 2^53).
   */
  private readU64(buf: Buffer, at: number): number {
    const le = this.config.kind === 17;
    const hi = le ? buf.readUInt32LE(at + 4) : buf.readUInt32BE(at);
    const lo = le ? buf.readUInt32LE(at) : buf.readUInt32BE(at + 4);
    const value = hi * TWO_32 + lo;
    if (hi >= 4) throw new FrameTooLargeError(value, this.maxFrameLength);
    return value;
  }
}

/**
 * Netty's LengthFieldPrepender, the inverse of the decoder with the same options: the header is
 * the length field alone, holding `payload.length - lengthAdjustment`. The payload is everything
 * after the length field (with a positive adjustment it starts with those extra header bytes).
 */
class LengthFieldEncoder extends LengthPrefixedEncoder {
  private readonly config: LengthFieldConfig;
  private readonly kind: number;
  private readonly maxPayload: number;
  /** Why this configuration cannot encode, or null when it can. */
  private readonly unsupported: string | null;

  constructor(config: LengthFieldConfig) {
    super();
    this.config = config;
    this.kind = config.kind;
    const fieldMax = config.fieldLength === 8 ? Number.MAX_SAFE_INTEGER : 2 ** (8 * config.fieldLength) - 1;
    this.maxPayload = Math.max(0, Math.min(config.maxFrameLength, fieldMax + config.adjustment));
    this.unsupported =
      config.offset > 0
        ? `cannot encode with lengthFieldOffset ${config.offset}: the bytes before the length field ` +
          'belong to the application; build that header yourself and use an offset-0 framing'
        : null;
    this.prefixLength = this.unsupported === null ? config.fieldLength : undefined;
  }

  override readonly prefixLength: number | undefined;

  protected header(length: number): Buffer {
    const header = Buffer.allocUnsafe(this.config.fieldLength);
    this.writePrefix(header, length);
    return header;
  }

  override writePrefixAt(header: Buffer, at: number, length: number): void {
    if (this.unsupported !== null) throw new InvalidArgumentError(this.unsupported);
    if (length > this.maxPayload) throw new FrameTooLargeError(length, this.maxPayload);
    const value = length - this.config.adjustment;
    if (value < 0) {
      throw new InvalidArgumentError(
        `payload of ${length} bytes is shorter than lengthAdjustment ${this.config.adjustment}`,
      );
    }
    switch (this.kind) {
      case 2:
      case 3:
        header[at] = value;
        break;
      case 4:
        header.writeUInt16BE(value, at);
        break;
      case 5:
        header.writeUInt16LE(value, at);
        break;
      case 6:
        header.writeUIntBE(value, at, 3);
        break;
      case 7:
        header.writeUIntLE(value, at, 3);
        break;
      case 8:
        header.writeUInt32BE(value, at);
        break;
      case 9:
        header.writeUInt32LE(value, at);
        break;
      case 16:
        header.writeUInt32BE(Math.floor(value / TWO_32), at);
        header.writeUInt32BE(value >>> 0, at + 4);
        break;
      default:
        header.writeUInt32LE(value >>> 0, at);
        header.writeUInt32LE(Math.floor(value / TWO_32), at + 4);
    }
  }

  overhead(): number {
    if (this.unsupported !== null) throw new InvalidArgumentError(this.unsupported);
    return this.config.fieldLength;
  }
}

/** The canonical spec string: `u16be[:off=N][:adj=N][:strip=N]` (see parseFraming). */
function lengthFieldName(config: LengthFieldConfig): string {
  let name = `u${config.fieldLength * 8}`;
  if (config.fieldLength > 1) name += config.littleEndian ? 'le' : 'be';
  if (config.offset !== 0) name += `:off=${config.offset}`;
  if (config.adjustment !== 0) name += `:adj=${config.adjustment}`;
  if (config.strip !== config.endOffset) name += `:strip=${config.strip}`;
  return name;
}

/**
 * A binary length field, with Netty LengthFieldBasedFrameDecoder's options and arithmetic.
 *
 * @example
 * ```ts
 * // Netty's "2 bytes length field at offset 1 in the middle of 4 bytes header" example:
 * // | HDR1 0xCA | Length 0x000C | HDR2 0xFE | "HELLO, WORLD" |  ->  | 0xFE | "HELLO, WORLD" |
 * const framing = lengthFieldFraming({
 *   lengthFieldOffset: 1, lengthFieldLength: 2, lengthAdjustment: 1, initialBytesToStrip: 3,
 * });
 * ```
 */
export function lengthFieldFraming(options: LengthFieldFramingOptions): Framing {
  const o = checkOptions(options, 'lengthFieldFraming');
  const fieldLength = o.lengthFieldLength;
  if (fieldLength !== 1 && fieldLength !== 2 && fieldLength !== 3 && fieldLength !== 4 && fieldLength !== 8) {
    throw new InvalidArgumentError(`lengthFieldLength must be 1, 2, 3, 4 or 8, got ${String(fieldLength)}`);
  }
  const byteOrder = optionalChoice('byteOrder', o.byteOrder, ['be', 'le'] as const, 'be');
  const offset = optionalInteger('lengthFieldOffset', o.lengthFieldOffset, 0, 0, MAX_OFFSET);
  const adjustment = optionalInteger(
    'lengthAdjustment',
    o.lengthAdjustment,
    0,
    -MAX_ADJUSTMENT,
    MAX_ADJUSTMENT,
  );
  const includes = optionalBoolean('lengthIncludesLengthField', o.lengthIncludesLengthField, false);
  const endOffset = offset + fieldLength;
  const strip =
    o.initialBytesToStrip === undefined
      ? endOffset
      : checkInteger('initialBytesToStrip', o.initialBytesToStrip, 0, Number.MAX_SAFE_INTEGER);
  const maxFrameLength = checkMaxFrameLength(o.maxFrameLength);
  // One byte has no order; normalising keeps `u8` one framing with one name.
  const littleEndian = fieldLength > 1 && byteOrder === 'le';
  const config: LengthFieldConfig = {
    offset,
    fieldLength,
    littleEndian,
    endOffset,
    adjustment: includes ? adjustment - fieldLength : adjustment,
    strip,
    maxFrameLength,
    kind: readerKind(fieldLength, littleEndian),
  };
  return new ConfiguredFraming(
    lengthFieldName(config),
    config,
    new LengthFieldEncoder(config),
    newLengthFieldDecoder,
  );
}

function newLengthFieldDecoder(config: LengthFieldConfig): FrameDecoder {
  return new LengthFieldDecoder(config);
}

function preset(fieldLength: LengthFieldLength, byteOrder: 'be' | 'le', options?: LengthFieldPresetOptions) {
  const o = checkOptions(options, 'preset');
  return lengthFieldFraming({ ...o, lengthFieldLength: fieldLength, byteOrder });
}

/** 1-byte length, then up to 255 bytes of body. Frames are the bodies. */
export function u8(options?: LengthFieldPresetOptions): Framing {
  return preset(1, 'be', options);
}
/** 2-byte big-endian length, then the body. */
export function u16be(options?: LengthFieldPresetOptions): Framing {
  return preset(2, 'be', options);
}
/** 2-byte little-endian length, then the body. */
export function u16le(options?: LengthFieldPresetOptions): Framing {
  return preset(2, 'le', options);
}
/** 3-byte big-endian length, then the body. */
export function u24be(options?: LengthFieldPresetOptions): Framing {
  return preset(3, 'be', options);
}
/**
 * 4-byte big-endian length, then the body: the most common binary framing.
 *
 * @example
 * ```ts
 * const framing = u32be({ maxFrameLength: 1 << 20 });
 * socket.cork(); for (const c of framing.encoder.encode(payload)) socket.write(c); socket.uncork();
 * ```
 */
export function u32be(options?: LengthFieldPresetOptions): Framing {
  return preset(4, 'be', options);
}
/** 4-byte little-endian length, then the body. */
export function u32le(options?: LengthFieldPresetOptions): Framing {
  return preset(4, 'le', options);
}
/** 8-byte big-endian length (values above 2^53 - 1 refused as too large), then the body. */
export function u64be(options?: LengthFieldPresetOptions): Framing {
  return preset(8, 'be', options);
}
