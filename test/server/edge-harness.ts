/**
 * What the hostile-client tests share: the edge server fixture as its own process, raw sockets
 * that speak just enough of the protocol to misbehave, and the server's memory as the kernel
 * sees it (VmRSS), so "memory stays bounded" is measured, not assumed.
 */

import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { type HelloParams, type Message, MessageKind, PROTOCOL_VERSION } from '../../src/protocol/types.js';
import { encodeMessage } from '../../src/protocol/wire.js';
import { Fixture } from '../faults/harness.js';

const EDGE_SERVER = fileURLToPath(new URL('../../../test/fixtures/edge/server.mjs', import.meta.url));

/** Starts test/fixtures/edge/server.mjs with `options`; resolves once it listens. */
export async function startEdgeServer(
  options: object,
): Promise<{ fixture: Fixture; port: number; pid: number }> {
  const fixture = new Fixture('edge-server', process.execPath, [EDGE_SERVER, JSON.stringify(options)]);
  const ev = await fixture.next((e) => e.ev === 'listening', 15_000, 'listening');
  return { fixture, port: ev.port as number, pid: ev.pid as number };
}

/** The process's resident memory in bytes (VmRSS from /proc). */
export function rssOf(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (m === null) throw new Error(`no VmRSS for ${pid}`);
  return Number(m[1]) * 1024;
}

/** One longlink frame (u32be length + message), as a client would write it. */
export function frame(msg: Message): Buffer {
  const body = Buffer.concat(encodeMessage(msg));
  const head = Buffer.allocUnsafe(4);
  head.writeUInt32BE(body.length, 0);
  return Buffer.concat([head, body]);
}

/**
 * A HELLO as a hostile client writes it: the params as given, not checked the way this side's
 * encoder would check them (a name of a MiB, a credential of any size).
 */
export function helloFrame(params: HelloParams | Record<string, unknown> = {}): Buffer {
  const json = Buffer.from(JSON.stringify(params));
  const body = Buffer.alloc(4 + json.length);
  body[0] = MessageKind.HELLO;
  body.writeUInt16BE(PROTOCOL_VERSION, 2);
  json.copy(body, 4);
  const head = Buffer.allocUnsafe(4);
  head.writeUInt32BE(body.length, 0);
  return Buffer.concat([head, body]);
}

export function requestFrame(id: number, method: string, payload: unknown): Buffer {
  return frame({
    kind: MessageKind.REQUEST,
    id,
    method,
    payload: payload === undefined ? Buffer.alloc(0) : Buffer.from(JSON.stringify(payload)),
  });
}

/** A raw socket to the server, errors kept rather than thrown; resolves once connected. */
export async function rawConnect(port: number, localAddress = '127.0.0.1'): Promise<RawPeer> {
  const s = net.connect({ port, host: '127.0.0.1', localAddress, allowHalfOpen: true });
  const peer = new RawPeer(s);
  await once(s, 'connect');
  return peer;
}

/** A raw client socket that records what it reads and how it ended. */
export class RawPeer {
  readonly chunks: Buffer[] = [];
  error: NodeJS.ErrnoException | undefined;
  ended = false;
  readonly closed: Promise<void>;

  constructor(readonly socket: net.Socket) {
    socket.on('data', (d: Buffer) => this.chunks.push(d));
    socket.on('error', (e: NodeJS.ErrnoException) => {
      this.error = e;
    });
    socket.on('end', () => {
      // Answer the server's FIN as an ordinary client does; what it still had to write is moot.
      this.ended = true;
      socket.destroy();
    });
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
  }

  get received(): Buffer {
    return Buffer.concat(this.chunks);
  }

  /** The kinds and codes of the messages received (u32be framing), e.g. ['HELLO', 'ERROR:ERR_FRAME_TOO_LARGE']. */
  messages(): string[] {
    const all = this.received;
    const out: string[] = [];
    let p = 0;
    while (p + 4 <= all.length) {
      const n = all.readUInt32BE(p);
      if (p + 4 + n > all.length) break;
      const body = all.subarray(p + 4, p + 4 + n);
      const kind = body[0];
      const name = Object.entries(MessageKind).find(([, k]) => k === kind)?.[0] ?? `KIND_${kind}`;
      if (kind === MessageKind.ERROR) {
        const codeLen = body[6] as number;
        out.push(`ERROR:${body.subarray(7, 7 + codeLen).toString()}`);
      } else if (kind === MessageKind.GOAWAY) {
        const codeLen = body[10] as number;
        out.push(`GOAWAY:${body.subarray(11, 11 + codeLen).toString()}`);
      } else out.push(name);
      p += 4 + n;
    }
    return out;
  }

  /** The RESPONSE messages received: request id and payload (JSON-decoded when it parses). */
  responses(): Array<{ id: number; payload: unknown }> {
    const all = this.received;
    const out: Array<{ id: number; payload: unknown }> = [];
    for (let p = 0; p + 4 <= all.length; ) {
      const n = all.readUInt32BE(p);
      if (p + 4 + n > all.length) break;
      const body = all.subarray(p + 4, p + 4 + n);
      if (body[0] === MessageKind.RESPONSE) {
        const text = body.subarray(6).toString();
        let payload: unknown = text;
        try {
          payload = JSON.parse(text);
        } catch {}
        out.push({ id: body.readUInt32BE(2), payload });
      }
      p += 4 + n;
    }
    return out;
  }

  write(b: Buffer | string): boolean {
    if (this.socket.destroyed) return false;
    return this.socket.write(b);
  }

  destroy(): void {
    this.socket.destroy();
  }
}

/** Counts the fixture's disconnect events with `reason`. */
export function disconnects(f: Fixture, reason: string): number {
  return f.events.filter((e) => e.ev === 'disconnect' && e.reason === reason).length;
}
