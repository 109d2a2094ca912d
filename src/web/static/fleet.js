// luo fleet dashboard: renders fleet snapshots (GET /api/snapshot, then Server-Sent Events on
// /api/events) and the host list the grid follows (GET /api/fleet/hosts, fetched again whenever the
// snapshot's hostsRev changes). Plain browser JavaScript, no dependencies; canvases for the waves,
// the grid of every host (10 000 cells stay one fillRect each) and the blackout histogram.

import { $, h } from './dom.js';

const CELLS = {
  '.': { color: '#1b2540', label: 'not in the campaign' },
  w: { color: '#475569', label: 'waiting' },
  a: { color: '#3b82f6', label: 'in flight' },
  u: { color: '#22c55e', label: 'updated' },
  s: { color: '#eab308', label: 'updated, blackout over the SLO' },
  f: { color: '#f97316', label: 'fell back (cold boot)' },
  r: { color: '#ef4444', label: 'refused' },
  t: { color: '#a855f7', label: 'timed out' },
  v: { color: '#ec4899', label: 'verify failed' },
  x: { color: '#0b1020', label: 'absent (runner away)' },
};
const OUTCOME_CELL = { updated: 'u', 'fell-back': 'f', refused: 'r', 'timed-out': 't', 'verify-failed': 'v', slo: 's' };

const fmtMs = (ms) => (ms === undefined || ms === null ? '—' : ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${ms.toFixed(ms < 10 ? 2 : 1)} ms`);
const time = (at) => new Date(at).toISOString().slice(11, 19);

let snap = null;
let hosts = { rev: -1, ids: [] };
let chosen = null; // the campaign shown (null: the first, i.e. the latest)
let layout = null; // grid geometry, for the tooltip

function card(k, v, d, hl) {
  return h('div', { class: hl ? 'card hl' : 'card' }, h('div', { class: 'k' }, k), h('div', { class: 'v' }, v), h('div', { class: 'd' }, d || ''));
}

function campaign() {
  if (!snap || !snap.campaigns.length) return null;
  return snap.campaigns.find((c) => c.name === chosen) || snap.campaigns[0];
}

/** A canvas sized to its CSS width and the given CSS height, drawn at the device's pixel ratio. */
function sized(canvas, cssHeight) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || canvas.parentElement.clientWidth;
  canvas.height = Math.round(cssHeight * dpr);
  canvas.width = Math.round(w * dpr);
  canvas.style.height = `${cssHeight}px`;
  const g = canvas.getContext('2d');
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  return { g, w, h: cssHeight };
}

function renderCards(c) {
  const cards = [
    card('hosts', String(snap.hostCount), `${snap.runners.length} runner(s)`),
    card('leader', snap.leader || 'none', snap.leader ? 'campaign controller' : 'no controller leads'),
  ];
  if (c) {
    const counts = {};
    for (const w of c.waves) for (const [k, n] of Object.entries(w.counts)) counts[k] = (counts[k] || 0) + n;
    const inFlight = c.waves.reduce((n, w) => n + w.inFlight, 0);
    cards.push(
      card('campaign', c.state.phase, `${c.name} → ${c.target}`, c.state.phase === 'running'),
      card('updated', `${counts.updated || 0}/${c.hosts}`, `${inFlight} in flight`),
      card('failures', String(c.failureCount), ['fell-back', 'refused', 'timed-out', 'verify-failed'].filter((k) => counts[k]).map((k) => `${counts[k]} ${k.replace('-', ' ')}`).join(' · ') || 'none'),
      card('blackout p50', c.blackoutMs ? fmtMs(c.blackoutMs.p50) : '—', c.blackoutMs ? `p99 ${fmtMs(c.blackoutMs.p99)} · max ${fmtMs(c.blackoutMs.max)}` : 'no host updated yet'),
    );
  }
  $('cards').replaceChildren(...cards);
}

function renderTabs() {
  const c = campaign();
  $('campaign-tabs').replaceChildren(...(snap.campaigns.length > 1 ? snap.campaigns.map((x) => h('button', { class: c && x.name === c.name ? 'on' : '', onclick: () => { chosen = x.name; render(); } }, `${x.name} · ${x.state.phase}`)) : []));
}

function renderWaves(c) {
  const canvas = $('waves');
  const rows = c ? c.waves.length : 1;
  const { g, w } = sized(canvas, rows * 30 + 8);
  g.font = '12px ui-monospace, monospace';
  g.textBaseline = 'middle';
  if (!c) {
    g.fillStyle = '#8a98b5';
    g.fillText('no campaign yet: luo fleet campaign create FILE', 4, 18);
    $('campaign-note').textContent = '';
    return;
  }
  $('campaign-note').textContent = `${c.name} → ${c.target}: ${c.state.phase}${c.state.reason ? ` (${c.state.reason})` : ''}${c.state.phase === 'running' && !c.windowOpen ? ' — outside its windows' : ''}`;
  const labelW = Math.min(260, w * 0.3);
  const barW = w - labelW - 12;
  c.waves.forEach((wave, i) => {
    const y = 4 + i * 30;
    const current = i === c.state.wave && c.state.phase === 'running';
    g.fillStyle = current ? '#dbe4f3' : '#8a98b5';
    g.fillText(`${current ? '▶ ' : '  '}${i} ${wave.name} (${wave.hosts}, ≤${wave.maxConcurrent})`, 2, y + 11);
    g.fillStyle = '#1b2540';
    g.fillRect(labelW, y + 2, barW, 18);
    let x = labelW;
    const seg = (n, color) => {
      if (!n) return;
      const sw = (n / Math.max(1, wave.hosts)) * barW;
      g.fillStyle = color;
      g.fillRect(x, y + 2, sw, 18);
      x += sw;
    };
    const k = wave.counts;
    seg(k.updated, CELLS.u.color);
    for (const o of ['fell-back', 'refused', 'timed-out', 'verify-failed']) seg(k[o], CELLS[OUTCOME_CELL[o]].color);
    seg(wave.inFlight, CELLS.a.color);
    const done = wave.hosts - (k.pending || 0) - wave.inFlight;
    g.fillStyle = '#dbe4f3';
    g.textAlign = 'right';
    g.fillText(`${done}/${wave.hosts}`, labelW + barW - 4, y + 11);
    g.textAlign = 'left';
  });
}

function renderLegend(c) {
  const counts = {};
  if (c) for (const ch of c.cells) counts[ch] = (counts[ch] || 0) + 1;
  $('grid-legend').replaceChildren(...Object.entries(CELLS).map(([k, v]) => {
    const sw = h('span', { class: 'sw' });
    sw.style.background = v.color;
    return h('span', { class: 'item' }, sw, v.label, h('span', { class: 'n' }, String(counts[k] || 0)));
  }));
}

function renderGrid(c) {
  const canvas = $('grid');
  const n = hosts.ids.length;
  const width = canvas.clientWidth || canvas.parentElement.clientWidth;
  // cells as large as fit in about 640 px of height, between 3 and 16 px
  const cell = Math.max(3, Math.min(16, Math.floor(Math.sqrt((width * 640) / Math.max(1, n)))));
  const cols = Math.max(1, Math.floor(width / cell));
  const rows = Math.ceil(n / cols);
  const { g } = sized(canvas, Math.max(cell, rows * cell));
  const gap = cell >= 6 ? 1 : 0;
  const cells = c && c.cells.length === n ? c.cells : '.'.repeat(n);
  let last = '';
  for (let i = 0; i < n; i++) {
    const ch = cells[i];
    if (ch !== last) {
      g.fillStyle = (CELLS[ch] || CELLS['.']).color;
      last = ch;
    }
    g.fillRect((i % cols) * cell, Math.floor(i / cols) * cell, cell - gap, cell - gap);
  }
  layout = { cell, cols, n };
  $('grid-note').textContent = `${n} host(s), ${cell}px each`;
}

function renderHistogram(c) {
  const { g, w, h: H } = sized($('histogram'), 180);
  g.font = '11px ui-monospace, monospace';
  if (!c) return;
  const bins = c.histogram.bins;
  const top = Math.max(1, ...bins);
  const left = 36;
  const bottom = H - 18;
  const bw = (w - left - 8) / bins.length;
  g.strokeStyle = '#26324d';
  g.beginPath();
  g.moveTo(left, bottom + 0.5);
  g.lineTo(w - 8, bottom + 0.5);
  g.stroke();
  bins.forEach((v, i) => {
    const bh = (v / top) * (bottom - 10);
    const over = c.sloMs !== null && (i + 1) * c.histogram.binMs > c.sloMs;
    g.fillStyle = over ? CELLS.s.color : '#5eead4';
    g.fillRect(left + i * bw + 1, bottom - bh, Math.max(1, bw - 2), bh);
  });
  g.fillStyle = '#8a98b5';
  g.fillText(String(top), 4, 14);
  g.fillText('0', 4, bottom);
  for (const i of [0, Math.floor(bins.length / 2), bins.length]) g.fillText(fmtMs(i * c.histogram.binMs), left + i * bw - (i === bins.length ? 50 : 0), H - 4);
  const scaleMs = bins.length * c.histogram.binMs;
  if (c.sloMs !== null && c.sloMs > scaleMs) {
    g.fillStyle = '#f87171';
    g.textAlign = 'right';
    g.fillText(`SLO ${fmtMs(c.sloMs)} →`, w - 8, 14);
    g.textAlign = 'left';
  } else if (c.sloMs !== null) {
    const x = left + (c.sloMs / c.histogram.binMs) * bw;
    g.strokeStyle = '#f87171';
    g.setLineDash([5, 4]);
    g.beginPath();
    g.moveTo(x + 0.5, 6);
    g.lineTo(x + 0.5, bottom);
    g.stroke();
    g.setLineDash([]);
    g.fillStyle = '#f87171';
    g.fillText(`SLO ${fmtMs(c.sloMs)}`, Math.min(x + 4, w - 80), 14);
  }
  const updated = bins.reduce((a, b) => a + b, 0);
  $('histogram-note').textContent = c.blackoutMs ? `${updated} updated · p50 ${fmtMs(c.blackoutMs.p50)} · p99 ${fmtMs(c.blackoutMs.p99)} · max ${fmtMs(c.blackoutMs.max)}` : 'no host updated yet';
}

function renderFailures(c) {
  const rows = c ? c.failures : [];
  $('failures-note').textContent = c ? `${c.failureCount} failure(s)${c.failureCount > rows.length ? `, the latest ${rows.length} shown` : ''}` : '';
  $('failures').replaceChildren(...(rows.length ? rows.map((f) => h('tr', {}, h('td', {}, f.host), h('td', {}, String(f.wave)), h('td', {}, f.outcome), h('td', {}, f.layer || ''), h('td', { class: 'reason' }, f.reason || (f.blackoutMs !== undefined ? `blackout ${fmtMs(f.blackoutMs)}` : '')))) : [h('tr', {}, h('td', { colspan: 5, class: 'reason' }, 'none'))]));
}

function renderEvents() {
  $('leader').textContent = snap.leader ? `${snap.leader} leads` : 'no controller leads';
  $('events').replaceChildren(...(snap.events.length ? snap.events.map((e) => h('div', { class: `ev ${e.level}` }, h('span', { class: 't' }, time(e.at)), h('span', { class: 'x' }, e.text))) : [h('div', { class: 'ev' }, h('span', { class: 't' }, 'no event since the dashboard started'))]));
}

function render() {
  if (!snap) return;
  const c = campaign();
  $('source').textContent = `etcd ${snap.source.label}`;
  const st = $('status');
  st.textContent = snap.error || snap.status;
  st.className = snap.error ? 'status error' : 'status';
  renderCards(c);
  renderTabs();
  renderWaves(c);
  renderLegend(c);
  renderGrid(c);
  renderHistogram(c);
  renderFailures(c);
  renderEvents();
  // for scripts and tests: what the page shows now
  document.body.dataset.seq = String(snap.seq);
  document.body.dataset.phase = c ? c.state.phase : 'none';
  document.body.dataset.hosts = String(hosts.ids.length);
}

async function loadHosts() {
  const r = await fetch('/api/fleet/hosts', { cache: 'no-store' });
  if (r.ok) hosts = await r.json();
}

async function accept(s) {
  snap = s;
  if (s.hostsRev !== hosts.rev) await loadHosts();
  render();
}

function setLive(cls, text) {
  $('live').className = `live ${cls}`;
  $('live-text').textContent = text;
}

$('grid').addEventListener('mousemove', (ev) => {
  const tip = $('tooltip');
  if (!layout || !snap) return;
  const r = $('grid').getBoundingClientRect();
  const col = Math.floor((ev.clientX - r.left) / layout.cell);
  const row = Math.floor((ev.clientY - r.top) / layout.cell);
  const i = row * layout.cols + col;
  if (col >= layout.cols || i < 0 || i >= layout.n) {
    tip.hidden = true;
    return;
  }
  const c = campaign();
  const id = hosts.ids[i];
  const ch = c ? c.cells[i] : '.';
  const fail = c && c.failures.find((f) => f.host === id);
  tip.replaceChildren(h('div', { class: 'addr' }, id), h('div', {}, (CELLS[ch] || CELLS['.']).label), fail ? h('div', { class: 'hint' }, `${fail.layer ? `${fail.layer}: ` : ''}${fail.reason || ''}`) : '');
  tip.hidden = false;
  tip.style.left = `${Math.min(ev.clientX - r.left + 14, r.width - 260)}px`;
  tip.style.top = `${ev.clientY - r.top + 14}px`;
});
$('grid').addEventListener('mouseleave', () => { $('tooltip').hidden = true; });
window.addEventListener('resize', () => render());

async function start() {
  try {
    const r = await fetch('/api/snapshot', { cache: 'no-store' });
    if (r.ok) await accept(await r.json());
  } catch {
    setLive('off', 'offline');
  }
  const es = new EventSource('/api/events');
  es.addEventListener('snapshot', (ev) => void accept(JSON.parse(ev.data)));
  es.onerror = () => setLive('off', 'reconnecting');
  es.onopen = () => setLive('on', 'live');
}

start();
