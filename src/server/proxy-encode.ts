/**
 * PROXY protocol headers written (haproxy's proxy-protocol.txt, v1 §2.1 and v2 §2.2): what a
 * proxy sends, for the tests and tools that play one. The reader is proxy-header.ts.
 */

import { Buffer } from 'node:buffer';
import net from 'node:net';
import { InvalidArgumentError } from '../errors.js';
import {
  addressBytes,
  formatIPv6,
  hex,
  PROXY_V2_FIXED_BYTES,
  type ProxyAddress,
  type ProxyHeaderFields,
  V2_SIGNATURE,
} from './proxy-header.js';

/**
 * The v1 text line for a header (§2.1), for tests and tools. v1 has TCP4, TCP6 and UNKNOWN only:
 * a LOCAL command or a UNIX family throws InvalidArgumentError, as does a missing or malformed
 * address or port.
 *
 * @example
 * ```ts
 * encodeProxyV1({ command: 'proxy', family: 'tcp4',
 *   source: { address: '192.168.0.1', port: 56324 }, destination: { address: '192.168.0.11', port: 443 } });
 * // => "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"
 * ```
 */
export function encodeProxyV1(header: ProxyHeaderFields): Buffer {
  if (header.command !== 'proxy') {
    throw new InvalidArgumentError(`PROXY v1 has no ${String(header.command)} command (only PROXY)`);
  }
  if (header.family === 'unknown') return Buffer.from('PROXY UNKNOWN\r\n', 'latin1');
  if (header.family !== 'tcp4' && header.family !== 'tcp6') {
    throw new InvalidArgumentError(`PROXY v1 carries TCP4, TCP6 or UNKNOWN, not ${String(header.family)}`);
  }
  const version = header.family === 'tcp4' ? 4 : 6;
  const src = checkEndpoint('source', header.source, version);
  const dst = checkEndpoint('destination', header.destination, version);
  const protocol = version === 4 ? 'TCP4' : 'TCP6';
  return Buffer.from(`PROXY ${protocol} ${src.address} ${dst.address} ${src.port} ${dst.port}\r\n`, 'latin1');
}

/**
 * The v2 binary header for a header (§2.2), for tests and tools. A LOCAL command is sent with the
 * UNSPEC family and no address, as §2.2 asks of senders; TLVs follow in order. Throws
 * InvalidArgumentError for a missing or malformed address, a TLV type outside 0-255, a TLV value
 * over 65,535 bytes or a header longer than the u16 length can say.
 *
 * @example
 * ```ts
 * encodeProxyV2({ command: 'local', family: 'unknown' }).length; // 16
 * encodeProxyV2({ command: 'proxy', family: 'tcp6',
 *   source: { address: '2001:db8::1', port: 4000 }, destination: { address: '::1', port: 443 },
 *   tlvs: [{ type: PP2_TYPE.AUTHORITY, value: Buffer.from('example.com') }] }).length; // 16 + 36 + 14
 * ```
 */
export function encodeProxyV2(header: ProxyHeaderFields): Buffer {
  if (header.command !== 'proxy' && header.command !== 'local') {
    throw new InvalidArgumentError(
      `PROXY v2 command must be 'proxy' or 'local', got ${String(header.command)}`,
    );
  }
  const tlvs = header.tlvs ?? [];
  let tlvBytes = 0;
  for (const tlv of tlvs) {
    if (!Number.isInteger(tlv.type) || tlv.type < 0 || tlv.type > 0xff) {
      throw new InvalidArgumentError(`TLV type must be an integer from 0 to 255, got ${String(tlv.type)}`);
    }
    if (tlv.value.length > 0xffff) {
      throw new InvalidArgumentError(
        `TLV 0x${hex(tlv.type)} value of ${tlv.value.length} bytes exceeds 65535`,
      );
    }
    tlvBytes += 3 + tlv.value.length;
  }
  let familyProtocol = 0x00;
  if (header.command === 'proxy') {
    switch (header.family) {
      case 'tcp4':
        familyProtocol = 0x11;
        break;
      case 'tcp6':
        familyProtocol = 0x21;
        break;
      case 'unix':
        familyProtocol = 0x31;
        break;
      case 'unknown':
        break;
      default:
        throw new InvalidArgumentError(
          `PROXY v2 family ${String(header.family)} is not tcp4, tcp6, unix or unknown`,
        );
    }
  }
  const addressLength = addressBytes(familyProtocol);
  const length = addressLength + tlvBytes;
  if (length > 0xffff) {
    throw new InvalidArgumentError(`PROXY v2 header body of ${length} bytes exceeds the u16 length (65535)`);
  }
  const out = Buffer.alloc(PROXY_V2_FIXED_BYTES + length);
  V2_SIGNATURE.copy(out, 0);
  out[12] = header.command === 'local' ? 0x20 : 0x21;
  out[13] = familyProtocol;
  out.writeUInt16BE(length, 14);
  const a = PROXY_V2_FIXED_BYTES;
  if (familyProtocol === 0x11 || familyProtocol === 0x21) {
    const version = familyProtocol === 0x11 ? 4 : 6;
    const src = checkEndpoint('source', header.source, version);
    const dst = checkEndpoint('destination', header.destination, version);
    const size = version === 4 ? 4 : 16;
    writeIP(out, a, src.address);
    writeIP(out, a + size, dst.address);
    out.writeUInt16BE(src.port, a + 2 * size);
    out.writeUInt16BE(dst.port, a + 2 * size + 2);
  } else if (familyProtocol === 0x31) {
    writeUnix(out, a, 'source', header.source);
    writeUnix(out, a + 108, 'destination', header.destination);
  }
  let p = a + addressLength;
  for (const tlv of tlvs) {
    out[p] = tlv.type;
    out.writeUInt16BE(tlv.value.length, p + 1);
    out.set(tlv.value, p + 3);
    p += 3 + tlv.value.length;
  }
  return out;
}

/** An address of the given IP version and a port, with an IPv6 address in Node's printed form. */
function checkEndpoint(name: string, endpoint: ProxyAddress | undefined, version: 4 | 6): ProxyAddress {
  const address = endpoint?.address;
  if (typeof address !== 'string' || net.isIP(address) !== version || address.includes('%')) {
    throw new InvalidArgumentError(
      `${name} address must be an IPv${version} address, got ${String(address)}`,
    );
  }
  const port = endpoint!.port;
  if (!Number.isInteger(port) || port < 0 || port > 0xffff) {
    throw new InvalidArgumentError(`${name} port must be an integer from 0 to 65535, got ${String(port)}`);
  }
  return { address: version === 6 ? formatIPv6(address) : address, port };
}

/** Writes a checked IPv4 (4 bytes) or IPv6 (16 bytes) address in network order. */
function writeIP(out: Buffer, at: number, address: string): void {
  if (net.isIPv4(address)) {
    const octets = address.split('.');
    for (let i = 0; i < 4; i++) out[at + i] = Number(octets[i]);
    return;
  }
  // An IPv4 tail ("::ffff:1.2.3.4") becomes two hex groups; then "::" stands for the missing zeros.
  let text = address;
  const lastColon = text.lastIndexOf(':');
  if (text.includes('.', lastColon)) {
    const o = text
      .slice(lastColon + 1)
      .split('.')
      .map(Number) as [number, number, number, number];
    text = `${text.slice(0, lastColon + 1)}${((o[0] << 8) | o[1]).toString(16)}:${((o[2] << 8) | o[3]).toString(16)}`;
  }
  const gap = text.indexOf('::');
  const head = (gap < 0 ? text : text.slice(0, gap)).split(':').filter((g) => g !== '');
  const tail =
    gap < 0
      ? []
      : text
          .slice(gap + 2)
          .split(':')
          .filter((g) => g !== '');
  const groups = [...head, ...new Array<string>(8 - head.length - tail.length).fill('0'), ...tail];
  for (let i = 0; i < 8; i++) out.writeUInt16BE(Number.parseInt(groups[i]!, 16), at + 2 * i);
}

function writeUnix(out: Buffer, at: number, name: string, endpoint: ProxyAddress | undefined): void {
  const address = endpoint?.address;
  if (typeof address !== 'string' || Buffer.byteLength(address, 'utf8') > 108) {
    throw new InvalidArgumentError(
      `${name} must be a UNIX socket path of at most 108 bytes, got ${String(address)}`,
    );
  }
  out.write(address, at, 'utf8');
}
