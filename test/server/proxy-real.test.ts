/**
 * PROXY headers from real senders: haproxy (`send-proxy-v2`, `send-proxy`) and nginx's stream
 * proxy (`proxy_protocol on`) in front of a plain `net` server on 127.0.0.1 that trusts 127.0.0.1
 * and reads the header with ProxyHeaderReader. Clients connect through each proxy from 127.0.0.2:
 * the server must see 127.0.0.2 and the client's own port, then bytes flow both ways intact — with
 * the client speaking first (its bytes may share a read with the header) and with the server
 * speaking first (the proxy must send the header before the client sends anything).
 *
 * Also: haproxy's health checks (a v2 LOCAL header; a v1 line naming the check's own addresses), a
 * proxy that sends no header (refused at its first byte), and a header forged by an untrusted
 * client (refused by looksLikeProxyHeader).
 */

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { EventEmitter, once } from 'node:events';
import net from 'node:net';
import { after, describe, test } from 'node:test';
import { ProxyHeaderError } from '../../src/errors.js';
import { encodeProxyV1 } from '../../src/server/proxy-encode.js';
import { looksLikeProxyHeader, type ProxyHeader, ProxyHeaderReader } from '../../src/server/proxy-header.js';
import { isTrustedAddress, parseTrustedProxies } from '../../src/server/trusted-proxies.js';
import { skipUnless } from '../skip.js';
import { proxyUnavailable, type RunningProxy, startHaproxy, startNginx } from './proxies.js';

const CLIENT_ADDRESS = '127.0.0.2';
const PAYLOAD = randomBytes(256 * 1024);

/** A connection the upstream accepted, once its fate is known. */
interface Accepted {
  /** The sender's address as seen at accept (undefined if it had already reset). */
  peer: { address: string | undefined; port: number | undefined };
  header?: ProxyHeader;
  error?: Error;
  /** Reads it took to complete the header. */
  reads: number;
  /** Bytes after the header in the read that completed it (client data in the same segment). */
  restBytes: number;
}

/**
 * The server behind the proxies: reads a PROXY header from trusted senders, then greets the client
 * the header named (`hello <address>:<port>\n`) and echoes every byte. An untrusted sender whose
 * first bytes look like a PROXY header is refused; any other is echoed as is.
 */
class Upstream extends EventEmitter {
  readonly settled: Accepted[] = [];
  readonly server: net.Server;
  readonly sockets = new Set<net.Socket>();
  private readonly trusted = parseTrustedProxies('127.0.0.1');

  constructor() {
    super();
    this.server = net.createServer((socket) => this.accept(socket));
  }

  get port(): number {
    return (this.server.address() as net.AddressInfo).port;
  }

  async listen(): Promise<this> {
    this.server.listen(0, '127.0.0.1');
    await once(this.server, 'listening');
    return this;
  }

  /** The first settled connection matching `pred`, now or when it settles. */
  next(pred: (a: Accepted) => boolean): Promise<Accepted> {
    const found = this.settled.find(pred);
    if (found !== undefined) return Promise.resolve(found);
    return new Promise((resolve) => {
      const on = (a: Accepted) => {
        if (!pred(a)) return;
        this.off('settled', on);
        resolve(a);
      };
      this.on('settled', on);
    });
  }

  close(): void {
    for (const s of this.sockets) s.destroy();
    this.server.close();
  }

  private settle(a: Accepted): void {
    this.settled.push(a);
    this.emit('settled', a);
  }

  private accept(socket: net.Socket): void {
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    socket.on('error', () => {});
    // Read at accept: haproxy resets a check connection at once, and then getpeername() fails.
    const a: Accepted = {
      peer: { address: socket.remoteAddress, port: socket.remotePort },
      reads: 0,
      restBytes: 0,
    };
    if (!isTrustedAddress(this.trusted, a.peer.address)) {
      socket.once('data', (chunk: Buffer) => {
        if (looksLikeProxyHeader(chunk) !== false) {
          a.error = new Error(`PROXY header from untrusted ${a.peer.address}`);
          this.settle(a);
          socket.destroy();
          return;
        }
        socket.unshift(chunk);
        this.settle(a);
        socket.pipe(socket);
      });
      return;
    }
    const reader = new ProxyHeaderReader();
    const onData = (chunk: Buffer) => {
      a.reads++;
      let done: ReturnType<ProxyHeaderReader['push']>;
      try {
        done = reader.push(chunk);
      } catch (err) {
        a.error = err as Error;
        this.settle(a);
        socket.destroy();
        return;
      }
      if (done === undefined) return;
      socket.off('data', onData);
      a.header = done.header;
      a.restBytes = done.rest.length;
      this.settle(a);
      const who = done.header.source ?? a.peer;
      socket.write(`hello ${who.address}:${who.port}\n`);
      if (done.rest.length > 0) socket.write(done.rest);
      socket.pipe(socket);
    };
    socket.on('data', onData);
    socket.on('end', () => {
      if (a.header !== undefined || a.error !== undefined) return;
      try {
        reader.end();
      } catch (err) {
        a.error = err as Error;
      }
      this.settle(a);
    });
  }
}

const proxies: RunningProxy[] = [];
const upstreams: Upstream[] = [];
const clients: net.Socket[] = [];
after(async () => {
  for (const c of clients) c.destroy();
  await Promise.all(proxies.map((p) => p.stop()));
  for (const u of upstreams) u.close();
});

async function upstream(): Promise<Upstream> {
  const u = await new Upstream().listen();
  upstreams.push(u);
  return u;
}

async function started(p: Promise<RunningProxy>): Promise<RunningProxy> {
  const proxy = await p;
  proxies.push(proxy);
  return proxy;
}

/** A client socket connected to the proxy from 127.0.0.2, collecting what it reads. */
async function connectClient(proxy: RunningProxy): Promise<{ socket: net.Socket; received: Buffer[] }> {
  const socket = net.connect({ port: proxy.port, host: proxy.host, localAddress: CLIENT_ADDRESS });
  clients.push(socket);
  const received: Buffer[] = [];
  socket.on('data', (d: Buffer) => {
    received.push(d);
    socket.emit('received');
  });
  await once(socket, 'connect');
  return { socket, received };
}

/** Resolves once `done(bytes read so far)` holds; rejects if the socket closes first. */
async function until(socket: net.Socket, received: Buffer[], done: (all: Buffer) => boolean): Promise<void> {
  while (!done(Buffer.concat(received))) {
    if (socket.closed) throw new Error(`closed after ${Buffer.concat(received).length} bytes`);
    await new Promise<void>((resolve) => {
      const wake = () => {
        socket.off('received', wake);
        socket.off('close', wake);
        resolve();
      };
      socket.on('received', wake);
      socket.on('close', wake);
    });
  }
}

/**
 * One connection through `proxy`: the header the upstream read must name the client; then
 * PAYLOAD goes up and comes back after the greeting, byte for byte. The client ends only once it
 * has the whole echo: nginx does not relay a half-close unless `proxy_half_close on`.
 */
async function throughProxy(
  server: Upstream,
  proxy: RunningProxy,
  version: 1 | 2,
  order: 'client first' | 'server first',
): Promise<Accepted> {
  const { socket, received } = await connectClient(proxy);
  const clientPort = socket.localPort!;
  const closed = once(socket, 'close');
  if (order === 'client first') socket.write(PAYLOAD);
  const accepted = await server.next(
    (a) => a.header?.source?.address === CLIENT_ADDRESS && a.header.source.port === clientPort,
  );
  const expected: ProxyHeader = {
    version,
    command: 'proxy',
    family: 'tcp4',
    source: { address: CLIENT_ADDRESS, port: clientPort },
    destination: { address: '127.0.0.1', port: proxy.port },
  };
  if (version === 2) expected.tlvs = [];
  assert.deepEqual(accepted.header, expected);
  if (order === 'server first') {
    // The proxy sent the header with no client byte to carry it, and the server could answer.
    assert.equal(accepted.restBytes, 0);
    await until(socket, received, (all) => all.includes(0x0a));
    socket.write(PAYLOAD);
  }
  const greeting = `hello ${CLIENT_ADDRESS}:${clientPort}\n`;
  await until(socket, received, (all) => all.length >= greeting.length + PAYLOAD.length);
  socket.end();
  await closed;
  const all = Buffer.concat(received);
  assert.equal(all.subarray(0, greeting.length).toString('latin1'), greeting);
  assert.equal(all.length - greeting.length, PAYLOAD.length, 'echoed byte count');
  assert.ok(all.subarray(greeting.length).equals(PAYLOAD), 'echoed bytes intact');
  console.log(
    `# proxy-real: ${proxy.kind} v${version}, ${order}: header in ${accepted.reads} read(s), ` +
      `${accepted.restBytes} client bytes in the read that completed it`,
  );
  return accepted;
}

const haproxySkip = proxyUnavailable('haproxy');
const nginxSkip = proxyUnavailable('nginx');

describe('haproxy', { skip: haproxySkip ?? false, timeout: 60_000 }, () => {
  for (const [sendProxy, version] of [
    ['v2', 2],
    ['v1', 1],
  ] as const) {
    test(`send-proxy${sendProxy === 'v2' ? '-v2' : ''}: the server sees 127.0.0.2 and the client's port; bytes flow both ways intact`, async () => {
      const server = await upstream();
      const proxy = await started(startHaproxy({ upstreamPort: server.port, sendProxy }));
      await throughProxy(server, proxy, version, 'client first');
      await throughProxy(server, proxy, version, 'server first');
      // Several at once: each header names its own client.
      await Promise.all([1, 2, 3].map(() => throughProxy(server, proxy, version, 'client first')));
    });
  }

  // Checks that wait for the server's greeting: a bare connect check resets before Node's accept
  // callback can read the peer's address (see HaproxyOptions.healthCheck).
  const checks = { intervalMs: 100, expect: 'hello' };

  test('send-proxy-v2 health checks (check-send-proxy) open with a LOCAL header and nothing else', async () => {
    const server = await upstream();
    const proxy = await started(
      startHaproxy({ upstreamPort: server.port, sendProxy: 'v2', healthCheck: checks }),
    );
    const check = await server.next((a) => a.header !== undefined);
    assert.deepEqual(check.header, { version: 2, command: 'local', family: 'unknown', tlvs: [] });
    assert.equal(check.peer.address, '127.0.0.1');
    assert.equal(check.restBytes, 0);
    await proxy.stop();
  });

  test("send-proxy health checks: a TCP4 line naming the check connection's own two ends", async () => {
    const server = await upstream();
    const proxy = await started(
      startHaproxy({ upstreamPort: server.port, sendProxy: 'v1', healthCheck: checks }),
    );
    // Not UNKNOWN (§2.1 advises against it for checks): what getsockname()/getpeername() say.
    const check = await server.next((a) => a.header !== undefined);
    assert.deepEqual(check.header, {
      version: 1,
      command: 'proxy',
      family: 'tcp4',
      source: { address: '127.0.0.1', port: check.peer.port },
      destination: { address: '127.0.0.1', port: server.port },
    });
    await proxy.stop();
  });

  test('without send-proxy the first byte is refused (bad-signature)', async () => {
    const server = await upstream();
    const proxy = await started(startHaproxy({ upstreamPort: server.port, sendProxy: false }));
    const { socket } = await connectClient(proxy);
    const closed = once(socket, 'close');
    socket.write('GET / HTTP/1.1\r\n\r\n');
    const refused = await server.next((a) => a.error !== undefined);
    assert.ok(refused.error instanceof ProxyHeaderError);
    assert.equal(refused.error.reason, 'bad-signature');
    assert.equal(refused.reads, 1);
    await closed;
  });
});

describe('nginx stream', { skip: nginxSkip ?? false, timeout: 60_000 }, () => {
  test('proxy_protocol on: the server sees 127.0.0.2 and the client port; bytes flow both ways intact', async () => {
    const server = await upstream();
    const proxy = await started(startNginx({ upstreamPort: server.port, proxyProtocol: true }));
    await throughProxy(server, proxy, 1, 'client first');
    await throughProxy(server, proxy, 1, 'server first');
    await Promise.all([1, 2, 3].map(() => throughProxy(server, proxy, 1, 'client first')));
  });

  test('proxy_protocol off: the first byte is refused (bad-signature)', async () => {
    const server = await upstream();
    const proxy = await started(startNginx({ upstreamPort: server.port, proxyProtocol: false }));
    const { socket } = await connectClient(proxy);
    const closed = once(socket, 'close');
    socket.write('GET / HTTP/1.1\r\n\r\n');
    const refused = await server.next((a) => a.error !== undefined);
    assert.ok(refused.error instanceof ProxyHeaderError);
    assert.equal(refused.error.reason, 'bad-signature');
    await closed;
  });
});

describe('untrusted senders', {
  skip: skipUnless(process.platform === 'linux', 'needs 127.0.0.2 (Linux)', { kind: 'platform' }),
}, () => {
  test('a PROXY header forged by a client straight to the server is refused; plain bytes from it are served', async () => {
    const server = await upstream();
    const forged = encodeProxyV1({
      command: 'proxy',
      family: 'tcp4',
      source: { address: '10.0.0.1', port: 1 },
      destination: { address: '127.0.0.1', port: server.port },
    });
    const liar = net.connect({ port: server.port, host: '127.0.0.1', localAddress: CLIENT_ADDRESS });
    clients.push(liar);
    liar.on('error', () => {});
    const liarClosed = once(liar, 'close');
    liar.write(forged);
    const refused = await server.next((a) => a.error !== undefined);
    assert.match(refused.error!.message, /untrusted ::ffff:127\.0\.0\.2|untrusted 127\.0\.0\.2/);
    await liarClosed;

    const honest = net.connect({ port: server.port, host: '127.0.0.1', localAddress: CLIENT_ADDRESS });
    clients.push(honest);
    const echoed = once(honest, 'data');
    honest.write('plain');
    assert.equal(String((await echoed)[0]), 'plain');
  });
});
