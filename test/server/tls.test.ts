/**
 * TLS and mTLS on the server, end to end with the library's client: a private CA, client
 * certificates whose subject becomes the identity, certificate reload without a restart, and the
 * mistakes users make (plaintext to a TLS port, TLS to a plaintext one, no or a foreign client
 * certificate) failing at once with an error that says which.
 */

import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import tls from 'node:tls';
import { type Client, connect } from '../../src/client/client.js';
import { ConnectError, ConnectionClosedError } from '../../src/errors.js';
import { createServer, type RefusalInfo, type Server } from '../../src/server/server.js';
import type { RequestContext } from '../../src/server/server-peer.js';
import { waitFor } from '../helpers.js';
import { skipBecause } from '../skip.js';
import { makePki, type TestPki } from './certs.js';

let pki: TestPki | undefined;
let skip: string | false = false;
try {
  pki = makePki();
} catch (err) {
  skip = skipBecause(`openssl could not make test certificates: ${(err as Error).message}`);
}

const servers: Server[] = [];
const clients: Client[] = [];
after(async () => {
  for (const c of clients) c.destroy();
  for (const s of servers) s.destroy();
  pki?.remove();
});

const whoami = (_p: unknown, ctx: RequestContext) => ({
  identity: ctx.identity ?? null,
  tls: ctx.tls,
  remoteAddress: ctx.remoteAddress,
});

async function start(
  opts: Parameters<typeof createServer>[0],
): Promise<{ server: Server; port: number; refused: RefusalInfo[] }> {
  const server = createServer(opts);
  servers.push(server);
  const refused: RefusalInfo[] = [];
  server.on('refused', (r) => refused.push(r));
  const { port } = await server.listen();
  return { server, port, refused };
}

async function client(o: Parameters<typeof connect>[0]): Promise<Client> {
  const c = await connect({ reconnect: false, connectTimeoutMs: 5000, ...o });
  clients.push(c);
  return c;
}

/** The SHA-256 fingerprint of the certificate a TLS server presents now. */
async function servedFingerprint(port: number, ca: Buffer): Promise<string> {
  const s = tls.connect({ port, host: '127.0.0.1', ca });
  await once(s, 'secureConnect');
  const fp = s.getPeerCertificate().fingerprint256;
  s.destroy();
  return fp;
}

describe('TLS on the server', { skip }, () => {
  const p = () => pki as TestPki;
  let tlsServer: { server: Server; port: number; refused: RefusalInfo[] };
  before(async () => {
    tlsServer = await start({
      tls: { key: p().server.key, cert: p().server.cert },
      handlers: { echo: (x) => x, whoami },
    });
  });

  test('requests over TLS 1.3: the handler sees the TLS session; no identity without mTLS', async () => {
    const c = await client({ port: tlsServer.port, tls: { ca: p().ca } });
    assert.deepEqual(await c.request('echo', { a: 1 }), { a: 1 });
    const who = (await c.request('whoami')) as {
      identity: unknown;
      tls: { protocol: string; authorized: boolean };
    };
    assert.equal(who.tls.protocol, 'TLSv1.3');
    assert.equal(who.tls.authorized, false, 'no client certificate was asked for');
    assert.equal(who.identity, null);
    await c.close();
  });

  test('a plaintext client on the TLS port fails at once, saying the server closed without a word', async () => {
    // Prompt, not a timeout: the error is the close during HELLO, not ERR_CONNECT_TIMEOUT.
    await assert.rejects(connect({ port: tlsServer.port, reconnect: false }), (e: unknown) => {
      assert.ok(e instanceof ConnectionClosedError);
      assert.match(e.message, /during HELLO: .*TLS port/);
      return true;
    });
    await waitFor(() => tlsServer.refused.some((r) => r.reason === 'tls-handshake'), 5000, 'refusal counted');
    assert.ok((tlsServer.server.stats().refused['tls-handshake'] ?? 0) >= 1);
  });

  test('a TLS client on a plaintext port fails at once: "the server does not speak TLS on this port"', async () => {
    const { port } = await start({ handlers: { echo: (x) => x } });
    // At once, not a timeout: the error says why (a timeout would be ERR_CONNECT_TIMEOUT).
    await assert.rejects(connect({ port, reconnect: false, tls: { ca: p().ca } }), (e: unknown) => {
      assert.ok(e instanceof ConnectError);
      assert.equal(e.code, 'ERR_CONNECT');
      assert.match(e.message, /does not speak TLS/);
      return true;
    });
  });

  test('a certificate the client does not trust fails the connect with the TLS error', async () => {
    await assert.rejects(connect({ port: tlsServer.port, reconnect: false, tls: {} }), (e: unknown) => {
      assert.ok(e instanceof ConnectError);
      assert.match(
        e.message,
        /TLS handshake .* failed \((SELF_SIGNED|UNABLE_TO_VERIFY|DEPTH_ZERO).*not trusted/,
      );
      return true;
    });
  });

  test('certificate reload: setSecureContext serves the new certificate to new connections, open ones keep working', async () => {
    const { server, port } = await start({
      tls: { key: p().server.key, cert: p().server.cert },
      handlers: { echo: (x) => x },
    });
    const before = await servedFingerprint(port, p().ca);
    const open = await client({ port, tls: { ca: p().ca } });
    server.setSecureContext({ key: p().server2.key, cert: p().server2.cert });
    const afterFp = await servedFingerprint(port, p().ca);
    assert.notEqual(afterFp, before);
    assert.equal(await open.request('echo', 'old session'), 'old session');
    const fresh = await client({ port, tls: { ca: p().ca } });
    assert.equal(await fresh.request('echo', 'new session'), 'new session');
    assert.throws(
      () => createServer({ handlers: { echo: (x) => x } }).setSecureContext({}),
      /created without tls/,
    );
  });

  test('closing over TLS: graceful close_notify + FIN on shutdown, and a client abort is seen as a reset', async () => {
    const { server, port } = await start({
      tls: { key: p().server.key, cert: p().server.cert },
      handlers: { echo: (x) => x },
    });
    const reasons: string[] = [];
    server.on('disconnect', (_c, info) => reasons.push(info.reason));
    const a = await client({ port, tls: { ca: p().ca } });
    await a.request('echo', 1);
    a.destroy();
    await waitFor(() => reasons.includes('remote-reset'), 5000, 'the abort seen as a reset');
    const b = await client({ port, tls: { ca: p().ca } });
    const seen: string[] = [];
    b.on('disconnect', (info) => seen.push(info.reason));
    const report = await server.close({ graceMs: 2000 });
    assert.equal(report.aborted, 0);
    await waitFor(() => seen.length > 0, 5000, 'client saw the close');
    assert.equal(seen[0], 'going-away');
  });
});

describe('mTLS', { skip }, () => {
  const p = () => pki as TestPki;
  let m: { server: Server; port: number; refused: RefusalInfo[] };
  before(async () => {
    m = await start({
      tls: { key: p().server.key, cert: p().server.cert, ca: p().ca, requestCert: true },
      handlers: { whoami },
    });
  });

  test("the client certificate's subject is the identity", async () => {
    const c = await client({ port: m.port, tls: { ca: p().ca, cert: p().alice.cert, key: p().alice.key } });
    const who = (await c.request('whoami')) as {
      identity: string;
      tls: { authorized: boolean; peerSubject: string };
    };
    assert.equal(who.identity, 'CN=alice,O=example');
    assert.equal(who.tls.authorized, true);
    assert.equal(who.tls.peerSubject, 'CN=alice,O=example');
  });

  test('authenticate may replace the identity, and sees the TLS session', async () => {
    const { port } = await start({
      tls: { key: p().server.key, cert: p().server.cert, ca: p().ca, requestCert: true },
      authenticate: (_cred, ctx) =>
        ctx.tls?.authorized ? { user: ctx.tls.peerSubject?.split(',')[0] } : false,
      handlers: { whoami },
    });
    const c = await client({ port, tls: { ca: p().ca, cert: p().alice.cert, key: p().alice.key } });
    assert.deepEqual(((await c.request('whoami')) as { identity: unknown }).identity, { user: 'CN=alice' });
  });

  test('no client certificate, or one from a foreign CA: refused in the handshake, counted, and the client told', async () => {
    const before = m.refused.length;
    await assert.rejects(connect({ port: m.port, reconnect: false, tls: { ca: p().ca } }), (e: unknown) => {
      assert.ok(e instanceof ConnectionClosedError);
      assert.match(e.message, /TLS session failed \(certificate required/);
      return true;
    });
    await assert.rejects(
      connect({
        port: m.port,
        reconnect: false,
        tls: { ca: p().ca, cert: p().mallory.cert, key: p().mallory.key },
      }),
      ConnectionClosedError,
    );
    await waitFor(() => m.refused.length >= before + 2, 5000, 'two refusals');
    const mine = m.refused.slice(before);
    assert.ok(mine.every((r) => r.reason === 'tls-handshake' && r.error !== undefined));
    assert.ok(mine.some((r) => /client certificate refused|certificate/.test(String(r.error?.message))));
  });

  test('a raw socket that never finishes the handshake is closed at helloTimeoutMs', async () => {
    const { port, refused } = await start({
      tls: { key: p().server.key, cert: p().server.cert },
      helloTimeoutMs: 300,
      handlers: { whoami },
    });
    const s = net.connect({ port, host: '127.0.0.1' });
    s.on('error', () => {});
    await once(s, 'connect');
    s.write(Buffer.from([0x16, 0x03, 0x01])); // the start of a ClientHello, then nothing
    await once(s, 'close');
    await waitFor(() => refused.some((r) => r.reason === 'handshake-timeout'), 5000, 'handshake-timeout');
  });
});
