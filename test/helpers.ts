/** Shared test helpers: loopback servers, polling, the kernel's view of a connection. */

import { once } from 'node:events';
import net from 'node:net';
import { findConnection, readTcpTable, type TcpEntry } from '../src/sys/tcp-table.js';
import type { Logger } from '../src/util/log.js';

export interface TestServer {
  server: net.Server;
  port: number;
  /** Sockets accepted so far, in order. */
  sockets: net.Socket[];
  /** Resolves with the next accepted socket. */
  nextSocket(): Promise<net.Socket>;
  close(): Promise<void>;
}

/** A raw TCP server on 127.0.0.1:0 that plays whatever peer a test needs. */
export async function listen(options: net.ServerOpts = {}): Promise<TestServer> {
  const server = net.createServer({ allowHalfOpen: true, ...options });
  const sockets: net.Socket[] = [];
  const waiters: Array<(s: net.Socket) => void> = [];
  let handed = 0;
  server.on('connection', (s) => {
    s.on('error', () => {}); // tests look at errors explicitly where they matter
    sockets.push(s);
    const w = waiters.shift();
    if (w) {
      handed++;
      w(s);
    }
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as net.AddressInfo).port;
  return {
    server,
    port,
    sockets,
    nextSocket: () =>
      new Promise((resolve) => {
        const ready = sockets[handed];
        if (ready) {
          handed++;
          resolve(ready);
        } else {
          waiters.push(resolve);
        }
      }),
    close: async () => {
      for (const s of sockets) s.destroy();
      server.close();
      await once(server, 'close').catch(() => {});
    },
  };
}

/**
 * A waitFor bound is a guard against a hang, never a timing assertion (those use beforeTimer): it
 * is at least this long, so that a loaded machine, where a condition that takes milliseconds can
 * take seconds (at load 40-60 a child's start, or a read of the kernel's TCP table, takes several),
 * never trips it. A failing wait costs this much once; a passing one, nothing.
 */
export const WAIT_FLOOR_MS = 30_000;

/**
 * Polls `check` every 5 ms until it returns a truthy value; throws once `timeoutMs` (at least
 * WAIT_FLOOR_MS, unless `exact`) has passed. `exact` is for the fault tests, where the window is
 * the subject (test/faults).
 */
export async function waitFor<T>(
  check: () => T | Promise<T>,
  timeoutMs = 5000,
  what = 'condition',
  exact = false,
): Promise<NonNullable<T>> {
  const bound = exact ? timeoutMs : Math.max(timeoutMs, WAIT_FLOOR_MS);
  const deadline = Date.now() + bound;
  for (;;) {
    const v = await check();
    if (v) return v as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`timed out after ${bound} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Settles as `p` does, or rejects if a plain timer armed now for `ms` fires first. For "this
 * timer-driven thing (a deadline, a grace period, a close timeout) happens within ms": the event
 * loop runs due timers in deadline order however late it is, so the bound holds on a loaded
 * machine, where comparing two clock readings would not. Not for I/O: a loop starved past `ms`
 * runs the timer before it polls for the I/O.
 */
export async function beforeTimer<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_resolve, reject) => {
        timer = setTimeout(
          () => reject(new Error(`${what}: not within ${ms} ms (a timer armed with it fired first)`)),
          ms,
        );
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Settles as `p` does, or rejects if the event loop turns first (a setImmediate armed now): for
 * "at once", with no I/O and no timer in between, judged by the loop rather than a clock.
 */
export async function withinTurn<T>(p: Promise<T>, what: string): Promise<T> {
  let immediate: NodeJS.Immediate | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_resolve, reject) => {
        immediate = setImmediate(() =>
          reject(new Error(`${what}: not at once (the event loop turned first)`)),
        );
      }),
    ]);
  } finally {
    clearImmediate(immediate);
  }
}

/** The kernel's entry for the socket with these local and remote ports, or undefined. */
export function kernelEntry(localPort: number, remotePort: number): Promise<TcpEntry | undefined> {
  return findConnection(localPort, remotePort);
}

/**
 * Both ends of a loopback connection from one read of the kernel's table: [ours, theirs], either
 * undefined if gone. One snapshot (the two queues are read at the same moment) and half the cost
 * of two reads: on a busy host the table holds thousands of sockets, and a read takes a second.
 */
export async function kernelPair(
  localPort: number,
  remotePort: number,
): Promise<[TcpEntry | undefined, TcpEntry | undefined]> {
  const rows = await readTcpTable({ port: localPort });
  return [
    rows.find((e) => e.localPort === localPort && e.remotePort === remotePort),
    rows.find((e) => e.localPort === remotePort && e.remotePort === localPort),
  ];
}

/** Reads everything from a socket until EOF; resolves with the bytes and how the stream ended. */
export function drain(
  socket: net.Socket,
): Promise<{ bytes: Buffer; error: NodeJS.ErrnoException | undefined }> {
  return new Promise((resolve) => {
    const parts: Buffer[] = [];
    let error: NodeJS.ErrnoException | undefined;
    socket.on('data', (d: Buffer) => parts.push(d));
    socket.on('error', (e: NodeJS.ErrnoException) => {
      error = e;
    });
    socket.on('close', () => resolve({ bytes: Buffer.concat(parts), error }));
    socket.on('end', () => {
      if (!socket.writableEnded) socket.end();
    });
    socket.resume();
  });
}

/** A line a {@link captureLogger} logger received. */
export type LogLine = { level: string; obj: Record<string, unknown>; msg: string | undefined };

/** A logger with pino's shape that keeps its lines, for tests of what components log. */
export function captureLogger(): { logger: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const at = (level: string) => (obj: object, msg?: string) =>
    lines.push({ level, obj: obj as Record<string, unknown>, msg });
  return { logger: { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') }, lines };
}

/** A 'data' listener (utf8) that appends each complete line to `sink` (a child's stdout/stderr). */
export function linesInto(sink: string[]): (d: string) => void {
  let buf = '';
  return (d: string) => {
    buf += d;
    for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
      sink.push(buf.slice(0, i));
      buf = buf.slice(i + 1);
    }
  };
}
