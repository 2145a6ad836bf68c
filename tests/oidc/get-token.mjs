#!/usr/bin/env node
// Signs a test user in at the test OpenID Provider (provider.mjs) the way a browser would, over plain
// HTTP with node's fetch and a cookie jar: the authorization-code flow with PKCE (S256), `state` and
// `nonce`, posting the provider's own sign-in (and, if shown, consent) forms, then the code exchange
// at the token endpoint as the public client. No browser, and nothing signed here.
//
// Environment:
//   ISSUER        the provider's issuer (http://127.0.0.1:<port>)
//   USER          the account id to sign in as (street-jiukeshu, reviewer-tongzhou, no-role, …)
//   REDIRECT_URI  one of the client's registered redirect URIs (nothing needs to listen there)
//   RESOURCE      optional resource indicator (RFC 8707); a bare audience name such as `qingling`
//                 means urn:qingling (provider.mjs's convention). Unset: the provider's default
//                 resource, i.e. a JWT access token for its AUDIENCE (qingling)
//   CLIENT_ID     default qingling-console
//   SCOPE         default "openid profile qingling"
//   PASSWORD      default "password" (the test provider takes any non-empty one)
// Prints ONE JSON line {"access_token","id_token","expires_in","token_type"} (plus "scope"); exits 1
// with a message on stderr on any failure.
import { createHash, randomBytes } from 'node:crypto';

const fail = (msg) => {
  console.error(`get-token: ${msg}`);
  process.exit(1);
};
const need = (k) => process.env[k] || fail(`${k} is not set`);
const ISSUER = need('ISSUER').replace(/\/+$/, '');
const USER = need('USER');
const REDIRECT_URI = need('REDIRECT_URI');
const CLIENT_ID = process.env.CLIENT_ID || 'qingling-console';
const SCOPE = process.env.SCOPE || 'openid profile qingling';
const PASSWORD = process.env.PASSWORD || 'password';
const isAbsoluteUri = (s) => /^[a-z][a-z0-9+.-]*:/i.test(s) && URL.canParse(s);
const RESOURCE = process.env.RESOURCE ? (isAbsoluteUri(process.env.RESOURCE) ? process.env.RESOURCE : `urn:${process.env.RESOURCE}`) : null;

// ------------------------------------------------------------------ a small cookie jar
const jar = new Map(); // `${host} ${path} ${name}` → { host, path, name, value }
function keepCookies(url, res) {
  const u = new URL(url);
  for (const line of res.headers.getSetCookie()) {
    const [pair, ...attrs] = line.split(';');
    const eq = pair.indexOf('=');
    if (eq < 1) continue;
    const name = pair.slice(0, eq).trim();
    const value = pair.slice(eq + 1).trim();
    let path = '/';
    let expired = value === '';
    for (const a of attrs) {
      const [k, v = ''] = a.split('=').map((s) => s.trim());
      if (/^path$/i.test(k) && v.startsWith('/')) path = v;
      if (/^max-age$/i.test(k) && Number(v) <= 0) expired = true;
      if (/^expires$/i.test(k) && Date.parse(v) <= Date.now()) expired = true;
    }
    const key = `${u.host} ${path} ${name}`;
    if (expired) jar.delete(key); else jar.set(key, { host: u.host, path, name, value });
  }
}
function cookieHeader(url) {
  const u = new URL(url);
  const pathOk = (p) => u.pathname === p || u.pathname.startsWith(p.endsWith('/') ? p : `${p}/`);
  const cs = [...jar.values()].filter((c) => c.host === u.host && pathOk(c.path))
    .sort((a, b) => b.path.length - a.path.length);
  return cs.map((c) => `${c.name}=${c.value}`).join('; ');
}
async function request(url, opts = {}) {
  const headers = { Accept: 'text/html,application/json', ...(opts.headers || {}) };
  const cookie = cookieHeader(url);
  if (cookie) headers.Cookie = cookie;
  let res;
  try {
    res = await fetch(url, { ...opts, headers, redirect: 'manual' });
  } catch (e) {
    fail(`${opts.method || 'GET'} ${url.split('?')[0]}: ${e.cause?.message || e.message}`);
  }
  keepCookies(url, res);
  return res;
}

// ------------------------------------------------------------------ HTML forms
const unescapeHtml = (s) => s.replace(/&(amp|lt|gt|quot|#39|#x27);/g, (_, e) => ({ amp: '&', lt: '<', gt: '>', quot: '"', '#39': "'", '#x27': "'" })[e]);
const attr = (tag, name) => {
  const m = new RegExp(`\\s${name}\\s*=\\s*("([^"]*)"|'([^']*)'|([^\\s>]+))`, 'i').exec(tag);
  return m ? unescapeHtml(m[2] ?? m[3] ?? m[4] ?? '') : null;
};
/** The first POST form of a page: its action and the fields a user would send. */
function formOf(html, base) {
  const fm = /<form\b[^>]*>([\s\S]*?)<\/form>/i.exec(html);
  if (!fm) return null;
  const tag = fm[0].slice(0, fm[0].indexOf('>') + 1);
  const fields = new URLSearchParams();
  for (const input of fm[1].match(/<input\b[^>]*>/gi) || []) {
    const name = attr(input, 'name');
    if (!name) continue;
    const type = (attr(input, 'type') || 'text').toLowerCase();
    if (name === 'login') fields.set(name, USER);
    else if (type === 'password') fields.set(name, PASSWORD);
    else fields.set(name, attr(input, 'value') || '');
  }
  return { action: new URL(attr(tag, 'action') || base, base).href, method: (attr(tag, 'method') || 'get').toUpperCase(), fields };
}
const errorText = (html) => {
  const m = /data-testid="oidc-error"[^>]*>([^<]*)</.exec(html);
  if (m) return unescapeHtml(m[1]);
  const body = /<body\b[^>]*>([\s\S]*)<\/body>/i.exec(html);
  return unescapeHtml((body ? body[1] : html).replace(/<[^>]+>/g, ' ').replace(/\s+/g, ' ').trim()).slice(0, 300);
};

// ------------------------------------------------------------------ the flow
const b64url = (buf) => Buffer.from(buf).toString('base64url');
const verifier = b64url(randomBytes(32));
const challenge = b64url(createHash('sha256').update(verifier).digest());
const state = b64url(randomBytes(16));
const nonce = b64url(randomBytes(16));

const disco = await request(`${ISSUER}/.well-known/openid-configuration`, { headers: { Accept: 'application/json' } });
if (!disco.ok) fail(`discovery answered ${disco.status}`);
const meta = await disco.json();
if (meta.issuer !== ISSUER) fail(`discovery names issuer ${meta.issuer}, not ${ISSUER}`);

const auth = new URL(meta.authorization_endpoint);
for (const [k, v] of Object.entries({
  client_id: CLIENT_ID, redirect_uri: REDIRECT_URI, response_type: 'code', scope: SCOPE, state, nonce,
  code_challenge: challenge, code_challenge_method: 'S256', ...(RESOURCE ? { resource: RESOURCE } : null),
})) auth.searchParams.set(k, v);

const redirectTarget = new URL(REDIRECT_URI);
const isRedirect = (u) => u.origin === redirectTarget.origin && u.pathname === redirectTarget.pathname;
let next = { url: auth.href, method: 'GET', body: undefined };
let code = null;
for (let step = 0; step < 25 && !code; step++) {
  const res = await request(next.url, {
    method: next.method,
    body: next.body,
    headers: next.body ? { 'Content-Type': 'application/x-www-form-urlencoded' } : undefined,
  });
  if (res.status >= 300 && res.status < 400) {
    const loc = new URL(res.headers.get('location') || fail(`a ${res.status} without Location`), next.url);
    if (isRedirect(loc)) {
      const p = loc.searchParams;
      if (p.get('error')) fail(`the provider refused: ${p.get('error')}${p.get('error_description') ? ` (${p.get('error_description')})` : ''}`);
      if (p.get('state') !== state) fail('the state came back changed');
      if (p.get('iss') && p.get('iss') !== ISSUER) fail(`the response names issuer ${p.get('iss')}`);
      code = p.get('code') || fail('no code in the redirect');
      break;
    }
    if (loc.origin !== new URL(ISSUER).origin) fail(`redirected away from the provider to ${loc.origin}${loc.pathname}`);
    next = { url: loc.href, method: 'GET', body: undefined };
    continue;
  }
  const html = await res.text();
  if (!res.ok) fail(`${next.method} ${next.url.split('?')[0]} answered ${res.status}: ${errorText(html)}`);
  const form = formOf(html, next.url);
  if (!form) fail(`a page without a form at ${next.url.split('?')[0]}: ${errorText(html)}`);
  // The sign-in page shown again means the sign-in was refused.
  if (next.method === 'POST' && form.fields.has('login')) fail(`sign-in as ${USER} refused: ${errorText(html)}`);
  next = form.method === 'POST'
    ? { url: form.action, method: 'POST', body: form.fields.toString() }
    : { url: `${form.action}${form.action.includes('?') ? '&' : '?'}${form.fields}`, method: 'GET', body: undefined };
}
if (!code) fail('no authorization code after 25 steps');

const tokenRes = await request(meta.token_endpoint, {
  method: 'POST',
  headers: { 'Content-Type': 'application/x-www-form-urlencoded', Accept: 'application/json' },
  body: new URLSearchParams({
    grant_type: 'authorization_code', code, redirect_uri: REDIRECT_URI, client_id: CLIENT_ID, code_verifier: verifier,
    ...(RESOURCE ? { resource: RESOURCE } : null),
  }).toString(),
});
const tok = await tokenRes.json().catch(() => null);
if (!tokenRes.ok || !tok) fail(`token endpoint answered ${tokenRes.status}: ${tok ? `${tok.error} ${tok.error_description || ''}` : 'not JSON'}`);
if (!tok.access_token) fail('no access_token in the token response');
if (SCOPE.split(' ').includes('openid')) {
  if (!tok.id_token) fail('no id_token in the token response');
  const idc = JSON.parse(Buffer.from(tok.id_token.split('.')[1], 'base64url').toString('utf8'));
  if (idc.nonce !== nonce) fail('the id_token carries another nonce');
}
console.log(JSON.stringify({
  access_token: tok.access_token,
  id_token: tok.id_token,
  expires_in: tok.expires_in,
  token_type: tok.token_type,
  scope: tok.scope,
}));
