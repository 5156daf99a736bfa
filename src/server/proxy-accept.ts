/**
 * The PROXY stage of the accept path: behind haproxy or nginx every client looks like the proxy,
 * and the PROXY protocol header (v1 or v2) the proxy sends first says who the client really is.
 *
 * The header is believed only from the proxies the server trusts: anyone else could send one and
 * claim any address. So:
 *   - from a trusted address, the header is required: a connection without one (or with a
 *     malformed one) is refused (`proxy-missing`, `proxy-malformed`);
 *   - from anyone else, a header is refused (`proxy-untrusted`); other bytes go on to the protocol.
 *
 * The stage reads only what the header needs: what followed it in the same read is put back
 * (`unshift`) for the Connection, or for the TLS handshake, which takes a socket's buffered bytes
 * as received (Node's TLSSocket does this since nodejs/node#35475).
 */

import type net from 'node:net';
import { InvalidArgumentError, ProxyHeaderError } from '../errors.js';
import type { RefusalReason } from './admission.js';
import { looksLikeProxyHeader, ProxyHeaderReader } from './proxy-header.js';
import type { PeerOrigin } from './server-peer.js';
import { isTrustedAddress, parseTrustedProxies } from './trusted-proxies.js';

/** Options of the server's `proxyProtocol`. */
export interface ProxyOptions {
  /**
   * Addresses and CIDRs of the proxies whose PROXY headers are believed, e.g.
   * `['127.0.0.1', '10.0.0.0/8']` or `'10.1.2.3,fd00::/8'`. Required: a header from anywhere
   * else is refused.
   */
  trustedProxies: string | string[];
}

/** The checked PROXY settings. */
export interface ProxyConfig {
  readonly trusted: net.BlockList;
}

export function proxyConfig(o: ProxyOptions): ProxyConfig {
  if (typeof o !== 'object' || o === null || o.trustedProxies === undefined) {
    throw new InvalidArgumentError('proxyProtocol needs trustedProxies (addresses or CIDRs)');
  }
  return { trusted: parseTrustedProxies(o.trustedProxies) };
}

/** Why the stage refused the connection. */
export interface ProxyFailure {
  reason: RefusalReason;
  error?: Error;
}

/** The v2 signature is the longest prefix that decides whether bytes are a PROXY header. */
const DECIDING_BYTES = 16;

/**
 * Reads the PROXY header from a trusted proxy, or makes sure an untrusted peer sends none.
 * Resolves with the client's own address (undefined: use the socket's, e.g. a proxy's health
 * check or an untrusted direct client) and leaves the socket paused with what followed the
 * header put back; rejects with a {@link ProxyFailure}. `onAbort` receives a function the caller
 * uses to end the wait (its deadline).
 */
export function readProxyHeader(
  socket: net.Socket,
  config: ProxyConfig,
  onAbort: (abort: (reason: RefusalReason) => void) => void,
): Promise<PeerOrigin | undefined> {
  const trusted = isTrustedAddress(config.trusted, socket.remoteAddress);
  return new Promise<PeerOrigin | undefined>((resolve, reject) => {
    const reader = trusted ? new ProxyHeaderReader() : undefined;
    let seen: Buffer | undefined;
    const done = (): void => {
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.pause();
    };
    const onEnd = (): void => {
      done();
      reject({ reason: trusted ? 'proxy-missing' : 'handshake-timeout' } satisfies ProxyFailure);
    };
    const onData = (chunk: Buffer): void => {
      if (reader !== undefined) {
        let result: ReturnType<ProxyHeaderReader['push']>;
        try {
          result = reader.push(chunk);
        } catch (err) {
          done();
          const missing = err instanceof ProxyHeaderError && err.reason === 'bad-signature';
          reject({
            reason: missing ? 'proxy-missing' : 'proxy-malformed',
            error: err as Error,
          } satisfies ProxyFailure);
          return;
        }
        if (result === undefined) return;
        done();
        if (result.rest.length > 0) socket.unshift(result.rest);
        const src = result.header.source;
        // LOCAL (a proxy's own health check) and UNKNOWN carry no client: the socket's address stands.
        resolve(src === undefined ? undefined : { address: src.address, port: src.port });
        return;
      }
      seen = seen === undefined ? chunk : Buffer.concat([seen, chunk]);
      const looks = looksLikeProxyHeader(seen);
      if (looks === undefined && seen.length < DECIDING_BYTES) return;
      done();
      socket.unshift(seen);
      if (looks === true) {
        reject({
          reason: 'proxy-untrusted',
          error: new ProxyHeaderError(
            `PROXY header from ${socket.remoteAddress}, which is not a trusted proxy`,
            'unsupported',
          ),
        } satisfies ProxyFailure);
        return;
      }
      resolve(undefined);
    };
    onAbort((reason) => {
      done();
      reject({ reason } satisfies ProxyFailure);
    });
    socket.on('data', onData);
    socket.on('end', onEnd);
  });
}
