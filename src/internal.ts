/**
 * Internal entry point for the CLI, tests and benchmarks: everything, with no semver promise
 * (nats.js core/src/internal_mod.ts vs mod.ts). Users import from 'longlink'.
 */

export * from './broker/redis.js';
export * from './client/client.js';
export * from './codec/index.js';
export * from './connection/budget.js';
export * from './connection/close-reason.js';
export * from './connection/connection.js';
export * from './errors.js';
export * from './observe/admin.js';
export * from './observe/metrics.js';
export * from './observe/peer.js';
export * from './observe/recorder.js';
export * from './observe/tracing.js';
export * from './pool/index.js';
export * from './protocol/index.js';
export * from './server/admission.js';
export * from './server/broker.js';
export * from './server/legacy.js';
export * from './server/limits.js';
export * from './server/max-age.js';
export * from './server/proxy-accept.js';
export * from './server/proxy-encode.js';
export * from './server/proxy-header.js';
export * from './server/rooms.js';
export * from './server/server.js';
export * from './server/server-peer.js';
export * from './server/trusted-proxies.js';
export * from './server/workers.js';
export * from './session/client-session.js';
export * from './session/heartbeat.js';
export * from './session/options.js';
export * from './session/peer.js';
export * from './session/request.js';
export * from './sys/sockopt.js';
export * from './sys/tcp-table.js';
export * from './util/async-queue.js';
export * from './util/deadlines.js';
