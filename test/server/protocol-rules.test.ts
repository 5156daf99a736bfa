/**
 * Rules of PROTOCOL.md that the server enforces on a raw client, byte by byte.
 */

import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { MessageKind } from '../../src/protocol/types.js';
import { createServer, type Server } from '../../src/server/server.js';
import { waitFor } from '../helpers.js';
import { frame, helloFrame, type RawPeer, rawConnect, requestFrame } from './edge-harness.js';

const servers: Server[] = [];
const peers: RawPeer[] = [];
after(() => {
  for (const p of peers) p.destroy();
  for (const s of servers) s.destroy();
});

async function ready(): Promise<RawPeer> {
  const server = createServer({
    handlers: { slow: () => new Promise((r) => setTimeout(() => r('late'), 200)) },
  });
  servers.push(server);
  const { port } = await server.listen();
  const p = await rawConnect(port);
  peers.push(p);
  p.write(helloFrame({}));
  await waitFor(() => p.messages().includes('HELLO'), 5000, 'HELLO answer');
  return p;
}

const goaway = frame({
  kind: MessageKind.GOAWAY,
  lastId: 0,
  retryAfterMs: 0,
  reason: 'ERR_CLIENT_CLOSING',
  message: '',
});

describe('protocol rules on the server', () => {
  test("regression: a REQUEST after the client's own GOAWAY is ERR_PROTOCOL (it was served)", async () => {
    const p = await ready();
    p.write(requestFrame(1, 'slow', undefined)); // in flight, so the GOAWAY does not close at once
    p.write(goaway);
    p.write(requestFrame(2, 'slow', undefined));
    await p.closed;
    assert.deepEqual(p.messages(), ['HELLO', 'ERROR:ERR_PROTOCOL']);
  });

  test('a request in flight when the client says GOAWAY is answered before the close', async () => {
    const p = await ready();
    p.write(requestFrame(1, 'slow', undefined));
    p.write(goaway);
    p.write(goaway); // a second GOAWAY is ignored
    await p.closed;
    assert.deepEqual(p.messages(), ['HELLO', 'RESPONSE']);
    assert.deepEqual(p.responses(), [{ id: 1, payload: 'late' }]);
  });
});
