/**
 * The write side of a Connection: frames queued in one tick leave in one write, flushed by one
 * process-wide microtask; a full window is written early so two peers overlap instead of falling
 * into lockstep; the queue reports backpressure at the high watermark, drains at the low one, and
 * past `maxQueuedBytes` the peer is a slow consumer and the connection is reset.
 *
 * Small frames are encoded straight into one process-wide output slab (slab.ts): no Buffer per
 * message, one copy of the payload, and a connection's frames of one tick are already one
 * contiguous write.
 */

import { SlowConsumerError } from '../errors.js';
import { CloseReason } from './close-reason.js';
import { budgetChanged, dropQueue, reset } from './core.js';
import { activity } from './liveness.js';
import {
  type FrameTarget,
  pushChunk,
  renewSlab,
  SLAB_COPY_MAX,
  SLAB_FRAME_MAX,
  sealOpen,
  slab,
} from './slab.js';
import { BUDGETED, type ConnectionCore, IDLE_ALL, IDLE_WRITER, lifecycle, wholeMs } from './state.js';

/*
 * One flush queue for the process: connections with frames queued this tick, flushed together by
 * one microtask. A queueMicrotask per connection costs an AsyncResource scope each, and a bound
 * flush closure per connection costs memory on idle connections.
 *
 * A reaction on a resolved promise, not queueMicrotask: Node's queueMicrotask wraps every callback
 * in an AsyncResource and a bound function, which a server pays once per read (it flushes after
 * each). Same queue, same timing.
 */
const resolved = Promise.resolve();
const flushQueue: Array<ConnectionCore | undefined> = [];
let flushCount = 0;
function flushAll(): void {
  // The same array every time (a new one per flush was an allocation per heartbeat on a server,
  // which flushes once per read). A flush that queues another connection appends to it.
  for (let i = 0; i < flushCount; i++) {
    const c = flushQueue[i] as ConnectionCore;
    flushQueue[i] = undefined;
    if (c.flushScheduled) flush(c);
  }
  flushCount = 0;
}

/** Chunks below this size are copied together on flush; larger ones are written uncopied. */
const COPY_MAX = SLAB_COPY_MAX;

/** Copies q[from, to) into one buffer of `bytes` bytes (or returns the single chunk, unpinned). */
function coalesce(q: readonly Buffer[], from: number, to: number, bytes: number, backlog: boolean): Buffer {
  if (to - from === 1) return unpinned(q[from] as Buffer);
  const out = backlog ? Buffer.allocUnsafeSlow(bytes) : Buffer.allocUnsafe(bytes);
  let off = 0;
  for (let i = from; i < to; i++) {
    const c = q[i] as Buffer;
    c.copy(out, off);
    off += c.length;
  }
  return out;
}

/**
 * A chunk written to a socket that already has bytes waiting may sit in its queue as long as the
 * peer does not read, keeping alive the whole buffer it is a view of: the slab (slab.ts), Node's
 * 8 KiB pool, a 64 KiB read chunk a handler echoed part of. Such a chunk is copied when it is less
 * than half of that buffer, so a stuck connection holds what it was sent, not the buffers around it.
 */
function unpinned(chunk: Buffer): Buffer {
  if (chunk.buffer.byteLength <= 2 * chunk.length) return chunk;
  // Its own memory: Buffer.from would take a small copy from Node's pool, pinning that instead.
  const copy = Buffer.allocUnsafeSlow(chunk.length);
  chunk.copy(copy);
  return copy;
}

/** Queues one frame's chunks; returns the backpressure signal (false: at or over the high watermark). */
export function enqueue(c: ConnectionCore, chunks: Buffer[]): boolean {
  for (let i = 0; i < chunks.length; i++) queueChunk(c, chunks[i] as Buffer);
  return queued(c);
}

export function queueChunk(c: ConnectionCore, chunk: Buffer): void {
  // After the frames already in c's open region of the slab.
  if (slab.owner === c) sealOpen();
  pushChunk(c, chunk);
  c.outBytes += chunk.length;
}

/**
 * Makes `t`'s reservation (made for `c`) part of c's queue, then queues `rest` (chunks that follow
 * it in the same frame: a payload too large to copy). The caller has written the whole
 * reservation. Returns the backpressure signal, as {@link queued}.
 */
export function commitFrame(c: ConnectionCore, t: FrameTarget, rest: readonly Buffer[] | undefined): boolean {
  // The reservation is the open region's end: nothing else ran since reserve().
  slab.end = t.at + t.n;
  c.outBytes += t.n;
  if (rest !== undefined) for (let i = 0; i < rest.length; i++) queueChunk(c, rest[i] as Buffer);
  const ok = queued(c);
  if (slab.buf.length - slab.end < SLAB_FRAME_MAX) {
    // Too little room for the next small frame: write c's region now (as an early flush would)
    // and start a new slab. Left for the tick's flush, c's frames would straddle two slabs and
    // leave in two writes (a writev) instead of one.
    if (slab.owner === c) flush(c);
    renewSlab();
  }
  return ok;
}

/** After a frame's chunks are queued: schedule (or do) the flush, report backpressure. */
export function queued(c: ConnectionCore): boolean {
  c.framesWritten++;
  if (c.outBytes >= c.settings.earlyFlushBytes) {
    // A full window of small messages: send what we have now rather than at the end of the
    // tick, so the peer starts on it while we produce the rest (see EARLY_FLUSH_BYTES).
    flush(c);
  } else if (!c.flushScheduled) {
    c.flushScheduled = true;
    if (flushCount === 0) resolved.then(flushAll);
    flushQueue[flushCount++] = c;
  }
  const buffered = c.bufferedAmount;
  if (buffered >= c.settings.highWaterMark) {
    c.needDrain = true;
    if (buffered > c.settings.maxQueuedBytes) {
      reset(
        c,
        CloseReason.SLOW_CONSUMER,
        'local',
        new SlowConsumerError(
          `connection ${c.id}: ${buffered} bytes queued, over maxQueuedBytes ${c.settings.maxQueuedBytes}; the peer does not read`,
          buffered,
        ),
      );
    } else if (c.settings.budget !== undefined) budgetChanged(c);
    return false;
  }
  return true;
}

/**
 * Writes what is queued. One flush per microtask (nats.js core/src/protocol.ts). Small chunks —
 * frame headers, small messages — are copied into one buffer: a memcpy of a few hundred bytes is
 * far cheaper than a socket.write() call each. A chunk of COPY_MAX bytes or more (a run of frames
 * in the slab, a large payload) is written as it is — unless the socket already has bytes waiting
 * and the chunk is a view of a buffer more than twice its size (see `unpinned`). Everything goes
 * out in one writev between cork() and uncork().
 */
export function flush(c: ConnectionCore): void {
  c.flushScheduled = false;
  if (slab.owner === c) sealOpen();
  const one = c.out1;
  const q = c.outq;
  if (one === undefined && q === undefined) return;
  dropQueue(c);
  const s = c.socket;
  if (s.destroyed || s.writableEnded) return;
  c.lastWriteAt = wholeMs();
  if (c.idleFired !== 0) activity(c, IDLE_WRITER | IDLE_ALL);
  const backlog = s.writableLength > 0;
  if (q === undefined) {
    s.write(backlog ? unpinned(one as Buffer) : (one as Buffer), c.needDrain ? drainCallback(c) : undefined);
    return;
  }
  const n = q.length;
  const out: Buffer[] = [];
  let runStart = 0;
  let runBytes = 0;
  for (let i = 0; i < n; i++) {
    const chunk = q[i] as Buffer;
    if (chunk.length < COPY_MAX) {
      runBytes += chunk.length;
      continue;
    }
    if (runBytes > 0) out.push(coalesce(q, runStart, i, runBytes, backlog));
    // Several chunks: they may be views of several slabs (other connections' frames sealed this
    // one's region between its frames), and a write the kernel takes only in part keeps every one
    // of them alive (red team N3). Views of a buffer more than twice their size are copied, so the
    // write that finds the socket empty pins at most one slab: the one chunk of the path above.
    out.push(unpinned(chunk));
    runStart = i + 1;
    runBytes = 0;
  }
  if (runBytes > 0) out.push(coalesce(q, runStart, n, runBytes, backlog));
  const last = out.length - 1;
  if (last > 0) s.cork();
  for (let i = 0; i < last; i++) s.write(out[i] as Buffer);
  // A completion callback costs a nextTick per write: only when someone waits for 'drain'
  // (otherwise the socket's own 'drain' covers a queue that grows past its watermark later).
  s.write(out[last] as Buffer, c.needDrain ? drainCallback(c) : undefined);
  if (last > 0) s.uncork();
}

/** The write callback that checks for 'drain'; made the first time someone waits for it. */
function drainCallback(c: ConnectionCore): () => void {
  const life = lifecycle(c);
  life.onBatchWritten ??= () => maybeDrain(c);
  return life.onBatchWritten;
}

/** The queue fell to the low watermark after a send returned false: 'drain', and wake write() callers. */
export function maybeDrain(c: ConnectionCore): void {
  // A destroyed socket empties its queue by discarding it: that is no drain.
  if (c.socket.destroyed) return;
  if (c.needDrain && c.bufferedAmount <= c.settings.lowWaterMark) {
    c.needDrain = false;
    if ((c.flags & BUDGETED) !== 0) budgetChanged(c);
    c.handler?.handleDrain?.();
    c.emit('drain');
    const life = c.life;
    const writers = life?.writers;
    if (life !== undefined && writers !== undefined) {
      life.writers = undefined;
      for (const w of writers) w.resolve();
    }
  }
}

/** Flushes what is queued, then FIN (Node sends it once its write queue is empty). */
export function endWrites(c: ConnectionCore): void {
  flush(c);
  if (!c.socket.writableEnded) c.socket.end();
}
