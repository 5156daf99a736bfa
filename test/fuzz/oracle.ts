/**
 * The invariants, checked per case from three accounts of one connection: the bytes the client
 * wrote (the case), what it read (the observation), and what the server says it read and queued
 * (the fixture's trace in the disconnect event).
 *
 * What the server guarantees, as read from the code and PROTOCOL.md, and asserted here:
 *
 * - Every REQUEST the server accepted — handed to the session while the connection was writable,
 *   after the HELLO exchange, with an id not outstanding — gets exactly one RESPONSE or ERROR:
 *   never two, never one for an id it did not accept.
 * - A request to a method that answers at once is always answered: the answer is queued before
 *   the next frame is looked at, and a close flushes the queue before its FIN.
 * - A request still being handled when the connection closes may go unanswered only when the
 *   connection broke or the client was at fault (DROPPING_REASONS; PROTOCOL.md §9.3), or the
 *   client sent FIN with no GOAWAY on either side (§9.4: a cut). After a GOAWAY — the client's
 *   (§9.2 step 4: "B, on EOF, ends its own side once it owes nothing") or the server's own (§9.1:
 *   requests up to lastId "will be completed") — a FIN from the client does not excuse it.
 * - Frames the server read after it began to close (requests in the same read as a malformed
 *   message, say) are not accepted: no answer is owed, none may come.
 * - What the client reads is what the server queued, in order: all of it when the client read the
 *   server's FIN, a prefix when the connection was reset.
 * - Every connection closes, with a reason of CloseReason; offenders with the matching reason and
 *   code, and (when the client can read it) the connection ERROR naming it.
 * - Legacy: frames are answered in order, one answer per frame handed while writable (JSON mode: a
 *   frame that is not JSON closes instead), each answer the echo of its frame; the server reads
 *   exactly the frames a decoder reads from the stream, whatever the chunking.
 */

import { parseFraming } from '../../src/codec/parse.js';
import type { Framing } from '../../src/codec/types.js';
import { type Message, MessageKind } from '../../src/protocol/types.js';
import { decodeMessage } from '../../src/protocol/wire.js';
import type { FuzzCase } from './cases.js';
import type { Observation } from './driver.js';
import { ALL_REASONS, DROPPING_REASONS, isAsyncMethod, LEGACY_LIMITS, wireCodeFor } from './model.js';
import { decodeAll } from './stream.js';
import type { Disconnect } from './target.js';

/**
 * A broken invariant. `known` names a finding already pinned by a todo test in
 * test/fuzz/findings.test.ts: counted and reported, but it does not fail a run unless strict.
 */
export interface Violation {
  invariant: string;
  detail: string;
  known?: string;
}

/** Findings already reported (test/fuzz/findings.test.ts), by id. */
/**
 * Findings the fuzzer excuses while src/ is being fixed (id → what). Empty: F1 and F2 (a FIN that
 * dropped answers owed) are fixed, and their regression tests are in findings.test.ts.
 */
export const KNOWN_FINDINGS: Readonly<Record<string, string>> = {};

const FRAMING_CODES: ReadonlySet<string> = new Set([
  'ERR_FRAME_TOO_LARGE',
  'ERR_BAD_FRAME_HEADER',
  'ERR_FRAME_TRUNCATED',
]);

const unlimited = parseFraming('u32be', { maxFrameLength: 0xffff_ffff });

function summary(m: Message): string {
  switch (m.kind) {
    case MessageKind.RESPONSE:
      return `RESPONSE ${m.id}`;
    case MessageKind.ERROR:
      return `ERROR ${m.id} ${m.code}`;
    case MessageKind.GOAWAY:
      return `GOAWAY ${m.lastId} ${m.reason}`;
    default:
      return `KIND_${m.kind}`;
  }
}

function summaryOut(e: ReadonlyArray<number | string>): string {
  const [, kind, id, code] = e;
  switch (kind) {
    case MessageKind.RESPONSE:
      return `RESPONSE ${id}`;
    case MessageKind.ERROR:
      return `ERROR ${id} ${code}`;
    case MessageKind.GOAWAY:
      return `GOAWAY ${id} ${code}`;
    default:
      return `KIND_${kind}`;
  }
}

/** Checks that hold for every case of either mode. */
function common(c: FuzzCase, obs: Observation, out: Violation[]): Disconnect | undefined {
  if (obs.neverClosed) {
    out.push({ invariant: 'every connection closes', detail: 'still open after the safety limit' });
  }
  const ev = obs.server;
  if (ev === undefined) {
    out.push({ invariant: 'every close is reported', detail: 'no disconnect event from the server' });
    return undefined;
  }
  if (!ALL_REASONS.has(ev.reason)) {
    out.push({ invariant: 'close reason is a CloseReason', detail: `reason ${JSON.stringify(ev.reason)}` });
  }
  if ((ev.reason === 'protocol-error' || ev.reason === 'frame-timeout') && ev.code === undefined) {
    out.push({ invariant: 'an offender is told why', detail: `${ev.reason} without an error code` });
  }
  const x = c.expect;
  if (x.reasons !== undefined && !x.reasons.includes(ev.reason)) {
    out.push({
      invariant: 'offender closed with the matching reason',
      detail: `reason ${ev.reason} (${ev.code ?? 'no code'}), expected one of ${x.reasons.join(', ')}`,
    });
  } else if (x.code !== undefined && ev.code !== x.code) {
    out.push({
      invariant: 'offender closed with the matching reason',
      detail: `code ${ev.code ?? 'none'} (reason ${ev.reason}), expected ${x.code}`,
    });
  }
  if (ev.truncated === true) return undefined; // too long a trace to judge the rest
  return ev;
}

// ---------------------------------------------------------------------------------------------
// The longlink protocol

export function checkProtocol(c: FuzzCase, obs: Observation): Violation[] {
  const out: Violation[] = [];
  const ev = common(c, obs, out);

  // What the client read: well-framed, well-formed messages.
  const d = decodeAll(unlimited, obs.received);
  const received: Message[] = [];
  if (d.error !== undefined) {
    out.push({ invariant: 'the server sends valid frames', detail: `the client's decoder says ${d.error}` });
  }
  for (const f of d.frames) {
    try {
      received.push(decodeMessage(f));
    } catch (err) {
      out.push({
        invariant: 'the server sends valid messages',
        detail: `${(err as Error).message}: ${f.subarray(0, 64).toString('hex')}`,
      });
    }
  }
  if (obs.sawEnd && d.partial > 0) {
    out.push({
      invariant: 'the server sends valid frames',
      detail: `${d.partial} bytes of a frame before its FIN`,
    });
  }

  if (ev !== undefined) {
    checkProtocolTrace(c, obs, ev, received, out);
    // The connection ERROR the client reads last names the offence.
    const x = c.expect;
    if (x.wire !== undefined && obs.sawEnd && ev.reason === 'protocol-error') {
      const last = received[received.length - 1];
      if (last === undefined || last.kind !== MessageKind.ERROR || last.id !== 0 || last.code !== x.wire) {
        out.push({
          invariant: 'an offender is told why',
          detail: `last message ${last === undefined ? 'none' : summary(last)}, expected ERROR 0 ${x.wire}`,
        });
      }
    } else if (obs.sawEnd && ev.reason === 'protocol-error') {
      const last = received[received.length - 1];
      const expected = wireCodeFor(ev.code);
      if (last?.kind === MessageKind.ERROR && last.id === 0 && last.code !== expected) {
        out.push({
          invariant: 'an offender is told why',
          detail: `ERROR 0 ${last.code} on the wire, but the close code is ${ev.code}`,
          // The connection kept reading after that ERROR; a framing error in what followed won.
          ...(ev.code !== undefined && FRAMING_CODES.has(ev.code) ? { known: 'F3' } : {}),
        });
      }
    }
  }

  // Valid sessions: every request answered exactly once, as the client counts them.
  if (c.expect.answers !== undefined) {
    const counts = new Map<number, number>();
    for (const m of received) {
      if (m.kind === MessageKind.RESPONSE || (m.kind === MessageKind.ERROR && m.id !== 0)) {
        counts.set(m.id, (counts.get(m.id) ?? 0) + 1);
      }
    }
    const sent = new Set(c.requests.map((r) => r.id));
    for (const [id, n] of counts) {
      if (!sent.has(id))
        out.push({ invariant: 'exactly-once (client)', detail: `answer for id ${id}, never sent` });
      else if (n > 1)
        out.push({ invariant: 'exactly-once (client)', detail: `id ${id} answered ${n} times` });
    }
    const missing = c.requests.filter(
      (r) => (counts.get(r.id) ?? 0) === 0 && (c.expect.answers === 'all' || !isAsyncMethod(r.method)),
    );
    if (missing.length > 0) {
      out.push({
        invariant: 'exactly-once (client)',
        detail:
          `${missing.length} of ${c.requests.length} requests never answered: ` +
          `${missing
            .slice(0, 8)
            .map((r) => `${r.id} ${r.method}`)
            .join(', ')}${missing.length > 8 ? ' …' : ''} (close ${ev?.reason ?? '?'}, ` +
          `client ${obs.sawEnd ? 'read the FIN' : `did not read a FIN (${obs.error ?? 'no error'})`})`,
      });
    }
  }
  return out;
}

function checkProtocolTrace(
  c: FuzzCase,
  obs: Observation,
  ev: Disconnect,
  received: Message[],
  out: Violation[],
): void {
  // Walk the trace in order: what was accepted, what was answered.
  const outstanding = new Map<number, { method: string }>();
  let clientGoaway = false;
  let serverGoaway = false;
  const queued: Array<ReadonlyArray<number | string>> = [];
  let duplicate = false;
  /** Ids reused while outstanding after the server's GOAWAY: answered, not refused (F4). */
  const reusedAfterGoaway = new Set<number>();
  let lastIn: ReadonlyArray<number | string> | undefined;
  let executedAfterClose = 0;
  for (const e of ev.trace) {
    if (e[0] === 'h') {
      // A handler ran: for the REQUEST handed just before (handlers start inside handleFrame).
      if (
        lastIn !== undefined &&
        lastIn[1] === MessageKind.REQUEST &&
        lastIn[2] === e[1] &&
        lastIn[4] !== 1
      ) {
        executedAfterClose++;
      }
      continue;
    }
    if (e[0] === 'i') {
      lastIn = e;
      const [, kind, id, method, w, r, g] = e as [string, number, number, string, number, number, number];
      if (kind === MessageKind.GOAWAY && w === 1) clientGoaway = true;
      if (kind !== MessageKind.REQUEST || w !== 1 || r !== 1) continue;
      if (clientGoaway) {
        // A REQUEST after the client's own GOAWAY: a connection error (ERR_PROTOCOL), not a request.
        duplicate = true;
        continue;
      }
      if (outstanding.has(id)) {
        // An outstanding id reused: a connection error (ERR_PROTOCOL), not a request.
        if (g === 1) reusedAfterGoaway.add(id);
        else duplicate = true;
        continue;
      }
      outstanding.set(id, { method });
      continue;
    }
    queued.push(e);
    const [, kind, id] = e as [string, number, number, string];
    if (kind === MessageKind.GOAWAY) serverGoaway = true;
    if (kind === MessageKind.RESPONSE || (kind === MessageKind.ERROR && id !== 0)) {
      if (!outstanding.delete(id)) {
        out.push({
          invariant: 'exactly-once (server): never answered twice',
          detail: `${summaryOut(e)} queued with no accepted request ${id} outstanding`,
          ...(reusedAfterGoaway.has(id) ? { known: 'F4' } : {}),
        });
      }
    }
  }
  if (executedAfterClose > 0) {
    out.push({
      invariant: 'a closing connection reads and discards (PROTOCOL.md §9.3)',
      detail: `${executedAfterClose} requests read after the connection stopped taking sends were executed (close ${ev.reason} ${ev.code ?? ''})`,
      known: 'F3',
    });
  }
  if (duplicate && ev.reason !== 'protocol-error') {
    out.push({
      invariant: 'offender closed with the matching reason',
      detail: `an outstanding request id was reused (or a REQUEST followed the client's GOAWAY), yet the close reason is ${ev.reason}`,
    });
  }
  for (const [id, { method }] of outstanding) {
    if (!isAsyncMethod(method)) {
      out.push({
        invariant: 'exactly-once (server): every accepted request answered',
        detail: `request ${id} (${method}, answered at once) got no answer; close ${ev.reason} ${ev.code ?? ''}`,
      });
      continue;
    }
    if (DROPPING_REASONS.has(ev.reason)) continue;
    if (ev.reason === 'remote-fin' && !clientGoaway && !serverGoaway) continue;
    out.push({
      invariant: 'exactly-once (server): every accepted request answered',
      detail:
        `request ${id} (${method}) accepted, never answered; close ${ev.reason}` +
        ` after a GOAWAY from the ${clientGoaway ? 'client' : 'server'}`,
    });
  }
  if (
    c.expect.goaway !== undefined &&
    !queued.some((e) => e[1] === MessageKind.GOAWAY && e[3] === c.expect.goaway)
  ) {
    out.push({
      invariant: 'offender closed with the matching reason',
      detail: `no GOAWAY ${c.expect.goaway} queued`,
    });
  }
  // The wire matches the server's queue: all of it after a FIN, a prefix after a reset.
  const n = obs.sawEnd ? queued.length : Math.min(queued.length, received.length);
  if (received.length > queued.length || (obs.sawEnd && received.length !== queued.length)) {
    out.push({
      invariant: 'the client reads what the server queued',
      detail: `read ${received.length} messages, the server queued ${queued.length} (FIN read: ${obs.sawEnd})`,
    });
    return;
  }
  for (let i = 0; i < n; i++) {
    const r = received[i] as Message;
    const q = queued[i] as ReadonlyArray<number | string>;
    const rs = r.kind === 1 || r.kind === 5 || r.kind === 7 || r.kind === 8 ? `KIND_${r.kind}` : summary(r);
    if (rs !== summaryOut(q)) {
      out.push({
        invariant: 'the client reads what the server queued',
        detail: `message ${i}: read ${rs}, queued ${summaryOut(q)}`,
      });
      return;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Legacy

/** The echo the fixture's handler sends for a frame (JSON: parsed and stringified again). */
function echoOf(frame: Buffer, json: boolean): Buffer | undefined {
  if (!json) return frame;
  try {
    return Buffer.from(JSON.stringify(JSON.parse(frame.toString('utf8'))) ?? 'null');
  } catch {
    return undefined; // not JSON: the server closes instead
  }
}

export function legacyFraming(spec: string): Framing {
  return parseFraming(spec, { maxFrameLength: LEGACY_LIMITS.maxFrameLength });
}

export function checkLegacy(c: FuzzCase, framing: Framing, json: boolean, obs: Observation): Violation[] {
  const out: Violation[] = [];
  const ev = common(c, obs, out);
  const sent = decodeAll(framing, c.stream);
  const got = decodeAll(framing, obs.received);
  if (got.error !== undefined || (obs.sawEnd && got.partial > 0)) {
    out.push({
      invariant: 'the server sends valid frames',
      detail: `the client's decoder says ${got.error ?? `${got.partial} bytes of a frame before the FIN`}`,
    });
  }
  if (ev === undefined) return out;

  // The frames the server handed its session must be the first frames of the stream.
  const accepted: Buffer[] = [];
  let answered = 0;
  let handed = 0;
  let notJson = false;
  for (const e of ev.trace) {
    if (e[0] === 'i') {
      const [, len, w] = e as [string, number, number];
      const f = sent.frames[handed];
      if (f === undefined || f.length !== len) {
        out.push({
          invariant: 'the server reads the frames of the stream, whatever the chunking',
          detail: `frame ${handed}: the server read ${len} bytes, the stream holds ${f === undefined ? 'no such frame' : `${f.length} bytes`}`,
        });
        return out;
      }
      handed++;
      if (w !== 1) continue;
      if (echoOf(f, json) === undefined) {
        notJson = true;
        continue;
      }
      accepted.push(f);
      continue;
    }
    if (answered >= accepted.length) {
      out.push({
        invariant: 'exactly-once (server): never answered twice',
        detail: `answer ${answered} with no frame for it`,
      });
      return out;
    }
    answered++;
  }
  if (notJson && ev.reason !== 'protocol-error' && !DROPPING_REASONS.has(ev.reason)) {
    out.push({
      invariant: 'offender closed with the matching reason',
      detail: `a frame that is not JSON was read while open, yet the close reason is ${ev.reason}`,
    });
  }
  const unanswered = accepted.length - answered;
  if (unanswered > 0 && !DROPPING_REASONS.has(ev.reason)) {
    out.push({
      invariant: 'exactly-once (server): every accepted frame answered',
      detail: `${unanswered} of ${accepted.length} frames read while open got no answer; close ${ev.reason}`,
    });
  }
  // The wire: the echoes of the accepted frames, in order.
  const n = Math.min(got.frames.length, accepted.length);
  for (let i = 0; i < n; i++) {
    const want = echoOf(accepted[i] as Buffer, json) as Buffer;
    if (!want.equals(got.frames[i] as Buffer)) {
      out.push({
        invariant: 'answers are the echoes of the frames, in order',
        detail: `answer ${i}: ${(got.frames[i] as Buffer).subarray(0, 48).toString('hex')}, expected ${want.subarray(0, 48).toString('hex')}`,
      });
      break;
    }
  }
  if (got.frames.length > answered || (obs.sawEnd && got.frames.length !== answered)) {
    out.push({
      invariant: 'the client reads what the server queued',
      detail: `read ${got.frames.length} frames, the server queued ${answered} (FIN read: ${obs.sawEnd})`,
    });
  }
  if (c.expect.answers === 'all' && got.frames.length !== c.echoes) {
    out.push({
      invariant: 'exactly-once (client)',
      detail: `${got.frames.length} of ${c.echoes} frames echoed; close ${ev.reason}, client ${obs.sawEnd ? 'read the FIN' : 'did not read a FIN'}`,
    });
  }
  return out;
}
