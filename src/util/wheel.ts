/**
 * A coarse timer wheel for deadlines that are re-checked far more often than they fire: one
 * connection's heartbeat and idle checks. Netty's HashedWheelTimer and Kafka's purgatory make the
 * same trade: deadlines are filed under a tick of `tickMs`, one unref'd timer fires for the
 * earliest tick that holds any, and each firing visits only the entries filed under the ticks
 * that are due — never every entry.
 *
 * What a wheel buys over a setTimeout per connection:
 * - No timer object per entry: an entry is two numbers and a slot in an array.
 * - Entries due within the same tick fire together. For heartbeats that is the point: ten thousand
 *   connections pinging at 1 Hz send their PINGs in ~60 bursts a second, so the peer wakes ~60
 *   times a second to read them instead of ten thousand times, and the answers come back in
 *   bursts too. Kernel wake-ups, not JavaScript, are most of a heartbeat's cost.
 *
 * The price is precision: an entry fires up to one tick late (never early). A tick that holds
 * many entries is fired in slices of {@link MAX_PER_TURN}, the event loop turning in between, so a
 * burst never stalls the loop however many connections share the tick.
 *
 * Entries are filed in a Map from tick number to an array; an entry knows its tick and its index,
 * so cancel is a swap-remove, O(1). The ticks that hold entries are kept in a binary min-heap, so
 * finding the next one to fire is O(log ticks) and empty ticks cost nothing.
 */

import { MAX_TIMER_MS } from './check.js';
import { now } from './clock.js';

/** What a wheel files: the fields are the wheel's bookkeeping; start them at -1. */
export interface WheelEntry {
  /** The tick this entry is filed under; -1 when it is not scheduled. */
  wheelTick: number;
  /** Its index in that tick's array. */
  wheelIndex: number;
  /** Called once when its tick is due (after it was unfiled; it may schedule itself again). */
  onWheel(): void;
}

/** Entries fired per event-loop turn; the rest of a tick waits for the next turn (setImmediate). */
export const MAX_PER_TURN = 64;

export class TimerWheel {
  readonly tickMs: number;
  private readonly slots = new Map<number, WheelEntry[]>();
  /** Ticks that have (or had) a slot, smallest first. A tick may appear twice; harmless. */
  private readonly heap: number[] = [];
  /** Ticks up to this one were fired; nothing is filed at or below it. */
  private cursor: number;
  /** The one timer; kept after it fires and re-armed with refresh() when the delay repeats. */
  private timer: NodeJS.Timeout | undefined;
  private timerDelay = -1;
  /** The tick the timer is armed for; +Infinity when it is not armed. */
  private timerTick = Number.POSITIVE_INFINITY;
  /** True while entries' callbacks run: what they schedule is armed for once, when the firing ends. */
  private inFire = false;
  private count = 0;
  /** The tick being fired, when it is fired in slices (see MAX_PER_TURN). */
  private firing: WheelEntry[] | undefined;
  private firingTick = -1;
  private firingAt = 0;
  private resume: NodeJS.Immediate | undefined;

  constructor(tickMs: number) {
    this.tickMs = tickMs;
    this.cursor = Math.floor(now() / tickMs);
  }

  /** Entries scheduled now. */
  get size(): number {
    return this.count;
  }

  /** Files `entry` to fire `delayMs` from now (at the end of that tick), replacing any earlier schedule. */
  schedule(entry: WheelEntry, delayMs: number): void {
    const tick = Math.max(Math.ceil((now() + delayMs) / this.tickMs), this.cursor + 1);
    if (entry.wheelTick === tick) return;
    if (entry.wheelTick !== -1) this.cancel(entry);
    let slot = this.slots.get(tick);
    if (slot === undefined) {
      slot = [];
      this.slots.set(tick, slot);
      heapPush(this.heap, tick);
      if (tick < this.timerTick && !this.inFire) this.arm(tick);
    }
    entry.wheelTick = tick;
    entry.wheelIndex = slot.length;
    slot.push(entry);
    this.count++;
  }

  /** Unfiles `entry`; a no-op when it is not scheduled. */
  cancel(entry: WheelEntry): void {
    const tick = entry.wheelTick;
    if (tick === -1) return;
    entry.wheelTick = -1;
    this.count--;
    const slot = this.slots.get(tick);
    // Not in the map: its tick is firing right now, and the firing loop skips unfiled entries.
    if (slot === undefined) return;
    const last = slot.pop() as WheelEntry;
    if (last !== entry) {
      slot[entry.wheelIndex] = last;
      last.wheelIndex = entry.wheelIndex;
    }
    if (slot.length === 0) this.slots.delete(tick);
  }

  private arm(tick: number): void {
    // While a tick is fired in slices, the slice that finishes it arms the timer.
    if (this.resume !== undefined) return;
    this.timerTick = tick;
    // At most what a timer can wait (a frameTimeoutMs of 2^31 ms or more overflowed to 1 ms and
    // spun: red team G5); fired early, fire() finds nothing due and arms again for the rest.
    const delay = Math.min(MAX_TIMER_MS, Math.max(1, Math.ceil(tick * this.tickMs - now())));
    const timer = this.timer;
    if (timer !== undefined && delay === this.timerDelay) {
      // Same delay as last time (the usual case: one tick ahead): re-arm the same Timeout.
      timer.refresh();
      return;
    }
    if (timer !== undefined) clearTimeout(timer);
    this.timerDelay = delay;
    this.timer = setTimeout(TimerWheel.onTimer, delay, this);
    this.timer.unref();
  }

  private fire(): void {
    this.timerTick = Number.POSITIVE_INFINITY;
    this.resume = undefined;
    this.inFire = true;
    try {
      this.fireDue();
    } finally {
      // Also when a callback threw: the wheel must keep running for every other entry.
      this.inFire = false;
      if (this.firing !== undefined) {
        // Not unref'd: an unref'd immediate does not wake a loop that is waiting in poll.
        this.resume ??= setImmediate(TimerWheel.onTimer, this);
      } else {
        // The timer may fire a little early (libuv's clock is cached per loop turn): re-arm for the rest.
        const heap = this.heap;
        while (heap.length > 0 && !this.slots.has(heap[0] as number)) heapPop(heap);
        if (heap.length > 0) this.arm(heap[0] as number);
      }
    }
  }

  /** Fires the due ticks, at most MAX_PER_TURN entries; leaves `firing` set when a tick is unfinished. */
  private fireDue(): void {
    const nowTick = Math.floor(now() / this.tickMs);
    // Anything scheduled while firing lands after the ticks being fired.
    if (nowTick > this.cursor) this.cursor = nowTick;
    const heap = this.heap;
    let budget = MAX_PER_TURN;
    for (;;) {
      let slot = this.firing;
      if (slot === undefined) {
        if (heap.length === 0 || (heap[0] as number) > nowTick) return;
        const tick = heapPop(heap);
        slot = this.slots.get(tick);
        if (slot === undefined) continue;
        this.slots.delete(tick);
        this.firing = slot;
        this.firingTick = tick;
        this.firingAt = 0;
      }
      const tick = this.firingTick;
      while (this.firingAt < slot.length) {
        // A big tick is done in slices with the event loop turning in between, so ten thousand
        // entries due at once never stall it (the rest runs after this turn's I/O; see fire()).
        if (budget === 0) return;
        const e = slot[this.firingAt++] as WheelEntry;
        // Cancelled (or moved) by an earlier entry's callback in this same tick.
        if (e.wheelTick !== tick) continue;
        e.wheelTick = -1;
        this.count--;
        budget--;
        e.onWheel();
      }
      this.firing = undefined;
    }
  }

  private static onTimer(wheel: TimerWheel): void {
    wheel.fire();
  }
}

function heapPush(h: number[], v: number): void {
  let i = h.length;
  h.push(v);
  while (i > 0) {
    const p = (i - 1) >> 1;
    const pv = h[p] as number;
    if (pv <= v) break;
    h[i] = pv;
    i = p;
  }
  h[i] = v;
}

function heapPop(h: number[]): number {
  const top = h[0] as number;
  const last = h.pop() as number;
  const n = h.length;
  if (n > 0) {
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const c = r < n && (h[r] as number) < (h[l] as number) ? r : l;
      if ((h[c] as number) >= last) break;
      h[i] = h[c] as number;
      i = c;
    }
    h[i] = last;
  }
  return top;
}

const wheels = new Map<number, TimerWheel>();

/**
 * The process's wheel for deadlines of about `periodMs` (a heartbeat interval, an idle
 * threshold): its tick is periodMs / 50 rounded down to a power of two, between 1 ms and
 * 1,024 ms, so it fires up to 2% of the period late (16 ms for a 1 s heartbeat). Connections with similar periods share a
 * wheel, and so fire in the same bursts.
 */
export function wheelFor(periodMs: number): TimerWheel {
  const target = Math.min(1024, Math.max(1, periodMs / 50));
  const tickMs = 2 ** Math.floor(Math.log2(target));
  let w = wheels.get(tickMs);
  if (w === undefined) {
    w = new TimerWheel(tickMs);
    wheels.set(tickMs, w);
  }
  return w;
}
