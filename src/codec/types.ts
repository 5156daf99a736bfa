/**
 * The framing contract. Codecs are pure: bytes in, frames out; they never touch a socket, so they
 * can be tested one byte at a time (Netty's LengthFieldBasedFrameDecoder, grpc-js stream-decoder).
 */

/**
 * A streaming decoder. Feed it the byte stream in chunks of any size; it returns every frame the
 * chunk completed, in order.
 *
 * - A frame that lies wholly inside one chunk is returned as a `subarray` view of that chunk (no
 *   copy); a frame that spans chunks is copied once into a buffer of exactly its size.
 * - A declared length above `maxFrameLength` throws {@link FrameTooLargeError} as soon as the
 *   header is read, before any of the body is buffered. An unparsable header throws
 *   {@link BadFrameHeaderError}. After a throw the decoder is poisoned: every later `push` throws
 *   the same error, since the stream position is lost.
 * - `end()` is called at end of stream: it throws {@link TruncatedFrameError} when a partial frame
 *   is buffered.
 */
export interface FrameDecoder {
  /** Consume `chunk`; return the frames it completed (possibly none). */
  push(chunk: Buffer): Buffer[];
  /** Signal end of stream; throws TruncatedFrameError if a partial frame is buffered. */
  end(): void;
  /** Bytes held for a frame not yet complete. */
  readonly bufferedBytes: number;
  /**
   * Sets the largest frame accepted from now on, never above the framing's own `maxFrameLength`
   * (a value above it means the framing's limit). A protocol lowers it until a handshake is done.
   */
  limit(maxFrameLength: number): void;
}

/**
 * A frame encoder. `encode` returns the chunks whose concatenation is the framed payload. The
 * payload itself is one of those chunks, never copied; write them with `cork()`/`uncork()` or
 * `writev`. Throws {@link FrameTooLargeError} for a payload above `maxFrameLength`.
 */
export interface FrameEncoder {
  encode(payload: Buffer): Buffer[];
  /**
   * Frames the concatenation of `parts` as one payload, passing the parts through uncopied
   * (a protocol header chunk plus a large body). Same limits as `encode`.
   */
  encodeParts(parts: readonly Buffer[]): Buffer[];
  /** Bytes the framing adds to a payload of `payloadLength` bytes. */
  overhead(payloadLength: number): number;
  /**
   * For framings whose header is a fixed-width prefix: its width. A caller may then build the
   * frame in one buffer, reserving this many bytes in front of the payload and filling them with
   * {@link writePrefix} (one allocation and one write per small frame instead of two). Undefined
   * for framings without a fixed prefix (varint, delimiters).
   */
  readonly prefixLength?: number | undefined;
  /** Writes the prefix for a payload of `payloadLength` bytes into `target[0, prefixLength)`. Same limits as `encode`. */
  writePrefix?(target: Buffer, payloadLength: number): void;
  /**
   * @internal {@link writePrefix} at `target[at, at + prefixLength)`: what lets a connection encode
   * small frames straight into the process's output slab (connection/slab.ts). Only longlink's own
   * encoders are used that way (codec/length-prefixed.ts `writesInPlace`): an encoder of the
   * application's is used through `encode`/`writePrefix`.
   */
  writePrefixAt?(target: Buffer, at: number, payloadLength: number): void;
}

/**
 * A framing: a factory for decoders (one per connection, they hold state) and a stateless encoder.
 * `maxFrameLength` limits the bytes a decoder emits per frame and the payload an encoder accepts.
 */
export interface Framing {
  /** Canonical spec string, e.g. `ascii:20`, `u32be`, `varint`, `line` (see parseFraming). */
  readonly name: string;
  readonly maxFrameLength: number;
  createDecoder(): FrameDecoder;
  readonly encoder: FrameEncoder;
}

/**
 * The one Framing every codec builds: a name, one shared encoder, and a decoder per connection
 * made from the same (shared, immutable) config.
 */
export class ConfiguredFraming<C extends { readonly maxFrameLength: number }> implements Framing {
  readonly maxFrameLength: number;

  constructor(
    readonly name: string,
    private readonly config: C,
    readonly encoder: FrameEncoder,
    private readonly makeDecoder: (config: C) => FrameDecoder,
  ) {
    this.maxFrameLength = config.maxFrameLength;
  }

  createDecoder(): FrameDecoder {
    return this.makeDecoder(this.config);
  }
}

/** Default limit on a frame: 16 MiB. Large enough for real messages, small enough to refuse abuse. */
export const DEFAULT_MAX_FRAME_LENGTH = 16 * 1024 * 1024;
