'use strict';
// The dashboard's map view (地图): every point (点位) of the district as a circle, hot-spot cells (H3) shaded
// by registrations, a point's file on click, and the 防止反弹 list; it follows the live summary stream that
// dashboard.js keeps open. Leaflet (/vendor/leaflet.js, bundled) is loaded the first time the map is shown.
// Nothing is requested from another origin unless /map-config.json names a tile server.
(() => {
const D = window.qinglingDashboard;
const $ = (s) => document.querySelector(s);
if (!D || !$('#view-map')) return;

const DIST = encodeURIComponent(D.district);
const FALLBACK_BBOX = [116.55, 39.62, 116.95, 40.03]; // 通州区, roughly; used only if the config has none
const COLORS = { overdue: '#c62828', open: '#ef8a00', clear: '#2e7d32', none: '#8a96a6' };
const HOT_RAMP = ['#fdd49e', '#fdae6b', '#f16913', '#d94801', '#8c2d04'];
const ITEM_STATUS = { registered: '待签收', acknowledged: '办理中（已签收）', closure_pending: '销账审核中', written_off: '已销账' };
const OUTCOME = { rectified: '整治完毕', unfounded: '核查不属实', returned: '退单' };
const CATEGORY = { basement_illegal_residence: '地下室违规住人', group_rental: '群租' };
const GRID_STEPS = [10, 5, 2, 1, 0.5, 0.2, 0.1, 0.05, 0.02, 0.01, 0.005, 0.002, 0.001, 0.0005, 0.0002, 0.0001];
const POINTS_LIMIT = 5000;

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  if (attrs) for (const k in attrs) if (attrs[k] != null) e.setAttribute(k, attrs[k]);
  for (const k of kids) if (k != null) e.append(k);
  return e;
}
const num = (v) => (typeof v === 'number' && Number.isFinite(v) ? v : 0);
const label = (words, code) => (code == null || code === '' ? '—' : words[code] || String(code));
const shortId = (id) => String(id || '').slice(-8) || '—';

const st = {
  view: 'overview',
  leaflet: null,      // promise of Leaflet (script + stylesheet)
  building: null,     // promise of the map
  map: null, L: null, cfg: null, bounds: null,
  grid: null, points: null, hot: null,
  markers: new Map(), // point_id -> circleMarker (marker.props = its properties)
  hotOn: true, scaled: false,
  loadedOnce: false, dirty: true,
  selected: null, fileSig: null, fileSeq: 0,
  tasks: {
    points: { gap: 500, timer: null, last: 0, busy: false, again: false, run: () => loadPoints() },
    slow: { gap: 2000, timer: null, last: 0, busy: false, again: false, run: () => Promise.all([loadHotspots(), loadRebounds()]) },
  },
};

// ------------------------------------------------------------------ view switching (总览 / 地图)
const tabs = [...document.querySelectorAll('#views [role=tab]')];
function setView(view, focus) {
  st.view = view === 'map' ? 'map' : 'overview';
  for (const t of tabs) {
    const on = t.dataset.view === st.view;
    t.setAttribute('aria-selected', String(on));
    t.tabIndex = on ? 0 : -1;
    $('#' + t.getAttribute('aria-controls')).hidden = !on;
    if (on && focus) t.focus();
  }
  try {
    const u = new URL(location.href);
    if (st.view === 'map') u.searchParams.set('view', 'map'); else u.searchParams.delete('view');
    history.replaceState(history.state, '', u.pathname + u.search + u.hash);
  } catch (e) { /* keep the address as it is */ }
  if (st.view === 'map') showMap();
  else window.dispatchEvent(new Event('resize')); // the overview's curve redraws at its real width
}
for (const t of tabs) {
  t.addEventListener('click', () => setView(t.dataset.view));
  t.addEventListener('keydown', (ev) => {
    const i = tabs.indexOf(t);
    const j = ev.key === 'ArrowRight' ? i + 1 : ev.key === 'ArrowLeft' ? i - 1 : ev.key === 'Home' ? 0 : ev.key === 'End' ? tabs.length - 1 : null;
    if (j == null) return;
    ev.preventDefault();
    setView(tabs[(j + tabs.length) % tabs.length].dataset.view, true);
  });
}
$('#views').hidden = false;

function status(text, isError) {
  const s = $('#map-status');
  s.textContent = text || '';
  s.hidden = !text;
  s.classList.toggle('error', !!isError);
}

// ------------------------------------------------------------------ Leaflet and the map itself
function loadLeaflet() {
  if (!st.leaflet) {
    const load = (make) => new Promise((res, rej) => {
      const e = make();
      e.addEventListener('load', res, { once: true });
      e.addEventListener('error', () => rej(new Error('load ' + (e.src || e.href))), { once: true });
      document.head.append(e);
    });
    st.leaflet = Promise.all([
      load(() => el('link', { rel: 'stylesheet', href: '/vendor/leaflet.css' })),
      load(() => el('script', { src: '/vendor/leaflet.js' })),
    ]).then(() => {
      if (!window.L || !window.L.map) throw new Error('Leaflet missing');
      return window.L;
    });
    st.leaflet.catch(() => { st.leaflet = null; });
  }
  return st.leaflet;
}

async function loadConfig() {
  let cfg = {};
  try {
    const r = await fetch(`/map-config.json?district=${DIST}`, { cache: 'no-store', headers: { Accept: 'application/json' } });
    if (r.ok) cfg = await r.json();
  } catch (e) { /* defaults below */ }
  const bbox = Array.isArray(cfg.bbox) && cfg.bbox.length === 4 && cfg.bbox.every((v) => typeof v === 'number' && Number.isFinite(v))
    && cfg.bbox[0] < cfg.bbox[2] && cfg.bbox[1] < cfg.bbox[3] ? cfg.bbox : FALLBACK_BBOX;
  const tiles = typeof cfg.tiles === 'string' && /^https?:\/\//i.test(cfg.tiles) ? cfg.tiles : null;
  return { bbox, tiles, attribution: typeof cfg.attribution === 'string' ? cfg.attribution : null };
}

function escapeHtml(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
}

function buildMap() {
  if (!st.building) {
    st.building = (async () => {
      status('正在加载地图…');
      const [L, cfg] = await Promise.all([loadLeaflet(), loadConfig()]);
      st.L = L; st.cfg = cfg;
      const box = $('#map');
      const map = L.map(box, { zoomControl: false, attributionControl: true, minZoom: 6, maxZoom: 19,
        zoomSnap: 0.25, zoomDelta: 0.5, wheelPxPerZoomLevel: 90, preferCanvas: false });
      st.map = map;
      map.attributionControl.setPrefix('Leaflet');
      L.control.zoom({ position: 'topleft', zoomInTitle: '放大', zoomOutTitle: '缩小' }).addTo(map);
      L.control.scale({ imperial: false, position: 'bottomleft' }).addTo(map);
      st.bounds = L.latLngBounds([cfg.bbox[1], cfg.bbox[0]], [cfg.bbox[3], cfg.bbox[2]]);
      map.fitBounds(st.bounds, { padding: [12, 12] });
      map.createPane('grid').style.zIndex = '250';
      map.getPane('grid').style.pointerEvents = 'none';
      map.createPane('hotspots').style.zIndex = '410';
      map.createPane('points').style.zIndex = '420';
      if (cfg.tiles) {
        box.classList.remove('plain');
        L.tileLayer(cfg.tiles, { maxZoom: 19, attribution: cfg.attribution ? escapeHtml(cfg.attribution) : '' }).addTo(map);
      } else {
        box.classList.add('plain');
        st.grid = L.layerGroup().addTo(map);
        map.on('moveend zoomend resize', drawGrid);
        drawGrid();
      }
      L.rectangle(st.bounds, { pane: 'grid', interactive: false, fill: false, color: '#6f8199', weight: 1.5, dashArray: '6 5' }).addTo(map);
      st.points = L.layerGroup().addTo(map);
      map.on('zoomend', () => { for (const [id, m] of st.markers) m.setStyle(markerStyle(m.props, id === st.selected)); });
      st.hot = L.layerGroup();
      if (st.hotOn) st.hot.addTo(map);
      status('');
      return map;
    })();
    st.building.catch(() => { st.building = null; });
  }
  return st.building;
}

// A light graticule (every 0.01°, 0.02°, … as the zoom asks), so an empty background still shows scale and motion.
function drawGrid() {
  const { map, L, grid } = st;
  if (!map || !grid) return;
  const b = map.getBounds();
  const s = b.getSouth(), n = b.getNorth(), w = b.getWest(), e = b.getEast();
  const span = Math.max(n - s, e - w);
  const step = GRID_STEPS.find((g) => span / g >= 4) || GRID_STEPS[GRID_STEPS.length - 1];
  const lines = [];
  const dec = Math.max(0, Math.ceil(-Math.log10(step)) + 1);
  const at = (k) => Number((k * step).toFixed(dec));
  for (let k = Math.ceil(w / step); at(k) <= e && lines.length < 60; k++) lines.push([[s - span, at(k)], [n + span, at(k)]]);
  for (let k = Math.ceil(s / step); at(k) <= n && lines.length < 120; k++) lines.push([[at(k), w - span], [at(k), e + span]]);
  grid.clearLayers();
  if (lines.length) grid.addLayer(L.polyline(lines, { pane: 'grid', interactive: false, color: '#c9d3de', weight: 1, opacity: 0.9 }));
}

async function showMap() {
  if (!D.active()) { status('请先输入访问令牌，地图才能显示点位。'); return; }
  let map;
  try {
    map = await buildMap();
  } catch (e) {
    status('地图组件加载失败（/vendor/leaflet.js），请刷新页面重试。', true);
    return;
  }
  if (st.view !== 'map') return;
  map.invalidateSize({ pan: false });
  if (!st.loadedOnce || st.dirty) {
    st.dirty = false;
    schedule('points', true);
    schedule('slow', true);
  }
}

// ------------------------------------------------------------------ refreshing: points ≤ 1 per 500 ms, hot spots ≤ 1 per 2 s
function schedule(name, now) {
  const t = st.tasks[name];
  if (t.busy) { t.again = true; return; }
  if (t.timer) { if (!now) return; clearTimeout(t.timer); t.timer = null; }
  const wait = now ? 0 : Math.max(0, t.last + t.gap - Date.now());
  t.timer = setTimeout(async () => {
    t.timer = null;
    if (st.view !== 'map' || !st.map || !D.active()) { st.dirty = true; return; }
    t.busy = true; t.last = Date.now();
    try { await t.run(); } catch (e) {
      if (D.isStale(e)) { /* the session changed */ } else if (e && e.status === 403) status('该令牌无权查看本区点位。', true);
      else status('地图数据暂时无法更新，将在下次变化时重试。', true);
    } finally {
      t.busy = false;
      if (t.again) { t.again = false; schedule(name); }
    }
  }, wait);
}

document.addEventListener('qingling:summary', () => {
  if (st.view === 'map' && st.map) { schedule('points'); schedule('slow'); } else st.dirty = true;
});
document.addEventListener('qingling:session', (ev) => {
  // A new or ended session: forget what the last token could see.
  st.fileSeq++;
  st.selected = null; st.fileSig = null;
  clearPoints();
  if (st.hot) st.hot.clearLayers();
  $('#rebound-list').replaceChildren();
  showFilePlaceholder();
  st.loadedOnce = false; st.dirty = true;
  $('#map-counts').textContent = '';
  $('#map-nopos').hidden = true;
  $('#map').removeAttribute('data-points-loaded');
  $('#map').removeAttribute('data-hotspots-loaded');
  if (ev.detail && ev.detail.active) { status(''); if (st.view === 'map') showMap(); }
  else status('请先输入访问令牌，地图才能显示点位。');
});

// ------------------------------------------------------------------ points
function lngLat(f) {
  const g = f && f.geometry;
  if (!g || g.type !== 'Point' || !Array.isArray(g.coordinates)) return null;
  const [lng, lat] = g.coordinates;
  if (typeof lng !== 'number' || typeof lat !== 'number' || !Number.isFinite(lng) || !Number.isFinite(lat)
    || Math.abs(lng) > 180 || Math.abs(lat) > 90) return null;
  return [lat, lng];
}
function pointState(p) {
  if (num(p.open_items) > 0) return p.overdue === true ? 'overdue' : 'open';
  return num(p.items_total) > 0 ? 'clear' : 'none';
}
const STATE_WORDS = { overdue: '在账·超期', open: '在账', clear: '已全部销账', none: '无事项' };
// With many points the circles shrink at district zoom (down to 45 % at zoom 10 and below) and the
// cleared ones fade, so the open ones and the hot spots under them stay visible.
function radiusScale() {
  if (!st.map || st.markers.size <= 300) return 1;
  return Math.max(0.45, Math.min(1, 0.45 + (st.map.getZoom() - 10) * 0.55 / 4));
}
function markerStyle(p, selected) {
  const state = pointState(p);
  const k = radiusScale();
  return { radius: (4 + Math.min(7, 2 * Math.log2(1 + num(p.complaints_total)))) * k, color: selected ? '#142338' : '#ffffff',
    weight: selected ? 3 : k < 1 ? 0.8 : 1.5, fillColor: COLORS[state], opacity: state === 'clear' && k < 1 ? 0.6 : 1,
    fillOpacity: state === 'clear' || state === 'none' ? (k < 1 ? 0.5 : 0.75) : 0.9 };
}
function address(p) {
  const b = p.building ? (/[楼栋座号]$/.test(p.building) ? p.building : p.building + '号楼') : null;
  return [p.community, b, p.basement].filter(Boolean).join(' · ') || p.address || '（无地址）';
}
function tooltipFor(m) {
  const p = m.props;
  return el('div', { class: 'map-tip' }, el('strong', null, address(p)), el('br'),
    (num(p.open_items) ? `在账 ${num(p.open_items)} 项${p.overdue === true ? '（有超期）' : ''}` : STATE_WORDS[pointState(p)])
    + ` · 累计 ${num(p.items_total)} 项 · 诉求 ${num(p.complaints_total)} 次` + (num(p.rebounds) ? ` · 反弹 ${num(p.rebounds)} 次` : ''));
}
function clearPoints() {
  if (st.points) st.points.clearLayers();
  st.markers.clear();
}

async function loadPoints() {
  const fc = await D.get(`/v1/ledger/points?district=${DIST}&status=all&limit=${POINTS_LIMIT}`, 'application/geo+json, application/json');
  const feats = fc && Array.isArray(fc.features) ? fc.features : [];
  const { L } = st;
  const seen = new Set();
  let noPos = 0, open = 0, overdue = 0;
  // The answer is newest first; draw oldest first so that the newest point lies on top (later markers
  // are appended, so on top too).
  for (let i = feats.length - 1; i >= 0; i--) {
    const f = feats[i];
    const p = (f && f.properties) || {};
    const id = String(p.point_id != null ? p.point_id : f && f.id != null ? f.id : '');
    if (!id) continue;
    const stt = pointState(p);
    if (stt === 'overdue') { overdue++; open++; } else if (stt === 'open') open++;
    const ll = lngLat(f);
    if (!ll) { noPos++; continue; }
    seen.add(id);
    let m = st.markers.get(id);
    if (!m) {
      m = L.circleMarker(ll, { pane: 'points', bubblingMouseEvents: false, ...markerStyle(p, id === st.selected) });
      m.props = p;
      m.bindTooltip(() => tooltipFor(m), { direction: 'top', offset: [0, -6] });
      m.on('click', () => openFile(id, false));
      st.points.addLayer(m);
      const e = m.getElement();
      if (e) {
        e.setAttribute('data-testid', 'map-point');
        e.setAttribute('data-point-id', id);
        e.setAttribute('data-state', stt);
      }
      st.markers.set(id, m);
    } else {
      const old = m.getLatLng();
      if (old.lat !== ll[0] || old.lng !== ll[1]) m.setLatLng(ll);
      m.props = p;
      m.setStyle(markerStyle(p, id === st.selected));
      const e = m.getElement();
      if (e) e.setAttribute('data-state', stt);
    }
  }
  for (const [id, m] of st.markers) if (!seen.has(id)) { st.points.removeLayer(m); st.markers.delete(id); }
  if (st.markers.size > 300 !== st.scaled) {
    st.scaled = st.markers.size > 300;
    for (const [id, m] of st.markers) m.setStyle(markerStyle(m.props, id === st.selected));
  }
  st.loadedOnce = true;
  $('#map').setAttribute('data-points-loaded', 'true');
  const parts = [`点位 ${feats.length} 个`, `在账 ${open}`, `超期 ${overdue}`];
  $('#map-counts').textContent = parts.join(' · ') + (feats.length >= POINTS_LIMIT ? `（仅显示前 ${POINTS_LIMIT} 个）` : '');
  const np = $('#map-nopos');
  np.textContent = noPos ? `${noPos} 个点位无坐标` : '';
  np.hidden = !noPos;
  status('');
  // The open file follows its point's changes.
  if (st.selected) {
    const m = st.markers.get(st.selected);
    const f = m ? null : feats.find((x) => x && x.properties && String(x.properties.point_id) === st.selected);
    const p = m ? m.props : f && f.properties;
    if (p && sig(p) !== st.fileSig) openFile(st.selected, false, true);
  }
}
const sig = (p) => [p.open_items, p.items_total, p.complaints_total, p.rebounds, p.overdue, p.last_registered_at].join('|');

// ------------------------------------------------------------------ hot spots
function classes(max) {
  if (max <= 5) return Array.from({ length: Math.max(1, max) }, (_, i) => i + 1);
  const nice = (v) => (v < 10 ? Math.round(v) : Math.round(v / 10 ** (Math.floor(Math.log10(v)) - 1)) * 10 ** (Math.floor(Math.log10(v)) - 1));
  const out = [1];
  for (let i = 1; i < 5; i++) { const v = nice(max ** (i / 5)); if (v > out[out.length - 1] && v <= max) out.push(v); }
  return out;
}
function rampColor(i, n) { return HOT_RAMP[n <= 1 ? 2 : Math.round(i * (HOT_RAMP.length - 1) / (n - 1))]; }

async function loadHotspots() {
  if (!st.hotOn) return;
  let fc;
  try {
    fc = await D.get(`/v1/ledger/hotspots?district=${DIST}&days=90&resolution=8`, 'application/geo+json, application/json');
  } catch (e) {
    if (e && e.status === 403) { $('#hot-legend').replaceChildren(el('span', { class: 'muted' }, '该令牌无权查看热点')); return; }
    throw e;
  }
  if (!st.hotOn) return;
  const feats = (fc && Array.isArray(fc.features) ? fc.features : [])
    .filter((f) => f && f.geometry && (f.geometry.type === 'Polygon' || f.geometry.type === 'MultiPolygon'));
  const max = Math.max(0, ...feats.map((f) => num(f.properties && f.properties.registrations)));
  const cls = classes(max);
  const classOf = (v) => { let k = 0; for (let i = 0; i < cls.length; i++) if (v >= cls[i]) k = i; return k; };
  const { L } = st;
  const layer = L.geoJSON({ type: 'FeatureCollection', features: feats }, {
    pane: 'hotspots',
    style: (f) => {
      const c = rampColor(classOf(num(f.properties && f.properties.registrations)), cls.length);
      return { color: c, weight: 1, opacity: 0.9, fillColor: c, fillOpacity: 0.45 };
    },
    onEachFeature: (f, l) => {
      const p = f.properties || {};
      l.bindTooltip(() => el('div', { class: 'map-tip' }, el('strong', null, `热点 近 90 天登记 ${num(p.registrations)} 次`), el('br'),
        `在账 ${num(p.open)} · 反弹 ${num(p.rebounds)} · 点位 ${num(p.points)}`), { sticky: true });
    },
  });
  st.hot.clearLayers();
  st.hot.addLayer(layer);
  $('#map').setAttribute('data-hotspots-loaded', 'true');
  layer.eachLayer((l) => {
    const e = l.getElement && l.getElement();
    const p = (l.feature && l.feature.properties) || {};
    if (e) { e.setAttribute('data-testid', 'hotspot-cell'); e.setAttribute('data-cell', String(p.cell || '')); }
  });
  const lg = $('#hot-legend');
  if (!feats.length) { lg.replaceChildren(el('span', { class: 'muted' }, '近 90 天无登记')); return; }
  lg.replaceChildren(...cls.map((lo, i) => {
    const hi = i + 1 < cls.length ? cls[i + 1] - 1 : max;
    return el('span', { class: 'lg' }, el('i', { class: 'sw', style: `background:${rampColor(i, cls.length)}` }), lo === hi ? `${lo}` : `${lo}–${hi}`);
  }), el('span', { class: 'muted' }, '次登记 / 格'));
}
$('#hotspot-toggle').addEventListener('change', (ev) => {
  st.hotOn = ev.target.checked;
  $('#hot-legend').hidden = !st.hotOn;
  if (!st.map) return;
  if (st.hotOn) { st.hot.addTo(st.map); schedule('slow', true); } else { st.hot.remove(); st.hot.clearLayers(); }
});
$('#map-fit').addEventListener('click', () => { if (st.map && st.bounds) st.map.fitBounds(st.bounds, { padding: [12, 12] }); });

// ------------------------------------------------------------------ 防止反弹: points ranked by rebounds
async function loadRebounds() {
  const fc = await D.get(`/v1/ledger/points?district=${DIST}&order=rebounds&limit=10`, 'application/geo+json, application/json');
  const feats = fc && Array.isArray(fc.features) ? fc.features : [];
  const ol = $('#rebound-list');
  if (!feats.length) { ol.replaceChildren(el('li', { class: 'empty' }, '暂无点位')); return; }
  ol.replaceChildren(...feats.map((f) => {
    const p = (f && f.properties) || {};
    const id = String(p.point_id != null ? p.point_id : f.id);
    const b = el('button', { type: 'button', 'data-point-id': id, class: num(p.rebounds) ? 'hot' : '' },
      el('span', { class: 'rb-addr' }, address(p)),
      el('span', { class: 'rb-sub' }, `${D.streetName(p.street)} · 反弹 `, el('b', null, String(num(p.rebounds))),
        ` 次 · 上账 ${num(p.items_total)} 次 · 诉求 ${num(p.complaints_total)} 次` + (lngLat(f) ? '' : ' · 无坐标')));
    b.addEventListener('click', () => openFile(id, true));
    return el('li', null, b);
  }));
}

// ------------------------------------------------------------------ a point's file (点位档案)
function showFilePlaceholder() {
  const box = $('#point-file');
  box.replaceChildren(el('h2', null, '点位档案'), el('p', { class: 'muted' }, '点击地图上的点位，或下方“防止反弹”中的一项，查看该点位的全部事项。'));
}
function highlight(id) {
  const prev = st.selected && st.markers.get(st.selected);
  if (prev) prev.setStyle(markerStyle(prev.props, false));
  st.selected = id;
  const m = id && st.markers.get(id);
  if (m) { m.setStyle(markerStyle(m.props, true)); m.bringToFront(); }
  return m;
}
async function openFile(id, pan, quiet) {
  const seq = ++st.fileSeq;
  const m = highlight(id);
  if (pan && m && st.map) st.map.setView(m.getLatLng(), Math.max(st.map.getZoom(), 15));
  const box = $('#point-file');
  if (!quiet) {
    box.replaceChildren(el('h2', null, '点位档案'), el('p', { class: 'muted' }, '正在加载…'));
    if (pan || window.matchMedia('(max-width: 900px)').matches) box.scrollIntoView({ block: 'nearest', behavior: 'smooth' });
  }
  let j;
  try {
    j = await D.get(`/v1/ledger/points/${encodeURIComponent(id)}`);
  } catch (e) {
    if (seq !== st.fileSeq || D.isStale(e)) return;
    box.replaceChildren(el('h2', null, '点位档案'), el('p', { class: 'msg error' }, /404/.test(String(e.message)) ? '未找到该点位。' : '点位档案暂时无法获取，请稍后再试。'));
    return;
  }
  if (seq !== st.fileSeq) return;
  renderFile(id, j || {});
}
function fact(dl, k, v) { dl.append(el('dt', null, k), el('dd', null, v)); }
function renderFile(id, j) {
  const p = Object.assign({}, j.properties || {}, j);
  st.fileSig = sig(p);
  const box = $('#point-file');
  const close = el('button', { type: 'button', class: 'pf-close', 'aria-label': '关闭点位档案', title: '关闭' }, '×');
  close.addEventListener('click', () => { st.fileSeq++; highlight(null); st.fileSig = null; showFilePlaceholder(); });
  const head = el('h2', null, '点位档案', close);
  const addr = el('p', { class: 'pf-addr' }, el('strong', null, address(p)),
    el('small', null, [D.streetName(p.street), p.district === D.district ? D.districtName : p.district].filter(Boolean).join(' · ')
      + (p.address ? ` · ${p.address}` : '')));
  const loc = p.location && typeof p.location === 'object' ? p.location : null;
  const m = st.markers.get(id);
  const lat = loc && typeof loc.lat === 'number' ? loc.lat : m ? m.getLatLng().lat : null;
  const lng = loc && typeof loc.long === 'number' ? loc.long : loc && typeof loc.lng === 'number' ? loc.lng : m ? m.getLatLng().lng : null;
  const items = (Array.isArray(j.items) ? j.items : []).slice()
    .sort((a, b) => (Date.parse(a.registered_at) || 0) - (Date.parse(b.registered_at) || 0));
  // The file's own totals when it gives them, else the items' sums.
  const rooms = typeof p.rooms_cleared === 'number' ? p.rooms_cleared : items.reduce((s, it) => s + num(it.rooms_cleared), 0);
  const area = typeof p.partition_area_m2 === 'number' ? p.partition_area_m2 : items.reduce((s, it) => s + num(it.partition_area_m2), 0);
  const dl = el('dl', { class: 'pf-facts' });
  fact(dl, '位置', lat != null && lng != null ? `${lat.toFixed(6)}, ${lng.toFixed(6)}（纬度, 经度；WGS-84）` : '无坐标');
  fact(dl, '在账事项', String(num(p.open_items)) + (p.overdue ? '（有超期）' : ''));
  fact(dl, '累计事项', String(num(p.items_total) || items.length));
  fact(dl, '诉求', `${num(p.complaints_total)} 次`);
  fact(dl, '反弹', `${num(p.rebounds)} 次`);
  fact(dl, '最近上账', p.last_registered_at ? D.fmt(p.last_registered_at) : '—');
  fact(dl, '清理房间（累计）', `${rooms} 间`);
  fact(dl, '拆除隔断（累计）', `${Number(area.toFixed(2))} m²`);
  const ol = el('ol', { class: 'pf-items' });
  for (const it of items) {
    const badges = el('span', { class: 'pf-badges' },
      el('span', { class: 'badge ' + (it.status === 'written_off' ? 'b-ok' : it.status === 'closure_pending' ? 'b-pend' : 'b-warn') }, label(ITEM_STATUS, it.status)));
    if (it.rebound_of) badges.append(' ', el('span', { class: 'badge b-bad', title: `前一事项 ${it.rebound_of}` }, `反弹（前项 ${shortId(it.rebound_of)}）`));
    const cids = Array.isArray(it.complaint_ids) ? it.complaint_ids : [];
    const bits = [`诉求 ${cids.length} 次`];
    if (it.rooms_cleared != null) bits.push(`清理房间 ${num(it.rooms_cleared)} 间`);
    if (it.partition_area_m2 != null) bits.push(`拆除隔断 ${num(it.partition_area_m2)} m²`);
    ol.append(el('li', { 'data-item': it.item_id || '' },
      el('div', { class: 'pf-line' }, el('code', { title: it.item_id || '' }, `台账 ${shortId(it.item_id)}`), ' ', label(CATEGORY, it.category), ' ', badges),
      el('div', { class: 'pf-line muted' }, `上账 ${D.fmt(it.registered_at, 'min')}`,
        it.written_off_at ? ` → 销账 ${D.fmt(it.written_off_at, 'min')}（${label(OUTCOME, it.write_off_kind)}）` : ''),
      el('div', { class: 'pf-line muted' }, bits.join(' · '))));
  }
  if (!items.length) ol.append(el('li', { class: 'muted' }, '暂无事项'));
  box.replaceChildren(head, addr, dl, el('h3', null, `事项（${items.length}，按上账时间）`), ol);
}

// ------------------------------------------------------------------ start
showFilePlaceholder();
if (!D.active()) status('请先输入访问令牌，地图才能显示点位。');
if (new URLSearchParams(location.search).get('view') === 'map') setView('map');
})();
