#!/usr/bin/env node
// A real OpenID Provider for Qingling's tests: the OpenID-certified `oidc-provider` package,
// configured (nothing here issues or signs a token itself), on 127.0.0.1.
//
// Environment
//   PORT                       port to listen on (0 or unset: any free port)
//   KEYS_FILE                  private JWKS from keys.mjs; every key is published at the jwks_uri,
//                              the first key of SIGNING_ALG signs (unset: one ES256 key made here)
//   SIGNING_ALG                ES256 or RS256 (default: the first key's alg, else ES256) for access
//                              tokens and id_tokens
//   AUDIENCE                   the resource server, `aud` of every access token (default qingling)
//   RESOURCE                   its resource indicator (RFC 8707, an absolute URI; default AUDIENCE
//                              when that is one, else urn:AUDIENCE). Clients need not send it: it
//                              is the default resource, so every access token is a JWT for AUDIENCE
//   EXTRA_AUDIENCES            comma-separated other resource servers (resource urn:<aud> or the
//                              URI itself), for tests that want a genuine token with another `aud`
//   ACCESS_TOKEN_TTL           seconds an access token lasts (default 300)
//   CONSOLE_REDIRECT_URIS      comma-separated redirect URIs of the public client qingling-console
//   POST_LOGOUT_REDIRECT_URIS  comma-separated post-logout redirect URIs of qingling-console
//
// When ready it prints exactly one line to stdout: `oidc-provider listening on http://127.0.0.1:<port>`
// (the issuer). Everything else goes to stderr. SIGTERM/SIGINT stop it; SIGHUP reads KEYS_FILE again
// (key rotation without a restart: sessions, grants and the port stay).
//
// Users (log in with the account id as login name and any non-empty password):
//   street-jiukeshu, street-yongshun, reviewer-tongzhou, operator-tongzhou, district-tongzhou,
//   no-role (no qingling claims), bad-role (qingling_role "admin", qingling_org ["x"]).
// Scopes: openid, profile (name), qingling (qingling_role, qingling_org). The JWT access token carries
// name, qingling_role and qingling_org besides iss, sub, aud, exp, iat, jti, client_id, scope; the
// id_token carries name (and the qingling claims when that scope was granted).
import { createServer } from 'node:http';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Provider, errors } from 'oidc-provider';
// The library's own in-memory store, made once: a provider rebuilt on SIGHUP keeps its sessions.
import { createMemoryAdapter } from 'oidc-provider/lib/adapters/memory_adapter.js';

const log = (...a) => console.error('[oidc-provider]', ...a);
const list = (v) => String(v || '').split(',').map((s) => s.trim()).filter(Boolean);
const isAbsoluteUri = (s) => /^[a-z][a-z0-9+.-]*:/i.test(s) && URL.canParse(s);

const PORT = Number(process.env.PORT || 0);
const KEYS_FILE = process.env.KEYS_FILE || '';
const AUDIENCE = process.env.AUDIENCE || 'qingling';
const resourceFor = (aud) => (isAbsoluteUri(aud) ? aud : `urn:${aud}`);
const RESOURCE = process.env.RESOURCE || resourceFor(AUDIENCE);
const TTL = Number(process.env.ACCESS_TOKEN_TTL || 300);
if (!Number.isInteger(TTL) || TTL <= 0) throw new Error(`ACCESS_TOKEN_TTL must be a positive integer, not ${process.env.ACCESS_TOKEN_TTL}`);
const REDIRECT_URIS = list(process.env.CONSOLE_REDIRECT_URIS);
const POST_LOGOUT_URIS = list(process.env.POST_LOGOUT_REDIRECT_URIS);
if (!REDIRECT_URIS.length) log('warning: CONSOLE_REDIRECT_URIS is empty; using http://127.0.0.1:8082/console/');
const CLIENT_ID = 'qingling-console';
const FIRST_PARTY = new Set([CLIENT_ID]);

/** resource indicator → audience, for the resource servers this provider issues tokens for. */
const RESOURCE_SERVERS = new Map([[RESOURCE, AUDIENCE], [AUDIENCE, AUDIENCE]]);
for (const aud of list(process.env.EXTRA_AUDIENCES)) {
  RESOURCE_SERVERS.set(resourceFor(aud), aud);
  RESOURCE_SERVERS.set(aud, aud);
}

// ------------------------------------------------------------------ accounts
const ACCOUNTS = {
  'street-jiukeshu': { name: '李明（九棵树街道）', qingling_role: 'street', qingling_org: 'jiukeshu' },
  'street-yongshun': { name: '王芳（永顺镇）', qingling_role: 'street', qingling_org: 'yongshun' },
  'reviewer-tongzhou': { name: '赵审核', qingling_role: 'reviewer', qingling_org: 'tongzhou' },
  'operator-tongzhou': { name: '钱接线', qingling_role: 'operator', qingling_org: 'tongzhou' },
  'district-tongzhou': { name: '孙区办', qingling_role: 'district', qingling_org: 'tongzhou' },
  'no-role': { name: '无角色' },
  'bad-role': { name: '坏角色', qingling_role: 'admin', qingling_org: ['x'] },
};
function findAccount(_ctx, id) {
  const claims = Object.hasOwn(ACCOUNTS, id) ? ACCOUNTS[id] : null;
  if (!claims) return undefined;
  return {
    accountId: id,
    // The library filters these by the granted scopes and claims.
    async claims() { return { sub: id, ...structuredClone(claims) }; },
  };
}

// ------------------------------------------------------------------ keys
function loadKeys() {
  if (!KEYS_FILE) {
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    return { keys: [{ ...privateKey.export({ format: 'jwk' }), kid: `ephemeral-${randomBytes(6).toString('hex')}`, alg: 'ES256', use: 'sig' }] };
  }
  const j = JSON.parse(readFileSync(KEYS_FILE, 'utf8'));
  const keys = Array.isArray(j) ? j : j.keys;
  if (!Array.isArray(keys) || !keys.length) throw new Error(`${KEYS_FILE} holds no keys`);
  return { keys };
}
function signingAlg(jwks) {
  const alg = (process.env.SIGNING_ALG || jwks.keys[0].alg || 'ES256').toUpperCase();
  if (!jwks.keys.some((k) => (k.alg || alg) === alg)) throw new Error(`no ${alg} key in ${KEYS_FILE || 'the key set'}`);
  return alg;
}

// ------------------------------------------------------------------ pages (no external resources)
const esc = (s) => String(s ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
function page(title, body) {
  return `<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer"><link rel="icon" href="data:,">
<title>${esc(title)}</title>
<style>
body{margin:0;background:#eef2f7;color:#1b2430;font:16px/1.5 system-ui,"PingFang SC","Microsoft YaHei","Noto Sans CJK SC",sans-serif}
.card{max-width:22rem;margin:2rem auto;background:#fff;border-radius:8px;padding:1.2rem 1.4rem;box-shadow:0 2px 8px rgba(0,0,0,.1)}
h1{font-size:1.25rem;margin:0 0 .8rem}form{display:grid;gap:.7rem}label{display:grid;gap:.2rem;font-weight:600}
input{font:inherit;min-height:2.75rem;padding:.4rem .6rem;border:1px solid #9aa7b8;border-radius:6px}
button{font:inherit;min-height:2.75rem;border-radius:6px;border:1px solid #1f5fae;background:#1f5fae;color:#fff;font-weight:600;cursor:pointer}
button.secondary{background:#fff;color:#1f5fae}.err{color:#b3261e;background:#fde8e6;padding:.5rem .7rem;border-radius:6px}
.hint{color:#4f5b6b;font-size:.85rem}ul{padding-left:1.2rem}code{font-size:.85rem}a{color:#1f5fae}
</style></head><body><main class="card">${body}</main></body></html>`;
}
function loginPage(uid, params, error, login) {
  return page('统一身份认证 · 登录', `<h1>统一身份认证</h1>
<p class="hint">应用 <code>${esc(params.client_id)}</code> 请求您登录（测试身份提供方）。</p>
${error ? `<p class="err" role="alert" data-testid="oidc-error">${esc(error)}</p>` : ''}
<form method="post" action="/interaction/${esc(uid)}" autocomplete="off">
<input type="hidden" name="prompt" value="login">
<label>账号<input name="login" data-testid="oidc-login" required autocapitalize="off" spellcheck="false" value="${esc(login ?? params.login_hint ?? '')}"></label>
<label>密码<input name="password" type="password" data-testid="oidc-password" required></label>
<button type="submit" data-testid="oidc-submit">登录</button>
</form>
<p class="hint">测试账号：${Object.keys(ACCOUNTS).map((a) => `<code>${esc(a)}</code>`).join('、')}；密码任意。</p>
<p><a href="/interaction/${esc(uid)}/abort">取消</a></p>`);
}
function consentPage(uid, params, details, accountId) {
  const scopes = (details.missingOIDCScope || []).filter((s) => s !== 'openid');
  const rs = Object.entries(details.missingResourceScopes || {});
  return page('统一身份认证 · 授权', `<h1>授权</h1>
<p>应用 <code>${esc(params.client_id)}</code> 请求以 <strong>${esc(accountId)}</strong> 的身份访问：</p>
<ul>${scopes.map((s) => `<li>${esc(s)}</li>`).join('')}${rs.map(([r, s]) => `<li>${esc(r)}：${esc(s.join(' '))}</li>`).join('')}</ul>
<form method="post" action="/interaction/${esc(uid)}"><input type="hidden" name="prompt" value="consent">
<button type="submit" data-testid="oidc-consent">同意</button></form>
<p><a href="/interaction/${esc(uid)}/abort">拒绝</a></p>`);
}

async function readForm(req) {
  const chunks = [];
  let size = 0;
  for await (const c of req) {
    size += c.length;
    if (size > 64 * 1024) throw new Error('form too large');
    chunks.push(c);
  }
  return Object.fromEntries(new URLSearchParams(Buffer.concat(chunks).toString('utf8')));
}

/** The sign-in and consent pages, built on the library's interactionDetails / interactionResult. */
function interactions(provider) {
  return async function interaction(ctx, next) {
    const m = /^\/interaction\/([A-Za-z0-9_-]+)(\/abort)?$/.exec(ctx.path);
    if (!m) return next();
    ctx.set('Cache-Control', 'no-store');
    const [, uid, abort] = m;
    let details;
    try {
      details = await provider.interactionDetails(ctx.req, ctx.res);
    } catch (e) {
      ctx.status = 400;
      ctx.type = 'html';
      ctx.body = page('登录已失效', `<h1>登录请求已失效</h1><p>${esc(e.message)}</p><p>请回到应用重新登录。</p>`);
      return undefined;
    }
    if (details.uid !== uid) ctx.throw(400, 'interaction mismatch');
    const { prompt, params, session } = details;
    const finish = async (result, merge) => {
      const to = await provider.interactionResult(ctx.req, ctx.res, result, { mergeWithLastSubmission: merge });
      ctx.status = 303;
      ctx.redirect(to);
    };
    if (abort) return finish({ error: 'access_denied', error_description: 'End-User aborted interaction' }, false);
    if (ctx.method === 'GET') {
      log(`interaction ${prompt.name} (${(prompt.reasons || []).join(', ')})`);
      ctx.type = 'html';
      if (prompt.name === 'login') ctx.body = loginPage(uid, params);
      else if (prompt.name === 'consent') ctx.body = consentPage(uid, params, prompt.details, session?.accountId);
      else ctx.throw(501, `prompt ${prompt.name} not implemented`);
      return undefined;
    }
    if (ctx.method !== 'POST') ctx.throw(405);
    const form = await readForm(ctx.req);
    if (prompt.name === 'login' && form.prompt === 'login') {
      const login = String(form.login || '').trim();
      if (!Object.hasOwn(ACCOUNTS, login) || !form.password) {
        ctx.status = 200;
        ctx.type = 'html';
        ctx.body = loginPage(uid, params, !form.password ? '请输入密码。' : `没有账号“${login}”。`, login);
        return undefined;
      }
      log(`login ${login}`);
      return finish({ login: { accountId: login } }, false);
    }
    if (prompt.name === 'consent' && form.prompt === 'consent') {
      const d = prompt.details;
      const grant = details.grantId
        ? await provider.Grant.find(details.grantId)
        : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
      if (d.missingOIDCScope) grant.addOIDCScope(d.missingOIDCScope.join(' '));
      if (d.missingOIDCClaims) grant.addOIDCClaims(d.missingOIDCClaims);
      for (const [indicator, s] of Object.entries(d.missingResourceScopes || {})) grant.addResourceScope(indicator, s.join(' '));
      return finish({ consent: { grantId: await grant.save() } }, true);
    }
    ctx.throw(400, `unexpected submission for prompt ${prompt.name}`);
    return undefined;
  };
}

// ------------------------------------------------------------------ the provider
const cookieKeys = [randomBytes(32).toString('base64url')];
const allowedOrigins = new Set([...REDIRECT_URIS, ...POST_LOGOUT_URIS].map((u) => URL.parse(u)?.origin).filter(Boolean));
const SCOPES = ['openid', 'profile', 'qingling'];
const adapter = createMemoryAdapter(0);

function makeProvider(issuer, jwks) {
  const alg = signingAlg(jwks);
  const provider = new Provider(issuer, {
    adapter,
    jwks,
    clients: [{
      client_id: CLIENT_ID,
      client_name: '接诉即办 工作台',
      application_type: 'web',
      token_endpoint_auth_method: 'none',
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      redirect_uris: REDIRECT_URIS.length ? REDIRECT_URIS : ['http://127.0.0.1:8082/console/'],
      post_logout_redirect_uris: POST_LOGOUT_URIS,
      id_token_signed_response_alg: alg,
    }],
    findAccount,
    claims: {
      openid: ['sub'],
      profile: ['name'],
      qingling: ['qingling_role', 'qingling_org'],
    },
    scopes: ['openid', 'offline_access'],
    // The id_token carries the granted claims (name), not only sub.
    conformIdTokenClaims: false,
    pkce: { required: () => true },
    features: {
      devInteractions: { enabled: false }, // its pages load Google Fonts; ours below load nothing
      rpInitiatedLogout: {
        enabled: true,
        logoutSource(ctx, form) {
          ctx.type = 'html';
          ctx.body = page('统一身份认证 · 退出', `<h1>退出登录</h1><p>是否同时退出统一身份认证？</p>${form}
<p style="display:grid;gap:.6rem"><button type="submit" form="op.logoutForm" name="logout" value="yes" data-testid="oidc-logout">退出</button>
<button type="submit" form="op.logoutForm" class="secondary">只退出该应用</button></p>`);
        },
        postLogoutSuccessSource(ctx) {
          ctx.type = 'html';
          ctx.body = page('已退出', '<h1>已退出</h1><p>您已退出统一身份认证。</p>');
        },
      },
      resourceIndicators: {
        enabled: true,
        defaultResource: (_ctx, _client, oneOf) => oneOf || RESOURCE,
        useGrantedResource: () => true,
        getResourceServerInfo(_ctx, indicator) {
          const audience = RESOURCE_SERVERS.get(indicator);
          if (!audience) throw new errors.InvalidTarget(`unknown resource ${indicator}`);
          return {
            scope: 'qingling',
            audience,
            accessTokenTTL: TTL,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg } },
          };
        },
      },
    },
    // The resource server reads who and what from the access token itself.
    async extraTokenClaims(_ctx, token) {
      if (!token.accountId || !Object.hasOwn(ACCOUNTS, token.accountId)) return undefined;
      const { name, qingling_role, qingling_org } = ACCOUNTS[token.accountId];
      return structuredClone({ name, qingling_role, qingling_org });
    },
    // The first-party console is authorized without a consent click; once granted, a grant is reused.
    async loadExistingGrant(ctx) {
      const { client, session, account } = ctx.oidc;
      const grantId = ctx.oidc.result?.consent?.grantId || session.grantIdFor(client.clientId);
      let grant = grantId ? await ctx.oidc.provider.Grant.find(grantId) : undefined;
      if (!FIRST_PARTY.has(client.clientId)) return grant;
      if (grant && grant.accountId !== account.accountId) grant = undefined;
      if (!grant) grant = new ctx.oidc.provider.Grant({ clientId: client.clientId, accountId: account.accountId });
      const asked = String(ctx.oidc.params.scope || '').split(' ').filter((s) => SCOPES.includes(s));
      if (asked.length) grant.addOIDCScope(asked.join(' '));
      for (const [indicator, rs] of Object.entries(ctx.oidc.resourceServers || {})) {
        if (rs.scope) grant.addResourceScope(indicator, rs.scope);
      }
      await grant.save();
      return grant;
    },
    clientBasedCORS(_ctx, origin, client) {
      return FIRST_PARTY.has(client.clientId) && allowedOrigins.has(origin);
    },
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    cookies: {
      keys: cookieKeys,
      names: { session: 'op_session', interaction: 'op_interaction', resume: 'op_interaction_resume' },
    },
    ttl: {
      AccessToken: TTL,
      AuthorizationCode: 60,
      IdToken: 3600,
      Interaction: 3600,
      Grant: 14 * 24 * 3600,
      Session: 14 * 24 * 3600,
      RefreshToken: 24 * 3600,
    },
    renderError(ctx, out) {
      ctx.type = 'html';
      ctx.body = page('统一身份认证 · 出错', `<h1>出错了</h1>${Object.entries(out).map(([k, v]) => `<p><strong>${esc(k)}</strong>：${esc(v)}</p>`).join('')}`);
    },
  });
  provider.use(interactions(provider));
  provider.on('server_error', (_ctx, err) => log('server_error', err));
  provider.on('grant.error', (_ctx, err) => log('grant.error', err.message, err.error_description || ''));
  provider.on('authorization.error', (_ctx, err) => log('authorization.error', err.message, err.error_description || ''));
  log(`issuer ${issuer}; keys ${jwks.keys.map((k) => `${k.kid}(${k.alg})`).join(', ')}; signing ${alg}; audience ${AUDIENCE} (resource ${RESOURCE}); access tokens ${TTL}s`);
  return provider;
}

// ------------------------------------------------------------------ serve
let handler = (_req, res) => { res.statusCode = 503; res.end(); };
const server = createServer((req, res) => handler(req, res));
await new Promise((resolve, reject) => { server.once('error', reject); server.listen(PORT, '127.0.0.1', resolve); });
const issuer = `http://127.0.0.1:${server.address().port}`;
const install = () => {
  const provider = makeProvider(issuer, loadKeys());
  handler = provider.callback();
};
install();
process.stdout.write(`oidc-provider listening on ${issuer}\n`);

process.on('SIGHUP', () => {
  try {
    install();
    log('keys reloaded');
  } catch (e) {
    log(`keys not reloaded: ${e.message}`);
  }
});
let stopping = false;
const stop = (sig) => {
  if (stopping) return;
  stopping = true;
  log(`${sig}: stopping`);
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 2000).unref();
};
process.on('SIGTERM', () => stop('SIGTERM'));
process.on('SIGINT', () => stop('SIGINT'));
