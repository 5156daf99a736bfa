/**
 * socket.io 4: the websocket transport only (no long-polling start and upgrade), one socket,
 * `emit('echo', body, ack)`, the server answers through the acknowledgement callback.
 * A Buffer travels as a binary attachment: socket.io sends a placeholder packet and then the
 * bytes, two WebSocket frames per message each way.
 */

import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Server } from 'socket.io';
import { io } from 'socket.io-client';
import type { Body, Payload, RpcClient } from '../common.js';

export function startServer(_payload: Payload): Promise<number> {
  const http = createServer();
  const server = new Server(http, { transports: ['websocket'], serveClient: false });
  server.on('connection', (socket) => {
    socket.on('echo', (body: unknown, ack: (v: unknown) => void) => ack(body));
  });
  return new Promise((resolve, reject) => {
    http.once('error', reject);
    http.listen(0, '127.0.0.1', () => resolve((http.address() as AddressInfo).port));
  });
}

export async function startClient(port: number, payload: Payload): Promise<RpcClient> {
  const socket = io(`http://127.0.0.1:${port}`, {
    transports: ['websocket'],
    reconnection: false,
    forceNew: true,
  });
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', () => resolve());
    socket.once('connect_error', reject);
  });
  let closing = false;
  socket.on('disconnect', (reason) => {
    if (!closing) throw new Error(`socket.io: disconnected (${reason})`);
  });
  return {
    call(body: Body): Promise<unknown> {
      return new Promise((resolve) => {
        socket.emit('echo', body, (v: unknown) =>
          resolve(payload === 'binary' && !Buffer.isBuffer(v) ? Buffer.from(v as ArrayBuffer) : v),
        );
      });
    },
    close(): Promise<void> {
      closing = true;
      socket.close();
      return Promise.resolve();
    },
  };
}
