import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  decodeMessage,
  encodeMessage,
  type HelloParams,
  INLINE_PAYLOAD_MAX,
  type Message,
  MessageKind,
  ProtocolError,
} from '../../src/protocol/index.js';

const u32 = fc.integer({ min: 0, max: 0xffffffff });
const id = fc.integer({ min: 1, max: 0xffffffff });
const flags = fc.option(fc.integer({ min: 0, max: 255 }), { nil: undefined });
const bytes = (maxLength: number) => fc.uint8Array({ maxLength }).map((u) => Buffer.from(u));
const payload = fc.oneof(bytes(64), bytes(INLINE_PAYLOAD_MAX + 200));
/** Well-formed strings (no lone surrogates) of 1–255 UTF-8 bytes. */
const name = fc
  .string({
    unit: fc.oneof(fc.constantFrom('a', 'Z', '.', '_'), fc.string({ unit: 'binary', maxLength: 1 })),
    minLength: 1,
    maxLength: 80,
  })
  .filter((s) => s.length > 0 && Buffer.byteLength(s) <= 255);
const code = fc.stringMatching(/^[\x21-\x7e]{1,40}$/);
const pingData = fc.uint8Array({ minLength: 8, maxLength: 8 }).map((u) => Buffer.from(u));
const text = fc.string({ unit: 'binary', maxLength: 60 });

const helloParams: fc.Arbitrary<HelloParams> = fc.record(
  {
    heartbeatIntervalMs: fc.integer({ min: 1, max: 0x7fffffff }),
    heartbeatTimeoutMs: fc.integer({ min: 1, max: 0x7fffffff }),
    maxFrameLength: fc.integer({ min: 1024, max: 0xffffffff }),
    maxInFlight: fc.integer({ min: 1, max: 0xffffffff }),
    codecs: fc.array(code, { minLength: 1, maxLength: 5 }),
    codec: code,
    credential: text,
    name: text,
  },
  { requiredKeys: [], noNullPrototype: true },
);

function withFlags<T extends object>(arb: fc.Arbitrary<T>): fc.Arbitrary<T> {
  return fc.tuple(arb, flags).map(([m, f]) => (f === undefined ? m : { ...m, flags: f }));
}

const message: fc.Arbitrary<Message> = fc.oneof(
  withFlags(
    fc.record({
      kind: fc.constant(MessageKind.HELLO),
      version: fc.integer({ min: 0, max: 0xffff }),
      params: helloParams,
    }),
  ),
  // REQUEST: the 1.1 flags (METADATA 0x01, TIMEOUT 0x02) follow the fields, never set by hand.
  fc
    .tuple(
      fc.record(
        {
          kind: fc.constant(MessageKind.REQUEST),
          id,
          method: name,
          payload,
          timeoutMs: u32,
          metadata: fc.dictionary(fc.stringMatching(/^[a-z0-9._-]{1,64}$/), fc.string({ maxLength: 40 }), {
            minKeys: 1,
            maxKeys: 6,
          }),
        },
        { requiredKeys: ['kind', 'id', 'method', 'payload'] },
      ),
      fc.option(
        fc.integer({ min: 0, max: 63 }).map((f) => f << 2),
        { nil: undefined },
      ),
    )
    .map(([m, f]) => {
      const flags = (f ?? 0) | (m.metadata === undefined ? 0 : 0x01) | (m.timeoutMs === undefined ? 0 : 0x02);
      const meta =
        m.metadata === undefined ? {} : { metadata: Object.assign(Object.create(null), m.metadata) };
      return { ...m, ...meta, flags } as Message;
    }),
  withFlags(fc.record({ kind: fc.constant(MessageKind.RESPONSE), id, payload })),
  withFlags(
    fc.record({ kind: fc.constant(MessageKind.ERROR), id: u32, code, message: text, details: payload }),
  ),
  // NOTIFY: the 1.2 flag ROOM (0x01) follows room and seq, never set by hand (room pushes
  // round-trip in wire.test.ts); the other bits are free.
  fc
    .tuple(
      fc.record({ kind: fc.constant(MessageKind.NOTIFY), topic: name, payload }),
      fc.option(
        fc.integer({ min: 0, max: 127 }).map((f) => f << 1),
        { nil: undefined },
      ),
    )
    .map(([m, f]) => (f === undefined ? m : { ...m, flags: f }) as Message),
  withFlags(fc.record({ kind: fc.constant(MessageKind.CANCEL), id })),
  withFlags(fc.record({ kind: fc.constant(MessageKind.PING), data: pingData })),
  withFlags(fc.record({ kind: fc.constant(MessageKind.PONG), data: pingData })),
  withFlags(
    fc.record({
      kind: fc.constant(MessageKind.GOAWAY),
      lastId: u32,
      retryAfterMs: u32,
      reason: code,
      message: text,
    }),
  ),
);

function decodeOnlyProtocolErrors(frame: Buffer): void {
  try {
    decodeMessage(frame);
  } catch (err) {
    if (!(err instanceof ProtocolError)) throw err;
    assert.ok(err.code === 'ERR_MALFORMED' || err.code === 'ERR_UNKNOWN_KIND', err.code);
  }
}

describe('properties', () => {
  it('every message round-trips, with and without headroom', () => {
    fc.assert(
      fc.property(message, fc.integer({ min: 0, max: 8 }), (m, headroom) => {
        const frame = Buffer.concat(encodeMessage(m, headroom)).subarray(headroom);
        const decoded = decodeMessage(frame);
        assert.deepEqual(decoded, { flags: 0, ...m });
        // Re-encoding the decoded message gives the same bytes.
        assert.deepEqual(Buffer.concat(encodeMessage(decoded)), frame);
      }),
      { numRuns: 2000 },
    );
  });

  it('random bytes decode to a Message or throw ProtocolError, nothing else', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (u) => decodeOnlyProtocolErrors(Buffer.from(u))),
      { numRuns: 5000 },
    );
  });

  it('random bytes behind every valid kind byte: a Message or a ProtocolError', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 9 }), fc.uint8Array({ maxLength: 40 }), (kind, u) =>
        decodeOnlyProtocolErrors(Buffer.concat([Buffer.from([kind]), u])),
      ),
      { numRuns: 5000 },
    );
  });

  it('mutated valid messages (a byte flipped, cut or added): a Message or a ProtocolError', () => {
    fc.assert(
      fc.property(
        message,
        fc.nat(),
        fc.integer({ min: 0, max: 255 }),
        fc.integer({ min: 0, max: 2 }),
        (m, at, b, op) => {
          const frame = Buffer.concat(encodeMessage(m));
          const i = at % (frame.length + 1);
          let mutated: Buffer;
          if (op === 0) {
            mutated = Buffer.from(frame);
            if (i < mutated.length) mutated[i] = b;
          } else if (op === 1) {
            mutated = frame.subarray(0, i);
          } else {
            mutated = Buffer.concat([frame.subarray(0, i), Buffer.from([b]), frame.subarray(i)]);
          }
          decodeOnlyProtocolErrors(mutated);
        },
      ),
      { numRuns: 3000 },
    );
  });
});
