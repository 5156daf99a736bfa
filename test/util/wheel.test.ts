/** The shared timer wheel behind heartbeat and idle checks: ordering, precision, cancel, batching. */

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { describe, test } from 'node:test';
import { MAX_PER_TURN, TimerWheel, type WheelEntry, wheelFor } from '../../src/util/wheel.js';

interface Probe extends WheelEntry {
  name: string;
  firedAt: number[];
  /** Resolves once the probe has fired `times` times (bounded: a wheel that stops fails the test). */
  fired(times?: number): Promise<void>;
}

/**
 * Nothing here sleeps and then looks: each test waits for the firings it is about, and judges
 * lateness by order against a plain timer armed at the same moment, never by a wall-clock bound
 * that a loaded machine would miss. "Never early" is judged on the real clock, which load
 * cannot make fail.
 */
function probe(name: string, log: string[], onFire?: (p: Probe) => void): Probe {
  const waiters: Array<{ times: number; resolve: () => void }> = [];
  const p: Probe = {
    name,
    firedAt: [],
    wheelTick: -1,
    wheelIndex: -1,
    onWheel() {
      p.firedAt.push(performance.now());
      log.push(name);
      onFire?.(p);
      for (const w of waiters.filter((w) => p.firedAt.length >= w.times)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve();
      }
    },
    fired(times = 1) {
      if (p.firedAt.length >= times) return Promise.resolve();
      return bounded(
        new Promise<void>((resolve) => waiters.push({ times, resolve })),
        `${name} to fire ${times}×`,
      );
    },
  };
  return p;
}

/** `p`, or a failure naming `what` after 10 s (a bound for a hang, not a timing assertion). */
async function bounded<T>(p: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_r, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), 10_000);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * A plain timer armed now for `ms` + one tick + 5 ms: an entry scheduled now for `ms` must have
 * fired before it does. Both live in the event loop's one timer list, which runs what is due in
 * deadline order however late the loop is, so this is "at most one tick late" (plus the few ms of
 * libuv's millisecond clock) in the loop's own terms, load or not.
 */
function oneTickLater(wheel: TimerWheel, ms: number, check: () => void): Promise<void> {
  return new Promise((resolve, reject) =>
    setTimeout(
      () => {
        try {
          check();
          resolve();
        } catch (err) {
          reject(err);
        }
      },
      ms + wheel.tickMs + 5,
    ),
  );
}

describe('TimerWheel', () => {
  test('fires each entry once, never early and at most one tick late, in deadline order', async () => {
    const wheel = new TimerWheel(8);
    const log: string[] = [];
    const t0 = performance.now();
    const probes = [70, 10, 40, 25].map((ms) => ({ ms, p: probe(String(ms), log) }));
    const late: Array<Promise<void>> = [];
    for (const { ms, p } of probes) {
      wheel.schedule(p, ms);
      late.push(
        oneTickLater(wheel, ms, () =>
          assert.equal(
            p.firedAt.length,
            1,
            `${ms} ms entry not fired one tick (8 ms) + 5 ms after its deadline`,
          ),
        ),
      );
    }
    assert.equal(wheel.size, 4);
    await bounded(Promise.all(probes.map(({ p }) => p.fired())), 'every entry');
    await Promise.all(late);
    assert.deepEqual(log, ['10', '25', '40', '70']);
    for (const { ms, p } of probes) {
      assert.equal(p.firedAt.length, 1);
      const early = t0 + ms - (p.firedAt[0] as number);
      assert.ok(early <= 0, `${ms} ms entry fired ${early.toFixed(2)} ms early`);
    }
    assert.equal(wheel.size, 0);
  });

  test('cancel and reschedule: a cancelled entry never fires; a rescheduled one fires at its new time only', async () => {
    const wheel = new TimerWheel(4);
    const log: string[] = [];
    const a = probe('a', log);
    const b = probe('b', log);
    const c = probe('c', log);
    const t0 = performance.now();
    wheel.schedule(a, 20);
    wheel.schedule(b, 20);
    wheel.schedule(c, 20);
    wheel.cancel(b); // swap-remove from the middle of a slot
    wheel.cancel(b); // idempotent
    wheel.schedule(c, 60); // moved later
    assert.equal(wheel.size, 2);
    // a's tick was b's and c's old tick. Once c fired at its new time, b's tick is long past: b
    // never fired, and c fired once, not before its new time (a loop late enough may fire both
    // ticks in one go, so nothing is judged in between).
    await Promise.all([a.fired(), c.fired()]);
    assert.deepEqual(log, ['a', 'c']);
    assert.ok((c.firedAt[0] as number) - t0 >= 60, 'c fired at its new time, not before');
    assert.equal(b.wheelTick, -1);
    assert.equal(wheel.size, 0);
  });

  test('regression (red team G5): an entry further off than a timer can wait does not fire, nor spin the timer', async () => {
    const wheel = new TimerWheel(4);
    const log: string[] = [];
    const far = probe('far', log);
    const near = probe('near', log);
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(w.name);
    process.on('warning', onWarning);
    try {
      wheel.schedule(far, 3e9);
      wheel.schedule(near, 20);
      // An overflowing timer fires after 1 ms, over and over; near's firing comes later than that.
      await near.fired();
      assert.deepEqual(log, ['near']);
      wheel.cancel(far);
    } finally {
      process.off('warning', onWarning);
    }
    assert.ok(!warnings.includes('TimeoutOverflowWarning'), warnings.join(','));
  });

  test('a callback may cancel or reschedule another entry of the same tick, or itself', async () => {
    const wheel = new TimerWheel(16);
    const log: string[] = [];
    const victim = probe('victim', log);
    const moved = probe('moved', log);
    const self = probe('self', log, (p) => {
      if (p.firedAt.length < 3) wheel.schedule(p, 5);
    });
    const killer = probe('killer', log, () => {
      wheel.cancel(victim);
      wheel.schedule(moved, 40);
    });
    // All four in the same tick; the killer is filed first so it runs first.
    for (const p of [killer, victim, moved, self]) wheel.schedule(p, 1);
    await Promise.all([moved.fired(), self.fired(3)]);
    assert.deepEqual(
      log.filter((n) => n !== 'self'),
      ['killer', 'moved'],
    );
    assert.equal(self.firedAt.length, 3);
    assert.equal(victim.firedAt.length, 0);
    assert.equal(wheel.size, 0);
  });

  test('entries due in the same tick fire in one burst (what batches heartbeats)', async () => {
    const wheel = new TimerWheel(32);
    const log: string[] = [];
    const n = MAX_PER_TURN - 6;
    // A burst is what fires in one synchronous run of the wheel: its microtasks run after it.
    let bursts = 0;
    let inBurst = false;
    const ps = Array.from({ length: n }, (_, i) =>
      probe(String(i), log, () => {
        if (inBurst) return;
        inBurst = true;
        bursts++;
        queueMicrotask(() => {
          inBurst = false;
        });
      }),
    );
    // Deadlines spread over 20 ms: at most two ticks of 32 ms.
    for (const [i, p] of ps.entries()) wheel.schedule(p, 40 + (i % 20));
    await Promise.all(ps.map((p) => p.fired()));
    assert.equal(log.length, n);
    assert.ok(bursts <= 2, `${n} entries fired in ${bursts} bursts`);
  });

  test('a tick with more than MAX_PER_TURN entries fires in slices, the event loop turning in between', async () => {
    const wheel = new TimerWheel(8);
    const log: string[] = [];
    let firedBeforeTurn = -1;
    const n = MAX_PER_TURN * 3 + 7;
    const ps: Probe[] = [];
    for (let i = 0; i < n; i++) {
      ps.push(
        probe(String(i), log, () => {
          if (i !== 0) return;
          // Runs between the first and the second slice: the tick is half fired.
          setImmediate(() => {
            firedBeforeTurn = log.length;
            // One entry of a later slice is cancelled while its tick is being fired: it must not fire.
            wheel.cancel(ps[n - 1] as Probe);
          });
        }),
      );
    }
    for (const p of ps) wheel.schedule(p, 5);
    const late = ps[n - 1] as Probe;
    // Every other entry fires; the cancelled one was last in the tick, so by then it would have.
    await Promise.all(ps.slice(0, n - 1).map((p) => p.fired()));
    assert.equal(firedBeforeTurn, MAX_PER_TURN, 'the first slice ends at MAX_PER_TURN, then the loop turns');
    assert.equal(log.length, n - 1);
    assert.equal(late.firedAt.length, 0);
    assert.equal(wheel.size, 0);
    // The wheel still works after a sliced tick.
    const after = probe('after', log);
    wheel.schedule(after, 10);
    await after.fired();
    assert.equal(after.firedAt.length, 1);
  });

  test('what callbacks schedule while a tick fires arms the timer once, when the firing ends', async () => {
    const wheel = new TimerWheel(4);
    const log: string[] = [];
    const n = 40;
    // Each callback files itself again, later entries earlier: every one would be the new
    // earliest deadline, and arming for each would be a setTimeout apiece.
    const ps = Array.from({ length: n }, (_, i) =>
      probe(String(i), log, (p) => {
        if (p.firedAt.length === 1) wheel.schedule(p, 4 * (n - i) + 8);
      }),
    );
    for (const p of ps) wheel.schedule(p, 4);
    const real = globalThis.setTimeout;
    let calls = 0;
    let counting = false;
    const keepAlive = setInterval(() => {}, 1000); // the wheel's own timer is unref'd
    globalThis.setTimeout = ((...args: Parameters<typeof setTimeout>) => {
      if (counting) calls++;
      return real(...args);
    }) as typeof setTimeout;
    try {
      await new Promise<void>((resolve) => {
        // Count only while the first burst fires (a zero-delay immediate runs right after it).
        const first = ps[0] as Probe;
        const original = first.onWheel;
        first.onWheel = () => {
          counting = true;
          setImmediate(() => {
            counting = false;
            resolve();
          });
          first.onWheel = original;
          original.call(first);
        };
      });
    } finally {
      globalThis.setTimeout = real;
      clearInterval(keepAlive);
    }
    assert.equal(log.length, n);
    assert.ok(calls <= 1, `${calls} setTimeout calls for one firing of ${n} rescheduling entries`);
    await Promise.all(ps.map((p) => p.fired(2)));
    assert.equal(log.length, 2 * n, 'every rescheduled entry fired again');
  });

  test('a callback that throws does not stop the wheel for the other entries', () => {
    // In a child process: the error is uncaught by design (it is the listener's), which would
    // fail this test runner's own test.
    const wheelUrl = new URL('../../src/util/wheel.js', import.meta.url).href;
    const code = `
      import { TimerWheel } from ${JSON.stringify(wheelUrl)};
      const wheel = new TimerWheel(4);
      const fired = [];
      let errors = 0;
      process.on('uncaughtException', () => errors++);
      const entry = (name, fn) => ({ wheelTick: -1, wheelIndex: -1, onWheel() { fired.push(name); fn?.(); } });
      wheel.schedule(entry('a'), 5);
      wheel.schedule(entry('boom', () => { throw new Error('listener bug'); }), 5);
      wheel.schedule(entry('b'), 5);
      // The wheel's timer is unref'd: this keeps the process up until the last entry due reports,
      // one turn after it fired (no clock decides when).
      const keepAlive = setInterval(() => {}, 1000);
      const report = () => { clearInterval(keepAlive); console.log(JSON.stringify({ fired, errors, size: wheel.size })); };
      wheel.schedule(entry('later', () => setImmediate(report)), 30);
    `;
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', code], {
      encoding: 'utf8',
      timeout: 60_000,
    });
    const r = JSON.parse(out) as { fired: string[]; errors: number; size: number };
    assert.equal(r.errors, 1);
    assert.deepEqual([...r.fired].sort(), ['a', 'b', 'boom', 'later']);
    assert.equal(r.size, 0);
  });

  test('wheelFor: tick is period/50 rounded down to a power of two, 1..1024 ms, one wheel per tick', () => {
    assert.equal(wheelFor(1000).tickMs, 16);
    assert.equal(wheelFor(2000).tickMs, 32);
    assert.equal(wheelFor(10_000).tickMs, 128);
    assert.equal(wheelFor(30_000).tickMs, 512);
    assert.equal(wheelFor(3_600_000).tickMs, 1024);
    assert.equal(wheelFor(20).tickMs, 1);
    assert.equal(wheelFor(1000), wheelFor(1500));
  });
});
