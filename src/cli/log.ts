/**
 * `longlink serve`'s log lines: a timestamp on every line, a level, and one of two formats.
 *
 *   text  2026-11-01T10:00:00.123Z info  open  127.0.0.1:51334 id=1
 *   json  {"time":"2026-11-01T10:00:00.123Z","level":"info","msg":"open","peer":"127.0.0.1:51334","id":"1"}
 *
 * serve's own lines (listening, open, close, shutdown) keep their text after the level; the
 * Server's logger (refusals, handler failures, slow consumers, heartbeat deaths: src/util/log.ts)
 * writes through the same sink, its object as key=value pairs in text, as fields in JSON.
 */

import type { Logger, LogLevel } from '../util/log.js';
import { UsageError } from './args.js';

export type LogFormat = 'text' | 'json';

const LEVELS: Readonly<Record<LogLevel, number>> = { debug: 10, info: 20, warn: 30, error: 40 };
const RESERVED = new Set(['time', 'level', 'msg']);

export interface ServeLog {
  /**
   * One event: `msg` names it (the JSON `msg`), `fields` carry its data, `text` is its text-format
   * line after the level (default: `msg` and the fields as key=value).
   */
  (level: LogLevel, msg: string, fields?: Record<string, unknown>, text?: string): void;
  /** The same sink in pino's shape, for the Server's `logger` option. */
  readonly logger: Logger;
}

function textValue(v: unknown): string {
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  const s = typeof v === 'string' ? v : (JSON.stringify(v) ?? String(v));
  return /^[\w.:/@\-[\]+]+$/.test(s) ? s : JSON.stringify(s);
}

function keyValues(fields: Record<string, unknown>): string {
  let out = '';
  for (const [k, v] of Object.entries(fields)) if (v !== undefined) out += ` ${k}=${textValue(v)}`;
  return out;
}

/** A log sink writing whole lines through `write`, dropping levels below `minLevel`. */
export function serveLog(
  write: (line: string) => void,
  format: LogFormat = 'text',
  minLevel: LogLevel = 'info',
  clock: () => Date = () => new Date(),
): ServeLog {
  const min = LEVELS[minLevel];
  const log = ((level: LogLevel, msg: string, fields: Record<string, unknown> = {}, text?: string) => {
    if (LEVELS[level] < min) return;
    const time = clock().toISOString();
    if (format === 'json') {
      const record: Record<string, unknown> = { time, level, msg };
      for (const [k, v] of Object.entries(fields)) {
        if (v !== undefined) record[RESERVED.has(k) ? `_${k}` : k] = v;
      }
      write(JSON.stringify(record));
    } else {
      write(`${time} ${level.padEnd(5)} ${text ?? `${msg}${keyValues(fields)}`}`);
    }
  }) as ServeLog;
  const at =
    (level: LogLevel) =>
    (obj: object, msg?: string): void =>
      log(level, msg ?? '', obj as Record<string, unknown>);
  Object.defineProperty(log, 'logger', {
    value: { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') } satisfies Logger,
  });
  return log;
}

export function logFormatArg(v: string | undefined): LogFormat {
  if (v === undefined || v === 'text' || v === 'json') return v ?? 'text';
  throw new UsageError(`--log-format must be text or json, got ${JSON.stringify(v)}`);
}

export function logLevelArg(v: string | undefined): LogLevel {
  if (v === undefined) return 'info';
  if (v in LEVELS) return v as LogLevel;
  throw new UsageError(`--log-level must be debug, info, warn or error, got ${JSON.stringify(v)}`);
}
