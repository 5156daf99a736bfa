/**
 * Bytes read without running code of the object's own. A caller's Buffer can carry an own
 * `length` getter or be a Proxy; code that runs while a frame is being encoded into the shared
 * output slab (connection/slab.ts) could send on another connection and write where this frame is
 * being written (red team N1, N2). The intrinsic TypedArray getter and `set` read the object's
 * internal slots only.
 */

const typedArrayLength = Object.getOwnPropertyDescriptor(
  Object.getPrototypeOf(Uint8Array.prototype),
  'length',
)?.get as (this: unknown) => number;
const typedArraySet = Uint8Array.prototype.set;

/** `b`'s length in elements, through the intrinsic getter; -1 when `b` is not a typed array. */
export function plainLength(b: unknown): number {
  try {
    return typedArrayLength.call(b);
  } catch {
    return -1;
  }
}

/** Copies all of `src` (a Uint8Array) into `dst` at `at`, through the intrinsic `set`. */
export function copyPlain(dst: Uint8Array, src: Uint8Array, at: number): void {
  typedArraySet.call(dst, src, at);
}
