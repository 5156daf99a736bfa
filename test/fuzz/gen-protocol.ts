/**
 * Streams for the longlink protocol server (u32be frames): valid sessions, mutations of them, and
 * random bytes. Every choice is a fast-check arbitrary, so a run is replayed from its seed and a
 * failure shrinks to a small stream.
 *
 * A valid session is what a conforming client may send: HELLO (proposals within range), then
 * REQUESTs with fresh ids (wrapping past 2^32-1 to 1), NOTIFYs, CANCELs, PINGs (at most three
 * between requests, under the server's strike limit), optionally a GOAWAY last; every frame within the agreed
 * maxFrameLength. Mutations that must end in one particular way carry that expectation when they
 * are the only mutation of the case.
 */

import fc from 'fast-check';
import { parseFraming } from '../../src/codec/parse.js';
import { type HelloParams, type Message, MessageKind, PROTOCOL_VERSION } from '../../src/protocol/types.js';
import { frame, helloFrame } from '../server/edge-harness.js';
import { type EndMode, type Expect, type FuzzCase, printable } from './cases.js';
import { KiB, METHODS, type Method, PROTOCOL_LIMITS } from './model.js';
import { type Cut, cutsArb, decodeAll } from './stream.js';

type Json = fc.JsonValue;

type Op =
  | { t: 'request'; method: Method; json: Json | undefined; raw: Uint8Array; n: number; fill: number }
  | { t: 'notify'; topic: string; json: Json | undefined }
  | { t: 'cancel'; target: number }
  | { t: 'ping'; seq: number };

interface SessionSpec {
  hello: HelloParams;
  firstId: number;
  ops: Op[];
  goaway: boolean;
}

/** A valid session, encoded: one u32be frame per message. */
export interface Session {
  frames: Buffer[];
  /** What each frame is: 'HELLO', 'REQUEST' … */
  kinds: string[];
  requests: Array<{ id: number; method: string }>;
  /** The frame limit the HELLO agrees to (the client's proposal or the server's limit). */
  maxFrameLength: number;
}

const METHOD_NAMES = [...Object.keys(METHODS), 'no.such.method'] as Method[];

const helloArb: fc.Arbitrary<HelloParams> = fc.record(
  {
    maxInFlight: fc.integer({ min: 1, max: 128 }),
    maxFrameLength: fc.integer({ min: 1024, max: 128 * KiB }),
    codecs: fc.constantFrom(['json'], ['raw'], ['msgpack', 'json'], ['raw', 'json']),
    name: fc.string({ maxLength: 40 }),
    heartbeatIntervalMs: fc.integer({ min: 1, max: 60_000 }),
    heartbeatTimeoutMs: fc.integer({ min: 1, max: 120_000 }),
  },
  { requiredKeys: [] },
);

const jsonArb = fc.option(fc.jsonValue({ maxDepth: 2 }), { nil: undefined, freq: 4 });

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 10,
    arbitrary: fc.record({
      t: fc.constant('request' as const),
      method: fc.constantFrom(...METHOD_NAMES),
      json: jsonArb,
      raw: fc.uint8Array({ maxLength: 64 }),
      n: fc.oneof(fc.integer({ min: 0, max: 2000 }), fc.integer({ min: 0, max: 140 * KiB })),
      // A large request now and then (a JSON string of this many characters; 0: none).
      fill: fc.oneof({ weight: 12, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.nat(70 * KiB) }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      t: fc.constant('notify' as const),
      topic: fc.string({ minLength: 1, maxLength: 20 }),
      json: jsonArb,
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({ t: fc.constant('cancel' as const), target: fc.integer({ min: -1, max: 64 }) }),
  },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('ping' as const), seq: fc.nat() }) },
);

const sessionSpecArb: fc.Arbitrary<SessionSpec> = fc.record({
  hello: helloArb,
  firstId: fc.oneof(fc.constant(1), fc.integer({ min: 1, max: 0xffff_ffff }), fc.constant(0xffff_fffc)),
  ops: fc.array(opArb, { maxLength: 40 }),
  goaway: fc.boolean(),
});

function json(v: Json | undefined): Buffer {
  return v === undefined ? Buffer.alloc(0) : Buffer.from(JSON.stringify(v));
}

function nextId(id: number): number {
  return id === 0xffff_ffff ? 1 : id + 1;
}

function pingData(seq: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt32BE(seq >>> 0, 4);
  return b;
}

const GOAWAY: Message = {
  kind: MessageKind.GOAWAY,
  lastId: 0,
  retryAfterMs: 0,
  reason: 'ERR_CLIENT_CLOSING',
  message: 'fuzz client leaving',
};

/** Encodes a session spec into frames a conforming client could send. */
export function buildSession(spec: SessionSpec, goaway = spec.goaway): Session {
  const maxFrameLength = Math.min(
    spec.hello.maxFrameLength ?? PROTOCOL_LIMITS.maxFrameLength,
    PROTOCOL_LIMITS.maxFrameLength,
  );
  const codecs = spec.hello.codecs ?? ['json'];
  const raw = codecs.find((c) => c === 'json' || c === 'raw') === 'raw';
  const frames: Buffer[] = [
    frame({ kind: MessageKind.HELLO, version: PROTOCOL_VERSION, params: spec.hello }),
  ];
  const kinds = ['HELLO'];
  const requests: Array<{ id: number; method: string }> = [];
  let id = spec.firstId;
  let pings = 0;
  const push = (m: Message, kind: string) => {
    const f = frame(m);
    if (f.length - 4 > maxFrameLength) return false;
    frames.push(f);
    kinds.push(kind);
    return true;
  };
  for (const op of spec.ops) {
    switch (op.t) {
      case 'request': {
        let payload: Buffer;
        if (raw) payload = Buffer.from(op.raw);
        else if (op.method === 'big') payload = json(op.n);
        else if (op.method === 'sleep') payload = json(op.n % 21);
        else if (op.fill > 0) payload = json('x'.repeat(op.fill));
        else payload = json(op.json);
        // Too large for the agreed limit: the same request without its payload.
        const room = maxFrameLength - 7 - Buffer.byteLength(op.method);
        if (payload.length > room) payload = Buffer.alloc(0);
        if (push({ kind: MessageKind.REQUEST, id, method: op.method, payload }, 'REQUEST')) {
          requests.push({ id, method: op.method });
          id = nextId(id);
          pings = 0;
        }
        break;
      }
      case 'notify':
        // 'throw' makes the fixture's listener throw: reported, never fatal (the attack tests pin it).
        push(
          { kind: MessageKind.NOTIFY, topic: op.topic, payload: raw ? Buffer.alloc(0) : json(op.json) },
          'NOTIFY',
        );
        break;
      case 'cancel': {
        // An earlier request of this session, or (-1, or none yet) an id never sent: ignored.
        const target =
          op.target < 0 || requests.length === 0 ? undefined : requests[op.target % requests.length];
        push({ kind: MessageKind.CANCEL, id: target?.id ?? 0x7fff_0000 + (op.target & 0xff) }, 'CANCEL');
        break;
      }
      case 'ping':
        // PINGs less than minPingIntervalMs apart are strikes, and a REQUEST clears the strikes but
        // not the time of the last PING: three PINGs after a REQUEST (four at the start) earn GOAWAY
        // ERR_TOO_MANY_PINGS. Two between requests stay clear of it.
        if (pings >= 2) break;
        if (push({ kind: MessageKind.PING, data: pingData(op.seq) }, 'PING')) pings++;
        break;
    }
  }
  if (goaway) push(GOAWAY, 'GOAWAY');
  return { frames, kinds, requests, maxFrameLength };
}

// ---------------------------------------------------------------------------------------------
// Mutations

type FrameMutation =
  | { m: 'duplicate'; frame: number; gap: number }
  | { m: 'reorder'; a: number; b: number }
  | { m: 'second-hello'; at: number }
  | { m: 'before-hello'; kind: 'request' | 'notify' | 'cancel' | 'ping' | 'pong' | 'response' }
  | { m: 'ping-flood'; at: number; count: number }
  | { m: 'client-answer'; at: number; kind: 3 | 4; id: number }
  | { m: 'unknown-kind'; at: number; kind: number; body: Uint8Array }
  | { m: 'bad-hello'; variant: 'version' | 'codec' | 'json' | 'range' | 'oversize' }
  | { m: 'oversize'; at: number; extra: number };

type ByteMutation =
  | { m: 'bitflip'; at: number; bit: number }
  | { m: 'truncate'; at: number }
  | { m: 'garbage'; at: number; bytes: Uint8Array; aligned: boolean }
  | { m: 'length'; frame: number; delta: number }
  | { m: 'huge'; frame: number; length: number };

const frameMutationArb: fc.Arbitrary<FrameMutation> = fc.oneof(
  fc.record({ m: fc.constant('duplicate' as const), frame: fc.nat(), gap: fc.nat(4) }),
  fc.record({ m: fc.constant('reorder' as const), a: fc.nat(), b: fc.nat() }),
  fc.record({ m: fc.constant('second-hello' as const), at: fc.nat() }),
  fc.record({
    m: fc.constant('before-hello' as const),
    kind: fc.constantFrom('request', 'notify', 'cancel', 'ping', 'pong', 'response'),
  }),
  fc.record({ m: fc.constant('ping-flood' as const), at: fc.nat(), count: fc.integer({ min: 4, max: 12 }) }),
  fc.record({
    m: fc.constant('client-answer' as const),
    at: fc.nat(),
    kind: fc.constantFrom(3 as const, 4 as const),
    id: fc.integer({ min: 1, max: 0xffff_ffff }),
  }),
  fc.record({
    m: fc.constant('unknown-kind' as const),
    at: fc.nat(),
    kind: fc.oneof(fc.constant(0), fc.integer({ min: 10, max: 255 })),
    body: fc.uint8Array({ maxLength: 32 }),
  }),
  fc.record({
    m: fc.constant('bad-hello' as const),
    variant: fc.constantFrom('version', 'codec', 'json', 'range', 'oversize'),
  }),
  fc.record({ m: fc.constant('oversize' as const), at: fc.nat(), extra: fc.integer({ min: 1, max: 100 }) }),
);

const byteMutationArb: fc.Arbitrary<ByteMutation> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ m: fc.constant('bitflip' as const), at: fc.nat(), bit: fc.nat(7) }) },
  { weight: 2, arbitrary: fc.record({ m: fc.constant('truncate' as const), at: fc.nat() }) },
  {
    weight: 2,
    arbitrary: fc.record({
      m: fc.constant('garbage' as const),
      at: fc.nat(),
      bytes: fc.uint8Array({ minLength: 1, maxLength: 64 }),
      aligned: fc.boolean(),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      m: fc.constant('length' as const),
      frame: fc.nat(),
      delta: fc.oneof(fc.integer({ min: -8, max: 8 }), fc.integer({ min: -0x7fff_ffff, max: 0x7fff_ffff })),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      m: fc.constant('huge' as const),
      frame: fc.nat(),
      length: fc.integer({ min: PROTOCOL_LIMITS.maxFrameLength + 1, max: 0xffff_ffff }),
    }),
  },
);

/** A protocol error close with this code, read by the client as `wire` (when it reads our FIN). */
function protocolError(code: string, wire = code): Expect {
  return { reasons: ['protocol-error'], code, wire };
}

function ping(seq: number): Buffer {
  return frame({ kind: MessageKind.PING, data: pingData(seq) });
}

/** Where frames may be inserted so that everything before is the valid session, not after its GOAWAY. */
function insertAt(s: Session, at: number): number {
  const last = s.kinds[s.kinds.length - 1] === 'GOAWAY' ? s.frames.length - 1 : s.frames.length;
  return 1 + (at % last);
}

/** Applies a frame-level mutation; returns the expectation it carries when it is the case's only one. */
function applyFrameMutation(s: Session, frames: Buffer[], mu: FrameMutation): Expect {
  switch (mu.m) {
    case 'duplicate': {
      const i = mu.frame % frames.length;
      frames.splice(Math.min(frames.length, i + 1 + mu.gap), 0, frames[i] as Buffer);
      return {};
    }
    case 'reorder': {
      const a = mu.a % frames.length;
      const b = mu.b % frames.length;
      [frames[a], frames[b]] = [frames[b] as Buffer, frames[a] as Buffer];
      return {};
    }
    case 'second-hello':
      frames.splice(
        insertAt(s, mu.at),
        0,
        frame({ kind: MessageKind.HELLO, version: PROTOCOL_VERSION, params: {} }),
      );
      return protocolError('ERR_PROTOCOL');
    case 'before-hello': {
      const early: Record<typeof mu.kind, Message> = {
        request: { kind: MessageKind.REQUEST, id: 1, method: 'echo', payload: Buffer.from('1') },
        notify: { kind: MessageKind.NOTIFY, topic: 'early', payload: Buffer.alloc(0) },
        cancel: { kind: MessageKind.CANCEL, id: 1 },
        ping: { kind: MessageKind.PING, data: pingData(1) },
        pong: { kind: MessageKind.PONG, data: pingData(1) },
        response: { kind: MessageKind.RESPONSE, id: 1, payload: Buffer.alloc(0) },
      };
      frames.unshift(frame(early[mu.kind]));
      return protocolError('ERR_HELLO_REQUIRED');
    }
    case 'ping-flood': {
      const flood = Array.from({ length: mu.count }, (_, i) => ping(1000 + i));
      frames.splice(insertAt(s, mu.at), 0, ...flood);
      return { goaway: 'ERR_TOO_MANY_PINGS' };
    }
    case 'client-answer': {
      const m: Message =
        mu.kind === 3
          ? { kind: MessageKind.RESPONSE, id: mu.id, payload: Buffer.alloc(0) }
          : { kind: MessageKind.ERROR, id: mu.id, code: 'ERR_X', message: '', details: Buffer.alloc(0) };
      frames.splice(insertAt(s, mu.at), 0, frame(m));
      return protocolError('ERR_PROTOCOL');
    }
    case 'unknown-kind': {
      const body = Buffer.concat([Buffer.from([mu.kind, 0]), mu.body]);
      const head = Buffer.alloc(4);
      head.writeUInt32BE(body.length, 0);
      frames.splice(insertAt(s, mu.at), 0, Buffer.concat([head, body]));
      return protocolError('ERR_UNKNOWN_KIND');
    }
    case 'bad-hello': {
      let hello: Buffer;
      let expect: Expect;
      switch (mu.variant) {
        case 'version':
          hello = helloFrame({});
          hello.writeUInt16BE(0x0200, 6);
          expect = protocolError('ERR_VERSION');
          break;
        case 'codec':
          hello = helloFrame({ codecs: ['nope'] });
          expect = protocolError('ERR_NO_COMMON_CODEC');
          break;
        case 'json':
          hello = Buffer.concat([helloFrame({}).subarray(0, 8), Buffer.from('{not json')]);
          hello.writeUInt32BE(hello.length - 4, 0);
          expect = protocolError('ERR_MALFORMED');
          break;
        case 'range':
          hello = helloFrame({ maxFrameLength: 5 });
          expect = protocolError('ERR_MALFORMED');
          break;
        case 'oversize':
          // Over the server's pre-HELLO frame limit (8 KiB): refused at its header.
          hello = helloFrame({ name: 'n'.repeat(9000) });
          expect = protocolError('ERR_FRAME_TOO_LARGE');
          break;
      }
      frames[0] = hello;
      return expect;
    }
    case 'oversize': {
      // A request one to a hundred bytes over the agreed limit: refused at its header.
      const body = Buffer.alloc(s.maxFrameLength + mu.extra, 0x20);
      body[0] = MessageKind.REQUEST;
      body.writeUInt32BE(0x7000_0000, 2);
      body[6] = 4;
      body.write('echo', 7, 'latin1');
      const head = Buffer.alloc(4);
      head.writeUInt32BE(body.length, 0);
      frames.splice(insertAt(s, mu.at), 0, Buffer.concat([head, body]));
      return protocolError('ERR_FRAME_TOO_LARGE');
    }
  }
}

/** Frame starts in a stream of u32be frames (stops at a length that runs past the end). */
function boundaries(frames: readonly Buffer[]): number[] {
  const out = [0];
  let at = 0;
  for (const f of frames) {
    at += f.length;
    out.push(at);
  }
  return out;
}

/** Applies a byte-level mutation; returns the stream and the expectation it carries alone. */
function applyByteMutation(
  stream: Buffer,
  starts: readonly number[],
  mu: ByteMutation,
): { stream: Buffer; expect: Expect; cutMidFrame?: boolean } {
  const len = stream.length;
  switch (mu.m) {
    case 'bitflip': {
      if (len === 0) return { stream, expect: {} };
      const out = Buffer.from(stream);
      const at = mu.at % len;
      out[at] = (out[at] as number) ^ (1 << mu.bit);
      return { stream: out, expect: {} };
    }
    case 'truncate': {
      const at = mu.at % (len + 1);
      const mid = !starts.includes(at);
      return { stream: stream.subarray(0, at), expect: {}, cutMidFrame: mid };
    }
    case 'garbage': {
      const at = mu.aligned ? (starts[mu.at % starts.length] as number) : mu.at % (len + 1);
      return { stream: Buffer.concat([stream.subarray(0, at), mu.bytes, stream.subarray(at)]), expect: {} };
    }
    case 'length':
    case 'huge': {
      const frameStarts = starts.slice(0, -1).filter((s) => s + 4 <= len);
      if (frameStarts.length === 0) return { stream, expect: {} };
      const at = frameStarts[mu.frame % frameStarts.length] as number;
      const out = Buffer.from(stream);
      const old = out.readUInt32BE(at);
      out.writeUInt32BE(mu.m === 'huge' ? mu.length : (old + mu.delta) >>> 0, at);
      return {
        stream: out,
        expect: mu.m === 'huge' ? protocolError('ERR_FRAME_TOO_LARGE') : {},
      };
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Cases

const endArb = (weights: Partial<Record<EndMode, number>>): fc.Arbitrary<EndMode> =>
  fc.oneof(
    ...(Object.entries(weights) as Array<[EndMode, number]>).map(([end, weight]) => ({
      weight,
      arbitrary: fc.constant(end),
    })),
  );

const u32be = parseFraming('u32be', { maxFrameLength: 0xffff_ffff });

/** A stall needs the server to have a reason to close: a frame left unfinished, or no HELLO yet. */
function stallable(stream: Buffer): boolean {
  const d = decodeAll(u32be, stream);
  return d.error !== undefined || d.partial > 0 || d.frames.length === 0;
}

function validCase(spec: SessionSpec, end: EndMode, pauseReads: boolean, cuts: Cut[]): FuzzCase {
  // drain-fin may end with the client's GOAWAY or not; fin with GOAWAY is "goaway then FIN at once".
  const s = buildSession(spec);
  const goaway = s.kinds[s.kinds.length - 1] === 'GOAWAY';
  let expect: Expect;
  switch (end) {
    case 'drain-fin':
      expect = { reasons: ['remote-fin', 'going-away'], answers: 'all' };
      break;
    case 'fin':
      // With GOAWAY first, PROTOCOL.md §9.2 step 4: the server answers what it read, then closes.
      expect = goaway
        ? { reasons: ['remote-fin', 'going-away'], answers: 'all' }
        : { reasons: ['remote-fin', 'going-away'], answers: 'sync' };
      break;
    default:
      // An RST may be reported as an EOF (Node does when it lands on unread data), mid-frame too.
      expect = { reasons: ['remote-reset', 'remote-fin', 'going-away', 'protocol-error'] };
  }
  return printable({
    label: `protocol/valid${goaway ? '+goaway' : ''}/${end}`,
    stream: Buffer.concat(s.frames),
    cuts,
    end,
    expect,
    helloBytes: (s.frames[0] as Buffer).length,
    pauseReads,
    requests: s.requests,
    echoes: 0,
  });
}

function mutatedCase(
  spec: SessionSpec,
  frameMutations: FrameMutation[],
  byteMutations: ByteMutation[],
  endPref: EndMode,
  pipelined: boolean,
  pauseReads: boolean,
  cuts: Cut[],
): FuzzCase {
  const s = buildSession(spec);
  const frames = s.frames.slice();
  let expect: Expect = {};
  for (const mu of frameMutations) expect = applyFrameMutation(s, frames, mu);
  let stream: Buffer = Buffer.concat(frames);
  let cutMidFrame: boolean | undefined;
  for (const mu of byteMutations) {
    const r = applyByteMutation(stream, boundaries(frames), mu);
    stream = r.stream;
    expect = r.expect;
    cutMidFrame = r.cutMidFrame;
  }
  // The client waits for the server's HELLO when its own HELLO came through the mutations intact.
  const hello = s.frames[0] as Buffer;
  const intact = stream.length >= hello.length && stream.subarray(0, hello.length).equals(hello);
  const helloBytes = intact && !pipelined ? hello.length : 0;
  // Pipelined frames are decoded under the pre-HELLO limit when they share a read with the HELLO:
  // a larger one is then refused for its size, whatever the mutation did.
  const bigFrame = frames.some((f) => f.length - 4 > PROTOCOL_LIMITS.helloMaxFrameLength);
  // And an 'oversize' frame (over the agreed limit, maybe under the pre-HELLO one) passes if it
  // shares the HELLO's read.
  const oversize = frameMutations.some((m) => m.m === 'oversize');
  const only =
    frameMutations.length + byteMutations.length === 1 && !(helloBytes === 0 && (bigFrame || oversize));
  let end = endPref;
  if (end === 'stall' && !stallable(stream)) end = 'fin';
  if (!only) expect = {};
  else if (cutMidFrame === true) {
    expect =
      end === 'stall'
        ? { reasons: ['frame-timeout'], code: 'ERR_FRAME_TIMEOUT' }
        : end === 'fin'
          ? protocolError('ERR_FRAME_TRUNCATED', 'ERR_MALFORMED')
          : {};
  } else if (end === 'reset') {
    // Whatever the mutation, an RST can overtake the server's reading of it.
    expect = {};
  }
  const names = [...frameMutations, ...byteMutations].map((m) => m.m).join('+');
  return printable({
    label: `protocol/mutated:${names}${pipelined ? '+pipelined' : ''}/${end}`,
    stream,
    cuts,
    end,
    expect,
    helloBytes,
    pauseReads,
    requests: s.requests,
    echoes: 0,
  });
}

function randomCase(
  shape: 'bytes' | 'after-hello' | 'frames',
  bytes: Uint8Array,
  bodies: Uint8Array[],
  endPref: EndMode,
  cuts: Cut[],
): FuzzCase {
  const hello = frame({ kind: MessageKind.HELLO, version: PROTOCOL_VERSION, params: {} });
  let stream: Buffer;
  if (shape === 'bytes') stream = Buffer.from(bytes);
  else if (shape === 'after-hello') stream = Buffer.concat([hello, bytes]);
  else {
    // Well-framed messages of random bytes: the kind byte mostly a real kind, so decodeMessage's
    // checks of each kind's fields are what gets fuzzed.
    const parts = [hello];
    for (const b of bodies) {
      const head = Buffer.alloc(4);
      head.writeUInt32BE(b.length, 0);
      parts.push(head, Buffer.from(b));
    }
    stream = Buffer.concat(parts);
  }
  const end = endPref === 'stall' && !stallable(stream) ? 'fin' : endPref;
  return printable({
    label: `protocol/random:${shape}/${end}`,
    stream,
    cuts,
    end,
    expect: {},
    helloBytes: 0,
    pauseReads: false,
    requests: [],
    echoes: 0,
  });
}

const bodyArb = fc
  .tuple(
    fc.oneof({ weight: 5, arbitrary: fc.integer({ min: 1, max: 9 }) }, { weight: 1, arbitrary: fc.nat(255) }),
    fc.uint8Array({ maxLength: 48 }),
  )
  .map(([kind, rest]) => Uint8Array.from([kind, ...rest]));

/** One case in six: the client stops reading while it writes. */
const pauseArb = fc.constantFrom(false, false, false, false, false, true);

/** One protocol case: valid (about half), mutated, or random. */
export function protocolCaseArb(): fc.Arbitrary<FuzzCase> {
  return fc.oneof(
    {
      weight: 4,
      arbitrary: fc
        .tuple(sessionSpecArb, endArb({ 'drain-fin': 5, fin: 3, reset: 1 }), pauseArb, cutsArb())
        .map(([spec, end, pause, cuts]) => validCase(spec, end, pause, cuts)),
    },
    {
      weight: 4,
      arbitrary: fc
        .tuple(
          sessionSpecArb,
          fc.array(frameMutationArb, { maxLength: 2 }),
          fc.array(byteMutationArb, { maxLength: 2 }),
          endArb({ fin: 12, reset: 1, stall: 1 }),
          fc.constantFrom(false, false, false, true),
          pauseArb,
          cutsArb(),
        )
        .filter(([, f, b]) => f.length + b.length > 0)
        .map(([spec, f, b, end, pipelined, pause, cuts]) =>
          mutatedCase(spec, f, b, end, pipelined, pause, cuts),
        ),
    },
    {
      weight: 2,
      arbitrary: fc
        .tuple(
          fc.constantFrom('bytes' as const, 'after-hello' as const, 'frames' as const),
          fc.uint8Array({ maxLength: 2048 }),
          fc.array(bodyArb, { maxLength: 16 }),
          endArb({ fin: 12, reset: 1, stall: 1 }),
          cutsArb(),
        )
        .map(([shape, bytes, bodies, end, cuts]) => randomCase(shape, bytes, bodies, end, cuts)),
    },
  );
}
