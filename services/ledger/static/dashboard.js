'use strict';
(() => {
const $ = (s) => document.querySelector(s);
const TZ = 'Asia/Shanghai';
const KEY = 'qingling.dashboard.token';
const DISTRICT_NAMES = { tongzhou: '通州区' };
const params = new URLSearchParams(location.search);
const district = (params.get('district') || '').trim() || 'tongzhou';
const D = encodeURIComponent(district);
const districtName = DISTRICT_NAMES[district] || district;
const title = `${districtName} 动态清零 看板`;
$('#title').textContent = title;
document.title = title;

// ---- time formatting (Asia/Shanghai, zh-CN) ----
const dtf = new Intl.DateTimeFormat('zh-CN', { timeZone: TZ, year: 'numeric', month: '2-digit', day: '2-digit',
  hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23' });
function toMs(ts) { if (ts == null || ts === '') return NaN; return typeof ts === 'number' ? ts : Date.parse(ts); }
function fmt(ts, style) {
  const ms = toMs(ts);
  if (!Number.isFinite(ms)) return '—';
  const p = {};
  for (const x of dtf.formatToParts(ms)) p[x.type] = x.value;
  switch (style) {
    case 'hm': return `${p.hour}:${p.minute}`;
    case 'md': return `${p.month}-${p.day}`;
    case 'mdhm': return `${p.month}-${p.day} ${p.hour}:${p.minute}`;
    case 'ymd': return `${p.year}-${p.month}-${p.day}`;
    case 'min': return `${p.year}-${p.month}-${p.day} ${p.hour}:${p.minute}`;
    default: return `${p.year}-${p.month}-${p.day} ${p.hour}:${p.minute}:${p.second}`;
  }
}
function setTime(el, ts, style) { el.textContent = fmt(ts, style); const ms = toMs(ts); if (Number.isFinite(ms) && el.tagName === 'TIME') el.dateTime = new Date(ms).toISOString(); }
const num = (v) => (typeof v === 'number' && Number.isFinite(v) ? v : 0);
function el(tag, attrs, text) {
  const e = document.createElement(tag);
  if (attrs) for (const k in attrs) e.setAttribute(k, attrs[k]);
  if (text != null) e.textContent = text;
  return e;
}

// ---- messages / indicators ----
function showMessage(text, isError) {
  const m = $('#message');
  m.textContent = text; m.className = 'msg' + (isError ? ' error' : ''); m.hidden = !text;
}
function setNote(text) { const n = $('#note'); n.textContent = text || ''; n.hidden = !text; }
function setLive(state) {
  const l = $('#live');
  l.dataset.state = state;
  l.textContent = { live: '实时', down: '已断开，重连中…', connecting: '连接中…', off: '未连接' }[state];
}

// ---- session: one per token; every async loop checks it is still current ----
class Stale extends Error {}
let cur = null;
let token = null;

function stopSession() {
  if (!cur) return;
  const s = cur; cur = null;
  clearTimeout(s.refreshTimer); clearTimeout(s.watchdog); clearInterval(s.tick);
  if (s.ctrl) s.ctrl.abort();
  announce('qingling:session', { active: false });
}
// The map view (/map.js) listens to these: a session starting or ending, and every summary.
function announce(name, detail) { document.dispatchEvent(new CustomEvent(name, { detail })); }

function start() {
  stopSession();
  if (!token) {
    setLive('off');
    showMessage('请输入访问令牌：在右上角“访问令牌”中粘贴，或在地址后加 #token=<令牌>。', false);
    $('#token-box').open = true;
    return;
  }
  showMessage('', false);
  $('#token-box').open = false;
  const s = cur = { refreshTimer: null, lastRefresh: 0, refreshing: false, again: false, journal: [], lastPos: 0,
    lastT: -Infinity, summary: null, ctrl: null, watchdog: null, tick: null };
  s.tick = setInterval(() => { if (s === cur) { scheduleRefresh(s); drawChart(s); } }, 60000);
  announce('qingling:session', { active: true });
  setLive('connecting');
  api(`/v1/ledger/summary?district=${D}`, s).then((j) => { if (s === cur) { render(s, j); scheduleRefresh(s); } })
    .catch((e) => { if (!(e instanceof Stale) && s === cur) setNote('汇总数据暂时无法获取，等待实时推送…'); });
  streamLoop(s);
}

function authFail(status, s) {
  if (s !== cur) return;
  stopSession();
  setLive('off');
  if (status === 401) {
    store('del');
    showMessage('令牌无效或已过期，请重新输入访问令牌。', true);
  } else {
    showMessage(`无权查看该区（${districtName}）：该令牌不能访问本区台账，请换用本区的访问令牌。`, true);
  }
  $('#token-box').open = true;
}

// `soft`: a 403 is this request's refusal only (the map's extras), not the end of the session.
async function api(path, s, accept, soft) {
  const r = await fetch(path, { headers: { Authorization: 'Bearer ' + token, Accept: accept || 'application/json' }, cache: 'no-store' });
  if (s !== cur) throw new Stale();
  if (r.status === 401 || (r.status === 403 && !soft)) { authFail(r.status, s); throw new Stale(); }
  if (!r.ok) throw Object.assign(new Error(`HTTP ${r.status}`), { status: r.status });
  const j = await r.json();
  if (s !== cur) throw new Stale();
  return j;
}

// ---- SSE over fetch (EventSource cannot send Authorization) ----
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function streamLoop(s) {
  let delay = 1000;
  while (s === cur) {
    const ctrl = new AbortController();
    s.ctrl = ctrl;
    const arm = () => { clearTimeout(s.watchdog); s.watchdog = setTimeout(() => ctrl.abort(), 45000); };
    try {
      arm();
      const r = await fetch(`/v1/ledger/stream?district=${D}`, { headers: { Authorization: 'Bearer ' + token,
        Accept: 'text/event-stream' }, cache: 'no-store', signal: ctrl.signal });
      if (s !== cur) return;
      if (r.status === 401 || r.status === 403) { authFail(r.status, s); return; }
      if (!r.ok || !r.body) throw new Error(`HTTP ${r.status}`);
      setLive('live');
      const reader = r.body.getReader();
      const dec = new TextDecoder();
      let buf = '', evName = '', data = [];
      for (;;) {
        const { value, done } = await reader.read();
        if (s !== cur) { ctrl.abort(); return; }
        if (done) break;
        arm();
        buf += dec.decode(value, { stream: true });
        let i;
        while ((i = buf.indexOf('\n')) >= 0) {
          let line = buf.slice(0, i); buf = buf.slice(i + 1);
          if (line.endsWith('\r')) line = line.slice(0, -1);
          if (line === '') {
            if (data.length && (evName || 'message') === 'summary') {
              delay = 1000;
              onSummary(s, data.join('\n'));
            }
            evName = ''; data = [];
            continue;
          }
          if (line[0] === ':') continue;
          const c = line.indexOf(':');
          const field = c < 0 ? line : line.slice(0, c);
          let val = c < 0 ? '' : line.slice(c + 1);
          if (val[0] === ' ') val = val.slice(1);
          if (field === 'event') evName = val;
          else if (field === 'data') data.push(val);
        }
      }
    } catch (e) {
      if (s !== cur) return;
    }
    clearTimeout(s.watchdog);
    if (s !== cur) return;
    setLive('down');
    await sleep(delay);
    delay = Math.min(delay * 2, 10000);
  }
}

function onSummary(s, text) {
  let j;
  try { j = JSON.parse(text); } catch (e) { setNote('收到无法解析的推送数据，已忽略'); return; }
  render(s, j);
  scheduleRefresh(s);
}

// ---- rendering the summary ----
function render(s, sum) {
  if (s !== cur || !sum || typeof sum !== 'object') return;
  if (s.summary && sum.as_of && s.summary.as_of && toMs(sum.as_of) < toMs(s.summary.as_of)) return;
  s.summary = sum;
  const open = num(sum.open), overdue = num(sum.overdue);
  const zero = sum.dynamic_zero === true || (sum.dynamic_zero == null && open === 0);
  const banner = $('#banner');
  banner.className = 'banner ' + (zero ? 'ok' : overdue > 0 ? 'bad' : 'warn');
  $('#zero-status').textContent = zero ? '动态清零 ✓' : '未清零';
  $('#district-open').textContent = String(open);
  const streets = Array.isArray(sum.streets) ? sum.streets : [];
  if (zero) {
    $('#zero-detail').textContent = sum.zero_since ? `清零于 ${fmt(sum.zero_since)}（北京时间）` : '全区无在账事项';
  } else {
    const n = streets.filter((r) => num(r.open) > 0).length;
    $('#zero-detail').textContent = `在账 ${open} 项，涉及 ${n} 个街道/乡镇` + (overdue ? `；其中超期 ${overdue} 项，请督办` : '');
  }
  for (const dd of document.querySelectorAll('[data-total]')) dd.textContent = String(num(sum[dd.dataset.total]));
  document.querySelector('.c-open').classList.toggle('hot', open > 0);
  document.querySelector('.c-pending').classList.toggle('hot', num(sum.closure_pending) > 0);
  document.querySelector('.c-overdue').classList.toggle('hot', overdue > 0);
  setTime($('#as-of'), sum.as_of);
  document.title = (zero ? '✓ ' : `(${open}) `) + title;
  renderStreets(streets);
  setNote('');
  announce('qingling:summary', sum);
}

const COLS = ['acknowledged', 'closure_pending', 'overdue', 'registered_total', 'written_off_total', 'rebounds'];
function makeStreetRow(code) {
  const tr = el('tr', { 'data-street': code });
  tr.append(el('th', { scope: 'row', 'data-field': 'name' }));
  const td = el('td'), box = el('div', { class: 'barcell' }), bar = el('div', { class: 'bar', 'aria-hidden': 'true' });
  bar.append(el('i'));
  box.append(bar, el('span', { 'data-field': 'open' }, '0'));
  td.append(box); tr.append(td);
  for (const c of COLS) tr.append(el('td', { class: 'n', 'data-field': c }, '0'));
  tr.append(el('td', { 'data-field': 'state' }));
  return tr;
}
function renderStreets(rows) {
  const tbody = $('#streets tbody');
  const byCode = new Map([...tbody.children].map((tr) => [tr.dataset.street, tr]));
  const max = Math.max(1, ...rows.map((r) => num(r.open)));
  const seen = new Set();
  rows.forEach((r, i) => {
    const code = String(r.street);
    seen.add(code);
    let tr = byCode.get(code);
    if (!tr) tr = makeStreetRow(code);
    if (tbody.children[i] !== tr) tbody.insertBefore(tr, tbody.children[i] || null);
    const open = num(r.open), overdue = num(r.overdue), pend = num(r.closure_pending);
    const zero = r.dynamic_zero === true || (r.dynamic_zero == null && open === 0);
    const state = zero ? 'ok' : overdue > 0 ? 'bad' : 'warn';
    tr.className = 's-' + state;
    tr.querySelector('[data-field=name]').textContent = r.name || code;
    tr.querySelector('[data-field=open]').textContent = String(open);
    tr.querySelector('.bar i').style.width = (open / max * 100).toFixed(1) + '%';
    for (const c of COLS) {
      const td = tr.querySelector(`[data-field=${c}]`);
      const v = num(r[c]);
      if (c === 'closure_pending' && v > 0) td.replaceChildren(el('span', { title: `${v} 项销账申请待审核` }, String(v)));
      else td.textContent = String(v);
      td.classList.toggle('hot-bad', c === 'overdue' && v > 0);
      td.classList.toggle('hot-pend', c === 'closure_pending' && v > 0);
    }
    const st = tr.querySelector('[data-field=state]');
    st.replaceChildren(el('span', { class: 'badge b-' + state }, zero ? '清零' : overdue > 0 ? '超期' : pend > 0 ? '待审' : '在办'));
    st.title = zero && r.zero_since ? `清零于 ${fmt(r.zero_since)}` : '';
  });
  for (const [code, tr] of byCode) if (!seen.has(code)) tr.remove();
}

// ---- lists and journal, refreshed at most once a second ----
function scheduleRefresh(s) {
  if (s !== cur || s.refreshTimer) return;
  const wait = Math.max(0, s.lastRefresh + 1000 - Date.now());
  s.refreshTimer = setTimeout(() => { s.refreshTimer = null; refresh(s); }, wait);
}
async function refresh(s) {
  if (s !== cur) return;
  if (s.refreshing) { s.again = true; return; }
  s.refreshing = true; s.lastRefresh = Date.now();
  try {
    await Promise.all([loadLists(s), loadJournal(s)]);
  } catch (e) {
    if (!(e instanceof Stale) && s === cur) setNote('列表或曲线暂时无法更新，将在下次变化时重试');
  } finally {
    s.refreshing = false;
    if (s.again && s === cur) { s.again = false; scheduleRefresh(s); }
  }
}
const category = (s) => (s.summary && s.summary.category) || 'basement_illegal_residence';
async function loadLists(s) {
  const cat = encodeURIComponent(category(s));
  const [od, pd] = await Promise.all([
    api(`/v1/ledger/items?status=open&overdue=true&limit=100&category=${cat}`, s),
    api(`/v1/ledger/items?status=closure_pending&limit=100&category=${cat}`, s),
  ]);
  fillList(s, 'overdue', od, '暂无超期事项 ✓');
  fillList(s, 'pending', pd, '暂无待审核的销账申请');
}
function streetName(s, code) {
  const rows = (s.summary && s.summary.streets) || [];
  const r = rows.find((x) => x.street === code);
  return (r && r.name) || code || '—';
}
function pointCell(p) {
  const td = el('td', { class: 'addr' });
  p = p || {};
  const parts = [p.community, p.building && (/[楼栋座号]$/.test(p.building) ? p.building : p.building + '号楼'), p.basement].filter(Boolean).join(' · ');
  td.append(document.createTextNode(p.address || parts || '—'));
  if (p.address && parts) td.append(el('small', null, parts));
  return td;
}
function timeCell(ts) { const td = el('td', { class: 'nw' }), t = el('time'); setTime(t, ts, 'mdhm'); t.title = fmt(ts); td.append(t); return td; }
function fillList(s, which, j, emptyText) {
  if (s !== cur) return;
  const items = (j && Array.isArray(j.items)) ? j.items : [];
  const tbody = $(`#${which}-list tbody`);
  $(`#${which}-count`).textContent = `（${items.length}${j && j.next_cursor ? '+' : ''}）`;
  $(`#${which}-more`).textContent = j && j.next_cursor ? '仅显示最新 100 项' : '';
  const rows = items.map((it) => {
    const tr = el('tr', { 'data-item': it.item_id || '' });
    tr.append(el('td', { class: 'nw' }, streetName(s, it.street)), pointCell(it.point));
    const tags = el('td');
    const od = Array.isArray(it.overdue) ? it.overdue : [];
    if (which === 'overdue') {
      tr.append(timeCell(it.registered_at), timeCell(it.respond_by), timeCell(it.resolve_by));
      for (const k of od) tags.append(el('span', { class: 'badge b-bad' }, k === 'respond' ? '响应超期' : k === 'resolve' ? '办结超期' : k), ' ');
    } else {
      tr.append(timeCell(it.registered_at), timeCell(it.acknowledged_at), timeCell(it.resolve_by));
      tags.append(el('span', { class: 'badge b-pend' }, '待审核'), ' ');
      if (od.length) tags.append(el('span', { class: 'badge b-bad' }, '已超期'), ' ');
    }
    if (it.rebound_of) tags.append(el('span', { class: 'badge b-warn' }, '反弹'), ' ');
    if (it.extension && it.extension.status === 'pending') tags.append(el('span', { class: 'badge b-warn' }, '延期申请中'));
    tr.append(tags);
    return tr;
  });
  if (!rows.length) { const tr = el('tr'); tr.append(el('td', { colspan: '6', class: 'empty' }, emptyText)); rows.push(tr); }
  tbody.replaceChildren(...rows);
}
async function loadJournal(s) {
  for (let page = 0; page < 1000; page++) {
    const j = await api(`/v1/ledger/entries?district=${D}&after=${s.lastPos}&limit=1000`, s);
    const es = (j && Array.isArray(j.entries)) ? j.entries : [];
    for (const e of es) {
      const pos = num(e.position);
      if (pos <= s.lastPos) continue;
      s.lastPos = pos;
      let t = toMs(e.at);
      if (!Number.isFinite(t)) continue;
      t = Math.max(t, s.lastT); s.lastT = t;
      s.journal.push({ t, d: e.kind === 'registration' ? 1 : e.kind === 'write_off' ? -1 : 0, cat: e.category });
    }
    if (j.next_after == null || !es.length) break;
  }
  drawChart(s);
}

// ---- chart: inline SVG step line ----
const NS = 'http://www.w3.org/2000/svg';
function sv(tag, attrs, parent, text) {
  const e = document.createElementNS(NS, tag);
  for (const k in attrs) e.setAttribute(k, attrs[k]);
  if (text != null) e.textContent = text;
  if (parent) parent.append(e);
  return e;
}
const MIN = 60e3, HOUR = 60 * MIN, DAY = 24 * HOUR, OFFSET = 8 * HOUR; // Asia/Shanghai is UTC+8, no DST
const STEPS = [MIN, 2 * MIN, 5 * MIN, 10 * MIN, 15 * MIN, 30 * MIN, HOUR, 2 * HOUR, 3 * HOUR, 6 * HOUR, 12 * HOUR,
  DAY, 2 * DAY, 7 * DAY, 14 * DAY, 30 * DAY, 91 * DAY, 182 * DAY, 365 * DAY];
function drawChart(s) {
  if (s !== cur) return;
  const box = $('#chart');
  const cat = category(s);
  const pts = s.journal.filter((e) => e.d !== 0 && (!e.cat || e.cat === cat));
  const W = Math.max(320, box.clientWidth || 640), H = Math.round(Math.min(380, Math.max(230, W * 0.42)));
  const m = { l: 44, r: 64, t: 18, b: 36 };
  const svg = sv('svg', { width: W, height: H, viewBox: `0 0 ${W} ${H}`, 'aria-hidden': 'true' });
  if (!pts.length) {
    sv('text', { x: W / 2, y: H / 2, 'text-anchor': 'middle' }, svg, '暂无台账流水');
    box.replaceChildren(svg); box.setAttribute('aria-label', '暂无台账流水'); return;
  }
  const now = Math.max(Date.now(), pts[pts.length - 1].t);
  let t0 = pts[0].t, t1 = now;
  if (t1 - t0 < 10 * MIN) t0 = t1 - 10 * MIN;
  t0 -= (t1 - t0) * 0.02;
  let c = 0, max = 0;
  const series = pts.map((p) => { c += p.d; max = Math.max(max, c); return [p.t, c]; });
  const yMax = Math.max(1, Math.ceil(max * 1.1));
  const pw = W - m.l - m.r, ph = H - m.t - m.b;
  const X = (t) => m.l + (t - t0) / (t1 - t0) * pw, Y = (v) => m.t + ph - v / yMax * ph;
  // y grid
  const yStep = Math.max(1, Math.ceil(yMax / 5));
  for (let v = 0; v <= yMax; v += yStep) {
    sv('line', { x1: m.l, x2: m.l + pw, y1: Y(v), y2: Y(v), stroke: v === 0 ? '#8a96a6' : '#e3e8ee' }, svg);
    sv('text', { x: m.l - 6, y: Y(v) + 4, 'text-anchor': 'end' }, svg, String(v));
  }
  // x ticks aligned to Beijing time
  const step = STEPS.find((st) => (t1 - t0) / st <= Math.max(2, Math.floor(pw / 90))) || STEPS[STEPS.length - 1];
  const multiDay = fmt(t0, 'ymd') !== fmt(t1, 'ymd');
  const style = step >= DAY ? 'md' : multiDay ? 'mdhm' : 'hm';
  for (let t = Math.ceil((t0 + OFFSET) / step) * step - OFFSET; t <= t1; t += step) {
    sv('line', { x1: X(t), x2: X(t), y1: m.t, y2: m.t + ph, stroke: '#eef1f5' }, svg);
    sv('text', { x: X(t), y: H - m.b + 18, 'text-anchor': 'middle' }, svg, fmt(t, style));
  }
  // step path
  let d = `M${X(pts[0].t).toFixed(1)},${Y(0).toFixed(1)}`, prev = 0;
  for (const [t, v] of series) { d += `H${X(t).toFixed(1)}V${Y(v).toFixed(1)}`; prev = v; }
  d += `H${X(now).toFixed(1)}`;
  const last = series[series.length - 1][1];
  const color = last === 0 ? '#17693a' : '#b3261e';
  sv('path', { d: `${d}V${Y(0).toFixed(1)}H${X(pts[0].t).toFixed(1)}Z`, fill: color, 'fill-opacity': '0.1', stroke: 'none' }, svg);
  sv('path', { d, fill: 'none', stroke: color, 'stroke-width': '2.2', 'stroke-linejoin': 'round' }, svg);
  sv('circle', { cx: X(now), cy: Y(prev), r: 4.5, fill: color }, svg);
  sv('text', { x: X(now) + 8, y: Y(prev) + 4, fill: color, 'font-weight': '700' }, svg, `现在 ${last}`);
  box.replaceChildren(svg);
  box.setAttribute('aria-label', `全区在账数变化：共 ${pts.length} 条流水，从 ${fmt(pts[0].t, 'min')} 至今，最高 ${max}，当前 ${last}`);
}
let resizeTimer = null;
window.addEventListener('resize', () => { clearTimeout(resizeTimer); resizeTimer = setTimeout(() => cur && drawChart(cur), 200); });

// ---- token handling (sessionStorage may be unavailable: then the token lives in memory only) ----
function store(op, v) {
  try {
    if (op === 'get') return sessionStorage.getItem(KEY);
    if (op === 'set') sessionStorage.setItem(KEY, v); else sessionStorage.removeItem(KEY);
  } catch (e) { /* storage disabled */ }
  return null;
}
function takeTokenFromHash() {
  const h = new URLSearchParams(location.hash.replace(/^#/, ''));
  const t = (h.get('token') || '').trim();
  if (!location.hash.includes('token=')) return false;
  history.replaceState(null, '', location.pathname + location.search);
  if (t) { token = t; store('set', t); }
  return !!t;
}
$('#token-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const t = $('#token-input').value.trim().replace(/^Bearer\s+/i, '');
  $('#token-input').value = '';
  if (!t) { $('#token-input').focus(); return; }
  token = t; store('set', t);
  start();
});
$('#token-clear').addEventListener('click', () => {
  store('del'); token = null; $('#token-input').value = ''; start();
});
window.addEventListener('hashchange', () => { if (takeTokenFromHash()) start(); });

// What the map view may use: the current session's authorised GET (the token never leaves this file),
// street names from the latest summary, and the time format.
window.qinglingDashboard = Object.freeze({
  district, districtName,
  active: () => cur !== null,
  get: (path, accept) => (cur ? api(path, cur, accept, true) : Promise.reject(new Stale())),
  isStale: (e) => e instanceof Stale,
  streetName: (code) => (cur ? streetName(cur, code) : code || '—'),
  fmt,
});

if (!takeTokenFromHash()) token = store('get');
start();
})();
