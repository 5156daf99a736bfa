/**
 * Errors of the longlink protocol layer, and the stable codes carried in ERROR and GOAWAY
 * messages. docs/PROTOCOL.md ("Error codes") has the table of who sends which code; keep the two
 * in step.
 */

import { LonglinkError, type LonglinkErrorOptions } from '../errors.js';

/**
 * Codes defined by protocol version 1. ERROR and GOAWAY carry a code as 1–255 printable ASCII
 * bytes, so applications may send codes of their own too; these are the ones the protocol and
 * longlink's client and server use.
 */
export const ErrorCode = {
  /** The message's kind byte is not one this side knows. Connection-level; the sender closes. */
  UNKNOWN_KIND: 'ERR_UNKNOWN_KIND',
  /** A message is truncated, overlong or has an invalid field. Connection-level; closes. */
  MALFORMED: 'ERR_MALFORMED',
  /** A well-formed message that breaks a rule (duplicate outstanding id, second HELLO …). */
  PROTOCOL: 'ERR_PROTOCOL',
  /** The peers' protocol major versions differ. Sent instead of the server's HELLO; closes. */
  VERSION: 'ERR_VERSION',
  /** A message other than HELLO arrived before the HELLO exchange finished. Closes. */
  HELLO_REQUIRED: 'ERR_HELLO_REQUIRED',
  /** The client offered no payload codec the server supports. Sent instead of HELLO; closes. */
  NO_COMMON_CODEC: 'ERR_NO_COMMON_CODEC',
  /** The server rejected the HELLO's credential. Sent instead of HELLO; closes. */
  UNAUTHENTICATED: 'ERR_UNAUTHENTICATED',
  /** No handler for the REQUEST's method. The request was not processed. */
  METHOD_NOT_FOUND: 'ERR_METHOD_NOT_FOUND',
  /** The REQUEST's payload could not be decoded with the agreed codec. Not processed. */
  BAD_PAYLOAD: 'ERR_BAD_PAYLOAD',
  /** The requester exceeded the agreed maxInFlight. Not processed; safe to retry. */
  TOO_MANY_REQUESTS: 'ERR_TOO_MANY_REQUESTS',
  /** The handler failed; the message is the handler's. The request may have had effects. */
  HANDLER: 'ERR_HANDLER',
  /** The responder's own deadline for the request passed. It may have had effects. */
  TIMEOUT: 'ERR_TIMEOUT',
  /**
   * 1.1: the caller's deadline (the timeout its REQUEST carried) passed before the answer. It may
   * have had effects. A longlink client reports it as its own RequestTimeoutError.
   */
  DEADLINE_EXCEEDED: 'ERR_DEADLINE_EXCEEDED',
  /** The responder stopped the request after a CANCEL. It may have had effects. */
  CANCELLED: 'ERR_CANCELLED',
  /** The REQUEST arrived after the responder's GOAWAY. Not processed; safe to retry elsewhere. */
  SHUTTING_DOWN: 'ERR_SHUTTING_DOWN',
  /** The server is at its connection limit (GOAWAY reason, lastId 0, with a retry-after hint). */
  TOO_MANY_CONNECTIONS: 'ERR_TOO_MANY_CONNECTIONS',
  /**
   * GOAWAY reason (retry hint 0): the connection reached the server's `maxConnectionAgeMs`. Its
   * accepted requests are answered; reconnect (through the balancer) and carry on.
   */
  MAX_CONNECTION_AGE: 'ERR_MAX_CONNECTION_AGE',
} as const;

/** One of the codes of {@link ErrorCode}. */
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/** Options of {@link ProtocolError}. */
export interface ProtocolErrorOptions extends LonglinkErrorOptions {
  /** Structured details to send along when this error is turned into an ERROR message. */
  details?: unknown;
}

/**
 * The peer broke the protocol: an unknown kind, a malformed message, a version mismatch, a
 * failed HELLO negotiation. Raised by the message decoder and the HELLO helpers. The usual
 * answer is to send it as a connection-level ERROR (`errorToMessage(err)`) and close.
 *
 * @example
 * ```ts
 * try { msg = decodeMessage(frame); }
 * catch (err) {
 *   if (err instanceof ProtocolError) { send(errorToMessage(err)); closeGracefully(); }
 *   else throw err;
 * }
 * ```
 */
export class ProtocolError extends LonglinkError {
  static override readonly brand: string = 'ProtocolError';
  /** Structured details for the peer (JSON-encodable), or undefined. */
  readonly details: unknown;
  constructor(code: string, message: string, options?: ProtocolErrorOptions) {
    super(code, message, options);
    this.details = options?.details;
  }
}

/** Options of {@link RemoteError}. */
export interface RemoteErrorOptions extends LonglinkErrorOptions {
  /** The request the ERROR answered; 0 for a connection-level error. */
  requestId?: number;
  /** The decoded details payload, or the raw bytes when they could not be decoded. */
  details?: unknown;
}

/**
 * An ERROR message received from the peer. `code` is the peer's code verbatim (see
 * {@link ErrorCode} for the ones the protocol defines), `message` the peer's text.
 *
 * @example
 * ```ts
 * try { await client.request('user.get', { id: 7 }); }
 * catch (err) {
 *   if (err instanceof RemoteError && err.code === 'ERR_METHOD_NOT_FOUND') …
 * }
 * ```
 */
export class RemoteError extends LonglinkError {
  static override readonly brand: string = 'RemoteError';
  /** Id of the request this error answered; 0 when the error is about the whole connection. */
  readonly requestId: number;
  /** The details the peer attached, decoded with the agreed payload codec; undefined if none. */
  readonly details: unknown;
  constructor(code: string, message: string, options?: RemoteErrorOptions) {
    super(code, message, options);
    this.requestId = options?.requestId ?? 0;
    this.details = options?.details;
  }
}
