/**
 * The pricing service's contract, shared by the service and its callers: one type maps each
 * method to its params and result, so both sides are checked by the compiler.
 */
import type { ClientPool, PoolRequestOptions } from 'longlink';

/** `price.quote` params. */
export interface QuoteRequest {
  sku: string;
  qty: number;
}

/** `price.quote` result. */
export interface Quote {
  sku: string;
  qty: number;
  totalCents: number;
  /** Which server answered (to show how the pool spreads the requests). */
  server: string;
  /** The `tenant` metadata the caller sent along, as the handler saw it. */
  tenant: string;
}

/** `server.info` result. */
export interface ServerInfo {
  name: string;
  pid: number;
  uptimeS: number;
}

/** Every method: its params and its result. */
export interface PricingApi {
  'catalog.list': { params: undefined; result: string[] };
  'price.quote': { params: QuoteRequest; result: Quote };
  /** A slow method: it works until its answer is ready or the caller's deadline passes. */
  'price.forecast': { params: { sku: string; workMs: number }; result: { sku: string; cents: number } };
  'server.info': { params: undefined; result: ServerInfo };
}
export type Method = keyof PricingApi;

/** A typed call through any pool (or Client): method names, params and results are checked. */
export function call<M extends Method>(
  pool: Pick<ClientPool, 'request'>,
  method: M,
  params: PricingApi[M]['params'],
  options?: PoolRequestOptions,
): Promise<PricingApi[M]['result']> {
  return pool.request<PricingApi[M]['result']>(method, params, options);
}

/** Error codes of `price.quote` (they come back as RemoteError with this `code`). */
export const ERR_UNKNOWN_SKU = 'ERR_UNKNOWN_SKU';
export const ERR_BAD_QTY = 'ERR_BAD_QTY';
