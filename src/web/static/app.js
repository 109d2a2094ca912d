// luo dashboard: renders snapshots (GET /api/snapshot, then Server-Sent Events on /api/events).
// Plain browser JavaScript, no dependencies: the network may be closed.

import { $, h } from './dom.js';

const PAGE = 4096;
const COLORS = {
  free: '#1b2540',
  reserved: '#64748b',
  kernel: '#8b5cf6',
  scratch: '#0f766e',
  allocated: '#3b82f6',
  incoming: '#f59e0b',
  tracker: '#f43f5e',
};
const PHASE_COLORS = {
  serialize: '#a78bfa',
  'hand-over': '#f472b6',
  'boot + KHO walk': '#fb923c',
  'LUO restore': '#facc15',
  retrieve: '#34d399',
  finish: '#60a5fa',
};
const PHASES = Object.keys(PHASE_COLORS);
const CONTENT_COLORS = { poison: '#ef4444', data: '#cbd5e1' };

function colorOf(cat) {
  if (COLORS[cat]) return COLORS[cat];
  const m = /^p(\d+)$/.exec(cat);
  if (m) {
    // Preserved blocks: greens, lighter for small orders, deeper for large ones.
    const o = Math.min(Number(m[1]), 18);
    const light = 72 - o * 2.6;
    return `hsl(${95 + o * 4}, 78%, ${light}%)`;
  }
  return '#94a3b8';
}

function fmtBytes(n) {
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return `${n >= 100 || Number.isInteger(n) ? Math.round(n) : n.toFixed(n >= 10 ? 1 : 2)} ${u[i]}`;
}
const fmtPages = (p) => fmtBytes(p * PAGE);
const hex = (pfn) => '0x' + (pfn * PAGE).toString(16);
function fmtMs(ms) {
  if (ms >= 1000) return `${(ms / 1000).toFixed(2)} s`;
  if (ms >= 10) return `${ms.toFixed(0)} ms`;
  return `${ms.toFixed(1)} ms`;
}

// ------------------------------------------------------------------------------ state

let snap = null;
let zoom = null; // { start, end } in pfns, or null for the whole RAM
const zoomStack = [];
let khoTab = 'out';
let mapGeom = null;

// ------------------------------------------------------------------------------ header, cards

function renderHeader(s) {
  $('source').textContent = `${s.source.label}` + (s.daemon ? ` · pid ${s.daemon.pid} · generation ${s.daemon.generation}` : '');
  const st = $('status');
  st.classList.toggle('error', !!s.error);
  st.replaceChildren(h('b', {}, s.error ? 'error: ' : ''), s.error || s.status || '', h('span', { class: 'seq' }, `  · update #${s.seq} at ${new Date(s.time).toLocaleTimeString()}`));
}

function card(k, v, d, hl) {
  return h('div', { class: 'card' + (hl ? ' hl' : '') }, h('div', { class: 'k' }, k), h('div', { class: 'v', title: String(v) }, v), h('div', { class: 'd', title: d || '' }, d || ''));
}

function renderCards(m) {
  const el = $('cards');
  if (!m) { el.replaceChildren(card('machine', '—', 'no machine yet')); return; }
  const out = m.sessions.outgoing, inc = m.sessions.incoming;
  const files = out.reduce((a, s) => a + s.files.length, 0);
  const kho = m.kho;
  el.replaceChildren(
    card('liveupdate_num', String(m.liveupdateNum), m.handover ? `hand-over boot · kexec #${m.kexecCount}` : 'cold boot', true),
    card('kernel', m.release, `${m.profile} · ${m.state}${m.panic ? ' · PANIC' : ''}`),
    card('RAM', fmtBytes(Number(BigInt(m.ramSize))), `${m.memory.pages.toLocaleString()} pages`),
    card('sessions', `${out.length} ⇢ / ${inc.length} ⇠`, `${files} outgoing file(s)`),
    card('preserved', kho ? fmtPages(kho.preservedPages) : '—', kho ? `${kho.preservedBlocks} blocks · tracker ${kho.trackerPages} pages` : 'KHO off'),
    card('poisoned', fmtPages(m.memory.contentTotals.poison), `by the last kexec · ${fmtPages(m.memory.contentTotals.data)} data`),
    card('boot', fmtMs(m.bootMs), m.luo ? `/dev/liveupdate ${m.luo.deviceRegistered ? (m.luo.deviceOpen ? 'open' : 'closed') : 'absent'}` : 'LUO off'),
  );
}

// ------------------------------------------------------------------------------ memory map

function renderLegend(m) {
  const items = m.memory.categories.map((c) =>
    h('span', { class: 'item', title: `${c.pages.toLocaleString()} pages` }, swatch(colorOf(c.id)), c.label, h('span', { class: 'n' }, fmtPages(c.pages))));
  const ct = m.memory.contentTotals;
  items.push(h('span', { class: 'item', title: 'page contents destroyed by the kexec (the thin strip under each row)' }, h('span', { class: 'sw poison' }), 'poisoned', h('span', { class: 'n' }, fmtPages(ct.poison))));
  items.push(h('span', { class: 'item', title: 'pages holding data (strip)' }, swatch(CONTENT_COLORS.data), 'data', h('span', { class: 'n' }, fmtPages(ct.data))));
  $('legend').replaceChildren(...items);
}

function swatch(color) {
  const s = h('span', { class: 'sw' });
  s.style.background = color;
  return s;
}

/**
 * Accumulates segments into `bins` equal bins over [start, end): per bin, pages by category index.
 * O(segments + bins): each segment is spread over the bins it overlaps.
 */
function binSegments(segs, start, end, bins, catIndex) {
  const nc = catIndex.size;
  const acc = new Float64Array(bins * nc);
  const per = (end - start) / bins;
  const addRange = (s, e, ci, weight) => {
    s = Math.max(s, start); e = Math.min(e, end);
    if (e <= s) return;
    let b = Math.floor((s - start) / per);
    const bLast = Math.min(bins - 1, Math.floor((e - start) / per - 1e-9));
    for (; b <= bLast; b++) {
      const bs = start + b * per, be = bs + per;
      const ov = Math.min(e, be) - Math.max(s, bs);
      if (ov > 0) acc[b * nc + ci] += ov * weight;
    }
  };
  for (const g of segs) {
    if (g.s + g.n <= start || g.s >= end) continue;
    if (g.c !== undefined) {
      if (!catIndex.has(g.c)) catIndex.set(g.c, catIndex.size);
      const ci = catIndex.get(g.c);
      if (ci < nc) addRange(g.s, g.s + g.n, ci, 1);
    } else if (g.mix) {
      for (const [c, p] of Object.entries(g.mix)) {
        const ci = catIndex.get(c);
        if (ci !== undefined && ci < nc) addRange(g.s, g.s + g.n, ci, p / g.n);
      }
    }
  }
  return acc;
}

let poisonPattern = null;
function getPoisonPattern(ctx, dpr) {
  if (poisonPattern) return poisonPattern;
  const c = document.createElement('canvas');
  const n = Math.max(4, Math.round(6 * dpr));
  c.width = n; c.height = n;
  const x = c.getContext('2d');
  x.fillStyle = '#3f1010'; x.fillRect(0, 0, n, n);
  x.strokeStyle = '#b91c1c'; x.lineWidth = Math.max(1, n / 3);
  x.beginPath(); x.moveTo(-n, n); x.lineTo(n, -n); x.moveTo(0, 2 * n); x.lineTo(2 * n, 0); x.moveTo(0, n); x.lineTo(n, 0); x.stroke();
  poisonPattern = ctx.createPattern(c, 'repeat');
  return poisonPattern;
}

function renderMap(m) {
  const canvas = $('map');
  const wrap = $('map-wrap');
  const dpr = window.devicePixelRatio || 1;
  const cssW = Math.max(320, wrap.clientWidth);
  const pages = m.memory.pages;
  const start = zoom ? zoom.start : 0;
  const end = zoom ? zoom.end : pages;
  const rows = Math.max(1, Math.min(16, end - start));
  const labelW = 108;
  const trackW = cssW - labelW - 4;
  const bandH = 22, stripH = 5, gap = 7, rowH = bandH + stripH + gap;
  const cssH = rows * rowH + 4;
  canvas.width = Math.round(cssW * dpr);
  canvas.height = Math.round(cssH * dpr);
  canvas.style.height = `${cssH}px`;
  const ctx = canvas.getContext('2d');
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.clearRect(0, 0, canvas.width, canvas.height);

  // Category order: drawing bottom-up by priority (free at the bottom of each column).
  const cats = m.memory.categories.map((c) => c.id);
  const catIndex = new Map(cats.map((c, i) => [c, i]));
  const cols = Math.max(1, Math.floor(trackW * dpr));
  const span = (end - start) / rows;
  const acc = binSegments(m.memory.segments, start, end, cols * rows, catIndex);
  const conIndex = new Map([['poison', 0], ['data', 1]]);
  const con = binSegments(m.memory.contents, start, end, cols * rows, conIndex);
  const nc = cats.length;
  const perBin = (end - start) / (cols * rows);
  const bandPx = bandH * dpr, stripPx = stripH * dpr;
  const x0 = labelW * dpr;
  ctx.font = `${11 * dpr}px ui-monospace, DejaVu Sans Mono, monospace`;
  ctx.textBaseline = 'middle';
  const pat = getPoisonPattern(ctx, dpr);
  for (let r = 0; r < rows; r++) {
    const y = (r * rowH + 2) * dpr;
    ctx.fillStyle = '#8a98b5';
    ctx.textAlign = 'right';
    ctx.fillText(hex(Math.floor(start + r * span)), x0 - 10 * dpr, y + bandPx / 2);
    ctx.fillStyle = COLORS.free;
    ctx.fillRect(x0, y, cols, bandPx);
    for (let c = 0; c < cols; c++) {
      const b = r * cols + c;
      // Stack non-free categories from the top, highest priority first; tiny ones get >= 1 px.
      let yy = y;
      for (let i = nc - 1; i >= 1; i--) {
        const v = acc[b * nc + i];
        if (v <= 0) continue;
        let hpx = (v / perBin) * bandPx;
        if (hpx < 1) hpx = 1;
        if (yy + hpx > y + bandPx) hpx = y + bandPx - yy;
        if (hpx <= 0) break;
        ctx.fillStyle = colorOf(cats[i]);
        ctx.fillRect(x0 + c, yy, 1, hpx);
        yy += hpx;
      }
      // Contents strip: poison (hatched) and data, proportional, min 1 px when present.
      const sy = y + bandPx + 1 * dpr;
      const pz = con[b * 2], dt = con[b * 2 + 1];
      let sx = 0;
      if (pz > 0) {
        const w = Math.max(1, (pz / perBin) * stripPx);
        ctx.fillStyle = pat;
        ctx.fillRect(x0 + c, sy, 1, w);
        sx = w;
      }
      if (dt > 0) {
        const w = Math.min(stripPx - sx, Math.max(1, (dt / perBin) * stripPx));
        if (w > 0) { ctx.fillStyle = CONTENT_COLORS.data; ctx.fillRect(x0 + c, sy + sx, 1, w); }
      }
    }
    ctx.strokeStyle = '#26324d';
    ctx.lineWidth = 1;
    ctx.strokeRect(x0 - 0.5, y - 0.5, cols + 1, bandPx + stripPx + 2 * dpr);
  }
  mapGeom = { start, end, rows, cols, span, labelW, trackW: cols / dpr, rowH, bandH, stripH, acc, con, cats, perBin, dpr };
  $('scale').textContent = `rows of ${fmtPages(span)} · 1 px ≈ ${fmtPages(perBin * dpr)}` + (m.memory.coarsened ? ' · coarsened' : '');
  renderCrumbs(m);
}

function renderCrumbs(m) {
  const el = $('crumbs');
  const all = h('button', { onclick: () => { zoom = null; zoomStack.length = 0; draw(); } }, `RAM ${fmtPages(m.memory.pages)}`);
  const parts = [all];
  for (const [i, z] of zoomStack.entries()) {
    parts.push(h('span', {}, '›'), h('button', { onclick: () => { zoomStack.length = i + 1; zoom = z; draw(); } }, `${hex(z.start)}–${hex(z.end)}`));
  }
  el.replaceChildren(...parts);
}

function binAt(ev) {
  const g = mapGeom;
  if (!g) return null;
  const rect = $('map').getBoundingClientRect();
  const x = ev.clientX - rect.left - g.labelW;
  const y = Math.max(0, ev.clientY - rect.top - 2);
  const r = Math.floor(y / g.rowH);
  if (r < 0 || r >= g.rows || x < 0 || x >= g.trackW || y - r * g.rowH > g.bandH + g.stripH + 1) return null;
  const c = Math.min(g.cols - 1, Math.floor(x * g.dpr));
  return { r, c, b: r * g.cols + c, x, y };
}

function showTooltip(ev) {
  const tip = $('tooltip');
  const hit = binAt(ev);
  if (!hit || !snap || !snap.machine) { tip.hidden = true; return; }
  const g = mapGeom;
  // One bin is one device pixel: widen to a few pixels for a readable summary.
  const radius = Math.max(0, Math.round(2 * g.dpr) - 1);
  const c0 = Math.max(0, hit.c - radius), c1 = Math.min(g.cols - 1, hit.c + radius);
  const s = g.start + (hit.r * g.cols + c0) * g.perBin;
  const e = g.start + (hit.r * g.cols + c1 + 1) * g.perBin;
  const nc = g.cats.length;
  const tot = new Array(nc).fill(0);
  let pz = 0, dt = 0;
  for (let c = c0; c <= c1; c++) {
    const b = hit.r * g.cols + c;
    for (let i = 0; i < nc; i++) tot[i] += g.acc[b * nc + i];
    pz += g.con[b * 2]; dt += g.con[b * 2 + 1];
  }
  const span = e - s;
  const labels = new Map(snap.machine.memory.categories.map((c) => [c.id, c.label]));
  const rows = [];
  for (let i = nc - 1; i >= 0; i--) {
    if (tot[i] <= 0) continue;
    rows.push(h('tr', {}, h('td', {}, swatch(colorOf(g.cats[i])), ' ', labels.get(g.cats[i])), h('td', { class: 'r' }, fmtPages(tot[i])), h('td', { class: 'r' }, `${((100 * tot[i]) / span).toFixed(span < 1000 ? 0 : 1)}%`)));
  }
  if (pz > 0) rows.push(h('tr', {}, h('td', {}, h('span', { class: 'sw poison' }), ' poisoned'), h('td', { class: 'r' }, fmtPages(pz)), h('td', { class: 'r' }, `${((100 * pz) / span).toFixed(1)}%`)));
  if (dt > 0) rows.push(h('tr', {}, h('td', {}, swatch(CONTENT_COLORS.data), ' data'), h('td', { class: 'r' }, fmtPages(dt)), h('td', { class: 'r' }, `${((100 * dt) / span).toFixed(1)}%`)));
  const exact = exactSegments(snap.machine.memory.segments, Math.floor(s), Math.ceil(e));
  tip.replaceChildren(
    h('div', { class: 'addr' }, `${hex(Math.floor(s))} – ${hex(Math.ceil(e))}  (${fmtPages(span)})`),
    h('table', {}, rows),
    exact ? h('div', { class: 'hint' }, exact) : '',
  );
  tip.hidden = false;
  const wrapRect = $('map-wrap').getBoundingClientRect();
  let left = ev.clientX - wrapRect.left + 16;
  if (left + 300 > wrapRect.width) left = ev.clientX - wrapRect.left - 316;
  tip.style.left = `${Math.max(0, left)}px`;
  tip.style.top = `${ev.clientY - wrapRect.top + 16}px`;
}

/** The non-free segments under the cursor, when there are few: exact addresses for the tooltip. */
function exactSegments(segs, s, e) {
  const hits = [];
  for (const g of segs) {
    if (g.s + g.n <= s || g.s >= e || g.c === 'free' || !g.c) continue;
    hits.push(g);
    if (hits.length > 3) return `${hits.length}+ regions here: zoom in for details`;
  }
  return hits.map((g) => `${g.c}: ${hex(g.s)}–${hex(g.s + g.n)} (${fmtPages(g.n)})`).join('\n') || '';
}

function onMapClick(ev) {
  const hit = binAt(ev);
  if (!hit || !mapGeom) return;
  const g = mapGeom;
  const s = Math.floor(g.start + hit.r * g.span);
  const e = Math.ceil(g.start + (hit.r + 1) * g.span);
  if (e - s < 16) return;
  zoom = { start: s, end: e };
  zoomStack.push(zoom);
  draw();
}

// ------------------------------------------------------------------------------ timeline

function renderTimeline(tl) {
  const el = $('timeline');
  if (!tl.length) {
    el.replaceChildren(h('div', { class: 'empty' }, 'No live update yet: the timeline fills in at the first kexec.'));
    $('timeline-note').textContent = '';
    return;
  }
  const shown = tl.slice(-8);
  const max = Math.max(...shown.map((t) => t.totalMs), 0.001);
  el.replaceChildren(...shown.flatMap((t) => {
    const bar = h('div', { class: 'tl-bar', title: t.phases.map((p) => `${p.name}: ${fmtMs(p.ms)}`).join('\n') });
    for (const p of t.phases) {
      const seg = h('div', { class: 'tl-seg', title: `${p.name}: ${fmtMs(p.ms)}` }, (p.ms / max) > 0.07 ? fmtMs(p.ms) : '');
      seg.style.width = `${(100 * p.ms) / max}%`;
      seg.style.background = PHASE_COLORS[p.name] || '#94a3b8';
      bar.append(seg);
    }
    const sub = [t.preservedPages != null ? `${fmtPages(t.preservedPages)} preserved` : null, t.blocks != null ? `${t.blocks} blocks` : null, t.complete ? null : 'restore/retrieve/finish not measured here'].filter(Boolean).join(' · ');
    return [
      h('div', { class: 'tl-row tl-entry', 'data-n': t.n },
        h('div', { class: 'tl-label' }, t.label, t.from ? h('span', { class: 'from' }, `from ${t.from}`) : null),
        bar,
        h('div', { class: 'tl-total' }, fmtMs(t.totalMs))),
      h('div', { class: 'tl-row' }, h('div', {}), h('div', { class: 'tl-sub' }, sub)),
    ];
  }));
  $('timeline-note').textContent = `blackout per phase · ${tl.length} update(s)`;
}

function renderPhaseLegend() {
  $('phase-legend').replaceChildren(...PHASES.map((p) => h('span', { class: 'item' }, swatch(PHASE_COLORS[p]), p)));
}

// ------------------------------------------------------------------------------ sessions

function fileTable(files, incoming) {
  if (!files.length) return h('div', { class: 'empty' }, 'no files');
  return h('table', { class: 'files' },
    h('tr', {}, h('th', {}, 'token'), h('th', {}, 'handler'), h('th', { class: 'r' }, 'size'), h('th', { class: 'r' }, 'pages'), incoming ? h('th', {}, 'state') : null),
    files.map((f) => h('tr', {},
      h('td', {}, f.token), h('td', {}, f.handler),
      h('td', { class: 'r' }, f.size == null ? '—' : fmtBytes(f.size)),
      h('td', { class: 'r' }, f.pages == null ? '—' : f.pages.toLocaleString()),
      incoming ? h('td', {}, f.retrieveStatus === 1 ? 'retrieved' : f.retrieveStatus < 0 ? `error ${f.retrieveStatus}` : 'waiting') : null)));
}

function renderSessions(m, held) {
  const el = $('sessions');
  if (!m || !m.luo) { el.replaceChildren(h('div', { class: 'empty' }, 'LUO is not running on this kernel.')); return; }
  $('handlers').textContent = `handlers: ${m.luo.handlers.join(', ') || 'none'}`;
  const heldSet = new Set(held || []);
  const col = (title, list, incoming) => h('div', { class: 'sess-col' }, h('h3', {}, `${title} (${list.length})`),
    list.length ? list.map((s) => h('div', { class: 'sess', 'data-session': s.name },
      h('div', { class: 'name' }, s.name,
        h('span', { class: `badge ${incoming ? 'in' : 'out'}` }, incoming ? 'incoming' : 'outgoing'),
        incoming && s.retrieved ? h('span', { class: 'badge ok' }, 'retrieved') : null,
        heldSet.has(s.name) ? h('span', { class: 'badge held' }, 'held') : null),
      fileTable(s.files, incoming))) : h('div', { class: 'empty' }, incoming ? 'nothing handed over (or all finished)' : 'none'));
  const drivers = driverState(m);
  el.replaceChildren(h('div', { class: 'sess-cols' }, col('outgoing', m.sessions.outgoing, false), col('incoming', m.sessions.incoming, true)), ...(drivers ? [drivers] : []));
}

/** Subsystems and FLBs: what drivers registered, and what the previous kernel handed over to them. */
function driverState(m) {
  const sub = m.subsystems, flbs = m.flbs || [];
  if ((!sub || (!sub.registered.length && !Object.keys(sub.incoming).length)) && !flbs.length) return null;
  const parts = [];
  if (sub && (sub.registered.length || Object.keys(sub.incoming).length)) {
    parts.push(h('div', { class: 'subsystems', id: 'subsystems' }, h('h3', {}, `subsystems (${sub.state})`),
      h('table', { class: 'files' }, h('tr', {}, h('th', {}, 'name'), h('th', {}, 'registered'), h('th', {}, 'handed over')),
        [...new Set([...sub.registered, ...Object.keys(sub.incoming)])].map((n) => h('tr', {},
          h('td', {}, n), h('td', {}, sub.registered.includes(n) ? 'yes' : 'no'), h('td', {}, sub.incoming[n] ?? '—'))))));
  }
  if (flbs.length) {
    parts.push(h('div', { class: 'flbs', id: 'flbs' }, h('h3', {}, `FLBs (${flbs.length})`),
      h('table', { class: 'files' }, h('tr', {}, h('th', {}, 'FLB'), h('th', {}, 'handlers'), h('th', { class: 'r' }, 'files now'), h('th', {}, 'incoming')),
        flbs.map((f) => h('tr', { 'data-flb': f.name },
          h('td', {}, f.name), h('td', {}, f.handlers.join(', ')), h('td', { class: 'r' }, String(f.outgoing.files)),
          h('td', {}, f.incoming ? `${f.incoming.state}: ${f.incoming.files} file(s), data ${f.incoming.data}` : '—'))))));
  }
  return h('div', { class: 'driver-state' }, parts);
}

// ------------------------------------------------------------------------------ KHO tree, log

function highlightDts(text) {
  const frag = document.createDocumentFragment();
  for (const line of text.split('\n')) {
    const m = /^(\s*)(.*)$/.exec(line);
    const body = m[2];
    frag.append(m[1]);
    let mm;
    if ((mm = /^([^\s=]+)( \{)$/.exec(body))) frag.append(h('span', { class: 'node' }, mm[1]), mm[2]);
    else if ((mm = /^([^\s=]+)( = )(.*)$/.exec(body))) {
      frag.append(h('span', { class: 'prop' }, mm[1]), mm[2]);
      const v = mm[3];
      frag.append(h('span', { class: v.startsWith('"') ? 'str' : 'cell' }, v));
    } else if (/^\/(\*|dts-v1)/.test(body)) frag.append(h('span', { class: 'cm' }, body));
    else frag.append(body);
    frag.append('\n');
  }
  return frag;
}

function renderKho(m) {
  const kho = m && m.kho;
  const tabs = $('kho-tabs');
  const meta = $('kho-meta');
  const pre = $('dts');
  if (!kho) { tabs.replaceChildren(); meta.replaceChildren(h('div', { class: 'empty' }, 'KHO is off in this kernel.')); pre.replaceChildren(); return; }
  if (khoTab === 'in' && !kho.incoming) khoTab = 'out';
  const tab = (id, label, enabled) => h('button', { class: khoTab === id ? 'on' : '', disabled: !enabled, onclick: () => { khoTab = id; renderKho(snap.machine); } }, label);
  tabs.replaceChildren(tab('out', 'outgoing root FDT', true), tab('in', 'incoming (in/fdt)', !!kho.incoming));
  const kv = (pairs) => h('div', { class: 'kv' }, pairs.flatMap(([k, v]) => [h('div', { class: 'k' }, k), h('div', { class: 'v' }, v)]));
  if (khoTab === 'out') {
    meta.replaceChildren(kv([
      ['profile', kho.profile + (kho.finalized === null ? '' : kho.finalized ? ' (finalized)' : ' (not finalized)')],
      ['root FDT', kho.rootFdtPa],
      ['subtrees', kho.subtrees.map((s) => `${s.name} @ ${s.pa} (${s.size} B)`).join(', ') || 'none'],
      ['scratch', kho.scratch.map((s) => `${s.addr}+${fmtBytes(Number(BigInt(s.size)))}`).join(', ')],
      ['by order', Object.entries(kho.byOrder).map(([o, n]) => `${o}:${n}`).join(' ') || '—'],
    ]));
    pre.replaceChildren(highlightDts(kho.outgoingDts || '/* this kernel has been replaced */'));
  } else {
    const inc = kho.incoming;
    meta.replaceChildren(kv([
      ['from', `${inc.previousRelease || 'unknown'} (kexec count ${inc.kexecCount})`],
      ['root FDT', inc.fdtPa],
      ['blocks', `${inc.blocks} preserved block(s) found by the KHO walk`],
      ['subtrees', inc.subtrees.join(', ') || 'none'],
    ]));
    pre.replaceChildren(highlightDts(inc.dts));
  }
}

function renderLog(m) {
  const el = $('log');
  if (!m) { el.replaceChildren(); return; }
  const frag = document.createDocumentFragment();
  for (const l of m.log) {
    const mm = /^(\[[^\]]*\])(.*)$/.exec(l);
    const cls = /warn|fail|error|panic/i.test(l) ? (/(fail|error|panic)/i.test(l) ? 'e' : 'w') : '';
    if (mm) frag.append(h('span', { class: 't' }, mm[1]), cls ? h('span', { class: cls }, mm[2]) : mm[2], '\n');
    else frag.append(l, '\n');
  }
  const atBottom = el.scrollTop + el.clientHeight >= el.scrollHeight - 4;
  el.replaceChildren(frag);
  if (atBottom) el.scrollTop = el.scrollHeight;
}

// ------------------------------------------------------------------------------ main

function draw() {
  if (!snap) return;
  renderHeader(snap);
  const m = snap.machine;
  renderCards(m);
  renderTimeline(snap.timeline);
  renderSessions(m, snap.daemon && snap.daemon.held);
  renderKho(m);
  renderLog(m);
  if (m) {
    if (zoom && zoom.end > m.memory.pages) { zoom = null; zoomStack.length = 0; }
    renderLegend(m);
    renderMap(m);
  }
  document.body.dataset.seq = String(snap.seq);
  document.body.dataset.liveupdate = m ? String(m.liveupdateNum) : '';
}

function setLive(state, text) {
  const el = $('live');
  el.className = `live ${state}`;
  $('live-text').textContent = text;
}

function accept(s) {
  if (snap && s.seq < snap.seq && s.time <= snap.time) return;
  snap = s;
  setLive(s.done ? 'done' : 'on', s.done ? 'finished' : 'live');
  draw();
}

async function start() {
  renderPhaseLegend();
  const canvas = $('map');
  canvas.addEventListener('mousemove', showTooltip);
  canvas.addEventListener('mouseleave', () => { $('tooltip').hidden = true; });
  canvas.addEventListener('click', onMapClick);
  window.addEventListener('keydown', (e) => {
    if (e.key === 'Escape' && zoomStack.length) { zoomStack.pop(); zoom = zoomStack[zoomStack.length - 1] || null; draw(); }
  });
  let resizeTimer = 0;
  window.addEventListener('resize', () => { clearTimeout(resizeTimer); resizeTimer = setTimeout(draw, 100); });
  try {
    const r = await fetch('/api/snapshot', { cache: 'no-store' });
    if (r.ok) accept(await r.json());
  } catch {
    setLive('off', 'offline');
  }
  if (typeof EventSource === 'function') {
    const es = new EventSource('/api/events');
    es.addEventListener('snapshot', (ev) => accept(JSON.parse(ev.data)));
    es.onerror = () => { if (!snap || !snap.done) setLive('off', 'reconnecting'); };
    es.onopen = () => { if (snap) setLive(snap.done ? 'done' : 'on', snap.done ? 'finished' : 'live'); };
  } else {
    setInterval(async () => {
      try { const r = await fetch('/api/snapshot', { cache: 'no-store' }); if (r.ok) accept(await r.json()); } catch { setLive('off', 'offline'); }
    }, 1000);
  }
}

start();
