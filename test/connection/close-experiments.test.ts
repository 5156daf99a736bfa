/**
 * The sources' close experiments (seed 002) as tests: 200,000 bytes written to a peer that does
 * not read, then each close mode, watched from the peer and from the kernel's TCP table.
 */

import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { after, describe, test } from 'node:test';
import { parseFraming } from '../../src/codec/index.js';
import { Connection } from '../../src/connection/connection.js';
import { nativeSocketOptions } from '../../src/sys/sockopt.js';
import {
  beforeTimer,
  drain,
  kernelEntry,
  kernelPair,
  listen,
  sleep,
  type TestServer,
  waitFor,
} from '../helpers.js';
import { requiredOnLinux, skipUnless } from '../skip.js';

const framing = parseFraming('u32be');
const TOTAL = 200_000;
const FRAME = 4_000; // 4-byte header + 3,996 payload bytes: 50 frames are exactly 200,000 bytes on the wire

function sendExperimentLoad(conn: Connection): void {
  for (let i = 0; i < TOTAL / FRAME; i++) conn.send(Buffer.alloc(FRAME - 4, i));
}

const linux = process.platform === 'linux';
const native = nativeSocketOptions();
const skipKernel = skipUnless(linux, 'needs Linux /proc/net/tcp', { kind: 'platform' });
const skipNative = skipUnless(
  native.available,
  `native socket options unavailable: ${native.reason}`,
  requiredOnLinux,
);

/** Runs test/fixtures/sink-peer.mjs as a separate process. */
async function startSinkPeer(): Promise<{
  port: number;
  child: ChildProcess;
  lines: string[];
  next(prefix: string): Promise<string>;
}> {
  const script = new URL('../../../test/fixtures/sink-peer.mjs', import.meta.url);
  const child = spawn(process.execPath, [script.pathname], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines: string[] = [];
  let buf = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => {
    buf += d;
    for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
      lines.push(buf.slice(0, i));
      buf = buf.slice(i + 1);
    }
  });
  const next = (prefix: string) =>
    waitFor(() => lines.find((l) => l.startsWith(prefix)), 10_000, `peer line ${prefix}`);
  const portLine = await next('port ');
  return { port: Number(portLine.slice(5)), child, lines, next };
}

describe('close experiments (seed 002)', { skip: skipKernel }, () => {
  const servers: TestServer[] = [];
  const children: ChildProcess[] = [];
  after(async () => {
    for (const s of servers) await s.close();
    for (const c of children) c.kill();
  });

  test('(a) graceful close: FIN_WAIT1 with bytes queued, peer ESTABLISHED with unread bytes, all delivered once it reads', async () => {
    const peer = await startSinkPeer();
    children.push(peer.child);
    const conn = await Connection.connect({ port: peer.port, framing });
    sendExperimentLoad(conn);
    await waitFor(() => conn.bufferedAmount === 0, 5000, 'user-space queue handed to the kernel');
    const closing = conn.close({ timeoutMs: 20_000 });
    assert.equal(conn.state, 'closing');

    // Sampled right after a send, a byte can be both unread at the peer and not yet acknowledged
    // here (delayed ACK): wait until the two queues account for every byte exactly once.
    const [ours, theirs] = await waitFor(async () => {
      const [e, t] = await kernelPair(conn.localPort!, peer.port);
      return e?.state === 'FIN_WAIT1' && t && e.txQueue - 1 + t.rxQueue === TOTAL
        ? ([e, t] as const)
        : undefined;
    });
    assert.equal(theirs.state, 'ESTABLISHED');
    assert.ok(ours.txQueue > 1, `our send queue still holds data (${ours.txQueue})`);
    assert.ok(theirs.rxQueue > 0, 'the peer has unread bytes');

    peer.child.stdin!.write('read\n');
    assert.equal(await peer.next('got '), `got ${TOTAL} end`);
    const info = await closing;
    assert.equal(info.reason, 'local-graceful');
    assert.equal(info.initiator, 'local');
    assert.equal(info.graceful, true);
    assert.equal(info.unsentBytes, 0);
    assert.equal(info.bytesWritten, TOTAL);
  });

  test('(b) abort: RST, connection gone at once on both sides, no TIME_WAIT, peer ECONNRESET, discarded bytes counted', {
    skip: skipNative,
  }, async () => {
    const peer = await startSinkPeer();
    children.push(peer.child);
    const conn = await Connection.connect({ port: peer.port, framing });
    sendExperimentLoad(conn);
    await waitFor(() => conn.bufferedAmount === 0);
    const before = await waitFor(async () => {
      const [e, t] = await kernelPair(conn.localPort!, peer.port);
      return e && t && e.txQueue + t.rxQueue === TOTAL && t.rxQueue > 0 ? e : undefined;
    });
    const localPort = conn.localPort!;
    // The receiver's window may still grow after the table was read, moving bytes from our queue
    // to its: compare with the kernel's own figure taken in the same tick as the abort.
    const atAbort = conn.stats().kernel?.unacked;
    conn.abort();
    const info = await conn.closed;
    assert.equal(info.reason, 'local-abort');
    assert.equal(info.initiator, 'local');
    assert.equal(info.graceful, false);
    assert.equal(info.unsentKnown, true);
    assert.equal(info.unsentBytes, atAbort, 'the unacknowledged bytes the RST discarded');
    assert.ok(
      info.unsentBytes > 0 && info.unsentBytes <= before.txQueue,
      `${info.unsentBytes} of ${before.txQueue}`,
    );
    assert.equal(await kernelEntry(localPort, peer.port), undefined, 'no socket left here: no TIME_WAIT');
    assert.equal(await kernelEntry(peer.port, localPort), undefined, 'the peer kernel dropped it on the RST');
    peer.child.stdin!.write('write\n');
    assert.match(await peer.next('got '), /error:ECONNRESET/);
  });

  test('(c) linger 2 s, peer not reading: RST at ~2 s, lost bytes reported, loop never blocked', {
    skip: skipNative,
  }, async () => {
    const srv = await listen({ pauseOnConnect: true });
    servers.push(srv);
    const conn = await Connection.connect({ port: srv.port, framing });
    await srv.nextSocket();
    sendExperimentLoad(conn);
    await waitFor(() => conn.bufferedAmount === 0);
    // A blocking linger (the kernel's SO_LINGER on close) would stop the loop for the whole 2 s:
    // no tick at all in between. A loaded machine stretches gaps, but never to half the linger.
    let maxGap = 0;
    let ticks = 0;
    let last = performance.now();
    const ticker = setInterval(() => {
      const now = performance.now();
      maxGap = Math.max(maxGap, now - last);
      last = now;
      ticks++;
    }, 10);
    const t0 = performance.now();
    // Its deadline timer must fire before a plain one armed with it 600 ms later.
    const info = await beforeTimer(conn.linger(2000), 2600, 'the RST at the linger deadline');
    const elapsed = performance.now() - t0;
    clearInterval(ticker);
    assert.equal(info.reason, 'linger-expired');
    assert.equal(info.error?.code, 'ERR_LINGER_EXPIRED');
    assert.ok(elapsed >= 1990, `reset at 2 s, not before (${elapsed.toFixed(0)} ms)`);
    assert.ok(info.unsentBytes > 0 && info.unsentBytes < TOTAL, `lost ${info.unsentBytes} bytes`);
    assert.equal((info.error as { lostBytes?: number } | undefined)?.lostBytes, info.unsentBytes);
    assert.ok(
      ticks >= 10 && maxGap < 1000,
      `event loop kept turning (${ticks} ticks, max gap ${maxGap.toFixed(1)} ms)`,
    );
    assert.equal(await kernelEntry(conn.localPort ?? 0, srv.port), undefined);
  });

  test('(c) linger, peer reading: resolves once every byte is acknowledged, nothing lost', {
    skip: skipNative,
  }, async () => {
    const srv = await listen();
    servers.push(srv);
    const conn = await Connection.connect({ port: srv.port, framing });
    const received = drain(await srv.nextSocket());
    sendExperimentLoad(conn);
    const info = await conn.linger(5000);
    // Resolved by the ACKs, not the deadline: at the deadline it would be linger-expired.
    assert.equal(info.reason, 'local-graceful');
    assert.equal(info.graceful, true);
    assert.equal(info.unsentBytes, 0);
    assert.equal((await received).bytes.length, TOTAL);
  });

  test('(c) linger waits for a peer that starts reading late, then resolves with nothing lost', {
    skip: skipNative,
  }, async () => {
    const srv = await listen({ pauseOnConnect: true });
    servers.push(srv);
    const conn = await Connection.connect({ port: srv.port, framing });
    const peer = await srv.nextSocket();
    sendExperimentLoad(conn);
    await waitFor(() => conn.bufferedAmount === 0);
    const lingering = conn.linger(5000);
    let settled = false;
    void lingering.finally(() => {
      settled = true;
    });
    await sleep(400); // the scenario: the peer starts reading late
    assert.equal(conn.state, 'lingering');
    assert.equal(settled, false, 'nothing resolves it before the peer reads');
    const received = drain(peer);
    const info = await lingering;
    // Resolved once the peer read everything, not at the deadline (that would be linger-expired).
    assert.equal(info.reason, 'local-graceful');
    assert.equal(info.unsentBytes, 0);
    assert.equal((await received).bytes.length, TOTAL);
  });

  test('regression: close() then abort() in the same tick still resets, emits close and frees the socket', async () => {
    const timersBefore = process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
    const srv = await listen({ pauseOnConnect: true });
    servers.push(srv);
    const conn = await Connection.connect({ port: srv.port, framing });
    await srv.nextSocket();
    sendExperimentLoad(conn);
    await waitFor(() => conn.bufferedAmount === 0);
    const localPort = conn.localPort!;
    void conn.close();
    conn.abort();
    const info = await beforeTimer(conn.closed, 3000, "'close'");
    assert.equal(info.reason, 'local-abort');
    assert.equal(conn.socket.destroyed, true);
    if (native.available) {
      assert.equal(await kernelEntry(localPort, srv.port), undefined, 'RST: nothing left in the kernel');
    }
    // Nothing is left running for it (a linger poll would be a timer that keeps re-arming).
    await waitFor(
      () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length <= timersBefore,
      5000,
      'the timers of the connection to stop',
    );
  });

  test('the peer sees the abort as ECONNRESET while reading', { skip: skipNative }, async () => {
    const srv = await listen();
    servers.push(srv);
    const conn = await Connection.connect({ port: srv.port, framing });
    const peer = await srv.nextSocket();
    const received = drain(peer);
    conn.send(Buffer.from('hello'));
    await waitFor(() => peer.bytesRead > 0);
    conn.abort();
    const { error } = await received;
    assert.equal(error?.code, 'ECONNRESET');
    assert.equal((await conn.closed).reason, 'local-abort');
  });
});
