/**
 * The pool's acquirers waiting for a resource: FIFO within a priority, higher priorities first.
 * A waiter that times out or aborts stays in its queue as a tombstone (removing it from the
 * middle of a deque costs O(n)); the queues are compacted once tombstones outnumber the living.
 */

import { Deque } from './deque.js';
import type { Lease, Trace } from './lease.js';

/** @internal One acquire() waiting. */
export class Waiter<T> {
  settled = false;
  resolve!: (lease: Lease<T>) => void;
  reject!: (err: unknown) => void;
  signal: AbortSignal | undefined = undefined;
  onAbort: (() => void) | undefined = undefined;
  constructor(
    readonly deadline: number,
    readonly timeoutMs: number,
    readonly enqueuedAt: number,
    readonly trace: Trace | undefined,
  ) {}
}

interface Level<T> {
  priority: number;
  queue: Deque<Waiter<T>>;
}

// One executor for every waiter's promise: no closure per acquire.
let capturedResolve: ((value: never) => void) | undefined;
let capturedReject: ((err: unknown) => void) | undefined;
function captureExecutor(resolve: (value: never) => void, reject: (err: unknown) => void): void {
  capturedResolve = resolve;
  capturedReject = reject;
}

/** @internal The waiters of one pool. */
export class WaitQueue<T> {
  /** Waiters not yet settled. */
  live = 0;
  /** The earliest deadline among them (a bound: it may have settled since). */
  nextDeadline = Number.POSITIVE_INFINITY;
  /** By priority, highest first. levels[0] is usually the only one. */
  private readonly levels: Level<T>[] = [{ priority: 0, queue: new Deque<Waiter<T>>() }];
  private tombstones = 0;

  /** Queues a waiter; its promise settles when it is handed a lease or rejected. */
  add(w: Waiter<T>, priority: number): Promise<Lease<T>> {
    const promise = new Promise<Lease<T>>(captureExecutor);
    w.resolve = capturedResolve as (lease: Lease<T>) => void;
    w.reject = capturedReject as (err: unknown) => void;
    this.levelFor(priority).queue.push(w);
    this.live++;
    if (w.deadline < this.nextDeadline) this.nextDeadline = w.deadline;
    return promise;
  }

  /** Takes the next live waiter off its queue, settled: the caller resolves or rejects it. */
  take(): Waiter<T> | undefined {
    for (let i = 0; i < this.levels.length; i++) {
      const q = (this.levels[i] as Level<T>).queue;
      while (q.length > 0) {
        const w = q.shift() as Waiter<T>;
        if (!w.settled) {
          this.settle(w);
          return w;
        }
        this.tombstones--;
      }
    }
    return undefined;
  }

  /** Settles a waiter out of order (timeout, abort); it stays in its queue as a tombstone. */
  drop(w: Waiter<T>): void {
    this.settle(w);
    this.tombstones++;
    this.compact();
  }

  /** Rejects every waiter with a fresh error from `make`. */
  rejectAll(make: () => unknown): void {
    for (;;) {
      const w = this.take();
      if (w === undefined) break;
      w.reject(make());
    }
    this.tombstones = 0;
  }

  /** Drops (and hands to `expired`) every waiter whose deadline is ≤ now; recomputes nextDeadline. */
  expire(now: number, expired: (w: Waiter<T>) => void): void {
    let next = Number.POSITIVE_INFINITY;
    for (const level of this.levels) {
      level.queue.forEach((w) => {
        if (w.settled) return;
        if (w.deadline <= now) {
          // Not drop(): compacting would rewrite the queue this loop walks.
          this.settle(w);
          this.tombstones++;
          expired(w);
        } else if (w.deadline < next) {
          next = w.deadline;
        }
      });
    }
    this.nextDeadline = next;
    this.compact();
  }

  /** Tombstones cost memory until taken; compact the queues once they dominate. */
  private compact(): void {
    if (this.tombstones > 64 && this.tombstones > this.live) {
      for (const level of this.levels) level.queue.filter(isLive);
      this.tombstones = 0;
    }
  }

  private settle(w: Waiter<T>): void {
    w.settled = true;
    this.live--;
    if (w.signal !== undefined && w.onAbort !== undefined) w.signal.removeEventListener('abort', w.onAbort);
  }

  private levelFor(priority: number): Level<T> {
    const levels = this.levels;
    const first = levels[0] as Level<T>;
    if (first.priority === priority) return first;
    let i = 0;
    while (i < levels.length && (levels[i] as Level<T>).priority > priority) i++;
    const at = levels[i];
    if (at !== undefined && at.priority === priority) return at;
    const level: Level<T> = { priority, queue: new Deque<Waiter<T>>(4) };
    levels.splice(i, 0, level);
    return level;
  }
}

function isLive(w: { settled: boolean }): boolean {
  return !w.settled;
}
