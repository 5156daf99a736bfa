/**
 * The one way a test in this suite skips. Every skip says why, on its own line in the runner's
 * output (`# skip: …`), and is one of two kinds:
 *
 * - `required` (the default): the test needs something this machine could have — root, network
 *   namespaces, a tool the installer provides (scripts/ensure-test-tools.sh: nft, nginx, haproxy),
 *   openssl, the native socket helper, npm. CI has all of them, so CI sets LONGLINK_REQUIRE_FAULTS=1
 *   (.ci/run), and then such a skip is a failure: a test named `required, but skipped: <why>`
 *   fails in place of the skipped ones, so a broken environment cannot pass as green.
 * - `platform`: the platform cannot have it (not Linux; no IPv6 on the host). Never a failure.
 *
 * Skips decided when a file loads use {@link skipBecause} / {@link skipUnless} for `{ skip }`;
 * skips decided inside a running test use {@link skipTest}.
 */

import { type TestContext, test } from 'node:test';

export type SkipKind = 'required' | 'platform';

export interface SkipOptions {
  kind?: SkipKind;
}

/** For what Linux always can (the native helper, /proc, 127.0.0.0/8): required there, a platform gap elsewhere. */
export const requiredOnLinux: SkipOptions = { kind: process.platform === 'linux' ? 'required' : 'platform' };

/** True when LONGLINK_REQUIRE_FAULTS=1: a `required` skip fails. */
export const requireFaults = process.env.LONGLINK_REQUIRE_FAULTS === '1';

function mustFail(options: SkipOptions): boolean {
  return requireFaults && (options.kind ?? 'required') === 'required';
}

function failure(reason: string): Error {
  return new Error(`LONGLINK_REQUIRE_FAULTS=1, and this test cannot run here: ${reason}`);
}

/**
 * Prints why, and returns the reason for a test's or suite's `{ skip }`. With
 * LONGLINK_REQUIRE_FAULTS=1 a `required` skip also registers a failing test that says why.
 */
export function skipBecause(reason: string, options: SkipOptions = {}): string {
  console.log(`# skip: ${reason}`);
  if (mustFail(options)) {
    test(`required, but skipped: ${reason}`, () => {
      throw failure(reason);
    });
  }
  return reason;
}

/** `false` when `ok`, else {@link skipBecause}(reason): for `{ skip: skipUnless(…) }`. */
export function skipUnless(ok: boolean, reason: string, options: SkipOptions = {}): string | false {
  return ok ? false : skipBecause(reason, options);
}

/**
 * Skips the running test with its reason (printed too). With LONGLINK_REQUIRE_FAULTS=1 a
 * `required` skip throws instead: the test fails with the reason.
 */
export function skipTest(t: Pick<TestContext, 'skip'>, reason: string, options: SkipOptions = {}): void {
  console.log(`# skip: ${reason}`);
  if (mustFail(options)) throw failure(reason);
  t.skip(reason);
}
