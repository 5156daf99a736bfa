/**
 * A FIFO ring buffer: O(1) push and shift without the O(n) `Array#shift` that a busy waiter
 * queue would pay on every release. The capacity doubles when full and never shrinks (a pool's
 * queue depth is bounded by `maxWaiters`).
 */
export class Deque<T> {
  private buf: Array<T | undefined>;
  private head = 0;
  private mask: number;
  private _length = 0;

  constructor(initialCapacity = 16) {
    let cap = 4;
    while (cap < initialCapacity) cap *= 2;
    this.buf = new Array<T | undefined>(cap);
    this.mask = cap - 1;
  }

  get length(): number {
    return this._length;
  }

  push(value: T): void {
    if (this._length === this.buf.length) this.grow();
    this.buf[(this.head + this._length) & this.mask] = value;
    this._length++;
  }

  /** Removes and returns the oldest item. */
  shift(): T | undefined {
    if (this._length === 0) return undefined;
    const v = this.buf[this.head];
    this.buf[this.head] = undefined;
    this.head = (this.head + 1) & this.mask;
    this._length--;
    return v;
  }

  /** Visits items oldest first. */
  forEach(fn: (value: T) => void): void {
    for (let i = 0; i < this._length; i++) fn(this.buf[(this.head + i) & this.mask] as T);
  }

  /** Keeps only the items for which `keep` holds, in order. O(n). */
  filter(keep: (value: T) => boolean): void {
    const n = this._length;
    let w = 0;
    for (let i = 0; i < n; i++) {
      const v = this.buf[(this.head + i) & this.mask] as T;
      if (keep(v)) this.buf[(this.head + w++) & this.mask] = v;
    }
    for (let i = w; i < n; i++) this.buf[(this.head + i) & this.mask] = undefined;
    this._length = w;
  }

  private grow(): void {
    const old = this.buf;
    const cap = old.length * 2;
    const next = new Array<T | undefined>(cap);
    for (let i = 0; i < this._length; i++) next[i] = old[(this.head + i) & this.mask];
    this.buf = next;
    this.head = 0;
    this.mask = cap - 1;
  }
}
