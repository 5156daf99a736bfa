/**
 * Model-based test of the client against a real server process, over loopback sockets.
 *
 * fast-check generates runs (test/model/model.ts): requests with random timeouts, AbortSignal
 * cancels, notifies both ways (client.notify, the server's pushes from handlers and from outside),
 * quiet spells followed by a request from inside a 'notify' handler, server GOAWAY with a grace and
 * a restart on the same port, server.destroy(), SIGSTOP of the server process (heartbeat runs),
 * SIGKILL and a new process on the same port, and reconnects; each run ends with close({ graceMs })
 * or destroy(). After every run:
 *
 * - every request settles exactly once, by its deadline + LATE_BOUND_MS, with its own result
 *   (the key it sent) or a LonglinkError with a code: ERR_REQUEST_TIMEOUT, ERR_ABORTED (only after
 *   its signal aborted), ERR_HANDLER (only from the handler that throws), ERR_CONNECTION_CLOSED or
 *   ERR_NOT_SENT (only when a disruption overlapped it, or the client was closing);
 * - never before its deadline: an ERR_REQUEST_TIMEOUT comes no earlier than `timeoutMs` minus
 *   DEADLINE_SLACK_MS (1 ms) after the request was made, on the real clock;
 * - a request runs at most once on the server, and a result comes from exactly one run;
 * - server pushes arrive on each connection numbered 1, 2, 3 … (in order, none twice, none
 *   invented); client notifies arrive in send order per connection, none twice, none that threw;
 * - 'reconnecting' and 'reconnect' come only after a 'disconnect', and nothing after 'close';
 * - close({ graceMs }) resolves within graceMs + CLOSE_BOUND_MS;
 * - nothing is left: no listener on a settled request's AbortSignal, no socket of the client's
 *   ESTABLISHED or CLOSE_WAIT (/proc/net/tcp by inode against /proc/self/fd), and within
 *   LEAK_SETTLE_MS process.getActiveResourcesInfo(), the process's socket fds, every timer and
 *   immediate created during the run (ref'd or not, via async_hooks) and process listeners are
 *   back to their baseline.
 *
 * A violation of a known, unfixed defect (findings.ts) is reported under that finding's `todo` test
 * below, with its run and figures; any other violation fails this test with fast-check's seed and
 * counterexample. Environment:
 *   LONGLINK_MODEL_SEED=<n>   replay a seed (printed at the start of every run of this file)
 *   LONGLINK_MODEL_RUNS=<n>   runs (default 14: 20–30 s on an idle machine)
 *   LONGLINK_MODEL_PATH=<p>   with the seed, replay fast-check's counterexample path
 *   LONGLINK_MODEL_SHRINK=1   shrink a failing run (slow: every attempt is real time)
 */

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { skipBecause } from '../skip.js';
import { FINDINGS, type FindingId, isKnown } from './findings.js';
import {
  CLOSE_BOUND_MS,
  DEADLINE_SLACK_MS,
  executeRun,
  LATE_BOUND_MS,
  LEAK_SETTLE_MS,
  listOf,
  type Run,
  runArb,
  type Violation,
} from './model.js';

const envInt = (name: string): number | undefined => {
  const v = process.env[name];
  if (v === undefined || v === '') return undefined;
  const n = Number(v);
  if (!Number.isSafeInteger(n)) throw new Error(`${name} must be an integer, got ${v}`);
  return n;
};

const seed = envInt('LONGLINK_MODEL_SEED') ?? (Date.now() ^ (Math.random() * 0x7fffffff)) | 0;
const numRuns = envInt('LONGLINK_MODEL_RUNS') ?? 14;
const path = process.env.LONGLINK_MODEL_PATH;
const shrink = process.env.LONGLINK_MODEL_SHRINK === '1';

const known = new Map<FindingId, Array<{ run: number; violation: Violation }>>();
const skip =
  process.platform === 'linux'
    ? undefined
    : skipBecause(
        'the model reads /proc (sockets, the TCP table) and stops processes with SIGSTOP: Linux only',
        {
          kind: 'platform',
        },
      );

describe('model: random runs against a server process', { skip: skip ?? false }, () => {
  test(`${numRuns} runs keep every invariant (seed ${seed})`, { timeout: 600_000 }, async () => {
    console.log(
      `# model: seed ${seed}, ${numRuns} runs; replay with LONGLINK_MODEL_SEED=${seed} LONGLINK_MODEL_RUNS=${numRuns}`,
    );
    console.log(
      `# model: slack ${DEADLINE_SLACK_MS} ms before a deadline, ${LATE_BOUND_MS} ms after it; close within grace + ${CLOSE_BOUND_MS} ms; leaks settle within ${LEAK_SETTLE_MS} ms`,
    );
    let runNo = 0;
    await fc.assert(
      fc.asyncProperty(runArb, async (run: Run) => {
        const n = ++runNo;
        const t0 = performance.now();
        const { violations, figures } = await executeRun(run, n);
        const fresh: Violation[] = [];
        for (const v of violations) {
          // A finding deleted from findings.ts (fixed) is no longer tolerated.
          if (v.finding !== undefined && isKnown(v.finding))
            listOf(known, v.finding).push({ run: n, violation: v });
          else fresh.push(v);
        }
        console.log(
          `# model: run ${n}: ${run.ops.length} ops, heartbeat ${run.config.heartbeat ? 'on' : 'off'}, ` +
            `${(performance.now() - t0).toFixed(0)} ms, ${violations.length - fresh.length} known-finding hit(s)`,
        );
        if (fresh.length > 0) {
          throw new Error(
            `${fresh.length} invariant violation(s) in run ${n} (seed ${seed}):\n` +
              fresh.map((v) => `  [${v.invariant}] ${v.detail}`).join('\n') +
              `\n  ${figures}`,
          );
        }
      }),
      {
        seed,
        numRuns,
        endOnFailure: !shrink,
        ...(path === undefined ? {} : { path }),
      },
    );
  });

  for (const [id, text] of Object.entries(FINDINGS)) {
    test(`known finding ${id}: not hit`, { todo: `finding: ${text}` }, () => {
      const hits = known.get(id) ?? [];
      for (const h of hits.slice(0, 5)) {
        console.log(
          `# finding ${id} (seed ${seed}, run ${h.run}): [${h.violation.invariant}] ${h.violation.detail}`,
        );
      }
      assert.equal(
        hits.length,
        0,
        `${hits.length} violation(s) of the model's invariants were this finding (seed ${seed})`,
      );
    });
  }
});
