/**
 * Spec strings name a framing in one token, for the CLI and for config files. Every Framing's
 * `name` is its canonical spec string, and `parseFraming(f.name)` builds the same framing again.
 */

import { InvalidArgumentError } from '../errors.js';
import { asciiFraming } from './ascii.js';
import { delimiterFraming, lineFraming } from './delimiter.js';
import { type LengthFieldLength, lengthFieldFraming } from './length-field.js';
import type { Framing } from './types.js';
import { varintFraming } from './varint.js';

/** Options of {@link parseFraming}: what a spec string does not say. */
export interface ParseFramingOptions {
  /** Largest frame, in bytes (see each codec). Default 16 MiB. */
  maxFrameLength?: number;
}

/** The accepted forms, for error messages and `--help`. */
export const FRAMING_SPEC_FORMS: readonly string[] = [
  'ascii            20-character zero-padded ASCII decimal length (= ascii:20)',
  'ascii:N          N-character zero-padded ASCII length',
  'ascii:N:space    N-character space-padded (right-aligned) ASCII length',
  '  …[:incl]       the ASCII length counts the header too',
  '  …[:prefix=HEX] the header starts with this literal text (hex), counted in N',
  'u8 u16be u16le u24be u24le u32be u32le u64be u64le   binary length field',
  '  …[:off=N]      bytes before the length field (lengthFieldOffset)',
  '  …[:adj=N]      lengthAdjustment (may be negative)',
  '  …[:strip=N]    initialBytesToStrip (default: the header)',
  'varint           unsigned LEB128 (protobuf) length',
  'line             lines ending in "\\n", an optional "\\r" before it stripped',
  'crlf             lines ending in "\\r\\n"',
  'delimiter:HEX    frames ending in these bytes, e.g. delimiter:0d0a',
  '  …[:keep]       keep the delimiter on each frame',
];

const FIELD_TYPES: Readonly<Record<string, readonly [LengthFieldLength, 'be' | 'le']>> = {
  u8: [1, 'be'],
  u16be: [2, 'be'],
  u16le: [2, 'le'],
  u24be: [3, 'be'],
  u24le: [3, 'le'],
  u32be: [4, 'be'],
  u32le: [4, 'le'],
  u64be: [8, 'be'],
  u64le: [8, 'le'],
};

const UNSIGNED = /^\d+$/;
const SIGNED = /^-?\d+$/;
const HEX = /^(?:[0-9a-fA-F]{2})+$/;

function invalid(spec: string, why: string): InvalidArgumentError {
  return new InvalidArgumentError(
    `invalid framing spec ${JSON.stringify(spec)}: ${why}. Valid forms:\n  ${FRAMING_SPEC_FORMS.join('\n  ')}`,
  );
}

/**
 * Build a framing from its spec string.
 *
 * @example
 * ```ts
 * parseFraming('ascii');                           // the sources' 20-character ASCII header
 * parseFraming('u32be', { maxFrameLength: 1 << 20 });
 * parseFraming('u16be:off=1:adj=1:strip=3');       // a Netty-style header
 * parseFraming('delimiter:00');                    // NUL-terminated frames
 * ```
 */
export function parseFraming(spec: string, options?: ParseFramingOptions): Framing {
  if (typeof spec !== 'string') throw invalid(String(spec), 'not a string');
  const maxFrameLength = options?.maxFrameLength;
  const limit = maxFrameLength === undefined ? {} : { maxFrameLength };
  const [kind = '', ...args] = spec.split(':');

  const seen = new Set<string>();
  /** Split `key=value` (or a bare flag) and refuse repeats. */
  const option = (arg: string): [string, string | undefined] => {
    const eq = arg.indexOf('=');
    const key = eq === -1 ? arg : arg.slice(0, eq);
    if (seen.has(key)) throw invalid(spec, `'${key}' given twice`);
    seen.add(key);
    return [key, eq === -1 ? undefined : arg.slice(eq + 1)];
  };

  if (kind === 'ascii') {
    let width = 20;
    if (args[0] !== undefined && UNSIGNED.test(args[0])) width = Number(args.shift());
    let pad: 'zero' | 'space' = 'zero';
    let lengthIncludesHeader = false;
    let prefix = '';
    for (const arg of args) {
      const [key, value] = option(arg);
      if (key === 'space' && value === undefined) pad = 'space';
      else if (key === 'incl' && value === undefined) lengthIncludesHeader = true;
      else if (key === 'prefix' && value !== undefined && HEX.test(value)) {
        prefix = Buffer.from(value, 'hex').toString('latin1');
      } else throw invalid(spec, `unknown ascii option '${arg}'`);
    }
    return asciiFraming({ width, pad, lengthIncludesHeader, prefix, ...limit });
  }

  const field = Object.hasOwn(FIELD_TYPES, kind) ? FIELD_TYPES[kind] : undefined;
  if (field !== undefined) {
    const [lengthFieldLength, byteOrder] = field;
    let lengthFieldOffset = 0;
    let lengthAdjustment = 0;
    let initialBytesToStrip: number | undefined;
    for (const arg of args) {
      const [key, value = ''] = option(arg);
      if (key === 'off' && UNSIGNED.test(value)) lengthFieldOffset = Number(value);
      else if (key === 'adj' && SIGNED.test(value)) lengthAdjustment = Number(value);
      else if (key === 'strip' && UNSIGNED.test(value)) initialBytesToStrip = Number(value);
      else throw invalid(spec, `unknown ${kind} option '${arg}'`);
    }
    return lengthFieldFraming({
      lengthFieldLength,
      byteOrder,
      lengthFieldOffset,
      lengthAdjustment,
      ...(initialBytesToStrip === undefined ? {} : { initialBytesToStrip }),
      ...limit,
    });
  }

  if (kind === 'delimiter') {
    const hex = args.shift();
    if (hex === undefined || !HEX.test(hex)) throw invalid(spec, 'delimiter needs its bytes in hex');
    let stripDelimiter = true;
    for (const arg of args) {
      const [key, value] = option(arg);
      if (key === 'keep' && value === undefined) stripDelimiter = false;
      else throw invalid(spec, `unknown delimiter option '${arg}'`);
    }
    return delimiterFraming({ delimiter: Buffer.from(hex, 'hex'), stripDelimiter, ...limit });
  }

  if (args.length > 0 && (kind === 'varint' || kind === 'line' || kind === 'crlf')) {
    throw invalid(spec, `${kind} takes no options`);
  }
  if (kind === 'varint') return varintFraming(limit);
  if (kind === 'line') return lineFraming(limit);
  if (kind === 'crlf') return delimiterFraming({ delimiter: '\r\n', ...limit });
  throw invalid(spec, `unknown framing '${kind}'`);
}
