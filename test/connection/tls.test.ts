/** Connection over TLS: frames, a graceful close (close_notify + FIN) and an abort (RST) on the TCP fd. */

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import type net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import tls from 'node:tls';
import { parseFraming } from '../../src/codec/index.js';
import { Connection } from '../../src/connection/connection.js';
import { nativeSocketOptions } from '../../src/sys/sockopt.js';
import { kernelEntry, waitFor } from '../helpers.js';
import { requiredOnLinux, skipBecause, skipUnless } from '../skip.js';

let cert: { key: Buffer; cert: Buffer } | undefined;
let skip: string | false = false;
const dir = mkdtempSync(join(tmpdir(), 'longlink-tls-'));
try {
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-days',
      '1',
      '-subj',
      '/CN=localhost',
      '-keyout',
      join(dir, 'k.pem'),
      '-out',
      join(dir, 'c.pem'),
    ],
    { stdio: 'ignore' },
  );
  cert = { key: readFileSync(join(dir, 'k.pem')), cert: readFileSync(join(dir, 'c.pem')) };
} catch (err) {
  skip = skipBecause(`openssl could not make a test certificate: ${(err as Error).message}`);
}

describe('Connection over TLS', { skip }, () => {
  const framing = parseFraming('u32be');
  let server: tls.Server;
  let port = 0;
  const accepted: tls.TLSSocket[] = [];
  before(async () => {
    server = tls.createServer({ ...cert!, allowHalfOpen: true }, (s) => {
      s.on('error', () => {});
      accepted.push(s);
      // Echo frames back verbatim.
      s.on('data', (d: Buffer) => s.write(d));
      s.on('end', () => s.end());
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    port = (server.address() as net.AddressInfo).port;
  });
  after(() => {
    server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('frames round-trip and a graceful close ends with local-graceful', async () => {
    const conn = await Connection.connect({
      port,
      framing,
      tls: { ca: cert!.cert, servername: 'localhost' },
    });
    const got: string[] = [];
    conn.on('frame', (f) => got.push(f.toString()));
    conn.send(Buffer.from('one'));
    conn.send(Buffer.from('two'));
    await waitFor(() => got.length === 2);
    assert.deepEqual(got, ['one', 'two']);
    const info = await conn.close();
    assert.equal(info.reason, 'local-graceful');
    assert.equal(info.graceful, true);
  });

  test('abort resets the underlying TCP connection', {
    skip: skipUnless(
      nativeSocketOptions().available,
      `no native helper: ${nativeSocketOptions().reason}`,
      requiredOnLinux,
    ),
  }, async () => {
    const conn = await Connection.connect({
      port,
      framing,
      tls: { ca: cert!.cert, servername: 'localhost' },
    });
    const localPort = conn.localPort!;
    const peer = await waitFor(() => accepted.find((s) => s.remotePort === localPort));
    const peerError = new Promise<string | undefined>((r) =>
      peer.once('error', (e: NodeJS.ErrnoException) => r(e.code)),
    );
    conn.abort();
    const info = await conn.closed;
    assert.equal(info.reason, 'local-abort');
    assert.equal(await kernelEntry(localPort, port), undefined, 'no TIME_WAIT: it was an RST');
    assert.equal(await peerError, 'ECONNRESET');
  });
});
