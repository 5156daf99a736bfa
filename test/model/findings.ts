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
  'stale-clock':
    'a request made from an I/O callback (a notify handler, a response handler) after the event loop ' +
    "sat in poll fails with ERR_REQUEST_TIMEOUT before its deadline: util/deadlines.ts's per-turn clock " +
    "is reset by an unref'd setImmediate, which does not wake the loop, so the deadline is set from a " +
    'reading as old as the quiet spell',
  'close-hangs':
    'client.close({ graceMs }) never resolves while a request is never answered: after the grace the ' +
    'connection is left open waiting for the answer (ClientPeer.leave closes only once nothing is pending)',
  'reconnecting-before-disconnect':
    "after a GOAWAY the client emits 'reconnecting' (and 'reconnect') before the 'disconnect' of the " +
    'connection that went away',
  'disconnect-after-close':
    "client.destroy() emits 'close' at once, and the 'disconnect' of each connection it aborted after it: " +
    "a listener that let go of the client on 'close' still hears from it",
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
