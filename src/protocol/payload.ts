/**
 * Payload codecs: how REQUEST / RESPONSE / NOTIFY payloads and ERROR details turn into bytes.
 * The protocol itself only moves bytes; the codec is agreed per connection in HELLO (the client
 * lists what it supports, most preferred first, and the server picks the first it also has).
 */

import { isUtf8 } from 'node:buffer';
import { InvalidArgumentError } from '../errors.js';
import { ErrorCode, ProtocolError } from './errors.js';
import { isValidCodecName } from './hello.js';

/**
 * Turns application values into payload bytes and back.
 *
 * `encode` throws InvalidArgumentError for a value it cannot represent. `decode` throws
 * ProtocolError with code ERR_BAD_PAYLOAD for bytes it cannot read (a server answers such a
 * REQUEST with an ERROR of that code). `decode` may be handed a view into a socket chunk: a codec
 * that returns the bytes themselves (like the built-in `raw` codec) passes that view on.
 *
 * @example
 * ```ts
 * import { encode, decode } from '@msgpack/msgpack';
 * const msgpack: PayloadCodec = {
 *   name: 'msgpack',
 *   encode: (v) => { const u = encode(v); return Buffer.from(u.buffer, u.byteOffset, u.byteLength); },
 *   decode: (b) => decode(b),
 * };
 * registry.register(msgpack);
 * ```
 */
export interface PayloadCodec {
  /** 1–64 printable ASCII characters, as listed in HELLO. */
  readonly name: string;
  encode(value: unknown): Buffer;
  decode(bytes: Buffer): unknown;
}

const EMPTY: Buffer = Buffer.alloc(0);

/**
 * JSON, UTF-8. `undefined` is the empty payload (and the empty payload decodes to `undefined`),
 * so a request without arguments costs no bytes. The default codec: every peer supports it.
 */
export const jsonCodec: PayloadCodec = {
  name: 'json',
  encode(value: unknown): Buffer {
    if (value === undefined) return EMPTY;
    let text: string | undefined;
    try {
      text = JSON.stringify(value);
    } catch (err) {
      // BigInt, cycles, a throwing toJSON.
      throw new InvalidArgumentError(`value cannot be encoded as JSON: ${(err as Error).message}`, {
        cause: err,
      });
    }
    // A function or symbol at top level stringifies to undefined.
    if (text === undefined) throw new InvalidArgumentError(`value of type ${typeof value} has no JSON form`);
    return Buffer.from(text, 'utf8');
  },
  decode(bytes: Buffer): unknown {
    if (bytes.length === 0) return undefined;
    if (!isUtf8(bytes)) throw new ProtocolError(ErrorCode.BAD_PAYLOAD, 'JSON payload is not valid UTF-8');
    try {
      return JSON.parse(bytes.toString('utf8'));
    } catch (err) {
      throw new ProtocolError(ErrorCode.BAD_PAYLOAD, 'payload is not valid JSON', { cause: err });
    }
  },
};

/**
 * Bytes as they are: `encode` takes a Buffer (returned as is) or any Uint8Array (wrapped, not
 * copied), and `undefined` as no bytes (a handler with nothing to return); it rejects everything
 * else. `decode` returns the bytes, a view into the frame.
 */
export const rawCodec: PayloadCodec = {
  name: 'raw',
  encode(value: unknown): Buffer {
    if (Buffer.isBuffer(value)) return value;
    if (value === undefined) return EMPTY;
    if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
    throw new InvalidArgumentError(
      `the raw codec takes a Buffer or Uint8Array, got ${value === null ? 'null' : typeof value}`,
    );
  },
  decode(bytes: Buffer): unknown {
    return bytes;
  },
};

/**
 * The payload codecs one side supports, in order of preference.
 *
 * @example
 * ```ts
 * const codecs = new PayloadCodecRegistry([msgpack, jsonCodec]);
 * const offer = { codecs: codecs.names() };          // client HELLO: ['msgpack', 'json']
 * const codec = codecs.negotiate(['cbor', 'json']);  // server side: jsonCodec
 * ```
 */
export class PayloadCodecRegistry {
  readonly #codecs = new Map<string, PayloadCodec>();

  /** Starts with `codecs`, in that order; by default `[jsonCodec, rawCodec]`. */
  constructor(codecs: Iterable<PayloadCodec> = [jsonCodec, rawCodec]) {
    for (const c of codecs) this.register(c);
  }

  /**
   * Adds `codec` at the end of the preference order, or replaces the codec of the same name in
   * place. Throws InvalidArgumentError for a malformed codec or name.
   */
  register(codec: PayloadCodec): this {
    if (
      typeof codec !== 'object' ||
      codec === null ||
      typeof codec.encode !== 'function' ||
      typeof codec.decode !== 'function'
    ) {
      throw new InvalidArgumentError('a payload codec needs a name, encode() and decode()');
    }
    if (typeof codec.name !== 'string' || !isValidCodecName(codec.name)) {
      throw new InvalidArgumentError(
        `codec name must be 1–64 printable ASCII characters: ${String(codec.name)}`,
      );
    }
    this.#codecs.set(codec.name, codec);
    return this;
  }

  /** The codec called `name`, or undefined. */
  get(name: string): PayloadCodec | undefined {
    return this.#codecs.get(name);
  }

  has(name: string): boolean {
    return this.#codecs.has(name);
  }

  /** Codec names in preference order: what a client lists in its HELLO. */
  names(): string[] {
    return [...this.#codecs.keys()];
  }

  /**
   * The first codec of `offered` (the peer's names, most preferred first) that this registry
   * has, or undefined when there is none in common. Absent `offered` means `['json']`.
   */
  negotiate(offered: readonly string[] = ['json']): PayloadCodec | undefined {
    for (const name of offered) {
      const c = this.#codecs.get(name);
      if (c !== undefined) return c;
    }
    return undefined;
  }
}
