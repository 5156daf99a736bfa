/**
 * Checks for numeric options: each throws InvalidArgumentError naming the option, so a bad
 * setting fails where it is written (in a constructor, synchronously) and not later inside a
 * socket callback, where nothing would catch it.
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
