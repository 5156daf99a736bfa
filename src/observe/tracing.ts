/**
 * OpenTelemetry traces from the two request tracing channels: a CLIENT span per request a client
 * makes (`longlink:client:request`) and a SERVER span per request a handler runs
 * (`longlink:server:request`). The client injects its span's context into the request's metadata
 * (`traceparent`, `tracestate`: W3C Trace Context; protocol 1.1 carries metadata, PROTOCOL.md
 * §3.2.1) and the server extracts it, so the server span is the client span's child across the
 * connection. `@opentelemetry/api` is an optional peer dependency, loaded only here.
 */

import type * as otel from '@opentelemetry/api';
import type { Connection } from '../connection/connection.js';
import { channels, type RequestTrace } from '../util/channels.js';
import { loadPeer } from './peer.js';

/** What longlink needs of an OpenTelemetry TracerProvider (any `@opentelemetry/api` 1.x one fits). */
export interface TracerProviderLike {
  getTracer(name: string, version?: string): object;
}

/** Options of {@link enableTracing}. */
export interface TracingOptions {
  /** Where spans go. Default: the global provider (`trace.getTracerProvider()`, set by the SDK). */
  tracerProvider?: TracerProviderLike;
  /** Spans for the requests clients make (and `traceparent` sent with them). Default true. */
  client?: boolean;
  /** Spans for the requests servers handle (children of the caller's span). Default true. */
  server?: boolean;
}

/** The handle {@link enableTracing} returns. */
export interface LonglinkTracing {
  /** Stops making spans (spans already started still end). */
  close(): void;
}

type Api = typeof otel;
type Spanned = RequestTrace & { [k: symbol]: otel.Span | undefined };

const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

/**
 * W3C Trace Context by hand, for when no global propagator is registered (the API's default
 * propagates nothing): `traceparent` = version-traceid-spanid-flags (W3C Trace Context §3.2).
 */
function w3c(api: Api): otel.TextMapPropagator<Record<string, string>> {
  return {
    inject(ctx, carrier) {
      const sc = api.trace.getSpanContext(ctx);
      if (sc === undefined || !api.isSpanContextValid(sc)) return;
      carrier.traceparent = `00-${sc.traceId}-${sc.spanId}-${(sc.traceFlags & 0xff).toString(16).padStart(2, '0')}`;
      const state = sc.traceState?.serialize();
      if (state) carrier.tracestate = state;
    },
    extract(ctx, carrier) {
      const m = TRACEPARENT.exec(carrier.traceparent ?? '');
      if (m === null || m[1] === 'ff') return ctx;
      const sc: otel.SpanContext = {
        traceId: m[2] as string,
        spanId: m[3] as string,
        traceFlags: Number.parseInt(m[4] as string, 16),
        isRemote: true,
      };
      if (!api.isSpanContextValid(sc)) return ctx;
      const state = carrier.tracestate;
      if (state !== undefined) sc.traceState = api.createTraceState(state);
      return api.trace.setSpanContext(ctx, sc);
    },
    fields: () => ['traceparent', 'tracestate'],
  };
}

const getter: otel.TextMapGetter<Record<string, string>> = {
  keys: (c) => Object.keys(c),
  get: (c, k) => c[k],
};
const setter: otel.TextMapSetter<Record<string, string>> = {
  set: (c, k, v) => {
    c[k] = v;
  },
};

function errorCode(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : 'ERR_HANDLER';
}

class Tracing implements LonglinkTracing {
  private readonly kSpan = Symbol('longlink.otel.span');
  private readonly peers = new Map<string, { address: string | undefined; port: number | undefined }>();
  private readonly serverHandlers;
  private readonly clientHandlers;
  private closed = false;

  constructor(
    api: Api,
    tracer: otel.Tracer,
    private readonly server: boolean,
    private readonly client: boolean,
  ) {
    // The global propagator when one is registered (NodeSDK registers W3C trace context and
    // baggage); else W3C trace context by hand.
    const global = api.propagation;
    const propagator = global.fields().length > 0 ? undefined : w3c(api);
    const inject = (ctx: otel.Context, carrier: Record<string, string>) =>
      propagator ? propagator.inject(ctx, carrier, setter) : global.inject(ctx, carrier, setter);
    const extract = (carrier: Record<string, string>): otel.Context =>
      propagator
        ? propagator.extract(api.ROOT_CONTEXT, carrier, getter)
        : global.extract(api.ROOT_CONTEXT, carrier, getter);

    const k = this.kSpan;
    const finish = (msg: RequestTrace): void => {
      const t = msg as Spanned;
      const span = t[k];
      if (span === undefined) return;
      t[k] = undefined;
      if (msg.requestId !== 0) span.setAttribute('longlink.request_id', msg.requestId);
      if (msg.error !== undefined) {
        const code = errorCode(msg.error);
        span.setAttribute('longlink.error_code', code);
        span.setStatus({
          code: api.SpanStatusCode.ERROR,
          message: `${code}: ${(msg.error as { message?: unknown } | null)?.message ?? String(msg.error)}`,
        });
      }
      span.end();
    };
    const onError = (msg: RequestTrace): void => {
      const span = (msg as Spanned)[k];
      const e = msg.error;
      if (span !== undefined && e instanceof Error) span.recordException(e);
    };
    this.serverHandlers = {
      start: (msg: RequestTrace): void => {
        const parent = msg.metadata === undefined ? api.ROOT_CONTEXT : extract(msg.metadata);
        const peer = msg.connectionId === undefined ? undefined : this.peers.get(msg.connectionId);
        const attributes: otel.Attributes = {
          'rpc.system': 'longlink',
          'rpc.method': msg.method,
          'longlink.request_id': msg.requestId,
        };
        if (msg.connectionId !== undefined) attributes['longlink.connection_id'] = msg.connectionId;
        if (peer?.address !== undefined) attributes['network.peer.address'] = peer.address;
        if (peer?.port !== undefined) attributes['network.peer.port'] = peer.port;
        (msg as Spanned)[k] = tracer.startSpan(msg.method, { kind: api.SpanKind.SERVER, attributes }, parent);
      },
      end: (msg: RequestTrace): void => {
        if (msg.async !== true) finish(msg);
      },
      asyncStart: (_msg: RequestTrace): void => {},
      asyncEnd: finish,
      error: onError,
    };
    this.clientHandlers = {
      start: (msg: RequestTrace): void => {
        // Published synchronously inside client.request(): the active context is the caller's.
        const parent = api.context.active();
        const attributes: otel.Attributes = { 'rpc.system': 'longlink', 'rpc.method': msg.method };
        if (msg.connectionId !== undefined) attributes['longlink.connection_id'] = msg.connectionId;
        const span = tracer.startSpan(msg.method, { kind: api.SpanKind.CLIENT, attributes }, parent);
        (msg as Spanned)[k] = span;
        // channels.ts: a subscriber may add entries to `metadata` at start, and they are sent.
        msg.metadata ??= {};
        inject(api.trace.setSpan(parent, span), msg.metadata);
      },
      end: (_msg: RequestTrace): void => {},
      asyncStart: (_msg: RequestTrace): void => {},
      asyncEnd: finish,
      error: onError,
    };
    if (server) {
      channels.serverConnection.subscribe(this.onConnection);
      channels.connectionClose.subscribe(this.onClose);
      channels.serverRequest.subscribe(this.serverHandlers);
    }
    if (client) channels.clientRequest.subscribe(this.clientHandlers);
  }

  private readonly onConnection = (message: unknown): void => {
    const c = (message as { connection: Connection }).connection;
    this.peers.set(c.id, { address: c.remoteAddress, port: c.remotePort });
  };

  private readonly onClose = (message: unknown): void => {
    this.peers.delete((message as { connection: Connection }).connection.id);
  };

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.server) {
      channels.serverConnection.unsubscribe(this.onConnection);
      channels.connectionClose.unsubscribe(this.onClose);
      channels.serverRequest.unsubscribe(this.serverHandlers);
    }
    if (this.client) channels.clientRequest.unsubscribe(this.clientHandlers);
    this.peers.clear();
  }
}

/**
 * Turns on OpenTelemetry spans for longlink requests: a CLIENT span per request (its context sent
 * as `traceparent`/`tracestate` metadata) and a SERVER span per handled request, the child of the
 * caller's. Attributes: `rpc.system` = `longlink`, `rpc.method`, `network.peer.address`/`port`
 * (server), `longlink.connection_id`, `longlink.request_id`, `longlink.error_code`; the status is
 * ERROR when the request failed. Needs the optional peer dependency `@opentelemetry/api`
 * (MissingDependencyError, `ERR_MISSING_DEPENDENCY`, without it).
 *
 * @example
 * ```ts
 * import { NodeTracerProvider } from '@opentelemetry/sdk-trace-node';
 * import { enableTracing } from 'longlink';
 * new NodeTracerProvider().register();  // or the NodeSDK: any global provider
 * const tracing = await enableTracing();
 * ```
 */
export async function enableTracing(options: TracingOptions = {}): Promise<LonglinkTracing> {
  const mod = await loadPeer<Api & { default?: Api }>('@opentelemetry/api', 'enableTracing');
  const api: Api = mod.trace === undefined && mod.default !== undefined ? mod.default : mod;
  const provider = options.tracerProvider ?? api.trace.getTracerProvider();
  const tracer = provider.getTracer('longlink') as otel.Tracer;
  return new Tracing(api, tracer, options.server !== false, options.client !== false);
}
