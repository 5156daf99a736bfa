/**
 * undici 6 against a node:http server: HTTP/1.1 POST /echo.
 *
 * HTTP/1.1 has one way to keep N requests outstanding on ONE connection: pipelining
 * (RFC 9112 §9.3). undici does it: `Pool({ connections: 1, pipelining: N })` writes up to N
 * requests before the first reply, and node:http answers them in order. But undici pipelines only
 * requests it may retry, so a POST must say `idempotent: true` (undici docs, Dispatcher.request:
 * "Non-idempotent requests will not be pipelined"); without it every POST waits for the previous
 * reply and N in flight degenerates to 1. Each request still costs one write and node:http one
 * response write (no coalescing across requests on either side). Head-of-line blocking is inherent.
 */

import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Pool } from 'undici';
import type { Body, Payload, RpcClient } from '../common.js';

export function startServer(payload: Payload): Promise<number> {
  const type = payload === 'json' ? 'application/json' : 'application/octet-stream';
  const http = createServer(
    { noDelay: true, keepAliveTimeout: 60_000 },
    (req: IncomingMessage, res: ServerResponse) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
        const reply = payload === 'json' ? JSON.stringify(JSON.parse(body.toString())) : body;
        res.writeHead(200, { 'content-type': type, 'content-length': Buffer.byteLength(reply) });
        res.end(reply);
      });
    },
  );
  return new Promise((resolve, reject) => {
    http.once('error', reject);
    http.listen(0, '127.0.0.1', () => resolve((http.address() as AddressInfo).port));
  });
}

export async function startClient(port: number, payload: Payload, inflight: number): Promise<RpcClient> {
  const pool = new Pool(`http://127.0.0.1:${port}`, {
    connections: 1,
    pipelining: inflight,
    keepAliveTimeout: 60_000,
  });
  const headers = {
    'content-type': payload === 'json' ? 'application/json' : 'application/octet-stream',
  };
  // undici connects lazily: the client's verification call, before the warm-up, opens the connection.
  return {
    async call(body: Body): Promise<unknown> {
      const res = await pool.request({
        path: '/echo',
        method: 'POST',
        headers,
        body: Buffer.isBuffer(body) ? body : JSON.stringify(body),
        idempotent: true,
      });
      if (res.statusCode !== 200) throw new Error(`undici: HTTP ${res.statusCode}`);
      return payload === 'json' ? res.body.json() : Buffer.from(await res.body.arrayBuffer());
    },
    close: () => pool.close(),
  };
}
