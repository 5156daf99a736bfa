/**
 * Simulated devices for the gateway: each opens one connection, says hello, sends telemetry on
 * one timer and heartbeats on another (the sources' recipe), and answers the gateway's heartbeat
 * probes. A device named by `--silent` freezes after `--silent-after` acked messages: it sends
 * nothing more and answers nothing, but its connection stays open — no FIN, no RST — so only the
 * gateway's heartbeat timeout can find it.
 *
 *   node dist/examples/device-gateway/devices.js --port 7000 --devices 4 --silent sensor-3
 */
import { parseArgs } from 'node:util';
import { type CloseReason, Connection, parseFraming } from 'longlink';
import { type DeviceMessage, FRAMING, type GatewayMessage } from './messages.js';

const { values: args } = parseArgs({
  options: {
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string', default: '7000' },
    devices: { type: 'string', default: '4' },
    messages: { type: 'string', default: '10' }, // telemetry messages per device
    every: { type: 'string', default: '100' }, // ms between two telemetry messages
    silent: { type: 'string', multiple: true, default: [] }, // devices that freeze
    'silent-after': { type: 'string', default: '4' }, // … after this many acked messages
  },
});
const messages = Number(args.messages);
const silentAfter = Number(args['silent-after']);
const framing = parseFraming(FRAMING);

interface Outcome {
  id: string;
  acked: number;
  heartbeats: number;
  silent: boolean;
  reason: CloseReason;
}

function runDevice(id: string, freezes: boolean): Promise<Outcome> {
  return Connection.connect({ host: args.host, port: Number(args.port), framing }).then(
    (conn) =>
      new Promise<Outcome>((resolve) => {
        const send = (msg: DeviceMessage) => conn.send(Buffer.from(JSON.stringify(msg)));
        let telemetryTimer: NodeJS.Timeout | undefined;
        let heartbeatTimer: NodeJS.Timeout | undefined;
        let seq = 0;
        let acked = 0;
        let heartbeats = 0;
        let silent = false;

        const stopTimers = () => {
          clearInterval(telemetryTimer);
          clearInterval(heartbeatTimer);
        };
        const goSilent = () => {
          silent = true;
          stopTimers();
          console.log(`${id} freezes after ${acked} acked messages: no telemetry, no heartbeats, no answers`);
        };

        conn.on('frame', (frame) => {
          if (silent) return; // a frozen device handles nothing
          const msg = JSON.parse(frame.toString('utf8')) as GatewayMessage;
          switch (msg.type) {
            case 'welcome':
              // The gateway says how often to beat; telemetry goes on its own timer.
              heartbeatTimer = setInterval(() => send({ type: 'heartbeat' }), msg.heartbeatMs);
              telemetryTimer = setInterval(() => {
                if (seq === messages) return;
                seq++;
                send({
                  type: 'telemetry',
                  seq,
                  temperature: 20 + Math.round(Math.random() * 50) / 10,
                  battery: 97,
                });
              }, Number(args.every));
              break;
            case 'ack':
              acked++;
              if (freezes && acked === silentAfter) goSilent();
              else if (acked === messages) {
                stopTimers();
                void conn.close(); // all delivered: FIN, the gateway's FIN, done
              }
              break;
            case 'heartbeat': // the gateway's probe: answer it
              send({ type: 'heartbeat-ack' });
              break;
            case 'heartbeat-ack':
              heartbeats++;
              break;
            case 'error':
              console.error(`${id}: the gateway says: ${msg.message}`);
              break;
          }
        });
        conn.on('close', (info) => {
          stopTimers();
          resolve({ id, acked, heartbeats, silent, reason: info.reason });
        });
        send({ type: 'hello', device: id, firmware: '1.4.2' });
      }),
  );
}

const ids = Array.from({ length: Number(args.devices) }, (_, i) => `sensor-${i + 1}`);
const outcomes = await Promise.all(ids.map((id) => runDevice(id, args.silent.includes(id))));

let ok = true;
for (const o of outcomes) {
  console.log(
    `${o.id}: ${o.acked}/${messages} telemetry acked, ${o.heartbeats} heartbeat acks, closed (${o.reason})`,
  );
  // A live device delivers everything and closes itself; a frozen one is dropped by the gateway.
  ok &&= o.silent ? o.reason === 'remote-reset' : o.acked === messages && o.reason === 'local-graceful';
}
const dropped = outcomes.filter((o) => o.silent).map((o) => o.id);
console.log(
  `devices: ${outcomes.length}, telemetry acked: ${outcomes.reduce((n, o) => n + o.acked, 0)}, ` +
    `dropped by the gateway: ${dropped.join(', ') || 'none'}`,
);
process.exitCode = ok ? 0 : 1;
