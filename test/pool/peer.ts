/**
 * The sources' legacy peer for pool tests: a raw net.Server speaking ascii:20 (20-digit zero-padded
 * length + body) with JSON bodies, echoing each request. Some requests make it misbehave on
 * purpose, and the test controls it from outside: close idle connections behind the pool's back,
 * reset everything, go down and come back on the same port.
 *
 * Requests (JSON): anything → `{ echo: <request>, port, conn }`; plus
 *   { op: 'slow', ms }  reply after ms          { op: 'hang' }     never reply
 *   { op: 'twice' }     reply twice             { op: 'partial' }  reply with half a frame
 *   { op: 'bye' }       reply, then FIN
 */

import { once } from 'node:events';
import net from 'node:net';
import { parseFraming } from '../../src/codec/index.js';

export const framing = parseFraming('ascii:20');

export function frame(body: string | object): Buffer {
  const b = Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
  return Buffer.concat([Buffer.from(String(b.length).padStart(20, '0')), b]);
}

export interface LegacyPeer {
  readonly port: number;
  server: net.Server;
  /** Live server-side sockets. */
  readonly sockets: Set<net.Socket>;
  /** Connections accepted since start. */
  accepted: number;
  /** Requests answered. */
  requests: number;
  /** FIN every connection that is not in the middle of a request. */
  closeIdle(): void;
  /** RST every connection. */
  resetAll(): void;
  /** Stop listening and reset every connection: the endpoint is down. */
  stop(): Promise<void>;
  /** Listen again on the same port. */
  start(): Promise<void>;
  close(): Promise<void>;
}

export async function legacyPeer(port = 0): Promise<LegacyPeer> {
  const sockets = new Set<net.Socket>();
  const busy = new WeakSet<net.Socket>();
  let connNo = 0;
  const peer: LegacyPeer = {
    port: 0,
    server: undefined as unknown as net.Server,
    sockets,
    accepted: 0,
    requests: 0,
    closeIdle() {
      for (const s of sockets) if (!busy.has(s)) s.end();
    },
    resetAll() {
      for (const s of sockets) s.resetAndDestroy();
    },
    async stop() {
      const closed = once(peer.server, 'close');
      peer.server.close();
      peer.resetAll();
      await closed;
    },
    async start() {
      peer.server = makeServer();
      peer.server.listen(peer.port, '127.0.0.1');
      await once(peer.server, 'listening');
    },
    async close() {
      for (const s of sockets) s.destroy();
      if (peer.server.listening) {
        const closed = once(peer.server, 'close');
        peer.server.close();
        await closed;
      }
    },
  };

  function makeServer(): net.Server {
    return net.createServer((socket) => {
      peer.accepted++;
      const conn = ++connNo;
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      socket.on('error', () => {});
      socket.setNoDelay(true);
      const decoder = framing.createDecoder();
      const reply = (body: object) => {
        if (!socket.destroyed && socket.writable) socket.write(frame(body));
      };
      socket.on('data', (chunk: Buffer) => {
        let frames: Buffer[];
        try {
          frames = decoder.push(chunk);
        } catch {
          socket.destroy();
          return;
        }
        for (const f of frames) {
          let req: { op?: string; ms?: number };
          try {
            req = JSON.parse(f.toString());
          } catch {
            req = {};
          }
          peer.requests++;
          const answer = { echo: req, port: peer.port, conn };
          switch (req.op) {
            case 'hang':
              busy.add(socket);
              break;
            case 'slow':
              busy.add(socket);
              setTimeout(() => {
                busy.delete(socket);
                reply(answer);
              }, req.ms ?? 50);
              break;
            case 'twice':
              reply(answer);
              reply(answer);
              break;
            case 'partial': {
              const full = frame(answer);
              socket.write(full.subarray(0, 25));
              break;
            }
            case 'bye':
              reply(answer);
              socket.end();
              break;
            default:
              reply(answer);
          }
        }
      });
    });
  }

  peer.server = makeServer();
  peer.server.listen(port, '127.0.0.1');
  await once(peer.server, 'listening');
  (peer as { port: number }).port = (peer.server.address() as net.AddressInfo).port;
  return peer;
}

/** Parses a reply frame. */
export function body(f: Buffer): { echo: Record<string, unknown>; port: number; conn: number } {
  return JSON.parse(f.toString());
}
