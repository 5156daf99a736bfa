/**
 * A small unbounded-until-capped async queue behind an AsyncIterableIterator: producers `push`,
 * one consumer iterates. Used for pushes and status updates, which must not be lost between two
 * `next()` calls. Past `cap` items the oldest are dropped (a consumer that stopped reading must
 * not grow memory without bound).
 */
export class AsyncQueue<T> implements AsyncIterableIterator<T> {
  private items: T[] = [];
  private waiters: Array<(r: IteratorResult<T>) => void> = [];
  private ended = false;
  /** Items dropped because the consumer fell `cap` behind. */
  dropped = 0;
  constructor(
    private readonly cap = 10_000,
    private readonly onReturn?: () => void,
  ) {}

  push(item: T): void {
    if (this.ended) return;
    const w = this.waiters.shift();
    if (w) {
      w({ value: item, done: false });
      return;
    }
    this.items.push(item);
    if (this.items.length > this.cap) {
      this.items.shift();
      this.dropped++;
    }
  }

  /** Ends the iteration once the buffered items are consumed. */
  end(): void {
    this.ended = true;
    for (const w of this.waiters.splice(0)) w({ value: undefined, done: true });
  }

  next(): Promise<IteratorResult<T>> {
    if (this.items.length > 0) return Promise.resolve({ value: this.items.shift() as T, done: false });
    if (this.ended) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  return(): Promise<IteratorResult<T>> {
    this.end();
    this.items = [];
    this.onReturn?.();
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): this {
    return this;
  }
}
