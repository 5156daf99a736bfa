/**
 * Framing codecs: streaming decoders and encoders that turn a TCP byte stream into frames and back.
 * Pure code, no sockets; see docs/framing.md.
 */

export { type AsciiFramingOptions, asciiFraming } from './ascii.js';
export {
  type DelimiterFramingOptions,
  delimiterFraming,
  type LineFramingOptions,
  lineFraming,
} from './delimiter.js';
export {
  type LengthFieldFramingOptions,
  type LengthFieldLength,
  type LengthFieldPresetOptions,
  lengthFieldFraming,
  u8,
  u16be,
  u16le,
  u24be,
  u32be,
  u32le,
  u64be,
} from './length-field.js';
export { FRAMING_SPEC_FORMS, type ParseFramingOptions, parseFraming } from './parse.js';
export { DEFAULT_MAX_FRAME_LENGTH, type FrameDecoder, type FrameEncoder, type Framing } from './types.js';
export { type VarintFramingOptions, varintFraming } from './varint.js';
