/**
 * A memory budget for the bytes connections buffer on a peer's behalf: partial frames read in,
 * queues waiting to be written out, request payloads held by handlers still running. Each
 * connection is bounded on its own (maxFrameLength, maxQueuedBytes, maxInFlightBytes); the budget
 * bounds them together, so ten thousand connections that each stay under their own limits cannot
 * add up to more than the process can hold.
 *
 * Only connections holding at least `thresholdBytes` are counted. Everything a connection does
 * below that (small frames, a queue under its high watermark) costs the budget nothing, which keeps
 * it off the hot path: a connection reports to the budget only when it crosses the threshold, and
 * while it stays above it. What the uncounted connections hold is bounded by their number times
 * the threshold (10,000 × 64 KiB = 640 MiB at most, and in practice a tiny fraction of it).
 *
 * When the counted total passes the limit, the budget sheds: the connections holding the most are
 * reset, largest first, until the total is back under the limit (Centrifugo disconnects a client
 * whose queue passes `client_queue_max_size`; this is the same policy applied to the whole process).
 */

import { OverloadError } from '../errors.js';
import { finitePositive } from '../util/check.js';

/** Something the budget counts: how much it holds, and how to make it let go. */
export interface BudgetMember {
  /** Bytes held now. */
  heldBytes(): number;
  /** Frees what it holds (a connection resets itself). Called at most once per excess. */
  shed(error: OverloadError): void;
}

/** Default process budget: 512 MiB of buffered peer bytes. */
export const DEFAULT_MEMORY_BUDGET_BYTES = 512 * 1024 * 1024;
/** Holdings below this are not counted (the default high watermark of a send queue). */
export const DEFAULT_BUDGET_THRESHOLD_BYTES = 64 * 1024;

/** What {@link MemoryBudget.stats} reports. */
export interface MemoryBudgetStats {
  limitBytes: number;
  /** Bytes held by the counted connections now. */
  usedBytes: number;
  /** Connections holding at least the threshold now. */
  counted: number;
  /** Connections reset to stay under the limit, since the start. */
  shed: number;
  /** Bytes they held when reset. */
  shedBytes: number;
}

export class MemoryBudget {
  readonly limitBytes: number;
  readonly thresholdBytes: number;
  private readonly heavy = new Set<BudgetMember>();
  private shedCount = 0;
  private shedBytes = 0;

  constructor(
    limitBytes: number = DEFAULT_MEMORY_BUDGET_BYTES,
    thresholdBytes = DEFAULT_BUDGET_THRESHOLD_BYTES,
  ) {
    this.limitBytes = finitePositive('memoryBudgetBytes', limitBytes, DEFAULT_MEMORY_BUDGET_BYTES);
    this.thresholdBytes = finitePositive('thresholdBytes', thresholdBytes, DEFAULT_BUDGET_THRESHOLD_BYTES);
  }

  /**
   * A member's holdings changed. It is counted while at or above the threshold; if the total is
   * then over the limit, the largest holders are shed. Returns whether `m` is counted now.
   */
  update(m: BudgetMember): boolean {
    if (m.heldBytes() < this.thresholdBytes) {
      this.heavy.delete(m);
      return false;
    }
    this.heavy.add(m);
    this.enforce();
    return this.heavy.has(m);
  }

  /** A member is gone (its connection closed). */
  remove(m: BudgetMember): void {
    this.heavy.delete(m);
  }

  stats(): MemoryBudgetStats {
    let used = 0;
    for (const m of this.heavy) used += m.heldBytes();
    return {
      limitBytes: this.limitBytes,
      usedBytes: used,
      counted: this.heavy.size,
      shed: this.shedCount,
      shedBytes: this.shedBytes,
    };
  }

  private enforce(): void {
    let total = 0;
    for (const m of this.heavy) total += m.heldBytes();
    if (total <= this.limitBytes) return;
    // Largest first: one connection hoarding is shed before many ordinary ones.
    const held = [...this.heavy].map((m) => ({ m, bytes: m.heldBytes() }));
    held.sort((a, b) => b.bytes - a.bytes);
    for (const { m, bytes } of held) {
      if (total <= this.limitBytes) break;
      this.heavy.delete(m);
      total -= bytes;
      this.shedCount++;
      this.shedBytes += bytes;
      m.shed(new OverloadError(bytes, this.limitBytes));
    }
  }
}

/** The budget every server shares unless given its own. */
export const processBudget = new MemoryBudget();
