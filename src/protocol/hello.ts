/**
 * HELLO: the parameters' JSON encoding and validation, and the negotiation both sides run.
 *
 * The client sends HELLO first and sends nothing else until the server's HELLO arrives; the
 * server answers with its own HELLO carrying the agreed values, or with an ERROR (id 0) and
 * closes. The rules are in docs/PROTOCOL.md ("HELLO negotiation"); `answerHello` (server) and
 * `acceptHello` (client) implement them so both ends agree by construction.
 */

import { isUtf8 } from 'node:buffer';
import { DEFAULT_MAX_FRAME_LENGTH } from '../codec/types.js';
import { InvalidArgumentError } from '../errors.js';
import { ErrorCode, ProtocolError } from './errors.js';
import { type HelloMessage, type HelloParams, MessageKind, PROTOCOL_VERSION } from './types.js';

/** Major version of `version` (`major << 8 | minor`). */
export function versionMajor(version: number): number {
  return version >>> 8;
}

/** Minor version of `version` (`major << 8 | minor`). */
export function versionMinor(version: number): number {
  return version & 0xff;
}

/** `"1.0"` for 0x0100. */
export function formatVersion(version: number): string {
  return `${version >>> 8}.${version & 0xff}`;
}

/** Smallest maxFrameLength a peer may announce: enough for any HELLO, ERROR or GOAWAY header. */
export const MIN_MAX_FRAME_LENGTH = 1024;
/** Largest timer value (setTimeout's limit, 2^31-1 ms): heartbeat fields must not exceed it. */
const MAX_TIMER_MS = 0x7fff_ffff;
/** Limits on the `codecs` list: a HELLO is small. */
const MAX_CODECS = 32;
/** Longest `name` a peer may announce, in UTF-16 units (a label for logs, not a document). */
export const MAX_HELLO_NAME_LENGTH = 255;
/** Longest `credential` (a token, a password; a JWT is typically under 2 KiB). */
export const MAX_HELLO_CREDENTIAL_LENGTH = 4096;
/**
 * Largest frame a server takes before the HELLO exchange is done (and its credential checked):
 * enough for a HELLO with every field at its limit, far from the 16 MiB a ready connection may
 * send. An unauthenticated peer can make the server hold no more than this per connection.
 */
export const HELLO_MAX_FRAME_LENGTH = 8 * 1024;
const CODEC_NAME_RE = /^[\x21-\x7e]{1,64}$/;

/** Values the negotiation falls back on when neither side states one. */
export const HELLO_DEFAULTS = {
  /** 10 s between PINGs on an idle connection … */
  heartbeatIntervalMs: 10_000,
  /** … and 30 s of silence before it is declared dead (the sources' 30–40 s detection window). */
  heartbeatTimeoutMs: 30_000,
  /** The server never agrees to PING more often than this. */
  minHeartbeatIntervalMs: 1_000,
  maxFrameLength: DEFAULT_MAX_FRAME_LENGTH,
  maxInFlight: 16_384,
  codecs: ['json'] as readonly string[],
} as const;

/** True if `name` is a valid payload codec name: 1–64 printable ASCII characters. */
export function isValidCodecName(name: string): boolean {
  return CODEC_NAME_RE.test(name);
}

/**
 * Checks the known fields of a HELLO params object; returns a problem description or undefined.
 * Unknown keys are not looked at.
 */
/**
 * A side's `maxFrameLength`, checked where it is configured: HELLO carries it as a u32 and
 * refuses less than {@link MIN_MAX_FRAME_LENGTH}, so anything outside that could never connect.
 */
export function checkHelloMaxFrameLength(value: unknown): number {
  if (value === undefined) return HELLO_DEFAULTS.maxFrameLength;
  if (
    typeof value !== 'number' ||
    !Number.isInteger(value) ||
    value < MIN_MAX_FRAME_LENGTH ||
    value > 0xffff_ffff
  ) {
    throw new InvalidArgumentError(
      `maxFrameLength must be an integer in [${MIN_MAX_FRAME_LENGTH}, ${0xffff_ffff}], got ${String(value)}`,
    );
  }
  return value;
}

function helloProblem(p: Record<string, unknown>): string | undefined {
  const checkInt = (key: string, min: number, max: number): string | undefined => {
    const v = p[key];
    if (v === undefined) return undefined;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
      return `${key} must be an integer in [${min}, ${max}], got ${JSON.stringify(v) ?? String(v)}`;
    }
    return undefined;
  };
  const checkString = (key: string, maxLength = 64): string | undefined => {
    const v = p[key];
    if (v === undefined) return undefined;
    if (typeof v !== 'string') return `${key} must be a string`;
    return v.length <= maxLength
      ? undefined
      : `${key} must be at most ${maxLength} characters, got ${v.length}`;
  };
  const problem =
    checkInt('heartbeatIntervalMs', 1, MAX_TIMER_MS) ??
    checkInt('heartbeatTimeoutMs', 1, MAX_TIMER_MS) ??
    checkInt('maxFrameLength', MIN_MAX_FRAME_LENGTH, 0xffff_ffff) ??
    checkInt('maxInFlight', 1, 0xffff_ffff) ??
    checkString('credential', MAX_HELLO_CREDENTIAL_LENGTH) ??
    checkString('name', MAX_HELLO_NAME_LENGTH) ??
    checkString('codec');
  if (problem !== undefined) return problem;
  if (p.resume !== undefined && typeof p.resume !== 'boolean') return 'resume must be a boolean';
  if (typeof p.codec === 'string' && !isValidCodecName(p.codec)) return 'codec is not a valid codec name';
  const codecs = p.codecs;
  if (codecs !== undefined) {
    if (!Array.isArray(codecs) || codecs.length === 0 || codecs.length > MAX_CODECS) {
      return `codecs must be a list of 1–${MAX_CODECS} codec names`;
    }
    for (const c of codecs) {
      if (typeof c !== 'string' || !isValidCodecName(c)) return 'codecs holds an invalid codec name';
    }
  }
  return undefined;
}

/** The known keys, in the order they are written; everything else is dropped. */
const HELLO_KEYS = [
  'heartbeatIntervalMs',
  'heartbeatTimeoutMs',
  'maxFrameLength',
  'maxInFlight',
  'codecs',
  'codec',
  'credential',
  'name',
  'resume',
] as const;

function pickKnown(p: Record<string, unknown>): HelloParams {
  const out: Record<string, unknown> = {};
  for (const k of HELLO_KEYS) {
    const v = p[k];
    if (v !== undefined) out[k] = k === 'codecs' ? [...(v as string[])] : v;
  }
  return out as HelloParams;
}

/**
 * HELLO params → the JSON bytes of a HELLO. Only known keys are written, in a fixed order.
 * Throws InvalidArgumentError for a field this side would itself reject.
 */
export function encodeHelloParams(params: HelloParams): Buffer {
  if (typeof params !== 'object' || params === null) {
    throw new InvalidArgumentError('HELLO params must be an object');
  }
  const rec = params as Record<string, unknown>;
  const problem = helloProblem(rec);
  if (problem !== undefined) throw new InvalidArgumentError(`invalid HELLO params: ${problem}`);
  return Buffer.from(JSON.stringify(pickKnown(rec)), 'utf8');
}

/**
 * The JSON bytes of a HELLO → params. Throws ProtocolError ERR_MALFORMED for bytes that are not
 * UTF-8, not a JSON object, or hold a known key with a wrong type or out-of-range value. Unknown
 * keys are dropped (a later minor version may add keys; this version has no use for them).
 */
export function decodeHelloParams(bytes: Buffer): HelloParams {
  if (!isUtf8(bytes)) throw new ProtocolError(ErrorCode.MALFORMED, 'HELLO params are not valid UTF-8');
  let parsed: unknown;
  try {
    parsed = JSON.parse(bytes.toString('utf8'));
  } catch (err) {
    throw new ProtocolError(ErrorCode.MALFORMED, 'HELLO params are not valid JSON', { cause: err });
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new ProtocolError(ErrorCode.MALFORMED, 'HELLO params must be a JSON object');
  }
  const rec = parsed as Record<string, unknown>;
  const problem = helloProblem(rec);
  if (problem !== undefined) throw new ProtocolError(ErrorCode.MALFORMED, `invalid HELLO params: ${problem}`);
  return pickKnown(rec);
}

// ---------------------------------------------------------------------------------------------
// Negotiation

/** What both sides use once the HELLO exchange is done. Frozen: connections that reached the same agreement share one object. */
export interface HelloAgreement {
  /** The agreed version: the common major, the lower minor. */
  readonly version: number;
  readonly heartbeatIntervalMs: number;
  readonly heartbeatTimeoutMs: number;
  readonly maxFrameLength: number;
  readonly maxInFlight: number;
  /** Name of the agreed payload codec. */
  readonly codec: string;
  /** The `name` the peer announced, if any. */
  readonly peerName: string | undefined;
}

/** The server's side of the negotiation; every field defaults to {@link HELLO_DEFAULTS}. */
export interface HelloPolicy {
  /** The version this server speaks; default {@link PROTOCOL_VERSION}. */
  readonly version?: number;
  /** The server's own proposal; the agreed interval is the smaller of the two proposals … */
  readonly heartbeatIntervalMs?: number;
  readonly heartbeatTimeoutMs?: number;
  /** … but never below this floor, so a client cannot make the server PING it in a loop. */
  readonly minHeartbeatIntervalMs?: number;
  /** Upper bound of the agreed maxFrameLength. */
  readonly maxFrameLength?: number;
  /** Upper bound of the agreed maxInFlight. */
  readonly maxInFlight?: number;
  /** Payload codecs the server supports (any order; the client's preference decides). */
  readonly codecs?: readonly string[];
  /** The server's `name` in its HELLO. */
  readonly name?: string;
}

function minDefined(a: number | undefined, b: number): number {
  return a === undefined ? b : Math.min(a, b);
}

/**
 * Server side: checks the client's HELLO and builds the answering HELLO with the agreed values.
 *
 * Throws ProtocolError ERR_VERSION (details `{ version }`, the server's) when the majors differ,
 * and ERR_NO_COMMON_CODEC when no codec the client offers is supported. Send the error with
 * `errorToMessage(err)` instead of a HELLO, then close. The credential is not checked here:
 * read `client.params.credential` and refuse with ERR_UNAUTHENTICATED yourself.
 *
 * @example
 * ```ts
 * const { reply, agreement } = answerHello(clientHello, { codecs: registry.names() });
 * send(reply);
 * ```
 */
export function answerHello(
  client: HelloMessage,
  policy: HelloPolicy = {},
): { reply: HelloMessage; agreement: HelloAgreement } {
  const ours = policy.version ?? PROTOCOL_VERSION;
  if (versionMajor(client.version) !== versionMajor(ours)) {
    throw new ProtocolError(
      ErrorCode.VERSION,
      `peer speaks protocol ${formatVersion(client.version)}, this server ${formatVersion(ours)}`,
      { details: { version: ours } },
    );
  }
  const version = (ours & 0xff00) | Math.min(versionMinor(client.version), versionMinor(ours));
  const p = client.params;

  const serverCodecs = policy.codecs ?? HELLO_DEFAULTS.codecs;
  const offered = p.codecs ?? HELLO_DEFAULTS.codecs;
  const codec = offered.find((name) => serverCodecs.includes(name));
  if (codec === undefined) {
    throw new ProtocolError(
      ErrorCode.NO_COMMON_CODEC,
      `no common payload codec: client offers [${offered.join(', ')}], server supports [${serverCodecs.join(', ')}]`,
      { details: { codecs: [...serverCodecs] } },
    );
  }

  // Heartbeat: the side that wants faster detection wins, within the server's floor; the timeout
  // is at least two intervals, so a single PING delayed behind a large write is not fatal.
  const floor = policy.minHeartbeatIntervalMs ?? HELLO_DEFAULTS.minHeartbeatIntervalMs;
  const heartbeatIntervalMs = Math.max(
    floor,
    minDefined(p.heartbeatIntervalMs, policy.heartbeatIntervalMs ?? HELLO_DEFAULTS.heartbeatIntervalMs),
  );
  const heartbeatTimeoutMs = Math.min(
    MAX_TIMER_MS,
    Math.max(
      2 * heartbeatIntervalMs,
      minDefined(p.heartbeatTimeoutMs, policy.heartbeatTimeoutMs ?? HELLO_DEFAULTS.heartbeatTimeoutMs),
    ),
  );
  // Limits: each side announces what it can take; the agreed value is the smaller.
  const maxFrameLength = minDefined(p.maxFrameLength, policy.maxFrameLength ?? HELLO_DEFAULTS.maxFrameLength);
  const maxInFlight = minDefined(p.maxInFlight, policy.maxInFlight ?? HELLO_DEFAULTS.maxInFlight);

  const params: HelloParams = {
    heartbeatIntervalMs,
    heartbeatTimeoutMs,
    maxFrameLength,
    maxInFlight,
    codec,
    ...(policy.name === undefined ? {} : { name: policy.name }),
  };
  return {
    reply: { kind: MessageKind.HELLO, version, params },
    agreement: internAgreement({
      version,
      heartbeatIntervalMs,
      heartbeatTimeoutMs,
      maxFrameLength,
      maxInFlight,
      codec,
      peerName: p.name,
    }),
  };
}

/**
 * Client side: checks the server's HELLO against the client's offer and returns the agreement.
 *
 * Throws ProtocolError ERR_VERSION if the server answered another major or a higher minor,
 * ERR_NO_COMMON_CODEC if it chose a codec the client did not offer, ERR_MALFORMED if an agreed
 * value is missing. The limits are clamped to what the client announced, whatever the server says.
 */
export function acceptHello(offer: HelloMessage, reply: HelloMessage): HelloAgreement {
  if (
    versionMajor(reply.version) !== versionMajor(offer.version) ||
    versionMinor(reply.version) > versionMinor(offer.version)
  ) {
    throw new ProtocolError(
      ErrorCode.VERSION,
      `server answered protocol ${formatVersion(reply.version)} to an offer of ${formatVersion(offer.version)}`,
    );
  }
  const r = reply.params;
  const o = offer.params;
  const offered = o.codecs ?? HELLO_DEFAULTS.codecs;
  if (r.codec === undefined || !offered.includes(r.codec)) {
    throw new ProtocolError(
      ErrorCode.NO_COMMON_CODEC,
      `server chose codec ${r.codec ?? '(none)'}, not one of [${offered.join(', ')}]`,
    );
  }
  if (
    r.heartbeatIntervalMs === undefined ||
    r.heartbeatTimeoutMs === undefined ||
    r.maxFrameLength === undefined ||
    r.maxInFlight === undefined
  ) {
    throw new ProtocolError(ErrorCode.MALFORMED, 'server HELLO lacks an agreed value');
  }
  return internAgreement({
    version: reply.version,
    heartbeatIntervalMs: r.heartbeatIntervalMs,
    heartbeatTimeoutMs: r.heartbeatTimeoutMs,
    maxFrameLength: minDefined(o.maxFrameLength, r.maxFrameLength),
    maxInFlight: minDefined(o.maxInFlight, r.maxInFlight),
    codec: r.codec,
    peerName: r.name,
  });
}

/** Distinct agreements kept for sharing; past this, new ones are made per connection. */
const MAX_INTERNED = 1024;
const interned = new Map<string, HelloAgreement>();

/**
 * One frozen object per distinct agreement, shared by every connection that reached it: a server
 * with ten thousand clients of one kind keeps one, not ten thousand (~80 bytes each).
 *
 * Only agreements without a peer name are shared. The name is the peer's to choose, and a table
 * keyed by what a peer chooses is one it can fill: a server once kept every distinct name a client
 * announced, before checking its credential (a few hundred HELLOs with 16 MiB names took it down).
 * The remaining key is values the server bounds (its own limits and codecs), and the table is
 * capped besides.
 */
function internAgreement(agreed: HelloAgreement): HelloAgreement {
  if (agreed.peerName !== undefined) return Object.freeze(agreed);
  const key = JSON.stringify([
    agreed.version,
    agreed.heartbeatIntervalMs,
    agreed.heartbeatTimeoutMs,
    agreed.maxFrameLength,
    agreed.maxInFlight,
    agreed.codec,
  ]);
  let a = interned.get(key);
  if (a === undefined) {
    a = Object.freeze(agreed);
    if (interned.size < MAX_INTERNED) interned.set(key, a);
  }
  return a;
}
