/**
 * The one validator module: every option of every longlink component (codecs, connections,
 * clients, servers, pools) is checked with these. Each throws InvalidArgumentError naming the
 * option, so a bad setting fails where it is written (in a constructor, synchronously) and not
 * later inside a socket callback, where nothing would catch it.
 */

import { InvalidArgumentError } from '../errors.js';

/** An optional finite number ≥ `min` (default 0), or `fallback` when undefined. */
export function finiteAtLeast(name: string, value: unknown, fallback: number, min = 0): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min) {
    throw new InvalidArgumentError(`${name} must be a finite number >= ${min}, got ${String(value)}`);
  }
  return value;
}

/** An optional finite number > 0, or `fallback` when undefined. */
export function finitePositive(name: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw new InvalidArgumentError(`${name} must be a finite number > 0, got ${String(value)}`);
  }
  return value;
}

/** An optional integer ≥ `min`, or Infinity for "no limit"; `fallback` when undefined. */
export function countOrInfinity(name: string, value: unknown, fallback: number, min = 1): number {
  if (value === undefined) return fallback;
  if (
    typeof value !== 'number' ||
    !(value === Number.POSITIVE_INFINITY || Number.isInteger(value)) ||
    value < min
  ) {
    throw new InvalidArgumentError(`${name} must be an integer >= ${min} or Infinity, got ${String(value)}`);
  }
  return value;
}

/** An optional number ≥ 0 where Infinity (and, by the caller's convention, 0) means "none"; not NaN. */
export function durationOrInfinity(name: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || Number.isNaN(value) || value < 0) {
    throw new InvalidArgumentError(
      `${name} must be a number >= 0 (0 or Infinity: none), got ${String(value)}`,
    );
  }
  return value;
}

/** An optional number ≥ 0, Infinity allowed (a wait with no end), not NaN; `fallback` when undefined. */
export function nonNegativeOrInfinity(name: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || Number.isNaN(value) || value < 0) {
    throw new InvalidArgumentError(`${name} must be a number >= 0 or Infinity, got ${String(value)}`);
  }
  return value;
}

/** An integer in [min, max]. */
export function checkInteger(name: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new InvalidArgumentError(`${name} must be an integer in [${min}, ${max}], got ${String(value)}`);
  }
  return value;
}

/** An optional integer in [min, max] with a default. */
export function optionalInteger(name: string, value: unknown, fallback: number, min: number, max: number) {
  return value === undefined ? fallback : checkInteger(name, value, min, max);
}

/** An optional boolean with a default. */
export function optionalBoolean(name: string, value: unknown, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== 'boolean') {
    throw new InvalidArgumentError(`${name} must be a boolean, got ${String(value)}`);
  }
  return value;
}

/** One of a fixed set of strings, with a default. */
export function optionalChoice<T extends string>(
  name: string,
  value: unknown,
  choices: readonly T[],
  fallback: T,
): T {
  if (value === undefined) return fallback;
  if (typeof value !== 'string' || !(choices as readonly string[]).includes(value)) {
    throw new InvalidArgumentError(
      `${name} must be one of ${choices.map((c) => `'${c}'`).join(', ')}, got ${String(value)}`,
    );
  }
  return value as T;
}

/** The options argument itself: undefined or a plain object. */
export function checkOptions<T extends object>(options: T | undefined, what: string): Partial<T> {
  if (options === undefined) return {};
  if (typeof options !== 'object' || options === null) {
    throw new InvalidArgumentError(`${what} options must be an object`);
  }
  return options;
}

/** A TCP port: an integer 1 … 65535 (what a connect needs; a listen may also take 0). */
export function checkPort(value: unknown, min = 1): number {
  return checkInteger('port', value, min, 65535);
}
