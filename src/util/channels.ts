/**
 * Every diagnostics_channel longlink publishes, by name, with the shape of its message: the one
 * contract for logs, metrics and traces (and for anyone else's tooling). Publishing is free when
 * nobody subscribes: every publisher checks `hasSubscribers` first (undici lib/core/diagnostics.js).
 *
 * | channel                            | message                                   | when                                   |
 * |------------------------------------|-------------------------------------------|----------------------------------------|
 * | `longlink:connection:state`        | `{ connection, from, to }`                | a connection changes state             |
 * | `longlink:connection:close`        | `{ connection, info }`                    | a connection is released (its reason)  |
 * | `longlink:server:connection`       | `{ server, connection }`                  | a server starts serving a connection   |
 * | `longlink:server:refused`          | `{ server, refusal }`                     | a server refuses a connection          |
 * | `longlink:heartbeat:rtt`           | `{ connection, rttMs }`                   | a PONG answered our heartbeat PING     |
 * | tracing `longlink:server:request`  | `RequestTrace` (start/end/asyncStart/asyncEnd/error) | a server handler runs         |
 * | tracing `longlink:client:request`  | `RequestTrace` (start/asyncStart/asyncEnd/error)     | a client request, start to answer |
 *
 * The tracing channels follow Node's TracingChannel protocol: `start` before the handler (or the
 * request's send), `end` when it returned synchronously, `asyncStart`/`asyncEnd` around the
 * settlement of its promise, `error` with `message.error` set when it failed. OpenTelemetry and
 * the metrics subscribe to these.
 */

import diagnostics from 'node:diagnostics_channel';

/** The message of the request tracing channels; subscribers may add fields (a span, a start time). */
export interface RequestTrace {
  readonly side: 'client' | 'server';
  readonly method: string;
  /** The request id on its connection (0 before it was sent, on the client). */
  requestId: number;
  connectionId: string | undefined;
  /** What the request carries (protocol 1.1); a client-side subscriber may add to it before the send. */
  metadata: Record<string, string> | undefined;
  /** The error it failed with (set for `error`). */
  error?: unknown;
  /** The result it succeeded with (set for `asyncEnd`/`end` when there is one). */
  result?: unknown;
  /** Free room for subscribers (a span, a start time …). */
  [key: string]: unknown;
}

export const channels = {
  connectionState: diagnostics.channel('longlink:connection:state'),
  connectionClose: diagnostics.channel('longlink:connection:close'),
  serverConnection: diagnostics.channel('longlink:server:connection'),
  serverRefused: diagnostics.channel('longlink:server:refused'),
  heartbeatRtt: diagnostics.channel('longlink:heartbeat:rtt'),
  serverRequest: diagnostics.tracingChannel<object, RequestTrace>('longlink:server:request'),
  clientRequest: diagnostics.tracingChannel<object, RequestTrace>('longlink:client:request'),
} as const;
