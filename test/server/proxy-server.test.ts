/**
 * The PROXY protocol on the longlink server, behind real haproxy (send-proxy-v2, send-proxy) and
 * real nginx stream (proxy_protocol on), started by the tests from Debian's packages. Clients
 * connect to the proxy from 127.0.0.2 / 127.0.0.3 while the proxy itself speaks from 127.0.0.1:
 * what the handler sees, and what admission counts, is the client's address, not the proxy's.
 * Headers are believed only from trusted proxies: a direct client may not send one, and a
 * trusted address must.
 */

import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { after, describe, test } from 'node:test';
import { type Client, connect } from '../../src/client/client.js';
import { ConnectionClosedError } from '../../src/errors.js';
import { encodeProxyV2 } from '../../src/server/proxy-encode.js';
import { createServer, type RefusalInfo, type Server, type ServerOptions } from '../../src/server/server.js';
import type { RequestContext } from '../../src/server/server-peer.js';
import { RefusedError } from '../../src/session/client-session.js';
import { waitFor } from '../helpers.js';
import { skipTest } from '../skip.js';
import { makePki, type TestPki } from './certs.js';
import { proxyUnavailable, type RunningProxy, startHaproxy, startNginx } from './proxies.js';

const skipHaproxy = proxyUnavailable('haproxy');
const skipNginx = proxyUnavailable('nginx');

const servers: Server[] = [];
const clients: Client[] = [];
const proxies: RunningProxy[] = [];
let pki: TestPki | undefined;
after(async () => {
  for (const c of clients) c.destroy();
  for (const p of proxies) await p.stop();
  for (const s of servers) s.destroy();
  pki?.remove();
});

const whoami = (_p: unknown, ctx: RequestContext) => ({
  remoteAddress: ctx.remoteAddress,
  remotePort: ctx.remotePort,
  tls: ctx.tls === null ? null : { protocol: ctx.tls.protocol },
});

async function start(extra: Partial<ServerOptions> = {}) {
  const server = createServer({
    proxyProtocol: { trustedProxies: ['127.0.0.1'] },
    handlers: { whoami, echo: (x) => x },
    ...extra,
  });
  servers.push(server);
  const refused: RefusalInfo[] = [];
  server.on('refused', (r) => refused.push(r));
  const { port } = await server.listen({ host: '127.0.0.1' });
  return { server, port, refused };
}

async function through(
  proxy: RunningProxy,
  localAddress: string,
  extra: Partial<Parameters<typeof connect>[0]> = {},
): Promise<Client> {
  const c = await connect({
    host: proxy.host,
    port: proxy.port,
    reconnect: false,
    connection: { localAddress },
    ...extra,
  });
  clients.push(c);
  return c;
}

type Who = { remoteAddress: string; remotePort: number; tls: { protocol: string } | null };

describe('PROXY protocol behind real haproxy', { skip: skipHaproxy ?? false }, () => {
  for (const version of ['v2', 'v1'] as const) {
    test(`send-proxy${version === 'v2' ? '-v2' : ''}: the handler sees the client's own address and port`, async () => {
      const { port } = await start();
      const proxy = await startHaproxy({ upstreamPort: port, sendProxy: version });
      proxies.push(proxy);
      const c = await through(proxy, '127.0.0.2');
      const who = (await c.request('whoami')) as Who;
      assert.equal(who.remoteAddress, '127.0.0.2');
      assert.equal(who.remotePort, (c.connection?.socket.localPort as number) ?? -1);
      assert.deepEqual(await c.request('echo', 'x'.repeat(100_000)), 'x'.repeat(100_000));
    });
  }

  test('health checks (check-send-proxy, LOCAL header) are served as the proxy itself, not refused', async () => {
    const { port, refused } = await start();
    const proxy = await startHaproxy({
      upstreamPort: port,
      sendProxy: 'v2',
      healthCheck: { intervalMs: 100 },
    });
    proxies.push(proxy);
    const c = await through(proxy, '127.0.0.2');
    assert.equal(((await c.request('whoami')) as Who).remoteAddress, '127.0.0.2');
    assert.deepEqual(
      refused.filter((r) => r.reason.startsWith('proxy')).map((r) => `${r.reason} ${r.remoteAddress}`),
      [],
      'a LOCAL header is a valid header',
    );
  });

  test('per-address limits count the PROXY source: 127.0.0.3 is held to 2, 127.0.0.4 still gets in', async () => {
    const { port, refused } = await start({ maxConnectionsPerAddress: 2 });
    const proxy = await startHaproxy({ upstreamPort: port, sendProxy: 'v2' });
    proxies.push(proxy);
    await through(proxy, '127.0.0.3');
    await through(proxy, '127.0.0.3');
    await assert.rejects(through(proxy, '127.0.0.3'), (e: unknown) => {
      assert.ok(e instanceof RefusedError);
      assert.equal(e.code, 'ERR_TOO_MANY_CONNECTIONS');
      return true;
    });
    const other = await through(proxy, '127.0.0.4');
    assert.equal(((await other.request('whoami')) as Who).remoteAddress, '127.0.0.4');
    assert.ok(
      refused.some((r) => r.reason === 'max-connections-per-address' && r.remoteAddress === '127.0.0.3'),
    );
  });

  test('TLS through haproxy (mode tcp): PROXY v2 first, then the TLS handshake, then the protocol', async (t) => {
    try {
      pki ??= makePki();
    } catch (err) {
      skipTest(t, `openssl could not make certificates: ${(err as Error).message}`);
      return;
    }
    const { port } = await start({ tls: { key: pki.server.key, cert: pki.server.cert } });
    const proxy = await startHaproxy({ upstreamPort: port, sendProxy: 'v2' });
    proxies.push(proxy);
    const c = await through(proxy, '127.0.0.2', { tls: { ca: pki.ca, servername: 'localhost' } });
    const who = (await c.request('whoami')) as Who;
    assert.equal(who.remoteAddress, '127.0.0.2');
    assert.equal(who.tls?.protocol, 'TLSv1.3');
  });
});

describe('PROXY protocol behind real nginx stream', { skip: skipNginx ?? false }, () => {
  test("proxy_protocol on: the handler sees the client's own address", async () => {
    const { port } = await start();
    const proxy = await startNginx({ upstreamPort: port, proxyProtocol: true });
    proxies.push(proxy);
    const c = await through(proxy, '127.0.0.2');
    assert.equal(((await c.request('whoami')) as Who).remoteAddress, '127.0.0.2');
  });
});

describe('PROXY trust', () => {
  test('a header from an address that is not a trusted proxy is refused (proxy-untrusted)', async () => {
    const { port, refused } = await start({ proxyProtocol: { trustedProxies: ['10.0.0.0/8'] } });
    const s = net.connect({ port, host: '127.0.0.1', localAddress: '127.0.0.2' });
    s.on('error', () => {});
    await once(s, 'connect');
    s.write(
      encodeProxyV2({
        command: 'proxy',
        family: 'tcp4',
        source: { address: '1.2.3.4', port: 1234 },
        destination: { address: '127.0.0.1', port },
      }),
    );
    await once(s, 'close');
    await waitFor(() => refused.some((r) => r.reason === 'proxy-untrusted'), 5000, 'proxy-untrusted');
  });

  test('a direct client that is not a trusted proxy speaks without a header and is served as itself', async () => {
    const { port } = await start({ proxyProtocol: { trustedProxies: ['10.0.0.0/8'] } });
    const c = await connect({ port, reconnect: false, connection: { localAddress: '127.0.0.2' } });
    clients.push(c);
    assert.equal(((await c.request('whoami')) as Who).remoteAddress, '127.0.0.2');
  });

  test('a trusted address that sends no header is refused (proxy-missing), and the client learns it at once', async () => {
    const { port, refused } = await start({ proxyProtocol: { trustedProxies: '127.0.0.0/8' } });
    await assert.rejects(connect({ port, reconnect: false }), ConnectionClosedError);
    await waitFor(() => refused.some((r) => r.reason === 'proxy-missing'), 5000, 'proxy-missing');
  });

  test('a trusted proxy that never sends its header is closed at helloTimeoutMs', async () => {
    const { port, refused } = await start({ helloTimeoutMs: 300 });
    const s = net.connect({ port, host: '127.0.0.1' });
    s.on('error', () => {});
    await once(s, 'connect');
    s.write('PROXY TCP4 1.2.3.4'); // half a v1 line, then nothing
    await once(s, 'close');
    await waitFor(() => refused.some((r) => r.reason === 'handshake-timeout'), 5000, 'handshake-timeout');
  });

  test('trustedProxies is required and checked', () => {
    assert.throws(
      () => createServer({ handlers: {}, proxyProtocol: {} as { trustedProxies: string } }),
      /trustedProxies/,
    );
    assert.throws(
      () => createServer({ handlers: {}, proxyProtocol: { trustedProxies: ['not-an-ip'] } }),
      /not-an-ip/,
    );
  });
});
