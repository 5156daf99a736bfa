/**
 * Optional peer dependencies (prom-client, @opentelemetry/api, uplot): the loader lives in
 * src/sys/peer.ts, shared with the broker adapters (src/broker/); re-exported here for observe.
 */

export { hiddenPeers, loadPeer, peerFile } from '../sys/peer.js';
