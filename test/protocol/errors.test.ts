import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { LonglinkError } from '../../src/errors.js';
import {
  decodeMessage,
  ErrorCode,
  type ErrorMessage,
  encodeMessage,
  errorToMessage,
  MessageKind,
  ProtocolError,
  RemoteError,
  rawCodec,
  remoteErrorFromMessage,
} from '../../src/protocol/index.js';

describe('ProtocolError and RemoteError', () => {
  it('are LonglinkErrors with a code, a name and a brand', () => {
    const p = new ProtocolError(ErrorCode.MALFORMED, 'bad', { details: { at: 3 } });
    assert.ok(p instanceof ProtocolError);
    assert.ok(p instanceof LonglinkError);
    assert.ok(!(p instanceof RemoteError));
    assert.equal(p.code, 'ERR_MALFORMED');
    assert.equal(p.name, 'ProtocolError');
    assert.deepEqual(p.details, { at: 3 });
    const r = new RemoteError('ERR_X', 'peer says no', { requestId: 4, details: [1] });
    assert.ok(r instanceof RemoteError);
    assert.ok(r instanceof LonglinkError);
    assert.ok(!(r instanceof ProtocolError));
    assert.equal(r.requestId, 4);
    assert.equal(new RemoteError('E', 'm').requestId, 0);
  });

  it('instanceof holds for an error from another copy of the package (brand)', () => {
    // What a second copy's error looks like: a different class with the same brands recorded.
    class ProtocolErrorCopy extends LonglinkError {
      static override readonly brand = 'ProtocolError';
    }
    const foreign = new ProtocolErrorCopy('ERR_MALFORMED', 'x');
    assert.ok(foreign instanceof ProtocolError);
  });

  it('every documented code is printable ASCII and fits a u8 length', () => {
    for (const code of Object.values(ErrorCode)) assert.match(code, /^ERR_[A-Z_]{1,251}$/);
  });
});

describe('errorToMessage / remoteErrorFromMessage', () => {
  it('round-trips code, message and JSON details through the wire', () => {
    const err = new ProtocolError(ErrorCode.VERSION, 'speak 1.x', { details: { version: 256 } });
    const msg = errorToMessage(err);
    assert.equal(msg.id, 0);
    const wire = decodeMessage(Buffer.concat(encodeMessage(msg))) as ErrorMessage;
    const remote: RemoteError = remoteErrorFromMessage(wire);
    assert.equal(remote.code, 'ERR_VERSION');
    assert.equal(remote.message, 'speak 1.x');
    assert.equal(remote.requestId, 0);
    assert.deepEqual(remote.details, { version: 256 });
  });

  it('answers a request id and leaves details out when there are none', () => {
    const msg = errorToMessage({ code: 'ERR_METHOD_NOT_FOUND', message: 'no such method' }, 17);
    assert.equal(msg.kind, MessageKind.ERROR);
    assert.equal(msg.id, 17);
    assert.equal(msg.details.length, 0);
    assert.equal(remoteErrorFromMessage(msg).details, undefined);
  });

  it('falls back to ERR_HANDLER for codes that cannot go on the wire, never throws', () => {
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    const msg = errorToMessage({ code: 'not a code', message: 'x', details: cyclic }, 1);
    assert.equal(msg.code, 'ERR_HANDLER');
    assert.equal(msg.details.length, 0);
    assert.equal(errorToMessage(new Error('plain')).code, 'ERR_HANDLER');
    assert.equal(errorToMessage({ code: 'E'.repeat(256), message: 'x' }).code, 'ERR_HANDLER');
    assert.equal(errorToMessage({ message: 5 }).message, '5');
  });

  it('keeps undecodable details as a copy of the raw bytes', () => {
    const frame = Buffer.concat(
      encodeMessage({
        kind: MessageKind.ERROR,
        id: 2,
        code: 'E',
        message: 'm',
        details: Buffer.from('{oops'),
      }),
    );
    const msg = decodeMessage(frame) as ErrorMessage;
    const remote = remoteErrorFromMessage(msg);
    assert.ok(Buffer.isBuffer(remote.details));
    assert.equal((remote.details as Buffer).toString(), '{oops');
    const raw = remoteErrorFromMessage(msg, rawCodec);
    frame.fill(0); // the socket chunk gets reused …
    assert.equal((remote.details as Buffer).toString(), '{oops', '… and the details were a copy');
    assert.equal((raw.details as Buffer).toString(), '{oops', 'raw details are copied too');
  });
});
