import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  acceptHello,
  answerHello,
  decodeHelloParams,
  decodeMessage,
  encodeHelloParams,
  encodeMessage,
  formatVersion,
  HELLO_DEFAULTS,
  HELLO_MAX_FRAME_LENGTH,
  type HelloMessage,
  type HelloParams,
  MessageKind,
  PROTOCOL_VERSION,
  ProtocolError,
  versionMajor,
  versionMinor,
} from '../../src/protocol/index.js';

const hello = (params: HelloParams, version = PROTOCOL_VERSION): HelloMessage => ({
  kind: MessageKind.HELLO,
  version,
  params,
});

/** Both halves over the wire, as a real pair of peers would run them. */
function handshake(offer: HelloMessage, policy: Parameters<typeof answerHello>[1] = {}) {
  const received = decodeMessage(Buffer.concat(encodeMessage(offer))) as HelloMessage;
  const { reply, agreement: server } = answerHello(received, policy);
  const replyReceived = decodeMessage(Buffer.concat(encodeMessage(reply))) as HelloMessage;
  const client = acceptHello(offer, replyReceived);
  return { server, client, reply };
}

function throwsCode(fn: () => unknown, code: string): ProtocolError {
  let caught: unknown;
  assert.throws(fn, (err: unknown) => {
    caught = err;
    return err instanceof ProtocolError && err.code === code;
  });
  return caught as ProtocolError;
}

describe('versions', () => {
  it('splits and formats major.minor', () => {
    assert.equal(
      PROTOCOL_VERSION,
      0x0102,
      'this build speaks 1.2 (REQUEST metadata and timeout; room pushes)',
    );
    assert.equal(versionMajor(0x0203), 2);
    assert.equal(versionMinor(0x0203), 3);
    assert.equal(formatVersion(0x0100), '1.0');
  });

  it('agrees on the lower minor of the same major', () => {
    const { server, client, reply } = handshake(hello({}, 0x0105), { version: 0x0102 });
    assert.equal(reply.version, 0x0102);
    assert.equal(server.version, 0x0102);
    assert.equal(client.version, 0x0102);
    assert.equal(handshake(hello({}, 0x0101), { version: 0x0107 }).client.version, 0x0101);
  });

  it('a 1.0 or 1.1 peer and this 1.2 build agree on the lower, either way round', () => {
    assert.equal(handshake(hello({}, 0x0100)).client.version, 0x0100);
    assert.equal(handshake(hello({}), { version: 0x0100 }).client.version, 0x0100);
    assert.equal(handshake(hello({}, 0x0101)).client.version, 0x0101);
    assert.equal(handshake(hello({}), { version: 0x0101 }).client.version, 0x0101);
  });

  it('refuses another major with ERR_VERSION carrying the server version', () => {
    const err = throwsCode(() => answerHello(hello({}, 0x0200)), 'ERR_VERSION');
    assert.deepEqual(err.details, { version: PROTOCOL_VERSION });
    throwsCode(() => answerHello(hello({}, 0x0001)), 'ERR_VERSION');
  });

  it('client refuses a reply of another major or a higher minor', () => {
    const reply = answerHello(hello({})).reply;
    throwsCode(() => acceptHello(hello({}), { ...reply, version: 0x0200 }), 'ERR_VERSION');
    throwsCode(() => acceptHello(hello({}), { ...reply, version: 0x0103 }), 'ERR_VERSION');
    throwsCode(() => acceptHello(hello({}, 0x0100), { ...reply, version: 0x0101 }), 'ERR_VERSION');
  });
});

describe('parameters', () => {
  it('defaults when neither side says anything', () => {
    const { server, client } = handshake(hello({}));
    const expected = {
      version: PROTOCOL_VERSION,
      heartbeatIntervalMs: HELLO_DEFAULTS.heartbeatIntervalMs,
      heartbeatTimeoutMs: HELLO_DEFAULTS.heartbeatTimeoutMs,
      maxFrameLength: HELLO_DEFAULTS.maxFrameLength,
      maxInFlight: HELLO_DEFAULTS.maxInFlight,
      codec: 'json',
    };
    assert.deepEqual(server, { ...expected, peerName: undefined });
    assert.deepEqual(client, { ...expected, peerName: undefined });
  });

  it('takes the smaller limits and the faster heartbeat, and both sides agree', () => {
    const { server, client } = handshake(
      hello({
        heartbeatIntervalMs: 2000,
        heartbeatTimeoutMs: 7000,
        maxFrameLength: 1 << 20,
        maxInFlight: 1 << 20,
        name: 'c',
      }),
      { maxInFlight: 500, heartbeatIntervalMs: 5000, heartbeatTimeoutMs: 20000, name: 's' },
    );
    assert.equal(server.heartbeatIntervalMs, 2000);
    assert.equal(server.heartbeatTimeoutMs, 7000);
    assert.equal(server.maxFrameLength, 1 << 20);
    assert.equal(server.maxInFlight, 500);
    assert.equal(server.peerName, 'c');
    assert.equal(client.peerName, 's');
    assert.deepEqual({ ...client, peerName: 'x' }, { ...server, peerName: 'x' });
  });

  it('holds the heartbeat interval at the server floor and the timeout at two intervals', () => {
    const { server } = handshake(hello({ heartbeatIntervalMs: 10, heartbeatTimeoutMs: 10 }), {
      minHeartbeatIntervalMs: 500,
    });
    assert.equal(server.heartbeatIntervalMs, 500);
    assert.equal(server.heartbeatTimeoutMs, 1000);
  });

  it('client clamps limits to its own offer even if the server answers more', () => {
    const offer = hello({ maxFrameLength: 4096, maxInFlight: 10 });
    const reply = hello({
      heartbeatIntervalMs: 1000,
      heartbeatTimeoutMs: 3000,
      maxFrameLength: 1 << 24,
      maxInFlight: 1000,
      codec: 'json',
    });
    const a = acceptHello(offer, reply);
    assert.equal(a.maxFrameLength, 4096);
    assert.equal(a.maxInFlight, 10);
  });

  it('client refuses a reply that lacks an agreed value', () => {
    throwsCode(() => acceptHello(hello({}), hello({ codec: 'json' })), 'ERR_MALFORMED');
  });

  it('never echoes the credential back', () => {
    const { reply } = handshake(hello({ credential: 'tok' }));
    assert.equal(reply.params.credential, undefined);
  });
});

describe('codec negotiation', () => {
  it("picks the first of the client's codecs the server supports", () => {
    const { server, client } = handshake(hello({ codecs: ['cbor', 'msgpack', 'json'] }), {
      codecs: ['json', 'msgpack'],
    });
    assert.equal(server.codec, 'msgpack');
    assert.equal(client.codec, 'msgpack');
  });

  it('an absent list means json', () => {
    assert.equal(handshake(hello({}), { codecs: ['raw', 'json'] }).client.codec, 'json');
  });

  it('ERR_NO_COMMON_CODEC when nothing matches', () => {
    const err = throwsCode(
      () => answerHello(hello({ codecs: ['cbor'] }), { codecs: ['json'] }),
      'ERR_NO_COMMON_CODEC',
    );
    assert.deepEqual(err.details, { codecs: ['json'] });
    throwsCode(() => answerHello(hello({}), { codecs: ['msgpack'] }), 'ERR_NO_COMMON_CODEC');
  });

  it('client refuses a codec it did not offer', () => {
    const reply = answerHello(hello({})).reply;
    throwsCode(
      () =>
        acceptHello(hello({ codecs: ['msgpack'] }), { ...reply, params: { ...reply.params, codec: 'json' } }),
      'ERR_NO_COMMON_CODEC',
    );
  });
});

describe('agreements are shared', () => {
  it('equal negotiations without a peer name share one frozen agreement; any difference makes another', () => {
    const a = handshake(hello({ heartbeatIntervalMs: 7000 }));
    const b = handshake(hello({ heartbeatIntervalMs: 7000 }));
    assert.equal(a.server, b.server, 'one object on the server side');
    assert.equal(a.client, b.client, 'one object on the client side');
    assert.ok(Object.isFrozen(a.server) && Object.isFrozen(a.client));
    assert.throws(() => {
      (a.server as { maxInFlight: number }).maxInFlight = 1;
    }, TypeError);
    const d = handshake(hello({ heartbeatIntervalMs: 8000 }));
    assert.notEqual(d.server, a.server);
    assert.equal(d.server.heartbeatIntervalMs, 8000);
  });

  it('regression: a peer-chosen name is never a key of the process-wide table (16 MiB names exhausted the heap)', () => {
    const a = handshake(hello({ name: 'svc-a', heartbeatIntervalMs: 7000 }));
    const b = handshake(hello({ name: 'svc-a', heartbeatIntervalMs: 7000 }));
    assert.notEqual(a.server, b.server, 'named agreements are made per connection, and collected with it');
    assert.equal(a.server.peerName, 'svc-a');
    assert.ok(Object.isFrozen(a.server));
    const e = handshake(hello({ name: '7000,"json"' }));
    assert.equal(e.server.peerName, '7000,"json"');
  });

  it('name and credential are bounded: 255 and 4096 characters', () => {
    assert.doesNotThrow(() => decodeHelloParams(Buffer.from(JSON.stringify({ name: 'n'.repeat(255) }))));
    throwsCode(
      () => decodeHelloParams(Buffer.from(JSON.stringify({ name: 'n'.repeat(256) }))),
      'ERR_MALFORMED',
    );
    assert.doesNotThrow(() =>
      decodeHelloParams(Buffer.from(JSON.stringify({ credential: 'c'.repeat(4096) }))),
    );
    throwsCode(
      () => decodeHelloParams(Buffer.from(JSON.stringify({ credential: 'c'.repeat(4097) }))),
      'ERR_MALFORMED',
    );
    // The largest legal HELLO fits the pre-HELLO frame limit.
    const biggest = {
      heartbeatIntervalMs: 0x7fff_ffff,
      heartbeatTimeoutMs: 0x7fff_ffff,
      maxFrameLength: 0xffff_ffff,
      maxInFlight: 0xffff_ffff,
      codecs: Array.from({ length: 32 }, (_, i) => `${'c'.repeat(62)}${String(i).padStart(2, '0')}`),
      credential: 'c'.repeat(4096),
      name: 'n'.repeat(255),
    };
    assert.ok(encodeHelloParams(biggest).length + 4 <= HELLO_MAX_FRAME_LENGTH);
  });
});
