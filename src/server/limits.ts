/**
 * The server's limits as data: one table of defaults, the same table as in docs/SECURITY.md
 * (Centrifugo's config reference and NATS's `max_payload` / `max_pending` do the same). Every
 * limit answers "what can a peer make us hold, and for how long": each has a default that is
 * finite, a documented outcome when hit, and `0` or `Infinity` only where the docs say so.
 */

import { DEFAULT_MEMORY_BUDGET_BYTES } from '../connection/budget.js';
import { HELLO_DEFAULTS, HELLO_MAX_FRAME_LENGTH } from '../protocol/hello.js';

export const SERVER_DEFAULTS = {
  /** Open connections (after admission); more are refused: GOAWAY ERR_TOO_MANY_CONNECTIONS. */
  maxConnections: 10_000,
  /** Connections from one client address; more are refused like maxConnections. */
  maxConnectionsPerAddress: Number.POSITIVE_INFINITY,
  /** Largest frame once HELLO is done (and HELLO's upper bound); larger: ERR_FRAME_TOO_LARGE, close. */
  maxFrameLength: HELLO_DEFAULTS.maxFrameLength,
  /** Largest frame before HELLO is done and authenticated; larger: ERR_FRAME_TOO_LARGE, close. */
  helloMaxFrameLength: HELLO_MAX_FRAME_LENGTH,
  /** Requests in flight per connection (agreed in HELLO); more: ERR_TOO_MANY_REQUESTS. */
  maxInFlight: HELLO_DEFAULTS.maxInFlight,
  /** Request bytes held by running handlers per connection; at the limit, reading pauses. */
  maxInFlightBytes: 64 * 1024 * 1024,
  /** Bytes queued to a peer that does not read; past it: reset, reason slow-consumer. */
  maxQueuedBytes: 32 * 1024 * 1024,
  /** From accept to a finished HELLO (PROXY header, TLS handshake, HELLO, authenticate). */
  helloTimeoutMs: 10_000,
  /** Async authenticate calls under way at once (closed connections' included); more HELLOs: refused. */
  maxAuthenticating: 1_024,
  /** A handler running longer is answered ERR_TIMEOUT and its signal aborted. */
  handlerTimeoutMs: 60_000,
  /** A frame whose first byte arrived must be complete within this; else reset, reason frame-timeout. */
  frameTimeoutMs: 30_000,
  /** Legacy (plain-framing) connections with nothing read for this long are closed (idle-timeout). */
  legacyIdleTimeoutMs: 120_000,
  /** Buffered peer bytes over all connections of the process; past it the largest holders are reset. */
  memoryBudgetBytes: DEFAULT_MEMORY_BUDGET_BYTES,
  /** Base of the retry hint sent with a refusal; each refusal adds up to as much again at random. */
  retryAfterMs: 1_000,
  /** PINGs closer together than this are strikes; two strikes: GOAWAY ERR_TOO_MANY_PINGS. */
  minPingIntervalMs: 1_000,
  /** With maxConnectionAgeMs: each connection's age is drawn in [1 − this, 1 + this] × the age. */
  maxConnectionAgeJitter: 0.1,
  /** With maxConnectionAgeMs: requests still running this long after the age's GOAWAY are aborted (RST). */
  maxConnectionAgeGraceMs: 30_000,
  /** Rooms one connection may be in (joins and resumes); one more: RoomLimitError, ERR_ROOM_LIMIT. */
  maxRoomsPerConnection: 128,
  /** Longest room name in UTF-8 bytes (the wire allows 255); longer: RoomLimitError. */
  maxRoomNameBytes: 128,
  /** Pushes held for one member while its resume reads the history, and entries read; past it: `$gap`. */
  maxResumeBacklog: 10_000,
} as const;
