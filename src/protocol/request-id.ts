/**
 * Request ids for one connection and one direction.
 *
 * Ids are u32, never 0, handed out in increasing order and wrapping from 2^32-1 to 1, skipping
 * any id still outstanding, so a request that runs for hours never shares its id with a newer
 * one. An id stays outstanding until its terminal answer (RESPONSE or ERROR) arrives, even after
 * the caller gave up on it: the peer still answers a cancelled or timed-out request, and an id
 * freed early could match that late answer to the wrong request (docs/PROTOCOL.md, "Request ids").
 *
 * The allocator also remembers the order ids were sent in, which is what GOAWAY's `lastId` is
 * about: once ids have wrapped, "id <= lastId" no longer says which requests the peer read, but
 * the send order does (see {@link RequestIdAllocator.splitOnGoaway}).
 */

import { InvalidArgumentError } from '../errors.js';
import { ErrorCode, ProtocolError } from './errors.js';
import { MAX_REQUEST_ID } from './types.js';

/**
 * Allocates request ids. Call {@link allocate} just before writing the REQUEST (ids are assumed
 * to be sent in the order they are allocated) and {@link release} when its RESPONSE or ERROR
 * arrives.
 *
 * @example
 * ```ts
 * const ids = new RequestIdAllocator();
 * const id = ids.allocate();
 * write({ kind: MessageKind.REQUEST, id, method, payload });
 * // … on RESPONSE / ERROR for `id`:
 * ids.release(id);
 * ```
 */
export class RequestIdAllocator {
  /** Outstanding id → its send sequence number. A Map iterates in insertion, i.e. send, order. */
  readonly #outstanding = new Map<number, number>();
  readonly #maxId: number;
  #next: number;
  #seq = 0;
  /** The highest send sequence number of any answered request (0 = none answered yet). */
  #answeredSeq = 0;

  /**
   * @param options.firstId the first id to hand out (default 1).
   * @param options.maxId the largest id (default 2^32-1); after it comes 1. A smaller space suits
   *   peers whose own protocol has a narrower id field, and lets tests see the wrap.
   */
  constructor(options: { readonly firstId?: number; readonly maxId?: number } = {}) {
    const maxId = options.maxId ?? MAX_REQUEST_ID;
    const firstId = options.firstId ?? 1;
    if (maxId >>> 0 !== maxId || maxId === 0) {
      throw new InvalidArgumentError(`maxId must be an integer in [1, 2^32-1], got ${maxId}`);
    }
    if (!Number.isInteger(firstId) || firstId < 1 || firstId > maxId) {
      throw new InvalidArgumentError(`firstId must be an integer in [1, ${maxId}], got ${firstId}`);
    }
    this.#maxId = maxId;
    this.#next = firstId;
  }

  /** Number of outstanding ids. */
  get size(): number {
    return this.#outstanding.size;
  }

  /** True if `id` is outstanding. */
  has(id: number): boolean {
    return this.#outstanding.has(id);
  }

  /**
   * The next free id, now outstanding. Skips ids still outstanding; the skip is short in
   * practice, since only ids that have lived for a full lap of the id space are in the way.
   * Throws ProtocolError ERR_TOO_MANY_REQUESTS if every id is outstanding (keep the number in
   * flight under the agreed maxInFlight and this cannot happen).
   */
  allocate(): number {
    const outstanding = this.#outstanding;
    const max = this.#maxId;
    if (outstanding.size >= max) {
      throw new ProtocolError(ErrorCode.TOO_MANY_REQUESTS, `all ${max} request ids are outstanding`);
    }
    let id = this.#next;
    while (outstanding.has(id)) id = id === max ? 1 : id + 1;
    this.#next = id === max ? 1 : id + 1;
    outstanding.set(id, ++this.#seq);
    return id;
  }

  /**
   * Marks `id` answered: its RESPONSE or ERROR arrived. Returns false if `id` was not outstanding
   * (a duplicate or unsolicited answer, which the caller should treat as a protocol violation).
   * Not for requests merely abandoned locally: those stay outstanding until answered.
   */
  release(id: number): boolean {
    const seq = this.#outstanding.get(id);
    if (seq === undefined) return false;
    this.#outstanding.delete(id);
    // The peer answered this request, so it read it and every request sent before it.
    if (seq > this.#answeredSeq) this.#answeredSeq = seq;
    return true;
  }

  /**
   * After a GOAWAY from the peer carrying `lastId`, splits the outstanding ids into those the
   * peer read (it will answer them; wait) and those it never read (not processed; safe to retry
   * on another connection), each in send order.
   *
   * The peer reads in the order we sent, and `lastId` is the last REQUEST it read; so a request
   * was read iff it was sent no later than that one. If `lastId` is no longer outstanding it was
   * answered already, and then the latest answered request marks the same point — nothing sent
   * after `lastId` can have been answered, since it was never read.
   */
  splitOnGoaway(lastId: number): { accepted: number[]; notProcessed: number[] } {
    let cutoff = this.#answeredSeq;
    const lastSeq = lastId === 0 ? undefined : this.#outstanding.get(lastId);
    if (lastSeq !== undefined && lastSeq > cutoff) cutoff = lastSeq;
    const accepted: number[] = [];
    const notProcessed: number[] = [];
    for (const [id, seq] of this.#outstanding) (seq <= cutoff ? accepted : notProcessed).push(id);
    return { accepted, notProcessed };
  }
}
