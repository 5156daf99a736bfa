/**
 * Dialing: a TCP (or TLS) connect with a deadline and an AbortSignal, whose failures say in
 * words which side of the problem the user is on. Resolves with the connected socket; the half-made
 * socket is destroyed on every failure path.
 */

import net from 'node:net';
import tls from 'node:tls';
import { AbortedError, ConnectError, ConnectTimeoutError, type LonglinkError } from '../errors.js';

/** Where and how to dial. */
export interface DialOptions {
  host: string;
  port: number;
  localAddress?: string | undefined;
  timeoutMs: number;
  signal?: AbortSignal | undefined;
  tls?: tls.ConnectionOptions | undefined;
}

/**
 * Says why a connect failed in words: a TLS handshake that met something else than TLS is told
 * apart from a refused port, because the fix is different (the other side is not a TLS port).
 */
export function connectFailure(
  host: string,
  port: number,
  tlsOn: boolean,
  err: NodeJS.ErrnoException,
): string {
  const what = err.code ?? err.message;
  // errno-style codes (ECONNREFUSED, ETIMEDOUT, ENOTFOUND …) are the TCP connect's; with TLS on,
  // anything else happened in the handshake.
  if (!tlsOn || (/^E[A-Z]+$/.test(what) && what !== 'ECONNRESET' && what !== 'EPROTO')) {
    return `connect to ${host}:${port} failed: ${what}`;
  }
  const text = `${err.code} ${err.message}`;
  let hint = '';
  if (
    /WRONG_VERSION_NUMBER|wrong version number|packet length too long|record layer failure|EPROTO/i.test(text)
  ) {
    hint = ': the server does not speak TLS on this port';
  } else if (/CERT|SELF_SIGNED|VERIFY|ALTNAME/.test(what)) {
    hint =
      ": the server's certificate is not trusted for this name (pass its CA as tls.ca, or tls.servername)";
  } else if (what === 'ECONNRESET') {
    hint = ': the server reset the connection (it may not speak TLS, or refused our certificate)';
  }
  return `TLS handshake with ${host}:${port} failed (${what})${hint}`;
}

/**
 * Connects; rejects with ConnectError (cause: the system error), ConnectTimeoutError or
 * AbortedError. With `tls`, resolves after the handshake.
 */
export function dial(o: DialOptions): Promise<net.Socket> {
  const signal = o.signal;
  if (signal?.aborted) return Promise.reject(new AbortedError('connect aborted', { cause: signal.reason }));
  return new Promise((resolve, reject) => {
    const base: net.TcpNetConnectOpts = { host: o.host, port: o.port, allowHalfOpen: true };
    if (o.localAddress !== undefined) base.localAddress = o.localAddress;
    const socket = o.tls ? tls.connect({ ...o.tls, ...base }) : net.connect(base);
    const ready = o.tls ? 'secureConnect' : 'connect';
    const finish = (err: LonglinkError | undefined) => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      socket.off('error', onError);
      socket.off(ready, onConnect);
      if (err) {
        socket.destroy();
        reject(err);
        return;
      }
      resolve(socket);
    };
    const onConnect = () => finish(undefined);
    const onError = (err: NodeJS.ErrnoException) =>
      finish(new ConnectError(connectFailure(o.host, o.port, o.tls !== undefined, err), { cause: err }));
    const onAbort = () => finish(new AbortedError('connect aborted', { cause: signal?.reason }));
    const timer = setTimeout(() => finish(new ConnectTimeoutError(o.timeoutMs)), o.timeoutMs);
    timer.unref();
    signal?.addEventListener('abort', onAbort, { once: true });
    socket.once('error', onError);
    socket.once(ready, onConnect);
  });
}
