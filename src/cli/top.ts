/** `longlink top`: a server's connections, live, from its admin endpoint (serve --metrics-port). */

import http from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import type { AdminConnection, AdminConnections, AdminSummary, ConnectionSort } from '../observe/admin.js';
import {
  type Command,
  CommandFailed,
  count,
  EXIT,
  endpoint,
  type Io,
  intArg,
  onInterrupt,
  type ParsedArgs,
  portArg,
  stringArg,
  UsageError,
} from './args.js';

const SORTS: readonly ConnectionSort[] = ['age', 'rtt', 'inflight', 'queued', 'retransmits'];

// What the endpoint answers is checked before it is drawn: another HTTP service on that port, a
// proxy's error page in JSON or another version would otherwise surface as a TypeError from deep
// inside the table code ("Cannot read properties of null (reading 'perSecond')").
type Shape = (v: unknown) => string | undefined;
const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);
const isNumber = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);

/** The first field of `o` that is not what `ok` wants, as `name`, or undefined. */
function badField(
  o: Record<string, unknown>,
  ok: (v: unknown) => boolean,
  names: string[],
  at = '',
): string | undefined {
  const bad = names.find((k) => !ok(o[k]));
  return bad === undefined ? undefined : `${at}${bad}`;
}

/** What headerLine reads from /api/summary; undefined when all is there, else what is not. */
export const summaryShape: Shape = (v) => {
  if (!isObject(v)) return 'not an object';
  const nums = ['connections', 'accepting', 'inflight', 'refusedTotal', 'closedTotal', 'handlerErrors'];
  const bad = badField(v, isNumber, nums);
  if (bad !== undefined) return `${bad} is not a number`;
  if (!isNumber(v.time) || Number.isNaN(new Date(v.time).getTime())) return 'time is not a time';
  if (!(v.server === null || typeof v.server === 'string')) return 'server is not a string';
  const r = v.requests;
  if (!isObject(r) || !isNumber(r.perSecond)) return 'requests.perSecond is not a number';
  const badMs = badField(r, (x) => x === null || isNumber(x), ['p50Ms', 'p99Ms'], 'requests.');
  return badMs === undefined ? undefined : `${badMs} is not a number or null`;
};

/** What connectionTable reads from /api/connections; undefined when all is there, else what is not. */
export const connectionsShape: Shape = (v) => {
  if (!isObject(v)) return 'not an object';
  if (!isNumber(v.total)) return 'total is not a number';
  if (!Array.isArray(v.connections)) return 'connections is not a list';
  for (const [i, c] of v.connections.entries()) {
    const at = `connections[${i}]`;
    if (!isObject(c)) return `${at} is not an object`;
    const str = badField(c, (x) => typeof x === 'string', ['peer', 'id'], `${at}.`);
    if (str !== undefined) return `${str} is not a string`;
    const num = badField(c, isNumber, ['ageMs', 'inflight', 'queuedBytes'], `${at}.`);
    if (num !== undefined) return `${num} is not a number`;
    if (!(c.rttMs === null || isNumber(c.rttMs))) return `${at}.rttMs is not a number or null`;
    if (!(c.identity === null || typeof c.identity === 'string'))
      return `${at}.identity is not a string or null`;
    const tcp = c.tcp;
    if (!(tcp === null || (isObject(tcp) && typeof tcp.state === 'string' && isNumber(tcp.totalRetransmits))))
      return `${at}.tcp is not { state, totalRetransmits } or null`;
    const tls = c.tls;
    if (!(tls === null || (isObject(tls) && (tls.protocol === null || typeof tls.protocol === 'string'))))
      return `${at}.tls is not { protocol } or null`;
  }
  return undefined;
};

/** GET `path` from the admin endpoint as JSON of `shape`, with a deadline; failures in words. */
function getJson<T>(host: string, port: number, path: string, timeoutMs: number, shape: Shape): Promise<T> {
  const where = endpoint(host, port);
  return new Promise((resolve, reject) => {
    const req = http.get(
      { host, port, path, timeout: timeoutMs, headers: { accept: 'application/json' } },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => {
          if (body.length < 16 * 1024 * 1024) body += d;
        });
        res.on('end', () => {
          if (res.statusCode !== 200) {
            reject(
              new CommandFailed(
                `${where}${path} answered HTTP ${res.statusCode}: ${body.trim().slice(0, 200)}`,
              ),
            );
            return;
          }
          let value: unknown;
          try {
            value = JSON.parse(body);
          } catch {
            reject(
              new CommandFailed(
                `${where}${path} did not answer JSON: is it a longlink admin endpoint (serve --metrics-port)?`,
              ),
            );
            return;
          }
          const problem = shape(value);
          if (problem !== undefined) {
            reject(
              new CommandFailed(
                `${where}${path} answered JSON of another shape (${problem}): is it a longlink admin endpoint (serve --metrics-port) of this version?`,
              ),
            );
            return;
          }
          resolve(value as T);
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', (err: NodeJS.ErrnoException) => {
      reject(
        new CommandFailed(
          err.code === 'ECONNREFUSED'
            ? `nothing listens on ${where} (connection refused): start the server with --metrics-port ${port} (ECONNREFUSED)`
            : `${where}: ${err.message}${err.code ? ` (${err.code})` : ''}`,
        ),
      );
    });
  });
}

function age(ms: number): string {
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(s % 60).padStart(2, '0')}s`;
  const h = Math.floor(m / 60);
  return h < 48 ? `${h}h${String(m % 60).padStart(2, '0')}m` : `${Math.floor(h / 24)}d${h % 24}h`;
}

const fixed = (v: number | null, digits = 2): string => (v === null ? '–' : v.toFixed(digits));

/** The header line: totals for the whole server. */
export function headerLine(s: AdminSummary): string {
  return (
    `${s.server ?? '?'}  ${count(s.connections)} connections (${count(s.accepting)} accepting)  ` +
    `${count(s.inflight)} in flight  ${count(s.requests.perSecond)} req/s  ` +
    `p50 ${fixed(s.requests.p50Ms)} ms  p99 ${fixed(s.requests.p99Ms)} ms  ` +
    `refused ${count(s.refusedTotal)}  closed ${count(s.closedTotal)}  errors ${count(s.handlerErrors)}  ` +
    new Date(s.time).toISOString().slice(11, 19)
  );
}

const COLUMNS: Array<[string, (c: AdminConnection) => string, 'l' | 'r']> = [
  ['peer', (c) => c.peer, 'l'],
  ['id', (c) => c.id, 'r'],
  ['age', (c) => age(c.ageMs), 'r'],
  ['rtt ms', (c) => fixed(c.rttMs), 'r'],
  ['in flight', (c) => count(c.inflight), 'r'],
  ['queued', (c) => count(c.queuedBytes), 'r'],
  ['tcp', (c) => c.tcp?.state ?? '–', 'l'],
  ['retrans', (c) => (c.tcp === null ? '–' : count(c.tcp.totalRetransmits)), 'r'],
  ['tls', (c) => (c.tls === null ? '' : (c.tls.protocol ?? 'tls')), 'l'],
  ['identity', (c) => c.identity ?? '', 'l'],
];

/** The table: one row per connection, columns as wide as their widest cell. */
export function connectionTable(c: AdminConnections): string[] {
  const rows = c.connections.map((x) => COLUMNS.map(([, f]) => f(x)));
  const widths = COLUMNS.map(([h], i) => Math.max(h.length, ...rows.map((r) => (r[i] as string).length)));
  const line = (cells: string[]) =>
    cells
      .map((v, i) =>
        (COLUMNS[i] as (typeof COLUMNS)[number])[2] === 'l'
          ? v.padEnd(widths[i] as number)
          : v.padStart(widths[i] as number),
      )
      .join('  ')
      .trimEnd();
  const out = [line(COLUMNS.map(([h]) => h)), ...rows.map(line)];
  if (c.connections.length < c.total) out.push(`… ${count(c.total - c.connections.length)} more (--limit)`);
  return out;
}

export const topCommand: Command = {
  name: 'top',
  summary: "a server's connections live: peer, age, RTT, in flight, queued bytes, TCP state, retransmits",
  usage: ['--port P [--host H] [--sort KEY] [--limit N] [--interval MS] [--count N] [--json]'],
  description:
    "Reads a server's admin endpoint (`longlink serve --metrics-port P`, or serveAdmin() in your own " +
    'process) and shows its connections, refreshed every --interval: a header line with the totals ' +
    '(connections, in flight, requests per second, p50/p99 handler time over the last second, refused, ' +
    'closed, handler errors), then one row per connection, sorted (largest first; age: oldest first), ' +
    "with the kernel's TCP state and retransmissions from TCP_INFO.\n\n" +
    'On a terminal the screen is redrawn until Ctrl-C; otherwise each refresh is printed after a blank ' +
    'line. --json prints one line per refresh, {"summary":…,"connections":…} as the endpoint gives ' +
    'them, for scripts (with --count 1: once).',
  options: {
    host: { type: 'string', default: '127.0.0.1', arg: 'HOST', help: 'where the admin endpoint listens' },
    port: { type: 'string', arg: 'PORT', help: 'port of the admin endpoint (serve --metrics-port)' },
    sort: { type: 'string', default: 'age', arg: 'KEY', help: `order of the rows: ${SORTS.join(', ')}` },
    limit: { type: 'string', default: '20', arg: 'N', help: 'rows shown' },
    interval: { type: 'string', default: '1000', arg: 'MS', help: 'time between refreshes' },
    count: { type: 'string', arg: 'N', help: 'stop after N refreshes (default: until Ctrl-C)' },
    json: { type: 'boolean', help: 'one JSON line per refresh' },
  },
  examples: [
    ['longlink top --port 9100', 'the connections of `longlink serve --metrics-port 9100`, live'],
    ['longlink top --port 9100 --sort rtt --limit 10', 'the ten slowest peers'],
    ['longlink top --port 9100 --json --count 1 | jq .summary', 'one reading, for a script'],
  ],
  async run(args: ParsedArgs, io: Io): Promise<number> {
    if (args.values.port === undefined)
      throw new UsageError('--port P is needed (the admin endpoint: serve --metrics-port P)');
    const port = portArg(args);
    const host = stringArg(args, 'host') ?? '127.0.0.1';
    const sort = stringArg(args, 'sort') ?? 'age';
    if (!SORTS.includes(sort as ConnectionSort)) {
      throw new UsageError(`--sort must be one of ${SORTS.join(', ')}, got ${JSON.stringify(sort)}`);
    }
    const limit = intArg(args, 'limit', 1, 10_000);
    const interval = intArg(args, 'interval', 100, 3_600_000);
    const times = args.values.count === undefined ? Number.POSITIVE_INFINITY : intArg(args, 'count', 1);
    const json = args.values.json === true;
    const tty = process.stdout.isTTY === true && !json;
    const stop = new AbortController();
    const dispose = onInterrupt(
      () => stop.abort(),
      (signal) => process.exit(signal === 'SIGTERM' ? 143 : 130),
    );
    try {
      for (let i = 0; i < times && !stop.signal.aborted; i++) {
        const [summary, connections] = await Promise.all([
          getJson<AdminSummary>(host, port, '/api/summary', 5000, summaryShape),
          getJson<AdminConnections>(
            host,
            port,
            `/api/connections?sort=${sort}&limit=${limit}`,
            5000,
            connectionsShape,
          ),
        ]);
        if (json) io.out(JSON.stringify({ summary, connections }));
        else {
          const lines = [headerLine(summary), '', ...connectionTable(connections)];
          if (tty) process.stdout.write('\x1b[H\x1b[2J');
          else if (i > 0) io.out('');
          for (const l of lines) io.out(l);
        }
        if (i + 1 < times) await sleep(interval, undefined, { signal: stop.signal }).catch(() => {});
      }
      return EXIT.OK;
    } finally {
      dispose();
    }
  },
};
