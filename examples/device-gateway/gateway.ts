/**
 * A device gateway. Each device keeps one long connection and speaks the sources' framing: a
 * 20-digit ASCII length header, then a JSON body. The gateway acks every telemetry message,
 * answers heartbeats, and declares a device dead once it has been silent for `--timeout` ms —
 * a frozen device or a cut cable sends no FIN, so only the silence tells.
 *
 *   node dist/examples/device-gateway/gateway.js --port 7000
 */
import { parseArgs } from 'node:util';
import { type Connection, createServer, HeartbeatTimeoutError, type LegacyContext } from 'longlink';
import { type DeviceMessage, FRAMING, type GatewayMessage } from './messages.js';

const { values: args } = parseArgs({
  options: {
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string', default: '7000' },
    heartbeat: { type: 'string', default: '250' }, // ms between a device's heartbeats (told in the welcome)
    timeout: { type: 'string', default: '1500' }, // ms of silence after which a device is dead
  },
});
const heartbeatMs = Number(args.heartbeat);
const timeoutMs = Number(args.timeout);

interface Device {
  id: string;
  telemetry: number;
  heartbeats: number;
  lastTemperature: number | undefined;
}

/** Who is on each connection: set by the device's hello, removed when its connection closes. */
const devices = new Map<Connection, Device>();
const seen = new Set<string>();
let telemetryTotal = 0;

/** One frame from a device in, at most one frame back. Frames of one connection come in order. */
function handle(msg: DeviceMessage, ctx: LegacyContext): GatewayMessage | undefined {
  if (msg.type === 'hello') {
    devices.set(ctx.connection, { id: msg.device, telemetry: 0, heartbeats: 0, lastTemperature: undefined });
    seen.add(msg.device);
    console.log(
      `device ${msg.device} online from ${ctx.remoteAddress}:${ctx.remotePort} (firmware ${msg.firmware})`,
    );
    return { type: 'welcome', heartbeatMs };
  }
  const device = devices.get(ctx.connection);
  if (device === undefined) return { type: 'error', message: 'say hello first' };
  switch (msg.type) {
    case 'telemetry':
      device.telemetry++;
      device.lastTemperature = msg.temperature;
      telemetryTotal++;
      return { type: 'ack', seq: msg.seq };
    case 'heartbeat':
      device.heartbeats++;
      return { type: 'heartbeat-ack' };
    case 'heartbeat-ack':
      return undefined; // the answer to our probe; reading it was the proof of life
    default:
      return { type: 'error', message: `unknown message type ${(msg as { type?: unknown }).type}` };
  }
}

const server = createServer({
  legacy: {
    framing: FRAMING, // 'ascii:20': 20 zero-padded ASCII digits of body length, then the body
    json: true, // frames in are parsed as JSON, answers out are JSON-encoded
    handler: (msg, ctx) => handle(msg as DeviceMessage, ctx),
  },
  connection: {
    // Any byte read proves the device alive. After two heartbeat periods of silence the gateway
    // probes once with a heartbeat of its own; after `timeoutMs` of silence the device is declared
    // dead: its connection is reset with reason 'heartbeat-timeout' and its state cleaned up.
    heartbeat: {
      intervalMs: 2 * heartbeatMs,
      timeoutMs,
      frame: Buffer.from(JSON.stringify({ type: 'heartbeat' } satisfies GatewayMessage)),
    },
  },
});

server.on('connection', (connection) => {
  // 'heartbeat': the Connection sent our probe because nothing was read for the interval.
  connection.on('heartbeat', () => {
    const id = devices.get(connection)?.id ?? connection.remoteAddress;
    console.log(`device ${id} silent for ${2 * heartbeatMs} ms: probing`);
  });
});
server.on('disconnect', (connection, info) => {
  const device = devices.get(connection);
  devices.delete(connection);
  if (device === undefined) return;
  const silent =
    info.error instanceof HeartbeatTimeoutError ? ` after ${info.error.silentMs} ms of silence` : '';
  console.log(
    `device ${device.id} offline: ${info.reason}${silent} ` +
      `(${device.telemetry} telemetry, ${device.heartbeats} heartbeats, last temperature ${device.lastTemperature ?? '-'})`,
  );
});
server.on('handlerError', (failure) => console.error('handler failed:', failure.error));

const { address, port } = await server.listen({ host: args.host, port: Number(args.port) });
console.log(
  `gateway listening on ${address}:${port} (${FRAMING} + JSON; heartbeat ${heartbeatMs} ms, dead after ${timeoutMs} ms of silence)`,
);

async function stop(): Promise<void> {
  const report = await server.close({ graceMs: 2_000 });
  console.log(
    `gateway stopped: ${seen.size} devices, ${telemetryTotal} telemetry messages; ` +
      `${report.connections} still connected at shutdown (${report.closedGracefully} closed gracefully)`,
  );
}
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
