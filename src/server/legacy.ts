/**
 * Legacy mode: a plain framing (the sources' 20-digit ASCII header + JSON, a length field, lines)
 * served by one frame handler, with no longlink protocol on the wire. Such protocols carry no
 * request ids, so answers can only be matched to questions by order: frames of one connection are
 * handled one at a time, in order.
 *
 * What a peer can make this hold: the frames of one read waiting behind a slow handler (reading is
 * paused as soon as one waits, so at most one read's worth — 64 KiB — queues up), the answers in
 * the send queue (reading pauses above its high watermark; past maxQueuedBytes the connection is
 * reset), and one frame in progress (maxFrameLength, frameTimeoutMs).
 *
 * Every answer leaves through `reply`: a handler that throws or rejects, a result that cannot be
 * encoded, an answer over the frame limit — each closes the connection with reason
 * `handler-error` (there is no way to say "error" to an id-less peer in a protocol we do not know)
 * and is reported to the application. Nothing a peer sends can become an unhandled rejection.
 */

import { type CloseInfo, CloseReason } from '../connection/close-reason.js';
import { type Connection, ConnectionState, ReadHold } from '../connection/connection.js';
import { AbortedError, LonglinkError } from '../errors.js';
import { ErrorCode } from '../protocol/errors.js';
import { type PeerOrigin, type TlsInfo, tlsInfoOf } from './server-peer.js';

/** What a legacy handler gets besides the frame. */
export interface LegacyContext {
  readonly connection: Connection;
  /** The client's address: the PROXY header's source when it came through a trusted proxy. */
  readonly remoteAddress: string | undefined;
  readonly remotePort: number | undefined;
  /** The TLS session, or null on a plaintext connection. */
  readonly tls: TlsInfo | null;
  /** Sends an extra frame to this peer (a push, or a heartbeat answer). False on backpressure. */
  send(frame: Buffer | string): boolean;
  /**
   * Aborted when the connection closes: no answer can go out any more. Pass it on to what the
   * handler waits for; until the handler settles, the closed connection keeps its admission slot.
   */
  readonly signal: AbortSignal;
}

/** Called for each frame; see LegacyOptions.handler. */
export type LegacyHandler = (frame: unknown, ctx: LegacyContext) => unknown;

/** Where a legacy session reports to its server. */
export interface LegacyEvents {
  legacyFailed(session: LegacySession, error: LonglinkError): void;
  legacyClosed(session: LegacySession, info: CloseInfo): void;
  /** A closed session's handler settled: its admission slot is free now. */
  legacyReleased(session: LegacySession): void;
}

/** The settings every legacy session of a server shares. */
export interface LegacyConfig {
  readonly handler: LegacyHandler;
  readonly json: boolean;
  readonly events: LegacyEvents;
}

function isThenable(v: unknown): v is PromiseLike<unknown> {
  return v !== null && typeof v === 'object' && typeof (v as PromiseLike<unknown>).then === 'function';
}

// No `implements ConnectionHandler`: its hooks are internal (stripped from the published .d.ts);
// `connection.setHandler(this)` checks them all the same.
export class LegacySession implements LegacyContext {
  /** Frames that arrived while the handler was busy, in order (copies: a view would pin its read). */
  private waiting: Buffer[] | undefined;
  private busy = false;
  private closed = false;
  /** Made when a handler first asks for the signal. */
  private controller: AbortController | undefined;

  constructor(
    readonly connection: Connection,
    private readonly config: LegacyConfig,
    readonly origin: PeerOrigin | undefined,
  ) {
    connection.setHandler(this);
  }

  get remoteAddress(): string | undefined {
    return this.origin !== undefined ? this.origin.address : this.connection.remoteAddress;
  }

  get remotePort(): number | undefined {
    return this.origin !== undefined ? this.origin.port : this.connection.remotePort;
  }

  get tls(): TlsInfo | null {
    return tlsInfoOf(this.connection.socket);
  }

  get signal(): AbortSignal {
    this.controller ??= new AbortController();
    return this.controller.signal;
  }

  /** Closed while its handler still runs: the server keeps the admission slot until it settles. */
  get lingering(): boolean {
    return this.closed && this.busy;
  }

  send(frame: Buffer | string): boolean {
    return this.connection.send(typeof frame === 'string' ? Buffer.from(frame) : frame);
  }

  /** @internal ConnectionHandler */
  handleFrame(frame: Buffer): void {
    // Closing (a handler failed, or the server is shutting down): frames still read are not handled.
    if (!this.connection.writable) return;
    if (this.busy) {
      // Answers go in order: this frame waits for the one being handled. So that no more than
      // this read's frames can queue up, stop reading until the queue is worked off.
      this.waiting ??= [];
      this.waiting.push(Buffer.from(frame));
      this.connection.hold(ReadHold.BUSY);
      return;
    }
    this.run(frame);
  }

  /**
   * @internal ConnectionHandler: the client's FIN (a client that half-closes after its requests,
   * `nc -N`). Frames already read are still answered, in order; then our side closes.
   */
  handleEnd(): boolean {
    return this.busy || (this.waiting !== undefined && this.waiting.length > 0);
  }

  /** @internal ConnectionHandler: the send queue drained: read again. */
  handleDrain(): void {
    this.connection.release(ReadHold.BACKPRESSURE);
  }

  /** @internal ConnectionHandler */
  handleClose(info: CloseInfo): void {
    this.waiting = undefined;
    this.closed = true;
    this.controller?.abort(new AbortedError(`connection closed (${info.reason})`, { cause: info.error }));
    this.config.events.legacyClosed(this, info);
  }

  /** @internal ConnectionHandler: frames waiting behind the handler count against the memory budget. */
  heldBytes(): number {
    let n = 0;
    for (const f of this.waiting ?? []) n += f.length;
    return n;
  }

  private run(frame: Buffer): void {
    let input: unknown = frame;
    if (this.config.json) {
      try {
        input = JSON.parse(frame.toString('utf8'));
      } catch (err) {
        void this.connection.close({
          reason: CloseReason.PROTOCOL_ERROR,
          error: new LonglinkError(ErrorCode.BAD_PAYLOAD, 'frame is not JSON', { cause: err }),
          initiator: 'remote',
        });
        return;
      }
    }
    let result: unknown;
    try {
      result = this.config.handler(input, this);
    } catch (err) {
      this.failed(err);
      return;
    }
    if (!isThenable(result)) {
      this.reply(result);
      return;
    }
    this.busy = true;
    // Both callbacks end in next(), and neither throws: reply and failed catch everything.
    result.then(
      (value) => {
        this.reply(value);
        this.next();
      },
      (err: unknown) => {
        this.failed(err);
        this.next();
      },
    );
  }

  /** The handler of the frame before finished: run the ones that waited, in order. */
  private next(): void {
    this.busy = false;
    if (this.closed) {
      this.config.events.legacyReleased(this);
      return;
    }
    const waiting = this.waiting;
    while (waiting !== undefined && waiting.length > 0 && !this.busy && this.connection.writable) {
      this.run(waiting.shift() as Buffer);
    }
    if (!this.busy) {
      this.waiting = undefined;
      this.connection.release(ReadHold.BUSY);
      // The client finished sending while we worked: everything it sent is answered now.
      if (this.connection.state === ConnectionState.READ_CLOSED) void this.connection.close();
    }
  }

  /** The one way out for an answer: undefined sends nothing; anything that cannot go out closes. */
  private reply(value: unknown): void {
    if (value === undefined || !this.connection.writable) return;
    let out: Buffer;
    let full: boolean;
    try {
      if (this.config.json) out = Buffer.from(JSON.stringify(value) ?? 'null');
      else if (Buffer.isBuffer(value)) out = value;
      else if (typeof value === 'string') out = Buffer.from(value);
      else if (value instanceof Uint8Array)
        out = Buffer.from(value.buffer, value.byteOffset, value.byteLength);
      else out = Buffer.from(JSON.stringify(value) ?? 'null');
      // Throws FrameTooLargeError for an answer over the framing's limit; nothing is queued then.
      full = !this.connection.send(out);
    } catch (err) {
      this.failed(err);
      return;
    }
    if (full) this.connection.hold(ReadHold.BACKPRESSURE);
  }

  private failed(err: unknown): void {
    const error = new LonglinkError(
      ErrorCode.HANDLER,
      `legacy handler failed: ${(err as Error)?.message ?? String(err)}`,
      { cause: err },
    );
    this.config.events.legacyFailed(this, error);
    void this.connection.close({ reason: CloseReason.HANDLER_ERROR, error, initiator: 'local' });
  }
}
