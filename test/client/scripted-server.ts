// A hand-made longlink server for the client tests: it answers what each test scripts, byte for
// byte, so the client can be shown what no real server would send.
import { parseFraming } from '../../src/codec/parse.js';
import { Connection } from '../../src/connection/connection.js';
import { answerHello } from '../../src/protocol/hello.js';
import { type Message, MessageKind } from '../../src/protocol/types.js';
import { decodeMessage, encodeMessage } from '../../src/protocol/wire.js';
import { listen, type TestServer } from '../helpers.js';

const framing = parseFraming('u32be');

/**
 * `onMessage(conn, msg, n)` sees every message of the n-th accepted connection (1-based) and
 * answers as the test likes; HELLO is answered unless it returns true. `accepts`: when each
 * connection was accepted (performance.now()). `halfOpen`: its connections stay open after the
 * client's FIN (a peer that never closes its side). The listener goes into `track` for cleanup.
 */
export async function scriptedServer(
  track: TestServer[],
  onMessage: (conn: Connection, msg: Message, n: number) => boolean | undefined,
  halfOpen = false,
): Promise<{ port: number; accepts: number[] }> {
  const srv = await listen();
  track.push(srv);
  const accepts: number[] = [];
  srv.server.on('connection', (s) => {
    accepts.push(performance.now());
    const n = accepts.length;
    const conn = new Connection(s, { framing, keepAlive: false, allowHalfOpen: halfOpen });
    conn.on('frame', (f) => {
      const m = decodeMessage(f);
      if (onMessage(conn, m, n) === true) return;
      if (m.kind === MessageKind.HELLO) conn.sendParts(encodeMessage(answerHello(m, {}).reply));
    });
  });
  return { port: srv.port, accepts };
}
