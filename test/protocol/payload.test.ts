import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { InvalidArgumentError } from '../../src/errors.js';
import {
  jsonCodec,
  type PayloadCodec,
  PayloadCodecRegistry,
  ProtocolError,
  rawCodec,
} from '../../src/protocol/index.js';

describe('json codec', () => {
  it('round-trips JSON values', () => {
    for (const v of [null, 0, -1.5, 'é', [], [1, 'a', null], { a: { b: [true, false] } }]) {
      assert.deepEqual(jsonCodec.decode(jsonCodec.encode(v)), v);
    }
  });

  it('maps undefined to the empty payload and back', () => {
    assert.equal(jsonCodec.encode(undefined).length, 0);
    assert.equal(jsonCodec.decode(Buffer.alloc(0)), undefined);
  });

  it('rejects values without a JSON form with InvalidArgumentError', () => {
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    for (const v of [10n, cyclic, () => 1, Symbol('s')]) {
      assert.throws(() => jsonCodec.encode(v), InvalidArgumentError);
    }
  });

  it('rejects bytes that are not JSON with ProtocolError ERR_BAD_PAYLOAD', () => {
    for (const b of [Buffer.from('{'), Buffer.from([0xff]), Buffer.from('"\xff"', 'latin1')]) {
      assert.throws(
        () => jsonCodec.decode(b),
        (err: unknown) => err instanceof ProtocolError && err.code === 'ERR_BAD_PAYLOAD',
      );
    }
  });
});

describe('raw codec', () => {
  it('passes Buffers through and wraps Uint8Arrays without copying', () => {
    const b = Buffer.from([1, 2, 3]);
    assert.equal(rawCodec.encode(b), b);
    const ab = new ArrayBuffer(8);
    const u = new Uint8Array(ab, 2, 3);
    const wrapped = rawCodec.encode(u);
    assert.ok(Buffer.isBuffer(wrapped));
    assert.equal(wrapped.buffer, ab);
    assert.equal(wrapped.byteOffset, 2);
    assert.equal(wrapped.length, 3);
    assert.equal(rawCodec.decode(b), b);
  });

  it('encodes undefined (no result) as no bytes, which decode to an empty Buffer', () => {
    assert.equal(rawCodec.encode(undefined).length, 0);
  });

  it('rejects anything else with InvalidArgumentError', () => {
    for (const v of ['str', 1, null, {}, [1, 2], new Uint16Array(2)]) {
      assert.throws(() => rawCodec.encode(v), InvalidArgumentError);
    }
  });
});

describe('PayloadCodecRegistry', () => {
  const msgpackish: PayloadCodec = {
    name: 'fake-msgpack',
    encode: (v) => Buffer.from(String(v)),
    decode: (b) => b.toString(),
  };

  it('holds json and raw by default, in that order', () => {
    const r = new PayloadCodecRegistry();
    assert.deepEqual(r.names(), ['json', 'raw']);
    assert.equal(r.get('json'), jsonCodec);
    assert.ok(r.has('raw'));
  });

  it('registers a codec at the end, replaces one of the same name in place', () => {
    const r = new PayloadCodecRegistry().register(msgpackish);
    assert.deepEqual(r.names(), ['json', 'raw', 'fake-msgpack']);
    const other = { ...jsonCodec, name: 'json' };
    r.register(other);
    assert.deepEqual(r.names(), ['json', 'raw', 'fake-msgpack']);
    assert.equal(r.get('json'), other);
  });

  it("negotiates the first of the peer's names it has", () => {
    const r = new PayloadCodecRegistry([msgpackish, jsonCodec]);
    assert.equal(r.negotiate(['cbor', 'json', 'fake-msgpack']), jsonCodec);
    assert.equal(r.negotiate(['fake-msgpack']), msgpackish);
    assert.equal(r.negotiate(), jsonCodec);
    assert.equal(r.negotiate(['cbor']), undefined);
  });

  it('rejects invalid codecs', () => {
    const r = new PayloadCodecRegistry([]);
    for (const c of [
      { ...msgpackish, name: '' },
      { ...msgpackish, name: 'has space' },
      { ...msgpackish, name: 'x'.repeat(65) },
      { name: 'x', encode: 1, decode: () => 1 },
      null,
    ]) {
      assert.throws(() => r.register(c as unknown as PayloadCodec), InvalidArgumentError);
    }
  });
});
