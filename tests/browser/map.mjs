// The dashboard's map view (CONTRACT §11) in headless Chromium, offline: opens the ledger's dashboard
// with a district token, switches to 地图 and waits for the points and hot spots; registers a complaint
// with a position over HTTP and measures how long its point takes to appear on the map (no reload);
// clicks it and waits for the point's file. Fails on any request to an origin other than the ledger's
// and intake's (the map must need no internet: no tiles, no CDN) and on any console error.
// Saves ARTIFACTS/map.png (1280×900) and ARTIFACTS/map-phone.png (390×844).
// Environment: LEDGER_URL, INTAKE_URL, TOKEN_DISTRICT, TOKEN_OPERATOR, CHROMIUM (default
// /usr/bin/chromium), ARTIFACTS (a directory), MARKER_MAX_MS (default 2000: the longest time from the
// complaint's 201 to its marker that passes).
// MAP_STATIC_DIR (optional, for trying page changes without rebuilding the ledger): serve the page's
// own files (/, /dashboard.js, /map.js, /vendor/leaflet.*) from that directory instead, keeping the
// server's answer headers (its Content-Security-Policy among them). Unset, the page is the server's.
// Prints one JSON line at the end: {"point_id", "marker_ms", "screenshots": [...]}.
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};
const ledger = env('LEDGER_URL').replace(/\/+$/, '');
const intake = env('INTAKE_URL').replace(/\/+$/, '');
const tokens = { district: env('TOKEN_DISTRICT'), operator: env('TOKEN_OPERATOR') };
const artifacts = env('ARTIFACTS');
const markerMax = Number(process.env.MARKER_MAX_MS || 2000);
fs.mkdirSync(artifacts, { recursive: true });
const shot = (name) => path.join(artifacts, name);

const allowed = new Set([new URL(ledger).origin, new URL(intake).origin]);
const foreign = [];
const errors = [];
function guard(page, label) {
  page.on('request', (r) => {
    const u = r.url();
    if (/^(data|blob|about):/i.test(u)) return;
    let origin;
    try { origin = new URL(u).origin; } catch (e) { origin = u; }
    if (!allowed.has(origin)) foreign.push(`${label}: ${r.method()} ${u}`);
  });
  page.on('console', (m) => { if (m.type() === 'error') errors.push(`${label} console: ${m.text()} ${JSON.stringify(m.location())}`); });
  page.on('pageerror', (e) => errors.push(`${label} page error: ${e.message}`));
  page.on('requestfailed', (r) => {
    // An aborted stream when a context closes is not a failure of the page.
    if (!/ERR_ABORTED/.test(r.failure()?.errorText || '')) errors.push(`${label} request failed: ${r.url()} ${r.failure()?.errorText}`);
  });
}
const staticDir = process.env.MAP_STATIC_DIR || '';
const STATIC_FILES = { '/': 'dashboard.html', '/dashboard.js': 'dashboard.js', '/map.js': 'map.js',
  '/vendor/leaflet.js': 'vendor/leaflet.js', '/vendor/leaflet.css': 'vendor/leaflet.css' };
async function serveLocal(context) {
  if (!staticDir) return;
  await context.route((u) => u.origin === new URL(ledger).origin && Object.hasOwn(STATIC_FILES, u.pathname), async (route) => {
    const file = STATIC_FILES[new URL(route.request().url()).pathname];
    const res = await route.fetch();
    const headers = { ...res.headers() };
    delete headers['content-length'];
    await route.fulfill({ response: res, headers, body: fs.readFileSync(path.join(staticDir, file)) });
  });
}
function check() {
  if (foreign.length) throw new Error(`requests to other origins (the map must work offline): ${foreign.join('; ')}`);
  if (errors.length) throw new Error(errors.join('; '));
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const screenshots = [];
let page = null;
let failed = null;
let result = null;

async function openMap(p) {
  await p.goto(`${ledger}/#token=${tokens.district}`);
  // The token leaves the address at once.
  await p.waitForFunction(() => !location.hash.includes('token='), null, { timeout: 10000 });
  await p.locator('[data-testid=tab-map]').click();
  await p.waitForSelector('#map[data-points-loaded=true][data-hotspots-loaded=true]', { state: 'attached', timeout: 20000 });
  await p.waitForSelector('[data-testid=rebound-list] li', { state: 'attached', timeout: 10000 });
  if (await p.locator('#map .leaflet-tile, #map img').count()) throw new Error('the map shows tiles or images with no tile server configured');
  if (!(await p.locator('#map .leaflet-overlay-pane svg, #map .leaflet-pane svg').count())) throw new Error('no SVG layer on the map');
}

try {
  // ---- desktop
  const desktop = await browser.newContext({ viewport: { width: 1280, height: 900 }, locale: 'zh-CN', timezoneId: 'Asia/Shanghai' });
  await serveLocal(desktop);
  page = await desktop.newPage();
  guard(page, 'desktop');
  await openMap(page);
  await page.waitForFunction(() => /WGS-84/.test(document.body.innerText), null, { timeout: 5000 });
  // 防止反弹: the first ranked point opens its file.
  const first = page.locator('[data-testid=rebound-list] button').first();
  if (await first.count()) {
    const addr = (await first.locator('.rb-addr').innerText()).trim();
    await first.click();
    await page.waitForFunction((a) => {
      const t = document.querySelector('[data-testid=point-file]')?.textContent || '';
      return t.includes(a) && /事项（/.test(t);
    }, addr, { timeout: 10000 });
    await page.locator('#map-fit').click(); // back to the whole district
    await page.waitForTimeout(400);
  }
  check();

  const community = `地图小区${crypto.randomBytes(4).toString('hex')}`;
  const r = await fetch(`${intake}/v1/complaints`, {
    method: 'POST',
    headers: { authorization: `Bearer ${tokens.operator}`, 'content-type': 'application/json' },
    body: JSON.stringify({
      district: 'tongzhou', street: 'jiukeshu', category: 'basement_illegal_residence',
      point: { community, building: '1', basement: 'B1', address: 'x', location: { lat: 39.9053, long: 116.6568 } },
      description: '地图测试',
    }),
  });
  const text = await r.text();
  const answeredAt = Date.now();
  if (r.status !== 201) throw new Error(`complaint: ${r.status} ${text}`);
  const pointId = JSON.parse(text).point_id;
  if (!pointId) throw new Error(`the 201 answer has no point_id: ${text}`);
  const sel = `[data-testid=map-point][data-point-id="${pointId}"]`;

  // The moment the marker appears, taken in the page (same clock as here).
  const appearedAt = await page.evaluate(({ sel, ms }) => new Promise((resolve, reject) => {
    if (document.querySelector(sel)) { resolve(Date.now()); return; }
    const ob = new MutationObserver(() => {
      if (document.querySelector(sel)) { ob.disconnect(); clearTimeout(t); resolve(Date.now()); }
    });
    const t = setTimeout(() => { ob.disconnect(); reject(new Error('timed out waiting for the new point on the map')); }, ms);
    ob.observe(document, { subtree: true, childList: true, attributes: true, attributeFilter: ['data-point-id'] });
  }), { sel, ms: 15000 });
  const markerMs = appearedAt - answeredAt;
  console.log(`the new point appeared on the map ${markerMs} ms after the complaint's 201`);
  if (markerMs > markerMax) throw new Error(`the new point took ${markerMs} ms to appear (more than ${markerMax} ms)`);

  await page.locator(sel).click();
  await page.waitForFunction((c) => (document.querySelector('[data-testid=point-file]')?.textContent || '').includes(c), community, { timeout: 10000 });
  await page.waitForFunction(() => /台账/.test(document.querySelector('[data-testid=point-file]')?.textContent || ''), null, { timeout: 10000 });
  const fileText = await page.locator('[data-testid=point-file]').innerText();
  if (!/39\.905300/.test(fileText) || !/116\.656800/.test(fileText)) throw new Error(`the point's file does not show its position: ${fileText}`);
  // Hot spots toggle off and on.
  await page.locator('#hotspot-toggle').uncheck();
  if (await page.locator('[data-testid=hotspot-cell]').count()) throw new Error('hot spots still shown after switching them off');
  await page.locator('#hotspot-toggle').check();
  await page.waitForSelector('[data-testid=hotspot-cell]', { state: 'attached', timeout: 10000 });
  await page.waitForTimeout(600); // let the tooltips and the last refresh settle for the picture
  check();
  await page.screenshot({ path: shot('map.png'), fullPage: true });
  screenshots.push(shot('map.png'));

  // ---- phone
  const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true,
    locale: 'zh-CN', timezoneId: 'Asia/Shanghai' });
  await serveLocal(phone);
  const pp = await phone.newPage();
  guard(pp, 'phone');
  page = pp;
  await openMap(pp);
  await pp.waitForSelector(sel, { state: 'attached', timeout: 10000 });
  const box = await pp.locator('#map').boundingBox();
  if (!box || box.width < 300 || box.width > 390 || box.height < 250) throw new Error(`the map does not fit a phone: ${JSON.stringify(box)}`);
  await pp.locator('#map').scrollIntoViewIfNeeded();
  await pp.waitForTimeout(300);
  check();
  await pp.screenshot({ path: shot('map-phone.png'), fullPage: true });
  screenshots.push(shot('map-phone.png'));
  result = { point_id: pointId, marker_ms: markerMs, screenshots };
} catch (e) {
  failed = e;
  if (page) await page.screenshot({ path: shot('map-failure.png'), fullPage: true }).catch(() => {});
} finally {
  await browser.close().catch(() => {});
}
if (failed) {
  console.error(`map test failed: ${failed.message}`);
  process.exit(1);
}
console.log(JSON.stringify(result));
