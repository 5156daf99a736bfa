/**
 * Pooling: the generic pool core, lease-mode connection pools over one or several endpoints,
 * shared-mode pools of longlink clients, and the endpoint balancer (power of two choices, outlier
 * ejection) both modes use. See docs/pool.md.
 */

export {
  type BalancedTarget,
  Balancer,
  type EjectionInfo,
  type OutlierOptions,
} from './balancer.js';
export {
  ClientPool,
  type ClientPoolEvents,
  type ClientPoolOptions,
  type ClientPoolStats,
  createClientPool,
  type PoolRequestOptions,
  type SharedConnectionStats,
  type SharedEndpointStats,
} from './client-pool.js';
export {
  ConnectionLease,
  ConnectionPool,
  type ConnectionPoolEvents,
  type ConnectionPoolOptions,
  type ConnectionPoolStats,
  createConnectionPool,
  type EndpointAddress,
  type EndpointStats,
  isConnectionError,
  LeaseDestroyReason,
  type LeaseRequestOptions,
} from './connection-pool.js';
export type { EndpointEvents } from './endpoint-set.js';
export {
  AcquireTimeoutError,
  EndpointUnavailableError,
  LeaseReclaimedError,
  PoolClosedError,
  PoolError,
  PoolFullError,
} from './errors.js';
export { Lease } from './lease.js';
export { Pool } from './pool.js';
export {
  type AcquireOptions,
  type BreakerState,
  type DestroyDetail,
  DestroyReason,
  type LeakInfo,
  type PoolEvents,
  type PoolFactory,
  type PoolOptions,
  type PoolStats,
} from './pool-options.js';
