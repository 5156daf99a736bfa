import type { Buffer } from 'node:buffer';
import { TruncatedFrameError } from '../errors.js';
import type { FrameDecoder } from './types.js';

/**
 * What every decoder does around its parsing: once a push fails the stream position is lost, so
 * the decoder is poisoned — its buffers are dropped (the memory goes now) and every later call
 * throws the same error; at end of stream a partial frame is a truncation.
 */
export abstract class GuardedDecoder implements FrameDecoder {
  /** The error that poisoned the decoder; every later call throws it again. */
  private error: Error | null = null;

  abstract get bufferedBytes(): number;

  abstract limit(maxFrameLength: number): void;

  /** Parses `chunk`; may throw a FramingError. */
  protected abstract decode(chunk: Buffer): Buffer[];

  /** Drops whatever is buffered. */
  protected abstract discard(): void;

  push(chunk: Buffer): Buffer[] {
    if (this.error !== null) throw this.error;
    try {
      return this.decode(chunk);
    } catch (err) {
      this.poison(err);
      throw err;
    }
  }

  end(): void {
    if (this.error !== null) throw this.error;
    const pending = this.bufferedBytes;
    if (pending > 0) {
      const err = new TruncatedFrameError(pending);
      this.poison(err);
      throw err;
    }
  }

  private poison(err: unknown): void {
    this.error = err instanceof Error ? err : new Error(String(err));
    this.discard();
  }
}
