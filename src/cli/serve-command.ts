import { parseFraming } from '../codec/parse.js';
import type { ConnectionOptions } from '../connection/connection.js';
import type { HeartbeatSetting } from '../session/heartbeat.js';
import { MAX_TIMER_MS } from '../util/check.js';
import { type Command, type Io, intArg, type ParsedArgs, portArg, stringArg, UsageError } from './args.js';
import { logFormatArg, logLevelArg } from './log.js';
import { type ServeOptions, serve } from './serve.js';
import { rateArg, WORKER_OPTIONS, workersFlags } from './serve-workers.js';

/** `--heartbeat off|standard|strict|INTERVAL/TIMEOUT` (ms). */
export function heartbeatArg(v: string): HeartbeatSetting {
  if (v === 'off' || v === 'false') return false;
  if (v === 'standard' || v === 'strict') return v;
  const m = /^(\d+)\/(\d+)$/.exec(v);
  if (m) {
    const intervalMs = Number(m[1]);
    const timeoutMs = Number(m[2]);
    if (intervalMs > 0 && timeoutMs > intervalMs) return { intervalMs, timeoutMs };
  }
  throw new UsageError(
    `--heartbeat must be off, standard, strict or INTERVAL/TIMEOUT in ms with 0 < INTERVAL < TIMEOUT (e.g. 1000/3000), got ${JSON.stringify(v)}`,
  );
}

/** `--keepalive off|SECONDS` (the idle time before the first TCP keepalive probe). */
function keepAliveArg(v: string): ConnectionOptions['keepAlive'] {
  if (v === 'off' || v === 'false') return false;
  const n = Number(v);
  if (/^\d+(\.\d+)?$/.test(v) && n >= 1 && n <= 32_767) return { idleMs: Math.round(n * 1000) };
  throw new UsageError(
    `--keepalive must be off or the idle seconds before the first probe (1–32767), got ${JSON.stringify(v)}`,
  );
}

export const serveCommand: Command = {
  name: 'serve',
  summary: 'a longlink server with built-in methods, or an echo server for any framing',
  usage: ['[options]'],
  description:
    'A longlink server with the methods echo, sleep (ms), push ({topic,count}: that many NOTIFYs), ' +
    'whoami, stats, and for rooms join ({room}), leave ({room}) and publish ({room,topic,payload}: ' +
    'a push to every member, answered with its seq); any client may join any room. --broker ' +
    "redis://HOST:PORT carries rooms across every server using that Redis, with each room's " +
    'history there for clients that resume (--history-length, --history-age). With --framing SPEC, a plain echo server for that framing (each frame sent ' +
    'back as it came). One line per connection opened and closed, with the close reason; the ' +
    "server's own lines for refusals, handler failures, slow consumers and heartbeat deaths (floods " +
    'summarised); every line with its time and level (--log-format text|json, --log-level).\n\n' +
    '--metrics-port P serves the admin endpoint: /metrics for Prometheus, /api/summary and ' +
    '/api/connections as JSON, and a live dashboard at / (on 127.0.0.1 unless --admin-host says ' +
    "otherwise: it shows peers' addresses).\n\n" +
    'SIGTERM or Ctrl-C: graceful shutdown (GOAWAY, the requests already read are answered, then ' +
    'close; exit 0); a second one aborts every connection (exit 130, or 143 for SIGTERM).\n\n' +
    '--workers N runs the server in N processes on one port (node:cluster, or SO_REUSEPORT with ' +
    '--workers-mode reuse-port on Node >= 22.12); the primary restarts a worker that dies (with ' +
    'backoff) and drains them all on SIGTERM; whoami names the worker and its pid.\n\n' +
    'As the far end of `longlink probe`, start it with --heartbeat off --keepalive off (and ' +
    '--idle-timeout 0 with a plain framing), so that it never speaks while the probe measures silence.',
  options: {
    host: {
      type: 'string',
      default: '127.0.0.1',
      arg: 'HOST',
      help: 'address to listen on (:: for every IPv6 and IPv4 address)',
    },
    port: { type: 'string', default: '7070', arg: 'PORT', help: 'port (0: any free port, printed)' },
    framing: {
      type: 'string',
      default: 'longlink',
      arg: 'SPEC',
      help: "'longlink' (the protocol), or a plain framing for an echo server: ascii:20, u32be, line …",
    },
    grace: {
      type: 'string',
      default: '10000',
      arg: 'MS',
      help: 'shutdown grace before the remaining connections are aborted',
    },
    heartbeat: {
      type: 'string',
      arg: 'H',
      help: 'off, standard (PING after 10 s of silence, dead after 30 s), strict (2 s / 6 s) or INTERVAL/TIMEOUT in ms (default standard)',
    },
    'idle-budget': {
      type: 'string',
      arg: 'MS',
      help: "the path's idle timeout (what `longlink probe` found): the heartbeat is derived from it",
    },
    keepalive: {
      type: 'string',
      arg: 'S|off',
      help: 'TCP keepalive on accepted sockets: idle seconds before the first probe, or off (default 60)',
    },
    'idle-timeout': {
      type: 'string',
      arg: 'MS',
      help: 'plain framings: close connections with nothing read for this long; 0 never (default 120000)',
    },
    'tls-cert': {
      type: 'string',
      arg: 'FILE',
      help: 'serve TLS with this certificate (PEM); needs --tls-key',
    },
    'tls-key': { type: 'string', arg: 'FILE', help: 'key of --tls-cert (PEM)' },
    'tls-ca': { type: 'string', arg: 'FILE', help: 'CA for client certificates (PEM)' },
    'tls-client-auth': { type: 'boolean', help: 'require a client certificate signed by --tls-ca (mTLS)' },
    'proxy-protocol': {
      type: 'boolean',
      help: 'expect a PROXY v1/v2 header (haproxy, nginx) from --trusted-proxies',
    },
    'trusted-proxies': { type: 'string', arg: 'CIDR[,CIDR]', help: 'who may send a PROXY header' },
    'max-connections-per-ip': {
      type: 'string',
      arg: 'N',
      help: 'connections allowed from one client address',
    },
    'auth-token-file': {
      type: 'string',
      arg: 'FILE',
      help: 'require this token as the HELLO credential (checked in constant time)',
    },
    'metrics-port': {
      type: 'string',
      arg: 'PORT',
      help: 'the admin endpoint: /metrics (Prometheus; needs prom-client), /api/summary, /api/connections and a live dashboard at /; `longlink top --port PORT` reads it',
    },
    'admin-host': {
      type: 'string',
      default: '127.0.0.1',
      arg: 'HOST',
      help: "where the admin endpoint listens; it shows peers' addresses and identities to whoever reaches it",
    },
    'log-format': {
      type: 'string',
      default: 'text',
      arg: 'F',
      help: 'text (time, level, message) or json (one object per line)',
    },
    broker: {
      type: 'string',
      arg: 'URL',
      help: 'redis://HOST:PORT: rooms across every server on that Redis (needs @redis/client); default: rooms in this server',
    },
    'history-length': {
      type: 'string',
      arg: 'N',
      help: 'room history kept for resuming clients: entries per room (default 1000)',
    },
    'history-age': {
      type: 'string',
      arg: 'MS',
      help: 'room history kept for resuming clients: entries younger than this (default 300000; 0: no age limit)',
    },
    'log-level': {
      type: 'string',
      default: 'info',
      arg: 'L',
      help: 'debug, info, warn or error: lines below it are dropped',
    },
    'max-connection-age': {
      type: 'string',
      arg: 'MS',
      help: 'GOAWAY each connection once it is this old (± 10 %, then 30 s of grace): clients reconnect, through your balancer, to wherever it sends them now',
    },
    'accept-rate': {
      type: 'string',
      arg: 'N[/BURST]',
      help: 'accept at most N new connections per second (bursts of BURST); the rest are refused with a jittered retry hint',
    },
    'retry-after': {
      type: 'string',
      arg: 'MS',
      help: "the base of the retry hint in refusals and in the shutdown's GOAWAYs (each gets up to as much again at random; default 1000)",
    },
    ...WORKER_OPTIONS,
  },
  examples: [
    ['longlink serve --port 7070', 'the protocol server; try `longlink call echo 1` next to it'],
    [
      'longlink serve --framing ascii:20 --port 9000',
      "an echo server for the sources' 20-digit header + JSON",
    ],
    [
      'longlink serve --host :: --port 7443 --tls-cert server.pem --tls-key server.key --tls-ca ca.pem --tls-client-auth',
      'TLS with client certificates, on IPv6 and IPv4',
    ],
    ['longlink serve --port 7070 --heartbeat off --keepalive off', 'a quiet far end for `longlink probe`'],
    [
      'longlink serve --port 7071 --broker redis://127.0.0.1:6379',
      'one of several servers sharing rooms; `longlink call --follow join \'{"room":"r"}\'` on one, ' +
        '`longlink call publish \'{"room":"r","payload":1}\'` on another',
    ],
    [
      'longlink serve --port 7070 --metrics-port 9100 --log-format json',
      'metrics at http://127.0.0.1:9100/metrics, the dashboard at http://127.0.0.1:9100/, JSON logs',
    ],
    [
      'longlink serve --host 0.0.0.0 --port 7070 --workers 2',
      'two worker processes on one port; SIGTERM drains both (GOAWAY) and exits 0',
    ],
    [
      'longlink serve --port 7070 --proxy-protocol --trusted-proxies 10.0.0.0/8 --max-connection-age 600000',
      'behind haproxy: every connection comes back through it every ~10 minutes, so a new node gets its share',
    ],
  ],
  run: runServe,
};

function runServe(args: ParsedArgs, io: Io): Promise<number> {
  const cert = stringArg(args, 'tls-cert');
  const key = stringArg(args, 'tls-key');
  if ((cert === undefined) !== (key === undefined))
    throw new UsageError('--tls-cert and --tls-key go together');
  if (args.values['tls-client-auth'] === true && args.values['tls-ca'] === undefined) {
    throw new UsageError('--tls-client-auth needs --tls-ca (the CA that signs client certificates)');
  }
  if ((args.values['proxy-protocol'] === true) !== (args.values['trusted-proxies'] !== undefined)) {
    throw new UsageError(
      '--proxy-protocol and --trusted-proxies CIDR[,CIDR] go together (a PROXY header is believed only from trusted proxies)',
    );
  }
  const framing = stringArg(args, 'framing') ?? 'longlink';
  if (framing !== 'longlink') {
    try {
      parseFraming(framing);
    } catch (err) {
      throw new UsageError(`--framing: ${(err as Error).message}`);
    }
  }
  const heartbeat = stringArg(args, 'heartbeat');
  const keepalive = stringArg(args, 'keepalive');
  const tlsCa = stringArg(args, 'tls-ca');
  const trusted = stringArg(args, 'trusted-proxies');
  const tokenFile = stringArg(args, 'auth-token-file');
  const brokerUrl = stringArg(args, 'broker');
  if (brokerUrl !== undefined && !/^rediss?:\/\/./.test(brokerUrl)) {
    throw new UsageError(`--broker must be a redis:// URL, got ${JSON.stringify(brokerUrl)}`);
  }
  if (brokerUrl !== undefined && framing !== 'longlink')
    throw new UsageError('--broker needs the longlink protocol');
  const o: ServeOptions = {
    host: stringArg(args, 'host') ?? '127.0.0.1',
    port: portArg(args),
    framing,
    graceMs: intArg(args, 'grace', 0, MAX_TIMER_MS),
    log: io.out,
    logFormat: logFormatArg(stringArg(args, 'log-format')),
    logLevel: logLevelArg(stringArg(args, 'log-level')),
    ...(args.values['metrics-port'] === undefined ? {} : { metricsPort: portArg(args, 'metrics-port') }),
    adminHost: stringArg(args, 'admin-host') ?? '127.0.0.1',
    ...(cert !== undefined && key !== undefined
      ? {
          tls: {
            certFile: cert,
            keyFile: key,
            ...(tlsCa === undefined ? {} : { caFile: tlsCa }),
            clientAuth: args.values['tls-client-auth'] === true,
          },
        }
      : {}),
    ...(trusted === undefined ? {} : { trustedProxies: trusted }),
    ...(args.values['max-connections-per-ip'] === undefined
      ? {}
      : { maxConnectionsPerAddress: intArg(args, 'max-connections-per-ip', 1) }),
    ...(tokenFile === undefined ? {} : { authTokenFile: tokenFile }),
    ...(heartbeat === undefined ? {} : { heartbeat: heartbeatArg(heartbeat) }),
    ...(args.values['idle-budget'] === undefined ? {} : { idleBudgetMs: intArg(args, 'idle-budget', 1) }),
    ...(keepalive === undefined ? {} : { keepAlive: keepAliveArg(keepalive) }),
    ...(args.values['idle-timeout'] === undefined
      ? {}
      : { legacyIdleTimeoutMs: intArg(args, 'idle-timeout', 0) }),
    ...(args.values['max-connection-age'] === undefined
      ? {}
      : { maxConnectionAgeMs: intArg(args, 'max-connection-age', 1, Math.floor(2 ** 31 / 1.2)) }),
    ...(args.values['accept-rate'] === undefined
      ? {}
      : { acceptRate: rateArg('--accept-rate', stringArg(args, 'accept-rate') as string) }),
    ...(args.values['retry-after'] === undefined ? {} : { retryAfterMs: intArg(args, 'retry-after', 0) }),
    ...workersFlags(args),
    ...(brokerUrl === undefined ? {} : { brokerUrl }),
    ...(args.values['history-length'] === undefined && args.values['history-age'] === undefined
      ? {}
      : {
          history: {
            ...(args.values['history-length'] === undefined
              ? {}
              : { maxLength: intArg(args, 'history-length', 1) }),
            ...(args.values['history-age'] === undefined ? {} : { maxAgeMs: intArg(args, 'history-age', 0) }),
          },
        }),
  };
  return serve(o);
}
