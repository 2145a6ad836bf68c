'use strict';
// 接诉即办 工作台: one page for the four roles (operator, street, reviewer, district).
// Vanilla JS, no build step. Every server-provided text goes in with textContent, never innerHTML.
// The token lives in memory and sessionStorage only, and is sent only in the Authorization header.
// People sign in with the district's identity provider (OpenID Connect, authorization code + PKCE,
// when /console/config.json names one); a pasted token still works for machines and development.
(() => {
// ---------------------------------------------------------------- small helpers
const $ = (s, root = document) => root.querySelector(s);
const $$ = (s, root = document) => Array.from(root.querySelectorAll(s));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Builds an element: attrs are attributes (`text` sets textContent, `on<event>` adds a listener). */
function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k === 'text') e.textContent = String(v);
    else if (k === 'class') e.className = v;
    else if (k.startsWith('on') && typeof v === 'function') e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const kid of kids) if (kid != null && kid !== false) e.append(kid);
  return e;
}
const val = (sel) => ($(sel).value || '').trim();

// ---------------------------------------------------------------- words
const ROLE_NAMES = { operator: '接线员', street: '街道', reviewer: '区审核', district: '区级督办' };
const ITEM_STATUS = { registered: '待签收', acknowledged: '办理中（已签收）', closure_pending: '销账审核中', written_off: '已销账' };
const COMPLAINT_STATUS = { received: '已受理', dispatched: '已派单', registered: '已上账', acknowledged: '已签收',
  written_off: '已销账', followed_up: '已回访', returned: '已退单' };
const OUTCOME = { rectified: '整治完毕', unfounded: '核查不属实', returned: '退单' };
const SATISFACTION = { satisfied: '满意', basically_satisfied: '基本满意', dissatisfied: '不满意', unknown: '不了解' };
const CLOSURE_STATUS = { pending: '待审核', approved: '已通过（已销账）', rejected: '已驳回' };
const EXT_STATUS = { pending: '延期申请待审核', approved: '延期已批准', rejected: '延期申请被驳回', withdrawn: '延期申请已撤回' };
const URGENCY = { normal: '一般', urgent: '紧急' };
const SOURCE = { complaint: '12345来电', inspection: '主动发现', import: '导入' };
const OVERDUE = { respond: '响应超期', resolve: '办结超期' };
const ROUTED_BY = { operator: '接线员指定', point: '按点位历史', community: '按小区目录' };
const CHECKS = [
  ['no_illegal_residents', '无违规住人', '#check-no-illegal-residents'],
  ['no_garbage_or_unsafe_partitions', '无垃圾和不满足消防要求的隔断', '#check-no-garbage-or-unsafe-partitions'],
  ['no_illegal_use', '无违规使用', '#check-no-illegal-use'],
  ['layout_restored', '恢复原平面布局', '#check-layout-restored'],
];
const EVENT_NAMES = {
  item_registered: '上账', complaint_linked: '重复来电并入', complaint_unlinked: '诉求退出本台账',
  complaint_return_refused: '退单未生效（已签收）', item_acknowledged: '签收', item_closure_pending: '提交销账申请',
  item_closure_rejected: '销账申请被驳回', item_written_off: '销账', item_overdue: '超期',
  extension_requested: '申请延期', extension_approved: '延期获批', extension_rejected: '延期被驳回',
  extension_withdrawn: '延期申请撤回',
  complaint_received: '接诉', complaint_dispatched: '派单', complaint_returned: '退单', follow_up_recorded: '回访',
  caller_revealed: '查看来电号码', closure_requested: '提交销账申请', closure_approved: '销账审核通过',
  closure_rejected: '销账审核驳回', evidence_uploaded: '上传照片',
};
const FIELD_NAMES = {
  district: '区', street: '街道/乡镇', category: '类别', urgency: '紧急程度', point: '点位',
  'point.community': '小区', 'point.building': '楼号', 'point.basement': '地下室/层', 'point.address': '地址',
  'point.location': '位置', 'caller.phone': '来电电话', 'caller.name': '来电人', description: '诉求内容',
  outcome: '处理结果', 'checklist.no_illegal_residents': '无违规住人',
  'checklist.no_garbage_or_unsafe_partitions': '无垃圾和不满足消防要求的隔断', 'checklist.no_illegal_use': '无违规使用',
  'checklist.layout_restored': '恢复原平面布局', rooms_cleared: '清理房间数', partition_area_m2: '拆除隔断面积',
  evidence: '现场照片', note: '说明', reason: '理由', until: '延期至', satisfaction: '满意度', item_id: '台账',
  file: '照片', 'Idempotency-Key': '防重复提交标识',
};
const label = (map, k) => (k == null ? '—' : map[k] || String(k));

// ---------------------------------------------------------------- time (Asia/Shanghai)
const TZ = 'Asia/Shanghai';
const MIN = 60e3, HOUR = 60 * MIN, DAY = 24 * HOUR;
const dtf = new Intl.DateTimeFormat('zh-CN', { timeZone: TZ, year: 'numeric', month: '2-digit', day: '2-digit',
  hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23' });
const toMs = (ts) => (ts == null || ts === '' ? NaN : typeof ts === 'number' ? ts : Date.parse(ts));
function partsOf(ms) { const p = {}; for (const x of dtf.formatToParts(ms)) p[x.type] = x.value; return p; }
function fmt(ts, style) {
  const ms = toMs(ts);
  if (!Number.isFinite(ms)) return '—';
  const p = partsOf(ms);
  if (style === 'full') return `${p.year}-${p.month}-${p.day} ${p.hour}:${p.minute}:${p.second}`;
  if (style === 'local') return `${p.year}-${p.month}-${p.day}T${p.hour}:${p.minute}`; // for datetime-local
  return `${p.year}-${p.month}-${p.day} ${p.hour}:${p.minute}`;
}
function timeEl(ts) {
  const t = el('time', { text: fmt(ts) });
  const ms = toMs(ts);
  if (Number.isFinite(ms)) { t.dateTime = new Date(ms).toISOString(); t.title = fmt(ts, 'full') + '（北京时间）'; }
  return t;
}
/** A datetime-local value ("2026-11-30T18:00"), read as Beijing time, as an RFC 3339 UTC string. */
function beijingLocalToIso(v) {
  const m = /^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2})(:\d{2}(\.\d+)?)?$/.exec(v || '');
  if (!m) return null;
  const ms = Date.parse(`${m[1]}T${m[2]}${m[3] || ':00'}+08:00`);
  return Number.isFinite(ms) ? new Date(ms).toISOString() : null;
}
/** "剩余 3小时12分" / "已超时 2小时". */
function countdownText(deadlineMs, now) {
  const left = deadlineMs - now, a = Math.abs(left);
  const d = Math.floor(a / DAY), h = Math.floor((a % DAY) / HOUR), m = Math.floor((a % HOUR) / MIN), s = Math.floor((a % MIN) / 1000);
  let t;
  if (d) t = `${d}天${h ? h + '小时' : ''}`;
  else if (h) t = `${h}小时${m ? m + '分' : ''}`;
  else if (m) t = `${m}分${s}秒`;
  else t = `${s}秒`;
  return left >= 0 ? `剩余 ${t}` : `已超时 ${t}`;
}
function countdownEl(deadline, overdueFlag) {
  const e = el('span', { class: 'countdown', 'data-testid': 'deadline-countdown', 'data-deadline': deadline || '' });
  if (overdueFlag) e.dataset.flagged = 'true';
  paintCountdown(e, Date.now());
  return e;
}
function paintCountdown(e, now) {
  const ms = toMs(e.dataset.deadline);
  if (!Number.isFinite(ms)) { e.textContent = '无时限'; return; }
  e.textContent = countdownText(ms, now);
  const late = ms <= now || e.dataset.flagged === 'true';
  e.classList.toggle('late', late);
  e.classList.toggle('soon', !late && ms - now < 2 * HOUR);
  e.dataset.overdue = late ? 'true' : 'false';
  const row = e.closest('a.row');
  if (row) row.classList.toggle('late', late);
}
setInterval(() => { const now = Date.now(); for (const e of $$('[data-deadline]')) paintCountdown(e, now); }, 1000);

// ---------------------------------------------------------------- messages
function showError(err) {
  if (err && err.reauth) return;
  const box = $('#error-message');
  const detail = (err && (err.detail || err.message)) || String(err);
  const close = el('button', { type: 'button', class: 'close', 'aria-label': '关闭提示', title: '关闭提示' });
  close.addEventListener('click', () => { box.hidden = true; });
  box.replaceChildren(el('strong', { text: '操作未成功：' }), detail, close);
  const fields = (err && err.problem && Array.isArray(err.problem.errors)) ? err.problem.errors : [];
  if (fields.length) {
    box.append(el('ul', null, ...fields.map((f) => el('li', { text: `${FIELD_NAMES[f.field] || f.field}：${f.message}` }))));
  }
  markInvalid(fields.map((f) => f.field));
  box.hidden = false;
  $('#notice').hidden = true;
}
function clearError() {
  const box = $('#error-message');
  box.hidden = true;
  box.replaceChildren();
  markInvalid([]);
}
let noticeAt = 0;
function notify(text) {
  clearError();
  noticeAt = Date.now();
  const n = $('#notice');
  n.textContent = text;
  n.hidden = !text;
}
/** Marks the inputs the server named (data-field) as invalid, clears the rest. */
function markInvalid(fields) {
  for (const e of $$('[data-field]')) {
    const bad = fields.some((f) => f === e.dataset.field || f.startsWith(e.dataset.field + '['));
    if (bad) e.setAttribute('aria-invalid', 'true'); else e.removeAttribute('aria-invalid');
  }
}

// ---------------------------------------------------------------- the API
class ApiError extends Error {
  constructor(detail, status, problem, network, reauth) {
    super(detail);
    this.detail = detail;
    this.status = status;
    this.problem = problem;
    this.network = !!network;
    this.reauth = !!reauth; // the page is signing in again: nothing to show, the draft is kept
  }
  /** Worth sending again unchanged (same Idempotency-Key): the request may not have arrived. */
  get retryable() { return this.network || this.status >= 500 || this.status === 408 || this.status === 429; }
}
const svc = { ledger: '', intake: null, closure: null };

/**
 * Calls a service: adds the bearer token, sends `body` as JSON (or a FormData as multipart), and
 * turns a refusal (problem+json) into an ApiError carrying its `detail`.
 * opts: method, body, headers, post (POST without a body), raw (return the Response).
 */
async function api(base, path, opts = {}) {
  const tok = session.token;
  if (!tok) throw new ApiError('尚未登录', 401);
  if (session.via === 'oidc' && tokenExpiring()) {
    if (renewSignIn()) throw new ApiError('登录已过期，正在重新登录…', 401, null, false, true);
    signOut('登录已过期，请重新登录。');
    throw new ApiError('登录已过期', 401);
  }
  if (base == null) throw new ApiError('工作台配置未加载，无法连接服务', 0, null, true);
  const headers = { Authorization: 'Bearer ' + tok, Accept: opts.accept || 'application/json', ...(opts.headers || {}) };
  let body = opts.body;
  if (body !== undefined && !(body instanceof FormData)) {
    headers['Content-Type'] = 'application/json';
    body = JSON.stringify(body);
  }
  const method = opts.method || (body !== undefined || opts.post ? 'POST' : 'GET');
  let r;
  try {
    r = await fetch(base + path, { method, headers, body, cache: 'no-store', credentials: 'omit', referrerPolicy: 'no-referrer' });
  } catch (e) {
    throw new ApiError('网络连接失败，请检查网络后重试', 0, null, true);
  }
  if (!r.ok) {
    let problem = null;
    try { problem = await r.json(); } catch (e) { /* not JSON */ }
    const detail = (problem && (problem.detail || problem.title)) || `服务返回 ${r.status}`;
    if (r.status === 401 && tok === session.token) {
      if (session.via === 'oidc' && renewSignIn(detail)) throw new ApiError(detail, r.status, problem, false, true);
      signOut(`令牌无效或已过期，请重新登录（${detail}）`);
    }
    if (r.status === 401 && reauthing) throw new ApiError(detail, r.status, problem, false, true);
    throw new ApiError(detail, r.status, problem);
  }
  if (opts.raw) return r;
  const text = await r.text();
  return text ? JSON.parse(text) : null;
}
const ledger = (path, opts) => api(svc.ledger, path, opts);
const intake = (path, opts) => api(svc.intake, path, opts);
const closure = (path, opts) => api(svc.closure, path, opts);

/** Fetches a kept photo with the token and gives back an object URL (the caller revokes it). */
async function photoUrl(uri) {
  const r = await closure(uri, { raw: true, accept: 'image/*' });
  return URL.createObjectURL(await r.blob());
}

function newKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40; b[8] = (b[8] & 0x3f) | 0x80;
  const h = Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

// ---------------------------------------------------------------- session (token)
const KEY = 'qingling.console.token';
const OIDC_KEY = 'qingling.console.oidc'; // {id_token, skew, at}: this session came from the identity provider
const PENDING_KEY = 'qingling.console.oidc.pending'; // {state, nonce, verifier, hash, at} while at the provider
const DRAFT_KEY = 'qingling.console.draft'; // what was being typed when the session ran out
// via: 'token' (pasted or #token=) or 'oidc'; skew: the provider's clock minus ours (ms); at: when signed in.
const session = { token: null, claims: null, via: null, idToken: null, skew: 0, at: 0 };
const dir = { loaded: false, districts: [], streetName: new Map(), districtName: new Map(), categories: null };

function sget(k) { try { return sessionStorage.getItem(k); } catch (e) { return null; } }
function sset(k, v) { try { sessionStorage.setItem(k, v); } catch (e) { /* storage disabled: memory only */ } }
function sdel(k) { try { sessionStorage.removeItem(k); } catch (e) { /* storage disabled */ } }
function sjson(k) {
  try { const v = JSON.parse(sget(k) || 'null'); return v && typeof v === 'object' ? v : null; } catch (e) { return null; }
}
function store(op, v) {
  if (op === 'get') return sget(KEY);
  if (op === 'set') sset(KEY, v); else sdel(KEY);
  return null;
}
/** The token's claims, read only to shape the page (the services check the token). */
function decodeClaims(t) {
  const parts = String(t).split('.');
  if (parts.length !== 3) return null;
  try {
    let b = parts[1].replace(/-/g, '+').replace(/_/g, '/');
    b += '='.repeat((4 - (b.length % 4)) % 4);
    const bytes = Uint8Array.from(atob(b), (c) => c.charCodeAt(0));
    const c = JSON.parse(new TextDecoder().decode(bytes));
    return c && typeof c === 'object' ? c : null;
  } catch (e) { return null; }
}
/**
 * role, org and name, read from the claims the identity provider uses (config.json's role_claim /
 * org_claim, default qingling_role / qingling_org), else from role / org (Qingling's own tokens);
 * `more` (the id_token's claims) fills what the access token lacks.
 */
function normalizeClaims(c, more) {
  const o = oidc.conf || {};
  const pick = (...names) => {
    for (const src of [c, more]) if (src) for (const n of names) if (n && src[n] != null) return src[n];
    return undefined;
  };
  return { ...c, role: pick(o.role_claim || 'qingling_role', 'role'), org: pick(o.org_claim || 'qingling_org', 'org'),
    name: pick('name'), sub: pick('sub') };
}
/** The provider's "now": exp is compared with its clock, so a skewed phone clock neither loops nor lingers. */
const serverNow = () => Date.now() + (session.skew || 0);
function tokenExpiring() {
  const c = session.claims;
  if (!c || typeof c.exp !== 'number') return false;
  const life = typeof c.iat === 'number' ? (c.exp - c.iat) * 1000 : 60000;
  return c.exp * 1000 - Math.min(5000, life / 4) <= serverNow();
}
/** Takes a token: pasted (o absent) or from the identity provider (o = {id_token, skew, at}). */
function useToken(t, fromForm, o) {
  t = String(t || '').trim().replace(/^Bearer\s+/i, '');
  const raw = decodeClaims(t);
  const idc = o && o.id_token ? decodeClaims(o.id_token) : null;
  const c = raw || idc ? normalizeClaims(raw || {}, idc) : null;
  if (!c || !ROLE_NAMES[c.role] || (o && (typeof c.org !== 'string' || !c.org))) {
    if (o && fromForm) {
      const conf = oidc.conf || {};
      showError({ detail: `您的统一身份认证账号（${(c && (c.name || c.sub)) || '未知'}）没有开通工作台角色或所属单位` +
        `（${conf.role_claim || 'qingling_role'} / ${conf.org_claim || 'qingling_org'}），请联系管理员开通，或换一个账号登录。` });
    } else if (fromForm) {
      showError({ detail: '这不是有效的访问令牌（无法读出角色），请检查后重新粘贴。' });
    }
    return false;
  }
  const skew = o ? Number(o.skew) || 0 : 0;
  if (typeof c.exp === 'number' && c.exp * 1000 < Date.now() + skew) {
    if (fromForm) showError({ detail: `令牌已于 ${fmt(c.exp * 1000)} 过期，请换用新的令牌。` });
    return false;
  }
  session.token = t;
  session.claims = c;
  session.via = o ? 'oidc' : 'token';
  session.idToken = (o && o.id_token) || null;
  session.skew = skew;
  session.at = (o && Number(o.at)) || Date.now();
  store('set', t);
  if (o) sset(OIDC_KEY, JSON.stringify({ id_token: session.idToken, skew, at: session.at })); else sdel(OIDC_KEY);
  return true;
}
function takeTokenFromHash() {
  if (!/(^#|&)token=/.test(location.hash)) return false;
  const t = new URLSearchParams(location.hash.slice(1)).get('token') || '';
  history.replaceState(null, '', location.pathname + location.search + '#/');
  return useToken(t, true);
}
function signOut(message) {
  cur = null;
  reviewing = null;
  session.token = null;
  session.claims = null;
  session.via = null;
  session.idToken = null;
  store('del');
  sdel(OIDC_KEY);
  resetAll();
  if (location.hash && location.hash !== '#/') history.replaceState(null, '', location.pathname + location.search);
  route();
  if (message) showError({ detail: message }); else clearError();
}

// ---------------------------------------------------------------- sign-in with the identity provider
// OpenID Connect, authorization code with PKCE (S256), as a public client: the browser goes to the
// provider and comes back to /console/?code=…&state=…; the code is exchanged at the token endpoint
// from this page (CORS), and code and state leave the address bar at once. The access token is the
// bearer for every API call; it is kept like a pasted token (memory and sessionStorage only).
// When it runs out, what is being typed is kept in sessionStorage and the page signs in again: the
// provider's own session brings the user straight back, and the draft is put back.
const oidc = { conf: null, meta: null, forceLogin: false };
let reauthing = false;
let restoring = null; // a draft to put back once the view it belongs to has loaded
const b64url = (bytes) => btoa(String.fromCharCode(...new Uint8Array(bytes))).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
const randomString = (n) => b64url(crypto.getRandomValues(new Uint8Array(n)));
const redirectUri = () => location.origin + '/console/';
const routeHash = (h) => (typeof h === 'string' && h.startsWith('#/') ? h : '#/');
function isAbsoluteUri(s) {
  try { return typeof s === 'string' && /^[a-z][a-z0-9+.-]*:/i.test(s) && !!new URL(s); } catch (e) { return false; }
}
const trimSlash = (u) => String(u || '').replace(/\/+$/, '');

async function discover() {
  if (oidc.meta) return oidc.meta;
  let r;
  try {
    r = await fetch(trimSlash(oidc.conf.issuer) + '/.well-known/openid-configuration',
      { cache: 'no-store', credentials: 'omit', referrerPolicy: 'no-referrer' });
  } catch (e) { throw new Error('无法连接统一身份认证服务'); }
  if (!r.ok) throw new Error(`统一身份认证服务返回 ${r.status}`);
  const m = await r.json().catch(() => null);
  if (!m || trimSlash(m.issuer) !== trimSlash(oidc.conf.issuer)) throw new Error('统一身份认证服务的发现文档与配置的 issuer 不符');
  if (typeof m.authorization_endpoint !== 'string' || typeof m.token_endpoint !== 'string') throw new Error('统一身份认证服务的发现文档不完整');
  oidc.meta = m;
  return m;
}
/** Sends the browser to the provider's sign-in (opts.login: ask for the password even with a session). */
async function beginSignIn(opts = {}) {
  if (!oidc.conf) throw new Error('工作台未配置统一身份认证');
  if (!crypto.subtle) throw new Error('统一身份认证登录需要通过 HTTPS 打开工作台');
  const m = await discover();
  const verifier = randomString(32);
  const challenge = b64url(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier)));
  const state = randomString(16);
  const nonce = randomString(16);
  sset(PENDING_KEY, JSON.stringify({ state, nonce, verifier, hash: routeHash(opts.hash || location.hash), at: Date.now() }));
  const u = new URL(m.authorization_endpoint);
  const p = { response_type: 'code', client_id: oidc.conf.client_id, redirect_uri: redirectUri(), scope: oidc.conf.scope,
    state, nonce, code_challenge: challenge, code_challenge_method: 'S256' };
  if (oidc.conf.resource) p.resource = oidc.conf.resource;
  if (opts.login) p.prompt = 'login';
  for (const [k, v] of Object.entries(p)) u.searchParams.set(k, v);
  location.assign(u.href);
}
/** Back from the provider (?code=…&state=… or ?error=…): exchanges the code. True when it was such a return. */
async function completeSignIn() {
  const q = new URLSearchParams(location.search);
  if (!q.has('state') || !(q.has('code') || q.has('error'))) return false;
  const pending = sjson(PENDING_KEY);
  sdel(PENDING_KEY);
  // The code and state leave the address bar (and the history) before anything else happens.
  history.replaceState(null, '', location.pathname + routeHash(pending && pending.hash));
  try {
    if (!oidc.conf) throw new Error('工作台未配置统一身份认证');
    if (!pending || pending.state !== q.get('state')) throw new Error('登录请求已失效（state 不符），请重新登录');
    if (q.get('error')) {
      throw new Error(q.get('error') === 'access_denied' ? '已取消登录'
        : `${q.get('error')}${q.get('error_description') ? '：' + q.get('error_description') : ''}`);
    }
    const m = await discover();
    if (q.get('iss') && q.get('iss') !== m.issuer) throw new Error('登录响应来自另一个身份认证服务');
    const body = new URLSearchParams({ grant_type: 'authorization_code', code: q.get('code'), redirect_uri: redirectUri(),
      client_id: oidc.conf.client_id, code_verifier: pending.verifier });
    if (oidc.conf.resource) body.set('resource', oidc.conf.resource);
    let r;
    try {
      r = await fetch(m.token_endpoint, { method: 'POST', body, headers: { Accept: 'application/json' },
        credentials: 'omit', cache: 'no-store', referrerPolicy: 'no-referrer' });
    } catch (e) { throw new Error('无法连接统一身份认证服务'); }
    const j = await r.json().catch(() => null);
    if (!r.ok || !j || typeof j.access_token !== 'string') {
      throw new Error(j && j.error ? `${j.error}${j.error_description ? '：' + j.error_description : ''}` : `令牌端点返回 ${r.status}`);
    }
    // The id_token came straight from the token endpoint; it must be for this client and this request.
    const idc = j.id_token ? decodeClaims(j.id_token) : null;
    const aud = idc ? (Array.isArray(idc.aud) ? idc.aud : [idc.aud]) : [];
    if (!idc || trimSlash(idc.iss) !== trimSlash(m.issuer) || !aud.includes(oidc.conf.client_id) || idc.nonce !== pending.nonce) {
      throw new Error('身份令牌（id_token）与本次登录不符');
    }
    const atc = decodeClaims(j.access_token);
    const now = Date.now();
    const iat = atc && typeof atc.iat === 'number' ? atc.iat : idc.iat;
    const skew = typeof iat === 'number' ? iat * 1000 - now : 0;
    if (!useToken(j.access_token, true, { id_token: j.id_token, skew, at: now })) {
      oidc.forceLogin = true; // the provider's session is someone without a role: ask for another account
      store('del');
      sdel(OIDC_KEY);
      return true;
    }
    oidc.forceLogin = false;
    clearError();
    const draft = sjson(DRAFT_KEY);
    if (draft && draft.sub === session.claims.sub && draft.hash === location.hash && now - Number(draft.at) < 3600e3) restoring = draft;
    else sdel(DRAFT_KEY);
  } catch (e) {
    store('del');
    sdel(OIDC_KEY);
    showError({ detail: `统一身份认证登录未成功：${e.message}` });
  }
  return true;
}
/**
 * The session has run out (or a service answered 401): keeps what is being typed and signs in again
 * at the provider. False when that cannot help (no provider configured, or a token just issued was
 * refused: signing in again would loop).
 */
function renewSignIn(refusal) {
  if (reauthing) return true;
  if (!oidc.conf) return false;
  if (refusal !== undefined && Date.now() - session.at < 15000) return false;
  reauthing = true;
  saveDraft();
  notify('登录已过期，正在通过统一身份认证重新登录…');
  beginSignIn({}).catch((e) => {
    reauthing = false;
    showError({ detail: `登录已过期，且无法转到统一身份认证（${e.message}）。您填写的内容仍在本页，请稍后重试。` });
  });
  return true;
}
function currentView() {
  for (const v of VIEWS) { const e = $(v); if (!e.hidden) return e; }
  return null;
}
/** Every field of the view being worked in, the write-off form's photos, and where it is. */
function saveDraft() {
  const view = currentView();
  if (!view || !session.claims || view.id === 'v-signin') return;
  const fields = [];
  for (const e of $$('input, select, textarea', view)) {
    if (!e.id || e.type === 'file' || e.type === 'password' || e.type === 'hidden') continue;
    fields.push(e.type === 'checkbox' || e.type === 'radio' ? { id: e.id, checked: e.checked } : { id: e.id, value: e.value });
  }
  const d = { v: 1, at: Date.now(), sub: session.claims.sub, hash: routeHash(location.hash), fields };
  if (cur && view.id === 'v-item') {
    d.closure = { item_id: cur.id, open: !$('#closure-form').hidden, photos: cur.photos.map((p) => p.record) };
  }
  sset(DRAFT_KEY, JSON.stringify(d));
}
/** Puts a saved draft back, once its view has loaded (the write-off form re-opened with its photos). */
function applyDraft(g) {
  const d = restoring;
  restoring = null;
  sdel(DRAFT_KEY);
  if (!d || g !== gen) return;
  const view = currentView();
  const c = d.closure && cur && cur.id === d.closure.item_id ? cur : null;
  const reopen = !!(c && d.closure.open);
  if (reopen && $('#closure-form').hidden && !$('#open-closure-wrap').hidden) {
    c.prefilled = true; // the draft, not the rejected request, fills the form
    openClosureForm();
  }
  for (const f of d.fields || []) {
    const e = f && typeof f.id === 'string' ? document.getElementById(f.id) : null;
    if (!e || !view || !view.contains(e) || e.type === 'file' || e.type === 'password') continue;
    if ('checked' in f) e.checked = !!f.checked; else e.value = String(f.value ?? '');
    e.dispatchEvent(new Event(e.tagName === 'SELECT' || 'checked' in f ? 'change' : 'input', { bubbles: true }));
  }
  if (c) for (const rec of d.closure.photos || []) restorePhoto(c, rec);
  const typed = (d.fields || []).some((f) => f.checked === true || (typeof f.value === 'string' && f.value.trim() &&
    !/^(SELECT)$/.test((document.getElementById(f.id) || {}).tagName || '')));
  notify(reopen && !$('#closure-form').hidden
    ? '登录已续期，已恢复您填写的内容（销账申请和已上传的照片），请核对后再提交。'
    : typed ? '登录已续期，已恢复您填写的内容。' : '登录已续期。');
}
async function endProviderSession(idToken) {
  let m;
  try { m = await discover(); } catch (e) { return; }
  if (!m.end_session_endpoint) return;
  const u = new URL(m.end_session_endpoint);
  if (idToken) u.searchParams.set('id_token_hint', idToken);
  u.searchParams.set('client_id', oidc.conf.client_id);
  u.searchParams.set('post_logout_redirect_uri', redirectUri());
  location.assign(u.href);
}
function orgName(code) {
  if (code === '*') return '全部区';
  return dir.streetName.get(code) || dir.districtName.get(code) || code;
}
function paintWho() {
  const c = session.claims;
  const who = $('#signed-in-as');
  who.hidden = !c;
  $('#sign-out').hidden = !c;
  if (c) {
    who.textContent = `${c.name || c.sub || '（无名）'} · ${ROLE_NAMES[c.role]} · ${orgName(c.org)}`;
    who.title = c.sub ? `账号 ${c.sub}` : '';
  }
}
async function loadDirectory() {
  if (dir.loaded) return;
  const j = await intake('/v1/orgs');
  dir.districts = (j && Array.isArray(j.districts)) ? j.districts : [];
  for (const d of dir.districts) {
    dir.districtName.set(d.code, d.name);
    for (const s of d.streets || []) dir.streetName.set(s.code, s.name);
  }
  dir.loaded = true;
}
const streetName = (code) => dir.streetName.get(code) || code || '—';
function homeDistrict() {
  const c = session.claims;
  if (!c) return null;
  if (c.role === 'street') {
    const d = dir.districts.find((x) => (x.streets || []).some((s) => s.code === c.org));
    return d ? d.code : null;
  }
  return c.org === '*' ? null : c.org;
}

// ---------------------------------------------------------------- routing and views
const VIEWS = ['#v-signin', '#v-operator', '#v-inbox', '#v-item', '#v-queue', '#v-review', '#v-district'];
let gen = 0; // bumps on every route: late answers for an old view are dropped
let timers = [];
let viewBlobs = [];
function every(ms, fn) { timers.push(setInterval(fn, ms)); }
function later(ms, fn) { timers.push(setTimeout(fn, ms)); }
function showView(id) { for (const v of VIEWS) $(v).hidden = v !== id; }
function leaveView() {
  gen++;
  for (const t of timers) { clearInterval(t); clearTimeout(t); }
  timers = [];
  for (const u of viewBlobs) URL.revokeObjectURL(u);
  viewBlobs = [];
}
// After an action whose effect reaches another service a second later, the next list view looks
// again shortly after it first loads.
let quickUntil = 0;
function soon() { quickUntil = Date.now() + 5000; }
function quickRefresh(fn) {
  if (Date.now() < quickUntil) { later(1200, fn); later(3000, fn); }
}
function go(hash) {
  if (location.hash === hash) route(); else location.hash = hash;
}

async function route() {
  leaveView();
  const g = gen;
  // A confirmation belongs to the action just done, not to the next page the user opens.
  if (Date.now() - noticeAt > 2000) $('#notice').hidden = true;
  paintWho();
  if (!session.token) {
    $('#oidc-box').hidden = !oidc.conf;
    $('#sign-in').classList.toggle('primary', !oidc.conf); // with a provider, the token form is the side door
    showView('#v-signin');
    return;
  }
  try { await loadDirectory(); } catch (e) { if (g === gen) showError(e); }
  if (g !== gen) return;
  paintWho();
  const m = /^#\/(item|closure)\/([0-9a-fA-F-]{36})$/.exec(location.hash);
  let shown;
  switch (session.claims.role) {
    case 'operator': shown = showOperator(g); break;
    case 'street': shown = m && m[1] === 'item' ? showItem(m[2], g) : showInbox(g); break;
    case 'reviewer': shown = m && m[1] === 'closure' ? showReview(m[2], g) : showQueue(g); break;
    case 'district': shown = showDistrict(g); break;
    default: shown = undefined;
  }
  if (restoring) {
    // Signed in again after the session ran out: what was typed goes back once the view has loaded.
    await shown;
    if (g === gen) applyDraft(g);
  }
  return shown;
}
/** Runs a list loader; a refusal is shown, a 401 has already signed out. */
async function load(g, fn) {
  try { await fn(); } catch (e) { if (g === gen && session.token) showError(e); }
}
/** Runs a user's action on a button: disables it, shows the outcome. */
async function act(button, fn) {
  if (button) button.disabled = true;
  try { await fn(); return true; } catch (e) { if (session.token) showError(e); return false; } finally { if (button) button.disabled = false; }
}

function resetAll() {
  $('#register-form').reset();
  $('#reg-result').hidden = true;
  $('#link-notice').hidden = true;
  $('#lookup-results').replaceChildren();
  for (const s of ['#returned-list', '#followup-list', '#inbox-list', '#queue-list', '#extension-list', '#calls-list',
    '#item-history', '#review-photos', '#review-item-history', '#summary-streets tbody']) $(s).replaceChildren();
  resetClosureForm();
  reg.pending = null;
  reg.filled = false;
  dir.loaded = false;
  $('#notice').hidden = true;
}
function pointLabel(p) {
  p = p || {};
  const b = p.building ? (/[楼栋座号幢]$/.test(p.building) ? p.building : p.building + '号楼') : '';
  const parts = [p.community, b, p.basement].filter(Boolean).join(' ');
  return parts || p.address || '（无点位）';
}
const badge = (cls, text) => el('span', { class: 'badge ' + cls, text });
const empty = (text) => el('li', { class: 'empty', text });
function facts(dl, pairs) {
  dl.replaceChildren();
  for (const [k, v] of pairs) if (v != null && v !== '') dl.append(el('dt', { text: k }), el('dd', null, v));
}
function historyList(ol, events) {
  ol.replaceChildren();
  for (const e of events || []) {
    const d = e.data || {};
    const bits = [];
    if (d.reason) bits.push(`理由：${d.reason}`);
    if (d.until) bits.push(`延至 ${fmt(d.until)}`);
    if (e.event_type === 'item_overdue' && d.kind) bits.push(label(OVERDUE, d.kind));
    if (e.event_type === 'item_written_off' && d.kind) bits.push(label(OUTCOME, d.kind));
    if (d.outcome) bits.push(label(OUTCOME, d.outcome));
    if (e.event_type === 'complaint_linked' && d.complaint_id) bits.push(`诉求 ${String(d.complaint_id).slice(-8)}`);
    if (d.street && /dispatched|unlinked/.test(e.event_type)) bits.push(streetName(d.street));
    if (d.satisfaction) bits.push(label(SATISFACTION, d.satisfaction));
    ol.append(el('li', null,
      el('span', { class: 'what', text: label(EVENT_NAMES, e.event_type) }),
      bits.length ? el('span', { text: bits.join('；') }) : null,
      // The person's name where the identity provider gave one (the account id on hover), else the id.
      el('small', null, timeEl(e.at), ' · ', e.actor_name
        ? el('span', { text: e.actor_name, title: e.actor ? `账号 ${e.actor}` : null, 'data-actor': e.actor || null })
        : (e.actor || '系统'))));
  }
  if (!ol.children.length) ol.append(el('li', { class: 'empty', text: '暂无记录' }));
}

// ================================================================ operator (接线员)
const reg = { pending: null, filled: false, previewTimer: null, previewSeq: 0, lastPreview: 0, previewKey: '' };

function operatorDistricts() {
  const org = session.claims.org;
  return org === '*' ? dir.districts : dir.districts.filter((d) => d.code === org);
}
function fillStreetOptions(select, district, placeholder) {
  const d = dir.districts.find((x) => x.code === district);
  const opts = [el('option', { value: '', text: placeholder })];
  for (const s of (d && d.streets) || []) opts.push(el('option', { value: s.code, text: s.name }));
  select.replaceChildren(...opts);
}
async function fillRegisterForm() {
  if (reg.filled || !dir.loaded) return;
  const ds = operatorDistricts();
  $('#reg-district').replaceChildren(...ds.map((d) => el('option', { value: d.code, text: d.name })));
  $('#reg-district-wrap').hidden = ds.length <= 1;
  fillStreetOptions($('#reg-street'), val('#reg-district'), '（不指定：按点位自动派单）');
  reg.filled = true;
  try {
    const cat = await intake('/v1/catalog');
    const cats = (cat && cat.categories) || [];
    if (cats.length) {
      $('#reg-category').replaceChildren(...cats.map((c) => el('option', { value: c.code, text: c.name })));
      $('#reg-category').value = cats.some((c) => c.code === 'basement_illegal_residence') ? 'basement_illegal_residence' : cats[0].code;
    }
  } catch (e) { /* keep the built-in category */ }
}
function registrationBody(forPreview) {
  const body = { district: val('#reg-district'), category: val('#reg-category'), urgency: val('#reg-urgency'),
    point: { community: val('#reg-community'), building: val('#reg-building'), basement: val('#reg-basement') } };
  const street = val('#reg-street');
  if (street) body.street = street;
  const address = val('#reg-address');
  if (address) body.point.address = address;
  if (forPreview) return body;
  const name = val('#reg-caller-name'), phone = val('#reg-caller-phone'), description = val('#reg-description');
  if (name || phone) body.caller = Object.assign({}, name ? { name } : null, phone ? { phone } : null);
  if (description) body.description = description;
  return body;
}
function schedulePreview() {
  clearTimeout(reg.previewTimer);
  reg.previewTimer = setTimeout(runPreview, 400);
}
/** Asks intake whether this call would join an open item at the point (nothing is recorded). */
async function runPreview() {
  const body = registrationBody(true);
  const notice = $('#link-notice');
  if (!body.point.community || !body.point.building || !body.point.basement) { notice.hidden = true; reg.previewKey = ''; return; }
  const seq = ++reg.previewSeq;
  reg.previewKey = JSON.stringify(body);
  reg.lastPreview = Date.now();
  let j = null;
  try { j = await intake('/v1/complaints/preview', { body }); } catch (e) { j = null; }
  if (seq !== reg.previewSeq) return;
  if (j && j.would_link_to) {
    notice.replaceChildren('该点位已有未销账台账，本次来电将并入该台账（台账号 ', el('code', { text: j.would_link_to }),
      '），不重复上账', j.street ? `，由${streetName(j.street)}继续办理。` : '。');
    notice.dataset.itemId = j.would_link_to;
    notice.hidden = false;
  } else {
    notice.hidden = true;
    delete notice.dataset.itemId;
  }
}
/** While a point is typed in, asks again now and then: the item may reach the ledger meanwhile. */
function recheckPreview() {
  if ($('#v-operator').hidden || !reg.previewKey || Date.now() - reg.lastPreview < 3500) return;
  if (JSON.stringify(registrationBody(true)) === reg.previewKey) runPreview();
}
async function submitRegistration(ev) {
  ev.preventDefault();
  const body = registrationBody(false);
  const text = JSON.stringify(body);
  // The same form sent again after a failure that may not have reached intake keeps its key:
  // intake then answers the first registration instead of making a second one.
  if (!reg.pending || reg.pending.body !== text) reg.pending = { key: newKey(), body: text };
  const linked = !$('#link-notice').hidden;
  const btn = $('#register-submit');
  btn.disabled = true;
  try {
    const r = await intake('/v1/complaints', { body, headers: { 'Idempotency-Key': reg.pending.key } });
    reg.pending = null;
    clearError();
    $('#registered-complaint-id').textContent = r.complaint_id;
    $('#reg-result-more').textContent = `。已派往${streetName(r.street)}` +
      (r.routed_by ? `（${label(ROUTED_BY, r.routed_by)}）` : '') +
      `，响应时限 ${fmt(r.respond_by)}，办结时限 ${fmt(r.resolve_by)}` + (linked ? '；并入该点位已有台账。' : '。');
    $('#reg-result').hidden = false;
    for (const s of ['#reg-community', '#reg-building', '#reg-basement', '#reg-address', '#reg-caller-name', '#reg-caller-phone', '#reg-description']) $(s).value = '';
    $('#link-notice').hidden = true;
    reg.previewKey = '';
  } catch (e) {
    if (!e.retryable) reg.pending = null;
    showError(e);
  } finally {
    btn.disabled = false;
  }
}
function complaintLines(c) {
  const caller = c.caller ? [c.caller.name, c.caller.phone].filter(Boolean).join(' ') : '匿名';
  return [
    el('div', null, el('strong', { text: pointLabel(c.point) }), ' ', badge('b-info', label(COMPLAINT_STATUS, c.status)),
      c.urgency === 'urgent' ? badge('b-bad', '紧急') : null, c.satisfaction ? badge('b-ok', '回访：' + label(SATISFACTION, c.satisfaction)) : null),
    el('div', { class: 'muted' }, `${streetName(c.street)} · 来电 `, timeEl(c.received_at), ` · ${caller}`),
    c.description ? el('div', { text: c.description }) : null,
    el('div', { class: 'muted' }, '工单 ', el('code', { text: c.complaint_id }), c.item_id ? ' · 台账 ' : null, c.item_id ? el('code', { text: c.item_id }) : null),
  ];
}
async function lookupPhone(ev) {
  ev.preventDefault();
  const phone = val('#phone-lookup-input');
  const list = $('#lookup-results');
  if (!phone) { showError({ detail: '请输入来电号码' }); return; }
  await act($('#phone-lookup-submit'), async () => {
    const j = await intake('/v1/complaints?phone=' + encodeURIComponent(phone));
    const cs = (j && j.complaints) || [];
    clearError();
    list.replaceChildren(...cs.map((c) => el('li', { 'data-testid': 'complaint-row', 'data-complaint-id': c.complaint_id }, ...complaintLines(c))));
    if (!cs.length) list.append(empty('没有找到该号码的诉求'));
  });
}
async function loadReturned(g) {
  const j = await intake('/v1/complaints?status=returned');
  if (g !== gen) return;
  const cs = ((j && j.complaints) || []).filter((c) => !c.status || c.status === 'returned');
  $('#returned-count').textContent = `（${cs.length}）`;
  const rows = cs.map((c) => {
    const sel = el('select', { 'data-testid': 'redispatch-street-select', 'aria-label': '改派至' });
    fillStreetOptions(sel, c.district, '请选择改派的街道/乡镇');
    for (const o of sel.options) if (o.value === c.street) o.textContent += '（原派单街道）';
    const btn = el('button', { type: 'button', class: 'primary', 'data-testid': 'redispatch-submit', text: '改派' });
    btn.addEventListener('click', () => redispatch(c, sel, btn));
    return el('li', { 'data-testid': 'returned-row', 'data-complaint-id': c.complaint_id }, ...complaintLines(c),
      el('div', { class: 'actions' }, sel, btn));
  });
  $('#returned-list').replaceChildren(...rows);
  if (!rows.length) $('#returned-list').append(empty('暂无退单'));
}
async function redispatch(c, sel, btn) {
  if (!sel.value) { showError({ detail: '请选择改派的街道/乡镇' }); sel.focus(); return; }
  const ok = await act(btn, () => intake(`/v1/complaints/${c.complaint_id}/dispatch`, { body: { street: sel.value } }));
  if (ok) { notify(`已改派至${streetName(sel.value)}`); const g = gen; load(g, () => loadReturned(g)); }
}
async function loadFollowups(g) {
  const j = await intake('/v1/complaints?status=written_off');
  if (g !== gen) return;
  const cs = ((j && j.complaints) || []).filter((c) => !c.status || c.status === 'written_off');
  $('#followup-count').textContent = `（${cs.length}）`;
  const rows = cs.map((c) => {
    const sel = el('select', { 'data-testid': 'satisfaction-select', 'aria-label': '满意度' },
      ...Object.entries(SATISFACTION).map(([v, t]) => el('option', { value: v, text: t })));
    const note = el('input', { type: 'text', 'data-testid': 'followup-note', placeholder: '回访记录（选填）', 'aria-label': '回访记录' });
    const btn = el('button', { type: 'button', class: 'primary', 'data-testid': 'followup-submit', text: '记录回访' });
    btn.addEventListener('click', () => followUp(c, sel, note, btn));
    return el('li', { 'data-testid': 'followup-row', 'data-complaint-id': c.complaint_id }, ...complaintLines(c),
      el('div', { class: 'row2' }, sel, note), el('div', { class: 'actions' }, btn));
  });
  $('#followup-list').replaceChildren(...rows);
  if (!rows.length) $('#followup-list').append(empty('暂无待回访的诉求'));
}
async function followUp(c, sel, note, btn) {
  const ok = await act(btn, () => intake(`/v1/complaints/${c.complaint_id}/follow-up`,
    { body: { satisfaction: sel.value, note: note.value.trim() } }));
  if (ok) { notify(`已记录回访：${label(SATISFACTION, sel.value)}`); const g = gen; load(g, () => loadFollowups(g)); }
}
async function showOperator(g) {
  showView('#v-operator');
  await load(g, fillRegisterForm);
  const lists = () => { load(g, () => loadReturned(g)); load(g, () => loadFollowups(g)); };
  lists();
  every(15000, lists);
  every(4000, recheckPreview);
}

// ================================================================ street (街道)
/** The deadline that matters now: respond-by until acknowledged, then resolve-by. */
function deadlineOf(it) {
  return it.status === 'registered' && !it.acknowledged_at
    ? { at: it.respond_by, kind: 'respond', label: '签收时限' }
    : { at: it.resolve_by, kind: 'resolve', label: '办结时限' };
}
async function loadInbox(g) {
  const j = await ledger('/v1/ledger/items?status=open&limit=500');
  if (g !== gen) return;
  const items = ((j && j.items) || []).filter((it) => it.status !== 'written_off');
  const key = (it) => { const ms = toMs(deadlineOf(it).at); return Number.isFinite(ms) ? ms : Infinity; };
  items.sort((a, b) => key(a) - key(b));
  $('#inbox-count').textContent = `（${items.length}${j && j.next_cursor ? '+' : ''}）`;
  const rows = items.map((it) => {
    const d = deadlineOf(it);
    const od = Array.isArray(it.overdue) ? it.overdue : [];
    const tags = [badge(it.status === 'closure_pending' ? 'b-pend' : it.status === 'registered' ? 'b-warn' : 'b-info', label(ITEM_STATUS, it.status))];
    if (it.urgency === 'urgent') tags.push(badge('b-bad', '紧急'));
    for (const k of od) tags.push(badge('b-bad', label(OVERDUE, k)));
    if (it.extension && it.extension.status) tags.push(badge('b-warn', label(EXT_STATUS, it.extension.status)));
    if (it.rebound_of) tags.push(badge('b-warn', '反弹'));
    const n = (it.complaint_ids || []).length;
    return el('a', { class: 'row' + (it.status === 'closure_pending' ? ' pend' : ''), href: `#/item/${it.item_id}`,
      'data-testid': 'inbox-row', 'data-item-id': it.item_id },
    el('strong', { text: pointLabel(it.point) }),
    el('span', { class: 'when' }, el('small', { text: d.label }), countdownEl(d.at, od.includes(d.kind))),
    el('span', { class: 'sub' }, ...tags, el('span', { text: n ? `来电 ${n} 次` : label(SOURCE, it.source) }),
      el('span', null, '上账 ', timeEl(it.registered_at))));
  });
  $('#inbox-list').replaceChildren(...rows);
  if (!rows.length) $('#inbox-list').append(empty('暂无在办台账 ✓'));
  if (j && j.next_cursor) $('#inbox-list').append(empty('仅显示时限最近的前 500 项'));
}
function showInbox(g) {
  showView('#v-inbox');
  const again = () => load(g, () => loadInbox(g));
  again();
  quickRefresh(again);
  every(15000, again);
}

// The item being worked on.
let cur = null;

async function showItem(id, g) {
  showView('#v-item');
  if (!cur || cur.id !== id) {
    resetClosureForm();
    cur = { id, item: null, complaints: [], pending: null, rejected: null, photos: [], uploads: new Set(), geo: null, prefilled: false };
    $('#item-title').textContent = '正在加载…';
    for (const s of ['#item-facts', '#calls-list', '#item-history']) $(s).replaceChildren();
    for (const s of ['#ack-box', '#closure-box', '#extension-box', '#return-box']) $(s).hidden = true;
    $('#return-form').reset();
    $('#extension-form').reset();
  }
  await load(g, () => loadItem(g));
}
async function loadItem(g) {
  const c = cur;
  const street = session.claims.org;
  const q = encodeURIComponent(street);
  const [item, pend, rej] = await Promise.all([
    ledger(`/v1/ledger/items/${c.id}`),
    closure(`/v1/closures?status=pending&street=${q}`).catch(() => null),
    closure(`/v1/closures?status=rejected&street=${q}`).catch(() => null),
  ]);
  if (g !== gen || c !== cur) return;
  c.item = item;
  const mine = (j) => ((j && j.closures) || []).filter((x) => x.item_id === c.id);
  c.pending = mine(pend)[0] || null;
  if (!pend && item.status === 'closure_pending') c.pending = pendingFromHistory(item);
  c.rejected = mine(rej)[0] || null; // newest first
  if (!rej) c.rejected = lastRejectionFromHistory(item);
  renderItem();
  const ids = item.complaint_ids || [];
  const complaints = await Promise.all(ids.map((id) => intake(`/v1/complaints/${id}`).catch(() => ({ complaint_id: id }))));
  if (g !== gen || c !== cur) return;
  c.complaints = complaints;
  renderCalls();
  renderReturn();
}
/** The pending request as the item's history tells it, when the closure service cannot be asked. */
function pendingFromHistory(item) {
  const h = (item.history || []).filter((e) => e.event_type === 'item_closure_pending');
  const e = h[h.length - 1];
  return { closure_id: (e && e.data && e.data.closure_id) || '', requested_at: e && e.at, outcome: e && e.data && e.data.outcome };
}
/** The reviewer's reason from the item's own history, when the closure service cannot be asked. */
function lastRejectionFromHistory(item) {
  let last = null;
  for (const e of item.history || []) {
    if (e.event_type === 'item_closure_rejected') last = { reject_reason: (e.data || {}).reason, reviewed_at: e.at, evidence: [] };
    if (e.event_type === 'item_closure_pending' || e.event_type === 'item_written_off') last = null;
  }
  return last;
}
function renderItem() {
  const it = cur.item;
  const d = deadlineOf(it);
  const od = Array.isArray(it.overdue) ? it.overdue : [];
  $('#item-title').textContent = pointLabel(it.point);
  const ext = it.extension;
  facts($('#item-facts'), [
    ['状态', el('span', null, label(ITEM_STATUS, it.status), ...od.map((k) => [' ', badge('b-bad', label(OVERDUE, k))]).flat())],
    [d.label, it.status === 'written_off' ? null : el('span', null, countdownEl(d.at, od.includes(d.kind)), '（', timeEl(d.at), '）')],
    ['地址', (it.point && it.point.address) || null],
    ['类别', it.category === 'basement_illegal_residence' ? '地下室违规住人' : it.category === 'group_rental' ? '群租' : it.category],
    ['来源', label(SOURCE, it.source)],
    ['紧急程度', label(URGENCY, it.urgency)],
    ['上账时间', timeEl(it.registered_at)],
    ['响应时限', d.kind === 'respond' ? null : timeEl(it.respond_by)],
    ['签收时间', it.acknowledged_at ? timeEl(it.acknowledged_at) : '未签收'],
    ['办结时限', d.kind === 'resolve' && it.status !== 'written_off' ? null : timeEl(it.resolve_by)],
    ['延期', ext && ext.status ? `${label(EXT_STATUS, ext.status)}：延至 ${fmt(ext.until)}，理由：${ext.reason || '—'}` : null],
    ['反弹', it.rebound_of ? el('span', null, '是（上一项台账 ', el('code', { text: it.rebound_of }), '）') : null],
    ['销账', it.written_off_at ? el('span', null, timeEl(it.written_off_at), ` · ${label(OUTCOME, it.write_off_kind)}`) : null],
    ['台账号', el('code', { text: it.item_id })],
  ]);
  historyList($('#item-history'), it.history);
  const open = it.status !== 'written_off';
  $('#ack-box').hidden = it.status !== 'registered';
  renderExtension(open);
  renderClosureBox();
  renderReturn();
}
function renderExtension(open) {
  const it = cur.item;
  const ext = it.extension;
  const box = $('#extension-box');
  const before = !(toMs(it.resolve_by) <= Date.now());
  box.hidden = !open;
  const state = $('#extension-state');
  state.hidden = !(ext && ext.status);
  if (ext && ext.status) {
    state.textContent = `${label(EXT_STATUS, ext.status)}：延至 ${fmt(ext.until)}，理由：${ext.reason || '—'}`;
    state.className = 'msg ' + (ext.status === 'approved' ? 'ok' : ext.status === 'rejected' ? 'error' : 'warn');
  }
  const canAsk = open && before && !(ext && (ext.status === 'pending' || ext.status === 'approved'));
  $('#extension-form').hidden = !canAsk;
  if (canAsk && !$('#extension-until').value) {
    const base = Number.isFinite(toMs(it.resolve_by)) ? toMs(it.resolve_by) : Date.now();
    $('#extension-until').value = fmt(base + 3 * DAY, 'local');
    $('#extension-until').min = fmt(base + MIN, 'local');
  }
  if (open && !before && !(ext && ext.status)) {
    state.hidden = false;
    state.className = 'msg error';
    state.textContent = '已超过办结时限，不能再申请延期。';
  }
}
function renderReturn() {
  const it = cur.item;
  const ids = it.complaint_ids || [];
  const box = $('#return-box');
  box.hidden = !(it.status === 'registered' && !it.acknowledged_at && ids.length);
  if (box.hidden) return;
  const sel = $('#return-complaint');
  const byId = new Map(cur.complaints.map((c) => [c.complaint_id, c]));
  const keep = sel.value;
  sel.replaceChildren(...ids.map((id) => {
    const c = byId.get(id);
    return el('option', { value: id, text: c && c.received_at ? `${fmt(c.received_at)} 来电（${String(id).slice(-8)}）` : `诉求 ${String(id).slice(-8)}` });
  }));
  if (ids.includes(keep)) sel.value = keep;
  $('#return-complaint-wrap').hidden = ids.length <= 1;
}
function renderCalls() {
  const list = $('#calls-list');
  list.replaceChildren(...cur.complaints.map((c) => {
    const li = el('li', { 'data-testid': 'call-row', 'data-complaint-id': c.complaint_id });
    if (!c.received_at) { li.append(el('span', { class: 'muted', text: `诉求 ${c.complaint_id}（暂时无法读取）` })); return li; }
    const name = el('strong', { text: (c.caller && c.caller.name) || '匿名来电' });
    const phone = el('span', { class: 'mono', text: (c.caller && c.caller.phone) || '' });
    const reveal = c.caller && c.caller.phone ? el('button', { type: 'button', class: 'small', 'data-testid': 'reveal-caller', text: '查看完整号码（将留痕）' }) : null;
    if (reveal) {
      reveal.addEventListener('click', () => act(reveal, async () => {
        const r = await intake(`/v1/complaints/${c.complaint_id}/caller`, { post: true });
        phone.textContent = (r && r.phone) || phone.textContent;
        name.textContent = (r && r.name) || name.textContent;
        reveal.remove();
        clearError();
      }));
    }
    li.append(...[
      el('div', null, name, ' ', phone, ' ', reveal),
      el('div', { class: 'muted' }, '来电 ', timeEl(c.received_at), ` · ${label(COMPLAINT_STATUS, c.status)}`, c.urgency === 'urgent' ? ' · 紧急' : ''),
      c.description ? el('div', { text: c.description }) : null].filter(Boolean));
    return li;
  }));
  if (!cur.complaints.length) list.append(empty('主动发现的台账，没有来电'));
}
function renderClosureBox() {
  const it = cur.item;
  const box = $('#closure-box');
  const working = it.status === 'acknowledged' || it.status === 'closure_pending';
  box.hidden = !working && it.status !== 'written_off';
  const pend = $('#pending-closure');
  const rej = $('#rejection-box');
  const canFile = working && !cur.pending;
  if (it.status === 'written_off') {
    pend.hidden = false;
    pend.className = 'msg ok';
    pend.textContent = `已销账（${label(OUTCOME, it.write_off_kind)}），${fmt(it.written_off_at)}。`;
  } else if (cur.pending) {
    pend.hidden = false;
    pend.className = 'msg';
    pend.dataset.closureId = cur.pending.closure_id;
    pend.textContent = `销账申请已于 ${fmt(cur.pending.requested_at)} 提交（${label(OUTCOME, cur.pending.outcome)}），等待区审核。`;
  } else {
    pend.hidden = true;
  }
  rej.hidden = !(canFile && cur.rejected);
  if (canFile && cur.rejected) {
    $('#rejection-reason').textContent = cur.rejected.reject_reason || '（未写明理由）';
    $('#rejection-when').textContent = cur.rejected.reviewed_at
      ? `驳回时间 ${fmt(cur.rejected.reviewed_at)}${cur.rejected.reviewed_by ? ' · ' + cur.rejected.reviewed_by : ''}。请按意见整改后重新提交。` : '';
  }
  const formOpen = !$('#closure-form').hidden;
  $('#open-closure-wrap').hidden = !canFile || formOpen;
  if (!canFile) $('#closure-form').hidden = true;
}
function resetClosureForm() {
  $('#closure-form').reset();
  $('#closure-form').hidden = true;
  for (const img of $$('#photo-thumbs img')) URL.revokeObjectURL(img.src);
  $('#photo-thumbs').replaceChildren();
  if (cur) { cur.photos = []; cur.prefilled = false; }
}
function openClosureForm() {
  $('#closure-form').hidden = false;
  $('#open-closure-wrap').hidden = true;
  startGeo();
  if (cur.rejected && !cur.prefilled) prefillFromRejected(cur.rejected);
  $('#closure-outcome').focus();
}
/** Starts the form from the rejected request: the street corrects what the reviewer asked. */
function prefillFromRejected(r) {
  cur.prefilled = true;
  if (r.outcome) $('#closure-outcome').value = r.outcome;
  const ch = r.checklist || {};
  for (const [k, , sel] of CHECKS) $(sel).checked = ch[k] === true;
  if (r.rooms_cleared != null) $('#rooms-cleared').value = r.rooms_cleared;
  if (r.partition_area_m2 != null) $('#partition-area').value = r.partition_area_m2;
  if (r.note) $('#closure-note').value = r.note;
  const c = cur;
  for (const e of r.evidence || []) {
    if (!e.sha256 || !String(e.uri || '').startsWith('/v1/evidence/')) continue;
    const p = photoUrl(e.uri).then((url) => { if (c === cur) addThumb(e.sha256, url, undefined, e); else URL.revokeObjectURL(url); }).catch(() => {});
    track(p);
  }
}
function track(p) {
  const c = cur;
  c.uploads.add(p);
  p.finally(() => c.uploads.delete(p));
}
/** Where the phone is, if it says so quickly; the upload never waits for it more than 3 s. */
function startGeo() {
  if (cur.geo) return;
  cur.geo = new Promise((resolve) => {
    setTimeout(() => resolve(null), 3000);
    if (!navigator.geolocation) { resolve(null); return; }
    try {
      navigator.geolocation.getCurrentPosition(
        (p) => resolve({ lat: p.coords.latitude, long: p.coords.longitude }),
        () => resolve(null),
        { enableHighAccuracy: true, timeout: 3000, maximumAge: 120000 });
    } catch (e) { resolve(null); }
  });
}
function onPhotosChosen() {
  const input = $('#photo-input');
  const files = Array.from(input.files || []);
  input.value = '';
  for (const f of files) uploadPhoto(f);
}
function uploadPhoto(file) {
  const c = cur;
  const holder = el('li', { class: 'uploading', text: '上传中…' });
  $('#photo-thumbs').append(holder);
  startGeo();
  const p = (async () => {
    try {
      const takenAt = new Date().toISOString();
      const pos = await c.geo;
      const fd = new FormData();
      fd.append('item_id', c.id);
      fd.append('taken_at', takenAt);
      if (pos) { fd.append('lat', String(pos.lat)); fd.append('long', String(pos.long)); }
      fd.append('file', file, file.name || 'photo');
      const j = await closure('/v1/evidence', { body: fd });
      holder.remove();
      if (c !== cur) return;
      addThumb(j.sha256 || j.evidence_id, URL.createObjectURL(file), j.evidence_id, j);
      clearError();
    } catch (e) {
      holder.remove();
      if (c === cur && session.token && !e.reauth) showError({ detail: `照片“${file.name}”上传失败：${e.detail || e.message}`, problem: e.problem });
    }
  })();
  track(p);
}
/** A photo in the form: url is its picture (null: kept, not viewable now); record, the evidence record. */
function addThumb(sha256, url, evidenceId, record) {
  if (cur.photos.some((x) => x.sha256 === sha256)) { if (url) URL.revokeObjectURL(url); return; }
  const img = el('img', { src: url, alt: url ? '现场照片' : '现场照片（已上传，暂时无法预览）', 'data-testid': 'photo-thumb', 'data-sha256': sha256 });
  const rm = el('button', { type: 'button', class: 'rm', 'aria-label': '移除这张照片', 'data-testid': 'photo-remove', text: '×' });
  const li = el('li', null, img, rm);
  const photo = { sha256, evidence_id: evidenceId || sha256, li,
    record: { evidence_id: evidenceId || sha256, sha256, ...(record || {}) } };
  rm.addEventListener('click', () => {
    cur.photos = cur.photos.filter((x) => x !== photo);
    if (url) URL.revokeObjectURL(url);
    li.remove();
  });
  cur.photos.push(photo);
  $('#photo-thumbs').append(li);
}
/** A photo of a saved draft: shown again from the evidence store, cited as before. */
function restorePhoto(c, rec) {
  const sha = rec && (rec.sha256 || rec.evidence_id);
  if (!sha || !/^[0-9a-fA-F]{64}$/.test(sha)) return;
  const uri = String(rec.uri || '').startsWith('/v1/evidence/') ? rec.uri : `/v1/evidence/${sha}`;
  const p = photoUrl(uri)
    .then((url) => { if (c === cur) addThumb(sha, url, rec.evidence_id, rec); else URL.revokeObjectURL(url); })
    .catch((e) => { if (c === cur && !e.reauth) addThumb(sha, null, rec.evidence_id, rec); });
  track(p);
}
function closureBody() {
  const num = (sel, parse) => { const v = $(sel).value.trim(); return v === '' ? undefined : parse(v); };
  const checklist = {};
  for (const [k, , sel] of CHECKS) checklist[k] = $(sel).checked;
  const body = { item_id: cur.id, outcome: $('#closure-outcome').value, checklist,
    evidence: cur.photos.map((p) => ({ evidence_id: p.evidence_id })), note: $('#closure-note').value.trim() };
  const rooms = num('#rooms-cleared', (v) => Number.parseInt(v, 10));
  const area = num('#partition-area', Number.parseFloat);
  if (rooms !== undefined) body.rooms_cleared = rooms;
  if (area !== undefined) body.partition_area_m2 = area;
  return body;
}
async function submitClosure(ev) {
  ev.preventDefault();
  const c = cur;
  const btn = $('#closure-submit');
  btn.disabled = true;
  try {
    if (c.uploads.size) { btn.textContent = '等待照片上传…'; await Promise.allSettled(Array.from(c.uploads)); }
    btn.textContent = '正在提交…';
    const body = closureBody();
    // The closure service learns of a new acknowledgement about a second after the ledger: a
    // refusal for that reason, just after the acknowledgement, is retried briefly.
    const justAcked = Date.now() - toMs(c.item.acknowledged_at) < 60000;
    for (let attempt = 0; ; attempt++) {
      try { await closure('/v1/closures', { body }); break; } catch (e) {
        if (!(justAcked && (e.status === 404 || e.status === 409) && attempt < 5)) throw e;
        await sleep(800);
      }
    }
    if (c !== cur) return;
    resetClosureForm();
    notify('销账申请已提交，等待区审核。');
    await loadItem(gen);
  } catch (e) {
    if (session.token) showError(e);
  } finally {
    btn.disabled = false;
    btn.textContent = '提交销账申请';
  }
}
async function acknowledge() {
  const c = cur;
  await act($('#acknowledge'), async () => {
    const item = await ledger(`/v1/ledger/items/${c.id}/acknowledge`, { post: true });
    if (c !== cur) return;
    c.item = item;
    notify('已签收。请尽快到现场核查处置，完成后提交销账申请。');
    renderItem();
  });
}
async function requestExtension(ev) {
  ev.preventDefault();
  const c = cur;
  const raw = $('#extension-until').value;
  const until = beijingLocalToIso(raw);
  if (!until) { showError({ detail: '请填写延期至的日期和时间', problem: { errors: [{ field: 'until', message: '必填' }] } }); return; }
  await act($('#extension-submit'), async () => {
    const item = await ledger(`/v1/ledger/items/${c.id}/extension`, { body: { until, reason: val('#extension-reason') } });
    if (c !== cur) return;
    c.item = item;
    $('#extension-form').reset();
    notify(`延期申请已提交：延至 ${fmt(until)}，等待区审核。`);
    renderItem();
  });
}
async function returnComplaint(ev) {
  ev.preventDefault();
  const c = cur;
  const id = $('#return-complaint').value || (c.item.complaint_ids || [])[0];
  if (!id) return;
  const ok = await act($('#return-submit'), () => intake(`/v1/complaints/${id}/return`, { body: { reason: val('#return-reason') } }));
  if (!ok) return;
  notify('已退单，诉求退回接线员改派。');
  cur = null;
  soon(); // the ledger takes the return about a second later
  go('#/');
}

// ================================================================ reviewer (区审核)
const itemCache = new Map();
async function itemFor(id) {
  if (!itemCache.has(id)) itemCache.set(id, ledger(`/v1/ledger/items/${id}`).catch((e) => { itemCache.delete(id); throw e; }));
  return itemCache.get(id);
}
async function loadQueue(g) {
  const j = await closure('/v1/closures?status=pending');
  if (g !== gen) return;
  const cs = ((j && j.closures) || []).filter((x) => x.status === 'pending');
  cs.sort((a, b) => toMs(a.requested_at) - toMs(b.requested_at)); // oldest waiting first
  $('#queue-count').textContent = `（${cs.length}）`;
  const rows = cs.map((x) => {
    const title = el('strong', { text: `${streetName(x.street)} · 台账 ${String(x.item_id).slice(-8)}` });
    itemFor(x.item_id).then((it) => { title.textContent = `${streetName(x.street)} · ${pointLabel(it.point)}`; }).catch(() => {});
    const photos = (x.evidence || []).length;
    return el('a', { class: 'row pend', href: `#/closure/${x.closure_id}`, 'data-testid': 'review-row',
      'data-closure-id': x.closure_id, 'data-item-id': x.item_id },
    title,
    el('span', { class: 'when' }, el('small', { text: '提交于' }), timeEl(x.requested_at)),
    el('span', { class: 'sub' }, badge(x.outcome === 'rectified' ? 'b-ok' : 'b-warn', label(OUTCOME, x.outcome)),
      el('span', { text: `照片/材料 ${photos} 份` }),
      x.rooms_cleared != null ? el('span', { text: `清理 ${x.rooms_cleared} 间` }) : null,
      x.partition_area_m2 != null ? el('span', { text: `拆除隔断 ${x.partition_area_m2} m²` }) : null));
  });
  $('#queue-list').replaceChildren(...rows);
  if (!rows.length) $('#queue-list').append(empty('暂无待审核的销账申请'));
}
async function loadExtensions(g) {
  const j = await ledger('/v1/ledger/items?status=open&extension=pending&limit=500');
  if (g !== gen) return;
  const items = ((j && j.items) || []).filter((it) => it.extension && it.extension.status === 'pending');
  $('#extensions-count').textContent = `（${items.length}）`;
  const rows = items.map((it) => {
    const reason = el('input', { type: 'text', 'data-testid': 'extension-reject-reason', placeholder: '驳回理由（驳回时必填）', 'aria-label': '驳回理由', 'data-field': 'reason' });
    const approve = el('button', { type: 'button', class: 'primary', 'data-testid': 'extension-approve', text: '批准延期' });
    const reject = el('button', { type: 'button', class: 'danger', 'data-testid': 'extension-reject', text: '驳回' });
    approve.addEventListener('click', () => decideExtension(it, true, approve, reason));
    reject.addEventListener('click', () => decideExtension(it, false, reject, reason));
    return el('li', { 'data-testid': 'extension-row', 'data-item-id': it.item_id },
      el('div', null, el('strong', { text: `${streetName(it.street)} · ${pointLabel(it.point)}` })),
      el('div', null, '办结时限 ', timeEl(it.resolve_by), ' → 申请延至 ', timeEl(it.extension.until)),
      el('div', { text: `理由：${it.extension.reason || '—'}` }),
      reason, el('div', { class: 'actions' }, approve, reject));
  });
  $('#extension-list').replaceChildren(...rows);
  if (!rows.length) $('#extension-list').append(empty('暂无待审核的延期申请'));
}
async function decideExtension(it, approve, btn, reasonInput) {
  const path = `/v1/ledger/items/${it.item_id}/extension/${approve ? 'approve' : 'reject'}`;
  const ok = await act(btn, () => ledger(path, approve ? { post: true } : { body: { reason: reasonInput.value.trim() } }));
  if (ok) { notify(approve ? '已批准延期，办结时限已顺延。' : '已驳回延期申请。'); const g = gen; load(g, () => loadExtensions(g)); }
}
function showQueue(g) {
  showView('#v-queue');
  const all = () => { load(g, () => loadQueue(g)); load(g, () => loadExtensions(g)); };
  all();
  quickRefresh(all);
  every(10000, all);
}
let reviewing = null;
async function showReview(id, g) {
  showView('#v-review');
  reviewing = null;
  $('#review-title').textContent = '正在加载…';
  for (const s of ['#review-facts', '#review-photos', '#review-item-facts', '#review-item-history']) $(s).replaceChildren();
  $('#review-form').hidden = true;
  $('#review-decided').hidden = true;
  $('#reject-reason').value = '';
  $('#approve-note').value = '';
  await load(g, async () => {
    const x = await closure(`/v1/closures/${id}`);
    if (g !== gen) return;
    reviewing = x;
    renderReview(x);
    renderPhotos(x, g);
    const it = await ledger(`/v1/ledger/items/${x.item_id}`);
    if (g !== gen) return;
    renderReviewItem(it);
  });
}
function renderReview(x) {
  $('#review-title').textContent = `销账申请 · ${streetName(x.street)}`;
  const ch = x.checklist || {};
  const checks = el('ul', { class: 'checklist' }, ...CHECKS.map(([k, name]) =>
    el('li', { 'data-check': k, 'data-ok': String(ch[k] === true) }, ch[k] === true ? '✓ ' : '✗ ', name)));
  facts($('#review-facts'), [
    ['处理结果', badge(x.outcome === 'rectified' ? 'b-ok' : 'b-warn', label(OUTCOME, x.outcome))],
    ['三无一恢复', checks],
    ['清理房间', x.rooms_cleared != null ? `${x.rooms_cleared} 间` : '未填'],
    ['拆除隔断', x.partition_area_m2 != null ? `${x.partition_area_m2} m²` : '未填'],
    ['说明', x.note || '（无）'],
    ['提交', el('span', null, timeEl(x.requested_at), ` · ${x.requested_by || ''}`)],
    ['状态', label(CLOSURE_STATUS, x.status)],
    ['申请号', el('code', { text: x.closure_id })],
  ]);
  const pending = x.status === 'pending';
  $('#review-form').hidden = !pending;
  const done = $('#review-decided');
  done.hidden = pending;
  if (!pending) {
    done.className = 'msg ' + (x.status === 'approved' ? 'ok' : 'error');
    done.textContent = `${label(CLOSURE_STATUS, x.status)}` + (x.reviewed_at ? `（${fmt(x.reviewed_at)} · ${x.reviewed_by || ''}）` : '') +
      (x.reject_reason ? `，理由：${x.reject_reason}` : '') + (x.review_note ? `，意见：${x.review_note}` : '');
  }
}
function renderPhotos(x, g) {
  const box = $('#review-photos');
  const ev = x.evidence || [];
  box.replaceChildren();
  if (!ev.length) box.append(el('p', { class: 'empty', text: '没有照片' }));
  for (const e of ev) {
    const cap = el('figcaption', null, e.content_type ? `${e.content_type} · ` : '', e.bytes ? `${Math.round(e.bytes / 1024)} KB · ` : '',
      'SHA-256 ', el('span', { class: 'mono', text: e.sha256 || '—' }));
    const fig = el('figure', null);
    if (String(e.uri || '').startsWith('/v1/evidence/')) {
      const img = el('img', { alt: '现场照片（加载中）', 'data-testid': 'evidence-photo', 'data-sha256': e.sha256 || '' });
      const link = el('a', { target: '_blank', rel: 'noopener', title: '查看原图' }, img);
      fig.append(link, cap);
      photoUrl(e.uri).then((url) => {
        if (g !== gen) { URL.revokeObjectURL(url); return; }
        viewBlobs.push(url);
        img.src = url;
        img.alt = '现场照片';
        link.href = url;
      }).catch((err) => { if (g === gen) { img.alt = `照片无法加载：${err.detail || err.message}`; } });
    } else {
      fig.append(el('p', { class: 'muted', text: `外部存储：${e.uri || '—'}` }), cap);
    }
    box.append(fig);
  }
}
function renderReviewItem(it) {
  const od = Array.isArray(it.overdue) ? it.overdue : [];
  $('#review-item-title').textContent = `台账 · ${pointLabel(it.point)}`;
  facts($('#review-item-facts'), [
    ['街道', streetName(it.street)],
    ['地址', (it.point && it.point.address) || null],
    ['状态', el('span', null, label(ITEM_STATUS, it.status), ...od.map((k) => [' ', badge('b-bad', label(OVERDUE, k))]).flat())],
    ['上账', timeEl(it.registered_at)],
    ['签收', it.acknowledged_at ? timeEl(it.acknowledged_at) : '未签收'],
    ['办结时限', timeEl(it.resolve_by)],
    ['来电', `${(it.complaint_ids || []).length} 次`],
    ['反弹', it.rebound_of ? '是' : null],
  ]);
  historyList($('#review-item-history'), it.history);
}
async function review(approve) {
  const x = reviewing;
  if (!x) return;
  const btn = approve ? $('#approve') : $('#reject');
  const note = $('#approve-note').value.trim();
  const opts = approve ? (note ? { body: { note } } : { post: true }) : { body: { reason: $('#reject-reason').value.trim() } };
  const ok = await act(btn, () => closure(`/v1/closures/${x.closure_id}/${approve ? 'approve' : 'reject'}`, opts));
  if (!ok) return;
  notify(approve ? '已通过，台账销账。' : '已驳回，街道将按意见整改后重新提交。');
  itemCache.delete(x.item_id);
  soon();
  go('#/');
}

// ================================================================ district (区级)
async function loadSummary(g) {
  const d = homeDistrict();
  const j = await ledger('/v1/ledger/summary' + (d ? `?district=${encodeURIComponent(d)}` : ''));
  if (g !== gen) return;
  const open = Number(j.open) || 0, overdue = Number(j.overdue) || 0;
  const zero = j.dynamic_zero === true || (j.dynamic_zero == null && open === 0);
  $('#zero-banner').className = 'banner ' + (zero ? 'ok' : overdue ? 'bad' : 'warn');
  $('#zero-status').textContent = `${orgName(j.district)} ` + (zero ? '动态清零 ✓' : '未清零');
  $('#zero-detail').textContent = zero
    ? (j.zero_since ? `清零于 ${fmt(j.zero_since)}` : '全区无在账事项')
    : `在账 ${open} 项，已签收 ${j.acknowledged || 0}，待审核销账 ${j.closure_pending || 0}，超期 ${overdue}；累计上账 ${j.registered_total || 0}，累计销账 ${j.written_off_total || 0}`;
  $('#summary-open').textContent = String(open);
  const t = $('#summary-as-of');
  t.textContent = fmt(j.as_of, 'full');
  const cols = ['open', 'acknowledged', 'closure_pending', 'overdue', 'registered_total', 'written_off_total'];
  const rows = (j.streets || []).map((s) => {
    const sz = s.dynamic_zero === true || (s.dynamic_zero == null && !s.open);
    const state = sz ? 'ok' : s.overdue ? 'bad' : 'warn';
    return el('tr', { class: 's-' + state, 'data-testid': 'summary-street', 'data-street': s.street },
      el('th', { scope: 'row', text: s.name || streetName(s.street) }),
      ...cols.map((k) => el('td', { class: 'n', 'data-field': k, text: String(Number(s[k]) || 0) })),
      el('td', null, badge('b-' + (state === 'warn' ? 'warn' : state), sz ? '清零' : s.overdue ? '超期' : '在办')));
  });
  $('#summary-streets tbody').replaceChildren(...rows);
}
function showDistrict(g) {
  showView('#v-district');
  load(g, () => loadSummary(g));
  every(5000, () => load(g, () => loadSummary(g)));
}

// ---------------------------------------------------------------- wiring
function wire() {
  $('#signin-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const t = $('#token-input').value;
    $('#token-input').value = '';
    if (!t.trim()) { $('#token-input').focus(); return; }
 if (useToken(t, true)) { clearError(); $('#notice').hidden = true; if (location.hash !== '#/') history.replaceState(null, '', location.pathname + location.search + '#/'); route(); }
  });
  $('#sign-out').addEventListener('click', () => {
    const viaOidc = session.via === 'oidc';
    const idToken = session.idToken;
    cur = null;
    signOut();
    sdel(DRAFT_KEY);
    notify('已退出登录。');
    // Also out of the identity provider's session, which would otherwise sign the next person in.
    if (viaOidc && oidc.conf) endProviderSession(idToken);
  });
  // Back from the provider's page with the browser's back button: this page was frozen mid-redirect.
  window.addEventListener('pageshow', (ev) => {
    if (!ev.persisted) return;
    reauthing = false;
    $('#oidc-sign-in').disabled = false;
  });
  $('#oidc-sign-in').addEventListener('click', async () => {
    const b = $('#oidc-sign-in');
    b.disabled = true;
    clearError();
    try {
      await beginSignIn({ login: oidc.forceLogin });
      setTimeout(() => { b.disabled = false; }, 3000); // if the page is come back to
    } catch (e) {
      b.disabled = false;
      showError({ detail: `无法转到统一身份认证：${e.message}` });
    }
  });
  window.addEventListener('hashchange', () => {
    if (takeTokenFromHash()) { clearError(); route(); return; }
    route();
  });
  // operator
  $('#register-form').addEventListener('submit', submitRegistration);
  $('#register-clear').addEventListener('click', () => {
    for (const s of ['#reg-community', '#reg-building', '#reg-basement', '#reg-address', '#reg-caller-name', '#reg-caller-phone', '#reg-description']) $(s).value = '';
    $('#link-notice').hidden = true; reg.previewKey = ''; reg.pending = null;
  });
  $('#reg-district').addEventListener('change', () => { fillStreetOptions($('#reg-street'), val('#reg-district'), '（不指定：按点位自动派单）'); schedulePreview(); });
  for (const s of ['#reg-street', '#reg-community', '#reg-building', '#reg-basement', '#reg-category']) {
    $(s).addEventListener('input', schedulePreview);
    $(s).addEventListener('change', schedulePreview);
  }
  $('#lookup-form').addEventListener('submit', lookupPhone);
  // street
  $('#acknowledge').addEventListener('click', acknowledge);
  $('#open-closure-form').addEventListener('click', openClosureForm);
  $('#photo-input').addEventListener('change', onPhotosChosen);
  $('#closure-form').addEventListener('submit', submitClosure);
  $('#closure-outcome').addEventListener('change', () => {
    $('#outcome-hint').textContent = $('#closure-outcome').value === 'rectified'
      ? '整治完毕须四项全部达到；核查不属实须写明核查情况。' : '核查不属实：三无一恢复可部分勾选，须在说明中写明核查情况。';
  });
  $('#extension-form').addEventListener('submit', requestExtension);
  $('#return-form').addEventListener('submit', returnComplaint);
  // reviewer
  $('#approve').addEventListener('click', () => review(true));
  $('#reject').addEventListener('click', () => review(false));
  // refresh buttons
  for (const b of $$('[data-refresh]')) {
    b.addEventListener('click', () => act(b, async () => {
      const g = gen;
      const which = b.dataset.refresh;
      if (which === 'operator') await Promise.all([loadReturned(g), loadFollowups(g)]);
      else if (which === 'inbox') await loadInbox(g);
      else if (which === 'item' && cur) await loadItem(g);
      else if (which === 'queue') await Promise.all([loadQueue(g), loadExtensions(g)]);
      else if (which === 'district') await loadSummary(g);
      clearError();
    }));
  }
  // district: the dashboard gets the token in its fragment, which is never sent to a server.
  $('#dashboard-link').addEventListener('click', (ev) => {
    if (!session.token) return;
    ev.preventDefault();
    const d = homeDistrict();
    location.assign('/' + (d ? `?district=${encodeURIComponent(d)}` : '') + '#token=' + encodeURIComponent(session.token));
  });
}

async function loadConfig() {
  try {
    const r = await fetch('/console/config.json', { cache: 'no-store', credentials: 'omit' });
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    const c = await r.json();
    const o = c && c.oidc;
    if (o && typeof o === 'object' && typeof o.issuer === 'string' && o.issuer && typeof o.client_id === 'string' && o.client_id) {
      oidc.conf = {
        issuer: o.issuer,
        client_id: o.client_id,
        scope: typeof o.scope === 'string' && o.scope.trim() ? o.scope.trim() : 'openid profile qingling',
        // RFC 8707: a resource indicator is an absolute URI; a bare audience name is left to the provider's default.
        resource: isAbsoluteUri(o.resource) ? o.resource : null,
        role_claim: typeof o.role_claim === 'string' && o.role_claim ? o.role_claim : null,
        org_claim: typeof o.org_claim === 'string' && o.org_claim ? o.org_claim : null,
      };
    }
    const base = (u) => (typeof u === 'string' && u ? u.replace(/\/+$/, '') : null);
    svc.intake = base(c.intake);
    svc.closure = base(c.closure);
    if (!svc.intake || !svc.closure) throw new Error('缺少 intake 或 closure 地址');
  } catch (e) {
    showError({ detail: `无法读取工作台配置（/console/config.json）：${e.message}。接诉和销账服务暂不可用。` });
  }
}

/** A kept identity-provider session whose access token has run out (by the provider's clock). */
function expiredOidc(t, o) {
  const c = decodeClaims(t);
  return !!(c && typeof c.exp === 'number' && c.exp * 1000 < Date.now() + (Number(o.skew) || 0));
}
async function main() {
  wire();
  await loadConfig();
  if (await completeSignIn()) { route(); return; }
  const fromHash = takeTokenFromHash();
  if (!fromHash) {
    const saved = store('get');
    const o = sjson(OIDC_KEY);
    if (saved && o && oidc.conf && expiredOidc(saved, o) && Date.now() - (Number(o.at) || 0) > 15000) {
      // Back to a tab whose session ran out: straight to the provider, which knows the user.
      store('del');
      sdel(OIDC_KEY);
      route();
      notify('登录已过期，正在通过统一身份认证重新登录…');
      beginSignIn({}).catch((e) => showError({ detail: `登录已过期，且无法转到统一身份认证（${e.message}）。` }));
      return;
    }
    if (saved && !useToken(saved, false, o || undefined)) { store('del'); sdel(OIDC_KEY); }
  }
  route();
}
main();
})();
