/**
 * One clock (src/util/clock.ts): deadlines read it when they are set, so none fires early whatever
 * the event loop did before; and it is injectable, so long timers are tested in milliseconds.
 */

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { after, describe, mock, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { parseFraming } from '../../src/codec/index.js';
import type { CloseInfo } from '../../src/connection/close-reason.js';
import { Connection } from '../../src/connection/connection.js';
import { now, setClockSource } from '../../src/util/clock.js';
import { Deadlines } from '../../src/util/deadlines.js';
import type { Fixture } from '../faults/harness.js';
import { listen } from '../helpers.js';
import { startEdgeServer } from '../server/edge-harness.js';

const QUIET_REQUEST = fileURLToPath(
  new URL('../../../test/fixtures/clock/quiet-request.mjs', import.meta.url),
);
const fixtures: Fixture[] = [];
after(() => {
  for (const f of fixtures) f.kill('SIGKILL');
  setClockSource(undefined);
});

describe('the one clock', () => {
  test('regression: a request made from a NOTIFY handler after a quiet second does not time out after 1 ms', async () => {
    // Both sides in their own processes: nothing else may wake this client's loop while it waits.
    const { fixture, port } = await startEdgeServer({});
    fixtures.push(fixture);
    for (let i = 0; i < 3; i++) {
      const { stdout } = await promisify(execFile)(process.execPath, [
        QUIET_REQUEST,
        JSON.stringify({ port }),
      ]);
      const r = JSON.parse(stdout) as { outcome: string; elapsedMs: number };
      // The request asked a server that answers after 50 ms, with a 1000 ms timeout.
      assert.equal(r.outcome, 'ok', `run ${i}: ${r.outcome} after ${r.elapsedMs.toFixed(1)} ms`);
      assert.ok(r.elapsedMs >= 45, `answered after ${r.elapsedMs} ms`);
    }
  });

  test('a deadline set after a long synchronous stretch still waits its full time', async () => {
    const d = new Deadlines();
    const busyUntil = now() + 60;
    while (now() < busyUntil) {
      // 60 ms of synchronous work in this turn, as a handler might do, before setting the deadline.
    }
    const t0 = now();
    const fired = new Promise<number>((resolve) => d.add(30, () => resolve(now()), undefined));
    const at = await fired;
    assert.ok(at - t0 >= 30, `fired ${(at - t0).toFixed(2)} ms after it was set, not 30`);
  });

  test('injectable: a 30 s heartbeat is declared dead in milliseconds of real time, with mocked timers', async () => {
    const peer = await listen();
    try {
      let fake = 5_000_000;
      setClockSource(() => fake);
      mock.timers.enable({ apis: ['setTimeout'] });
      const t0 = performance.now();
      const conn = await Connection.connect({
        port: peer.port,
        framing: parseFraming('u32be'),
        heartbeat: { intervalMs: 10_000, timeoutMs: 30_000, frame: Buffer.from('ping') },
      });
      const silent = await peer.nextSocket(); // reads, never answers
      const closed = new Promise<CloseInfo>((resolve) => conn.once('close', resolve));
      // 10 s of silence (plus the wheel's tick, 128 ms for a 10 s interval): the heartbeat goes out.
      fake += 10_200;
      const ping = once(silent, 'data');
      mock.timers.tick(10_200);
      const [bytes] = (await ping) as [Buffer];
      assert.equal(bytes.subarray(4).toString(), 'ping');
      // 30 s after the last byte read: declared dead.
      fake += 20_000;
      mock.timers.tick(20_000);
      const info = await closed;
      assert.equal(info.reason, 'heartbeat-timeout');
      const silentMs = (info.error as { silentMs?: number }).silentMs ?? 0;
      assert.ok(silentMs >= 30_000 && silentMs <= 30_200, `declared dead after ${silentMs} ms of silence`);
      assert.ok(performance.now() - t0 < 5_000, 'a 30 s bound tested in well under 5 s');
    } finally {
      mock.timers.reset();
      setClockSource(undefined);
      await peer.close();
    }
  });
});
