/**
 * longlink's errors: one base class, a stable string `code` per subclass that users match on,
 * `cause` for the underlying error, and a brand so `instanceof` works even when two copies of the
 * package are loaded (undici lib/core/errors.js does the same with Symbol.for).
 *
 * The table of codes lives in docs/errors.md; keep them in step.
 */

const kBrands = Symbol.for('longlink.error.brands');

type Brands = readonly string[];

/** Options every longlink error accepts. */
export interface LonglinkErrorOptions {
  cause?: unknown;
}

/**
 * Base class of every error longlink throws, rejects with or reports in a close event.
 *
 * @example
 * ```ts
 * try { await conn.write(frame); }
 * catch (err) { if (err instanceof LonglinkError && err.code === 'ERR_CONNECTION_CLOSED') … }
 * ```
 */
export class LonglinkError extends Error {
  /** Brand used by `instanceof` across package copies; subclasses override it. */
  static readonly brand: string = 'LonglinkError';
  /** Stable, documented code (see docs/errors.md). */
  readonly code: string;
  /** @internal */
  declare readonly [kBrands]: Brands;

  constructor(code: string, message: string, options?: LonglinkErrorOptions) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.name = new.target.name;
    // Record the brand of every class in the chain so `x instanceof FramingError` holds for a
    // FrameTooLargeError made by another copy of the package.
    const brands: string[] = [];
    for (let c: unknown = new.target; typeof c === 'function'; c = Object.getPrototypeOf(c)) {
      const b = (c as { brand?: unknown }).brand;
      if (typeof b === 'string' && Object.hasOwn(c, 'brand')) brands.push(b);
      if (c === LonglinkError) break;
    }
    Object.defineProperty(this, kBrands, { value: brands, enumerable: false });
  }

  static override [Symbol.hasInstance](value: unknown): boolean {
    if (typeof value !== 'object' || value === null) return false;
    const brands = (value as { [kBrands]?: unknown })[kBrands];
    return Array.isArray(brands) && brands.includes(this.brand);
  }
}

/** An option or argument the caller passed is invalid. Thrown synchronously, nothing changes. */
export class InvalidArgumentError extends LonglinkError {
  static override readonly brand: string = 'InvalidArgumentError';
  constructor(message: string, options?: LonglinkErrorOptions) {
    super('ERR_INVALID_ARGUMENT', message, options);
  }
}

/** The platform cannot do what was asked (e.g. no native socket-option helper). */
export class UnsupportedError extends LonglinkError {
  static override readonly brand: string = 'UnsupportedError';
  constructor(message: string, options?: LonglinkErrorOptions) {
    super('ERR_UNSUPPORTED', message, options);
  }
}

/**
 * A feature needs an optional peer dependency that is not installed (metrics need `prom-client`,
 * traces `@opentelemetry/api`). The message says what to install.
 */
export class MissingDependencyError extends LonglinkError {
  static override readonly brand: string = 'MissingDependencyError';
  /** The npm package to install. */
  readonly packageName: string;
  constructor(packageName: string, feature: string, options?: LonglinkErrorOptions) {
    super(
      'ERR_MISSING_DEPENDENCY',
      `${feature} needs the optional peer dependency ${packageName}, which is not installed: npm install ${packageName}`,
      options,
    );
    this.packageName = packageName;
  }
}

// ---------------------------------------------------------------------------------------------
// Framing

/** Base of every error a frame decoder or encoder raises. The bytes are not a valid frame. */
export class FramingError extends LonglinkError {
  static override readonly brand: string = 'FramingError';
}

/** A frame's declared length exceeds `maxFrameLength`; raised as soon as the header is read. */
export class FrameTooLargeError extends FramingError {
  static override readonly brand: string = 'FrameTooLargeError';
  readonly length: number;
  readonly maxFrameLength: number;
  constructor(length: number, maxFrameLength: number, options?: LonglinkErrorOptions) {
    super(
      'ERR_FRAME_TOO_LARGE',
      `frame of ${length} bytes exceeds maxFrameLength ${maxFrameLength}`,
      options,
    );
    this.length = length;
    this.maxFrameLength = maxFrameLength;
  }
}

/** A frame header that cannot be parsed (a non-digit in an ASCII length, a runaway varint …). */
export class BadFrameHeaderError extends FramingError {
  static override readonly brand: string = 'BadFrameHeaderError';
  constructor(message: string, options?: LonglinkErrorOptions) {
    super('ERR_BAD_FRAME_HEADER', message, options);
  }
}

/**
 * The stream ended inside a frame. Node reports an RST that lands on unread data as a clean
 * `'end'`, so a partial frame at EOF is the only sign that the peer's data was cut short.
 */
export class TruncatedFrameError extends FramingError {
  static override readonly brand: string = 'TruncatedFrameError';
  readonly bufferedBytes: number;
  constructor(bufferedBytes: number, options?: LonglinkErrorOptions) {
    super('ERR_FRAME_TRUNCATED', `stream ended inside a frame (${bufferedBytes} bytes buffered)`, options);
    this.bufferedBytes = bufferedBytes;
  }
}

// ---------------------------------------------------------------------------------------------
// Connections

/** Opening a connection failed (refused, unreachable, DNS). `cause` holds the system error. */
export class ConnectError extends LonglinkError {
  static override readonly brand: string = 'ConnectError';
  constructor(message: string, options?: LonglinkErrorOptions) {
    super('ERR_CONNECT', message, options);
  }
}

/** Opening a connection took longer than its timeout. */
export class ConnectTimeoutError extends LonglinkError {
  static override readonly brand: string = 'ConnectTimeoutError';
  constructor(timeoutMs: number, options?: LonglinkErrorOptions) {
    super('ERR_CONNECT_TIMEOUT', `connect did not complete within ${timeoutMs} ms`, options);
  }
}

/**
 * The connection is closed, or closing, and cannot take the operation. `reason` is the close
 * reason when the connection has closed (see {@link CloseReason} in the connection module).
 */
export class ConnectionClosedError extends LonglinkError {
  static override readonly brand: string = 'ConnectionClosedError';
  readonly reason: string | undefined;
  constructor(
    message: string,
    reason?: string,
    options?: LonglinkErrorOptions,
    code = 'ERR_CONNECTION_CLOSED',
  ) {
    super(code, message, options);
    this.reason = reason;
  }
}

/**
 * A request no server processed: it was never written, or the server handed it back with its
 * GOAWAY (id above the last it read), and the client could not send it again (client closed,
 * reconnect off or exhausted, `whenDisconnected: 'fail'`). Safe to retry anywhere, even when the
 * request is not idempotent. `cause` holds the last connection error, if any.
 */
export class RequestNotSentError extends ConnectionClosedError {
  static override readonly brand: string = 'RequestNotSentError';
  constructor(message: string, options?: LonglinkErrorOptions) {
    super(message, undefined, options, 'ERR_NOT_SENT');
  }
}

/** The peer reset the connection (RST): data in flight in either direction may be lost. */
export class ConnectionResetError extends LonglinkError {
  static override readonly brand: string = 'ConnectionResetError';
  constructor(message: string, options?: LonglinkErrorOptions) {
    super('ERR_CONNECTION_RESET', message, options);
  }
}

/** Any other socket-level failure (EPIPE, ETIMEDOUT, EHOSTUNREACH …); `cause` holds it. */
export class SocketError extends LonglinkError {
  static override readonly brand: string = 'SocketError';
  constructor(message: string, options?: LonglinkErrorOptions) {
    super('ERR_SOCKET', message, options);
  }
}

/** A graceful close did not finish within its deadline; the connection was aborted (RST). */
export class CloseTimeoutError extends LonglinkError {
  static override readonly brand: string = 'CloseTimeoutError';
  readonly unsentBytes: number;
  constructor(timeoutMs: number, unsentBytes: number, options?: LonglinkErrorOptions) {
    super(
      'ERR_CLOSE_TIMEOUT',
      `graceful close did not finish within ${timeoutMs} ms; aborted with ${unsentBytes} bytes unacknowledged`,
      options,
    );
    this.unsentBytes = unsentBytes;
  }
}

/** A linger deadline passed before the peer acknowledged every byte; the connection was reset. */
export class LingerExpiredError extends LonglinkError {
  static override readonly brand: string = 'LingerExpiredError';
  readonly lostBytes: number;
  constructor(timeoutMs: number, lostBytes: number, options?: LonglinkErrorOptions) {
    super(
      'ERR_LINGER_EXPIRED',
      `linger of ${timeoutMs} ms expired with ${lostBytes} bytes unacknowledged; connection reset`,
      options,
    );
    this.lostBytes = lostBytes;
  }
}

/**
 * Nothing was read from the peer for the heartbeat timeout: it is declared dead and the
 * connection aborted (a cut link, a frozen process, a middlebox that dropped the flow).
 */
export class HeartbeatTimeoutError extends LonglinkError {
  static override readonly brand: string = 'HeartbeatTimeoutError';
  readonly silentMs: number;
  readonly timeoutMs: number;
  constructor(silentMs: number, timeoutMs: number, options?: LonglinkErrorOptions) {
    super(
      'ERR_HEARTBEAT_TIMEOUT',
      `peer silent for ${silentMs} ms (heartbeat timeout ${timeoutMs} ms): declared dead`,
      options,
    );
    this.silentMs = silentMs;
    this.timeoutMs = timeoutMs;
  }
}

/** The operation was aborted through its AbortSignal. */
export class AbortedError extends LonglinkError {
  static override readonly brand: string = 'AbortedError';
  constructor(message = 'operation aborted', options?: LonglinkErrorOptions) {
    super('ERR_ABORTED', message, options);
  }
}

// ---------------------------------------------------------------------------------------------
// PROXY protocol

/**
 * Why a PROXY protocol header was refused (see src/server/proxy-header.ts for each rule):
 * `bad-signature` — the first bytes are neither "PROXY" (v1) nor the v2 signature;
 * `bad-v1` / `bad-v2` — the header breaks its version's grammar;
 * `too-long` — no CRLF in the first 107 bytes (v1), or a v2 length above `maxV2Bytes`;
 * `unsupported` — a v2 signature with a version nibble other than 2;
 * `truncated` — the stream ended inside the header.
 */
export type ProxyHeaderErrorReason =
  | 'bad-signature'
  | 'bad-v1'
  | 'bad-v2'
  | 'too-long'
  | 'unsupported'
  | 'truncated';

/**
 * A PROXY protocol header (haproxy's proxy-protocol.txt, v1 or v2) that cannot be valid whatever
 * follows; the spec asks the receiver to abort such a connection at once (§2.1).
 */
export class ProxyHeaderError extends LonglinkError {
  static override readonly brand: string = 'ProxyHeaderError';
  readonly reason: ProxyHeaderErrorReason;
  constructor(message: string, reason: ProxyHeaderErrorReason, options?: LonglinkErrorOptions) {
    super('ERR_PROXY_HEADER', message, options);
    this.reason = reason;
  }
}

/**
 * A frame's first bytes arrived, and the rest did not within `frameTimeoutMs`: a sender that holds
 * a buffer open byte by byte (slowloris). The connection was reset.
 */
export class FrameTimeoutError extends LonglinkError {
  static override readonly brand: string = 'FrameTimeoutError';
  readonly bufferedBytes: number;
  readonly timeoutMs: number;
  constructor(bufferedBytes: number, timeoutMs: number, options?: LonglinkErrorOptions) {
    super(
      'ERR_FRAME_TIMEOUT',
      `frame not completed within ${timeoutMs} ms of its first byte (${bufferedBytes} bytes buffered)`,
      options,
    );
    this.bufferedBytes = bufferedBytes;
    this.timeoutMs = timeoutMs;
  }
}

/**
 * The peer does not read what is sent to it: the outbound queue passed `maxQueuedBytes`, or the
 * peer stayed silent for the heartbeat timeout while reading from it was paused for backpressure.
 * The connection was reset and the queue discarded.
 */
export class SlowConsumerError extends LonglinkError {
  static override readonly brand: string = 'SlowConsumerError';
  readonly queuedBytes: number;
  constructor(message: string, queuedBytes: number, options?: LonglinkErrorOptions) {
    super('ERR_SLOW_CONSUMER', message, options);
    this.queuedBytes = queuedBytes;
  }
}

/**
 * The process-wide memory budget for buffered bytes was exceeded and this connection held the
 * most: it was reset to bring the total back under the budget.
 */
export class OverloadError extends LonglinkError {
  static override readonly brand: string = 'OverloadError';
  readonly heldBytes: number;
  readonly budgetBytes: number;
  constructor(heldBytes: number, budgetBytes: number, options?: LonglinkErrorOptions) {
    super(
      'ERR_OVERLOAD',
      `memory budget of ${budgetBytes} bytes exceeded; this connection held ${heldBytes} bytes`,
      options,
    );
    this.heldBytes = heldBytes;
    this.budgetBytes = budgetBytes;
  }
}

// ---------------------------------------------------------------------------------------------
// Rooms and the broker

/** Which room limit was hit (see SERVER_DEFAULTS and docs/SECURITY.md). */
export type RoomLimit = 'maxRoomsPerConnection' | 'maxRoomNameBytes';

/**
 * A join or a publish went past a room limit: the connection is in `maxRoomsPerConnection` rooms
 * already, or the room's name is longer than `maxRoomNameBytes` (or empty). Nothing changed. A
 * handler that lets it escape answers its request with ERROR `ERR_ROOM_LIMIT`.
 */
export class RoomLimitError extends LonglinkError {
  static override readonly brand: string = 'RoomLimitError';
  readonly limit: RoomLimit;
  readonly value: number;
  constructor(limit: RoomLimit, value: number, message: string, options?: LonglinkErrorOptions) {
    super('ERR_ROOM_LIMIT', message, options);
    this.limit = limit;
    this.value = value;
  }
}

/**
 * The broker behind the rooms (Redis) cannot take the publish. `sent` false: it was never sent
 * (the broker is known to be down, or the command queue is full), so it was certainly not
 * published: safe to retry. `sent` true: it was sent and no answer came within the publish
 * timeout: it may or may not have been published (a retry may deliver it twice, under two seqs).
 * The server keeps serving its own connections meanwhile.
 */
export class BrokerUnavailableError extends LonglinkError {
  static override readonly brand: string = 'BrokerUnavailableError';
  readonly sent: boolean;
  constructor(message: string, sent: boolean, options?: LonglinkErrorOptions) {
    super('ERR_BROKER_UNAVAILABLE', message, options);
    this.sent = sent;
  }
}
