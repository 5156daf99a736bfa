/**
 * One fuzz case on one real socket: connect from 127.0.0.2, write the stream in the case's
 * pieces (a turn of the event loop where a piece asks for it, never a sleep), end as the case
 * says, read everything until the server closes, and collect the server's own account of the
 * connection (its disconnect event with the trace).
 *
 * Nothing here waits on time to decide an outcome: every wait ends on an event (bytes read, the
 * server's FIN, the socket's close, the fixture's disconnect line). The time limits are safety
 * nets that turn "never happened" into a reported violation instead of a hung run.
 */

import net from 'node:net';
import type { FuzzCase } from './cases.js';
import { split } from './stream.js';
import { type Disconnect, FUZZ_ADDRESS, type Target } from './target.js';

/** How long anything may take before it counts as "never": far above every server timeout used. */
export const NEVER_MS = 15_000;

export interface Observation {
  /** The client's local port (the server's view of its peer). */
  localPort: number;
  /** Everything read from the server. */
  received: Buffer;
  /** The server's FIN was read: `received` holds everything it sent before it. */
  sawEnd: boolean;
  /** The socket's error code, if any (ECONNRESET, EPIPE …). */
  error: string | undefined;
  /** drain-fin: the answers did not all come before the server closed or NEVER_MS passed. */
  drainIncomplete: boolean;
  /** The connection was still open NEVER_MS after the client's last action. */
  neverClosed: boolean;
  /** The server's disconnect event, or undefined when none came within NEVER_MS. */
  server: Disconnect | undefined;
  bytesWritten: number;
}

/** Resolves with `p`, or with `fallback` after `ms` (the timer cleared either way). */
export function within<T, F>(p: Promise<T>, ms: number, fallback: F): Promise<T | F> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<F>((resolve) => {
    timer = setTimeout(() => resolve(fallback), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Whether `received` holds one whole u32be frame (the server's answer to HELLO). */
function hasFrame(received: Buffer[]): boolean {
  const all = received.length === 1 ? (received[0] as Buffer) : Buffer.concat(received);
  return all.length >= 4 && all.length >= 4 + all.readUInt32BE(0);
}

/**
 * Runs one case. `complete(received)` says whether every answer the case waits for has come
 * (drain-fin); it is checked on each read.
 */
export async function drive(
  target: Target,
  c: FuzzCase,
  complete: (received: Buffer) => boolean,
): Promise<Observation> {
  const socket = net.connect({
    port: target.port,
    host: '127.0.0.1',
    localAddress: FUZZ_ADDRESS,
    allowHalfOpen: true,
    noDelay: true,
  });
  const chunks: Buffer[] = [];
  let sawEnd = false;
  let error: string | undefined;
  let closed = false;
  let wake: (() => void) | undefined;
  const poke = () => wake?.();
  /** Resolves once `pred()` holds, re-checked on every socket event; false after NEVER_MS. */
  const until = async (pred: () => boolean): Promise<boolean> => {
    const ok = await within(
      new Promise<boolean>((resolve) => {
        wake = () => {
          if (pred()) resolve(true);
        };
        wake();
      }),
      NEVER_MS,
      false,
    );
    wake = undefined;
    return ok;
  };
  socket.on('connect', poke);
  socket.on('data', (d: Buffer) => {
    chunks.push(d);
    poke();
  });
  socket.on('end', () => {
    sawEnd = true;
    // The server closed: answer its FIN as an ordinary client would (a stalled client too).
    if (!socket.writableEnded) socket.end();
    poke();
  });
  socket.on('error', (e: NodeJS.ErrnoException) => {
    error = e.code ?? e.message;
    poke();
  });
  socket.on('close', () => {
    closed = true;
    poke();
  });
  const connected = await until(() => socket.localPort !== undefined && !socket.connecting);
  const localPort = socket.localPort;
  if (!connected || localPort === undefined || closed) {
    socket.destroy();
    throw new Error(`could not connect to the server: ${error ?? 'no connect within the limit'}`);
  }
  const watch = target.watch(localPort);

  // Write the pieces; after `helloBytes`, wait for the server's HELLO (or its close) first.
  let written = 0;
  if (c.pauseReads && c.helloBytes === 0) socket.pause();
  const pieces = split(c.stream, c.cuts);
  for (const piece of pieces) {
    let bytes = piece.bytes;
    while (bytes.length > 0) {
      if (socket.destroyed || closed) break;
      let take = bytes.length;
      const helloEnd = c.helloBytes > written && c.helloBytes < written + take;
      if (helloEnd) take = c.helloBytes - written;
      socket.write(bytes.subarray(0, take));
      written += take;
      bytes = bytes.subarray(take);
      if (c.helloBytes > 0 && written === c.helloBytes) {
        await until(() => hasFrame(chunks) || sawEnd || closed);
        if (c.pauseReads) socket.pause();
      }
    }
    if (piece.pause) await turn();
  }
  // Read again: whatever backed up on the server's side now flows.
  if (c.pauseReads) socket.resume();

  let drainIncomplete = false;
  if (!closed && !socket.destroyed) {
    switch (c.end) {
      case 'fin':
        socket.end();
        break;
      case 'drain-fin': {
        let cache = 0;
        let all = Buffer.alloc(0);
        const done = () => {
          if (chunks.length !== cache) {
            all = Buffer.concat(chunks);
            cache = chunks.length;
          }
          return complete(all);
        };
        const ok = await until(() => done() || sawEnd || closed);
        drainIncomplete = !ok || !done();
        if (!socket.writableEnded && !socket.destroyed) socket.end();
        break;
      }
      case 'reset':
        // Only once the server has accepted it: a connection reset in the accept queue has no
        // peer address left to report (so it could not be told from any other).
        await within(watch.opened, NEVER_MS, undefined);
        // Not after end() (we answer the server's FIN with ours): Node 20's resetAndDestroy()
        // then never emits 'close' and leaks the descriptor (see resetSocket in connection.ts).
        if (socket.writableEnded) socket.destroy();
        else socket.resetAndDestroy();
        break;
      case 'stall':
        break;
    }
  }
  const neverClosed = !(await until(() => closed));
  if (neverClosed) socket.destroy();
  const server = await within(watch.closed, NEVER_MS, undefined);
  if (server === undefined) target.forget(localPort);
  return {
    localPort,
    received: Buffer.concat(chunks),
    sawEnd,
    error,
    drainIncomplete,
    neverClosed,
    server,
    bytesWritten: written,
  };
}
