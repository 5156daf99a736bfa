/**
 * A table of records by u32 id, for the requests in flight on one connection: what a `Map` did,
 * without what a `Map` costs under churn.
 *
 * Why not a Map. A connection with 256 requests in flight inserts and deletes hundreds of thousands
 * of ids a second. V8's Map rehashes into a new backing table every few hundred inserts and leaves
 * the old table pointing at the new one (so live iterators can follow). Once one of those tables
 * is promoted to the old generation, the scavenger treats it as a root until the next full GC:
 * its successor survives, and the successor's, each holding the requests that were in flight when
 * it was replaced. On the benchmark's client (bench/rpc, 256 in flight) that chain kept ~3 MB alive
 * through every scavenge: each scavenge took 3–5 ms instead of 0.4 ms, every request was promoted
 * and collected by a mark-compact every ~120 ms, GC was 28 % of the client's CPU and the p99
 * latency was the scavenge pause (docs/benchmarks.md, "Tail latency").
 *
 * Here: open addressing with linear probing in two flat arrays (ids in a Uint32Array, records in
 * an array), deletion by backward shift (no tombstones), so a deleted record is gone from the
 * table at once and the arrays are replaced only when the table grows or shrinks — and then the
 * old record array is cleared, so even a promoted one keeps nothing alive.
 *
 * Ids may come from the peer (the server's table of requests being handled), so the slot is a
 * multiplicative hash with a multiplier drawn per process: a peer cannot pick ids that collide.
 * Consecutive ids — what a client allocates — spread evenly under any odd multiplier.
 */

import { randomInt } from 'node:crypto';

/** A random odd 32-bit multiplier near the golden ratio's (0x9E3779B1), drawn once per process. */
const MULTIPLIER = (0x9e3779b1 ^ (randomInt(0, 0x10000) << 8)) | 1;

const MIN_BITS = 3;

/** Deletes between two looks at whether the table is larger than its recent use needs. */
const WINDOW_MAX = 1024;

export class IdTable<T> {
  private bits = MIN_BITS;
  private mask = (1 << MIN_BITS) - 1;
  private ids: Uint32Array = new Uint32Array(1 << MIN_BITS);
  private records: Array<T | undefined> = new Array<T | undefined>(1 << MIN_BITS).fill(undefined);
  private count = 0;
  /** The most records held since the window began, and the deletes in the window. */
  private peak = 0;
  private deletes = 0;

  /** Number of records. */
  get size(): number {
    return this.count;
  }

  /** Slots allocated (the table's memory is a u32 and a pointer per slot). */
  get capacity(): number {
    return this.mask + 1;
  }

  private slot(id: number): number {
    return Math.imul(id, MULTIPLIER) >>> (32 - this.bits);
  }

  get(id: number): T | undefined {
    const ids = this.ids;
    const records = this.records;
    const mask = this.mask;
    for (let i = this.slot(id); ; i = (i + 1) & mask) {
      const r = records[i];
      if (r === undefined) return undefined;
      if (ids[i] === id) return r;
    }
  }

  has(id: number): boolean {
    return this.get(id) !== undefined;
  }

  /** Adds or replaces the record of `id`. `record` must not be undefined. */
  set(id: number, record: T): void {
    const ids = this.ids;
    const records = this.records;
    const mask = this.mask;
    let i = this.slot(id);
    for (; records[i] !== undefined; i = (i + 1) & mask) {
      if (ids[i] === id) {
        records[i] = record;
        return;
      }
    }
    ids[i] = id;
    records[i] = record;
    if (++this.count > this.peak) this.peak = this.count;
    // At most half full: probes stay short.
    if (this.count > mask >>> 1) this.resize(this.bits + 1);
  }

  /** Removes the record of `id`; returns it (undefined: there was none). */
  delete(id: number): T | undefined {
    const ids = this.ids;
    const records = this.records;
    const mask = this.mask;
    let i = this.slot(id);
    let r: T | undefined;
    for (; ; i = (i + 1) & mask) {
      r = records[i];
      if (r === undefined) return undefined;
      if (ids[i] === id) break;
    }
    records[i] = undefined;
    this.count--;
    // Backward shift: move later records of the same probe run into the hole, so every record
    // stays reachable from its slot without tombstones.
    for (let j = (i + 1) & mask; ; j = (j + 1) & mask) {
      const moved = records[j];
      if (moved === undefined) break;
      const home = this.slot(ids[j] as number);
      // `moved` may fill the hole at i unless its home lies cyclically in (i, j].
      if (i <= j ? home <= i || home > j : home <= i && home > j) {
        ids[i] = ids[j] as number;
        records[i] = moved;
        records[j] = undefined;
        i = j;
      }
    }
    // A burst is over: give the memory back. Not as soon as the table is nearly empty: answers
    // come in batches, so with 256 in flight the count falls near 0 and climbs back every batch,
    // and shrinking then growing again each time cost 4 % of the client's CPU (bench/rpc). Only
    // when a whole window of deletes never needed an eighth of the slots, and then to fit that.
    if (++this.deletes >= Math.min(mask + 1, WINDOW_MAX)) {
      if (this.bits > MIN_BITS && this.peak < (mask + 1) >>> 3) this.resize(bitsFor(this.peak));
      this.deletes = 0;
      this.peak = this.count;
    }
    return r;
  }

  /** The records, in no particular order. */
  values(): T[] {
    const out: T[] = [];
    for (const r of this.records) if (r !== undefined) out.push(r);
    return out;
  }

  clear(): void {
    this.records.fill(undefined);
    this.count = 0;
    this.peak = 0;
    this.deletes = 0;
    if (this.bits !== MIN_BITS) this.resize(MIN_BITS);
  }

  private resize(bits: number): void {
    this.deletes = 0;
    this.peak = this.count;
    const oldIds = this.ids;
    const oldRecords = this.records;
    const size = 1 << bits;
    this.bits = bits;
    this.mask = size - 1;
    this.ids = new Uint32Array(size);
    this.records = new Array<T | undefined>(size).fill(undefined);
    const ids = this.ids;
    const records = this.records;
    const mask = this.mask;
    for (let k = 0; k < oldRecords.length; k++) {
      const r = oldRecords[k];
      if (r === undefined) continue;
      const id = oldIds[k] as number;
      let i = this.slot(id);
      while (records[i] !== undefined) i = (i + 1) & mask;
      ids[i] = id;
      records[i] = r;
    }
    // The old array may already be in the old generation: leave it pointing at nothing.
    oldRecords.fill(undefined);
  }
}

/** The fewest bits (at least MIN_BITS) whose table holds `n` records at most a quarter full. */
function bitsFor(n: number): number {
  let bits = MIN_BITS;
  while (1 << (bits - 2) < n) bits++;
  return bits;
}
