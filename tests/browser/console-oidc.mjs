// Drives the work console's sign-in through the district's identity provider (OpenID Connect) in
// headless Chromium, on a phone: a street officer signs in at the provider (tests/oidc/provider.mjs,
// the certified oidc-provider package), opens an item, acknowledges it and fills the write-off form
// with a photo; the access token runs out while the form is being filled; on submitting, the console
// signs in again through the provider without any input (the provider's session) and comes back with
// the form as it was (values, ticks, the uploaded photo); the request is then filed with the renewed
// session; the item's history names the person; signing out ends the provider's session too.
// Environment: LEDGER_URL, OIDC_ISSUER, CHROMIUM, ARTIFACTS (a directory for screenshots), PHOTO1 (an
// image), ITEM_ID (an item of jiukeshu in status registered), TOKEN_TTL (seconds the provider's
// access tokens last). Optional CONSOLE_STATIC_DIR: serve console.html and console.js from there (with
// the ledger's own headers, its Content-Security-Policy included) instead of the copies compiled into
// the ledger, to try edits without a rebuild.
// Fails on any 5xx from the services, any console error, a page error, an access or id token in a URL
// sent to the ledger, intake or closure, or a token in localStorage. Prints one JSON line on success:
// {"closure_id", "signed_in_as", "screenshots", …}; on failure, the error (and saves
// ARTIFACTS/console-oidc-failure.png).
import { chromium } from 'playwright-core';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};
const ledger = env('LEDGER_URL').replace(/\/+$/, '');
const consoleUrl = `${ledger}/console/`;
const issuer = env('OIDC_ISSUER').replace(/\/+$/, '');
const artifacts = env('ARTIFACTS');
mkdirSync(artifacts, { recursive: true });
const photo = env('PHOTO1');
const photoSha = createHash('sha256').update(readFileSync(photo)).digest('hex');
const itemId = env('ITEM_ID');
const ttl = Number(env('TOKEN_TTL'));
if (!(ttl > 0)) throw new Error(`TOKEN_TTL must be a positive number of seconds, not ${process.env.TOKEN_TTL}`);
const USER = 'street-jiukeshu';

const PHONE = {
  viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, deviceScaleFactor: 2, locale: 'zh-CN',
  permissions: ['geolocation'], geolocation: { latitude: 39.8832, longitude: 116.6621 },
};

// Where the services are, as the page learns it: tokens must never be in a URL sent to any of them.
const config = await (await fetch(`${ledger}/console/config.json`, { cache: 'no-store' })).json();
if (!config.oidc || !config.oidc.issuer) throw new Error(`config.json names no identity provider: ${JSON.stringify(config)}`);
const serviceOrigins = new Set([ledger, config.intake, config.closure].filter(Boolean).map((u) => new URL(u, ledger).origin));

const problems = [];
const screenshots = [];
const tokens = new Set(); // every access and id token the page received
const serviceUrls = []; // every URL the page sent to the services
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const strip = (u) => u.split('#')[0];

function watch(page) {
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    const t = m.text();
    // Chromium logs every refused request (a write-off just after an acknowledgement may be refused
    // once and retried); 5xx are caught below.
    if (/^Failed to load resource: the server responded with a status of 4\d\d/.test(t)) return;
    problems.push(`console error on ${strip(page.url()).slice(0, 80)}: ${t}`);
  });
  page.on('request', (r) => {
    const u = strip(r.url());
    let origin;
    try { origin = new URL(u).origin; } catch (e) { return; }
    if (serviceOrigins.has(origin)) serviceUrls.push(u);
  });
  page.on('response', async (r) => {
    const u = strip(r.url());
    let origin;
    try { origin = new URL(u).origin; } catch (e) { return; }
    if (r.status() >= 500 && serviceOrigins.has(origin)) problems.push(`HTTP ${r.status()} ${r.request().method()} ${u}`);
    if (r.status() >= 500 && origin === new URL(issuer).origin) problems.push(`identity provider HTTP ${r.status()} ${r.request().method()} ${u}`);
    // The token endpoint's answer: remember the tokens, to look for them in URLs.
    if (origin === new URL(issuer).origin && r.request().method() === 'POST' && r.ok() && /json/.test(r.headers()['content-type'] || '')) {
      try {
        const j = await r.json();
        if (j.access_token) tokens.add(j.access_token);
        if (j.id_token) tokens.add(j.id_token);
      } catch (e) { /* not the token endpoint */ }
    }
  });
}

async function until(what, f, ms = 15000, every = 250) {
  const end = Date.now() + ms;
  let last;
  while (Date.now() < end) {
    try {
      const v = await f();
      if (v) return v;
    } catch (e) { last = e; }
    await sleep(every);
  }
  throw new Error(`timed out waiting for ${what}${last ? ` (${last.message})` : ''}`);
}
const text = async (loc) => ((await loc.textContent()) || '').trim();
async function shot(page, name) {
  const path = join(artifacts, name);
  await page.screenshot({ path, fullPage: true });
  screenshots.push(path);
}
const claimsOf = (t) => JSON.parse(Buffer.from(String(t).split('.')[1], 'base64url').toString('utf8'));
const sessionToken = (page) => page.evaluate(() => sessionStorage.getItem('qingling.console.token'));
const atProvider = (page) => page.url().startsWith(`${issuer}/`);
const atConsole = (page) => page.url().startsWith(consoleUrl);

/** Whatever the provider shows (sign-in, consent), answered as the user; returns when back at the console. */
async function throughProvider(page, { allowLogin }) {
  let loggedIn = false;
  let consented = false;
  await until('the way back from the identity provider to the console', async () => {
    if (atConsole(page) && !/[?&](code|state)=/.test(page.url())) return true;
    if (!atProvider(page)) return false;
    const login = page.getByTestId('oidc-login');
    if (await login.isVisible().catch(() => false)) {
      if (!allowLogin) throw new Error('the identity provider asked for the password again: the renewal was not silent');
      if (loggedIn) {
        const err = page.getByTestId('oidc-error');
        if (await err.isVisible().catch(() => false)) throw new Error(`sign-in refused: ${await text(err)}`);
        return false;
      }
      await login.fill(USER);
      await page.getByTestId('oidc-password').fill('any-password');
      await page.getByTestId('oidc-submit').tap();
      loggedIn = true;
      return false;
    }
    const consent = page.getByTestId('oidc-consent');
    if (!consented && await consent.isVisible().catch(() => false)) {
      await consent.tap();
      consented = true;
    }
    return false;
  }, 30000, 150);
  return { loggedIn, consented };
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
let failed = null;
let page = null;
const suffix = Date.now().toString(36);
const note = `统一身份认证会话到期后恢复的草稿（${suffix}）`;
const result = { closure_id: null, signed_in_as: null, screenshots, item_id: itemId, user: USER };
try {
  const staticDir = process.env.CONSOLE_STATIC_DIR;
  // A page the script serves has no address of its own, so Chromium counts it as public and asks
  // before it reaches loopback (Local Network Access); the ledger's own page is loopback already.
  const ctx = await browser.newContext(staticDir
    ? { ...PHONE, permissions: [...PHONE.permissions, 'local-network-access'] } : PHONE);
  if (staticDir) {
    const origin = new URL(ledger).origin;
    await ctx.route((u) => u.origin === origin && (u.pathname === '/console/' || u.pathname === '/console/console.js'), async (route) => {
      const file = new URL(route.request().url()).pathname.endsWith('.js') ? 'console.js' : 'console.html';
      const response = await route.fetch();
      await route.fulfill({ response, body: readFileSync(join(staticDir, file)) });
    });
  }
  page = await ctx.newPage();
  watch(page);

  // 1. Sign in at the provider.
  await page.goto(consoleUrl);
  await page.getByTestId('oidc-sign-in').waitFor({ state: 'visible', timeout: 10000 });
  if (!(await page.getByTestId('token-input').isVisible())) throw new Error('the token form is gone beside the provider sign-in');
  await page.getByTestId('oidc-sign-in').tap();
  await until('the identity provider sign-in page', async () => atProvider(page), 10000, 100);
  const first = await throughProvider(page, { allowLogin: true });
  if (!first.loggedIn) throw new Error('the provider never asked who signs in');
  result.first_sign_in = first;
  const who = page.getByTestId('signed-in-as');
  await until('signed in as 李明', async () => (await who.isVisible()) && (await text(who)).includes('李明'), 15000);
  result.signed_in_as = await text(who);
  if (!result.signed_in_as.includes('街道')) throw new Error(`signed-in-as shows no street role: ${result.signed_in_as}`);
  if (/[?&](code|state)=/.test(page.url())) throw new Error(`code/state left in the address bar: ${page.url()}`);
  const firstToken = await sessionToken(page);
  if (!firstToken || !tokens.has(firstToken)) throw new Error('the page does not use the access token the provider issued');
  const fc = claimsOf(firstToken);
  if (fc.sub !== USER || fc.iss !== issuer) throw new Error(`unexpected access token claims ${JSON.stringify({ sub: fc.sub, iss: fc.iss })}`);
  result.access_token_alg = JSON.parse(Buffer.from(firstToken.split('.')[0], 'base64url').toString('utf8')).alg;
  const row = page.locator(`[data-testid=inbox-row][data-item-id="${itemId}"]`);
  await until(`item ${itemId} in the inbox`, async () => {
    if (await row.count()) return true;
    await page.getByTestId('refresh-inbox').tap();
    await sleep(800);
    return (await row.count()) > 0;
  }, 20000, 200);
  await shot(page, 'console-oidc-signed-in-phone.png');

  // 2. Work the item: acknowledge, fill the write-off form with one photo.
  await row.first().tap();
  await page.getByTestId('acknowledge').waitFor({ state: 'visible', timeout: 10000 });
  await page.getByTestId('acknowledge').tap();
  await page.getByTestId('open-closure-form').waitFor({ state: 'visible', timeout: 10000 });
  await page.getByTestId('open-closure-form').tap();
  await page.getByTestId('closure-outcome').selectOption('rectified');
  const CHECKS = ['check-no-illegal-residents', 'check-no-garbage-or-unsafe-partitions', 'check-no-illegal-use', 'check-layout-restored'];
  for (const id of CHECKS) await page.getByTestId(id).check();
  await page.getByTestId('rooms-cleared').fill('2');
  await page.getByTestId('partition-area').fill('10');
  await page.getByTestId('photo-input').setInputFiles([photo]);
  const thumbs = page.locator('[data-testid=photo-thumb][data-sha256]');
  await until('the photo uploaded', async () => (await thumbs.count()) === 1 && !(await page.locator('#photo-thumbs .uploading').count()), 20000);
  if ((await thumbs.first().getAttribute('data-sha256')) !== photoSha) throw new Error('the uploaded photo has another hash');
  await page.getByTestId('closure-note').fill(note);
  const itemHash = new URL(page.url()).hash;

  // 3. The access token runs out while the form is open.
  const exp = fc.exp ? fc.exp * 1000 : Date.now() + ttl * 1000;
  const wait = Math.max(0, Math.min(exp + 2000 - Date.now(), ttl * 1000 + 2000));
  result.waited_ms = wait;
  await sleep(wait);
  const stale = await fetch(`${ledger}/v1/ledger/items/${itemId}`, { headers: { Authorization: `Bearer ${firstToken}` } });
  result.expired_token_status = stale.status; // 401 unless the services allow some leeway past exp

  // 4. Submit: the console signs in again through the provider, with no input, and restores the form.
  // The provider's session answers with redirects only: seen as navigation requests, not pages.
  const navigations = [];
  page.on('request', (r) => { if (r.isNavigationRequest() && r.frame() === page.mainFrame()) navigations.push(strip(r.url()).split('?')[0]); });
  await page.getByTestId('closure-submit').tap();
  await until('the console off to the identity provider', async () => navigations.some((u) => u.startsWith(issuer)), 15000, 100);
  const second = await throughProvider(page, { allowLogin: false });
  result.renewal = { ...second, via: [...new Set(navigations)] };
  const notice = page.getByTestId('notice');
  await until('the restoration notice', async () => (await notice.isVisible()) && /已恢复/.test(await text(notice)), 20000);
  result.notice = await text(notice);
  if (new URL(page.url()).hash !== itemHash) throw new Error(`came back to ${new URL(page.url()).hash}, not ${itemHash}`);
  await page.getByTestId('closure-note').waitFor({ state: 'visible', timeout: 10000 });
  await until('the photo back in the form', async () => (await thumbs.count()) === 1 &&
    (await thumbs.first().evaluate((i) => i.complete && i.naturalWidth > 0)), 15000);
  const restored = {
    note: await page.getByTestId('closure-note').inputValue(),
    rooms: await page.getByTestId('rooms-cleared').inputValue(),
    area: await page.getByTestId('partition-area').inputValue(),
    outcome: await page.getByTestId('closure-outcome').inputValue(),
    checks: await Promise.all(CHECKS.map((id) => page.getByTestId(id).isChecked())),
    photo: await thumbs.first().getAttribute('data-sha256'),
  };
  result.restored = restored;
  if (restored.note !== note) throw new Error(`note not restored: ${JSON.stringify(restored.note)}`);
  if (restored.rooms !== '2') throw new Error(`rooms not restored: ${JSON.stringify(restored.rooms)}`);
  if (restored.area !== '10') throw new Error(`area not restored: ${JSON.stringify(restored.area)}`);
  if (restored.outcome !== 'rectified' || !restored.checks.every(Boolean)) throw new Error(`outcome/checks not restored: ${JSON.stringify(restored)}`);
  if (restored.photo !== photoSha) throw new Error('another photo came back');
  const renewed = await sessionToken(page);
  if (!renewed || renewed === firstToken) throw new Error('the session was not renewed');
  if (!(claimsOf(renewed).exp * 1000 > Date.now())) throw new Error('the renewed token is already expired');
  if (!(await text(who)).includes('李明')) throw new Error(`signed-in-as after renewal: ${await text(who)}`);
  await shot(page, 'console-oidc-restored-phone.png');

  // 5. File it with the renewed session.
  const pending = page.getByTestId('pending-closure');
  await until('the write-off request filed', async () => {
    if (await pending.isVisible()) return true;
    const err = page.getByTestId('error-message');
    if (await err.isVisible()) throw new Error(`the request was refused: ${await text(err)}`);
    const btn = page.getByTestId('closure-submit');
    if ((await btn.isVisible()) && (await btn.isEnabled())) await btn.tap();
    await sleep(1500);
    return pending.isVisible();
  }, 30000, 100);
  result.closure_id = await pending.getAttribute('data-closure-id');
  if (!result.closure_id) throw new Error('no closure id on the pending request');
  result.renewed_token_sub = claimsOf(renewed).sub;

  // The item's history names the person (the provider's `name`), not only the account id.
  await until('the history naming 李明', async () => {
    if ((await text(page.locator('#item-history'))).includes('李明')) return true;
    await page.getByTestId('refresh-item').tap();
    await sleep(800);
    return false;
  }, 15000, 100);

  const local = await page.evaluate(() => Object.keys(localStorage).map((k) => localStorage.getItem(k)).join('\n'));

  // 6. Sign out: out of the console and of the provider's session (the next sign-in asks again).
  await page.getByTestId('sign-out').tap();
  await until('the provider\'s sign-out page', async () => atProvider(page), 10000, 100);
  await page.getByTestId('oidc-logout').tap();
  await page.getByTestId('oidc-sign-in').waitFor({ state: 'visible', timeout: 10000 });
  if (await who.isVisible()) throw new Error('still signed in after sign-out');
  if (await sessionToken(page)) throw new Error('a token left in sessionStorage after sign-out');
  await page.getByTestId('oidc-sign-in').tap();
  await page.getByTestId('oidc-login').waitFor({ state: 'visible', timeout: 10000 });
  result.signed_out = true;

  // Tokens: in no URL sent to the services, not in localStorage.
  for (const u of serviceUrls) for (const t of tokens) if (u.includes(t)) problems.push(`a token in a URL sent to a service: ${u.slice(0, 80)}…`);
  for (const t of tokens) if (local.includes(t)) problems.push('a token in localStorage');
  if (tokens.size < 4) problems.push(`expected two sign-ins (access + id token each), saw ${tokens.size} tokens`);
  result.service_requests = serviceUrls.length;
  if (problems.length) throw new Error(`problems seen by the page:\n${problems.join('\n')}`);
} catch (e) {
  failed = e;
  if (page) await page.screenshot({ path: join(artifacts, 'console-oidc-failure.png'), fullPage: true }).catch(() => {});
} finally {
  await browser.close().catch(() => {});
}
if (failed) {
  console.error(`console OIDC test failed: ${failed.stack || failed.message}`);
  if (problems.length) console.error(problems.join('\n'));
  process.exit(1);
}
console.log(JSON.stringify(result));
process.exit(0);
