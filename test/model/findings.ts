/**
 * Library defects the model test has found and that are not fixed on this branch. A violation the
 * model classifies under one of these is reported (with its run's seed and figures) under a `todo`
 * test instead of failing the suite; every other violation fails it. Each entry has a focused
 * regression test in findings.test.ts.
 *
 * When a fix lands, delete its entry here, and nothing else: the model stops tolerating the
 * defect and its regression test stops being `todo` (see todoUnlessFixed), so both fail the suite
 * if it comes back.
 */

export const FINDINGS: Readonly<Record<string, string>> = {
  // Fixed, their regression tests run as plain tests now: 'stale-clock' (one clock that is never
  // cached, util/clock.ts), 'close-hangs' and 'reconnecting-before-disconnect' (the session split),
  // 'disconnect-after-close' (destroy() emits 'close' after its session's 'disconnect').
};

/** A finding's name in FINDINGS (the model may name one that was since fixed and deleted). */
export type FindingId = string;

/** True while `id` is a known, unfixed defect. */
export function isKnown(id: FindingId | undefined): boolean {
  return id !== undefined && Object.hasOwn(FINDINGS, id);
}

/** The `todo` option of a finding's regression test: its description while known, then false. */
export function todoUnlessFixed(id: FindingId): string | false {
  return isKnown(id) ? `finding: ${FINDINGS[id]}` : false;
}
