// Opens the ledger dashboard in headless Chromium with a token, registers a complaint over HTTP and
// waits for its street's count to change on the page without a reload; then writes the item off
// and waits for the district to return to dynamic zero. Saves a screenshot.
// Run by the Rust test `live::the_dashboard_follows_the_ledger_live_in_chromium`, which starts the
// services and passes their URLs and tokens in the environment.
import { chromium } from 'playwright-core';

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};
const ledger = env('LEDGER_URL');
const intake = env('INTAKE_URL');
const closure = env('CLOSURE_URL');
const shot = env('SCREENSHOT');
const tokens = {
  district: env('TOKEN_DISTRICT'),
  operator: env('TOKEN_OPERATOR'),
  street: env('TOKEN_STREET'),
  reviewer: env('TOKEN_REVIEWER'),
};

async function api(base, path, token, body) {
  const r = await fetch(base + path, {
    method: body === undefined ? 'GET' : 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) : null };
}

async function until(what, f, ms = 15000) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const v = await f();
    if (v) return v;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}`);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
let failed = null;
const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
const errors = [];
page.on('pageerror', (e) => errors.push(String(e)));
try {
  // Without a token the page says so.
  await page.goto(`${ledger}/`);
  await page.waitForFunction(() => document.body.innerText.includes('令牌'), null, { timeout: 10000 });

  // With a rejected token it says that too.
  await page.goto(`${ledger}/?district=tongzhou#token=not-a-valid-token`);
  await page.waitForFunction(() => /无效|过期|令牌/.test(document.body.innerText), null, { timeout: 10000 });

  await page.goto(`${ledger}/?district=tongzhou#token=${tokens.district}`);
  const openOf = (street) => page.locator(`[data-street="${street}"] [data-field="open"]`).first();
  await page.waitForFunction(() => document.querySelector('#district-open')?.textContent.trim() === '0', null, { timeout: 15000 });
  if ((await page.locator('[data-street]').count()) < 22) throw new Error('not every street is shown');
  if ((await openOf('jiukeshu').innerText()).trim() !== '0') throw new Error('jiukeshu should start at 0');
  const navigations = [];
  page.on('framenavigated', (f) => { if (f === page.mainFrame()) navigations.push(f.url()); });

  const created = await api(intake, '/v1/complaints', tokens.operator, {
    district: 'tongzhou', street: 'jiukeshu', category: 'basement_illegal_residence',
    point: { community: '浏览器小区', building: '1', basement: 'B1', address: '通州区九棵树街道浏览器小区1号楼地下一层' },
    description: '地下室有人居住',
  });
  if (created.status !== 201) throw new Error(`complaint: ${created.status}`);
  await page.waitForFunction(() => document.querySelector('[data-street="jiukeshu"] [data-field="open"]')?.textContent.trim() === '1', null, { timeout: 15000 });
  await page.waitForFunction(() => /未清零/.test(document.querySelector('#zero-status')?.textContent || ''), null, { timeout: 5000 });

  // Write it off: acknowledge, request, approve.
  const itemId = await until('the item on the ledger', async () => {
    const c = await api(intake, `/v1/complaints/${created.body.complaint_id}`, tokens.operator);
    return c.body && c.body.item_id;
  });
  const ack = await api(ledger, `/v1/ledger/items/${itemId}/acknowledge`, tokens.street, {});
  if (ack.status !== 200) throw new Error(`acknowledge: ${ack.status}`);
  const closureId = await until('closure to accept the request', async () => {
    const r = await api(closure, '/v1/closures', tokens.street, {
      item_id: itemId, outcome: 'rectified',
      checklist: { no_illegal_residents: true, no_garbage_or_unsafe_partitions: true, no_illegal_use: true, layout_restored: true },
      rooms_cleared: 3, evidence: [{ kind: 'photo', uri: 's3://bucket/after.jpg' }], note: '已清理',
    });
    return r.status === 201 && r.body.closure_id;
  });
  const approved = await api(closure, `/v1/closures/${closureId}/approve`, tokens.reviewer, {});
  if (approved.status !== 200) throw new Error(`approve: ${approved.status}`);
  await page.waitForFunction(() => /动态清零/.test(document.querySelector('#zero-status')?.textContent || '')
    && !/未清零/.test(document.querySelector('#zero-status')?.textContent || '')
    && document.querySelector('#district-open')?.textContent.trim() === '0', null, { timeout: 15000 });
  if (navigations.length) throw new Error(`the page reloaded: ${navigations}`);
  if (errors.length) throw new Error(`page errors: ${errors.join('; ')}`);
} catch (e) {
  failed = e;
} finally {
  // The lists and the curve refresh at most once a second: let them catch up for the picture.
  if (!failed) await page.waitForTimeout(2500).catch(() => {});
  await page.screenshot({ path: shot, fullPage: true }).catch(() => {});
  // The same page on a phone screen.
  await page.setViewportSize({ width: 390, height: 844 }).catch(() => {});
  await page.screenshot({ path: shot.replace(/\.png$/, '-phone.png'), fullPage: true }).catch(() => {});
  await browser.close();
}
if (failed) {
  console.error(`dashboard test failed: ${failed.message}`);
  process.exit(1);
}
console.log(`dashboard followed the ledger live; screenshot at ${shot}`);
