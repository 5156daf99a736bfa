/**
 * What the fuzz suite knows about the server under test: the fixture's configuration per framing
 * group, which methods answer synchronously, and which close reasons excuse what.
 *
 * The server is test/fixtures/edge/server.mjs (the hostile-client tests' fixture) with `trace` on,
 * so that each disconnect event carries what the server itself read and queued on that connection.
 */

import { CloseReason } from '../../src/connection/close-reason.js';

export const KiB = 1024;
export const MiB = 1024 * KiB;

/** Limits of the protocol server under test (small, so that offenders reach them quickly). */
export const PROTOCOL_LIMITS = {
  maxFrameLength: 64 * KiB,
  /** The server's default: frames before the HELLO exchange is done. */
  helloMaxFrameLength: 8 * KiB,
  maxInFlight: 64,
  maxInFlightBytes: 256 * KiB,
  maxQueuedBytes: 1 * MiB,
  frameTimeoutMs: 300,
  helloTimeoutMs: 1000,
  handlerTimeoutMs: 150,
} as const;

/** Limits of the legacy servers under test. */
export const LEGACY_LIMITS = {
  maxFrameLength: 16 * KiB,
  maxQueuedBytes: 1 * MiB,
  frameTimeoutMs: 300,
  idleTimeoutMs: 600,
} as const;

/** The legacy framings the CLI knows, one of each kind (src/codec/parse.ts). */
export const LEGACY_FRAMINGS = ['ascii:20', 'u32be', 'u16le', 'varint', 'line', 'delimiter:7c7c'] as const;
export type LegacyFraming = (typeof LEGACY_FRAMINGS)[number];

/** A framing group: one server process, fuzzed on its own. */
export type Group =
  | { kind: 'protocol'; name: 'longlink' }
  | { kind: 'legacy'; name: string; framing: LegacyFraming; json: boolean };

export const PROTOCOL_GROUP: Group = { kind: 'protocol', name: 'longlink' };

export function legacyGroups(framing?: string): Group[] {
  const out: Group[] = [];
  for (const f of LEGACY_FRAMINGS) {
    if (framing !== undefined && framing !== f) continue;
    for (const json of [true, false])
      out.push({ kind: 'legacy', name: `${f}+${json ? 'json' : 'raw'}`, framing: f, json });
  }
  return out;
}

/**
 * Every group, or those of one framing: 'longlink' (the protocol server), a legacy framing (its
 * JSON and raw groups), or one group by name ('line+json', 'u16le+raw').
 */
export function groupsFor(framing?: string): Group[] {
  if (framing === undefined) return [PROTOCOL_GROUP, ...legacyGroups()];
  if (framing === 'longlink' || framing === 'protocol') return [PROTOCOL_GROUP];
  const exact = legacyGroups().filter((g) => g.name === framing);
  if (exact.length > 0) return exact;
  const g = legacyGroups(framing);
  if (g.length === 0) {
    throw new Error(`unknown framing ${framing}: one of longlink, ${LEGACY_FRAMINGS.join(', ')}`);
  }
  return g;
}

/** The fixture's argument for a group. */
export function fixtureOptions(group: Group): object {
  if (group.kind === 'protocol') {
    const { helloMaxFrameLength: _default, ...options } = PROTOCOL_LIMITS;
    return { trace: true, options: { ...options, maxConnections: 1000 } };
  }
  return {
    trace: true,
    legacy: {
      framing: group.framing,
      json: group.json,
      handler: 'mixed',
      idleTimeoutMs: LEGACY_LIMITS.idleTimeoutMs,
    },
    options: {
      maxFrameLength: LEGACY_LIMITS.maxFrameLength,
      maxQueuedBytes: LEGACY_LIMITS.maxQueuedBytes,
      frameTimeoutMs: LEGACY_LIMITS.frameTimeoutMs,
      maxConnections: 1000,
    },
  };
}

/**
 * The fixture's methods and whether each answers inside the read that carried the request (its
 * answer is queued before the next frame is looked at) or later. A method the server does not
 * know answers ERR_METHOD_NOT_FOUND at once.
 */
export const METHODS = {
  echo: 'sync',
  big: 'sync',
  cyclic: 'sync',
  throws: 'sync',
  nothing: 'sync',
  whoami: 'sync',
  asyncEcho: 'async',
  sleep: 'async',
  never: 'async',
  rejects: 'async',
} as const;
export type Method = keyof typeof METHODS | 'no.such.method';

export function isAsyncMethod(method: string): boolean {
  return (METHODS as Record<string, string>)[method] === 'async';
}

export const ALL_REASONS: ReadonlySet<string> = new Set(Object.values(CloseReason));

/**
 * Close reasons after which answers to requests still being handled may be lost: the connection
 * broke (reset, timeouts, budget) or the client's data was invalid (PROTOCOL.md §9.3: "outstanding
 * requests fail on both sides; whether they were processed is unknown"), or the handler failed on
 * an id-less protocol (legacy). `remote-fin` is in the list only where no GOAWAY came before it:
 * PROTOCOL.md §9.4 reads a FIN without GOAWAY as a cut.
 */
export const DROPPING_REASONS: ReadonlySet<string> = new Set([
  CloseReason.PROTOCOL_ERROR,
  CloseReason.REMOTE_RESET,
  CloseReason.FRAME_TIMEOUT,
  CloseReason.OVERLOAD,
  CloseReason.SLOW_CONSUMER,
  CloseReason.HEARTBEAT_TIMEOUT,
  CloseReason.CLOSE_TIMEOUT,
  CloseReason.SOCKET_ERROR,
  CloseReason.HANDLER_ERROR,
]);

/** The ERROR code a client reads for a protocol-error close with this close code (peer.ts codeForFraming). */
export function wireCodeFor(closeCode: string | undefined): string | undefined {
  if (closeCode === undefined) return undefined;
  if (closeCode === 'ERR_BAD_FRAME_HEADER' || closeCode === 'ERR_FRAME_TRUNCATED') return 'ERR_MALFORMED';
  return closeCode;
}
