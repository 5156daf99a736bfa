/**
 * EventEmitter's constructor gives every instance its own listener table, a null-prototype object
 * that V8 keeps in dictionary mode: about 220 bytes, even for an emitter nobody ever listens to.
 * longlink makes one to three emitters per connection (Connection, the protocol peer, the
 * Client), and most of them never get a listener. Node's EventEmitter creates the table on the
 * first `on()` when `_events` is undefined, and every method (`emit`, `off`, `listenerCount`,
 * `listeners`, `eventNames`, `events.once`) handles an undefined table; it is how emitters built
 * without calling the constructor have always worked. So the table is dropped here and made on
 * first use. test/util/events.test.ts pins this behaviour on the running Node.
 */

import type { EventEmitter } from 'node:events';

/** Call right after `super()` in an EventEmitter subclass. */
export function deferListenerTable(emitter: EventEmitter): void {
  (emitter as unknown as { _events: object | undefined })._events = undefined;
}
