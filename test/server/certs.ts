/**
 * Test certificates made with Debian's openssl at test time (nothing secret is committed): a CA, a
 * server certificate for localhost / 127.0.0.1 signed by it, client certificates for mTLS (alice,
 * signed by the CA; mallory, self-signed), and a second server certificate for reload tests.
 */

import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface KeyPair {
  key: Buffer;
  cert: Buffer;
  /** Paths of the PEM files (for the CLI). */
  keyFile: string;
  certFile: string;
}

export interface TestPki {
  dir: string;
  ca: Buffer;
  caFile: string;
  server: KeyPair;
  /** Another server certificate from the same CA (certificate reload). */
  server2: KeyPair;
  alice: KeyPair;
  /** A client certificate no CA of ours signed. */
  mallory: KeyPair;
  remove(): void;
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: 'ignore' });
}

/** Makes the PKI in a temp dir; throws when openssl is missing (callers skip with the reason). */
export function makePki(): TestPki {
  const dir = mkdtempSync(join(tmpdir(), 'longlink-pki-'));
  const days = ['-days', '2'];
  openssl(
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      ...days,
      '-subj',
      '/CN=longlink test CA',
      '-keyout',
      'ca.key',
      '-out',
      'ca.pem',
    ],
    dir,
  );
  const leaf = (name: string, subj: string, ext: string | undefined, signedBy: 'ca' | 'self'): KeyPair => {
    if (signedBy === 'self') {
      openssl(
        [
          'req',
          '-x509',
          '-newkey',
          'rsa:2048',
          '-nodes',
          ...days,
          '-subj',
          subj,
          '-keyout',
          `${name}.key`,
          '-out',
          `${name}.pem`,
        ],
        dir,
      );
    } else {
      openssl(
        [
          'req',
          '-newkey',
          'rsa:2048',
          '-nodes',
          '-subj',
          subj,
          '-keyout',
          `${name}.key`,
          '-out',
          `${name}.csr`,
        ],
        dir,
      );
      const args = [
        'x509',
        '-req',
        '-in',
        `${name}.csr`,
        '-CA',
        'ca.pem',
        '-CAkey',
        'ca.key',
        '-CAcreateserial',
        ...days,
        '-out',
        `${name}.pem`,
      ];
      if (ext !== undefined) {
        writeFileSync(join(dir, `${name}.ext`), ext);
        args.push('-extfile', `${name}.ext`);
      }
      openssl(args, dir);
    }
    const keyFile = join(dir, `${name}.key`);
    const certFile = join(dir, `${name}.pem`);
    return { key: readFileSync(keyFile), cert: readFileSync(certFile), keyFile, certFile };
  };
  const serverExt = 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n';
  const server = leaf('server', '/CN=localhost', serverExt, 'ca');
  const server2 = leaf('server2', '/CN=localhost/O=reloaded', serverExt, 'ca');
  const alice = leaf('alice', '/CN=alice/O=example', 'extendedKeyUsage=clientAuth\n', 'ca');
  const mallory = leaf('mallory', '/CN=mallory', undefined, 'self');
  return {
    dir,
    ca: readFileSync(join(dir, 'ca.pem')),
    caFile: join(dir, 'ca.pem'),
    server,
    server2,
    alice,
    mallory,
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}
