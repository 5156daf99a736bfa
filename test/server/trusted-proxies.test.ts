// Trusted proxy addresses: parsing (arrays, comma-separated strings, bad entries) and matching,
// including IPv4-mapped IPv6 addresses, which is what a dual-stack listener reports for IPv4 peers.

import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { after, describe, test } from 'node:test';
import { InvalidArgumentError } from '../../src/errors.js';
import { isTrustedAddress, parseTrustedProxies } from '../../src/server/trusted-proxies.js';
import { skipTest } from '../skip.js';

const closers: Array<() => void> = [];
after(() => {
  for (const c of closers) c();
});

describe('parseTrustedProxies', () => {
  test('addresses and subnets, IPv4 and IPv6, as an array or a comma-separated string', () => {
    const entries = ['127.0.0.1', '10.0.0.0/8', '::1', 'fd00::/8'];
    for (const list of [
      entries,
      entries.join(','),
      ` ${entries.join(' , ')} `,
      ['127.0.0.1, 10.0.0.0/8', '::1,fd00::/8'],
    ]) {
      const trusted = parseTrustedProxies(list);
      const yes = ['127.0.0.1', '10.0.0.1', '10.255.255.255', '::1', 'fd00::1', 'fdff:ffff::1'];
      const no = ['127.0.0.2', '11.0.0.1', '9.255.255.255', '::2', 'fe80::1', 'fc00::1', '2001:db8::1'];
      for (const a of yes) assert.equal(isTrustedAddress(trusted, a), true, `${JSON.stringify(list)}: ${a}`);
      for (const a of no) assert.equal(isTrustedAddress(trusted, a), false, `${JSON.stringify(list)}: ${a}`);
    }
  });

  test('an IPv4 rule matches the IPv4-mapped IPv6 form of its addresses, and only those', () => {
    const trusted = parseTrustedProxies('127.0.0.1, 10.0.0.0/8');
    assert.equal(isTrustedAddress(trusted, '::ffff:127.0.0.1'), true);
    assert.equal(isTrustedAddress(trusted, '::ffff:7f00:1'), true);
    assert.equal(isTrustedAddress(trusted, '::ffff:10.1.2.3'), true);
    assert.equal(isTrustedAddress(trusted, '::ffff:127.0.0.2'), false);
    assert.equal(isTrustedAddress(trusted, '::ffff:11.0.0.1'), false);
    // Not mapped: the IPv4-compatible form (::a.b.c.d) and NAT64 are other addresses.
    assert.equal(isTrustedAddress(trusted, '::127.0.0.1'), false);
    assert.equal(isTrustedAddress(trusted, '64:ff9b::7f00:1'), false);
  });

  test('regression: BlockList.check(address) defaults to ipv4 and misses every IPv6 form; isTrustedAddress does not', () => {
    const trusted = parseTrustedProxies('127.0.0.1, ::1');
    assert.equal(trusted.check('::ffff:127.0.0.1'), false, 'the trap isTrustedAddress avoids');
    assert.equal(trusted.check('::1'), false, 'the trap isTrustedAddress avoids');
    assert.equal(isTrustedAddress(trusted, '::ffff:127.0.0.1'), true);
    assert.equal(isTrustedAddress(trusted, '::1'), true);
  });

  test('a dual-stack listener reports an IPv4 client as ::ffff:127.0.0.2, and a 127.0.0.0/8 rule trusts it', async (t) => {
    const server = net.createServer((s) => closers.push(() => s.destroy()));
    try {
      server.listen({ port: 0, host: '::', ipv6Only: false });
      await once(server, 'listening');
    } catch (err) {
      skipTest(t, `no dual-stack listener here: ${(err as Error).message}`, { kind: 'platform' });
      return;
    }
    closers.push(() => server.close());
    const accepted = once(server, 'connection') as Promise<[net.Socket]>;
    const client = net.connect({
      port: (server.address() as net.AddressInfo).port,
      host: '127.0.0.1',
      localAddress: '127.0.0.2',
    });
    client.on('error', () => {});
    closers.push(() => client.destroy());
    const [socket] = await accepted;
    assert.equal(socket.remoteAddress, '::ffff:127.0.0.2');
    assert.equal(isTrustedAddress(parseTrustedProxies('127.0.0.0/8'), socket.remoteAddress), true);
    assert.equal(isTrustedAddress(parseTrustedProxies('127.0.0.2'), socket.remoteAddress), true);
    assert.equal(isTrustedAddress(parseTrustedProxies('127.0.0.1'), socket.remoteAddress), false);
  });

  test('an empty string or array trusts nobody', () => {
    for (const list of ['', '  ', [], ['']]) {
      const trusted = parseTrustedProxies(list);
      assert.equal(trusted.rules.length, 0, JSON.stringify(list));
      assert.equal(isTrustedAddress(trusted, '127.0.0.1'), false);
    }
  });

  test('a bad entry throws InvalidArgumentError naming it', () => {
    const bad: Array<[string[] | string, RegExp]> = [
      ['nope', /"nope" is not an IPv4 or IPv6 address/],
      ['127.0.0.1, localhost', /"localhost"/],
      ['127.0.0.01', /"127.0.0.01"/],
      ['1.2.3.4/33', /prefix length "33" is not 0-32/],
      ['::1/129', /prefix length "129" is not 0-128/],
      ['1.2.3.4/', /prefix length "" is not 0-32/],
      ['1.2.3.4/a', /prefix length "a"/],
      ['1.2.3.4/-1', /prefix length "-1"/],
      ['1.2.3.4/8/8', /prefix length "8\/8"/],
      ['10.0.0.0 /8', /"10.0.0.0 "/],
      ['fe80::1%eth0', /"fe80::1%eth0" is not an IPv4 or IPv6 address/],
      ['127.0.0.1,,::1', /empty entry in "127.0.0.1,,::1"/],
      ['127.0.0.1,', /empty entry/],
      [['127.0.0.1', ''], /empty entry in ""/],
      [[1 as unknown as string], /entry must be a string, got number/],
      [undefined as unknown as string, /must be a string or an array of strings, got undefined/],
    ];
    for (const [list, message] of bad) {
      assert.throws(
        () => parseTrustedProxies(list),
        (err) => err instanceof InvalidArgumentError && message.test(err.message),
        `${JSON.stringify(list)} → ${message}`,
      );
    }
  });

  test('host bits in a subnet are ignored, as by ip(8): 10.1.2.3/8 is 10.0.0.0/8', () => {
    const trusted = parseTrustedProxies('10.1.2.3/8');
    assert.equal(isTrustedAddress(trusted, '10.200.0.1'), true);
    assert.equal(isTrustedAddress(trusted, '11.0.0.1'), false);
  });
});

describe('isTrustedAddress', () => {
  test('an undefined address (a closed socket) or a non-address is not trusted', () => {
    const everyone = parseTrustedProxies('0.0.0.0/0, ::/0');
    assert.equal(isTrustedAddress(everyone, '203.0.113.9'), true);
    assert.equal(isTrustedAddress(everyone, '2001:db8::9'), true);
    assert.equal(isTrustedAddress(everyone, undefined), false);
    assert.equal(isTrustedAddress(everyone, ''), false);
    assert.equal(isTrustedAddress(everyone, 'example.com'), false);
  });
});
