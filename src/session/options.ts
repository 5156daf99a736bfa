/**
 * A client session's options, checked once where they are written: by the reconnecting Client's
 * constructor and by createClientPool (a bad codec or heartbeat fails there, synchronously, not
 * as failed connects later). The result, a SessionConfig, is what every session of that client
 * or pool is opened with: the codec, the framing (shared by every client with the same frame
 * limit), the Connection options checked once, the heartbeat to offer.
 */

import type tls from 'node:tls';
import { parseFraming } from '../codec/parse.js';
import type { Framing } from '../codec/types.js';
import type { ConnectionOptions } from '../connection/connection.js';
import { type CheckedOptions, checkOptions } from '../connection/options.js';
import { InvalidArgumentError } from '../errors.js';
import { checkHelloMaxFrameLength, isValidCodecName } from '../protocol/hello.js';
import { jsonCodec, type PayloadCodec, rawCodec } from '../protocol/payload.js';
import { durationOrInfinity, finitePositive, timerLimit } from '../util/check.js';
import { type HeartbeatSetting, type HeartbeatTiming, resolveHeartbeat } from './heartbeat.js';

/** Options of one client session: everything a connection and its HELLO need. */
export interface SessionOptions {
  /** Payload codec: 'json' (default), 'raw' (params and results are Buffers), or your own. */
  codec?: 'json' | 'raw' | PayloadCodec;
  /** Default request deadline. Default 30 000 ms. */
  requestTimeoutMs?: number;
  /** Connect + HELLO deadline per attempt. Default 10 000 ms. */
  connectTimeoutMs?: number;
  /** Sent in HELLO for the server to check. */
  credential?: string;
  /** This client's name in HELLO. */
  name?: string;
  /** Largest frame this client accepts. Default 16 MiB. */
  maxFrameLength?: number;
  /**
   * Heartbeat: `{ intervalMs, timeoutMs }`, 'standard' (the default: a dead server is noticed
   * within 30 s), 'strict' (6 s) or false. The peer is declared dead `timeoutMs` after the last
   * byte read; its connection is aborted with reason `heartbeat-timeout` and pending requests fail.
   */
  heartbeat?: HeartbeatSetting;
  /**
   * The path's idle budget: after how long idle a middlebox on the way drops the flow (nginx
   * proxy_timeout, 60 s by default; AWS NLB, 350 s). Derives the heartbeat when none is given,
   * and warns when the given one cannot keep the path open.
   */
  idleBudgetMs?: number;
  /** Options of the underlying Connection (watermarks, keepalive, local address …). */
  connection?: Omit<ConnectionOptions, 'framing'> & { localAddress?: string };
  /**
   * Connect with TLS: any `tls.connect` option (`ca` to trust a private CA, `cert` and `key` for
   * mTLS, `servername` for SNI and the certificate check; it defaults to `host`).
   */
  tls?: tls.ConnectionOptions;
}

/** @internal Checked session options, shared by every session of one client or pool. */
export interface SessionConfig {
  readonly codec: PayloadCodec;
  readonly requestTimeoutMs: number;
  readonly connectTimeoutMs: number;
  /** The heartbeat offered in HELLO (and run), or undefined: answer PINGs, send none. */
  readonly heartbeat: HeartbeatTiming | undefined;
  readonly framing: Framing;
  readonly checked: CheckedOptions;
  readonly options: SessionOptions;
}

/** @internal The result of {@link checkSessionOptions}. */
export interface CheckedSession {
  config: SessionConfig;
  /** Settings that contradict each other (heartbeat vs. idle budget), for a 'warning' event. */
  warning: string | undefined;
}

/** Framings are stateless: every client with the same frame limit shares one (a few hundred bytes each). */
const framings = new Map<number, Framing>();
function framingFor(maxFrameLength: number): Framing {
  let f = framings.get(maxFrameLength);
  if (f === undefined) {
    f = parseFraming('u32be', { maxFrameLength });
    if (framings.size < 64) framings.set(maxFrameLength, f);
  }
  return f;
}

/** @internal Checks session options (InvalidArgumentError on the first bad one). */
export function checkSessionOptions(options: SessionOptions): CheckedSession {
  const c = options.codec ?? 'json';
  const codec = c === 'json' ? jsonCodec : c === 'raw' ? rawCodec : c;
  if (typeof codec?.encode !== 'function' || typeof codec.decode !== 'function') {
    throw new InvalidArgumentError('codec must be "json", "raw" or a PayloadCodec');
  }
  if (!isValidCodecName(codec.name)) {
    throw new InvalidArgumentError(`codec name ${JSON.stringify(codec.name)} is not a valid codec name`);
  }
  const requestTimeoutMs = timerLimit(
    'requestTimeoutMs',
    durationOrInfinity('requestTimeoutMs', options.requestTimeoutMs, 30_000),
  );
  const connectTimeoutMs = timerLimit(
    'connectTimeoutMs',
    finitePositive('connectTimeoutMs', options.connectTimeoutMs, 10_000),
  );
  // The Connection's options, checked once here (not at every connect, where a bad one would
  // only show as failed attempts); each connect hands the result on.
  const framing = framingFor(checkHelloMaxFrameLength(options.maxFrameLength));
  const checked = checkOptions({ ...options.connection, framing });
  if (options.tls !== undefined && (typeof options.tls !== 'object' || options.tls === null)) {
    throw new InvalidArgumentError('tls must be an object of tls.connect options');
  }
  const hb = resolveHeartbeat(options.heartbeat, options.idleBudgetMs);
  return {
    config: { codec, requestTimeoutMs, connectTimeoutMs, heartbeat: hb.timing, framing, checked, options },
    warning: hb.warning,
  };
}
