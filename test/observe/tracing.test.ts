/**
 * OpenTelemetry spans (enableTracing), recorded with the SDK's in-memory exporter: the server span
 * is the child of the context the request carried in its metadata (traceparent, tracestate);
 * status and attributes; the client side against the tracing channel contract (it injects
 * traceparent into the request's metadata at start), end to end through a real server.
 */

import assert from 'node:assert/strict';
import { after, afterEach, before, describe, test } from 'node:test';
import * as api from '@opentelemetry/api';
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  type ReadableSpan,
  SimpleSpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import { type Client, connect } from '../../src/client/client.js';
import { MissingDependencyError } from '../../src/errors.js';
import { hiddenPeers } from '../../src/observe/peer.js';
import { enableTracing, type LonglinkTracing } from '../../src/observe/tracing.js';
import { MessageKind } from '../../src/protocol/types.js';
import { createServer, type Server } from '../../src/server/server.js';
import { channels, type RequestTrace } from '../../src/util/channels.js';
import { waitFor } from '../helpers.js';
import { frame, helloFrame, type RawPeer, rawConnect } from '../server/edge-harness.js';

const exporter = new InMemorySpanExporter();
const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
const tracer = provider.getTracer('test');

/** A context manager for the test (the SDK's async-hooks one is another package): a stack. */
class StackContextManager implements api.ContextManager {
  private stack: api.Context[] = [api.ROOT_CONTEXT];
  active(): api.Context {
    return this.stack[this.stack.length - 1] ?? api.ROOT_CONTEXT;
  }
  with<A extends unknown[], F extends (...args: A) => ReturnType<F>>(
    context: api.Context,
    fn: F,
    thisArg?: ThisParameterType<F>,
    ...args: A
  ): ReturnType<F> {
    this.stack.push(context);
    try {
      return fn.call(thisArg, ...args);
    } finally {
      this.stack.pop();
    }
  }
  bind<T>(_context: api.Context, target: T): T {
    return target;
  }
  enable(): this {
    return this;
  }
  disable(): this {
    return this;
  }
}

const servers: Server[] = [];
const peers: RawPeer[] = [];
const clients: Client[] = [];
let tracing: LonglinkTracing | undefined;
before(() => {
  api.context.setGlobalContextManager(new StackContextManager());
});
after(() => {
  for (const p of peers) p.destroy();
  for (const c of clients) c.destroy();
  for (const s of servers) s.destroy();
  api.context.disable();
});
afterEach(() => {
  tracing?.close();
  tracing = undefined;
  exporter.reset();
});

async function server(): Promise<{ server: Server; port: number }> {
  const s = createServer({
    handlers: {
      echo: (p) => p,
      fail: async () => {
        throw Object.assign(new Error('not today'), { code: 'ERR_NOPE' });
      },
    },
  });
  servers.push(s);
  const { port } = await s.listen();
  return { server: s, port };
}

async function raw(port: number): Promise<RawPeer> {
  const p = await rawConnect(port);
  peers.push(p);
  p.write(helloFrame({}));
  await waitFor(() => p.messages().includes('HELLO'), 5000, 'HELLO answer');
  return p;
}

function request(p: RawPeer, id: number, method: string, metadata?: Record<string, string>): void {
  p.write(
    frame({
      kind: MessageKind.REQUEST,
      id,
      method,
      payload: Buffer.from('1'),
      ...(metadata === undefined ? {} : { metadata }),
    }),
  );
}

const spans = (): ReadableSpan[] => exporter.getFinishedSpans();

const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const SPAN_ID = '00f067aa0ba902b7';

describe('enableTracing', () => {
  test('a server span per request, the child of the traceparent it carried', async () => {
    tracing = await enableTracing({ tracerProvider: provider });
    const { port } = await server();
    const p = await raw(port);
    request(p, 1, 'echo', { traceparent: `00-${TRACE_ID}-${SPAN_ID}-01`, tracestate: 'vendor=x' });
    request(p, 2, 'fail', { traceparent: `00-${TRACE_ID}-${SPAN_ID}-01` });
    request(p, 3, 'echo');
    await waitFor(() => spans().length === 3, 5000, 'three spans');
    const byId = (id: number): ReadableSpan => {
      const span = spans().find((s) => s.attributes['longlink.request_id'] === id);
      assert.ok(span, `the span of request ${id}`);
      return span;
    };
    const [ok, failed, root] = [byId(1), byId(2), byId(3)];
    assert.equal(ok.name, 'echo');
    assert.equal(ok.kind, api.SpanKind.SERVER);
    assert.equal(ok.spanContext().traceId, TRACE_ID, 'same trace as the caller');
    assert.equal(ok.parentSpanContext?.spanId, SPAN_ID, "the caller's span is the parent");
    assert.equal(ok.parentSpanContext?.isRemote, true);
    assert.equal(ok.spanContext().traceState?.get('vendor'), 'x', 'tracestate carried over');
    assert.equal(ok.attributes['rpc.system'], 'longlink');
    assert.equal(ok.attributes['rpc.method'], 'echo');
    assert.equal(ok.attributes['network.peer.address'], '127.0.0.1');
    assert.equal(typeof ok.attributes['network.peer.port'], 'number');
    assert.equal(ok.status.code, api.SpanStatusCode.UNSET);

    assert.equal(failed.status.code, api.SpanStatusCode.ERROR);
    assert.equal(failed.attributes['longlink.error_code'], 'ERR_NOPE');
    assert.match(failed.status.message ?? '', /ERR_NOPE: not today/);
    assert.equal(failed.events[0]?.name, 'exception', 'the exception is recorded');

    assert.equal(root.parentSpanContext, undefined, 'no traceparent: a root span');
    assert.notEqual(root.spanContext().traceId, TRACE_ID);
  });

  test('a malformed traceparent starts a new trace', async () => {
    tracing = await enableTracing({ tracerProvider: provider });
    const { port } = await server();
    const p = await raw(port);
    request(p, 1, 'echo', { traceparent: `00-${'0'.repeat(32)}-${SPAN_ID}-01` });
    request(p, 2, 'echo', { traceparent: 'garbage' });
    await waitFor(() => spans().length === 2, 5000, 'two spans');
    for (const s of spans()) assert.equal(s.parentSpanContext, undefined);
  });

  test('the client side: a CLIENT span, traceparent injected into the metadata at start', async () => {
    tracing = await enableTracing({ tracerProvider: provider });
    const parent = tracer.startSpan('caller');
    const t: RequestTrace = {
      side: 'client',
      method: 'echo',
      requestId: 0,
      connectionId: '1',
      metadata: undefined,
    };
    api.context.with(api.trace.setSpan(api.ROOT_CONTEXT, parent), () =>
      channels.clientRequest.start.publish(t),
    );
    const tp = t.metadata?.traceparent ?? '';
    const m = /^00-([0-9a-f]{32})-([0-9a-f]{16})-01$/.exec(tp);
    assert.ok(m, `traceparent ${tp}`);
    assert.equal(m[1], parent.spanContext().traceId);

    // The same metadata through a real server: its span is the child of the client span.
    const { port } = await server();
    const p = await raw(port);
    request(p, 1, 'echo', t.metadata as Record<string, string>);
    await waitFor(() => spans().some((s) => s.kind === api.SpanKind.SERVER), 5000, 'the server span');
    t.requestId = 1;
    channels.clientRequest.asyncStart.publish(t);
    channels.clientRequest.asyncEnd.publish(t);
    parent.end();
    const clientSpan = spans().find((s) => s.kind === api.SpanKind.CLIENT) as ReadableSpan;
    const serverSpan = spans().find((s) => s.kind === api.SpanKind.SERVER) as ReadableSpan;
    assert.equal(clientSpan.spanContext().spanId, m[2]);
    assert.equal(clientSpan.parentSpanContext?.spanId, parent.spanContext().spanId);
    assert.equal(clientSpan.attributes['rpc.system'], 'longlink');
    assert.equal(clientSpan.attributes['longlink.request_id'], 1);
    assert.equal(serverSpan.parentSpanContext?.spanId, clientSpan.spanContext().spanId);
    assert.equal(serverSpan.spanContext().traceId, parent.spanContext().traceId);
  });

  test('a real client request: the server span is the child of the client span', async () => {
    tracing = await enableTracing({ tracerProvider: provider });
    const { port } = await server();
    const c = await connect({ port, reconnect: false });
    clients.push(c);
    await c.request('echo', 1);
    await waitFor(() => spans().length === 2, 2000, 'client and server spans');
    const clientSpan = spans().find((s) => s.kind === api.SpanKind.CLIENT) as ReadableSpan;
    const serverSpan = spans().find((s) => s.kind === api.SpanKind.SERVER) as ReadableSpan;
    assert.equal(serverSpan.parentSpanContext?.spanId, clientSpan.spanContext().spanId);
  });

  test('close() stops the spans; without @opentelemetry/api: MissingDependencyError', async () => {
    const t = await enableTracing({ tracerProvider: provider });
    t.close();
    assert.equal(channels.serverRequest.hasSubscribers, false);
    assert.equal(channels.clientRequest.hasSubscribers, false);
    hiddenPeers.add('@opentelemetry/api');
    try {
      await assert.rejects(enableTracing(), (err: unknown) => {
        assert.ok(err instanceof MissingDependencyError);
        assert.match(err.message, /npm install @opentelemetry\/api/);
        return true;
      });
    } finally {
      hiddenPeers.delete('@opentelemetry/api');
    }
  });
});
