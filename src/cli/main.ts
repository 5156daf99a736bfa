#!/usr/bin/env node
/**
 * The longlink command line: serve, call, demo, inspect. `longlink help` lists them.
 */

import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { connect } from '../client/client.js';
import { readTcpTable } from '../sys/tcp-table.js';
import { demo } from './demo.js';
import { closeExperiment, EXPERIMENT_MODES, type ExperimentMode } from './experiment.js';
import { serve } from './serve.js';

const USAGE = `usage: longlink <command> [options]

  serve   [--host H] [--port P] [--framing longlink|ascii:20|u32be|line|…] [--grace MS]
          [--tls-cert F --tls-key F [--tls-ca F --tls-client-auth]]
          [--proxy-protocol --trusted-proxies CIDR[,CIDR]] [--max-connections-per-ip N]
          [--auth-token-file F]
          A longlink server with methods echo, sleep (ms), push ({topic,count}), whoami and stats;
          with a plain framing, an echo server for that framing. SIGTERM/SIGINT: graceful shutdown.
  call    [--host H] [--port P] [--timeout MS] [--credential C]
          [--tls-ca F [--tls-cert F --tls-key F] [--tls-servername N]] METHOD [JSON]
          One request; prints the result as JSON, or the error code and exits 1.
  demo    [--clients N] [--concurrency N] [--seconds S]
          A server process and clients doing real work, with a graceful server restart under load.
  inspect [--port P]
          The kernel's TCP table (state, send/receive queues) for sockets on a port, like netstat.
  experiment close [--mode graceful|abort|linger|linger-reading] [--bytes N] [--linger MS]
          The sources' close experiment: N bytes (default 200000) to a peer that does not read,
          then the close mode, with the kernel's TCP table printed at each step.
`;

function fail(message: string): number {
  process.stderr.write(`longlink: ${message}\n`);
  return 2;
}

function int(v: string | undefined, fallback: number, name: string): number {
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new Error(`--${name} must be a number >= 0, got ${v}`);
  return n;
}

const log = (line: string) => process.stdout.write(`${line}\n`);

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'serve': {
      const { values } = parseArgs({
        args: rest,
        options: {
          host: { type: 'string', default: '127.0.0.1' },
          port: { type: 'string', default: '7070' },
          framing: { type: 'string', default: 'longlink' },
          grace: { type: 'string', default: '10000' },
          'tls-cert': { type: 'string' },
          'tls-key': { type: 'string' },
          'tls-ca': { type: 'string' },
          'tls-client-auth': { type: 'boolean' },
          'proxy-protocol': { type: 'boolean' },
          'trusted-proxies': { type: 'string' },
          'max-connections-per-ip': { type: 'string' },
          'auth-token-file': { type: 'string' },
        },
      });
      const cert = values['tls-cert'];
      const key = values['tls-key'];
      if ((cert === undefined) !== (key === undefined)) return fail('--tls-cert and --tls-key go together');
      if (values['tls-client-auth'] && values['tls-ca'] === undefined) {
        return fail('--tls-client-auth needs --tls-ca (the CA that signs client certificates)');
      }
      if ((values['proxy-protocol'] === true) !== (values['trusted-proxies'] !== undefined)) {
        return fail(
          '--proxy-protocol and --trusted-proxies CIDR[,CIDR] go together (a PROXY header is believed only from trusted proxies)',
        );
      }
      const perIp = values['max-connections-per-ip'];
      return serve({
        host: values.host,
        port: int(values.port, 7070, 'port'),
        framing: values.framing,
        graceMs: int(values.grace, 10_000, 'grace'),
        log,
        ...(cert !== undefined && key !== undefined
          ? {
              tls: {
                certFile: cert,
                keyFile: key,
                ...(values['tls-ca'] === undefined ? {} : { caFile: values['tls-ca'] }),
                clientAuth: values['tls-client-auth'] === true,
              },
            }
          : {}),
        ...(values['trusted-proxies'] === undefined ? {} : { trustedProxies: values['trusted-proxies'] }),
        ...(perIp === undefined
          ? {}
          : { maxConnectionsPerAddress: Math.max(1, int(perIp, 1, 'max-connections-per-ip')) }),
        ...(values['auth-token-file'] === undefined ? {} : { authTokenFile: values['auth-token-file'] }),
      });
    }
    case 'call': {
      const { values, positionals } = parseArgs({
        args: rest,
        allowPositionals: true,
        options: {
          host: { type: 'string', default: '127.0.0.1' },
          port: { type: 'string', default: '7070' },
          timeout: { type: 'string', default: '10000' },
          credential: { type: 'string' },
          'tls-ca': { type: 'string' },
          'tls-cert': { type: 'string' },
          'tls-key': { type: 'string' },
          'tls-servername': { type: 'string' },
        },
      });
      const [method, json] = positionals;
      if (method === undefined) return fail(`call needs a METHOD\n\n${USAGE}`);
      let params: unknown = null;
      if (json !== undefined) {
        try {
          params = JSON.parse(json);
        } catch {
          return fail(`JSON argument is not valid JSON: ${json}`);
        }
      }
      try {
        const tlsOn =
          values['tls-ca'] !== undefined ||
          values['tls-cert'] !== undefined ||
          values['tls-servername'] !== undefined;
        const client = await connect({
          host: values.host,
          port: int(values.port, 7070, 'port'),
          reconnect: false,
          connectTimeoutMs: 5000,
          ...(values.credential === undefined ? {} : { credential: values.credential }),
          ...(tlsOn
            ? {
                tls: {
                  ...(values['tls-ca'] === undefined ? {} : { ca: readFileSync(values['tls-ca']) }),
                  ...(values['tls-cert'] === undefined ? {} : { cert: readFileSync(values['tls-cert']) }),
                  ...(values['tls-key'] === undefined ? {} : { key: readFileSync(values['tls-key']) }),
                  ...(values['tls-servername'] === undefined ? {} : { servername: values['tls-servername'] }),
                },
              }
            : {}),
        });
        try {
          const result = await client.request(method, params, {
            timeoutMs: int(values.timeout, 10_000, 'timeout'),
          });
          log(JSON.stringify(result));
          return 0;
        } finally {
          await client.close({ graceMs: 0 });
        }
      } catch (err) {
        const e = err as { code?: string; message?: string };
        process.stderr.write(`${e.code ?? 'ERROR'} ${e.message ?? String(err)}\n`);
        return 1;
      }
    }
    case 'demo': {
      const { values } = parseArgs({
        args: rest,
        options: {
          clients: { type: 'string', default: '4' },
          concurrency: { type: 'string', default: '32' },
          seconds: { type: 'string', default: '6' },
        },
      });
      return demo({
        clients: Math.max(1, int(values.clients, 4, 'clients')),
        concurrency: Math.max(1, int(values.concurrency, 32, 'concurrency')),
        durationMs: Math.max(1000, int(values.seconds, 6, 'seconds') * 1000),
        log,
      });
    }
    case 'inspect': {
      const { values } = parseArgs({ args: rest, options: { port: { type: 'string' } } });
      const port = values.port === undefined ? undefined : int(values.port, 0, 'port');
      const rows = await readTcpTable(port === undefined ? {} : { port });
      log(
        `${'state'.padEnd(12)} ${'local'.padEnd(22)} ${'remote'.padEnd(22)} ${'send-q'.padStart(8)} ${'recv-q'.padStart(8)}`,
      );
      for (const r of rows) {
        log(
          `${r.state.padEnd(12)} ${`${r.localAddress}:${r.localPort}`.padEnd(22)} ${`${r.remoteAddress}:${r.remotePort}`.padEnd(22)} ${String(r.txQueue).padStart(8)} ${String(r.rxQueue).padStart(8)}`,
        );
      }
      return 0;
    }
    case 'experiment': {
      const { values, positionals } = parseArgs({
        args: rest,
        allowPositionals: true,
        options: {
          mode: { type: 'string', default: 'graceful' },
          bytes: { type: 'string', default: '200000' },
          linger: { type: 'string', default: '2000' },
        },
      });
      if (positionals[0] !== 'close') return fail(`experiment needs a name: close\n\n${USAGE}`);
      const mode = values.mode as ExperimentMode;
      if (!EXPERIMENT_MODES.includes(mode))
        return fail(`--mode must be one of ${EXPERIMENT_MODES.join(', ')}`);
      return closeExperiment(mode, {
        bytes: Math.max(4, int(values.bytes, 200_000, 'bytes')),
        lingerMs: int(values.linger, 2000, 'linger'),
        log,
      });
    }
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      log(USAGE);
      return command === undefined ? 2 : 0;
    default:
      return fail(`unknown command ${command}\n\n${USAGE}`);
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.exitCode = fail((err as Error)?.message ?? String(err));
  },
);
