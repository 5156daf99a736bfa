/**
 * Option checks shared by the codec factories. Every check throws InvalidArgumentError naming the
 * option, so a bad configuration fails where it is written, not on the first frame.
 */

import { InvalidArgumentError } from '../errors.js';
import { DEFAULT_MAX_FRAME_LENGTH } from './types.js';

/**
 * The largest `maxFrameLength`: 4 GiB (2^32), the same on every Node version — Node 20's Buffer
 * cap, so a frame the decoder accepts can always be assembled. Not `buffer.constants.MAX_LENGTH`
 * itself: Node 22 raised that to 2^53 − 1, which would make the accepted range depend on the Node
 * version.
 */
export const MAX_FRAME_LENGTH_LIMIT = 2 ** 32;

/** `maxFrameLength`: an integer in 1 … {@link MAX_FRAME_LENGTH_LIMIT}. */
export function checkMaxFrameLength(value: unknown): number {
  if (value === undefined) return DEFAULT_MAX_FRAME_LENGTH;
  return checkInteger('maxFrameLength', value, 1, MAX_FRAME_LENGTH_LIMIT);
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
