/**
 * Optional peer dependencies, loaded only when a feature asks for them (prom-client for metrics,
 * @redis/client for the Redis broker,
 * @opentelemetry/api for traces, uplot's files for the dashboard): nothing in longlink imports them
 * otherwise, and a missing one is a MissingDependencyError that says what to install.
 */

import { MissingDependencyError } from '../errors.js';
import packageRequire from './package-require.cjs';

/** @internal Packages to treat as not installed (tests of the missing-dependency path). */
export const hiddenPeers: Set<string> = new Set();

function notFound(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND';
}

/** `import(name)`, or a MissingDependencyError naming `feature` when it is not installed. */
export async function loadPeer<T>(name: string, feature: string): Promise<T> {
  if (hiddenPeers.has(name)) throw new MissingDependencyError(name, feature);
  try {
    return (await import(name)) as T;
  } catch (err) {
    if (notFound(err)) throw new MissingDependencyError(name, feature, { cause: err });
    throw err;
  }
}

/** The absolute path of a file inside an installed package, or undefined when it is not installed. */
export function peerFile(name: string, file: string): string | undefined {
  if (hiddenPeers.has(name)) return undefined;
  try {
    const pkg = packageRequire.resolve(`${name}/package.json`);
    return `${pkg.slice(0, -'package.json'.length)}${file}`;
  } catch {
    return undefined;
  }
}
