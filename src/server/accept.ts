/**
 * The accept path: what happens to a socket between the kernel's accept and the start of its
 * session.
 *
 *   accept ─▶ [PROXY header, from trusted proxies only] ─▶ admission (limits, per address)
 *          ─▶ [TLS handshake] ─▶ the owner opens the Connection and its session
 *
 * One deadline runs over all of it (the owner's HELLO deadline continues with what is left). A
 * socket that fails a stage is closed and counted as a refusal with the stage's reason, exactly
 * once whatever order Node reports the failure in. Without PROXY and TLS there is nothing to
 * wait for, and the server opens the session directly without coming here.
 *
 * TLS is done by a tls.Server that never listens: sockets are handed to it (`'connection'`), and
 * it does the handshake, SNI, session resumption and client-certificate checks exactly as a
 * listening tls.Server would; its secured TLSSocket keeps the raw socket as `_parent`.
 */

import net from 'node:net';
import tls from 'node:tls';
import { now } from '../util/clock.js';
import type { Deadline, Deadlines } from '../util/deadlines.js';
import type { Refusal, RefusalInfo, RefusalReason } from './admission.js';
import { type ProxyConfig, readProxyHeader } from './proxy-accept.js';
import type { PeerOrigin } from './server-peer.js';

/** What the accept path asks of the server. */
export interface AcceptOwner {
  /** The admission decision for a client at `address` (undefined: not counted per address). */
  admit(address: string | undefined): Refusal | undefined;
  /** A socket admitted from `address` left before it was served: uncount it. */
  leave(address: string): void;
  /** The socket got through: make its Connection and session (refusing it when `refused`). */
  open(
    socket: net.Socket,
    origin: PeerOrigin | undefined,
    countedAddress: string | undefined,
    refused: Refusal | undefined,
    helloTimeoutMs: number,
  ): void;
  /** A socket closed in the accept path, with why. */
  refused(info: RefusalInfo): void;
}

/** The accept path's settings. */
export interface AcceptOptions {
  helloTimeoutMs: number;
  deadlines: Deadlines;
  /** Count admissions per address (per-address limits are on). */
  perAddress: boolean;
  tls: tls.TlsOptions | undefined;
  proxy: ProxyConfig | undefined;
}

/** A socket on its way through. */
interface Accepting {
  readonly raw: net.Socket;
  readonly startedAt: number;
  deadline: Deadline | undefined;
  origin: PeerOrigin | undefined;
  address: string | undefined;
  refusal: Refusal | undefined;
  /** Ends the stage waiting (the PROXY read) when the deadline passes. */
  abort: ((reason: RefusalReason) => void) | undefined;
  /** It left the path (served, refused or closed). */
  done: boolean;
  /** Its refusal was reported (at most once, whichever of Node's events says it first). */
  reported: boolean;
  /** Its address was counted by admission and not yet given back (until it is served). */
  counted: boolean;
}

const noop = (): void => {};

function onAcceptTimeout(arg: unknown): void {
  const a = arg as Accepting;
  a.deadline = undefined;
  if (a.abort !== undefined) a.abort('handshake-timeout');
  else a.raw.destroy();
}

export class AcceptPath {
  /** Sockets in the path, by raw socket. */
  private readonly live = new Map<net.Socket, Accepting>();
  /** Every record by raw socket, also after it left (a TLS failure may be reported after the close). */
  private readonly records = new WeakMap<net.Socket, Accepting>();
  private readonly tlsServer: tls.Server | undefined;

  constructor(
    private readonly owner: AcceptOwner,
    private readonly o: AcceptOptions,
  ) {
    if (o.tls !== undefined) {
      this.tlsServer = tls.createServer({
        rejectUnauthorized: true,
        ...o.tls,
        allowHalfOpen: true,
        handshakeTimeout: o.helloTimeoutMs,
      });
      this.tlsServer.on('secureConnection', (t: tls.TLSSocket) => this.secured(t));
      this.tlsServer.on('tlsClientError', (err: Error, t: tls.TLSSocket) => this.tlsFailed(err, t));
    }
  }

  /** Whether sockets go through here at all (PROXY or TLS configured). */
  get needed(): boolean {
    return this.o.proxy !== undefined || this.tlsServer !== undefined;
  }

  /** Sockets in the path now. */
  get size(): number {
    return this.live.size;
  }

  /** Replaces the TLS certificate for new handshakes. */
  setSecureContext(options: tls.SecureContextOptions): boolean {
    if (this.tlsServer === undefined) return false;
    this.tlsServer.setSecureContext(options);
    return true;
  }

  /** Closes every socket still in the path (shutdown: nothing of theirs was accepted yet). */
  destroyAll(): void {
    for (const a of this.live.values()) a.raw.destroy();
  }

  accept(raw: net.Socket): void {
    if (raw.remoteAddress === undefined) {
      // Reset before we saw it (a proxy's bare connect health check does this): nothing to serve.
      raw.destroy();
      return;
    }
    // Until a Connection owns the socket, an error on it must not go unhandled.
    raw.on('error', noop);
    const a: Accepting = {
      raw,
      startedAt: now(),
      deadline: undefined,
      origin: undefined,
      address: undefined,
      refusal: undefined,
      abort: undefined,
      done: false,
      reported: false,
      counted: false,
    };
    this.live.set(raw, a);
    this.records.set(raw, a);
    raw.once('close', () => this.closedInPath(a));
    a.deadline = this.o.deadlines.add(this.o.helloTimeoutMs, onAcceptTimeout, a);
    const proxy = this.o.proxy;
    if (proxy === undefined) {
      this.addressKnown(a);
      return;
    }
    void readProxyHeader(raw, proxy, (abort) => {
      a.abort = abort;
    }).then(
      (origin) => {
        a.abort = undefined;
        a.origin = origin;
        this.addressKnown(a);
      },
      (failure: { reason: RefusalReason; error?: Error }) => {
        a.abort = undefined;
        this.fail(a, failure.reason, failure.error);
      },
    );
  }

  /** The client's address is known: decide, then (with TLS) hand the socket to the handshake. */
  private addressKnown(a: Accepting): void {
    if (a.done || a.raw.destroyed) return;
    a.address = a.origin !== undefined ? a.origin.address : a.raw.remoteAddress;
    a.refusal = this.owner.admit(this.o.perAddress ? a.address : undefined);
    a.counted = a.refusal === undefined && this.o.perAddress && a.address !== undefined;
    if (this.tlsServer !== undefined) this.tlsServer.emit('connection', a.raw);
    else this.through(a, a.raw);
  }

  /** The record of the raw socket a tls.Server wrapped (the TLSSocket keeps it as `_parent`). */
  private recordOf(t: tls.TLSSocket): Accepting | undefined {
    const raw = (t as unknown as { _parent?: unknown })._parent;
    return raw instanceof net.Socket ? this.records.get(raw) : undefined;
  }

  private secured(t: tls.TLSSocket): void {
    const a = this.recordOf(t);
    if (a === undefined || a.done) {
      t.destroy();
      return;
    }
    this.through(a, t);
  }

  private tlsFailed(err: Error, t: tls.TLSSocket): void {
    const a = this.recordOf(t);
    t.destroy();
    if (a === undefined) return;
    // A client certificate that failed verification is dropped by Node without a TLS error of its
    // own (the close then reads "socket hang up"): name the real reason. The raw socket's close
    // may have come first: the refusal is still this one, reported once.
    const why = t.authorizationError
      ? new Error(`client certificate refused: ${t.authorizationError}`, { cause: err })
      : err;
    this.fail(a, /timeout/i.test(err.message) ? 'handshake-timeout' : 'tls-handshake', why);
  }

  /** Leaves the path, served: the server counts it from now on. */
  private through(a: Accepting, socket: net.Socket): void {
    this.leavePath(a);
    a.counted = false;
    a.raw.off('error', noop);
    const left = this.o.helloTimeoutMs - (now() - a.startedAt);
    this.owner.open(socket, a.origin, a.refusal === undefined ? a.address : undefined, a.refusal, left);
    // The PROXY stage paused the socket to put back what followed the header.
    if (this.o.proxy !== undefined && socket === a.raw) socket.resume();
  }

  /** Refused in the path: closed, uncounted, reported once. */
  private fail(a: Accepting, reason: RefusalReason, error: Error | undefined): void {
    if (a.reported) return;
    a.reported = true;
    this.leavePath(a);
    a.raw.destroy();
    this.uncount(a);
    this.owner.refused({
      reason,
      remoteAddress: a.address ?? a.raw.remoteAddress,
      remotePort: a.origin?.port ?? a.raw.remotePort,
      retryAfterMs: 0,
      error,
    });
  }

  /** The raw socket closed while in the path: the deadline cut it (a refusal), or the peer left. */
  private closedInPath(a: Accepting): void {
    if (a.done) return;
    const timedOut = a.deadline === undefined;
    this.leavePath(a);
    if (timedOut) this.fail(a, 'handshake-timeout', undefined);
    else this.uncount(a);
  }

  private leavePath(a: Accepting): void {
    a.done = true;
    this.live.delete(a.raw);
    if (a.deadline !== undefined) this.o.deadlines.cancel(a.deadline);
    a.deadline = undefined;
  }

  private uncount(a: Accepting): void {
    if (!a.counted) return;
    a.counted = false;
    this.owner.leave(a.address as string);
  }
}
