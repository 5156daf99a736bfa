/**
 * A fuzz case: the bytes one client writes on one connection, how they are cut into writes, how
 * the client ends, and what the server must do with them.
 */

import fc from 'fast-check';
import { type Cut, hexOf } from './stream.js';

/**
 * How the client ends after its last write:
 * - `fin`: half-close at once (FIN), then read until the server closes;
 * - `drain-fin`: wait until every request is answered (or the server closes), then FIN;
 * - `reset`: RST at once (resetAndDestroy);
 * - `stall`: never end; the server must close (frame, HELLO or idle timeout).
 */
export type EndMode = 'fin' | 'drain-fin' | 'reset' | 'stall';

/** What the server must do with a case, beyond the invariants that hold for every case. */
export interface Expect {
  /** The close reasons allowed (undefined: any reason of CloseReason). */
  reasons?: readonly string[];
  /** The close code (the close error's `code`) required. */
  code?: string;
  /** The connection ERROR (id 0) code the client must read last, when it reads the server's FIN. */
  wire?: string;
  /** A GOAWAY with this reason must be queued by the server. */
  goaway?: string;
  /**
   * Read by the client: `all`: every request (every frame, legacy) answered exactly once;
   * `sync`: every request to a method that answers at once (legacy: none required).
   */
  answers?: 'all' | 'sync';
}

export interface FuzzCase {
  /** What kind of stream: `valid/drain-fin`, `mutated:huge`, `random:after-hello` … */
  label: string;
  stream: Buffer;
  cuts: Cut[];
  end: EndMode;
  expect: Expect;
  /**
   * Protocol: write this many bytes (the HELLO), then wait for the server's HELLO before the rest,
   * as PROTOCOL.md §4.1 asks of a client; 0: write everything at once (pipelined).
   */
  helloBytes: number;
  /**
   * The client does not read while it writes (after the HELLO exchange), then reads again: the
   * server's answers back up (backpressure, a queue past maxQueuedBytes).
   */
  pauseReads: boolean;
  /** Protocol: the requests of the valid session the stream was made from, in order. */
  requests: ReadonlyArray<{ id: number; method: string }>;
  /** Legacy: how many frames of the valid session the client waits to see echoed (drain-fin). */
  echoes: number;
}

/** Gives a case a compact printed form (fast-check prints counterexamples with it). */
export function printable(c: FuzzCase): FuzzCase {
  Object.defineProperty(c, fc.toStringMethod, {
    enumerable: false,
    value: () => describeCase(c),
  });
  return c;
}

export function describeCase(c: FuzzCase, maxBytes = 512): string {
  return (
    `{ label: ${c.label}, end: ${c.end}, helloBytes: ${c.helloBytes}, pauseReads: ${c.pauseReads}, expect: ${JSON.stringify(c.expect)}, ` +
    `cuts: ${JSON.stringify(c.cuts.map((x) => (x.pause ? `${x.size}+` : x.size)))}, ` +
    `stream (${c.stream.length} bytes): ${hexOf(c.stream, maxBytes)} }`
  );
}
