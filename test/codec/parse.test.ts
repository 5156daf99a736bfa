import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { FRAMING_SPEC_FORMS, parseFraming } from '../../src/codec/index.js';
import { InvalidArgumentError } from '../../src/errors.js';
import { assertThrowsCode, decodeChunks, hex } from './helpers.js';

describe('parseFraming', () => {
  test('every documented form, and the canonical name it gives', () => {
    const cases: [string, string][] = [
      ['ascii', 'ascii:20'],
      ['ascii:20', 'ascii:20'],
      ['ascii:8', 'ascii:8'],
      ['ascii:10:space', 'ascii:10:space'],
      ['ascii:10:incl:space', 'ascii:10:space:incl'],
      ['ascii:20:prefix=6C656E6774683A', 'ascii:20:prefix=6c656e6774683a'],
      ['u8', 'u8'],
      ['u16be', 'u16be'],
      ['u16le', 'u16le'],
      ['u24be', 'u24be'],
      ['u24le', 'u24le'],
      ['u32be', 'u32be'],
      ['u32le', 'u32le'],
      ['u64be', 'u64be'],
      ['u64le', 'u64le'],
      ['u16be:strip=3:adj=1:off=1', 'u16be:off=1:adj=1'],
      ['u16be:strip=4:adj=1:off=1', 'u16be:off=1:adj=1:strip=4'],
      ['u16be:adj=-2:strip=0', 'u16be:adj=-2:strip=0'],
      ['u32be:strip=4', 'u32be'],
      ['varint', 'varint'],
      ['line', 'line'],
      ['crlf', 'crlf'],
      ['delimiter:0d0a', 'crlf'],
      ['delimiter:0D0A:keep', 'delimiter:0d0a:keep'],
      ['delimiter:00', 'delimiter:00'],
    ];
    for (const [spec, name] of cases) {
      const framing = parseFraming(spec);
      assert.equal(framing.name, name, spec);
      assert.equal(parseFraming(name).name, name, `${name} is a fixed point`);
    }
  });

  test('maxFrameLength is passed through', () => {
    for (const spec of ['ascii', 'u32be', 'varint', 'line', 'crlf', 'delimiter:00']) {
      assert.equal(parseFraming(spec, { maxFrameLength: 1234 }).maxFrameLength, 1234);
    }
    assertThrowsCode(
      () => parseFraming('u32be', { maxFrameLength: 0 }),
      InvalidArgumentError,
      'ERR_INVALID_ARGUMENT',
    );
  });

  test("a parsed framing works: the sources' ASCII header", () => {
    const frames = decodeChunks(parseFraming('ascii'), [Buffer.from('00000000000000000002hi')]);
    assert.deepEqual(hex(frames), hex([Buffer.from('hi')]));
  });

  test('unknown or malformed specs list the valid forms', () => {
    const bad = [
      '',
      'json',
      'u32',
      'U32BE',
      'u8be',
      'ascii:x',
      'ascii:20:tabs',
      'ascii:0',
      'ascii:20:space:space',
      'u32be:off=-1',
      'u32be:adj=1.5',
      'u32be:foo=1',
      'u32be:off=1:off=2',
      'varint:1',
      'line:x',
      'crlf:keep',
      'delimiter',
      'delimiter:0',
      'delimiter:zz',
      'delimiter:0a:strip',
      'ascii:20:prefix=',
      'ascii:20:prefix=0a',
    ];
    for (const spec of bad) {
      const err = assertThrowsCode(() => parseFraming(spec), InvalidArgumentError, 'ERR_INVALID_ARGUMENT');
      if (!spec.startsWith('ascii:0') && !spec.includes('prefix=0a')) {
        assert.match(err.message, /Valid forms/, spec);
        assert.ok(err.message.includes('delimiter:HEX'), spec);
      }
    }
    assert.ok(FRAMING_SPEC_FORMS.length > 5);
  });
});
