/**
 * The codecs' own limit, checked with the one validator module (util/check.ts), which also holds
 * every other option check the codec factories use.
 */

import { checkInteger } from '../util/check.js';
import { DEFAULT_MAX_FRAME_LENGTH } from './types.js';

export {
  checkInteger,
  checkOptions,
  optionalBoolean,
  optionalChoice,
  optionalInteger,
} from '../util/check.js';

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
