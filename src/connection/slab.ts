/**
 * The output slab: one buffer the whole process encodes small frames into (write-queue.ts writes
 * the slices; core.ts drops a reset connection's part). Its own module so both can reach it.
 */

import type { ConnectionCore } from './state.js';

/** Chunks below this size are copied together on flush (write-queue.ts); so are frames into the slab. */
export const SLAB_COPY_MAX = 4096;

/*
 * The output slab. Small frames are encoded in place into one buffer the whole process shares
 * (raw's FrameWriter in bench/rpc does the same per connection; Node's own Buffer pool is the same
 * idea at 8 KiB). The connection writing now owns the slab's open region [start, end): its next
 * frame goes right after its last, so one tick's frames of a connection are one contiguous slice,
 * written as they are — no Buffer per message, no copy at flush. When another connection writes,
 * or the slab is full, the region is sealed: its slice joins the owner's queue like any chunk.
 * Bytes once committed are never written again (a new slab replaces a full one), so a slice
 * handed to a socket stays valid however long the kernel takes.
 *
 * What a peer that stops reading makes us hold: a slice in a socket's queue keeps its whole slab
 * alive. So a flush to a socket that already has bytes waiting, and any flush of several chunks
 * (a connection's frames split across slabs by other connections'), copies out slices that are
 * less than half their buffer (write-queue.ts `unpinned`): at most one slab per stuck connection
 * — the single-chunk write that found the socket empty — as Node's pool pins at most one 8 KiB
 * pool per such write.
 *
 * Between a reservation and its commit no code but longlink's runs: a caller's bytes are read
 * through the intrinsic TypedArray getter and `set` (util/bytes.ts), only longlink's own encoders
 * write prefixes here (codec/length-prefixed.ts `writesInPlace`), and a request's metadata is
 * copied when it is made. Code that ran there could send on another connection and write over
 * its frames (red team R1, N1, N2).
 */
const SLAB_BYTES = 32 * 1024;

/** Frames up to this many bytes (prefix included) may be encoded into the slab. */
export const SLAB_FRAME_MAX = SLAB_COPY_MAX;

export const slab = {
  buf: Buffer.allocUnsafeSlow(SLAB_BYTES),
  /** The first free byte. */
  end: 0,
  /** The connection whose open region is [start, end), if any. */
  owner: undefined as ConnectionCore | undefined,
  start: 0,
};

/** Queues the owner's open region as a chunk (its bytes are already counted in outBytes). */
export function sealOpen(): void {
  const c = slab.owner;
  if (c === undefined) return;
  slab.owner = undefined;
  if (slab.end > slab.start) pushChunk(c, slab.buf.subarray(slab.start, slab.end));
  slab.start = slab.end;
}

/** Seals the open region and starts a new slab of at least `n` bytes (the old one lives on in its slices). */
export function renewSlab(n = 0): void {
  sealOpen();
  slab.buf = Buffer.allocUnsafeSlow(Math.max(SLAB_BYTES, n));
  slab.end = slab.start = 0;
  // The target would otherwise keep the old slab alive for the process (red team, second pass).
  target.buf = slab.buf;
}

/**
 * Where a frame is encoded in place: `reserve(n)` returns the offset in `buf` of `n` bytes for
 * connection `c`'s next frame, right after its last one. They are nobody's until
 * {@link commitFrame}: a frame given up half-way (an encoder that throws, a frame over the limit)
 * is simply not committed, and the next reservation reuses the bytes. One object for the process,
 * aimed at a connection by {@link frameTarget}.
 */
export class FrameTarget {
  c: ConnectionCore | undefined = undefined;
  buf: Buffer = slab.buf;
  /** The reservation: its offset in `buf` and size (-1: none yet). */
  at = -1;
  n = -1;

  reserve(n: number): number {
    const c = this.c as ConnectionCore;
    if (slab.owner !== c) {
      sealOpen();
      slab.owner = c;
      slab.start = slab.end;
    }
    if (slab.buf.length - slab.end < n) {
      // Only a frame larger than SLAB_FRAME_MAX gets here (commitFrame renews a slab with less
      // room than that): c's frames then straddle two slabs, in two writes.
      renewSlab(n);
      slab.owner = c;
    }
    this.buf = slab.buf;
    this.at = slab.end;
    this.n = n;
    return slab.end;
  }
}

const target = new FrameTarget();

/** The process's FrameTarget, aimed at `c`, no reservation made yet. */
export function frameTarget(c: ConnectionCore): FrameTarget {
  target.c = c;
  target.at = -1;
  target.n = -1;
  return target;
}

/**
 * A reservation for `c` will not be committed (a frame over the limit, a connection that closed
 * meanwhile): if c's open region is empty, the slab no longer names c (nor keeps it alive).
 */
export function forgetReservation(c: ConnectionCore): void {
  if (slab.owner === c && slab.start === slab.end) slab.owner = undefined;
}

/** Forgets `c`'s open region (its queue is being dropped); the bytes are left unused. */
export function dropOpen(c: ConnectionCore): void {
  if (slab.owner === c) {
    slab.owner = undefined;
    slab.start = slab.end;
  }
}

/** Appends a chunk to `c`'s queue (no accounting: the caller counts its bytes). */
export function pushChunk(c: ConnectionCore, chunk: Buffer): void {
  if (c.outq !== undefined) c.outq.push(chunk);
  else if (c.out1 === undefined) c.out1 = chunk;
  else {
    c.outq = [c.out1, chunk];
    c.out1 = undefined;
  }
}
