/**
 * The dashboard in a real browser: Debian's Chromium (installed by scripts/ensure-test-tools.sh),
 * driven by playwright-core, loads the admin page of a live server under a little load. The charts
 * draw (their canvases hold the series' own colour, not only axes) and the numbers in the DOM are
 * /api/summary's. Skipped, with the reason printed, where Chromium cannot be had or started.
 */

import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { type Browser, chromium } from 'playwright-core';
import { type Client, connect } from '../../src/client/client.js';
import { type AdminServer, serveAdmin } from '../../src/observe/admin.js';
import { createServer, type Server } from '../../src/server/server.js';
import { ensureTools } from '../faults/harness.js';
import { skipTest } from '../skip.js';

const CHROMIUM = '/usr/bin/chromium';
/** The flags that work on this machine kind (no network beyond loopback: no background fetches). */
const FLAGS = [
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

let browser: Browser | undefined;
let server: Server | undefined;
let admin: AdminServer | undefined;
const clients: Client[] = [];
let loading = false;
after(async () => {
  loading = false;
  await browser?.close();
  await admin?.close();
  for (const c of clients) c.destroy();
  server?.destroy();
});

/**
 * A little load: `loops` request loops per client, each a request then a pause of a millisecond
 * (a few thousand requests a second in all, so that tests running beside this one keep their
 * CPU), until `loading` is false or each loop has made `max` requests.
 */
function load(loops: number, max: number): Promise<void> {
  loading = true;
  const all: Promise<void>[] = [];
  for (const c of clients) {
    for (let i = 0; i < loops; i++) {
      all.push(
        (async () => {
          for (let n = 0; n < max && loading; n++) {
            await c.request('echo', { n });
            await sleep(1);
          }
        })(),
      );
    }
  }
  return Promise.all(all).then(() => {});
}

/** The little of the DOM these tests touch (the test project is compiled without the DOM lib). */
interface PageElement {
  textContent: string | null;
  getAttribute(name: string): string | null;
}
interface PageCanvas extends PageElement {
  width: number;
  height: number;
  getContext(kind: '2d'): {
    getImageData(x: number, y: number, w: number, h: number): { data: Uint8ClampedArray };
  } | null;
}
interface PageDocument {
  querySelector(selector: string): PageElement | null;
  getElementById(id: string): PageElement | null;
  body: PageElement;
}

/**
 * Runs in the page: whether the connections, req/s and latency charts show their series'
 * colours on many pixels — a line through three points or more, not only the axes. Self-contained: Playwright
 * sends its source to the page.
 */
function chartsDrawn(): boolean | string {
  const doc = (globalThis as unknown as { document: PageDocument }).document;
  // The series' colours (dashboard.ts COLORS): blue first, orange second. Lines of equal values
  // overlap (p50 under p99), so a chart counts the pixels of either.
  const colours = [
    [0x2b, 0x6c, 0xb0],
    [0xc0, 0x56, 0x21],
  ];
  const seriesPixels = (id: string): number => {
    const canvas = doc.querySelector(`#${id} canvas`) as PageCanvas | null;
    const ctx = canvas?.getContext('2d');
    if (!canvas || !ctx || canvas.width === 0) return 0;
    const px = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
    let n = 0;
    for (let i = 0; i < px.length; i += 4) {
      if ((px[i + 3] ?? 0) <= 100) continue;
      for (const [r, g, b] of colours) {
        if (
          Math.abs((px[i] ?? 0) - (r as number)) < 30 &&
          Math.abs((px[i + 1] ?? 0) - (g as number)) < 30 &&
          Math.abs((px[i + 2] ?? 0) - (b as number)) < 30
        ) {
          n++;
          break;
        }
      }
    }
    return n;
  };
  // Three summaries at least (a line, not a point marker), drawn over the chart's width.
  const points = Number(doc.body.getAttribute('data-points'));
  const ids = ['c-connections', 'c-rps', 'c-latency'];
  if (points >= 3 && ids.every((id) => seriesPixels(id) > 150)) return true;
  // Not yet: what is missing, for the failure message (a non-empty string would end the wait).
  (globalThis as unknown as { chartState: string }).chartState =
    `points ${points}, ${ids.map((id) => `${id} ${seriesPixels(id)} px`).join(', ')}`;
  return false;
}

describe('the dashboard in Chromium', () => {
  test('charts draw under load; the numbers on the page are /api/summary', async (t) => {
    const why = ensureTools('chromium');
    if (why !== undefined) {
      skipTest(t, `no Chromium: ${why}`);
      return;
    }
    try {
      browser = await chromium.launch({
        executablePath: CHROMIUM,
        headless: true,
        args: FLAGS,
        timeout: 60_000,
      });
    } catch (err) {
      skipTest(t, `Chromium did not start: ${String(err).split('\n')[0]}`);
      return;
    }
    server = createServer({ handlers: { echo: (p) => p } });
    const { port } = await server.listen();
    admin = await serveAdmin(server);
    for (let i = 0; i < 3; i++) clients.push(await connect({ port, reconnect: false }));
    const running = load(2, 100_000);

    const page = await browser.newPage({ viewport: { width: 1280, height: 1400 } });
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    await page.goto(admin.url);
    assert.equal(
      await page.evaluate(() => typeof (globalThis as { uPlot?: unknown }).uPlot),
      'function',
      'uPlot loaded',
    );
    assert.equal(await page.locator('#no-uplot').isHidden(), true);

    // Two summaries or more with requests in them: the lines have two points to join.
    await page
      .waitForFunction(chartsDrawn, undefined, { timeout: 30_000, polling: 200 })
      .catch(async (err) => {
        await page.screenshot({ path: '/tmp/longlink-dashboard.png', fullPage: true }).catch(() => {});
        const state = await page.evaluate(
          () => (globalThis as unknown as { chartState?: string }).chartState,
        );
        throw new Error(`the charts did not draw (${state}; screenshot /tmp/longlink-dashboard.png)`, {
          cause: err,
        });
      });
    const during = await page.evaluate(() => ({
      rps: Number(
        (globalThis as unknown as { document: PageDocument }).document.getElementById('v-rps')?.textContent,
      ),
      p50: (globalThis as unknown as { document: PageDocument }).document.getElementById('v-p50')
        ?.textContent,
      p99: (globalThis as unknown as { document: PageDocument }).document.getElementById('v-p99')
        ?.textContent,
    }));
    assert.ok(during.rps > 0, `req/s on the page: ${during.rps}`);
    assert.match(during.p50 ?? '', /^\d+\.\d{3}$/);
    assert.match(during.p99 ?? '', /^\d+\.\d{3}$/);
    const rows = await page.locator('#connections tbody tr').count();
    assert.equal(rows, 3, 'one row per connection');
    await page.screenshot({ path: '/tmp/longlink-dashboard.png', fullPage: true }).catch(() => {});

    // Stop the load: the totals stop moving, and the page shows what /api/summary says.
    loading = false;
    await running;
    const dom = () =>
      page.evaluate(() => {
        const v = (id: string) =>
          (globalThis as unknown as { document: PageDocument }).document.getElementById(id)?.textContent ??
          '';
        return {
          connections: v('v-connections'),
          inflight: v('v-inflight'),
          requests: v('v-requests'),
          refused: v('v-refused'),
          closed: v('v-closed'),
          errors: v('v-errors'),
          time: Number(
            (globalThis as unknown as { document: PageDocument }).document.body.getAttribute(
              'data-summary-time',
            ),
          ),
        };
      });
    let shown = await dom();
    let want = admin.summary();
    for (let i = 0; i < 10 && shown.requests !== String(want.requests.total); i++) {
      // Wait for the page's next render (it polls every second), then compare again.
      await page.waitForFunction(
        (t0) =>
          Number(
            (globalThis as unknown as { document: PageDocument }).document.body.getAttribute(
              'data-summary-time',
            ),
          ) > t0,
        shown.time,
        {
          timeout: 10_000,
        },
      );
      shown = await dom();
      want = admin.summary();
    }
    assert.ok(want.requests.total > 0);
    assert.deepEqual(
      { ...shown, time: 0 },
      {
        connections: String(want.connections),
        inflight: String(want.inflight),
        requests: String(want.requests.total),
        refused: String(want.refusedTotal),
        closed: String(want.closedTotal),
        errors: String(want.handlerErrors),
        time: 0,
      },
    );
    assert.deepEqual(errors, [], 'no script errors on the page');
  });
});
