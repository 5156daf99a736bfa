/**
 * Many deadlines, one timer (undici lib/util/timers.js makes the same trade). Requests in flight
 * by the ten thousand each need a timeout; a setTimeout apiece costs a timer-list insertion and a
 * closure each, and clearing them on the (usual) early answer costs again.
 *
 * Deadlines with the same duration expire in the order they were added, so each distinct
 * duration keeps a FIFO queue and only queue heads are ever compared: add and cancel are O(1)
 * (cancel marks the entry; it is dropped when it reaches the head). One unref'd timer is armed for
 * the earliest head. A handful of distinct durations is the expected case.
 */

import { MAX_TIMER_MS } from './check.js';
import { now } from './clock.js';

/** A scheduled deadline; pass it to {@link Deadlines.cancel}. */
export interface Deadline {
  /** The clock's time (util/clock.ts) at which it fires. */
  readonly at: number;
  cancelled: boolean;
  fired: boolean;
  readonly fire: (arg: unknown) => void;
  readonly arg: unknown;
  /** The queue holding it, for cancel's bookkeeping. */
  readonly queue: Fifo;
}

interface Fifo {
  items: Deadline[];
  head: number;
  /** Cancelled entries still in `items` past `head`. */
  cancelled: number;
}

export class Deadlines {
  private readonly queues = new Map<number, Fifo>();
  private timer: NodeJS.Timeout | undefined;
  private timerAt = Number.POSITIVE_INFINITY;
  private size = 0;
  private readonly now: () => number;

  /**
   * `now` is the clock deadlines are set and fired by: the one clock (util/clock.ts), read for
   * every deadline set, so none fires before its time (see clock.ts for why nothing is cached).
   */
  constructor(clock: () => number = now) {
    this.now = clock;
  }

  /** Calls `fire(arg)` after `ms` milliseconds unless cancelled first. */
  add(ms: number, fire: (arg: unknown) => void, arg: unknown): Deadline {
    let q = this.queues.get(ms);
    if (q === undefined) {
      q = { items: [], head: 0, cancelled: 0 };
      this.queues.set(ms, q);
    }
    const d: Deadline = { at: this.now() + ms, cancelled: false, fired: false, fire, arg, queue: q };
    q.items.push(d);
    this.size++;
    if (d.at < this.timerAt) this.arm(d.at);
    return d;
  }

  cancel(d: Deadline): void {
    if (d.cancelled || d.fired) return;
    d.cancelled = true;
    this.size--;
    const q = d.queue;
    // Most requests are answered long before their deadline: without compaction a 30 s timeout
    // at 50k requests/s would hold 1.5 M dead entries. Compact once half the queue is dead
    // (amortised O(1) per cancel).
    if (++q.cancelled > 64 && q.cancelled * 2 > q.items.length - q.head) {
      q.items = q.items.slice(q.head).filter((x) => !x.cancelled);
      q.head = 0;
      q.cancelled = 0;
    }
    if (this.size === 0) this.disarm();
  }

  /** Number of live (not fired, not cancelled) deadlines. */
  get pending(): number {
    return this.size;
  }

  /** Cancels everything. */
  clear(): void {
    this.queues.clear();
    this.size = 0;
    this.disarm();
  }

  private arm(at: number): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timerAt = at;
    // A deadline further away than a timer can wait (a caller's TIMEOUT field of 2^32-1 ms): wake
    // at the timer's limit, and run() arms again for what is still ahead.
    this.timer = setTimeout(Deadlines.onTimer, Math.min(MAX_TIMER_MS, Math.max(0, at - this.now())), this);
    this.timer.unref();
  }

  private disarm(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.timerAt = Number.POSITIVE_INFINITY;
  }

  private static onTimer(self: Deadlines): void {
    self.timer = undefined;
    self.timerAt = Number.POSITIVE_INFINITY;
    self.run();
  }

  private run(): void {
    const now = this.now();
    let next = Number.POSITIVE_INFINITY;
    const due: Deadline[] = [];
    for (const [ms, q] of this.queues) {
      while (q.head < q.items.length) {
        const d = q.items[q.head] as Deadline;
        if (d.cancelled) {
          q.head++;
          q.cancelled--;
          continue;
        }
        if (d.at > now) {
          next = Math.min(next, d.at);
          break;
        }
        q.head++;
        d.fired = true;
        this.size--;
        due.push(d);
      }
      if (q.head === q.items.length) {
        this.queues.delete(ms);
      } else if (q.head > 1024 && q.head * 2 > q.items.length) {
        q.items = q.items.slice(q.head); // compact, amortised O(1)
        q.head = 0;
      }
    }
    if (next !== Number.POSITIVE_INFINITY) this.arm(next);
    for (const d of due) d.fire(d.arg);
  }
}
