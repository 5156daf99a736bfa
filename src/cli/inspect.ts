/** `longlink inspect`: the kernel's TCP table for a port, like netstat. */

import { readTcpTable } from '../sys/tcp-table.js';
import { type Command, EXIT, endpoint, type Io, type ParsedArgs, portArg } from './args.js';

export const inspectCommand: Command = {
  name: 'inspect',
  summary: "the kernel's TCP table (state, send/receive queues) for a port, like netstat",
  usage: ['[--port P]'],
  description:
    'Every TCP socket the kernel knows (IPv4 and IPv6) whose local or remote port is P — or all of ' +
    'them — with its state (ESTABLISHED, TIME_WAIT, CLOSE_WAIT …), Send-Q (bytes not yet acknowledged ' +
    'by the peer) and Recv-Q (bytes not yet read by the application; the accept backlog for LISTEN). ' +
    'Read from /proc/net/tcp and /proc/net/tcp6 (Linux).',
  options: {
    port: { type: 'string', arg: 'PORT', help: 'only sockets with this local or remote port' },
  },
  examples: [['longlink inspect --port 7070', 'the server and its clients, as netstat -tn would show them']],
  async run(args: ParsedArgs, io: Io): Promise<number> {
    const port = args.values.port === undefined ? undefined : portArg(args);
    const rows = await readTcpTable(port === undefined ? {} : { port });
    const width = Math.max(22, ...rows.map((r) => endpoint(r.localAddress, r.localPort).length));
    io.out(
      `${'state'.padEnd(12)} ${'local'.padEnd(width)} ${'remote'.padEnd(width)} ${'send-q'.padStart(8)} ${'recv-q'.padStart(8)}`,
    );
    for (const r of rows) {
      io.out(
        `${r.state.padEnd(12)} ${endpoint(r.localAddress, r.localPort).padEnd(width)} ${endpoint(r.remoteAddress, r.remotePort).padEnd(width)} ${String(r.txQueue).padStart(8)} ${String(r.rxQueue).padStart(8)}`,
      );
    }
    return EXIT.OK;
  },
};
