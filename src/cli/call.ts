/**
 * `longlink call`: one request to a longlink server and its answer, or — with `--framing SPEC` —
 * one plain frame to any length-prefixed or delimited service and the frame(s) it sends back.
 * `--follow` keeps listening: the server's pushes (NOTIFY), or every frame, until Ctrl-C or
 * `--count N`.
 */

import { readFileSync } from 'node:fs';
import type tls from 'node:tls';
import { type Client, connect } from '../client/client.js';
import { parseFraming } from '../codec/parse.js';
import type { Framing } from '../codec/types.js';
import type { CloseInfo } from '../connection/close-reason.js';
import { Connection } from '../connection/connection.js';
import { MAX_TIMER_MS } from '../util/check.js';
import {
  type Command,
  CommandFailed,
  EXIT,
  endpoint,
  type Io,
  intArg,
  onInterrupt,
  type ParsedArgs,
  portArg,
  signalExitCode,
  stringArg,
  UsageError,
} from './args.js';
import { type ExplainContext, explain } from './explain.js';

/** The client side's --tls-* flags (call, probe). */
export const TLS_OPTIONS = {
  'tls-ca': {
    type: 'string',
    arg: 'FILE',
    help: 'trust this CA (PEM) for the server certificate; turns TLS on',
  },
  'tls-cert': { type: 'string', arg: 'FILE', help: 'client certificate (PEM), for servers that ask (mTLS)' },
  'tls-key': { type: 'string', arg: 'FILE', help: 'key of --tls-cert (PEM)' },
  'tls-servername': {
    type: 'string',
    arg: 'NAME',
    help: 'the name to check the server certificate against (SNI); default --host',
  },
} as const;

/** TLS options from the --tls-* flags; undefined when none is given (plain TCP). */
export function tlsFromArgs(args: ParsedArgs): tls.ConnectionOptions | undefined {
  const ca = stringArg(args, 'tls-ca');
  const cert = stringArg(args, 'tls-cert');
  const key = stringArg(args, 'tls-key');
  const servername = stringArg(args, 'tls-servername');
  if ((cert === undefined) !== (key === undefined))
    throw new UsageError('--tls-cert and --tls-key go together');
  if (ca === undefined && cert === undefined && servername === undefined) return undefined;
  const read = (file: string, flag: string) => {
    try {
      return readFileSync(file);
    } catch (err) {
      throw new UsageError(
        `${flag} ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
      );
    }
  };
  return {
    ...(ca === undefined ? {} : { ca: read(ca, '--tls-ca') }),
    ...(cert === undefined ? {} : { cert: read(cert, '--tls-cert') }),
    ...(key === undefined ? {} : { key: read(key, '--tls-key') }),
    ...(servername === undefined ? {} : { servername }),
  };
}

export const callCommand: Command = {
  name: 'call',
  summary: 'one request to a longlink server (or one frame to any framed service) and its answer',
  usage: [
    '[options] METHOD [JSON]',
    '--framing SPEC [options] [MESSAGE]',
    '--follow [options] [METHOD [JSON]]',
  ],
  description:
    'Connects, sends one request and prints the result as one line of JSON; an error answer, a ' +
    'refused connect or a timeout prints why and exits 1.\n\n' +
    'With --framing SPEC (ascii:20, u32be, line … — any spec the library accepts, see docs/framing.md) ' +
    'it speaks no protocol: MESSAGE (JSON, or any text with --raw) is sent as one frame, and the reply ' +
    'frame is printed as text. Without MESSAGE nothing is sent (for services that speak first).\n\n' +
    '--follow keeps the connection open and prints what the server pushes, one line each — NOTIFY ' +
    'messages as {"topic":…,"payload":…}, or every frame with --framing — until Ctrl-C or --count N. ' +
    'Ctrl-C once closes gracefully; twice aborts.',
  positionals: true,
  options: {
    host: { type: 'string', default: '127.0.0.1', arg: 'HOST', help: 'server address (IPv6 as ::1)' },
    port: { type: 'string', default: '7070', arg: 'PORT', help: 'server port' },
    framing: {
      type: 'string',
      default: 'longlink',
      arg: 'SPEC',
      help: "'longlink' for the protocol, or a plain framing spec: ascii:20, u32be, varint, line, delimiter:HEX …",
    },
    raw: {
      type: 'boolean',
      help: 'send the argument as text instead of JSON (the raw payload codec with the protocol); print replies as text',
    },
    follow: { type: 'boolean', short: 'f', help: 'keep listening: print pushes (or frames) as they arrive' },
    count: {
      type: 'string',
      arg: 'N',
      help: 'stop after N pushes (N frames with --framing); implies --follow when above 1',
    },
    timeout: { type: 'string', default: '10000', arg: 'MS', help: 'how long to wait for the answer' },
    'connect-timeout': {
      type: 'string',
      default: '5000',
      arg: 'MS',
      help: 'deadline for the TCP connect (and the HELLO answer, with the protocol)',
    },
    credential: { type: 'string', arg: 'TOKEN', help: 'credential sent in HELLO (servers with auth)' },
    ...TLS_OPTIONS,
  },
  examples: [
    ['longlink call echo \'{"hello":"world"}\'', 'a request to `longlink serve` on 127.0.0.1:7070'],
    ['longlink call --host ::1 --port 7443 --tls-ca ca.pem whoami', 'over TLS, to an IPv6 address'],
    [
      'longlink call --framing ascii:20 --port 9000 \'{"type":"data","n":1}\'',
      "the sources' protocol: 20-digit ASCII length + JSON; prints the reply frame",
    ],
    ['longlink call --framing line --raw --port 7 "hello"', 'one line to a line-based (or echo) service'],
    [
      'longlink call --follow --count 3 push \'{"topic":"news","count":3}\'',
      'the result, then three pushes as JSON lines',
    ],
  ],
  run: runCall,
};

interface CallSettings {
  host: string;
  port: number;
  timeoutMs: number;
  connectTimeoutMs: number;
  follow: boolean;
  /** Pushes / frames to print before stopping; Infinity = until Ctrl-C. */
  count: number;
  raw: boolean;
  tls: tls.ConnectionOptions | undefined;
}

async function runCall(args: ParsedArgs, io: Io): Promise<number> {
  const framing = stringArg(args, 'framing') ?? 'longlink';
  const countArg = args.values.count === undefined ? undefined : intArg(args, 'count', 1);
  const follow = args.values.follow === true || (countArg !== undefined && countArg > 1);
  const s: CallSettings = {
    host: stringArg(args, 'host') ?? '127.0.0.1',
    port: portArg(args),
    timeoutMs: intArg(args, 'timeout', 1, MAX_TIMER_MS),
    connectTimeoutMs: intArg(args, 'connect-timeout', 1, MAX_TIMER_MS),
    follow,
    count: countArg ?? (follow ? Number.POSITIVE_INFINITY : 1),
    raw: args.values.raw === true,
    tls: tlsFromArgs(args),
  };
  if (framing === 'longlink') return callProtocol(args, s, io);
  if (args.values.credential !== undefined) {
    throw new UsageError('--credential is sent in the longlink HELLO; a plain --framing has none');
  }
  let f: Framing;
  try {
    f = parseFraming(framing);
  } catch (err) {
    throw new UsageError(`--framing: ${(err as Error).message}`);
  }
  if (args.positionals.length > 1) {
    throw new UsageError(
      `--framing ${framing} sends one MESSAGE; got ${args.positionals.length} arguments (quote the message)`,
    );
  }
  return callPlain(f, args.positionals[0], s, io);
}

function context(s: CallSettings, protocol: boolean): ExplainContext {
  return { host: s.host, port: s.port, connectTimeoutMs: s.connectTimeoutMs, protocol };
}

/** A JSON value as one line; the raw codec's Buffers as text. */
function show(value: unknown, raw: boolean): string {
  if (raw && Buffer.isBuffer(value)) return value.toString('utf8');
  if (Buffer.isBuffer(value)) return JSON.stringify(value.toString('utf8'));
  return JSON.stringify(value === undefined ? null : value);
}

async function callProtocol(args: ParsedArgs, s: CallSettings, io: Io): Promise<number> {
  const [method, arg, ...extra] = args.positionals;
  if (extra.length > 0)
    throw new UsageError(`unexpected argument ${JSON.stringify(extra[0])} (quote the JSON)`);
  if (method === undefined && !s.follow)
    throw new UsageError('call needs a METHOD (or --follow to only listen)');
  let params: unknown;
  if (arg !== undefined) {
    if (s.raw) params = Buffer.from(arg, 'utf8');
    else {
      try {
        params = JSON.parse(arg);
      } catch {
        throw new UsageError(`the JSON argument is not valid JSON: ${arg} (use --raw to send text)`);
      }
    }
  } else params = s.raw ? Buffer.alloc(0) : null;

  let client: Client;
  try {
    client = await connect({
      host: s.host,
      port: s.port,
      reconnect: false,
      connectTimeoutMs: s.connectTimeoutMs,
      codec: s.raw ? 'raw' : 'json',
      name: 'longlink-cli',
      ...(args.values.credential === undefined ? {} : { credential: String(args.values.credential) }),
      ...(s.tls === undefined ? {} : { tls: s.tls }),
    });
  } catch (err) {
    throw new CommandFailed(explain(err, context(s, true)));
  }

  let pushes = 0;
  let answered = method === undefined;
  let settle: ((code: number) => void) | undefined;
  const done = new Promise<number>((resolve) => {
    settle = resolve;
  });
  const finish = (code: number) => settle?.(code);
  if (s.follow) {
    // Listening before the request: a push sent while the request runs is not missed.
    client.on('notify', (topic, payload, push) => {
      if (pushes >= s.count) return;
      pushes++;
      io.out(
        JSON.stringify({
          topic,
          payload: s.raw && Buffer.isBuffer(payload) ? payload.toString() : payload,
          ...(push === undefined ? {} : { room: push.room, seq: push.seq }),
        }),
      );
      if (pushes >= s.count && answered) finish(EXIT.OK);
    });
    client.on('disconnect', (info: CloseInfo) => {
      if (info.initiator === 'local') return; // our own close at the end
      const graceful = info.reason === 'going-away' || info.reason === 'remote-fin';
      io.err(
        `longlink: call: ${endpoint(s.host, s.port)} closed the connection (${info.reason}) after ${pushes} push${pushes === 1 ? '' : 'es'}`,
      );
      finish(graceful && s.count === Number.POSITIVE_INFINITY ? EXIT.OK : EXIT.FAILED);
    });
  }
  const dispose = onInterrupt(
    (signal) => finish(s.follow && answered ? EXIT.OK : signalExitCode(signal)),
    (signal) => {
      client.destroy();
      process.exit(signalExitCode(signal));
    },
  );
  if (s.follow) {
    io.progress(
      `following ${endpoint(s.host, s.port)}: pushes as JSON lines${Number.isFinite(s.count) ? ` until ${s.count}` : ''}; Ctrl-C to stop`,
    );
  }
  try {
    if (method !== undefined) {
      try {
        const result = await Promise.race([
          client.request(method, params, { timeoutMs: s.timeoutMs }),
          done.then((code) => Promise.reject(new Interrupted(code))),
        ]);
        answered = true;
        io.out(show(result, s.raw));
      } catch (err) {
        if (err instanceof Interrupted) return err.exitCode;
        throw new CommandFailed(explain(err, context(s, true)));
      }
      if (!s.follow || pushes >= s.count) return EXIT.OK;
    }
    return await done;
  } finally {
    dispose();
    await client.close({ graceMs: 0 });
  }
}

class Interrupted extends Error {
  constructor(readonly exitCode: number) {
    super('interrupted');
  }
}

/** A reply frame as one line: its text, or its bytes in hex when they are not UTF-8. */
function showFrame(frame: Buffer, raw: boolean): string {
  const text = frame.toString('utf8');
  if (raw || Buffer.byteLength(text) === frame.length || !text.includes('\uFFFD')) return text;
  return `<${frame.length} bytes, not UTF-8> ${frame.toString('hex')}`;
}

async function callPlain(
  framing: Framing,
  message: string | undefined,
  s: CallSettings,
  io: Io,
): Promise<number> {
  let payload: Buffer | undefined;
  if (message !== undefined) {
    if (s.raw) payload = Buffer.from(message, 'utf8');
    else {
      try {
        // Compact, as the sources' client sends JSON.stringify's output.
        payload = Buffer.from(JSON.stringify(JSON.parse(message)), 'utf8');
      } catch {
        throw new UsageError(`MESSAGE is not valid JSON: ${message} (use --raw to send text)`);
      }
    }
  }
  let conn: Connection;
  try {
    conn = await Connection.connect({
      host: s.host,
      port: s.port,
      framing,
      connectTimeoutMs: s.connectTimeoutMs,
      ...(s.tls === undefined ? {} : { tls: s.tls }),
    });
  } catch (err) {
    throw new CommandFailed(explain(err, context(s, false)));
  }
  let frames = 0;
  let timer: NodeJS.Timeout | undefined;
  const result = new Promise<number>((resolve, reject) => {
    conn.on('frame', (frame: Buffer) => {
      if (frames >= s.count) return;
      frames++;
      io.out(showFrame(frame, s.raw));
      if (frames >= s.count) resolve(EXIT.OK);
      else timer?.refresh();
    });
    conn.on('close', (info: CloseInfo) => {
      if (frames >= s.count) return;
      const ep = endpoint(s.host, s.port);
      if (info.error !== undefined && info.reason === 'protocol-error') {
        reject(
          new CommandFailed(
            `${ep} sent something that is not ${framing.name} framing: ${info.error.message} (${info.error.code})` +
              (/"HTTP\//.test(info.error.message) ? ' — it answered like HTTP' : ''),
          ),
        );
      } else if (s.follow && s.count === Number.POSITIVE_INFINITY && info.reason === 'remote-fin') {
        io.err(
          `longlink: call: ${ep} closed the connection (remote-fin) after ${frames} frame${frames === 1 ? '' : 's'}`,
        );
        resolve(EXIT.OK);
      } else {
        reject(
          new CommandFailed(
            `${ep} closed the connection (${info.reason}) after ${frames} of ${Number.isFinite(s.count) ? s.count : 'the'} frame${s.count === 1 ? '' : 's'}${info.error ? `: ${info.error.message}` : ''}`,
          ),
        );
      }
    });
    if (!s.follow) {
      timer = setTimeout(
        () =>
          reject(
            new CommandFailed(
              `no reply frame from ${endpoint(s.host, s.port)} within ${s.timeoutMs} ms (does it speak ${framing.name} framing?)`,
            ),
          ),
        s.timeoutMs,
      );
    }
  });
  const interrupted = new Promise<number>((resolve) => {
    const dispose = onInterrupt(
      (signal) => resolve(s.follow ? EXIT.OK : signalExitCode(signal)),
      (signal) => {
        conn.abort();
        process.exit(signalExitCode(signal));
      },
    );
    void result.finally(dispose).catch(() => {});
    conn.closed.then(dispose, dispose);
  });
  if (s.follow) {
    io.progress(
      `following ${endpoint(s.host, s.port)}: frames as lines${Number.isFinite(s.count) ? ` until ${s.count}` : ''}; Ctrl-C to stop`,
    );
  }
  if (payload !== undefined) conn.send(payload);
  try {
    return await Promise.race([result, interrupted]);
  } finally {
    clearTimeout(timer);
    if (conn.state !== 'closed') await conn.close({ timeoutMs: 2000 });
  }
}
