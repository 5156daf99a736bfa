/**
 * `longlink doctor`: the verdicts as a pure function of made-up hosts, the /proc parsers, and one
 * real run on this machine checked for its shape.
 */

import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import {
  assessHost,
  type Check,
  FD_RESERVE,
  type HostReadings,
  parseLimits,
  parseSockstat,
  worst,
} from '../../src/cli/doctor.js';
import { skipUnless } from '../skip.js';
import { killAll, run } from './run.js';

after(killAll);

/** A well-provisioned Linux host (figures of a stock Debian 12 box with limits raised). */
const GOOD: HostReadings = {
  kernel: '6.1.0',
  nofileSoft: 1_048_576,
  nofileHard: 1_048_576,
  parentNofileSoft: 1024,
  fileMax: 2 ** 63, // LONG_MAX, the 64-bit default: read as a double
  nrOpen: 1_048_576,
  filesAllocated: 2000,
  somaxconn: 4096,
  portRange: [1024, 65535],
  twReuse: 1,
  finTimeout: 60,
  keepaliveTime: 7200,
  keepaliveIntvl: 75,
  keepaliveProbes: 9,
  maxTwBuckets: 262_144,
  timeWait: 10,
  tcpInUse: 20,
  tcpMemPages: 10,
  tcpMem: [287_907, 383_879, 575_814],
  pageSize: 4096,
  conntrackMax: 262_144,
  conntrackCount: 100,
  conntrackEstablishedTimeout: 432_000,
  memAvailableKb: 16 * 1024 * 1024,
  memTotalKb: 24 * 1024 * 1024,
};

function check(checks: Check[], id: string): Check {
  const c = checks.find((x) => x.id === id);
  assert.ok(c, `a ${id} check in ${checks.map((x) => x.id).join(', ')}`);
  return c;
}

describe('longlink doctor: verdicts (pure)', () => {
  test("a well-provisioned host: every check ok, no fixes, and the shell's soft limit explained away", () => {
    const checks = assessHost(GOOD, 10_000);
    assert.deepEqual(
      checks.map((c) => c.id),
      [
        'nofile',
        'nr_open',
        'file-max',
        'somaxconn',
        'ports',
        'tw_reuse',
        'fin_timeout',
        'keepalive',
        'conntrack',
        'tcp_mem',
        'memory',
      ],
    );
    for (const c of checks) {
      assert.equal(c.verdict, 'ok', `${c.id}: ${c.message}`);
      assert.deepEqual(c.fix, []);
    }
    assert.equal(worst(checks), 'ok');
    assert.match(check(checks, 'nofile').message, /Node raises its own to the hard limit/);
  });

  test('open files: a hard limit below N + reserve fails, with ulimit, LimitNOFILE= and prlimit fixes', () => {
    const r = { ...GOOD, nofileSoft: 20_000, nofileHard: 20_000 };
    assert.equal(check(assessHost(r, 20_000 - FD_RESERVE), 'nofile').verdict, 'ok');
    const c = check(assessHost(r, 20_000), 'nofile');
    assert.equal(c.verdict, 'fail');
    assert.match(c.message, /hard limit 20,000 < 20,100 .*EMFILE past ~19,900 connections/);
    assert.ok(
      c.fix.some((f) => /^ulimit -Hn 21000 && ulimit -n 21000 /.test(f)),
      c.fix.join('\n'),
    );
    assert.ok(
      c.fix.some((f) => /^LimitNOFILE=21000 /.test(f)),
      c.fix.join('\n'),
    );
    assert.ok(
      c.fix.some((f) => /^prlimit --pid <pid> --nofile=21000:21000/.test(f)),
      c.fix.join('\n'),
    );
    assert.equal(worst(assessHost(r, 20_000)), 'fail');
  });

  test('fs.nr_open and fs.file-max: below N fails; file-max past 80 % warns', () => {
    assert.equal(check(assessHost({ ...GOOD, nrOpen: 5000 }, 10_000), 'nr_open').verdict, 'fail');
    assert.deepEqual(
      check(assessHost({ ...GOOD, nrOpen: 5000 }, 10_000), 'nr_open').fix[0],
      'sysctl -w fs.nr_open=11000',
    );
    const near = check(assessHost({ ...GOOD, fileMax: 13_000, filesAllocated: 1000 }, 10_000), 'file-max');
    assert.equal(near.verdict, 'warn');
    assert.match(near.fix[0] ?? '', /^sysctl -w fs\.file-max=\d+$/);
    assert.equal(
      check(assessHost({ ...GOOD, fileMax: 10_000, filesAllocated: 1000 }, 10_000), 'file-max').verdict,
      'fail',
    );
  });

  test("somaxconn below Node's default backlog warns (reconnect storms); the port range warns past its size for a client", () => {
    const s = check(assessHost({ ...GOOD, somaxconn: 128 }, 10_000), 'somaxconn');
    assert.equal(s.verdict, 'warn');
    assert.deepEqual(s.fix, [
      'sysctl -w net.core.somaxconn=4096',
      'and listen({ backlog: 4096 }) in the server',
    ]);
    const p = check(assessHost({ ...GOOD, portRange: [32768, 60999] }, 60_000), 'ports');
    assert.equal(p.verdict, 'warn');
    assert.match(p.message, /28,232 ports per source address.*need 3 source addresses/);
    assert.deepEqual(p.fix, ['sysctl -w net.ipv4.ip_local_port_range="1024 65535"']);
    assert.equal(check(assessHost({ ...GOOD, portRange: [32768, 60999] }, 20_000), 'ports').verdict, 'ok');
  });

  test('tcp_tw_reuse 0 warns, 2 is ok (loopback only) unless TIME_WAIT holds half the ports; fin_timeout above 60 s warns', () => {
    assert.equal(check(assessHost({ ...GOOD, twReuse: 0 }, 100), 'tw_reuse').verdict, 'warn');
    const two = check(assessHost({ ...GOOD, twReuse: 2 }, 100), 'tw_reuse');
    assert.equal(two.verdict, 'ok');
    assert.match(two.message, /loopback only/);
    const piling = check(
      assessHost({ ...GOOD, twReuse: 2, portRange: [32768, 60999], timeWait: 20_000 }, 100),
      'tw_reuse',
    );
    assert.equal(piling.verdict, 'warn');
    assert.match(piling.fix[0] ?? '', /^sysctl -w net\.ipv4\.tcp_tw_reuse=1/);
    const fin = check(assessHost({ ...GOOD, finTimeout: 120 }, 100), 'fin_timeout');
    assert.equal(fin.verdict, 'warn');
    assert.deepEqual(fin.fix, ['sysctl -w net.ipv4.tcp_fin_timeout=30']);
  });

  test('keepalive: ok with the 2 h default (detection time said), warns when conntrack forgets idle flows first', () => {
    const ok = check(assessHost(GOOD, 100), 'keepalive');
    assert.equal(ok.verdict, 'ok');
    assert.match(
      ok.message,
      /first probe after 2 h idle, then 9 × 75 s: a dead peer is noticed after 2 h 11 min/,
    );
    const nat = check(assessHost({ ...GOOD, conntrackEstablishedTimeout: 300 }, 100), 'keepalive');
    assert.equal(nat.verdict, 'warn');
    assert.deepEqual(nat.fix, ['sysctl -w net.ipv4.tcp_keepalive_time=150']);
  });

  test('conntrack: left out when the module is not loaded; full fails, 80 % warns', () => {
    const { conntrackMax: _m, conntrackCount: _c, conntrackEstablishedTimeout: _t, ...none } = GOOD;
    assert.equal(
      assessHost(none, 100).find((c) => c.id === 'conntrack'),
      undefined,
    );
    const full = check(
      assessHost({ ...GOOD, conntrackMax: 65_536, conntrackCount: 60_000 }, 10_000),
      'conntrack',
    );
    assert.equal(full.verdict, 'fail');
    assert.match(full.message, /table full, dropping packet/);
    assert.match(full.fix[0] ?? '', /^sysctl -w net\.netfilter\.nf_conntrack_max=\d+$/);
    assert.equal(
      check(assessHost({ ...GOOD, conntrackMax: 65_536, conntrackCount: 45_000 }, 10_000), 'conntrack')
        .verdict,
      'warn',
    );
  });

  test('memory: connections that fit at the measured cost; fewer than N fail, fewer than 2N warn', () => {
    const mem = (gib: number, n: number) =>
      check(assessHost({ ...GOOD, memAvailableKb: gib * 1024 * 1024 }, n), 'memory');
    // 1 GiB − 55 MB per process at 14.5 KB each ≈ 68,000 connections.
    const one = mem(1, 10_000);
    assert.equal(one.verdict, 'ok');
    assert.match(one.message, /about 6\d,\d{3} idle connections fit at ≈14\.5 KB each/);
    assert.match(one.message, /docs\/benchmarks-heartbeat\.md/);
    assert.equal(mem(1, 50_000).verdict, 'warn');
    assert.equal(mem(1, 100_000).verdict, 'fail');
  });

  test('socket buffer memory: under pressure warns, at the hard limit fails', () => {
    assert.equal(check(assessHost({ ...GOOD, tcpMemPages: 400_000 }, 100), 'tcp_mem').verdict, 'warn');
    assert.equal(check(assessHost({ ...GOOD, tcpMemPages: 600_000 }, 100), 'tcp_mem').verdict, 'fail');
  });

  test('readings that could not be read leave their checks out; open files is always reported', () => {
    const checks = assessHost({}, 100);
    assert.deepEqual(
      checks.map((c) => [c.id, c.verdict]),
      [['nofile', 'warn']],
    );
  });

  test('parsers: /proc/<pid>/limits (unlimited too) and /proc/net/sockstat', () => {
    const limits =
      'Limit                     Soft Limit           Hard Limit           Units     \n' +
      'Max processes             127344               127344               processes \n' +
      'Max open files            1024                 524288               files     \n';
    assert.deepEqual(parseLimits(limits), { soft: 1024, hard: 524_288 });
    assert.deepEqual(
      parseLimits('Max open files            unlimited            unlimited            files\n'),
      {
        soft: Number.POSITIVE_INFINITY,
        hard: Number.POSITIVE_INFINITY,
      },
    );
    assert.equal(parseLimits('nothing here'), undefined);
    assert.deepEqual(
      parseSockstat('sockets: used 37\nTCP: inuse 7 orphan 0 tw 10 alloc 7 mem 3\nUDP: inuse 0 mem 0\n'),
      {
        inuse: 7,
        tw: 10,
        mem: 3,
      },
    );
  });
});

describe('longlink doctor: a real run', {
  skip: skipUnless(process.platform === 'linux', 'reads /proc', { kind: 'platform' }),
}, () => {
  test('--json: every check has an id, a verdict and fixes; the exit status follows the worst verdict', async () => {
    const r = run(['doctor', '--connections', '5000', '--json']);
    const code = await r.exit;
    const report = JSON.parse(r.out.join('\n')) as {
      connections: number;
      verdict: string;
      checks: Check[];
      readings: HostReadings;
      costs: { source: string };
    };
    assert.equal(report.connections, 5000);
    assert.equal(code, report.verdict === 'ok' ? 0 : 1);
    assert.ok(report.checks.length >= 8, `checks: ${report.checks.map((c) => c.id).join(', ')}`);
    for (const id of [
      'nofile',
      'nr_open',
      'file-max',
      'somaxconn',
      'ports',
      'tw_reuse',
      'fin_timeout',
      'keepalive',
      'memory',
    ]) {
      assert.ok(
        report.checks.some((c) => c.id === id),
        `${id} in ${report.checks.map((c) => c.id).join(', ')}`,
      );
    }
    for (const c of report.checks) {
      assert.ok(['ok', 'warn', 'fail'].includes(c.verdict), c.verdict);
      assert.equal(typeof c.message, 'string');
      assert.ok(Array.isArray(c.fix));
      assert.equal(c.fix.length === 0, c.verdict === 'ok', `${c.id}: fixes only for warn/fail`);
    }
    assert.equal(report.verdict, worst(report.checks));
    assert.equal(
      typeof report.readings.nofileHard === 'number' || report.readings.nofileHard === 'unlimited',
      true,
    );
    assert.ok((report.readings.portRange?.[1] ?? 0) > (report.readings.portRange?.[0] ?? 0));
    assert.match(report.costs.source, /docs\/benchmarks-heartbeat\.md/);
  });

  test('text: one line per check starting with its verdict, fixes under it, a summary', async () => {
    const r = run(['doctor', '--connections', '100000000']);
    // A hundred million connections in one process fail on any host: exit 1, with fixes.
    assert.equal(await r.exit, 1);
    assert.match(
      r.out[0] ?? '',
      /^longlink doctor: can this host hold 100,000,000 long connections in one process\?/,
    );
    const verdicts = r.out.filter((l) => /^(ok|warn|fail) {2}/.test(l));
    assert.ok(verdicts.length >= 8, r.out.join('\n'));
    assert.ok(
      r.out.some((l) => /^fail {2}open files per process /.test(l)),
      r.out.join('\n'),
    );
    assert.ok(
      r.out.some((l) => /^ +fix: LimitNOFILE=100010000 /.test(l)),
      r.out.join('\n'),
    );
    assert.ok(
      r.out.some((l) => /^fail {2}memory \(MemAvailable\) /.test(l)),
      r.out.join('\n'),
    );
    assert.ok(
      r.out.some((l) => /^\d+ failed(, \d+ warnings?)? of \d+ checks\.$/.test(l)),
      r.out.join('\n'),
    );
  });
});
