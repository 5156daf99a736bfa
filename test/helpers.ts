/** Shared test helpers: loopback servers, polling, the kernel's view of a connection. */

import { once } from 'node:events';
import net from 'node:net';
import { findConnection, type TcpEntry } from '../src/sys/tcp-table.js';

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

/** Polls `check` every 5 ms until it returns a truthy value or `timeoutMs` passes (then throws). */
export async function waitFor<T>(
  check: () => T | Promise<T>,
  timeoutMs = 5000,
  what = 'condition',
): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v) return v as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** The kernel's entry for the socket with these local and remote ports, or undefined. */
export function kernelEntry(localPort: number, remotePort: number): Promise<TcpEntry | undefined> {
  return findConnection(localPort, remotePort);
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
