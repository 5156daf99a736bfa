/**
 * ws 8: one WebSocket, permessage-deflate off (the server's default), no bufferutil/utf-8-validate
 * (the pure-JS paths ws falls back to without the optional native add-ons).
 * json: a text message `{"i":id,"p":body}`; the server parses and re-serialises it.
 * binary: a binary message `u32 BE id | 100 bytes`; the server sends the same bytes back.
 */

import { WebSocket, WebSocketServer } from 'ws';
import type { Body, JsonBody, Payload, RpcClient } from '../common.js';

interface Envelope {
  i: number;
  p: JsonBody;
}

export function startServer(payload: Payload): Promise<number> {
  return new Promise((resolve, reject) => {
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false }, () => {
      const addr = wss.address();
      if (addr === null || typeof addr === 'string') reject(new Error('ws: no port'));
      else resolve(addr.port);
    });
    wss.on('error', reject);
    wss.on('connection', (ws) => {
      ws.on('message', (data: Buffer, isBinary) => {
        if (isBinary || payload === 'binary') ws.send(data, { binary: true });
        else ws.send(JSON.stringify(JSON.parse(data.toString()) as Envelope));
      });
    });
  });
}

export async function startClient(port: number, payload: Payload): Promise<RpcClient> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}`, { perMessageDeflate: false });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  const pending = new Map<number, (v: unknown) => void>();
  let nextId = 0;
  let closing = false;
  const settle = (id: number, value: unknown): void => {
    const resolve = pending.get(id);
    if (resolve === undefined) throw new Error(`ws: reply to unknown request ${id}`);
    pending.delete(id);
    resolve(value);
  };
  ws.on('message', (data: Buffer, isBinary) => {
    if (isBinary) settle(data.readUInt32BE(0), data.subarray(4));
    else {
      const env = JSON.parse(data.toString()) as Envelope;
      settle(env.i, env.p);
    }
  });
  ws.on('close', () => {
    if (!closing) throw new Error('ws: connection closed by the server');
  });
  return {
    call(body: Body): Promise<unknown> {
      const id = nextId;
      nextId = (nextId + 1) >>> 0;
      if (payload === 'binary') {
        const b = body as Buffer;
        const msg = Buffer.allocUnsafe(4 + b.length);
        msg.writeUInt32BE(id, 0);
        b.copy(msg, 4);
        ws.send(msg, { binary: true });
      } else {
        ws.send(JSON.stringify({ i: id, p: body }));
      }
      return new Promise((resolve) => pending.set(id, resolve));
    },
    close(): Promise<void> {
      closing = true;
      return new Promise((resolve) => {
        ws.once('close', () => resolve());
        ws.close();
      });
    },
  };
}
