import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { InvalidArgumentError } from '../../src/errors.js';
import {
  decodeMessage,
  encodeMessage,
  encodePing,
  encodePong,
  INLINE_PAYLOAD_MAX,
  type Message,
  MessageKind,
  PROTOCOL_VERSION,
  ProtocolError,
  pingKind,
  pingSequence,
} from '../../src/protocol/index.js';

const enc = (m: Message): Buffer => Buffer.concat(encodeMessage(m));
const ascii = (s: string): number[] => [...Buffer.from(s, 'latin1')];

function assertProtocolError(fn: () => unknown, code: string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof ProtocolError, `expected ProtocolError, got ${String(err)}`);
    assert.equal(err.code, code);
    return true;
  });
}

/** One valid message of each kind, payload-bearing ones with and without a payload. */
const samples: Message[] = [
  {
    kind: MessageKind.HELLO,
    version: PROTOCOL_VERSION,
    params: {
      heartbeatIntervalMs: 5000,
      heartbeatTimeoutMs: 15000,
      maxFrameLength: 1 << 20,
      maxInFlight: 100,
      codecs: ['msgpack', 'json'],
      credential: 's3cret',
      name: 'client-1',
    },
  },
  { kind: MessageKind.HELLO, version: 0x0203, params: {} },
  { kind: MessageKind.REQUEST, id: 1, method: 'echo', payload: Buffer.from('{"a":1}') },
  { kind: MessageKind.REQUEST, id: 0xffffffff, method: 'ünïcödé.метод', payload: Buffer.alloc(0) },
  { kind: MessageKind.REQUEST, id: 7, method: 'x'.repeat(255), payload: Buffer.alloc(4096, 7) },
  { kind: MessageKind.RESPONSE, id: 99, payload: Buffer.from('ok') },
  { kind: MessageKind.RESPONSE, id: 99, payload: Buffer.alloc(0) },
  {
    kind: MessageKind.ERROR,
    id: 5,
    code: 'ERR_METHOD_NOT_FOUND',
    message: 'no method "nope"',
    details: Buffer.from('{"method":"nope"}'),
  },
  { kind: MessageKind.ERROR, id: 0, code: 'X', message: '', details: Buffer.alloc(0) },
  { kind: MessageKind.NOTIFY, topic: 'prices.eur', payload: Buffer.from([1, 2, 3]) },
  { kind: MessageKind.NOTIFY, topic: 't', payload: Buffer.alloc(0) },
  { kind: MessageKind.CANCEL, id: 12345 },
  { kind: MessageKind.PING, data: Buffer.from([1, 2, 3, 4, 5, 6, 7, 8]) },
  { kind: MessageKind.PONG, data: Buffer.alloc(8, 0xff) },
  {
    kind: MessageKind.GOAWAY,
    lastId: 42,
    retryAfterMs: 1500,
    reason: 'ERR_SHUTTING_DOWN',
    message: 'server restarting',
  },
  { kind: MessageKind.GOAWAY, lastId: 0, retryAfterMs: 0, reason: 'ERR_TOO_MANY_CONNECTIONS', message: '' },
];

describe('round trip', () => {
  for (const m of samples) {
    it(`${m.kind}: ${JSON.stringify(m).slice(0, 60)}`, () => {
      const decoded = decodeMessage(enc(m));
      assert.deepEqual(decoded, { flags: 0, ...m });
    });
  }

  it('keeps flags', () => {
    const m: Message = { kind: MessageKind.CANCEL, id: 3, flags: 0xa5 };
    assert.deepEqual(decodeMessage(enc(m)), m);
  });

  it('decodes payloads as views of the frame, without copying', () => {
    const frame = enc({ kind: MessageKind.REQUEST, id: 1, method: 'm', payload: Buffer.from('abc') });
    const msg = decodeMessage(frame);
    assert.equal(msg.kind, MessageKind.REQUEST);
    if (msg.kind !== MessageKind.REQUEST) return;
    assert.equal(msg.payload.buffer, frame.buffer);
    assert.equal(msg.payload.byteOffset, frame.byteOffset + 8);
  });

  it('does not confuse names that share a cache slot', () => {
    // Many distinct names through the 256-slot cache: every one must come back exactly.
    for (let i = 0; i < 2000; i++) {
      const method = `m${i}`;
      const frame = enc({ kind: MessageKind.REQUEST, id: 1, method, payload: Buffer.alloc(0) });
      const msg = decodeMessage(frame);
      assert.ok(msg.kind === MessageKind.REQUEST && msg.method === method);
    }
  });
});

describe('exact bytes (pins the diagrams in docs/PROTOCOL.md)', () => {
  it('REQUEST', () => {
    const bytes = enc({
      kind: MessageKind.REQUEST,
      id: 0x01020304,
      method: 'echo',
      payload: Buffer.from('hi'),
    });
    assert.deepEqual(
      [...bytes],
      [0x02, 0x00, 0x01, 0x02, 0x03, 0x04, 0x04, ...ascii('echo'), ...ascii('hi')],
    );
  });

  it('RESPONSE', () => {
    const bytes = enc({ kind: MessageKind.RESPONSE, id: 0x01020304, payload: Buffer.from('hi') });
    assert.deepEqual([...bytes], [0x03, 0x00, 0x01, 0x02, 0x03, 0x04, ...ascii('hi')]);
  });

  it('GOAWAY', () => {
    const bytes = enc({
      kind: MessageKind.GOAWAY,
      lastId: 42,
      retryAfterMs: 1500,
      reason: 'ERR_SHUTTING_DOWN',
      message: 'bye',
    });
    assert.deepEqual(
      [...bytes],
      [
        0x09,
        0x00,
        ...[0x00, 0x00, 0x00, 0x2a], // lastId 42
        ...[0x00, 0x00, 0x05, 0xdc], // retryAfterMs 1500
        0x11, // reason length 17
        ...ascii('ERR_SHUTTING_DOWN'),
        ...[0x00, 0x03], // message length 3
        ...ascii('bye'),
      ],
    );
  });

  it('ERROR', () => {
    const bytes = enc({
      kind: MessageKind.ERROR,
      id: 7,
      code: 'ERR_X',
      message: 'é',
      details: Buffer.from('{}'),
    });
    assert.deepEqual(
      [...bytes],
      [0x04, 0x00, 0, 0, 0, 7, 5, ...ascii('ERR_X'), 0x00, 0x02, 0xc3, 0xa9, ...ascii('{}')],
    );
  });

  it('NOTIFY, CANCEL, PING, PONG', () => {
    assert.deepEqual(
      [...enc({ kind: MessageKind.NOTIFY, topic: 'tick', payload: Buffer.from([9]) })],
      [0x05, 0x00, 4, ...ascii('tick'), 9],
    );
    assert.deepEqual([...enc({ kind: MessageKind.CANCEL, id: 258 })], [0x06, 0x00, 0, 0, 1, 2]);
    const data = Buffer.from([1, 2, 3, 4, 5, 6, 7, 8]);
    assert.deepEqual([...enc({ kind: MessageKind.PING, data })], [0x07, 0x00, 1, 2, 3, 4, 5, 6, 7, 8]);
    assert.deepEqual([...enc({ kind: MessageKind.PONG, data })], [0x08, 0x00, 1, 2, 3, 4, 5, 6, 7, 8]);
  });

  it('HELLO', () => {
    const bytes = enc({ kind: MessageKind.HELLO, version: 0x0100, params: { maxInFlight: 8, name: 'a' } });
    assert.deepEqual([...bytes], [0x01, 0x00, 0x01, 0x00, ...ascii('{"maxInFlight":8,"name":"a"}')]);
  });
});

describe('chunks', () => {
  it('passes a large payload through as its own chunk, uncopied', () => {
    const payload = Buffer.alloc(INLINE_PAYLOAD_MAX + 1, 1);
    // Uncopied: a view over the payload's own memory (a Buffer of longlink's making, so that what
    // the queue measures later is what was measured here), not the caller's object itself.
    const sameBytes = (chunk: Buffer | undefined) =>
      chunk !== undefined &&
      chunk.buffer === payload.buffer &&
      chunk.byteOffset === payload.byteOffset &&
      chunk.length === payload.length;
    const chunks = encodeMessage({ kind: MessageKind.REQUEST, id: 1, method: 'put', payload });
    assert.equal(chunks.length, 2);
    assert.ok(sameBytes(chunks[1]), 'the payload, uncopied');
    assert.equal(chunks[0]?.length, 7 + 3);
    const r = encodeMessage({ kind: MessageKind.RESPONSE, id: 1, payload });
    assert.equal(r.length, 2);
    assert.ok(sameBytes(r[1]), 'the payload, uncopied');
  });

  it('inlines a small payload: one chunk', () => {
    const chunks = encodeMessage({
      kind: MessageKind.RESPONSE,
      id: 1,
      payload: Buffer.alloc(INLINE_PAYLOAD_MAX, 1),
    });
    assert.equal(chunks.length, 1);
    assert.equal(chunks[0]?.length, 6 + INLINE_PAYLOAD_MAX);
  });

  it('reserves headroom for the framing prefix', () => {
    const m: Message = { kind: MessageKind.REQUEST, id: 9, method: 'echo', payload: Buffer.from('hi') };
    const plain = enc(m);
    for (const payload of [Buffer.from('hi'), Buffer.alloc(INLINE_PAYLOAD_MAX + 10, 3)]) {
      const chunks = encodeMessage({ ...m, payload }, 4);
      const total = chunks.reduce((n, c) => n + c.length, 0);
      chunks[0]?.writeUInt32BE(total - 4, 0);
      const framed = Buffer.concat(chunks);
      assert.equal(framed.readUInt32BE(0), framed.length - 4);
      assert.deepEqual(decodeMessage(framed.subarray(4)), { flags: 0, ...m, payload });
    }
    assert.deepEqual(decodeMessage(plain), { flags: 0, ...m });
    for (const s of samples) {
      const chunks = encodeMessage(s, 5);
      assert.deepEqual(Buffer.concat(chunks).subarray(5), enc(s));
    }
  });

  it('cuts ERROR / GOAWAY text to 65535 bytes on a character boundary', () => {
    const message = `${'a'.repeat(65534)}é and more`; // é straddles the limit
    const m = decodeMessage(
      enc({ kind: MessageKind.ERROR, id: 1, code: 'E', message, details: Buffer.alloc(0) }),
    );
    assert.ok(m.kind === MessageKind.ERROR);
    assert.equal(m.message, 'a'.repeat(65534));
    const g = decodeMessage(
      enc({ kind: MessageKind.GOAWAY, lastId: 0, retryAfterMs: 0, reason: 'R', message: 'é'.repeat(40000) }),
    );
    assert.ok(g.kind === MessageKind.GOAWAY);
    assert.equal(g.message, 'é'.repeat(32767));
  });
});

describe('encode rejects invalid fields with InvalidArgumentError', () => {
  const bad: [string, unknown][] = [
    ['request id 0', { kind: 2, id: 0, method: 'm', payload: Buffer.alloc(0) }],
    ['request id 2^32', { kind: 2, id: 2 ** 32, method: 'm', payload: Buffer.alloc(0) }],
    ['request id 1.5', { kind: 2, id: 1.5, method: 'm', payload: Buffer.alloc(0) }],
    ['empty method', { kind: 2, id: 1, method: '', payload: Buffer.alloc(0) }],
    ['256-byte method', { kind: 2, id: 1, method: 'é'.repeat(128), payload: Buffer.alloc(0) }],
    ['non-Buffer payload', { kind: 2, id: 1, method: 'm', payload: 'text' }],
    ['response id 0', { kind: 3, id: 0, payload: Buffer.alloc(0) }],
    ['cancel id 0', { kind: 6, id: 0 }],
    ['code with a space', { kind: 4, id: 1, code: 'ERR X', message: '', details: Buffer.alloc(0) }],
    ['non-ASCII code', { kind: 4, id: 1, code: 'ERR_É', message: '', details: Buffer.alloc(0) }],
    ['empty code', { kind: 4, id: 1, code: '', message: '', details: Buffer.alloc(0) }],
    ['7-byte ping', { kind: 7, data: Buffer.alloc(7) }],
    ['negative retryAfterMs', { kind: 9, lastId: 0, retryAfterMs: -1, reason: 'R', message: '' }],
    ['empty reason', { kind: 9, lastId: 0, retryAfterMs: 0, reason: '', message: '' }],
    ['version 2^16', { kind: 1, version: 0x10000, params: {} }],
    ['bad HELLO param', { kind: 1, version: 0x100, params: { maxInFlight: -1 } }],
    ['flags 256', { kind: 6, id: 1, flags: 256 }],
    ['unknown kind', { kind: 10 }],
  ];
  for (const [name, m] of bad) {
    it(name, () => {
      assert.throws(() => encodeMessage(m as Message), InvalidArgumentError);
    });
  }
  it('rejects bad headroom', () => {
    assert.throws(() => encodeMessage(samples[11] as Message, -1), InvalidArgumentError);
    assert.throws(() => encodeMessage(samples[11] as Message, 65), InvalidArgumentError);
  });
});

describe('decode rejects malformed input with ProtocolError', () => {
  it('ERR_UNKNOWN_KIND for kinds 0 and 10–255, whatever follows', () => {
    for (let kind = 0; kind < 256; kind = kind === 0 ? 10 : kind + 1) {
      assertProtocolError(() => decodeMessage(Buffer.from([kind])), 'ERR_UNKNOWN_KIND');
      assertProtocolError(
        () => decodeMessage(Buffer.from([kind, 0, 0, 0, 0, 1, 1, 0x61])),
        'ERR_UNKNOWN_KIND',
      );
    }
  });

  it('ERR_MALFORMED for the empty frame', () => {
    assertProtocolError(() => decodeMessage(Buffer.alloc(0)), 'ERR_MALFORMED');
  });

  it('ERR_MALFORMED for every truncation of a message that ends in a length-checked field', () => {
    // Messages whose rest-of-frame payload is empty: every proper prefix cuts a fixed field.
    for (const m of samples) {
      const full = enc(m);
      const hasTail = ('payload' in m && m.payload.length > 0) || ('details' in m && m.details.length > 0);
      if (hasTail) continue;
      for (let cut = 0; cut < full.length; cut++) {
        assertProtocolError(() => decodeMessage(full.subarray(0, cut)), 'ERR_MALFORMED');
      }
    }
  });

  it('truncating a payload-bearing message inside its header is ERR_MALFORMED, inside its payload is not', () => {
    for (const m of samples) {
      const full = enc(m);
      let tail = 0;
      if ('payload' in m) tail = m.payload.length;
      else if ('details' in m) tail = m.details.length;
      if (tail === 0) continue;
      const header = full.length - tail;
      for (let cut = 0; cut < header; cut++) {
        assertProtocolError(() => decodeMessage(full.subarray(0, cut)), 'ERR_MALFORMED');
      }
      for (let cut = header; cut <= full.length; cut += Math.max(1, tail >> 4)) {
        const d = decodeMessage(full.subarray(0, cut)) as unknown as { payload?: Buffer; details?: Buffer };
        assert.equal((d.payload ?? d.details)?.length, cut - header);
      }
    }
  });

  it('ERR_MALFORMED for trailing bytes after fixed-size messages', () => {
    const fixed: number[] = [MessageKind.CANCEL, MessageKind.PING, MessageKind.PONG, MessageKind.GOAWAY];
    for (const m of samples) {
      if (!fixed.includes(m.kind)) continue;
      assertProtocolError(() => decodeMessage(Buffer.concat([enc(m), Buffer.from([0])])), 'ERR_MALFORMED');
    }
  });

  const bad: [string, number[]][] = [
    ['REQUEST id 0', [2, 0, 0, 0, 0, 0, 1, 0x61]],
    ['REQUEST empty method', [2, 0, 0, 0, 0, 1, 0]],
    ['REQUEST empty method with payload', [2, 0, 0, 0, 0, 1, 0, 0x61, 0x62]],
    ['REQUEST method longer than the frame', [2, 0, 0, 0, 0, 1, 5, 0x61, 0x62]],
    ['REQUEST method not UTF-8', [2, 0, 0, 0, 0, 1, 2, 0xc3, 0x28]],
    ['REQUEST method a lone continuation byte', [2, 0, 0, 0, 0, 1, 1, 0x80]],
    ['RESPONSE id 0', [3, 0, 0, 0, 0, 0]],
    ['NOTIFY empty topic', [5, 0, 0, 1]],
    ['NOTIFY topic not UTF-8', [5, 0, 1, 0xff]],
    ['ERROR empty code', [4, 0, 0, 0, 0, 1, 0, 0, 0, 0]],
    ['ERROR code with a control byte', [4, 0, 0, 0, 0, 1, 1, 0x0a, 0, 0]],
    ['ERROR code with a space', [4, 0, 0, 0, 0, 1, 1, 0x20, 0, 0]],
    ['ERROR message longer than the frame', [4, 0, 0, 0, 0, 1, 1, 0x45, 0, 2, 0x61]],
    ['CANCEL id 0', [6, 0, 0, 0, 0, 0]],
    ['PING 9 bytes of data', [7, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9]],
    ['GOAWAY message longer than the frame', [9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0x52, 0, 5, 0x61]],
    ['GOAWAY empty reason', [9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]],
    ['HELLO not JSON', [1, 0, 1, 0, ...ascii('{x}')]],
    ['HELLO JSON array', [1, 0, 1, 0, ...ascii('[1]')]],
    ['HELLO JSON null', [1, 0, 1, 0, ...ascii('null')]],
    ['HELLO not UTF-8', [1, 0, 1, 0, ...ascii('{"name":"'), 0xff, ...ascii('"}')]],
    ['HELLO bad maxFrameLength', [1, 0, 1, 0, ...ascii('{"maxFrameLength":10}')]],
    ['HELLO string heartbeat', [1, 0, 1, 0, ...ascii('{"heartbeatIntervalMs":"5"}')]],
    ['HELLO codecs not a list', [1, 0, 1, 0, ...ascii('{"codecs":"json"}')]],
    ['HELLO empty codec name', [1, 0, 1, 0, ...ascii('{"codecs":[""]}')]],
    ['HELLO numeric name', [1, 0, 1, 0, ...ascii('{"name":5}')]],
  ];
  for (const [name, bytes] of bad) {
    it(name, () => assertProtocolError(() => decodeMessage(Buffer.from(bytes)), 'ERR_MALFORMED'));
  }

  it('accepts non-ASCII methods that are valid UTF-8, including a literal U+FFFD', () => {
    for (const method of ['é', '\ufffd', '日本', '😀']) {
      const m = decodeMessage(enc({ kind: MessageKind.REQUEST, id: 1, method, payload: Buffer.alloc(0) }));
      assert.ok(m.kind === MessageKind.REQUEST && m.method === method);
    }
  });

  it('decodes ERROR text leniently: invalid UTF-8 becomes U+FFFD', () => {
    const m = decodeMessage(Buffer.from([4, 0, 0, 0, 0, 1, 1, 0x45, 0, 1, 0xff]));
    assert.ok(m.kind === MessageKind.ERROR);
    assert.equal(m.message, '\ufffd');
  });

  it('ignores unknown HELLO keys', () => {
    const m = decodeMessage(
      Buffer.from([1, 0, 1, 0, ...ascii('{"future":[1,2],"name":"n","__proto__":{"x":1}}')]),
    );
    assert.deepEqual(m, { kind: MessageKind.HELLO, flags: 0, version: 0x100, params: { name: 'n' } });
  });
});

describe('the heartbeat encoding (encodePing, encodePong, pingKind, pingSequence)', () => {
  it('a PING built in place decodes as a PING carrying its sequence, with room for the framing prefix', () => {
    for (const seq of [1, 2 ** 32 - 1, 2 ** 32, 2 ** 53 - 1]) {
      const buf = encodePing(seq, 4);
      const body = buf.subarray(4);
      const msg = decodeMessage(body);
      assert.equal(msg.kind, MessageKind.PING);
      assert.equal(pingKind(body), MessageKind.PING);
      assert.equal(pingSequence(body), seq);
      const pong = encodePong(body, 0);
      assert.equal(decodeMessage(pong).kind, MessageKind.PONG);
      assert.equal(pingKind(pong), MessageKind.PONG);
      assert.equal(pingSequence(pong), seq, 'a PONG carries the data of the PING it answers');
    }
  });

  it('pingKind is 0 for anything else: other kinds, or a PING of the wrong length', () => {
    assert.equal(pingKind(Buffer.from([MessageKind.PING, 0, 1, 2])), 0);
    assert.equal(pingKind(Buffer.alloc(10, MessageKind.REQUEST)), 0);
  });
});

describe('1.1: REQUEST metadata and the caller timeout', () => {
  it('pins the bytes: flags, timeout after the id, metadata block after the method', () => {
    const frame = Buffer.concat(
      encodeMessage({
        kind: MessageKind.REQUEST,
        id: 7,
        method: 'm',
        payload: Buffer.from('P'),
        timeoutMs: 1500,
        metadata: { traceparent: 'v' },
      }),
    );
    assert.deepEqual(
      [...frame],
      [
        ...[2, 0x03], // kind REQUEST, flags METADATA | TIMEOUT
        ...[0, 0, 0, 7], // id
        ...[0, 0, 0x05, 0xdc], // timeout 1500 ms
        ...[1, 0x6d], // method 'm'
        ...[1, 11, ...Buffer.from('traceparent'), 0, 1, 0x76], // 1 entry: key, value 'v'
        0x50, // payload 'P'
      ],
    );
    const m = decodeMessage(frame) as { timeoutMs?: number; metadata?: Record<string, string> };
    assert.equal(m.timeoutMs, 1500);
    assert.deepEqual({ ...m.metadata }, { traceparent: 'v' });
  });

  it('a REQUEST without them reads the same under 1.0 and 1.1; with them, 1.0 cannot read it (so it is sent only when agreed)', () => {
    const plain = Buffer.concat(
      encodeMessage({ kind: MessageKind.REQUEST, id: 1, method: 'm', payload: Buffer.from('p') }),
    );
    assert.deepEqual(decodeMessage(plain, 0), decodeMessage(plain, 1));
    // Flag bits a 1.0 sender set anyway are ignored on a 1.0 connection, as 1.0 says.
    const flagged = Buffer.from(plain);
    flagged[1] = 0x03;
    assert.equal((decodeMessage(flagged, 0) as { method: string }).method, 'm');
    const withTimeout = Buffer.concat(
      encodeMessage({
        kind: MessageKind.REQUEST,
        id: 1,
        method: 'm',
        payload: Buffer.alloc(0),
        timeoutMs: 5,
      }),
    );
    assert.throws(
      () => decodeMessage(withTimeout, 0),
      (e: unknown) => e instanceof ProtocolError,
    );
  });

  it('limits are checked on both sides', () => {
    const req = (metadata: Record<string, string>) => ({
      kind: MessageKind.REQUEST as 2,
      id: 1,
      method: 'm',
      payload: Buffer.alloc(0),
      metadata,
    });
    assert.throws(() => encodeMessage(req({ Upper: 'x' })), InvalidArgumentError);
    assert.throws(() => encodeMessage(req({ k: 'x'.repeat(4097) })), InvalidArgumentError);
    assert.throws(
      () => encodeMessage(req(Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`k${i}`, 'v'])))),
      InvalidArgumentError,
    );
    // A hand-made block with a bad key, or running past the end, is ERR_MALFORMED.
    const bad = Buffer.from([2, 0x01, 0, 0, 0, 1, 1, 0x6d, 1, 1, 0x41, 0, 0]);
    assert.throws(
      () => decodeMessage(bad),
      (e: unknown) => e instanceof ProtocolError && e.code === 'ERR_MALFORMED',
    );
    const cut = Buffer.from([2, 0x01, 0, 0, 0, 1, 1, 0x6d, 1, 1, 0x6b, 0, 9, 0x76]);
    assert.throws(
      () => decodeMessage(cut),
      (e: unknown) => e instanceof ProtocolError && e.code === 'ERR_MALFORMED',
    );
  });
});

describe('1.2: room pushes (NOTIFY flag ROOM)', () => {
  it('pins the bytes: room and seq (u64) after the topic', () => {
    const frame = enc({
      kind: MessageKind.NOTIFY,
      topic: 't',
      room: 'r1',
      seq: 0x1_0000_0002,
      payload: Buffer.from('P'),
    });
    assert.deepEqual(
      [...frame],
      [
        ...[5, 0x01], // kind NOTIFY, flags ROOM
        ...[1, 0x74], // topic 't'
        ...[2, 0x72, 0x31], // room 'r1'
        ...[0, 0, 0, 1, 0, 0, 0, 2], // seq 2^32 + 2
        0x50, // payload 'P'
      ],
    );
    assert.deepEqual(decodeMessage(frame, 2), {
      kind: MessageKind.NOTIFY,
      flags: 1,
      topic: 't',
      room: 'r1',
      seq: 0x1_0000_0002,
      payload: Buffer.from('P'),
    });
  });

  it('round-trips every seq up to 2^53-1, splits nowhere, refuses more', () => {
    for (const seq of [0, 1, 0xffff_ffff, 2 ** 32, Number.MAX_SAFE_INTEGER]) {
      const m = decodeMessage(
        enc({ kind: MessageKind.NOTIFY, topic: 'x', room: 'ü', seq, payload: Buffer.alloc(700, 1) }),
        2,
      ) as { seq?: number; room?: string; payload: Buffer };
      assert.equal(m.seq, seq);
      assert.equal(m.room, 'ü');
      assert.equal(m.payload.length, 700);
    }
    for (const seq of [-1, 1.5, 2 ** 53, Number.NaN]) {
      assert.throws(
        () =>
          encodeMessage({ kind: MessageKind.NOTIFY, topic: 'x', room: 'r', seq, payload: Buffer.alloc(0) }),
        InvalidArgumentError,
      );
    }
    assert.throws(
      () =>
        encodeMessage({ kind: MessageKind.NOTIFY, topic: 'x', room: '', seq: 1, payload: Buffer.alloc(0) }),
      InvalidArgumentError,
    );
    const over = enc({ kind: MessageKind.NOTIFY, topic: 'x', room: 'r', seq: 1, payload: Buffer.alloc(0) });
    over[6] = 0x00;
    over[7] = 0x20; // hi = 0x00200000: 2^53
    assertProtocolError(() => decodeMessage(over, 2), 'ERR_MALFORMED');
  });

  it('truncated or empty room fields are ERR_MALFORMED under 1.2', () => {
    for (const bytes of [
      [5, 1, 1, 0x74], // no room
      [5, 1, 1, 0x74, 0], // empty room
      [5, 1, 1, 0x74, 2, 0x72], // room runs past the end
      [5, 1, 1, 0x74, 1, 0x72, 0, 0, 0], // seq cut
      [5, 1, 1, 0x74, 1, 0xff, 0, 0, 0, 0, 0, 0, 0, 1], // room not UTF-8
    ]) {
      assertProtocolError(() => decodeMessage(Buffer.from(bytes), 2), 'ERR_MALFORMED');
    }
  });

  it('on a 1.0/1.1 connection the flag is ignored: the bytes after the topic are the payload', () => {
    const frame = enc({ kind: MessageKind.NOTIFY, topic: 't', room: 'r', seq: 9, payload: Buffer.from('P') });
    for (const minor of [0, 1]) {
      const m = decodeMessage(frame, minor) as { room?: string; payload: Buffer };
      assert.equal(m.room, undefined);
      assert.equal(m.payload.length, 1 + 1 + 8 + 1);
    }
    // And a NOTIFY without the flag reads the same under every minor.
    const plain = enc({ kind: MessageKind.NOTIFY, topic: 't', payload: Buffer.from('P') });
    assert.deepEqual(decodeMessage(plain, 0), decodeMessage(plain, 2));
  });
});
