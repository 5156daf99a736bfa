/**
 * What devices and the gateway say to each other: one JSON object per frame, each frame behind a
 * 20-digit zero-padded ASCII length header (`ascii:20`), as in the sources' Node.js example:
 *
 *   00000000000000000046{"type":"telemetry","seq":1,"temperature":21.5}
 *
 * Heartbeats travel on the same connection and are told apart from data by their `type`.
 */

/** A device's messages. */
export type DeviceMessage =
  | { type: 'hello'; device: string; firmware: string }
  | { type: 'telemetry'; seq: number; temperature: number; battery: number }
  | { type: 'heartbeat' }
  | { type: 'heartbeat-ack' };

/** The gateway's messages. */
export type GatewayMessage =
  | { type: 'welcome'; heartbeatMs: number }
  | { type: 'ack'; seq: number }
  | { type: 'heartbeat' }
  | { type: 'heartbeat-ack' }
  | { type: 'error'; message: string };

/** The framing both sides use: 20 ASCII digits of body length, then the body. */
export const FRAMING = 'ascii:20';
