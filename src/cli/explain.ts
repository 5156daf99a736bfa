/**
 * Errors in words for the CLI. The library's messages already carry hints where it can tell
 * (helloFailureHint: "the server answered like HTTP"; connectFailure: "the server does not speak
 * TLS on this port"); this adds what only the caller knows — which address it meant, how long it
 * waited — and says the common failures the way an operator would: nothing listens there, the
 * peer accepted and said nothing, the TCP connect got no answer. The stable code stays at the end
 * in parentheses, for scripts.
 */

import { RemoteError } from '../protocol/errors.js';
import { endpoint } from './args.js';

export interface ExplainContext {
  host: string;
  port: number;
  /** The connect (+ HELLO) deadline the command used. */
  connectTimeoutMs: number;
  /** Whether the command speaks the longlink protocol (a HELLO was expected). */
  protocol: boolean;
}

const ERRNO_WORDS: Readonly<Record<string, (ep: string, host: string) => string>> = {
  ECONNREFUSED: (ep) => `nothing listens on ${ep} (connection refused)`,
  ECONNRESET: (ep) => `${ep} reset the connection`,
  EHOSTUNREACH: (ep) => `no route to ${ep} (host unreachable)`,
  ENETUNREACH: (ep) => `no route to ${ep} (network unreachable)`,
  ETIMEDOUT: (ep) => `the connection to ${ep} timed out in the kernel (no answer to the SYN)`,
  ENOTFOUND: (_ep, host) => `cannot resolve host ${JSON.stringify(host)}`,
  EAI_AGAIN: (_ep, host) => `cannot resolve host ${JSON.stringify(host)} now (DNS did not answer)`,
  EADDRNOTAVAIL: (ep) => `cannot connect to ${ep}: no local address/port for it (EADDRNOTAVAIL)`,
  EMFILE: () => 'out of file descriptors in this process (ulimit -n; see longlink doctor)',
};

function codeOf(err: unknown): string | undefined {
  const c = (err as { code?: unknown } | null)?.code;
  return typeof c === 'string' ? c : undefined;
}

/** `err` in words, ending with its code in parentheses when it has one. */
export function explain(err: unknown, ctx: ExplainContext): string {
  const ep = endpoint(ctx.host, ctx.port);
  const code = codeOf(err);
  const message = (err as Error | undefined)?.message ?? String(err);
  const cause = (err as { cause?: unknown } | null)?.cause;
  const causeCode = codeOf(cause);
  const tail = code === undefined ? '' : ` (${code})`;

  // The connect succeeded, the HELLO never came: the client gave up on its own deadline.
  if (code === 'ERR_CONNECTION_CLOSED' && causeCode === 'ERR_CONNECT_TIMEOUT' && /HELLO/.test(message)) {
    return (
      `no HELLO within ${ctx.connectTimeoutMs} ms: ${ep} accepted the connection and said nothing ` +
      '(not a longlink server, a TLS port without --tls-ca, or a server too busy to answer)' +
      ` (ERR_CONNECT_TIMEOUT)`
    );
  }
  // The library's hint after "during HELLO: " is the cause in words; lead with it.
  const hello = /during HELLO: (.+)$/s.exec(message);
  if (hello?.[1] !== undefined) {
    const reason = /connection closed \(([\w-]+)\)/.exec(message)?.[1];
    // The library names its API ({ tls }); here the flag is what the user can change.
    const words = hello[1].replace(/\{ tls \}/g, '--tls-ca');
    return `${ep}: ${words}${reason ? ` [closed: ${reason}]` : ''}${tail}`;
  }
  if (code === 'ERR_CONNECTION_CLOSED' && /during HELLO/.test(message)) {
    return `${ep} closed the connection during HELLO: ${message}${tail}`;
  }
  if (code === 'ERR_CONNECT_TIMEOUT') {
    return (
      `no answer to the TCP connect to ${ep} within ${ctx.connectTimeoutMs} ms ` +
      '(the host is down, or a firewall drops the SYN)' +
      tail
    );
  }
  if (code === 'ERR_CONNECT') {
    const words = causeCode === undefined ? undefined : ERRNO_WORDS[causeCode];
    // TLS failures keep the library's own words: they say which side does not speak TLS.
    if (words !== undefined && !/TLS/.test(message)) return `${words(ep, ctx.host)}${tail}`;
    return `${message.replace(`${ctx.host}:${ctx.port}`, ep)}${tail}`;
  }
  if (err instanceof RemoteError) {
    return `${ep} answered with an error: ${message}${tail}`;
  }
  if (code !== undefined && ERRNO_WORDS[code] !== undefined) {
    return `${(ERRNO_WORDS[code] as (ep: string, host: string) => string)(ep, ctx.host)}${tail}`;
  }
  return `${message}${tail}`;
}
