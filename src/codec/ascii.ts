/**
 * The sources' framing: a fixed-width ASCII decimal length, then the body. Their Node.js example
 * writes the body length zero-padded to 20 characters; some legacy protocols (banking, telecom)
 * pad with spaces instead or start the header with a literal tag such as `length:`.
 *
 *     +--------------------------------+----------------+
 *     | prefix |   length, `digits`    |      body      |
 *     | length:| 0000000000000012      | "HELLO, WORLD" |
 *     +--------------------------------+----------------+
 *     <------------- width ------------>
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
} from './options.js';
import { ConfiguredFraming, type FrameDecoder, type Framing } from './types.js';

/** Options of {@link asciiFraming}. */
export interface AsciiFramingOptions {
  /** Header width in characters, prefix included. Default 20, as in the sources. Range 1–64. */
  width?: number;
  /**
   * How the number is padded to the width. `'zero'` (default): every character is a digit,
   * `00000000000000000012`. `'space'`: right-aligned after leading spaces, `                  12`;
   * the decoder also accepts leading zeros then, since `0012` is unambiguous.
   */
  pad?: 'zero' | 'space';
  /** The number counts the header too (`width + body`), not just the body. Default false. */
  lengthIncludesHeader?: boolean;
  /** Literal ASCII text the header starts with, counted in `width`. Default none. */
  prefix?: string;
  /** Largest body, in bytes, the decoder emits and the encoder accepts. Default 16 MiB. */
  maxFrameLength?: number;
}

const MAX_WIDTH = 64;
const ZERO = 0x30;
const NINE = 0x39;
const SPACE = 0x20;

interface AsciiConfig {
  readonly width: number;
  readonly prefix: Buffer;
  /** Characters left for the number: `width - prefix.length`. */
  readonly digits: number;
  readonly space: boolean;
  readonly includesHeader: boolean;
  readonly maxFrameLength: number;
}

class AsciiDecoder extends LengthPrefixedDecoder {
  private readonly config: AsciiConfig;

  constructor(config: AsciiConfig) {
    super(config.width, config.maxFrameLength);
    this.config = config;
    this.strip = config.width;
  }

  protected parseHeader(buf: Buffer, start: number, end: number): number {
    const { width, prefix, space } = this.config;
    if (end - start < width) return NEED_MORE;
    const prefixLength = prefix.length;
    for (let i = 0; i < prefixLength; i++) {
      if (buf[start + i] !== prefix[i]) throw badHeader(buf, start, width, 'prefix does not match');
    }
    let i = start + prefixLength;
    const stop = start + width;
    // Right-aligned numbers: skip the leading spaces, then demand at least one digit. A space
    // after a digit, a sign or any other byte is an error; guessing would desynchronise the stream.
    if (space) {
      while (i < stop && buf[i] === SPACE) i++;
      if (i === stop) throw badHeader(buf, start, width, 'no digits');
    }
    let value = 0;
    for (; i < stop; i++) {
      const c = buf[i]!;
      if (c < ZERO || c > NINE) throw badHeader(buf, start, width, 'not a decimal digit');
      // Past 2^53 the value is approximate, but by then it is far above any maxFrameLength.
      value = value * 10 + (c - ZERO);
    }
    if (!this.config.includesHeader) return width + value;
    if (value < width) {
      throw badHeader(buf, start, width, `length ${value} is less than the header width ${width}`);
    }
    return value;
  }
}

function badHeader(buf: Buffer, start: number, width: number, why: string): BadFrameHeaderError {
  const text = JSON.stringify(buf.toString('latin1', start, start + width));
  return new BadFrameHeaderError(`bad ASCII length header ${text}: ${why}`);
}

class AsciiEncoder extends LengthPrefixedEncoder {
  private readonly config: AsciiConfig;
  /** Largest payload: the smaller of maxFrameLength and what the digits can spell. */
  private readonly maxPayload: number;
  private readonly padByte: number;

  constructor(config: AsciiConfig) {
    super();
    this.config = config;
    const spellable = Math.min(10 ** config.digits - 1, Number.MAX_SAFE_INTEGER);
    this.maxPayload = Math.min(config.maxFrameLength, spellable - (config.includesHeader ? config.width : 0));
    this.padByte = config.space ? SPACE : ZERO;
    this.prefixLength = config.width;
  }

  override readonly prefixLength: number;

  protected header(length: number): Buffer {
    const header = Buffer.allocUnsafe(this.config.width);
    this.writePrefixAt(header, 0, length);
    return header;
  }

  override writePrefixAt(target: Buffer, at: number, length: number): void {
    const { width, prefix, includesHeader } = this.config;
    if (length > this.maxPayload) throw new FrameTooLargeError(length, this.maxPayload);
    if (prefix.length > 0) prefix.copy(target, at);
    let value = includesHeader ? length + width : length;
    let i = at + width - 1;
    // Digits right to left; a zero length still writes one '0'.
    do {
      target[i--] = ZERO + (value % 10);
      value = Math.floor(value / 10);
    } while (value > 0);
    target.fill(this.padByte, at + prefix.length, i + 1);
  }

  overhead(): number {
    return this.config.width;
  }
}

/** The canonical spec string: `ascii:W[:space][:incl][:prefix=HEX]` (see parseFraming). */
function asciiName(config: AsciiConfig): string {
  let name = `ascii:${config.width}`;
  if (config.space) name += ':space';
  if (config.includesHeader) name += ':incl';
  if (config.prefix.length > 0) name += `:prefix=${config.prefix.toString('hex')}`;
  return name;
}

/**
 * Fixed-width ASCII decimal length header, then the body; frames are the bodies. The sources'
 * protocol is the default: 20 characters, zero-padded, counting the body only.
 *
 * @example
 * ```ts
 * const framing = asciiFraming();                    // '00000000000000000012HELLO, WORLD'
 * const tagged = asciiFraming({ prefix: 'length:' }); // 'length:0000000000012HELLO, WORLD'
 * socket.on('data', (chunk) => { for (const body of decoder.push(chunk)) handle(body); });
 * ```
 */
export function asciiFraming(options?: AsciiFramingOptions): Framing {
  const o = checkOptions(options, 'asciiFraming');
  const width = o.width === undefined ? 20 : checkInteger('width', o.width, 1, MAX_WIDTH);
  const pad = optionalChoice('pad', o.pad, ['zero', 'space'] as const, 'zero');
  const includesHeader = optionalBoolean('lengthIncludesHeader', o.lengthIncludesHeader, false);
  const maxFrameLength = checkMaxFrameLength(o.maxFrameLength);
  const prefixText = o.prefix ?? '';
  if (typeof prefixText !== 'string' || !/^[\x20-\x7e]*$/.test(prefixText)) {
    throw new InvalidArgumentError('prefix must be a string of printable ASCII characters');
  }
  if (prefixText.length >= width) {
    throw new InvalidArgumentError(
      `prefix (${prefixText.length} characters) leaves no room for digits in width ${width}`,
    );
  }
  const digits = width - prefixText.length;
  if (includesHeader && 10 ** digits - 1 < width) {
    throw new InvalidArgumentError(
      `${digits} digit(s) cannot spell a length that includes the ${width}-byte header`,
    );
  }
  const config: AsciiConfig = {
    width,
    prefix: Buffer.from(prefixText, 'latin1'),
    digits,
    space: pad === 'space',
    includesHeader,
    maxFrameLength,
  };
  return new ConfiguredFraming(asciiName(config), config, new AsciiEncoder(config), newAsciiDecoder);
}

function newAsciiDecoder(config: AsciiConfig): FrameDecoder {
  return new AsciiDecoder(config);
}
