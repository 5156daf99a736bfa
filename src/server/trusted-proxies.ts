/**
 * Which peers may send a PROXY header. The spec is blunt about it (haproxy's proxy-protocol.txt §5):
 * a receiver must not guess whether a header is present, and must accept one only from known
 * proxies, or any client could claim any address. The address matching is Node's own
 * `net.BlockList` (subnets, single addresses, IPv4-mapped IPv6), not CIDR code of ours.
 */

import net from 'node:net';
import { InvalidArgumentError } from '../errors.js';

/**
 * A `net.BlockList` of the addresses trusted to send a PROXY header, from entries such as
 * `127.0.0.1`, `10.0.0.0/8`, `::1` or `fd00::/8`, given as an array or as one comma-separated
 * string (an array's entries may hold commas too; spaces around entries are ignored). An empty
 * string or array trusts nobody. Throws InvalidArgumentError naming the first bad entry.
 *
 * An IPv4 rule also matches the same address in IPv4-mapped IPv6 form (`::ffff:10.1.2.3`, what a
 * dual-stack listener reports for IPv4 clients) — `BlockList.check` does that itself when given
 * the family `'ipv6'`; {@link isTrustedAddress} passes the right family.
 *
 * @example
 * ```ts
 * const trusted = parseTrustedProxies(process.env.TRUSTED_PROXIES ?? '127.0.0.1, 10.0.0.0/8');
 * isTrustedAddress(trusted, socket.remoteAddress); // true for 10.1.2.3 and ::ffff:10.1.2.3
 * ```
 */
export function parseTrustedProxies(list: string[] | string): net.BlockList {
  if (typeof list !== 'string' && !Array.isArray(list)) {
    throw new InvalidArgumentError(
      `trusted proxies must be a string or an array of strings, got ${typeof list}`,
    );
  }
  const items: unknown[] = typeof list === 'string' ? [list] : list;
  const blockList = new net.BlockList();
  for (const item of items) {
    if (typeof item !== 'string') {
      throw new InvalidArgumentError(`trusted proxy entry must be a string, got ${typeof item}`);
    }
    // One empty string (an unset variable) trusts nobody; an empty entry among others is a typo.
    if (items.length === 1 && item.trim() === '') break;
    for (const raw of item.split(',')) {
      const entry = raw.trim();
      if (entry === '')
        throw new InvalidArgumentError(`trusted proxies: empty entry in ${JSON.stringify(item)}`);
      addEntry(blockList, entry, raw);
    }
  }
  return blockList;
}

function addEntry(blockList: net.BlockList, entry: string, raw: string): void {
  const slash = entry.indexOf('/');
  const address = slash < 0 ? entry : entry.slice(0, slash);
  const version = net.isIP(address);
  // net.isIPv6 accepts a zone id ("fe80::1%eth0"), which a BlockList rule cannot hold.
  if (version === 0 || address.includes('%')) {
    throw new InvalidArgumentError(
      `trusted proxy ${JSON.stringify(raw)}: ${JSON.stringify(address)} is not an IPv4 or IPv6 address`,
    );
  }
  const family = version === 4 ? 'ipv4' : 'ipv6';
  if (slash < 0) {
    blockList.addAddress(address, family);
    return;
  }
  const bits = version === 4 ? 32 : 128;
  const text = entry.slice(slash + 1);
  const prefix = /^[0-9]{1,3}$/.test(text) ? Number(text) : -1;
  if (prefix < 0 || prefix > bits) {
    throw new InvalidArgumentError(
      `trusted proxy ${JSON.stringify(raw)}: prefix length ${JSON.stringify(text)} is not 0-${bits}`,
    );
  }
  blockList.addSubnet(address, prefix, family);
}

/**
 * Whether `address` (a socket's `remoteAddress`: IPv4, IPv6 or IPv4-mapped IPv6) is in `trusted`.
 * Use it rather than `trusted.check(address)`, whose family defaults to `'ipv4'` and so answers
 * false for every IPv6 address, `::ffff:127.0.0.1` included. An undefined address (a socket
 * already closed) is not trusted.
 */
export function isTrustedAddress(trusted: net.BlockList, address: string | undefined): boolean {
  if (address === undefined) return false;
  const version = net.isIP(address);
  if (version === 0) return false;
  return trusted.check(address, version === 4 ? 'ipv4' : 'ipv6');
}
