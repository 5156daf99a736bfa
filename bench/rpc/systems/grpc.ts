/**
 * @grpc/grpc-js: one channel (one client object, one HTTP/2 connection), unary calls, each call
 * its own HTTP/2 stream. Default channel and server options.
 * json: the object as the protobuf message a gRPC user would declare for it (EchoJson below),
 * encoded by proto-loader/protobufjs; binary: `bytes data = 1`.
 */

import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type { Body, Payload, RpcClient } from '../common.js';

// echo.proto, as a protobufjs JSON descriptor so no .proto file has to be found at run time:
//   message EchoJson { uint32 id = 1; string user = 2; double ts = 3; repeated string items = 4; bool ok = 5; }
//   message EchoBin { bytes data = 1; }
//   service Echo { rpc Json(EchoJson) returns (EchoJson); rpc Bin(EchoBin) returns (EchoBin); }
const descriptor: Parameters<typeof protoLoader.fromJSON>[0] = {
  nested: {
    bench: {
      nested: {
        EchoJson: {
          fields: {
            id: { type: 'uint32', id: 1 },
            user: { type: 'string', id: 2 },
            ts: { type: 'double', id: 3 },
            items: { rule: 'repeated', type: 'string', id: 4 },
            ok: { type: 'bool', id: 5 },
          },
        },
        EchoBin: { fields: { data: { type: 'bytes', id: 1 } } },
        Echo: {
          methods: {
            Json: { requestType: 'EchoJson', responseType: 'EchoJson', comment: '' },
            Bin: { requestType: 'EchoBin', responseType: 'EchoBin', comment: '' },
          },
        },
      },
    },
  },
};

type Unary = (
  req: unknown,
  cb: (err: grpc.ServiceError | null, res: unknown) => void,
) => grpc.ClientUnaryCall;

function service(): grpc.ServiceClientConstructor {
  const def = protoLoader.fromJSON(descriptor, { defaults: true, arrays: true });
  const pkg = grpc.loadPackageDefinition(def) as unknown as {
    bench: { Echo: grpc.ServiceClientConstructor };
  };
  return pkg.bench.Echo;
}

export function startServer(_payload: Payload): Promise<number> {
  const server = new grpc.Server();
  const echo: grpc.handleUnaryCall<unknown, unknown> = (call, cb) => cb(null, call.request);
  server.addService(service().service, { Json: echo, Bin: echo });
  return new Promise((resolve, reject) => {
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, port) => {
      if (err !== null) reject(err);
      else resolve(port);
    });
  });
}

export async function startClient(port: number, payload: Payload): Promise<RpcClient> {
  const Echo = service();
  const client = new Echo(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  await new Promise<void>((resolve, reject) =>
    client.waitForReady(Date.now() + 5000, (err) => (err ? reject(err) : resolve())),
  );
  const method = (payload === 'json' ? client.Json : client.Bin) as Unary;
  const unary = method.bind(client);
  return {
    call(body: Body): Promise<unknown> {
      return new Promise((resolve, reject) => {
        if (payload === 'json') unary(body, (err, res) => (err ? reject(err) : resolve(res)));
        else
          unary({ data: body }, (err, res) => (err ? reject(err) : resolve((res as { data: Buffer }).data)));
      });
    },
    close(): Promise<void> {
      client.close();
      return Promise.resolve();
    },
  };
}
