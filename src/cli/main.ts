#!/usr/bin/env node
/**
 * The longlink command line. `longlink help` lists the commands, `longlink <command> --help`
 * explains one; every command shares the exit statuses and error style of args.ts.
 */

import { readFileSync } from 'node:fs';
import {
  type Command,
  CommandFailed,
  commandHelp,
  EXIT,
  type Io,
  parseCommand,
  processIo,
  UsageError,
  wantsHelp,
} from './args.js';
import { callCommand } from './call.js';
import { demoCommand } from './demo.js';
import { doctorCommand } from './doctor.js';
import { experimentCommand } from './experiment.js';
import { inspectCommand } from './inspect.js';
import { probeCommand } from './probe-command.js';
import { serveCommand } from './serve-command.js';
import { topCommand } from './top.js';

export const COMMANDS: readonly Command[] = [
  serveCommand,
  callCommand,
  probeCommand,
  doctorCommand,
  inspectCommand,
  topCommand,
  demoCommand,
  experimentCommand,
];

/** The package's version, from the package.json two levels above dist/src/cli. */
function version(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as {
      name?: string;
      version?: string;
    };
    return `${pkg.name ?? 'longlink'} ${pkg.version ?? 'unknown'}`;
  } catch {
    return 'longlink (version unknown: package.json not found)';
  }
}

function overview(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length)) + 2;
  return [
    'usage: longlink <command> [options]',
    '',
    'commands:',
    ...COMMANDS.map((c) => `  ${c.name.padEnd(width)}${c.summary}`),
    '',
    `  ${'help'.padEnd(width)}this list; \`longlink help <command>\` or \`longlink <command> --help\` for one`,
    '',
    'options: --version (-V) prints the version; every command takes --help (-h).',
    'exit status: 0 done, 1 failed, 2 usage error, 130 after a second Ctrl-C.',
  ].join('\n');
}

async function main(argv: string[], io: Io): Promise<number> {
  const [name, ...rest] = argv;
  if (name === '--version' || name === '-V' || name === 'version') {
    io.out(version());
    return EXIT.OK;
  }
  if (name === undefined) {
    io.err(overview());
    return EXIT.USAGE;
  }
  if (name === 'help' || name === '--help' || name === '-h') {
    const topic = rest[0];
    if (topic === undefined) {
      io.out(overview());
      return EXIT.OK;
    }
    const cmd = COMMANDS.find((c) => c.name === topic);
    if (cmd === undefined) {
      io.err(`longlink: help: unknown command ${JSON.stringify(topic)}\n\n${overview()}`);
      return EXIT.USAGE;
    }
    io.out(commandHelp(cmd));
    return EXIT.OK;
  }
  const cmd = COMMANDS.find((c) => c.name === name);
  if (cmd === undefined) {
    io.err(`longlink: unknown command ${JSON.stringify(name)}\n\n${overview()}`);
    return EXIT.USAGE;
  }
  if (wantsHelp(rest)) {
    io.out(commandHelp(cmd));
    return EXIT.OK;
  }
  try {
    return await cmd.run(parseCommand(cmd, rest), io);
  } catch (err) {
    if (err instanceof UsageError) {
      io.err(`longlink: ${cmd.name}: ${err.message}`);
      io.err(`usage: longlink ${cmd.name} ${cmd.usage[0] ?? ''}   (longlink ${cmd.name} --help for more)`);
      return EXIT.USAGE;
    }
    if (err instanceof CommandFailed) {
      io.err(`longlink: ${cmd.name}: ${err.message}`);
      return EXIT.FAILED;
    }
    const e = err as { code?: unknown; message?: unknown };
    const code = typeof e?.code === 'string' ? ` (${e.code})` : '';
    io.err(`longlink: ${cmd.name}: ${typeof e?.message === 'string' ? e.message : String(err)}${code}`);
    return EXIT.FAILED;
  }
}

const io = processIo();
main(process.argv.slice(2), io).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    io.err(`longlink: ${(err as Error)?.message ?? String(err)}`);
    process.exitCode = EXIT.FAILED;
  },
);
