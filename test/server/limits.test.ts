/**
 * Limits are data: the defaults table in the code (SERVER_DEFAULTS) and the table in
 * docs/SECURITY.md must say the same thing, and the server must use what the table says.
 */

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { SERVER_DEFAULTS } from '../../src/server/limits.js';
import { createServer } from '../../src/server/server.js';

const SECURITY = fileURLToPath(new URL('../../../docs/SECURITY.md', import.meta.url));

/** The option name in the docs table → the key in SERVER_DEFAULTS. */
const KEY: Record<string, keyof typeof SERVER_DEFAULTS> = {
  'legacy.idleTimeoutMs': 'legacyIdleTimeoutMs',
  memoryBudget: 'memoryBudgetBytes',
};

describe('limits as data', () => {
  test('every default in SERVER_DEFAULTS is in docs/SECURITY.md with the same value, and nothing else is', () => {
    const doc = readFileSync(SECURITY, 'utf8');
    const section = doc.slice(doc.indexOf('## Limits, defaults'), doc.indexOf('## Authentication'));
    const rows = [...section.matchAll(/^\| `([^`]+)`[^|]*\| ([^|]+) \|/gm)];
    assert.ok(rows.length >= 14, `found ${rows.length} rows`);
    const documented = new Map<string, string>();
    for (const [, name, value] of rows)
      documented.set(KEY[name as string] ?? (name as string), (value as string).trim());
    for (const [key, value] of Object.entries(SERVER_DEFAULTS)) {
      const cell = documented.get(key);
      assert.ok(cell !== undefined, `${key} is not in docs/SECURITY.md`);
      assert.ok(cell.startsWith(`\`${value}\``), `${key}: code ${value}, docs ${cell}`);
    }
    for (const [name, cell] of documented) {
      if (!(name in SERVER_DEFAULTS))
        assert.equal(cell, 'none', `${name} is documented with a default the code lacks`);
    }
  });

  test('a server made with no options reports these limits', async () => {
    const server = createServer({ handlers: {} });
    const s = server.stats();
    assert.equal(s.memory.limitBytes, SERVER_DEFAULTS.memoryBudgetBytes);
    assert.equal(s.connections, 0);
    assert.deepEqual(s.refused, {});
    assert.equal(
      SERVER_DEFAULTS.handlerTimeoutMs > 0 && Number.isFinite(SERVER_DEFAULTS.handlerTimeoutMs),
      true,
    );
    assert.equal(SERVER_DEFAULTS.frameTimeoutMs > 0, true, 'slow senders are bounded by default');
  });

  test('bad limits are refused where they are written', () => {
    for (const bad of [
      { maxInFlight: -1 },
      { maxInFlight: 0 },
      { maxInFlight: Number.NaN },
      { maxConnectionsPerAddress: 0 },
      { connectionRate: { perSecond: 0 } },
      { requestRate: { perSecond: Number.NaN } },
      { frameTimeoutMs: -1 },
      { maxQueuedBytes: 1 }, // below the high watermark
      { memoryBudget: 0 },
      { helloMaxFrameLength: 0 },
      { handlerTimeoutMs: Number.NaN },
    ]) {
      assert.throws(
        () => createServer({ handlers: {}, ...bad }),
        { code: 'ERR_INVALID_ARGUMENT' },
        JSON.stringify(bad),
      );
    }
  });
});
