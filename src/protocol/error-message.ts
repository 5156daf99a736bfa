/**
 * Errors ⇄ ERROR messages. Kept apart from errors.ts so the error classes stay free of the wire
 * format and the payload codecs.
 */

import { ErrorCode, RemoteError } from './errors.js';
import { jsonCodec, type PayloadCodec } from './payload.js';
import { type ErrorMessage, MAX_NAME_BYTES, MessageKind } from './types.js';

const EMPTY: Buffer = Buffer.alloc(0);
const CODE_RE = /^[\x21-\x7e]+$/;

/**
 * An ERROR message for `err`, answering request `requestId` (0: about the whole connection).
 * `err.code` is used when it is a valid wire code, ERR_HANDLER otherwise; `err.details`, if set,
 * is encoded with `codec` (JSON by default, as before HELLO has agreed on one). Never throws for
 * the error's content: details that cannot be encoded are left out, so that reporting an error
 * cannot itself fail.
 *
 * @example
 * ```ts
 * catch (err) { if (err instanceof ProtocolError) { send(errorToMessage(err)); close(); } }
 * ```
 */
export function errorToMessage(
  err: { readonly code?: unknown; readonly message?: unknown; readonly details?: unknown },
  requestId = 0,
  codec: PayloadCodec = jsonCodec,
): ErrorMessage {
  const code =
    typeof err.code === 'string' && err.code.length <= MAX_NAME_BYTES && CODE_RE.test(err.code)
      ? err.code
      : ErrorCode.HANDLER;
  let details = EMPTY;
  if (err.details !== undefined) {
    try {
      details = codec.encode(err.details);
    } catch {
      details = EMPTY;
    }
  }
  return {
    kind: MessageKind.ERROR,
    id: requestId,
    code,
    message: typeof err.message === 'string' ? err.message : String(err.message ?? ''),
    details,
  };
}

/**
 * The {@link RemoteError} for an ERROR received from the peer. Details are decoded with `codec`
 * (JSON by default); details that fail to decode are kept as a copy of their raw bytes rather
 * than hiding the error they came with.
 */
export function remoteErrorFromMessage(msg: ErrorMessage, codec: PayloadCodec = jsonCodec): RemoteError {
  let details: unknown;
  if (msg.details.length > 0) {
    try {
      details = codec.decode(msg.details);
    } catch {
      details = Buffer.from(msg.details);
    }
    // A decoder that returns its input (raw) would hand out a view of the socket chunk.
    if (details === msg.details) details = Buffer.from(msg.details);
  }
  return new RemoteError(msg.code, msg.message, { requestId: msg.id, details });
}
