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
 *
 * It keeps the caller's own record of each request (the client session's request object), so a
 * connection holds one table of what is outstanding, not one here and another beside it.
 */

import { InvalidArgumentError } from '../errors.js';
import { IdTable } from '../util/id-table.js';
import { ErrorCode, ProtocolError } from './errors.js';
import { MAX_REQUEST_ID } from './types.js';

/** A record the allocator keeps while its request is outstanding; `allocate` stamps both fields. */
export interface Outstanding {
  /** The request id, 1 … maxId. */
  id: number;
  /** Send order on this connection (1, 2, 3 …): what GOAWAY's split compares. */
  seq: number;
}

/**
 * Allocates request ids. Call {@link allocate} just before writing the REQUEST (ids are assumed
 * to be sent in the order they are allocated) and {@link release} when its RESPONSE or ERROR
 * arrives.
 *
 * @example
 * ```ts
 * const ids = new RequestIdAllocator<{ id: number; seq: number; method: string }>();
 * const r = { id: 0, seq: 0, method: 'echo' };
 * ids.allocate(r); // r.id is now 1
 * write({ kind: MessageKind.REQUEST, id: r.id, method: r.method, payload });
 * // … on RESPONSE / ERROR for `id`:
 * const answered = ids.release(id); // r, or undefined for an unsolicited answer
 * ```
 */
export class RequestIdAllocator<T extends Outstanding = Outstanding> {
  /**
   * Outstanding id → its record. Not a Map: under the churn of thousands of requests a second a
   * Map's discarded tables keep answered requests alive through garbage collections (see
   * util/id-table.ts); send order comes from each record's `seq` instead.
   */
  readonly #outstanding = new IdTable<T>();
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

  /** The record of outstanding `id`, if any. */
  get(id: number): T | undefined {
    return this.#outstanding.get(id);
  }

  /** The outstanding records, in send order. */
  values(): T[] {
    return inSendOrder(this.#outstanding.values());
  }

  /**
   * Gives `entry` the next free id (and its send sequence number) and makes it outstanding;
   * returns the id. Skips ids still outstanding; the skip is short in practice, since only ids
   * that have lived for a full lap of the id space are in the way. Throws ProtocolError
   * ERR_TOO_MANY_REQUESTS if every id is outstanding (keep the number in flight under the agreed
   * maxInFlight and this cannot happen).
   */
  allocate(entry: T): number {
    const outstanding = this.#outstanding;
    const max = this.#maxId;
    if (outstanding.size >= max) {
      throw new ProtocolError(ErrorCode.TOO_MANY_REQUESTS, `all ${max} request ids are outstanding`);
    }
    let id = this.#next;
    while (outstanding.has(id)) id = id === max ? 1 : id + 1;
    this.#next = id === max ? 1 : id + 1;
    entry.id = id;
    entry.seq = ++this.#seq;
    outstanding.set(id, entry);
    return id;
  }

  /**
   * Marks `id` answered: its RESPONSE or ERROR arrived. Returns its record, or undefined if `id`
   * was not outstanding (a duplicate or unsolicited answer, which the caller should treat as a
   * protocol violation). Not for requests merely abandoned locally: those stay outstanding until
   * answered.
   */
  release(id: number): T | undefined {
    const entry = this.#outstanding.delete(id);
    if (entry === undefined) return undefined;
    // The peer answered this request, so it read it and every request sent before it.
    if (entry.seq > this.#answeredSeq) this.#answeredSeq = entry.seq;
    return entry;
  }

  /**
   * Takes back an id whose REQUEST could not be written after all (nothing reached the peer, so
   * no answer can come). Unlike {@link release} it says nothing about what the peer read.
   */
  discard(id: number): boolean {
    return this.#outstanding.delete(id) !== undefined;
  }

  /**
   * After a GOAWAY from the peer carrying `lastId`, splits the outstanding requests into those
   * the peer read (it will answer them; wait) and those it never read (not processed; safe to
   * retry on another connection), each in send order. The second kind stop being outstanding
   * here: nothing new is sent on a connection after its GOAWAY, so their ids cannot be reused,
   * and a late ERR_SHUTTING_DOWN for one of them then matches nothing.
   *
   * The peer reads in the order we sent, and `lastId` is the last REQUEST it read; so a request
   * was read iff it was sent no later than that one. If `lastId` is no longer outstanding it was
   * answered already, and then the latest answered request marks the same point — nothing sent
   * after `lastId` can have been answered, since it was never read.
   */
  splitOnGoaway(lastId: number): { accepted: T[]; notProcessed: T[] } {
    let cutoff = this.#answeredSeq;
    const last = lastId === 0 ? undefined : this.#outstanding.get(lastId);
    if (last !== undefined && last.seq > cutoff) cutoff = last.seq;
    const accepted: T[] = [];
    const notProcessed: T[] = [];
    for (const entry of this.values()) {
      (entry.seq <= cutoff ? accepted : notProcessed).push(entry);
    }
    for (const entry of notProcessed) this.#outstanding.delete(entry.id);
    return { accepted, notProcessed };
  }

  /** Forgets every outstanding id (the connection is gone: no answer can come). */
  clear(): void {
    this.#outstanding.clear();
  }
}

function inSendOrder<T extends Outstanding>(entries: T[]): T[] {
  return entries.sort((a, b) => a.seq - b.seq);
}
