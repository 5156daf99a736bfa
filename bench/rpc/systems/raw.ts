/**
 * The baseline ("the limit"): hand-written framing over node:net, no library.
 *
 *   frame = u32 BE length (of what follows) | u32 BE request id | body
 *
 * It is meant to be what a careful engineer writes by hand, not a strawman:
 * - reads parse frames in place as `subarray`s of the socket chunk; bytes are copied only for
 *   the one frame that straddles two chunks (no `Buffer.concat` per chunk);
 * - writes are encoded straight into a shared output buffer (JSON via `buf.write(str)`, no
 *   intermediate Buffer) and flushed with ONE `socket.write` per tick: the server flushes once per
 *   'data' event (the replies to every frame of the chunk), the client once per `process.nextTick`,
 *   which runs after the whole microtask queue, so every call issued from promise continuations of
 *   the same read batch shares the write;
 * - Nagle is off on both ends, like every other system here.
 * In json mode the server does what every other server does: JSON.parse the body and
 * JSON.stringify the reply.
 */

import net from 'node:net';
import type { Body, JsonBody, Payload, RpcClient } from '../common.js';

const HEADER = 8;
const MAX_FRAME = 16 * 1024 * 1024;
const OUT_CHUNK = 64 * 1024;

type OnFrame = (buf: Buffer, idAt: number, end: number) => void;

/** Splits a byte stream into frames. `onFrame` gets the buffer, where the id starts and where the frame ends. */
export class FrameReader {
  /** The frame being assembled across chunks: 4 bytes until its length is known, then its full size. */
  private stash: Buffer | null = null;
  private have = 0;

  constructor(private readonly onFrame: OnFrame) {}

  push(chunk: Buffer): void {
    const len = chunk.length;
    let off = 0;
    if (this.stash !== null) {
      off = this.finishStash(chunk);
      if (off < 0) return;
    }
    while (len - off >= 4) {
      const size = chunk.readUInt32BE(off);
      if (size < 4 || size > MAX_FRAME) throw new Error(`raw: bad frame length ${size}`);
      const end = off + 4 + size;
      if (end > len) break;
      this.onFrame(chunk, off + 4, end);
      off = end;
    }
    if (off < len) {
      const rest = len - off;
      const size = rest >= 4 ? chunk.readUInt32BE(off) : 0;
      if (rest >= 4 && (size < 4 || size > MAX_FRAME)) throw new Error(`raw: bad frame length ${size}`);
      this.stash = Buffer.allocUnsafe(4 + size);
      chunk.copy(this.stash, 0, off, len);
      this.have = rest;
    }
  }

  /** Completes the stashed frame from the head of `chunk`; returns bytes consumed, or -1 if `chunk` ran out. */
  private finishStash(chunk: Buffer): number {
    let stash = this.stash!;
    let off = 0;
    if (this.have < 4) {
      const take = Math.min(4 - this.have, chunk.length);
      chunk.copy(stash, this.have, 0, take);
      this.have += take;
      off = take;
      if (this.have < 4) return -1;
      const size = stash.readUInt32BE(0);
      if (size < 4 || size > MAX_FRAME) throw new Error(`raw: bad frame length ${size}`);
      const grown = Buffer.allocUnsafe(4 + size);
      stash.copy(grown, 0, 0, 4);
      this.stash = stash = grown;
    }
    const take = Math.min(stash.length - this.have, chunk.length - off);
    chunk.copy(stash, this.have, off, off + take);
    this.have += take;
    off += take;
    if (this.have < stash.length) return -1;
    this.stash = null;
    this.have = 0;
    this.onFrame(stash, 4, stash.length);
    return off;
  }
}

/**
 * Encodes frames into a shared buffer and hands the socket one slice per flush. A flushed slice is
 * never written again (the next frames go after it, or into a fresh buffer), so no copy is needed.
 */
export class FrameWriter {
  private buf = Buffer.allocUnsafeSlow(OUT_CHUNK);
  private start = 0;
  private end = 0;

  constructor(private readonly socket: net.Socket) {}

  private reserve(n: number): void {
    if (this.buf.length - this.end >= n) return;
    this.flush();
    this.buf = Buffer.allocUnsafeSlow(Math.max(OUT_CHUNK, n));
    this.start = 0;
    this.end = 0;
  }

  /** Appends a frame whose body is the UTF-8 of `str`. */
  string(id: number, str: string): void {
    this.reserve(HEADER + str.length * 3);
    const at = this.end;
    const n = this.buf.write(str, at + HEADER, 'utf8');
    this.buf.writeUInt32BE(4 + n, at);
    this.buf.writeUInt32BE(id, at + 4);
    this.end = at + HEADER + n;
  }

  /** Appends a frame whose body is `src[from, to)`. */
  bytes(id: number, src: Buffer, from: number, to: number): void {
    const n = to - from;
    this.reserve(HEADER + n);
    const at = this.end;
    this.buf.writeUInt32BE(4 + n, at);
    this.buf.writeUInt32BE(id, at + 4);
    src.copy(this.buf, at + HEADER, from, to);
    this.end = at + HEADER + n;
  }

  flush(): void {
    if (this.end === this.start) return;
    this.socket.write(this.buf.subarray(this.start, this.end));
    this.start = this.end;
  }
}

/** The application: what every server in this benchmark runs per request. */
const echo = <T>(params: T): T => params;

export function startServer(payload: Payload): Promise<number> {
  const server = net.createServer({ noDelay: true }, (socket) => {
    const out = new FrameWriter(socket);
    const reader = new FrameReader(
      payload === 'json'
        ? (buf, idAt, end) => {
            const params = JSON.parse(buf.toString('utf8', idAt + 4, end)) as JsonBody;
            out.string(buf.readUInt32BE(idAt), JSON.stringify(echo(params)));
          }
        : (buf, idAt, end) => {
            const result = echo(buf.subarray(idAt + 4, end));
            out.bytes(buf.readUInt32BE(idAt), result, 0, result.length);
          },
    );
    socket.on('data', (chunk: Buffer) => {
      reader.push(chunk);
      out.flush();
    });
    socket.on('error', () => socket.destroy());
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve((server.address() as net.AddressInfo).port));
  });
}

export async function startClient(port: number, payload: Payload): Promise<RpcClient> {
  const socket = net.connect({ port, host: '127.0.0.1', noDelay: true });
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  const out = new FrameWriter(socket);
  const pending = new Map<number, (v: unknown) => void>();
  let nextId = 0;
  let flushQueued = false;
  let closing = false;
  const flush = (): void => {
    flushQueued = false;
    out.flush();
  };
  const settle = (id: number, value: unknown): void => {
    const resolve = pending.get(id);
    if (resolve === undefined) throw new Error(`raw: reply to unknown request ${id}`);
    pending.delete(id);
    resolve(value);
  };
  const reader = new FrameReader(
    payload === 'json'
      ? (buf, idAt, end) => settle(buf.readUInt32BE(idAt), JSON.parse(buf.toString('utf8', idAt + 4, end)))
      : (buf, idAt, end) => settle(buf.readUInt32BE(idAt), buf.subarray(idAt + 4, end)),
  );
  socket.on('data', (chunk: Buffer) => reader.push(chunk));
  socket.on('close', () => {
    if (!closing) throw new Error('raw: connection closed by the server');
  });
  return {
    call(body: Body): Promise<unknown> {
      const id = nextId;
      nextId = (nextId + 1) >>> 0;
      if (Buffer.isBuffer(body)) out.bytes(id, body, 0, body.length);
      else out.string(id, JSON.stringify(body));
      if (!flushQueued) {
        flushQueued = true;
        process.nextTick(flush);
      }
      return new Promise((resolve) => pending.set(id, resolve));
    },
    close(): Promise<void> {
      closing = true;
      return new Promise((resolve) => socket.end(resolve));
    },
  };
}
