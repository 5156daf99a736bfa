/**
 * `longlink experiment close --mode M`: the sources' close experiment (seed 002) on demand. A
 * client writes 200,000 bytes to a server that does not read, then closes in mode M; the kernel's
 * TCP table is printed at each step, as the sources printed `netstat`, and the peer finally reads
 * to show what arrived.
 */

import { once } from 'node:events';
import net from 'node:net';
import { parseFraming } from '../codec/parse.js';
import { Connection } from '../connection/connection.js';
import { readTcpTable, type TcpEntry } from '../sys/tcp-table.js';
import { type Command, endpoint, type Io, intArg, type ParsedArgs, stringArg, UsageError } from './args.js';

export type ExperimentMode = 'graceful' | 'abort' | 'linger' | 'linger-reading';

export const EXPERIMENT_MODES: readonly ExperimentMode[] = ['graceful', 'abort', 'linger', 'linger-reading'];

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function table(rows: Array<TcpEntry & { role: string }>, log: (l: string) => void): void {
  log(
    `    ${'side'.padEnd(7)} ${'state'.padEnd(12)} ${'local'.padEnd(22)} ${'remote'.padEnd(22)} ${'Send-Q'.padStart(8)} ${'Recv-Q'.padStart(8)}`,
  );
  for (const r of rows) {
    log(
      `    ${r.role.padEnd(7)} ${r.state.padEnd(12)} ${endpoint(r.localAddress, r.localPort).padEnd(22)} ${endpoint(r.remoteAddress, r.remotePort).padEnd(22)} ${String(r.txQueue).padStart(8)} ${String(r.rxQueue).padStart(8)}`,
    );
  }
  if (rows.length === 0) log('    (no connection left in the kernel)');
}

/** Runs one close experiment; resolves with the exit code. */
export async function closeExperiment(
  mode: ExperimentMode,
  o: { bytes: number; lingerMs: number; log: (l: string) => void },
): Promise<number> {
  const log = o.log;
  const server = net.createServer({ pauseOnConnect: true, allowHalfOpen: true });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as net.AddressInfo).port;
  const accepted = once(server, 'connection') as Promise<[net.Socket]>;
  const conn = await Connection.connect({ port, framing: parseFraming('u32be') });
  const [peer] = await accepted;
  peer.on('error', () => {});
  // Just this experiment's two sockets: (client port → server port) and back.
  const cport = conn.localPort ?? 0;
  const show = async (title: string) => {
    log(title);
    const rows = await readTcpTable({ port });
    const client = rows.filter((r) => r.localPort === cport && r.remotePort === port);
    const server = rows.filter((r) => r.localPort === port && r.remotePort === cport);
    table(
      [...client.map((r) => ({ ...r, role: 'client' })), ...server.map((r) => ({ ...r, role: 'server' }))],
      log,
    );
  };

  log(`experiment: ${o.bytes} bytes to a server that does not read, then ${mode} (sources: seed 002)`);
  // Frames of up to 64 KiB whose wire bytes (4-byte header + payload) add up to o.bytes.
  for (let left = o.bytes; left > 0; ) {
    const payload = Math.max(0, Math.min(64 * 1024, left) - 4);
    conn.send(Buffer.alloc(payload, 0x61));
    left -= payload + 4;
  }
  while (conn.bufferedAmount > 0) await sleep(5);
  await sleep(100); // let delayed ACKs settle
  await show('1. all bytes handed to the kernel; nobody reads:');

  let reading = false;
  const received = new Promise<{ bytes: number; how: string }>((resolve) => {
    let bytes = 0;
    peer.on('data', (d: Buffer) => {
      bytes += d.length;
    });
    peer.on('end', () => {
      peer.end(); // answer the FIN: our graceful close is waiting for it
      resolve({ bytes, how: 'clean end (FIN)' });
    });
    peer.on('error', (e: NodeJS.ErrnoException) => resolve({ bytes, how: `error ${e.code}` }));
  });
  const t0 = performance.now();
  let closing: Promise<unknown>;
  switch (mode) {
    case 'graceful':
      closing = conn.close({ timeoutMs: 30_000 });
      break;
    case 'abort':
      conn.abort();
      closing = conn.closed;
      break;
    case 'linger':
      closing = conn.linger(o.lingerMs);
      break;
    case 'linger-reading':
      reading = true;
      peer.resume();
      closing = conn.linger(o.lingerMs);
      break;
  }
  await sleep(mode === 'linger' ? Math.min(200, o.lingerMs / 2) : 100);
  await show(
    `2. right after ${mode === 'abort' ? 'abort()' : mode === 'graceful' ? 'close()' : `linger(${o.lingerMs})`}:`,
  );

  if (mode === 'linger') {
    await closing;
    await show(`3. after the linger deadline (${(performance.now() - t0).toFixed(0)} ms):`);
  }
  if (!reading) {
    if (mode === 'abort') peer.write('x'); // the peer's next operation sees the reset
    peer.resume();
  }
  const info = await conn.closed;
  const got = await received;
  await show('4. after the peer read what it could:');
  log('');
  log(
    `close: reason=${info.reason} initiator=${info.initiator} graceful=${info.graceful} unsentBytes=${info.unsentBytes}${info.unsentKnown ? '' : ' (kernel queue unknown)'} after ${info.durationMs.toFixed(0)} ms`,
  );
  log(`peer:  received ${got.bytes} of ${o.bytes} bytes, then ${got.how}`);
  server.close();
  return 0;
}

export const experimentCommand: Command = {
  name: 'experiment',
  summary: "the sources' close experiment: N bytes to a peer that does not read, then a close mode",
  usage: ['close [--mode graceful|abort|linger|linger-reading] [--bytes N] [--linger MS]'],
  description:
    "The sources' close experiment (seed 002) on loopback: a client writes N bytes to a server that " +
    "does not read, then closes in the chosen mode; the kernel's TCP table (state, Send-Q, Recv-Q) is " +
    'printed at each step, as the sources printed netstat, and the peer finally reads to show what ' +
    'arrived. Linux (/proc/net/tcp).',
  positionals: true,
  options: {
    mode: {
      type: 'string',
      default: 'graceful',
      arg: 'MODE',
      help: 'graceful (FIN after the queue), abort (RST), linger (RST at the deadline) or linger-reading',
    },
    bytes: { type: 'string', default: '200000', arg: 'N', help: 'bytes to write (at least 4)' },
    linger: { type: 'string', default: '2000', arg: 'MS', help: 'the linger deadline' },
  },
  examples: [
    [
      'longlink experiment close',
      'FIN_WAIT1 with data queued on one side, ESTABLISHED with data unread on the other',
    ],
    [
      'longlink experiment close --mode abort',
      'the connection vanishes at once: RST, queue discarded, no TIME_WAIT',
    ],
  ],
  run(args: ParsedArgs, io: Io): Promise<number> {
    const [name, ...extra] = args.positionals;
    if (name !== 'close') {
      throw new UsageError(
        name === undefined
          ? 'experiment needs a name: close'
          : `unknown experiment ${JSON.stringify(name)} (there is: close)`,
      );
    }
    if (extra.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(extra[0])}`);
    const mode = stringArg(args, 'mode') as ExperimentMode;
    if (!EXPERIMENT_MODES.includes(mode)) {
      throw new UsageError(
        `--mode must be one of ${EXPERIMENT_MODES.join(', ')}, got ${JSON.stringify(mode)}`,
      );
    }
    return closeExperiment(mode, {
      bytes: intArg(args, 'bytes', 4, 1 << 30),
      lingerMs: intArg(args, 'linger', 0),
      log: io.out,
    });
  },
};
