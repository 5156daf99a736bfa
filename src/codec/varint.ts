/**
 * Unsigned LEB128 length prefix, as protobuf's delimited streams (`writeDelimitedTo`) and many
 * RPC systems use: seven bits per byte, least significant group first, high bit set on every byte
 * but the last.
 *
 * A length needs at most 8 bytes (56 bits cover 2^53); a ninth byte is refused as a bad header
 * rather than read, so a stream of 0xff bytes fails after 8 bytes instead of buffering forever.
 * Non-minimal encodings (0x80 0x00 for 0) are accepted, as protobuf decoders accept them.
 */

import { Buffer } from 'node:buffer';
import { BadFrameHeaderError, FrameTooLargeError } from '../errors.js';
import { LengthPrefixedDecoder, LengthPrefixedEncoder, NEED_MORE } from './length-prefixed.js';
import { checkMaxFrameLength, checkOptions } from './options.js';
import { ConfiguredFraming, type FrameDecoder, type Framing } from './types.js';

/** Options of {@link varintFraming}. */
export interface VarintFramingOptions {
  /** Largest body, in bytes, the decoder emits and the encoder accepts. Default 16 MiB. */
  maxFrameLength?: number;
}

/** Longest varint accepted: ceil(53 / 7) = 8 bytes. */
const MAX_VARINT_BYTES = 8;

class VarintDecoder extends LengthPrefixedDecoder {
  constructor(maxFrameLength: number) {
    super(MAX_VARINT_BYTES, maxFrameLength);
  }

  protected parseHeader(buf: Buffer, start: number, end: number): number {
    let value = 0;
    let scale = 1;
    for (let i = 0; i < MAX_VARINT_BYTES; i++) {
      if (start + i >= end) return NEED_MORE;
      const b = buf[start + i]!;
      // Multiply, not shift: bit operations are 32-bit in JavaScript and lengths may be larger.
      value += (b & 0x7f) * scale;
      if (b < 0x80) {
        this.strip = i + 1;
        return i + 1 + value;
      }
      scale *= 128;
    }
    throw new BadFrameHeaderError(`varint length longer than ${MAX_VARINT_BYTES} bytes`);
  }
}

/** Bytes the varint encoding of `n` takes. */
function varintLength(n: number): number {
  let bytes = 1;
  while (n >= 128) {
    n = Math.floor(n / 128);
    bytes++;
  }
  return bytes;
}

class VarintEncoder extends LengthPrefixedEncoder {
  private readonly maxFrameLength: number;

  constructor(maxFrameLength: number) {
    super();
    this.maxFrameLength = maxFrameLength;
  }

  protected header(length: number): Buffer {
    let n = length;
    if (n > this.maxFrameLength) throw new FrameTooLargeError(n, this.maxFrameLength);
    const header = Buffer.allocUnsafe(varintLength(n));
    let i = 0;
    while (n >= 128) {
      header[i++] = (n & 0x7f) | 0x80;
      n = Math.floor(n / 128);
    }
    header[i] = n;
    return header;
  }

  overhead(payloadLength: number): number {
    return varintLength(payloadLength);
  }
}

/**
 * Unsigned LEB128 (protobuf varint) length, then the body. Frames are the bodies.
 *
 * @example
 * ```ts
 * const framing = varintFraming({ maxFrameLength: 4 << 20 });
 * framing.encoder.encode(Buffer.from('hi')); // [<02>, <68 69>]
 * ```
 */
export function varintFraming(options?: VarintFramingOptions): Framing {
  const o = checkOptions(options, 'varintFraming');
  const maxFrameLength = checkMaxFrameLength(o.maxFrameLength);
  return new ConfiguredFraming(
    'varint',
    { maxFrameLength },
    new VarintEncoder(maxFrameLength),
    newVarintDecoder,
  );
}

function newVarintDecoder(config: { readonly maxFrameLength: number }): FrameDecoder {
  return new VarintDecoder(config.maxFrameLength);
}
