/**
 * The kernel's TCP table, as `netstat` and `ss` show it: state, send and receive queues per
 * socket, read from /proc/net/tcp and /proc/net/tcp6 (Linux; see proc(5)).
 *
 * Reading the table costs tens of milliseconds on a busy host (20–43 ms measured with 5–12k
 * sockets), so it is for the CLI, diagnostics and tests — never on a connection's hot path, which
 * uses the per-socket ioctls in sockopt.ts instead. The read is asynchronous.
 */

import { readFile } from 'node:fs/promises';
import { TCP_STATES, type TcpState } from './sockopt.js';

/** One socket of the kernel's TCP table. */
export interface TcpEntry {
  state: TcpState;
  localAddress: string;
  localPort: number;
  remoteAddress: string;
  remotePort: number;
  /** Send queue: bytes not yet acknowledged by the peer (netstat's Send-Q). */
  txQueue: number;
  /** Receive queue: bytes not yet read by the application (netstat's Recv-Q); for LISTEN, the accept backlog. */
  rxQueue: number;
  /** Socket inode, 0 for TIME_WAIT and orphaned sockets (no process holds them). */
  inode: number;
}

function ipv4(hex: string): string {
  // Stored as a host-order (little-endian on x86/arm) 32-bit word.
  const n = Number.parseInt(hex, 16);
  return `${n & 0xff}.${(n >>> 8) & 0xff}.${(n >>> 16) & 0xff}.${n >>> 24}`;
}

function ipv6(hex: string): string {
  // Four host-order 32-bit words.
  const bytes: number[] = [];
  for (let w = 0; w < 4; w++) {
    const n = Number.parseInt(hex.slice(w * 8, w * 8 + 8), 16);
    bytes.push(n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, n >>> 24);
  }
  if (bytes.slice(0, 10).every((b) => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff) {
    return `::ffff:${bytes.slice(12).join('.')}`;
  }
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((((bytes[i] ?? 0) << 8) | (bytes[i + 1] ?? 0)).toString(16));
  // Compress the longest run of zero groups, as inet_ntop does.
  let best = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== '0') {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === '0') j++;
    if (j - i > bestLen && j - i > 1) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  if (best < 0) return groups.join(':');
  return `${groups.slice(0, best).join(':')}::${groups.slice(best + bestLen).join(':')}`;
}

function endpoint(field: string, v6: boolean): [string, number] {
  const [addr = '', port = '0'] = field.split(':');
  return [v6 ? ipv6(addr) : ipv4(addr), Number.parseInt(port, 16)];
}

/** Parses the text of /proc/net/tcp or /proc/net/tcp6. */
export function parseTcpTable(text: string, v6: boolean): TcpEntry[] {
  const out: TcpEntry[] = [];
  const lines = text.split('\n');
  for (let i = 1; i < lines.length; i++) {
    const f = (lines[i] ?? '').trim().split(/\s+/);
    if (f.length < 10) continue;
    const [localAddress, localPort] = endpoint(f[1] ?? '', v6);
    const [remoteAddress, remotePort] = endpoint(f[2] ?? '', v6);
    const [tx = '0', rx = '0'] = (f[4] ?? '').split(':');
    out.push({
      state: TCP_STATES[Number.parseInt(f[3] ?? '0', 16)] ?? 'UNKNOWN',
      localAddress,
      localPort,
      remoteAddress,
      remotePort,
      txQueue: Number.parseInt(tx, 16),
      rxQueue: Number.parseInt(rx, 16),
      inode: Number.parseInt(f[9] ?? '0', 10),
    });
  }
  return out;
}

/** Filter for {@link readTcpTable}: every given field must match. */
export interface TcpFilter {
  localPort?: number;
  remotePort?: number;
  /** Either end's port. */
  port?: number;
  state?: TcpState;
}

/**
 * Reads the kernel TCP table (IPv4 and IPv6) of this process's network namespace.
 * Resolves to [] where /proc/net/tcp does not exist (non-Linux).
 */
export async function readTcpTable(filter: TcpFilter = {}): Promise<TcpEntry[]> {
  const read = (p: string) => readFile(p, 'utf8').catch(() => '');
  const [t4, t6] = await Promise.all([read('/proc/net/tcp'), read('/proc/net/tcp6')]);
  const all = parseTcpTable(t4, false).concat(parseTcpTable(t6, true));
  return all.filter(
    (e) =>
      (filter.localPort === undefined || e.localPort === filter.localPort) &&
      (filter.remotePort === undefined || e.remotePort === filter.remotePort) &&
      (filter.port === undefined || e.localPort === filter.port || e.remotePort === filter.port) &&
      (filter.state === undefined || e.state === filter.state),
  );
}

/** The entry for one connection, by its two ports (loopback tests), or undefined if gone. */
export async function findConnection(localPort: number, remotePort: number): Promise<TcpEntry | undefined> {
  const rows = await readTcpTable({ localPort, remotePort });
  return rows[0];
}
