/**
 * The CLI at the edge, as an operator runs it: `serve` with TLS and client certificates, a
 * required token, a per-address limit and the PROXY protocol; `call` with a CA, a client
 * certificate and a credential; `whoami` saying who the server thinks the caller is.
 */

import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { encodeProxyV1 } from '../../src/server/proxy-encode.js';
import { waitFor } from '../helpers.js';
import { makePki, type TestPki } from '../server/certs.js';
import { helloFrame, rawConnect, requestFrame } from '../server/edge-harness.js';
import { skipBecause } from '../skip.js';
import { logged } from './run.js';

const MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const children: ChildProcess[] = [];
let pki: TestPki | undefined;
let skip: string | false = false;
try {
  pki = makePki();
} catch (err) {
  skip = skipBecause(`openssl could not make test certificates: ${(err as Error).message}`);
}
after(() => {
  for (const c of children) c.kill('SIGKILL');
  pki?.remove();
});

function run(args: string[]): { out: string[]; err: string[]; exit: Promise<number | null> } {
  const child = spawn(process.execPath, [MAIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  const out: string[] = [];
  const err: string[] = [];
  const sink = (to: string[]) => {
    let buf = '';
    return (d: string) => {
      buf += d;
      for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
        to.push(buf.slice(0, i));
        buf = buf.slice(i + 1);
      }
    };
  };
  child.stdout!.setEncoding('utf8').on('data', sink(out));
  child.stderr!.setEncoding('utf8').on('data', sink(err));
  return { out, err, exit: new Promise((r) => child.once('exit', (code) => r(code))) };
}

async function serve(args: string[]): Promise<number> {
  const srv = run(['serve', '--port', '0', '--grace', '1000', ...args]);
  const line = await waitFor(
    () => srv.out.map((l) => logged(l) ?? '').find((l) => l.startsWith('listening ')),
    10_000,
    'listening',
  );
  return Number(/:(\d+) /.exec(line)?.[1]);
}

describe('longlink CLI at the edge', { skip }, () => {
  const p = () => pki as TestPki;

  test('serve --tls-cert/--tls-key/--tls-ca/--tls-client-auth --auth-token-file; call whoami with a client certificate and the token', async () => {
    const tokenFile = join(p().dir, 'token');
    writeFileSync(tokenFile, 's3cret\n');
    const port = await serve([
      '--tls-cert',
      p().server.certFile,
      '--tls-key',
      p().server.keyFile,
      '--tls-ca',
      p().caFile,
      '--tls-client-auth',
      '--auth-token-file',
      tokenFile,
    ]);
    const tlsArgs = [
      '--tls-ca',
      p().caFile,
      '--tls-cert',
      p().alice.certFile,
      '--tls-key',
      p().alice.keyFile,
    ];
    const who = run(['call', '--port', String(port), ...tlsArgs, '--credential', 's3cret', 'whoami']);
    assert.equal(await who.exit, 0, who.err.join('\n'));
    const w = JSON.parse(who.out[0] ?? '{}');
    assert.equal(w.remoteAddress, '127.0.0.1');
    assert.equal(typeof w.pid, 'number');
    assert.deepEqual(w.tls, { protocol: 'TLSv1.3', authorized: true, peerSubject: 'CN=alice,O=example' });
    // The token check admits (true) without naming anyone: the verified certificate's subject is the identity.
    assert.equal(w.identity, 'CN=alice,O=example');

    const wrong = run(['call', '--port', String(port), ...tlsArgs, '--credential', 'guess', 'whoami']);
    assert.equal(await wrong.exit, 1);
    assert.match(wrong.err.join('\n'), /ERR_UNAUTHENTICATED/);

    const plain = run(['call', '--port', String(port), '--credential', 's3cret', 'whoami']);
    assert.equal(await plain.exit, 1);
    assert.match(plain.err.join('\n'), /TLS port/);

    const stats = run(['call', '--port', String(port), ...tlsArgs, '--credential', 's3cret', 'stats']);
    assert.equal(await stats.exit, 0);
    const st = JSON.parse(stats.out[0] ?? '{}');
    assert.equal(st.pid, undefined, 'stats says nothing about the host');
    assert.equal(typeof st.requests, 'number');
  });

  test('serve --max-connections-per-ip and --proxy-protocol --trusted-proxies; bad flag combinations exit 2', async () => {
    const port = await serve([
      '--proxy-protocol',
      '--trusted-proxies',
      '127.0.0.1',
      '--max-connections-per-ip',
      '1',
    ]);
    // Through a "proxy" (we are on the trusted address): the header names 127.0.0.9, and whoami says so.
    const peer = await rawConnect(port);
    peer.write(
      encodeProxyV1({
        command: 'proxy',
        family: 'tcp4',
        source: { address: '127.0.0.9', port: 4242 },
        destination: { address: '127.0.0.1', port },
      }),
    );
    peer.write(helloFrame({}));
    await waitFor(() => peer.messages().includes('HELLO'), 5000, 'HELLO answer');
    peer.write(requestFrame(1, 'whoami', undefined));
    await waitFor(() => peer.messages().includes('RESPONSE'), 5000, 'whoami answer');
    const who = peer.responses()[0]?.payload as { remoteAddress: string; remotePort: number };
    assert.equal(who.remoteAddress, '127.0.0.9');
    assert.equal(who.remotePort, 4242);
    // A direct connection from the trusted address has no header: refused.
    const direct = run(['call', '--port', String(port), 'whoami']);
    assert.equal(await direct.exit, 1);
    peer.destroy();
    for (const bad of [
      ['--tls-cert', 'x'],
      ['--tls-client-auth', '--tls-cert', 'a', '--tls-key', 'b'],
      ['--proxy-protocol'],
    ]) {
      const r = run(['serve', '--port', '0', ...bad]);
      assert.equal(await r.exit, 2, bad.join(' '));
    }
  });
});
