/**
 * `longlink doctor`: the host limits that decide how many long connections fit, each with a
 * verdict and the command that fixes it. Readings come straight from /proc and /proc/sys (proc(5));
 * the verdicts are a pure function of the readings (`assessHost`), tested with made-up hosts.
 *
 * What a long connection costs, and where the figures come from:
 * - one file descriptor per connection end (a socket is a file);
 * - user space: ~10 KB per connection end in a longlink process with 30 s heartbeats, plus ~55 MB
 *   per process (docs/benchmarks-heartbeat.md, "Connections held with 30 s heartbeats": 9.3 KB per
 *   connection end at 300,000 connections, 3.4–7.6 KB at 100,000; the larger figure is used);
 * - kernel: ~4.5 KB of slab per idle socket (struct sock, file, inode, epoll item), measured on the
 *   same 2-core machine with 18,000 idle loopback sockets (/proc/meminfo Slab, 4.4–4.9 KB);
 * - socket buffers only while data waits (an idle connection holds none; net.ipv4.tcp_mem bounds
 *   them for the whole host).
 */

import { readFile } from 'node:fs/promises';
import { type Command, CommandFailed, count, EXIT, type Io, intArg, type ParsedArgs, wrap } from './args.js';

/** Descriptors a Node process uses besides its connections (stdio, epoll, libuv's pipes, files …). */
export const FD_RESERVE = 100;
/** User-space bytes per connection end, and per process (docs/benchmarks-heartbeat.md). */
export const USER_BYTES_PER_CONNECTION = 10 * 1024;
export const USER_BYTES_PER_PROCESS = 55 * 1024 * 1024;
/** Kernel slab per idle socket, measured here (see the module comment). */
export const KERNEL_BYTES_PER_CONNECTION = 4.5 * 1024;
/** Node's default listen() backlog (lib/net.js). */
const NODE_DEFAULT_BACKLOG = 511;

export const COST_SOURCE =
  'docs/benchmarks-heartbeat.md (≈10 KB per connection end in user space + 55 MB per process, measured holding ' +
  '100,000–300,000 connections with 30 s heartbeats) + ≈4.5 KB of kernel slab per idle socket (measured on the same machine)';

/** What doctor reads; a field is undefined when its file could not be read. */
export interface HostReadings {
  kernel?: string;
  /** RLIMIT_NOFILE of this (Node) process, after Node raised its soft limit to the hard one. */
  nofileSoft?: number;
  nofileHard?: number;
  /** The soft limit of the process that started us (the shell), which Node does not show. */
  parentNofileSoft?: number;
  /** fs.file-max, fs.nr_open, and the files allocated now (first field of fs.file-nr). */
  fileMax?: number;
  nrOpen?: number;
  filesAllocated?: number;
  somaxconn?: number;
  portRange?: [number, number];
  twReuse?: number;
  finTimeout?: number;
  keepaliveTime?: number;
  keepaliveIntvl?: number;
  keepaliveProbes?: number;
  maxTwBuckets?: number;
  /** From /proc/net/sockstat: TCP sockets in use, in TIME_WAIT, and buffer pages in use. */
  tcpInUse?: number;
  timeWait?: number;
  tcpMemPages?: number;
  /** net.ipv4.tcp_mem: low, pressure, high, in pages. */
  tcpMem?: [number, number, number];
  pageSize?: number;
  /** Present only when nf_conntrack is loaded. */
  conntrackMax?: number;
  conntrackCount?: number;
  conntrackEstablishedTimeout?: number;
  memAvailableKb?: number;
  memTotalKb?: number;
}

export type Verdict = 'ok' | 'warn' | 'fail';

export interface Check {
  id: string;
  /** What was checked: the sysctl or limit's name. */
  title: string;
  verdict: Verdict;
  /** The reading and what it means for `connections`, in words. */
  message: string;
  /** Commands (or config lines) that fix a warn/fail; empty when ok. */
  fix: string[];
}

const RANK: Readonly<Record<Verdict, number>> = { ok: 0, warn: 1, fail: 2 };

export function worst(checks: readonly Check[]): Verdict {
  let v: Verdict = 'ok';
  for (const c of checks) if (RANK[c.verdict] > RANK[v]) v = c.verdict;
  return v;
}

function kb(bytes: number): string {
  return bytes >= 1024 ** 3
    ? `${(bytes / 1024 ** 3).toFixed(1)} GiB`
    : bytes >= 1024 ** 2
      ? `${(bytes / 1024 ** 2).toFixed(0)} MiB`
      : `${(bytes / 1024).toFixed(0)} KiB`;
}

function hms(seconds: number): string {
  if (seconds >= 86_400 && seconds % 3600 === 0) return `${seconds / 86_400} d`;
  if (seconds >= 3600) {
    const min = Math.round((seconds % 3600) / 60);
    return `${Math.floor(seconds / 3600)} h${min > 0 ? ` ${min} min` : ''}`;
  }
  if (seconds >= 120) return `${Math.round(seconds / 60)} min`;
  return `${seconds} s`;
}

/** Rounded up to a tidy figure, for the limits a fix proposes. */
function tidy(n: number): number {
  const step = n > 100_000 ? 10_000 : n > 10_000 ? 1000 : 100;
  return Math.ceil(n / step) * step;
}

const SYSCTL_KEEP =
  'sysctl -w lasts until reboot: the same key = value in /etc/sysctl.d/90-longlink.conf keeps it';

/**
 * The verdicts for holding `connections` long connections in one process on this host. Pure: every
 * input is in `r`, so a test can hand it any host. Checks whose readings are missing are left out,
 * except the open-files limit, which is always reported.
 */
export function assessHost(r: HostReadings, connections: number): Check[] {
  const n = connections;
  const checks: Check[] = [];
  const add = (id: string, title: string, verdict: Verdict, message: string, fix: string[] = []) =>
    checks.push({ id, title, verdict, message, fix: verdict === 'ok' ? [] : fix });
  const need = n + FD_RESERVE;

  // Open files. Node raises its soft limit to the hard one at startup (src/node.cc), so for a
  // longlink process the hard limit is the one that counts; the shell's soft limit is shown
  // because it is what `ulimit -n` prints there.
  if (r.nofileHard === undefined) {
    add('nofile', 'open files per process', 'warn', 'cannot read /proc/self/limits', []);
  } else {
    const hard = r.nofileHard;
    const shell =
      r.parentNofileSoft !== undefined && r.parentNofileSoft !== hard
        ? `; the shell's soft limit ${count(r.parentNofileSoft)} does not matter: Node raises its own to the hard limit at startup`
        : '';
    const fixes = [
      `ulimit -Hn ${tidy(need)} && ulimit -n ${tidy(need)}   (as root, in the shell that starts the service)`,
      `LimitNOFILE=${tidy(need)}   (systemd: in the unit's [Service] section)`,
      `prlimit --pid <pid> --nofile=${tidy(need)}:${tidy(need)}   (a running process, as root)`,
    ];
    if (hard >= need) {
      add(
        'nofile',
        'open files per process',
        'ok',
        `hard limit ${count(hard)}: ${count(n)} connections + ${FD_RESERVE} for the process fit${shell}`,
      );
    } else {
      add(
        'nofile',
        'open files per process',
        'fail',
        `hard limit ${count(hard)} < ${count(need)} (${count(n)} connections + ${FD_RESERVE} for the process): ` +
          `accept() and connect() fail with EMFILE past ~${count(Math.max(0, hard - FD_RESERVE))} connections${shell}; ` +
          'raise the limit, or spread the connections over several processes',
        fixes,
      );
    }
  }

  if (r.nrOpen !== undefined) {
    if (r.nrOpen >= need) {
      add('nr_open', 'fs.nr_open', 'ok', `${count(r.nrOpen)}: the ceiling of any process's open-files limit`);
    } else {
      add(
        'nr_open',
        'fs.nr_open',
        'fail',
        `${count(r.nrOpen)} < ${count(need)}: no process may have more open files, whatever its limit`,
        [`sysctl -w fs.nr_open=${tidy(need)}`, '(then raise the hard open-files limit as above)'],
      );
    }
  }

  if (r.fileMax !== undefined) {
    const used = r.filesAllocated ?? 0;
    const after = used + n;
    // 64-bit kernels default to LONG_MAX: no limit in practice.
    const max = r.fileMax >= 2 ** 62 ? 'no limit' : `${count(r.fileMax)} files`;
    const msg = `${max} for the whole system, ${count(used)} open now: ${count(n)} more make ${count(after)}`;
    const fix = [`sysctl -w fs.file-max=${tidy(after * 2)}`];
    if (after > r.fileMax) add('file-max', 'fs.file-max', 'fail', `${msg}, over the limit (ENFILE)`, fix);
    else if (after > r.fileMax * 0.8) add('file-max', 'fs.file-max', 'warn', `${msg}, over 80 % of it`, fix);
    else add('file-max', 'fs.file-max', 'ok', msg);
  }

  if (r.somaxconn !== undefined) {
    const s = r.somaxconn;
    const effective = Math.min(s, NODE_DEFAULT_BACKLOG);
    if (s < NODE_DEFAULT_BACKLOG) {
      add(
        'somaxconn',
        'net.core.somaxconn',
        'warn',
        `${count(s)}: caps the accept queue below Node's default backlog (${NODE_DEFAULT_BACKLOG}); when many clients ` +
          'reconnect at once (a server restart) the queue overflows, SYNs are dropped and those clients wait for ' +
          "TCP's 1 s SYN retransmission",
        ['sysctl -w net.core.somaxconn=4096', 'and listen({ backlog: 4096 }) in the server'],
      );
    } else {
      add(
        'somaxconn',
        'net.core.somaxconn',
        'ok',
        `${count(s)}: accept queue up to ${count(effective)} with Node's default backlog` +
          (s > NODE_DEFAULT_BACKLOG
            ? `; listen({ backlog: ${s} }) takes all of it for reconnect storms`
            : ''),
      );
    }
  }

  if (r.portRange !== undefined) {
    const [lo, hi] = r.portRange;
    const ports = Math.max(0, hi - lo + 1);
    const base = `${lo}–${hi}: ${count(ports)} ports per source address for each server address:port a client connects to`;
    if (n <= ports) {
      add(
        'ports',
        'net.ipv4.ip_local_port_range',
        'ok',
        `${base}; a client opening ${count(n)} connections to one server fits (servers use no ephemeral ports)`,
      );
    } else {
      add(
        'ports',
        'net.ipv4.ip_local_port_range',
        'warn',
        `${base}; if this host is the client, ${count(n)} connections to one server need ${Math.ceil(n / ports)} source addresses ` +
          '(connection: { localAddress }) or a wider range — EADDRNOTAVAIL past it. A server is not limited by this',
        ['sysctl -w net.ipv4.ip_local_port_range="1024 65535"'],
      );
    }
  }

  if (r.twReuse !== undefined) {
    const tw =
      r.timeWait === undefined
        ? ''
        : `; ${count(r.timeWait)} sockets in TIME_WAIT now${r.maxTwBuckets === undefined ? '' : ` (at most ${count(r.maxTwBuckets)})`}`;
    const meaning =
      r.twReuse === 1
        ? 'on: a client may reuse a port still in TIME_WAIT for a new connection'
        : r.twReuse === 2
          ? 'loopback only (the default): a client reconnecting to a remote server waits out TIME_WAIT (60 s) for each port'
          : 'off: every closed client port waits out TIME_WAIT (60 s) before reuse';
    const fix = [
      'sysctl -w net.ipv4.tcp_tw_reuse=1   (matters on clients that reconnect often; connection reuse is the cure)',
    ];
    const piling =
      r.timeWait !== undefined &&
      r.portRange !== undefined &&
      r.timeWait > (r.portRange[1] - r.portRange[0] + 1) / 2;
    if (r.twReuse === 0 || piling) {
      add(
        'tw_reuse',
        'net.ipv4.tcp_tw_reuse',
        'warn',
        `${r.twReuse} — ${meaning}${tw}${piling ? ': over half the ephemeral ports' : ''}`,
        fix,
      );
    } else add('tw_reuse', 'net.ipv4.tcp_tw_reuse', 'ok', `${r.twReuse} — ${meaning}${tw}`);
  }

  if (r.finTimeout !== undefined) {
    const msg = `${r.finTimeout} s in FIN_WAIT2 for a socket closed by us whose peer never closes (not the TIME_WAIT length, which Linux fixes at 60 s)`;
    if (r.finTimeout > 60) {
      add(
        'fin_timeout',
        'net.ipv4.tcp_fin_timeout',
        'warn',
        `${msg}: above the default 60 s, orphans pile up`,
        ['sysctl -w net.ipv4.tcp_fin_timeout=30'],
      );
    } else add('fin_timeout', 'net.ipv4.tcp_fin_timeout', 'ok', msg);
  }

  if (r.keepaliveTime !== undefined && r.keepaliveIntvl !== undefined && r.keepaliveProbes !== undefined) {
    const detect = r.keepaliveTime + r.keepaliveIntvl * r.keepaliveProbes;
    const msg =
      `first probe after ${hms(r.keepaliveTime)} idle, then ${r.keepaliveProbes} × ${r.keepaliveIntvl} s: a dead peer is noticed after ` +
      `${hms(detect)} on sockets with SO_KEEPALIVE and no settings of their own. longlink sets its own ` +
      '(60 s, 10 s × 6) and does not rely on it: its heartbeat notices within timeoutMs';
    const ct = r.conntrackEstablishedTimeout;
    if (ct !== undefined && ct < r.keepaliveTime) {
      add(
        'keepalive',
        'net.ipv4.tcp_keepalive_*',
        'warn',
        `${msg}; but this host's conntrack forgets idle flows after ${hms(ct)}, before the first probe: ` +
          'keepalive-only connections through it die',
        [`sysctl -w net.ipv4.tcp_keepalive_time=${Math.max(10, Math.floor(ct / 2))}`],
      );
    } else add('keepalive', 'net.ipv4.tcp_keepalive_*', 'ok', msg);
  }

  if (r.conntrackMax !== undefined) {
    const used = r.conntrackCount ?? 0;
    const after = used + n;
    const idle =
      r.conntrackEstablishedTimeout === undefined
        ? ''
        : `; idle established flows are forgotten after ${hms(r.conntrackEstablishedTimeout)} (nf_conntrack_tcp_timeout_established)`;
    const msg = `nf_conntrack is loaded: ${count(used)} of ${count(r.conntrackMax)} entries in use, ${count(n)} connections make ${count(after)}${idle}`;
    const fix = [`sysctl -w net.netfilter.nf_conntrack_max=${tidy(after * 1.5)}`];
    if (after > r.conntrackMax) {
      add(
        'conntrack',
        'net.netfilter.nf_conntrack_max',
        'fail',
        `${msg}: over the limit — the kernel drops new flows ("nf_conntrack: table full, dropping packet")`,
        fix,
      );
    } else if (after > r.conntrackMax * 0.8) {
      add('conntrack', 'net.netfilter.nf_conntrack_max', 'warn', `${msg}: over 80 % of it`, fix);
    } else add('conntrack', 'net.netfilter.nf_conntrack_max', 'ok', msg);
  }

  if (r.tcpMem !== undefined && r.tcpMemPages !== undefined) {
    const page = r.pageSize ?? 4096;
    const [, pressure, high] = r.tcpMem;
    const msg =
      `socket buffers use ${kb(r.tcpMemPages * page)} now; pressure at ${kb(pressure * page)}, hard limit ${kb(high * page)} ` +
      '(idle connections hold no buffers; slow readers do)';
    if (r.tcpMemPages >= high) {
      add('tcp_mem', 'net.ipv4.tcp_mem', 'fail', `${msg}: at the hard limit, sends fail`, [
        `sysctl -w net.ipv4.tcp_mem="${r.tcpMem[0]} ${pressure * 2} ${high * 2}"`,
      ]);
    } else if (r.tcpMemPages >= pressure) {
      add('tcp_mem', 'net.ipv4.tcp_mem', 'warn', `${msg}: under memory pressure, buffers are shrunk`, [
        `sysctl -w net.ipv4.tcp_mem="${r.tcpMem[0]} ${pressure * 2} ${high * 2}"`,
      ]);
    } else add('tcp_mem', 'net.ipv4.tcp_mem', 'ok', msg);
  }

  if (r.memAvailableKb !== undefined) {
    const avail = r.memAvailableKb * 1024;
    const per = USER_BYTES_PER_CONNECTION + KERNEL_BYTES_PER_CONNECTION;
    const fits = Math.max(0, Math.floor((avail - USER_BYTES_PER_PROCESS) / per));
    const need = n * per + USER_BYTES_PER_PROCESS;
    const msg =
      `${kb(avail)} available: about ${count(fits)} idle connections fit at ≈${(per / 1024).toFixed(1)} KB each ` +
      `(${(USER_BYTES_PER_CONNECTION / 1024).toFixed(0)} KB in the process + ${(KERNEL_BYTES_PER_CONNECTION / 1024).toFixed(1)} KB in the kernel; ` +
      `figures from docs/benchmarks-heartbeat.md and doctor's own measurement); ${count(n)} take ≈${kb(need)}`;
    if (fits < n) {
      add('memory', 'memory (MemAvailable)', 'fail', `${msg}: not enough`, [
        'add memory, or spread the connections over more hosts',
      ]);
    } else if (fits < 2 * n) {
      add(
        'memory',
        'memory (MemAvailable)',
        'warn',
        `${msg}: less than 2× headroom for buffered data and bursts`,
        ['add memory, or hold fewer connections per host'],
      );
    } else add('memory', 'memory (MemAvailable)', 'ok', msg);
  }
  return checks;
}

// ---------------------------------------------------------------------------------------------
// Readings

async function text(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch {
    return undefined;
  }
}

async function num(path: string): Promise<number | undefined> {
  const t = await text(path);
  if (t === undefined) return undefined;
  const n = Number(t.trim().split(/\s+/)[0]);
  return Number.isFinite(n) ? n : undefined;
}

async function nums(path: string): Promise<number[] | undefined> {
  const t = await text(path);
  if (t === undefined) return undefined;
  const v = t.trim().split(/\s+/).map(Number);
  return v.every(Number.isFinite) ? v : undefined;
}

/** "Max open files  1024  20000  files" → [1024, 20000]; "unlimited" → Infinity. */
export function parseLimits(limits: string): { soft: number; hard: number } | undefined {
  const line = limits.split('\n').find((l) => l.startsWith('Max open files'));
  if (line === undefined) return undefined;
  const f = line.slice('Max open files'.length).trim().split(/\s+/);
  const v = (s: string | undefined) => (s === 'unlimited' ? Number.POSITIVE_INFINITY : Number(s));
  const soft = v(f[0]);
  const hard = v(f[1]);
  return Number.isNaN(soft) || Number.isNaN(hard) ? undefined : { soft, hard };
}

/** /proc/net/sockstat's TCP line: `TCP: inuse 7 orphan 0 tw 10 alloc 7 mem 0`. */
export function parseSockstat(t: string): { inuse?: number; tw?: number; mem?: number } {
  const line = t.split('\n').find((l) => l.startsWith('TCP:'));
  if (line === undefined) return {};
  const f = line.split(/\s+/);
  const field = (k: string) => {
    const i = f.indexOf(k);
    return i < 0 ? undefined : Number(f[i + 1]);
  };
  const out: { inuse?: number; tw?: number; mem?: number } = {};
  const inuse = field('inuse');
  const tw = field('tw');
  const mem = field('mem');
  if (inuse !== undefined) out.inuse = inuse;
  if (tw !== undefined) out.tw = tw;
  if (mem !== undefined) out.mem = mem;
  return out;
}

/** Reads the host: /proc/self/limits, /proc/sys/…, /proc/net/sockstat, /proc/meminfo. No shelling out. */
export async function readHost(): Promise<HostReadings> {
  const r: HostReadings = {};
  const set = <K extends keyof HostReadings>(k: K, v: HostReadings[K] | undefined) => {
    if (v !== undefined) r[k] = v;
  };
  set('kernel', (await text('/proc/sys/kernel/osrelease'))?.trim());
  const self = await text('/proc/self/limits');
  const lim = self === undefined ? undefined : parseLimits(self);
  set('nofileSoft', lim?.soft);
  set('nofileHard', lim?.hard);
  const parent = await text(`/proc/${process.ppid}/limits`);
  set('parentNofileSoft', parent === undefined ? undefined : parseLimits(parent)?.soft);
  set('fileMax', await num('/proc/sys/fs/file-max'));
  set('nrOpen', await num('/proc/sys/fs/nr_open'));
  set('filesAllocated', (await nums('/proc/sys/fs/file-nr'))?.[0]);
  set('somaxconn', await num('/proc/sys/net/core/somaxconn'));
  const range = await nums('/proc/sys/net/ipv4/ip_local_port_range');
  if (range !== undefined && range.length >= 2) r.portRange = [range[0] as number, range[1] as number];
  set('twReuse', await num('/proc/sys/net/ipv4/tcp_tw_reuse'));
  set('finTimeout', await num('/proc/sys/net/ipv4/tcp_fin_timeout'));
  set('keepaliveTime', await num('/proc/sys/net/ipv4/tcp_keepalive_time'));
  set('keepaliveIntvl', await num('/proc/sys/net/ipv4/tcp_keepalive_intvl'));
  set('keepaliveProbes', await num('/proc/sys/net/ipv4/tcp_keepalive_probes'));
  set('maxTwBuckets', await num('/proc/sys/net/ipv4/tcp_max_tw_buckets'));
  const mem = await nums('/proc/sys/net/ipv4/tcp_mem');
  if (mem !== undefined && mem.length >= 3) r.tcpMem = [mem[0] as number, mem[1] as number, mem[2] as number];
  const sockstat = await text('/proc/net/sockstat');
  if (sockstat !== undefined) {
    const s = parseSockstat(sockstat);
    set('tcpInUse', s.inuse);
    set('timeWait', s.tw);
    set('tcpMemPages', s.mem);
  }
  // tcp_mem and sockstat count pages; 4 KiB on x86, 64 KiB on some arm64/ppc64 kernels.
  const smaps = await text('/proc/self/smaps');
  const page = smaps === undefined ? undefined : /^KernelPageSize:\s+(\d+) kB/m.exec(smaps)?.[1];
  r.pageSize = page === undefined ? 4096 : Number(page) * 1024;
  set('conntrackMax', await num('/proc/sys/net/netfilter/nf_conntrack_max'));
  set('conntrackCount', await num('/proc/sys/net/netfilter/nf_conntrack_count'));
  set(
    'conntrackEstablishedTimeout',
    await num('/proc/sys/net/netfilter/nf_conntrack_tcp_timeout_established'),
  );
  const meminfo = await text('/proc/meminfo');
  const field = (k: string) => {
    const m = new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(meminfo ?? '');
    return m ? Number(m[1]) : undefined;
  };
  set('memAvailableKb', field('MemAvailable'));
  set('memTotalKb', field('MemTotal'));
  return r;
}

// ---------------------------------------------------------------------------------------------
// The command

/** The report as text lines. */
export function renderChecks(checks: readonly Check[], connections: number, r: HostReadings): string[] {
  const lines = [
    `longlink doctor: can this host hold ${count(connections)} long connections in one process?` +
      ` (Linux ${r.kernel ?? '?'}, node ${process.version})`,
    '',
  ];
  const width = Math.max(...checks.map((c) => c.title.length)) + 2;
  const indent = ' '.repeat(6 + width);
  for (const c of checks) {
    const text = wrap(c.message, Math.max(40, 110 - indent.length));
    lines.push(`${c.verdict.padEnd(5)} ${c.title.padEnd(width)}${text[0] ?? ''}`);
    for (const t of text.slice(1)) lines.push(`${indent}${t}`);
    for (const f of c.fix) lines.push(`${indent}fix: ${f}`);
  }
  const warns = checks.filter((c) => c.verdict === 'warn').length;
  const fails = checks.filter((c) => c.verdict === 'fail').length;
  lines.push('');
  if (warns + fails === 0) lines.push(`all ${checks.length} checks ok.`);
  else {
    lines.push(
      `${fails > 0 ? `${fails} failed` : ''}${fails > 0 && warns > 0 ? ', ' : ''}${warns > 0 ? `${warns} warning${warns === 1 ? '' : 's'}` : ''}` +
        ` of ${checks.length} checks.`,
    );
    if (checks.some((c) => c.fix.some((f) => f.startsWith('sysctl -w')))) lines.push(`${SYSCTL_KEEP}.`);
  }
  lines.push(`per-connection cost: ${COST_SOURCE}.`);
  return lines;
}

export const doctorCommand: Command = {
  name: 'doctor',
  summary: 'the host limits that decide how many long connections fit, each with a verdict and its fix',
  usage: ['[--connections N] [--json]'],
  description:
    'Reads the limits that bound long connections — open files (the process, fs.nr_open, fs.file-max), ' +
    'net.core.somaxconn, the ephemeral port range, tcp_tw_reuse, tcp_fin_timeout, the keepalive sysctls, ' +
    'conntrack (when loaded), socket buffer memory and available memory — from /proc, and judges each ' +
    'against N connections held by one process: ok, warn or fail, with the command that fixes it ' +
    '(ulimit, sysctl -w, a systemd LimitNOFILE= line). Linux only.\n\n' +
    'Exit 0 when every check is ok, 1 when any warns or fails. --json prints the checks and the raw ' +
    'readings for scripts.',
  options: {
    connections: { type: 'string', default: '10000', arg: 'N', help: 'the connections you mean to hold' },
    json: { type: 'boolean', help: 'machine-readable output' },
  },
  examples: [
    ['longlink doctor', 'is this host ready for 10,000 connections?'],
    [
      'longlink doctor --connections 100000 --json | jq \'.checks[] | select(.verdict != "ok")\'',
      'what to fix for 100,000',
    ],
  ],
  async run(args: ParsedArgs, io: Io): Promise<number> {
    const connections = intArg(args, 'connections', 1);
    if (process.platform !== 'linux') {
      throw new CommandFailed(
        `reads /proc and /proc/sys, which this system (${process.platform}) does not have`,
      );
    }
    const readings = await readHost();
    const checks = assessHost(readings, connections);
    const verdict = worst(checks);
    if (args.values.json === true) {
      io.out(
        JSON.stringify(
          {
            connections,
            verdict,
            checks,
            readings,
            costs: {
              userBytesPerConnection: USER_BYTES_PER_CONNECTION,
              userBytesPerProcess: USER_BYTES_PER_PROCESS,
              kernelBytesPerConnection: KERNEL_BYTES_PER_CONNECTION,
              fdReserve: FD_RESERVE,
              source: COST_SOURCE,
            },
          },
          (_k, v) => (v === Number.POSITIVE_INFINITY ? 'unlimited' : v),
          2,
        ),
      );
    } else for (const line of renderChecks(checks, connections, readings)) io.out(line);
    return verdict === 'ok' ? EXIT.OK : EXIT.FAILED;
  },
};
