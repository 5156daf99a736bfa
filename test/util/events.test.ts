/**
 * deferListenerTable relies on Node's EventEmitter creating its listener table on the first
 * `on()` when `_events` is undefined. These tests pin that on the running Node (20, 22, 24): if a
 * Node release changes it, they fail here rather than as lost events somewhere else.
 */

import assert from 'node:assert/strict';
import { EventEmitter, once } from 'node:events';
import { test } from 'node:test';
import { deferListenerTable } from '../../src/util/events.js';

class Deferred extends EventEmitter {
  constructor() {
    super();
    deferListenerTable(this);
  }
}

test('an emitter with a deferred listener table behaves like any other', async () => {
  const e = new Deferred();
  assert.equal((e as unknown as { _events: unknown })._events, undefined, 'no table until first use');
  assert.equal(e.emit('x', 1), false);
  assert.equal(e.listenerCount('x'), 0);
  assert.deepEqual(e.listeners('x'), []);
  assert.deepEqual(e.eventNames(), []);
  assert.equal(
    e.off('x', () => {}),
    e,
  );
  assert.equal(e.removeAllListeners('x'), e);

  const seen: number[] = [];
  const onX = (v: number) => seen.push(v);
  e.on('x', onX);
  e.once('x', (v: number) => seen.push(v * 10));
  assert.equal(e.listenerCount('x'), 2);
  assert.equal(e.emit('x', 1), true);
  e.emit('x', 2);
  assert.deepEqual(seen, [1, 10, 2]);
  e.off('x', onX);
  assert.equal(e.emit('x', 3), false);

  // events.once, as users await a close.
  const fresh = new Deferred();
  const p = once(fresh, 'close');
  fresh.emit('close', 'why');
  assert.deepEqual(await p, ['why']);

  // 'error' with no listener still throws (the table is not there to say otherwise).
  assert.throws(() => new Deferred().emit('error', new Error('boom')), /boom/);
});

test('deferred emitters do not share listeners', () => {
  const a = new Deferred();
  const b = new Deferred();
  let hits = 0;
  a.on('x', () => hits++);
  b.emit('x');
  assert.equal(hits, 0);
  a.emit('x');
  assert.equal(hits, 1);
});
