/**
 * Bytes read without running code of the object's own. A caller's Buffer can carry an own
 * `length` getter, a replaced prototype, or be a Proxy. Code that runs while a frame is being
 * encoded into the shared output slab (connection/slab.ts) could send on another connection and
 * write where this frame is being written (red team N1, N2), and a length that says one thing to
 * the header and another to the copy sends stale memory (P1). The intrinsic TypedArray getters and
 * `set` read the object's internal slots only.
 */

const typedArray = Object.getPrototypeOf(Uint8Array.prototype) as object;
const intrinsic = (name: string) =>
  Object.getOwnPropertyDescriptor(typedArray, name)?.get as (this: unknown) => unknown;
const tagOf = intrinsic(Symbol.toStringTag as unknown as string);
const lengthOf = intrinsic('length') as (this: unknown) => number;
const bufferOf = intrinsic('buffer') as (this: unknown) => ArrayBufferLike;
const offsetOf = intrinsic('byteOffset') as (this: unknown) => number;
const typedArraySet = Uint8Array.prototype.set;

/** `b`'s length when it is a Uint8Array (a Buffer included), read through the intrinsic getters; else -1. */
export function plainLength(b: unknown): number {
  // The tag getter reads an internal slot: undefined for anything but a typed array (a Proxy too).
  return tagOf.call(b) === 'Uint8Array' ? lengthOf.call(b) : -1;
}

/** Copies all of `src` (a Uint8Array, as plainLength says) into `dst` at `at`, through the intrinsic `set`. */
export function copyPlain(dst: Uint8Array, src: Uint8Array, at: number): void {
  typedArraySet.call(dst, src, at);
}

/**
 * A Buffer of longlink's own over the same bytes as `b` (no copy), for code that will measure and
 * copy it later with the usual methods; undefined when `b` is not a Uint8Array.
 */
export function plainView(b: unknown): Buffer | undefined {
  const n = plainLength(b);
  return n < 0 ? undefined : Buffer.from(bufferOf.call(b), offsetOf.call(b), n);
}
