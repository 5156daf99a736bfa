/**
 * Logging: longlink says nothing unless asked. Give a component a `logger` with pino's shape
 * (pino, bunyan-style objects, or `console` adapted) and it logs what an operator needs to know —
 * handler failures, refusals, slow consumers, heartbeat deaths, GOAWAYs — each as a structured
 * object plus a message. Without one, `NODE_DEBUG=longlink` prints the same lines to stderr
 * through util.debuglog (the way Node's own modules are debugged).
 *
 * Floods are summarised, not printed line by line: a reason that repeats within a second (a
 * refused crowd, a scan) is logged once, then once more with the count it suppressed.
 */

import { debuglog } from 'node:util';

/** What longlink logs through: pino's method shape, `(object, message)`. `child` is optional. */
export interface Logger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  child?(bindings: object): Logger;
}

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

const debug = debuglog('longlink');

/** NODE_DEBUG=longlink: one line per event, `level message {json}`. */
const debugLogger: Logger = {
  debug: (o, m) => debug('debug %s %j', m ?? '', o),
  info: (o, m) => debug('info %s %j', m ?? '', o),
  warn: (o, m) => debug('warn %s %j', m ?? '', o),
  error: (o, m) => debug('error %s %j', m ?? '', o),
};

/** The logger to use: the one given, NODE_DEBUG=longlink's, or none (silent: nothing is built). */
export function resolveLogger(given: Logger | undefined, bindings?: object): Logger | undefined {
  if (given !== undefined) {
    for (const level of ['debug', 'info', 'warn', 'error'] as const) {
      if (typeof given[level] !== 'function') throw new TypeError(`logger.${level} must be a function`);
    }
    return bindings !== undefined && typeof given.child === 'function' ? given.child(bindings) : given;
  }
  return debug.enabled ? debugLogger : undefined;
}

/**
 * Logs `key` events at most once per `windowMs`, then reports how many it held back: a refused
 * crowd is two lines a second, not ten thousand. One per component, keyed by reason.
 */
export class LogSampler {
  private readonly seen = new Map<string, { until: number; held: number }>();
  constructor(private readonly windowMs = 1000) {}

  /** Whether to log this one now; `held` is how many of `key` were held back before it. */
  take(key: string, now: number): { log: boolean; held: number } {
    const s = this.seen.get(key);
    if (s === undefined || now >= s.until) {
      const held = s?.held ?? 0;
      if (this.seen.size > 1000) this.seen.clear(); // keys are reasons (a closed set); bounded anyway
      this.seen.set(key, { until: now + this.windowMs, held: 0 });
      return { log: true, held };
    }
    s.held++;
    return { log: false, held: 0 };
  }
}

/** An error as log fields: its code and message (never the object: a logger may not serialise it). */
export function errorFields(err: unknown): { code?: string; err: string } {
  const e = err as { code?: unknown; message?: unknown } | undefined;
  return {
    ...(typeof e?.code === 'string' ? { code: e.code } : {}),
    err: typeof e?.message === 'string' ? e.message : String(err),
  };
}
