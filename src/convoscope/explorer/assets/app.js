/* convoscope explorer: hand-written, no dependencies, no network access (except fetching its own
 * data from the local `convoscope serve` server). Every string from the data is inserted with
 * textContent / createTextNode, never as HTML. */
(function () {
  'use strict';

  // ---------------------------------------------------------------- helpers
  const $ = (id) => document.getElementById(id);
  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    if (attrs) for (const k in attrs) {
      const v = attrs[k];
      if (v === null || v === undefined || v === false) continue;
      if (k === 'class') e.className = v;
      else if (k === 'text') e.textContent = v;
      else if (k === 'style') e.setAttribute('style', v);
      else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of kids) if (c !== null && c !== undefined && c !== false) e.append(c instanceof Node ? c : String(c));
    return e;
  }
  const fmtInt = (n) => (n === null || n === undefined) ? '–' : Number(n).toLocaleString('en-US');
  const fmtPct = (x, d) => (x === null || x === undefined || !isFinite(x)) ? '–' : (x * 100).toFixed(d === undefined ? (x < 0.01 ? 2 : 1) : d) + '%';
  const fmtNum = (x, d) => (x === null || x === undefined || !isFinite(x)) ? '–' : Number(x).toFixed(d === undefined ? 2 : d);
  const clamp = (v, a, b) => Math.max(a, Math.min(b, v));

  function b64(s) {
    const bin = atob(s), n = bin.length, u8 = new Uint8Array(n);
    for (let i = 0; i < n; i++) u8[i] = bin.charCodeAt(i);
    return u8.buffer;
  }
  function hex2rgb(h) { const v = parseInt(h.slice(1), 16); return [(v >> 16) & 255, (v >> 8) & 255, v & 255]; }
  const rgbCss = (c) => 'rgb(' + c[0] + ',' + c[1] + ',' + c[2] + ')';

  // Okabe-Ito (colour-blind safe) followed by Paul Tol's colour-blind safe "muted" set.
  const PALETTE = ['#E69F00', '#56B4E9', '#009E73', '#0072B2', '#D55E00', '#CC79A7', '#F0E442',
    '#332288', '#88CCEE', '#44AA99', '#117733', '#999933', '#DDCC77', '#CC6677', '#882255', '#AA4499'].map(hex2rgb);
  const OTHER_RGB = [150, 150, 150], NULL_RGB = [205, 205, 205], BG_RGB = [255, 255, 255];
  const VIRIDIS = ['#440154', '#482878', '#3e4989', '#31688e', '#26828e', '#1f9e89', '#35b779', '#6ece58', '#b5de2b', '#fde725'].map(hex2rgb);
  function viridis(t) {
    t = clamp(t, 0, 1) * (VIRIDIS.length - 1);
    const i = Math.min(Math.floor(t), VIRIDIS.length - 2), f = t - i, a = VIRIDIS[i], b = VIRIDIS[i + 1];
    return [Math.round(a[0] + (b[0] - a[0]) * f), Math.round(a[1] + (b[1] - a[1]) * f), Math.round(a[2] + (b[2] - a[2]) * f)];
  }
  const mix = (c, d, t) => [Math.round(c[0] + (d[0] - c[0]) * t), Math.round(c[1] + (d[1] - c[1]) * t), Math.round(c[2] + (d[2] - c[2]) * t)];
  const pack = (c) => ((255 << 24) | (c[2] << 16) | (c[1] << 8) | c[0]) >>> 0;

  // ---------------------------------------------------------------- data
  async function loadData() {
    const inl = $('explorer-data');
    if (inl) return JSON.parse(inl.textContent);
    const url = JSON.parse($('explorer-data-url').textContent);
    const r = await fetch(url, { credentials: 'same-origin' });
    if (!r.ok) throw new Error('could not load ' + url + ': HTTP ' + r.status);
    return r.json();
  }

  let D, C, byId, N, PX, PY, LV, FIN, LEVELS, TOTAL, bounds, centroid;
  // a run with several hierarchies (one per summarised facet) ships them all; the page shows one at a time
  let HIER = [], hi = -1;
  const hierName = (h) => String(h.hierarchy || (h.run && h.run.facet) || 'request');
  function prepare(data) {
    D = data; C = data.clusters; LEVELS = data.levels; byId = new Map();
    C.forEach((c, i) => { c.idx = i; byId.set(c.id, i); });
    for (const c of C) {
      c.parentIdx = (c.parent !== null && byId.has(c.parent)) ? byId.get(c.parent) : -1;
      c.kids = c.children.filter((k) => byId.has(k)).map((k) => byId.get(k));
    }
    const p = data.points; N = p.n; bounds = p.bounds;
    const qx = new Uint16Array(b64(p.x)), qy = new Uint16Array(b64(p.y));
    const IA = p.index === 'u32' ? Uint32Array : Uint16Array, NUL = p.index === 'u32' ? 0xFFFFFFFF : 0xFFFF;
    PX = new Float32Array(N); PY = new Float32Array(N);
    const sx = (bounds[1] - bounds[0]) / 65535, sy = (bounds[3] - bounds[2]) / 65535;
    for (let i = 0; i < N; i++) { PX[i] = bounds[0] + qx[i] * sx; PY[i] = bounds[2] + qy[i] * sy; }
    LV = []; FIN = new Int32Array(N).fill(-1);
    for (let l = 0; l < LEVELS; l++) {
      const raw = new IA(b64(p.levels[l])), a = new Int32Array(N);
      for (let i = 0; i < N; i++) { const v = raw[i]; a[i] = v === NUL ? -1 : v; if (v !== NUL) FIN[i] = a[i]; }
      LV.push(a);
    }
    TOTAL = (data.run && data.run.conversations) || N;
    // centroids: from the aggregates, or the mean of the cluster's points
    const sumx = new Float64Array(C.length), sumy = new Float64Array(C.length), cnt = new Float64Array(C.length);
    for (let l = 0; l < LEVELS; l++) {
      const a = LV[l];
      for (let i = 0; i < N; i++) { const c = a[i]; if (c >= 0) { sumx[c] += PX[i]; sumy[c] += PY[i]; cnt[c]++; } }
    }
    centroid = C.map((c, i) => (typeof c.x === 'number' && typeof c.y === 'number') ? [c.x, c.y]
      : (cnt[i] ? [sumx[i] / cnt[i], sumy[i] / cnt[i]] : null));
    // top-level colour index
    let k = 0;
    for (const c of C) if (c.level === 0 && c.kind !== 'other') c.colorIdx = k++;
    for (const c of C) if (c.level === 0 && c.kind === 'other') c.colorIdx = -1;
    buildGrid();
  }
  const topOf = (i) => { let c = C[i]; while (c.parentIdx >= 0) c = C[c.parentIdx]; return c; };
  const ancestors = (i) => { const out = []; let c = C[i]; while (c.parentIdx >= 0) { c = C[c.parentIdx]; out.unshift(c.idx); } return out; };
  function baseRgb(i) {
    if (i < 0) return NULL_RGB;
    const t = topOf(i);
    return t.colorIdx < 0 ? OTHER_RGB : PALETTE[t.colorIdx % PALETTE.length];
  }

  // spatial grid for hover / click
  const G = 256; let gStart, gPts;
  function buildGrid() {
    const cellOf = new Int32Array(N), counts = new Int32Array(G * G + 1);
    const fx = G / ((bounds[1] - bounds[0]) || 1), fy = G / ((bounds[3] - bounds[2]) || 1);
    for (let i = 0; i < N; i++) {
      const gx = Math.min(G - 1, Math.floor((PX[i] - bounds[0]) * fx)), gy = Math.min(G - 1, Math.floor((PY[i] - bounds[2]) * fy));
      cellOf[i] = gy * G + gx; counts[cellOf[i] + 1]++;
    }
    for (let c = 0; c < G * G; c++) counts[c + 1] += counts[c];
    gStart = counts; gPts = new Int32Array(N); const fill = counts.slice(0, G * G);
    for (let i = 0; i < N; i++) gPts[fill[cellOf[i]]++] = i;
  }
  function nearestPoint(wx, wy, rw) {
    const fx = G / ((bounds[1] - bounds[0]) || 1), fy = G / ((bounds[3] - bounds[2]) || 1);
    const x0 = clamp(Math.floor((wx - rw - bounds[0]) * fx), 0, G - 1), x1 = clamp(Math.floor((wx + rw - bounds[0]) * fx), 0, G - 1);
    const y0 = clamp(Math.floor((wy - rw - bounds[2]) * fy), 0, G - 1), y1 = clamp(Math.floor((wy + rw - bounds[2]) * fy), 0, G - 1);
    if (wx + rw < bounds[0] || wx - rw > bounds[1] || wy + rw < bounds[2] || wy - rw > bounds[3]) return -1;
    let best = -1, bd = rw * rw;
    for (let gy = y0; gy <= y1; gy++) for (let gx = x0; gx <= x1; gx++) {
      const c = gy * G + gx;
      for (let j = gStart[c]; j < gStart[c + 1]; j++) {
        const i = gPts[j], dx = PX[i] - wx, dy = PY[i] - wy, d = dx * dx + dy * dy;
        if (d <= bd) { bd = d; best = i; }
      }
    }
    return best;
  }

  // ---------------------------------------------------------------- state
  const S = { sel: -1, colour: 'top', filter: '', fmin: 10, q: '', sort: 'size', k: 1, cx: 0, cy: 0 };
  const expanded = new Set();
  let searchHits = new Set(), searchRel = new Set();

  // colour modes and filters, derived from the facets
  let categoryValues = {};
  function facetOptions() {
    categoryValues = {};
    for (const f of D.facets) if (f.kind === 'category') {
      const tot = new Map();
      for (const c of C) { const v = c.facets && c.facets[f.name]; if (v) for (const k in v) if (k !== 'other') tot.set(k, (tot.get(k) || 0) + v[k]); }
      categoryValues[f.name] = [...tot.entries()].sort((a, b) => b[1] - a[1]).map((e) => e[0]).slice(0, 40);
    }
  }
  const facetLabel = (n) => n.startsWith('meta.') ? n.slice(5) + ' (metadata)' : n;
  function clusterValue(mode, i) {
    // value of colour/sort mode for cluster i: number or null
    if (i < 0) return null;
    const c = C[i];
    if (mode.startsWith('mean:')) { const f = c.facets[mode.slice(5)]; return f && typeof f.mean === 'number' ? f.mean : null; }
    if (mode.startsWith('share:')) {
      const rest = mode.slice(6), eq = rest.indexOf('='), fn = rest.slice(0, eq), val = rest.slice(eq + 1);
      const f = c.facets[fn]; if (!f) return null;
      let tot = 0; for (const k in f) tot += f[k];
      return tot ? (f[val] || 0) / tot : null;
    }
    if (mode === 'size') return c.size;
    const k = modeKind(mode);
    if (k === 'div') { const a = analysisOf(mode, i); return a && !a.few ? a.lr : null; }
    if (k === 'cls') { const a = analysisOf(mode, i); return a && a.cls ? { miss: 2, false: 1, agree: 0 }[a.cls] : null; }
    return null;
  }
  function modeRange(mode) {
    if (mode.startsWith('mean:')) {
      const f = D.facets.find((x) => x.name === mode.slice(5));
      if (f && typeof f.min === 'number' && typeof f.max === 'number') return [f.min, f.max];
    }
    let lo = Infinity, hi = -Infinity;
    for (let i = 0; i < C.length; i++) { const v = clusterValue(mode, i); if (v !== null) { lo = Math.min(lo, v); hi = Math.max(hi, v); } }
    if (!isFinite(lo)) return [0, 1];
    if (mode.startsWith('share:')) lo = 0;
    return [lo, hi > lo ? hi : lo + 1];
  }
  // ---------------------------------------------------------------- analyses overlays (docs/analyses.md)
  // Diverging blue (less / shrinking) – warm neutral – orange (more / growing); colour-blind safe.
  const DIVERGING = ['#08519c', '#3182bd', '#9ecae1', '#e6dcc6', '#fdae6b', '#e6550d', '#a63603'].map(hex2rgb);
  function diverging(t) {  // t in [-1, 1]
    t = (clamp(t, -1, 1) + 1) / 2 * (DIVERGING.length - 1);
    const i = Math.min(Math.floor(t), DIVERGING.length - 2);
    return mix(DIVERGING[i], DIVERGING[i + 1], t - i);
  }
  const FEW_RGB = [236, 236, 236];
  const CLS = { miss: { rgb: hex2rgb('#D55E00'), label: 'likely miss: mean concern ≥ 3, flag rate < 20%' },
    false: { rgb: hex2rgb('#0072B2'), label: 'likely false alarm: flag rate ≥ 50%, mean concern < 2' },
    agree: { rgb: hex2rgb('#d2cab8'), label: 'consistent' } };
  const MIN_FEW = 5, LOG2_MAX = 2;  // greyed below 5 conversations; colour saturates at ¼× and 4×
  const TRUTHY = new Set(['true', '1', 'yes', 'y', 't']), FALSY = new Set(['false', '0', 'no', 'n', 'f']);
  const fmtRatio = (r) => !isFinite(r) ? '–' : (r >= 10 ? r.toFixed(0) : r.toFixed(2)) + '×';
  let A = null;
  function prepareAnalyses() {
    A = { catTot: {}, bools: [], halves: null };
    const roots = C.filter((c) => c.level === 0);  // run-wide totals: top level incl. "other" buckets
    for (const f of D.facets) if (f.kind === 'category') {
      const by = {}; let tot = 0;
      for (const c of roots) { const v = c.facets && c.facets[f.name]; if (v) for (const k in v) { by[k] = (by[k] || 0) + v[k]; tot += v[k]; } }
      A.catTot[f.name] = { by, tot };
      const keys = new Set();
      for (const c of C) { const v = c.facets && c.facets[f.name]; if (v) for (const k in v) if (k !== 'other') keys.add(k.toLowerCase()); }
      if (f.name.startsWith('meta.') && keys.size && [...keys].every((k) => TRUTHY.has(k) || FALSY.has(k)) && !D.facets_unavailable[f.name]) A.bools.push(f.name);
    }
    // change: split the run's time range at its midpoint; a bucket belongs to the half its start is in
    const tr = D.run && D.run.time_range;
    let t0 = tr ? Date.parse(tr[0]) : NaN, t1 = tr ? Date.parse(tr[1]) : NaN;
    if (!isFinite(t0) || !isFinite(t1)) {
      for (const c of C) for (const p of c.timeline || []) { const t = Date.parse(p[0]); if (isFinite(t)) { t0 = isFinite(t0) ? Math.min(t0, t) : t; t1 = isFinite(t1) ? Math.max(t1, t) : t; } }
    }
    if (isFinite(t0) && isFinite(t1) && t1 > t0) {
      const mid = (t0 + t1) / 2, h = C.map((c) => {
        if (!c.timeline || !c.timeline.length) return null;
        const o = [0, 0]; for (const p of c.timeline) { const t = Date.parse(p[0]); if (isFinite(t)) o[t < mid ? 0 : 1] += p[1]; }
        return o;
      });
      const T = [0, 0]; roots.forEach((c) => { const o = h[c.idx]; if (o) { T[0] += o[0]; T[1] += o[1]; } });
      if (T[0] > 0 && T[1] > 0) A.halves = { mid, t0, t1, h, T };
    }
  }
  const hasConcern = () => D.facets.some((f) => f.name === 'concerning' && f.kind === 'number') && !D.facets_unavailable.concerning;
  function langRatio(fn, val, i) {
    const f = C[i].facets[fn], g = A.catTot[fn]; if (!f || !g || !g.tot || !g.by[val]) return null;
    let size = 0; for (const k in f) size += f[k];
    if (!size) return null;
    // not listed: merged into "other" by the privacy rule (only an upper bound is known), or none at all
    const listed = f[val] !== undefined || !f.other, obs = f[val] !== undefined ? f[val] : (f.other || 0);
    const overall = g.by[val] / g.tot, exp = size * overall, ratio = (obs / size) / overall;
    return { ratio, obs, listed, exp, size, overall, few: Math.max(obs, exp) < MIN_FEW, lr: Math.log2(Math.max(ratio, 1e-9)) };
  }
  // a count the privacy rule merged into "other" is withheld: say so, with the bound, never "≤0"
  const obsText = (r) => r.listed ? fmtInt(r.obs) : 'withheld (at most ' + fmtInt(r.obs) + ', merged into "other")';
  function change(i) {
    if (!A.halves || !A.halves.h[i]) return null;
    const [a, b] = A.halves.h[i], [T1, T2] = A.halves.T;
    const s1 = a / T1, s2 = b / T2;
    const lr = Math.log2(((b + 0.5) / T2) / ((a + 0.5) / T1));  // +0.5: a cluster new in the second half stays finite
    return { a, b, s1, s2, lr, few: a + b < 2 * MIN_FEW };
  }
  function flagInfo(fn, i) {
    const f = C[i].facets[fn]; if (!f) return null;
    let pos = 0, neg = 0;
    for (const k in f) { const l = k.toLowerCase(); if (TRUTHY.has(l)) pos += f[k]; else if (FALSY.has(l)) neg += f[k]; }
    if (!pos && !neg) return null;
    const rate = pos / (pos + neg), cf = C[i].facets.concerning, concern = cf && typeof cf.mean === 'number' ? cf.mean : null;
    let cls = null;
    if (concern !== null) cls = concern >= 3 && rate < 0.2 ? 'miss' : (rate >= 0.5 && concern < 2 ? 'false' : 'agree');
    return { rate, known: pos + neg, pos, concern, cls };
  }
  function changeText(a) {
    if (a.few) return 'too few conversations';
    if (!a.a) return 'new in the second half (growing)';
    if (!a.b) return 'none in the second half (shrinking)';
    const r = a.s2 / a.s1;
    return fmtRatio(r) + (r > 1.05 ? ' (growing)' : r < 1 / 1.05 ? ' (shrinking)' : ' (stable)');
  }
  function langOverall(mode) { const [fn, v] = splitEq(mode.slice(6)), g = A.catTot[fn]; return g && g.tot ? (g.by[v] || 0) / g.tot : null; }
  function analysesSection(i) {
    // per-cluster numbers behind the overlays: language ratios, change between halves, classifier
    const out = [], c = C[i];
    if (A.halves && c.timeline && c.timeline.length) {
      const a = change(i), d = (t) => new Date(t).toISOString().slice(0, 10), m = A.halves.mid;
      if (a) {
        out.push(el('h3', { text: 'Change over the time range' }));
        const g = el('div', { class: 'kv', id: 'panel-change' },
          el('span', { class: 'muted', text: 'first half (' + d(A.halves.t0) + ' – ' + d(m) + ')' }), el('span', { text: fmtInt(a.a) + ' · ' + fmtPct(a.s1) + ' of that half' }),
          el('span', { class: 'muted', text: 'second half (' + d(m) + ' – ' + d(A.halves.t1) + ')' }), el('span', { text: fmtInt(a.b) + ' · ' + fmtPct(a.s2) + ' of that half' }),
          el('span', { class: 'muted', text: 'change in share' }),
          el('b', { text: changeText(a) }));
        out.push(g);
      }
    }
    const lt = A.catTot.language;
    if (lt && lt.tot && c.facets.language && !D.facets_unavailable.language) {
      const chosen = S.colour.startsWith('ratio:language=') ? splitEq(S.colour.slice(6))[1] : null;
      const vals = (categoryValues.language || []).filter((v) => lt.by[v]).slice(0, 8);
      if (chosen && !vals.includes(chosen)) vals.unshift(chosen);
      out.push(el('h3', { text: 'Languages vs the whole run' }));
      const g = el('div', { class: 'kv ratios', id: 'panel-ratio' });
      for (const v of vals) {
        const r = langRatio('language', v, i); if (!r) continue;
        const cls = v === chosen ? 'chosen' : null;
        g.append(el('span', { class: cls, text: v }),
          el('span', { class: cls, title: 'share ' + fmtPct(r.obs / r.size) + ' vs ' + fmtPct(r.overall) + ' overall',
            // a language merged into "other" by the privacy rule has only an upper bound: so has its ratio
            text: (r.few ? 'too few' : 'ratio ' + (r.listed ? '' : '≤ ') + fmtRatio(r.ratio)) + ' · ' + obsText(r) + ' of ' + fmtInt(r.size) + ', expected ' + fmtNum(r.exp, 1) }));
      }
      out.push(g);
    }
    if (hasConcern()) for (const b of A.bools) {
      const a = flagInfo(b, i); if (!a) continue;
      out.push(el('h3', { text: 'Classifier: ' + facetLabel(b) + ' vs concerning' }));
      out.push(el('div', { class: 'kv', id: 'panel-flag', 'data-facet': b },
        el('span', { class: 'muted', text: 'flag rate' }), el('b', { text: fmtPct(a.rate, 1) + ' (' + fmtInt(a.pos) + ' of ' + fmtInt(a.known) + ')' }),
        el('span', { class: 'muted', text: 'mean concerning' }), el('b', { text: fmtNum(a.concern) }),
        el('span', { class: 'muted', text: 'reading' }),
        el('span', { class: a.cls === 'agree' ? null : 'verdict', text: a.cls ? CLS[a.cls].label : 'no concerning score' })));
    }
    return out;
  }
  function modeKind(mode) {
    if (mode === 'top') return 'top';
    if (mode.startsWith('ratio:') || mode === 'change') return 'div';
    if (mode.startsWith('flagcmp:')) return 'cls';
    return 'seq';
  }
  const splitEq = (rest) => { const eq = rest.indexOf('='); return [rest.slice(0, eq), rest.slice(eq + 1)]; };
  function analysisOf(mode, i) {
    if (i < 0) return null;
    if (mode.startsWith('ratio:')) { const [fn, v] = splitEq(mode.slice(6)); return langRatio(fn, v, i); }
    if (mode === 'change') return change(i);
    if (mode.startsWith('flagcmp:')) return flagInfo(mode.slice(8), i);
    return null;
  }
  function overlayRgb(mode, i) {
    const a = analysisOf(mode, i);
    if (modeKind(mode) === 'cls') return a && a.cls ? CLS[a.cls].rgb : NULL_RGB;
    if (!a) return NULL_RGB;
    return a.few ? FEW_RGB : diverging(a.lr / LOG2_MAX);
  }
  function fmtMode(mode, i) {
    // the colour / sort value of cluster i as text (tooltip and tree)
    const k = modeKind(mode);
    if (k === 'seq') { const v = clusterValue(mode, i); return mode.startsWith('share:') ? fmtPct(v) : fmtNum(v); }
    const a = analysisOf(mode, i);
    if (!a) return 'no data';
    if (mode === 'change') return changeText(a) + ' · ' + fmtInt(a.a) + ' → ' + fmtInt(a.b);
    if (k === 'div') return a.few ? 'too few (' + obsText(a) + ', expected ' + fmtNum(a.exp, 1) + ')' : (a.listed ? '' : '≤ ') + fmtRatio(a.ratio);
    return 'flag ' + fmtPct(a.rate, 0) + ' · concern ' + fmtNum(a.concern) + (a.cls && a.cls !== 'agree' ? ' · ' + (a.cls === 'miss' ? 'likely miss' : 'likely false alarm') : '');
  }
  function filterMatch(i) {
    if (!S.filter) return true;
    if (i < 0) return false;
    const c = C[i];
    if (S.filter.startsWith('cat:')) {
      const rest = S.filter.slice(4), eq = rest.indexOf('='), v = clusterValue('share:' + rest.slice(0, eq) + '=' + rest.slice(eq + 1), i);
      return v !== null && v * 100 >= S.fmin;
    }
    if (S.filter.startsWith('num:')) {
      const rest = S.filter.slice(4), ge = rest.lastIndexOf('>='), f = c.facets[rest.slice(0, ge)];
      return !!f && typeof f.mean === 'number' && f.mean >= parseFloat(rest.slice(ge + 2));
    }
    return true;
  }

  // ---------------------------------------------------------------- controls
  function fillControls() {
    facetOptions();
    prepareAnalyses();
    const col = $('colour'), fil = $('filter'), srt = $('sort');
    col.replaceChildren(el('option', { value: 'top' , text: 'Top-level cluster' }));
    fil.replaceChildren(el('option', { value: '', text: 'None' }));
    srt.replaceChildren(el('option', { value: 'size', text: 'Size' }), el('option', { value: 'name', text: 'Name' }));
    for (const f of D.facets) {
      if (D.facets_unavailable[f.name]) continue;
      if (f.kind === 'number') {
        col.append(el('option', { value: 'mean:' + f.name, text: 'Mean ' + facetLabel(f.name) }));
        srt.append(el('option', { value: 'mean:' + f.name, text: 'Mean ' + facetLabel(f.name) }));
        const lo = typeof f.min === 'number' ? f.min : 1, hi = typeof f.max === 'number' ? f.max : 5;
        const g = el('optgroup', { label: 'Mean ' + facetLabel(f.name) });
        for (let t = Math.ceil(lo + 0.5); t <= hi; t++) g.append(el('option', { value: 'num:' + f.name + '>=' + t, text: 'mean ' + facetLabel(f.name) + ' ≥ ' + t }));
        if (g.children.length) fil.append(g);
      } else {
        const vals = categoryValues[f.name] || [];
        if (!vals.length) continue;
        const g1 = el('optgroup', { label: 'Share of ' + facetLabel(f.name) });
        const g2 = el('optgroup', { label: facetLabel(f.name) });
        for (const v of vals) {
          g1.append(el('option', { value: 'share:' + f.name + '=' + v, text: 'Share of ' + facetLabel(f.name) + ' = ' + v }));
          g2.append(el('option', { value: 'cat:' + f.name + '=' + v, text: facetLabel(f.name) + ' = ' + v }));
        }
        col.append(g1); fil.append(g2);
      }
    }
    // analyses overlays
    const langs = (categoryValues.language || []).filter((v) => A.catTot.language && A.catTot.language.by[v]);
    if (langs.length && !D.facets_unavailable.language) {
      const g = el('optgroup', { label: 'Languages: over / under-representation' });
      for (const v of langs) g.append(el('option', { value: 'ratio:language=' + v, text: v + ': ratio to overall share' }));
      col.append(g);
    }
    const ga = el('optgroup', { label: 'Analyses' });
    if (A.halves) ga.append(el('option', { value: 'change', text: 'Change: second vs first half of the time range' }));
    if (hasConcern()) for (const b of A.bools) ga.append(el('option', { value: 'flagcmp:' + b, text: 'Concerning vs flag rate (' + facetLabel(b) + ')' }));
    if (ga.children.length) col.append(ga);
    srt.append(el('option', { value: 'colour', text: 'Colour value' }));
  }
  function bindControls() {  // once: fillControls runs again when the hierarchy changes
    const col = $('colour'), fil = $('filter'), srt = $('sort'), hs = $('hier');
    hs.replaceChildren(...HIER.map((h, k) => el('option', { value: k, text: hierName(h) })));
    $('hier-wrap').hidden = HIER.length < 2;
    hs.addEventListener('change', () => switchHierarchy(+hs.value));
    col.addEventListener('change', () => { S.colour = col.value; changed({ colours: true, tree: S.sort === 'colour' }); });
    fil.addEventListener('change', () => { S.filter = fil.value; changed({ colours: true, tree: true }); });
    $('filter-min').addEventListener('input', () => { const v = parseFloat($('filter-min').value); if (isFinite(v)) { S.fmin = clamp(v, 0, 100); changed({ colours: true, tree: true }); } });
    srt.addEventListener('change', () => { S.sort = srt.value; changed({ tree: true }); });
    let t = null;
    $('search').addEventListener('input', () => { clearTimeout(t); t = setTimeout(() => { S.q = $('search').value; runSearch(); changed({ colours: true, tree: true }); }, 120); });
    $('search').addEventListener('keydown', (e) => {
      if (e.key === 'Enter') { clearTimeout(t); S.q = $('search').value; runSearch(); const first = sortedHits()[0]; if (first !== undefined) select(first, { reveal: true, center: true }); else changed({ colours: true, tree: true }); }
      if (e.key === 'Escape') { $('search').value = ''; S.q = ''; runSearch(); changed({ colours: true, tree: true }); }
    });
  }
  function useHierarchy(k) {
    // everything derived from one hierarchy's data is rebuilt; listeners stay (bindControls)
    hi = k; view = null; pointCol = null; labels = []; A = null; focusIdx = -1; expanded.clear();
    prepare(HIER[k]);
    $('hier').value = String(k);
    renderBanner(); renderGuarantee(); fillControls();
    if (buf) resize();
  }
  function switchHierarchy(k) {
    if (k === hi || !HIER[k]) return;
    useHierarchy(k);
    // cluster ids and the map belong to the hierarchy: the selection and the view start afresh;
    // colour, filter and sort stay when the new hierarchy offers them, and the search runs again
    const h = home(); S.sel = -1; S.k = 1; S.cx = h.cx; S.cy = h.cy;
    syncControls(); runSearch();
    changed({ colours: true, tree: true, panel: true });
  }
  // The release's privacy guarantee, in words: differential privacy when the aggregates state it,
  // else the thresholds the run applied (not a formal guarantee).
  const fmtParam = (x) => (x !== 0 && Math.abs(x) < 1e-3) ? x.toExponential() : String(x);
  function guarantee() {
    const g = D.privacy_guarantee || {}, r = D.run || {};
    if (g.mode === 'dp' && typeof g.epsilon === 'number') {
      const unit = g.unit || 'account', params = 'ε = ' + fmtParam(g.epsilon) + (typeof g.delta === 'number' ? ', δ = ' + fmtParam(g.delta) : '');
      const cap = typeof g.max_conversations_per_account === 'number' ? ' Sizes and counts take at most ' + g.max_conversations_per_account + ' conversations from each account.' : '';
      return { mode: 'dp', short: 'Differential privacy: ' + params + ' per ' + unit,
        long: 'Differential privacy (' + params + ', unit: ' + unit + '): what this release can reveal about any one ' + unit +
          ' is bounded by these parameters, whatever else an analyst knows.' + cap,
        notCovered: Array.isArray(g.not_covered) ? g.not_covered.map(String) : [] };
    }
    const ma = typeof g.min_accounts === 'number' ? g.min_accounts : r.min_accounts;
    const mc = typeof g.min_conversations === 'number' ? g.min_conversations : r.min_conversations;
    if (typeof ma !== 'number') return { mode: 'unknown', short: 'Privacy: not stated in this release', long: 'This release does not state its privacy rule.' };
    const who = r.account_ids === 'absent' ? 'conversations (no account ids)' : 'accounts';
    const cap = typeof g.max_conversations_per_account === 'number' ? ' Sizes count at most ' + g.max_conversations_per_account + ' conversations per account.' : '';
    return { mode: 'threshold', short: 'Privacy: thresholds (≥ ' + ma + ' ' + (r.account_ids === 'absent' ? 'conversations' : 'accounts') + ' a cluster), not a formal guarantee',
      long: 'Threshold mode: a cluster is published only with ≥ ' + ma + ' ' + who + (typeof mc === 'number' ? ' and ≥ ' + mc + ' conversations' : '') +
        '; breakdown values and time buckets held by too few accounts are merged into "other" or left out. ' +
        'This limits what a small group reveals, but it is not a formal (differential-privacy) guarantee.' + cap, notCovered: [] };
  }
  function renderGuarantee() {
    const g = guarantee(), box = $('guarantee');
    box.textContent = g.short; box.title = g.long; box.dataset.mode = g.mode;
  }
  function syncControls() {
    const setSel = (s, v) => { if ([...s.options].some((o) => o.value === v)) s.value = v; else { s.selectedIndex = 0; } return s.value; };
    S.colour = setSel($('colour'), S.colour); S.filter = setSel($('filter'), S.filter); S.sort = setSel($('sort'), S.sort);
    $('search').value = S.q; $('filter-min').value = S.fmin;
    $('filter-min-wrap').style.display = S.filter.startsWith('cat:') ? '' : 'none';
  }
  function runSearch() {
    searchHits = new Set(); searchRel = new Set();
    const q = S.q.trim().toLowerCase();
    if (q) C.forEach((c, i) => {
      if (c.name.toLowerCase().includes(q) || c.description.toLowerCase().includes(q)) {
        searchHits.add(i); searchRel.add(i); for (const a of ancestors(i)) searchRel.add(a);
      }
    });
    $('search-count').textContent = q ? (searchHits.size === 1 ? '1 cluster' : searchHits.size + ' clusters') : '';
  }
  const sortedHits = () => [...searchHits].sort((a, b) => C[a].level - C[b].level || C[b].size - C[a].size);

  // ---------------------------------------------------------------- URL hash state
  let hashTimer = null, lastHash = '';
  function writeHash() {
    clearTimeout(hashTimer);
    hashTimer = setTimeout(() => {
      const p = new URLSearchParams();
      if (hi > 0) p.set('h', hierName(D));
      if (S.sel >= 0) p.set('c', C[S.sel].id);
      if (S.colour !== 'top') p.set('colour', S.colour);
      if (S.filter) { p.set('filter', S.filter); if (S.filter.startsWith('cat:')) p.set('fmin', String(S.fmin)); }
      if (S.q) p.set('q', S.q);
      if (S.sort !== 'size') p.set('sort', S.sort);
      if (S.k !== 1 || S.cx !== home().cx || S.cy !== home().cy) p.set('z', [S.k.toFixed(3), S.cx.toPrecision(6), S.cy.toPrecision(6)].join(','));
      const h = p.toString();
      lastHash = h;
      const url = location.href.split('#')[0] + (h ? '#' + h : '');
      try { history.replaceState(null, '', url); } catch (e) { location.hash = h; }
    }, 60);
  }
  function readHash() {
    const h = location.hash.replace(/^#/, '');
    const p = new URLSearchParams(h);
    const k = Math.max(0, HIER.findIndex((x) => hierName(x) === p.get('h')));
    if (k !== hi) useHierarchy(k);
    S.sel = p.has('c') && byId.has(p.get('c')) ? byId.get(p.get('c')) : -1;
    S.colour = p.get('colour') || 'top';
    S.filter = p.get('filter') || '';
    S.fmin = p.has('fmin') ? clamp(parseFloat(p.get('fmin')) || 10, 0, 100) : 10;
    S.q = p.get('q') || '';
    S.sort = p.get('sort') || 'size';
    const z = (p.get('z') || '').split(',').map(parseFloat);
    if (z.length === 3 && z.every(isFinite)) { S.k = clamp(z[0], 0.2, 4000); S.cx = z[1]; S.cy = z[2]; }
    else { const hm = home(); S.k = 1; S.cx = hm.cx; S.cy = hm.cy; }
    lastHash = h;
  }
  function applyHash() {
    readHash(); syncControls(); runSearch();
    if (S.sel >= 0) for (const a of ancestors(S.sel)) expanded.add(a);
    changed({ colours: true, tree: true, panel: true, nohash: true });
  }
  window.addEventListener('hashchange', () => { if (location.hash.replace(/^#/, '') !== lastHash) applyHash(); });

  // ---------------------------------------------------------------- selection
  function select(i, opts) {
    opts = opts || {};
    S.sel = i;
    if (i >= 0) { for (const a of ancestors(i)) expanded.add(a); }
    if (i >= 0 && opts.center && centroid[i]) {
      const [sx, sy] = toScreen(centroid[i][0], centroid[i][1]);
      if (sx < 40 || sy < 40 || sx > cssW - 40 || sy > cssH - 40) { S.cx = centroid[i][0]; S.cy = centroid[i][1]; }
    }
    changed({ colours: true, tree: true, panel: true });
    if (opts.reveal && i >= 0) {
      const li = treeEl.querySelector('li[data-idx="' + i + '"]');
      if (li) { li.scrollIntoView({ block: 'nearest' }); if (opts.focus) focusItem(li); }
    }
  }

  let pending = {};
  let raf = 0;
  function changed(what) {
    for (const k in what) pending[k] = pending[k] || what[k];
    pending.draw = true;
    if (!what.nohash) writeHash();
    if (what.tree) renderTree();
    if (what.panel) renderPanel();
    $('filter-min-wrap').style.display = S.filter.startsWith('cat:') ? '' : 'none';
    if (!raf) raf = requestAnimationFrame(frame);
  }

  // ---------------------------------------------------------------- tree
  const treeEl = $('tree');
  function sortKids(list) {
    const arr = list.slice();
    const other = (i) => C[i].kind === 'other' ? 1 : 0;
    if (S.sort === 'name') arr.sort((a, b) => other(a) - other(b) || C[a].name.localeCompare(C[b].name));
    else if (S.sort === 'size') arr.sort((a, b) => other(a) - other(b) || C[b].size - C[a].size);
    else {
      const mode = S.sort === 'colour' ? S.colour : S.sort;
      const v = (i) => { const x = clusterValue(mode, i); return x === null ? -Infinity : x; };
      arr.sort((a, b) => other(a) - other(b) || v(b) - v(a) || C[b].size - C[a].size);
    }
    return arr;
  }
  function markText(text, q) {
    const frag = document.createDocumentFragment();
    if (!q) { frag.append(text); return frag; }
    const lo = text.toLowerCase(); let at = 0, j;
    while ((j = lo.indexOf(q, at)) >= 0) {
      frag.append(text.slice(at, j), el('mark', { text: text.slice(j, j + q.length) }));
      at = j + q.length;
    }
    frag.append(text.slice(at));
    return frag;
  }
  let focusIdx = -1;
  function treeItem(i, depth) {
    const c = C[i], q = S.q.trim().toLowerCase();
    const hasKids = c.kids.length > 0, open = hasKids && expanded.has(i);
    const parentSize = c.parentIdx >= 0 ? C[c.parentIdx].size : TOTAL;
    const sw = c.kind === 'other' ? OTHER_RGB : baseRgb(i);
    const valMode = S.sort.startsWith('mean:') ? S.sort : (S.sort === 'colour' && S.colour !== 'top' ? S.colour : null);
    let num = fmtInt(c.size) + ' · ' + fmtPct(c.share);
    if (valMode) num = fmtMode(valMode, i) + ' · ' + fmtInt(c.size);
    const name = el('span', { class: 'name', title: c.name }, markText(c.name, q));
    if (c.kind === 'other') name.append(el('span', { class: 'badge', text: 'withheld' }));
    const row = el('div', { class: 'row', style: '--depth:' + depth },
      el('span', { class: 'caret', 'aria-hidden': 'true', text: hasKids ? (open ? '▼' : '▶') : '' }),
      name,
      el('span', { class: 'num', text: num }),
      el('span', { class: 'desc', title: c.description }, markText(c.description, q)),
      el('span', { class: 'sizebar', 'aria-hidden': 'true', style: '--swatch:' + rgbCss(sw) },
        el('i', { style: 'width:' + clamp(100 * c.size / (parentSize || 1), 1, 100).toFixed(1) + '%' })));
    const li = el('li', {
      role: 'treeitem', 'data-idx': i, 'data-id': c.id, 'aria-level': depth + 1,
      'aria-selected': S.sel === i ? 'true' : 'false', tabindex: '-1',
      'aria-label': c.name + (c.kind === 'other' ? ' (withheld)' : '') + ', ' + fmtInt(c.size) + ' conversations',
      class: [c.kind === 'other' ? 'other' : '', (!filterMatchTree(i) || (q && !searchRel.has(i))) ? 'dim' : '', searchHits.has(i) ? 'hit' : ''].join(' ').trim() || null,
    }, row);
    if (hasKids) li.setAttribute('aria-expanded', open ? 'true' : 'false');
    if (open) {
      const ul = el('ul', { role: 'group' });
      for (const k of sortKids(c.kids)) ul.append(treeItem(k, depth + 1));
      li.append(ul);
    }
    return li;
  }
  function filterMatchTree(i) {
    if (!S.filter) return true;
    if (filterMatch(i)) return true;
    // keep ancestors of matches readable
    const stack = C[i].kids.slice();
    while (stack.length) { const j = stack.pop(); if (filterMatch(j)) return true; stack.push(...C[j].kids); }
    return false;
  }
  function renderTree() {
    if (S.q.trim()) for (const i of searchRel) if (!searchHits.has(i) || C[i].kids.some((k) => searchRel.has(k))) expanded.add(i);
    const scroll = treeEl.parentElement.scrollTop;
    const roots = sortKids(C.filter((c) => c.parentIdx < 0).map((c) => c.idx));
    treeEl.replaceChildren(...roots.map((i) => treeItem(i, 0)));
    treeEl.parentElement.scrollTop = scroll;
    let f = treeEl.querySelector('li[data-idx="' + (focusIdx >= 0 ? focusIdx : S.sel) + '"]') || treeEl.querySelector('li');
    if (f) f.tabIndex = 0;
    const shown = C.filter((c) => c.kind !== 'other').length;
    $('tree-meta').textContent = fmtInt(shown) + ' published';
  }
  function focusItem(li) {
    for (const x of treeEl.querySelectorAll('li[tabindex="0"]')) x.tabIndex = -1;
    li.tabIndex = 0; focusIdx = +li.dataset.idx; li.focus({ preventScroll: false });
  }
  const visibleItems = () => [...treeEl.querySelectorAll('li[role="treeitem"]')].filter((li) => li.offsetParent !== null);
  function toggle(i, open) {
    if (!C[i].kids.length) return;
    if (open === undefined) open = !expanded.has(i);
    if (open) expanded.add(i); else expanded.delete(i);
    renderTree();
    const li = treeEl.querySelector('li[data-idx="' + i + '"]'); if (li) focusItem(li);
  }
  treeEl.addEventListener('click', (e) => {
    const li = e.target.closest('li[role="treeitem"]'); if (!li) return;
    const i = +li.dataset.idx;
    focusIdx = i;
    if (e.target.closest('.caret')) { toggle(i); return; }
    if (S.sel === i && C[i].kids.length) toggle(i, !expanded.has(i));
    else { if (C[i].kids.length) expanded.add(i); select(i, { center: true }); }
    const li2 = treeEl.querySelector('li[data-idx="' + i + '"]'); if (li2) focusItem(li2);
  });
  treeEl.addEventListener('keydown', (e) => {
    const li = e.target.closest('li[role="treeitem"]'); if (!li) return;
    const i = +li.dataset.idx, items = visibleItems(), pos = items.indexOf(li);
    let handled = true;
    switch (e.key) {
      case 'ArrowDown': if (pos < items.length - 1) focusItem(items[pos + 1]); break;
      case 'ArrowUp': if (pos > 0) focusItem(items[pos - 1]); break;
      case 'Home': focusItem(items[0]); break;
      case 'End': focusItem(items[items.length - 1]); break;
      case 'ArrowRight':
        if (C[i].kids.length && !expanded.has(i)) toggle(i, true);
        else if (C[i].kids.length) { const f = li.querySelector('ul li'); if (f) focusItem(f); }
        break;
      case 'ArrowLeft':
        if (expanded.has(i)) toggle(i, false);
        else if (C[i].parentIdx >= 0) { const p = treeEl.querySelector('li[data-idx="' + C[i].parentIdx + '"]'); if (p) focusItem(p); }
        break;
      case 'Enter': case ' ': select(i, { reveal: true, focus: true, center: true }); break;
      default: handled = false;
    }
    if (handled) e.preventDefault();
  });

  // ---------------------------------------------------------------- panel
  const panel = $('panel');
  const clusterLink = (i) => el('button', { type: 'button', class: 'linkbtn', 'data-goto': i, text: C[i].name });
  panel.addEventListener('click', (e) => {
    const b = e.target.closest('[data-goto]'); if (!b) return;
    const i = +b.dataset.goto; select(i, { reveal: true, center: true });
  });
  function bars(counts, total) {
    const entries = Object.entries(counts).sort((a, b) => (a[0] === 'other') - (b[0] === 'other') || b[1] - a[1]);
    const max = Math.max(1, ...entries.map((e) => e[1]));
    const g = el('div', { class: 'bars' });
    for (const [k, v] of entries.slice(0, 12)) {
      g.append(el('span', { class: 'lbl', title: k, text: k }),
        el('span', { class: 'trk' }, el('i', { style: 'width:' + (100 * v / max).toFixed(1) + '%' })),
        el('span', { class: 'val', text: fmtInt(v) + ' · ' + fmtPct(total ? v / total : null) }));
    }
    if (entries.length > 12) g.append(el('span', { class: 'lbl muted', text: '+ ' + (entries.length - 12) + ' more' }), el('span'), el('span'));
    return g;
  }
  function histogram(h) {
    const keys = Object.keys(h).sort((a, b) => (parseFloat(a) - parseFloat(b)) || a.localeCompare(b));
    const max = Math.max(1, ...keys.map((k) => h[k]));
    const tot = keys.reduce((s, k) => s + h[k], 0);
    return el('div', { class: 'hist', role: 'img', 'aria-label': keys.map((k) => k + ': ' + h[k]).join(', ') },
      ...keys.map((k) => el('div', { class: 'col', title: k + ': ' + fmtInt(h[k]) + ' (' + fmtPct(h[k] / (tot || 1), 0) + ')' },
        el('i', { style: 'height:' + (100 * h[k] / max * 0.8).toFixed(1) + '%' }), el('span', { text: k }))));
  }
  function timeline(tl) {
    const NS = 'http://www.w3.org/2000/svg', W = 320, H = 80;
    const max = Math.max(1, ...tl.map((p) => p[1]));
    const svg = document.createElementNS(NS, 'svg');
    svg.setAttribute('viewBox', '0 0 ' + W + ' ' + H); svg.setAttribute('preserveAspectRatio', 'none');
    svg.setAttribute('role', 'img'); svg.setAttribute('aria-label', 'Conversations over time, peak ' + max);
    const pts = tl.map((p, j) => [tl.length > 1 ? (j / (tl.length - 1)) * (W - 4) + 2 : W / 2, H - 4 - (p[1] / max) * (H - 10)]);
    const area = document.createElementNS(NS, 'path');
    area.setAttribute('d', 'M' + pts[0][0] + ',' + (H - 2) + pts.map((p) => 'L' + p[0].toFixed(1) + ',' + p[1].toFixed(1)).join('') + 'L' + pts[pts.length - 1][0] + ',' + (H - 2) + 'Z');
    area.setAttribute('fill', '#e3f0f8');
    const line = document.createElementNS(NS, 'polyline');
    line.setAttribute('points', pts.map((p) => p[0].toFixed(1) + ',' + p[1].toFixed(1)).join(' '));
    line.setAttribute('fill', 'none'); line.setAttribute('stroke', '#0072B2'); line.setAttribute('stroke-width', '2');
    line.setAttribute('vector-effect', 'non-scaling-stroke');
    svg.append(area, line);
    return el('div', { class: 'timeline' }, svg,
      el('div', { class: 'axis' }, el('span', { text: tl[0][0] }), el('span', { text: 'peak ' + fmtInt(max) + ' / ' + ((D.run && D.run.time_unit) || 'period') }), el('span', { text: tl[tl.length - 1][0] })));
  }
  function facetSection(c) {
    const out = [];
    const names = D.facets.map((f) => f.name);
    for (const n of Object.keys(D.facets_unavailable)) if (!names.includes(n)) names.push(n);
    for (const n of names) {
      const f = D.facets.find((x) => x.name === n);
      out.push(el('h3', { text: facetLabel(n) }));
      if (D.facets_unavailable[n] !== undefined) { out.push(el('p', { class: 'unavail', text: 'unavailable: ' + D.facets_unavailable[n] })); continue; }
      const v = c ? c.facets[n] : null;
      if (!v) { out.push(el('p', { class: 'unavail', text: 'no data for this cluster' })); continue; }
      if (f && f.kind === 'number' || (v.hist && 'mean' in v)) {
        out.push(el('div', { class: 'facet-mean' }, 'mean ', el('b', { text: fmtNum(v.mean) }),
          f && typeof f.min === 'number' ? el('span', { class: 'muted', text: ' (scale ' + f.min + '–' + f.max + ')' }) : null));
        if (v.hist && Object.keys(v.hist).length) out.push(histogram(v.hist));
      } else {
        let tot = 0; for (const k in v) tot += v[k];
        out.push(bars(v, tot));
      }
    }
    return out;
  }
  function renderPanel() {
    const kids = [];
    if (S.sel < 0) {
      const r = D.run || {};
      kids.push(el('h2', { text: 'Overview' }));
      kids.push(el('p', { class: 'muted', text: 'Select a cluster in the tree or on the map. Zoom in on the map to see finer clusters.' }));
      kids.push(el('div', { class: 'stats' },
        stat('Conversations', fmtInt(r.conversations !== undefined ? r.conversations : N)),
        stat('Accounts', fmtInt(r.accounts)), stat('Levels', fmtInt(D.levels))));
      const tops = C.filter((c) => c.parentIdx < 0).sort((a, b) => (a.kind === 'other') - (b.kind === 'other') || b.size - a.size);
      kids.push(el('h3', { text: 'Top-level clusters' }));
      kids.push(el('ul', { class: 'children' }, ...tops.map((c) => el('li', null, clusterLink(c.idx), el('span', { class: 'num', text: fmtInt(c.size) + ' · ' + fmtPct(c.share) })))));
      kids.push(el('h3', { text: 'Privacy' }));
      const gu = guarantee(), gp = el('div', { class: 'guarantee-long', id: 'panel-guarantee' }, el('p', { text: gu.long }));
      if (gu.notCovered.length) gp.append(el('p', { text: 'Not covered:' }), el('ul', null, ...gu.notCovered.map((t) => el('li', { text: t }))));
      kids.push(gp);
      kids.push(el('h3', { text: 'Run' }));
      const rows = [['hierarchy', HIER.length > 1 ? hierName(D) + ' (' + (hi + 1) + ' of ' + HIER.length + ': ' + HIER.map(hierName).join(', ') + ')' : null],
        ['mode', r.mode], ['summarised facet', r.facet], ['embedding model', r.embedding_model],
        ['time range', r.time_range ? r.time_range.map((t) => String(t).slice(0, 10)).join(' – ') : null],
        ['privacy thresholds', r.min_accounts !== undefined ? 'clusters need ≥ ' + r.min_accounts + ' accounts and ≥ ' + r.min_conversations + ' conversations' : null],
        ['withheld', D.withheld && D.withheld.clusters !== undefined ? fmtInt(D.withheld.clusters) + ' clusters, ' + fmtInt(D.withheld.conversations) + ' conversations' : null]];
      for (const [k, v] of rows) if (v !== null && v !== undefined) kids.push(el('p', null, el('span', { class: 'muted', text: k + ': ' }), String(v)));
      kids.push(...facetSection(null).filter((n) => n.classList.contains('unavail') && n.textContent.startsWith('unavailable') || n.tagName === 'H3').filter((n, j, a) => n.tagName !== 'H3' || (a[j + 1] && a[j + 1].tagName !== 'H3')));
    } else {
      const c = C[S.sel];
      const anc = ancestors(S.sel);
      const crumbs = el('div', { class: 'crumbs' }, el('span', { text: 'Level ' + c.level + (anc.length ? ' ·' : '') }));
      anc.forEach((a, j) => { crumbs.append(clusterLink(a)); if (j < anc.length - 1) crumbs.append(el('span', { text: '›' })); });
      kids.push(crumbs);
      const h2 = el('h2', { id: 'panel-title', text: c.name });
      if (c.kind === 'other') h2.append(el('span', { class: 'badge', text: 'withheld bucket' }));
      kids.push(h2);
      kids.push(el('p', { class: 'desc', text: c.description }));
      const parentSize = c.parentIdx >= 0 ? C[c.parentIdx].size : null;
      kids.push(el('div', { class: 'stats' },
        stat('Conversations', fmtInt(c.size)), stat('Accounts', fmtInt(c.accounts)), stat('Share of all', fmtPct(c.share)),
        ...(parentSize ? [stat('Share of parent', fmtPct(c.size / parentSize))] : [])));
      if (c.parentIdx >= 0) kids.push(el('p', null, el('span', { class: 'muted', text: 'Parent: ' }), clusterLink(c.parentIdx)));
      if (c.audit) kids.push(el('div', { class: 'audit' }, el('b', { text: 'Privacy audit score ' + c.audit.score + '/5' }), c.audit.reason ? ' — ' + c.audit.reason : ''));
      if (c.kind === 'other') kids.push(el('p', { class: 'unavail', text: 'Conversations from clusters too small to publish; their names and descriptions are withheld.' }));
      if (c.kids.length) {
        kids.push(el('h3', { text: 'Children (' + c.kids.length + ')' }));
        kids.push(el('ul', { class: 'children' }, ...sortKids(c.kids).map((k) => el('li', null, clusterLink(k), el('span', { class: 'num', text: fmtInt(C[k].size) + ' · ' + fmtPct(C[k].size / (c.size || 1)) })))));
      }
      if (c.timeline && c.timeline.length) { kids.push(el('h3', { text: 'Over time' })); kids.push(timeline(c.timeline)); }
      kids.push(...analysesSection(S.sel));
      kids.push(...facetSection(c));
      kids.push(el('p', { class: 'note', text: 'Breakdowns count conversations; categories and bins held by too few accounts (or mostly by one) are merged into "other", and such time buckets are left off the timeline.' }));
    }
    panel.replaceChildren(...kids);
  }
  function stat(k, v) { return el('div', { class: 'stat' }, el('div', { class: 'v', text: v }), el('div', { class: 'k', text: k })); }

  // ---------------------------------------------------------------- map
  const canvas = $('map'), ctx = canvas.getContext('2d');
  const FONT = getComputedStyle(document.documentElement).getPropertyValue('--font').trim() || 'sans-serif';
  let cssW = 1, cssH = 1, dpr = 1, img = null, buf = null, s0 = 1;
  let pointCol = null, pointEmph = null, labels = [], clusterRgb = [];
  // the home view frames the 1st-99th percentile box of the points, so a few outliers do not shrink the map
  let view = null;
  function viewBox() {
    if (view) return view;
    if (N < 50) {  // few or no points (a differential-privacy release has none): frame the cluster positions too
      let a = Infinity, b = -Infinity, c = Infinity, d = -Infinity;
      const add = (x, y) => { a = Math.min(a, x); b = Math.max(b, x); c = Math.min(c, y); d = Math.max(d, y); };
      for (let i = 0; i < N; i++) add(PX[i], PY[i]);
      for (const p of centroid) if (p) add(p[0], p[1]);
      if (!isFinite(a)) return (view = bounds.slice());
      const px = (b - a) * 0.1 || 1, py = (d - c) * 0.1 || 1;
      return (view = [a - px, b + px, c - py, d + py]);
    }
    const q = (arr, a, b) => { const s = Float32Array.from(arr).sort(); return [s[Math.floor(a * (s.length - 1))], s[Math.ceil(b * (s.length - 1))]]; };
    let [x0, x1] = q(PX, 0.01, 0.99), [y0, y1] = q(PY, 0.01, 0.99);
    // grow the box to the points just outside it (within 15% of its size): the edge of a cluster stays in
    // view, a far outlier does not
    const mx = (x1 - x0) * 0.15, my = (y1 - y0) * 0.15;
    let a = x0, b = x1, c = y0, d = y1;
    for (let i = 0; i < N; i++) {
      const x = PX[i], y = PY[i];
      if (x < x0 - mx || x > x1 + mx || y < y0 - my || y > y1 + my) continue;
      if (x < a) a = x; if (x > b) b = x; if (y < c) c = y; if (y > d) d = y;
    }
    [x0, x1, y0, y1] = [a, b, c, d];
    const px = (x1 - x0) * 0.03, py = (y1 - y0) * 0.03;
    return (view = [x0 - px, x1 + px, y0 - py, y1 + py]);
  }
  function home() {
    const v = viewBox();
    return { cx: (v[0] + v[1]) / 2, cy: (v[2] + v[3]) / 2 };
  }
  function resize() {
    const r = canvas.getBoundingClientRect();
    dpr = Math.min(window.devicePixelRatio || 1, 2);
    cssW = Math.max(1, r.width); cssH = Math.max(1, r.height);
    canvas.width = Math.round(cssW * dpr); canvas.height = Math.round(cssH * dpr);
    img = ctx.createImageData(canvas.width, canvas.height); buf = new Uint32Array(img.data.buffer);
    const v = viewBox(), bw = (v[1] - v[0]) || 1, bh = (v[3] - v[2]) || 1;
    s0 = Math.min(cssW / bw, cssH / bh) * 0.92;
    pending.draw = true; if (!raf) raf = requestAnimationFrame(frame);
  }
  const toScreen = (wx, wy) => [cssW / 2 + (wx - S.cx) * s0 * S.k, cssH / 2 - (wy - S.cy) * s0 * S.k];
  const toWorld = (sx, sy) => [S.cx + (sx - cssW / 2) / (s0 * S.k), S.cy - (sy - cssH / 2) / (s0 * S.k)];
  function levelZoom(l) { return l === 0 ? 0 : 1.8 * Math.pow(2.2, l - 1); }
  function deepestLevel() { let d = 0; for (let l = 1; l < LEVELS; l++) if (S.k >= levelZoom(l)) d = l; return d; }

  function recolour() {
    if (!pointCol) { pointCol = new Uint32Array(N); pointEmph = new Uint8Array(N); }
    const mode = S.colour, cont = mode !== 'top', kind = modeKind(mode);
    const rng = kind === 'seq' ? modeRange(mode) : null;
    const cc = new Array(C.length);
    for (let i = 0; i < C.length; i++) {
      if (!cont) cc[i] = baseRgb(i);
      else if (kind !== 'seq') cc[i] = overlayRgb(mode, i);
      else { const v = clusterValue(mode, i); cc[i] = v === null ? NULL_RGB : viridis((v - rng[0]) / (rng[1] - rng[0])); }
    }
    const q = S.q.trim(), sel = S.sel, selLv = sel >= 0 ? LV[C[sel].level] : null;
    const fm = new Uint8Array(C.length); for (let i = 0; i < C.length; i++) fm[i] = filterMatch(i) ? 1 : 0;
    const cache = new Map();
    for (let i = 0; i < N; i++) {
      const f = FIN[i];
      const colourIdx = cont ? f : (LV[0][i] >= 0 ? LV[0][i] : f);
      let dim = 0;
      if (S.filter && !(f >= 0 && fm[f])) dim = 2;
      if (q && dim < 2) { let hit = false; for (let l = 0; l < LEVELS; l++) if (searchHits.has(LV[l][i])) { hit = true; break; } if (!hit) dim = 2; }
      let emph = 0;
      if (sel >= 0) { if (selLv[i] === sel) emph = 1; else dim = Math.max(dim, 1); }
      const key = colourIdx * 4 + dim;
      let col = cache.get(key);
      if (col === undefined) {
        const base = colourIdx >= 0 ? cc[colourIdx] : NULL_RGB;
        col = pack(dim === 0 ? base : mix(base, BG_RGB, dim === 1 ? 0.6 : 0.85));
        cache.set(key, col);
      }
      pointCol[i] = col; pointEmph[i] = emph ? 2 : (dim ? 0 : 1);
    }
    // emphasis: 0 = dimmed (drawn first), 1 = normal, 2 = selected (drawn last)
    clusterRgb = cc;
    renderLegend(cc, rng);
  }

  // A release without conversation positions (differential-privacy mode publishes none) still has each
  // cluster's position: draw the clusters of the finest level shown as discs, area proportional to size.
  function drawBubbles() {
    const deep = deepestLevel(), q = S.q.trim(), list = [];
    for (let i = 0; i < C.length; i++) if (centroid[i] && (C[i].level === deep || (C[i].level < deep && !C[i].kids.length))) list.push(i);
    list.sort((a, b) => C[b].size - C[a].size);
    const unit = Math.min(cssW, cssH) * 0.22 * Math.sqrt(S.k);
    ctx.save(); ctx.scale(dpr, dpr);
    for (const i of list) {
      const [x, y] = toScreen(centroid[i][0], centroid[i][1]), r = clamp(Math.sqrt((C[i].size || 0) / (TOTAL || 1)) * unit, 3, 120);
      const dim = (S.sel >= 0 && !isAncestorOrSelf(S.sel, i) && !isAncestorOrSelf(i, S.sel)) || (S.filter && !filterMatchTree(i)) || (q && !searchRel.has(i));
      ctx.globalAlpha = dim ? 0.18 : 0.55;
      ctx.fillStyle = rgbCss(clusterRgb[i] || NULL_RGB);
      ctx.beginPath(); ctx.arc(x, y, r, 0, 2 * Math.PI); ctx.fill();
      ctx.globalAlpha = dim ? 0.3 : 0.9; ctx.strokeStyle = '#ffffff'; ctx.lineWidth = 1; ctx.stroke();
    }
    ctx.restore();
  }
  function drawPoints() {
    const W = canvas.width, H = canvas.height;
    buf.fill(pack([255, 255, 255]));
    const sc = s0 * S.k * dpr, ox = W / 2 - S.cx * sc, oy = H / 2 + S.cy * sc;
    const base = N > 50000 ? 1.4 : N > 10000 ? 2 : 3;
    const sz = Math.max(1, Math.min(8, Math.round(base * dpr * Math.pow(S.k, 0.35))));
    const half = sz >> 1;
    for (let pass = 0; pass < 3; pass++) {
      for (let i = 0; i < N; i++) {
        if (pointEmph[i] !== pass) continue;
        const x = Math.round(PX[i] * sc + ox) - half, y = Math.round(oy - PY[i] * sc) - half;
        if (x < -sz || y < -sz || x >= W || y >= H) continue;
        const c = pointCol[i];
        if (sz === 1) { buf[y * W + x] = c; continue; }
        const xa = x < 0 ? 0 : x, xb = Math.min(W, x + sz), ya = y < 0 ? 0 : y, yb = Math.min(H, y + sz);
        for (let yy = ya; yy < yb; yy++) { const row = yy * W; for (let xx = xa; xx < xb; xx++) buf[row + xx] = c; }
      }
    }
    ctx.putImageData(img, 0, 0);
  }

  // Labels: highest priority first (selected, search hits, coarser level, bigger cluster); each takes the
  // first of a few spots around its centroid that lies wholly inside the map and overlaps no label placed
  // before it, else it is not drawn. A centroid off the map has no label (no pile-up on the edges).
  function obstacles() {  // the map's own widgets (legend, zoom buttons, status line) are not drawn over
    const m = canvas.getBoundingClientRect(), out = [];
    for (const id of ['legend', 'map-status']) {
      const r = $(id).getBoundingClientRect();
      if (r.width && r.height) out.push([r.left - m.left, r.top - m.top, r.right - m.left, r.bottom - m.top]);
    }
    const z = canvas.parentElement.querySelector('.zoom-btns').getBoundingClientRect();
    if (z.width) out.push([z.left - m.left, z.top - m.top, z.right - m.left, z.bottom - m.top]);
    return out;
  }
  const overlaps = (a, b) => !(a[2] <= b[0] || a[0] >= b[2] || a[3] <= b[1] || a[1] >= b[3]);
  function drawLabels() {
    ctx.save(); ctx.scale(dpr, dpr);
    const deep = deepestLevel(), q = S.q.trim();
    const cands = [];
    for (let i = 0; i < C.length; i++) {
      const c = C[i]; if (!centroid[i]) continue;
      const forced = i === S.sel || (q && searchHits.has(i));
      if (c.level > deep && !forced) continue;
      cands.push(i);
    }
    const pri = (i) => (i === S.sel ? -1e12 : 0) + (searchHits.has(i) ? -1e11 : 0) + C[i].level * 1e9 - C[i].size;
    cands.sort((a, b) => pri(a) - pri(b));
    const placed = obstacles(); labels = [];
    const anySel = S.sel >= 0, EDGE = 2, PAD = 3;
    for (const i of cands) {
      const c = C[i], [sx, sy] = toScreen(centroid[i][0], centroid[i][1]);
      if (sx < 0 || sy < 0 || sx > cssW || sy > cssH) continue;
      const isTopOfView = c.level < deep;
      const fs = c.level === 0 ? (deep > 0 ? 13 : 14) : 12;
      const font = (c.level < deep ? '600 ' : (c.level === 0 ? '650 ' : '550 ')) + fs + 'px ' + FONT;
      ctx.font = font;
      const text = c.name.length > 42 ? c.name.slice(0, 40) + '…' : c.name;
      const w = ctx.measureText(text).width + 2 * PAD, h = fs + 6;
      // on the centroid, above, below, right, left; then slid inward (still touching the centroid) at an edge
      const spots = [[0, 0], [0, -(h + 1)], [0, h + 1], [w / 2 + 4, 0], [-(w / 2 + 4), 0]];
      const inward = clamp(sx, EDGE + w / 2, cssW - EDGE - w / 2) - sx;
      if (inward && Math.abs(inward) <= w / 2) spots.push([inward, 0]);
      let box = null;
      for (const [dx, dy] of spots) {
        const bx = [sx + dx - w / 2, sy + dy - h / 2, sx + dx + w / 2, sy + dy + h / 2];
        if (bx[0] < EDGE || bx[1] < EDGE || bx[2] > cssW - EDGE || bx[3] > cssH - EDGE) continue;
        if (placed.some((b) => overlaps(bx, b))) continue;
        box = bx; break;
      }
      if (!box) continue;
      placed.push(box); labels.push({ i, box, text, font });
      const lx = (box[0] + box[2]) / 2, ly = (box[1] + box[3]) / 2;
      const dimmed = (anySel && i !== S.sel && !isAncestorOrSelf(i, S.sel)) || (S.filter && !filterMatchTree(i)) || (q && !searchRel.has(i));
      ctx.globalAlpha = dimmed ? 0.45 : (isTopOfView ? 0.8 : 1);
      if (searchHits.has(i) && q) { ctx.fillStyle = '#ffe680'; ctx.fillRect(box[0], box[1], box[2] - box[0], box[3] - box[1]); }
      if (i === S.sel) { ctx.fillStyle = '#1d1f23'; ctx.fillRect(box[0], box[1], box[2] - box[0], box[3] - box[1]); }
      ctx.textAlign = 'center'; ctx.textBaseline = 'middle';
      // the halo: a white outline under the text keeps it readable over dense points
      ctx.lineJoin = 'round'; ctx.lineWidth = 4; ctx.strokeStyle = 'rgba(255,255,255,0.92)';
      if (i !== S.sel) ctx.strokeText(text, lx, ly);
      ctx.fillStyle = i === S.sel ? '#ffffff' : (c.kind === 'other' ? '#555' : '#1d1f23');
      ctx.fillText(text, lx, ly);
    }
    ctx.globalAlpha = 1;
    ctx.restore();
  }
  function isAncestorOrSelf(a, i) { if (i < 0) return false; if (a === i) return true; return ancestors(i).includes(a); }

  // Open or folded: the reader's choice once made; until then folded for the top-level colours (the tree
  // shows them too, and an open list would hide a corner of the map) and on a short map, open otherwise.
  let legendChoice = null;
  const legendIsOpen = () => legendChoice !== null ? legendChoice : S.colour !== 'top' && cssH >= 450;
  function renderLegend(cc, rng) {
    const lg = $('legend');
    const items = [];
    const legendOpen = legendIsOpen();
    lg.classList.toggle('collapsed', !legendOpen);
    if (S.colour === 'top') {
      items.push(legendTitle('Top-level clusters'));
      const tops = C.filter((c) => c.level === 0 && c.parentIdx < 0).sort((a, b) => (a.kind === 'other') - (b.kind === 'other') || b.size - a.size);
      for (const c of tops) items.push(el('button', { type: 'button', class: 'item', 'data-goto': c.idx, title: c.name },
        el('span', { class: 'sw', style: 'background:' + rgbCss(cc[c.idx]) }), el('span', { class: 'n', text: c.name })));
    } else if (modeKind(S.colour) === 'div') {
      const o = $('colour').selectedOptions[0], ch = S.colour === 'change';
      items.push(legendTitle(o ? o.textContent : S.colour));
      items.push(el('div', { class: 'muted', text: ch ? 'cluster\'s share of the second half ÷ its share of the first half (split ' + new Date(A.halves.mid).toISOString().slice(0, 10) + ')'
        : 'cluster\'s share of ' + splitEq(S.colour.slice(6))[1] + ' ÷ its overall share (' + fmtPct(langOverall(S.colour)) + ')' }));
      const stops = []; for (let t = -1; t <= 1.0001; t += 0.2) stops.push(rgbCss(diverging(t)));
      items.push(el('div', { class: 'grad div', style: 'background:linear-gradient(90deg,' + stops.join(',') + ')' }));
      items.push(el('div', { class: 'ends' }, el('span', { text: '≤¼× ' + (ch ? 'shrinking' : 'under') }), el('span', { text: '1×' }), el('span', { text: (ch ? 'growing' : 'over') + ' ≥4×' })));
      items.push(el('div', { class: 'item' }, el('span', { class: 'sw', style: 'background:' + rgbCss(FEW_RGB) + ';outline:1px solid #ccc' }),
        el('span', { class: 'n muted wrap', text: ch ? 'too few (< 10 conversations in the two halves together)' : 'too few (< 5 conversations expected and observed)' })));
    } else if (modeKind(S.colour) === 'cls') {
      const o = $('colour').selectedOptions[0];
      items.push(legendTitle(o ? o.textContent : S.colour));
      for (const k of ['miss', 'false', 'agree']) items.push(el('div', { class: 'item' }, el('span', { class: 'sw', style: 'background:' + rgbCss(CLS[k].rgb) }), el('span', { class: 'n wrap', text: CLS[k].label })));
    } else {
      const o = $('colour').selectedOptions[0];
      items.push(legendTitle(o ? o.textContent : S.colour));
      const stops = []; for (let t = 0; t <= 1.0001; t += 0.1) stops.push(rgbCss(viridis(t)));
      items.push(el('div', { class: 'grad', style: 'background:linear-gradient(90deg,' + stops.join(',') + ')' }));
      const f = (v) => S.colour.startsWith('share:') ? fmtPct(v, 0) : fmtNum(v, 1);
      items.push(el('div', { class: 'ends' }, el('span', { text: f(rng[0]) }), el('span', { text: f(rng[1]) })));
    }
    items.push(el('div', { class: 'item' }, el('span', { class: 'sw', style: 'background:' + rgbCss(NULL_RGB) }), el('span', { class: 'n muted', text: 'withheld / no data' })));
    lg.replaceChildren(...items);
  }
  function legendTitle(t) {
    const open = legendIsOpen();
    return el('button', { type: 'button', class: 'ttl', 'aria-expanded': open ? 'true' : 'false', title: 'Show / hide the legend' },
      el('span', { 'aria-hidden': 'true', text: open ? '▾ ' : '▸ ' }), t);
  }
  $('legend').addEventListener('click', (e) => {
    if (e.target.closest('.ttl')) { legendChoice = !legendIsOpen(); changed({ colours: true, nohash: true }); return; }
    const b = e.target.closest('[data-goto]'); if (b) select(+b.dataset.goto, { reveal: true, center: true }); });

  let ready = false;
  function frame() {
    raf = 0;
    if (pending.colours || !pointCol) recolour();
    $('map-status').textContent = (N ? fmtInt(N) + ' conversations' : 'no conversation positions in this release: clusters as discs, area ∝ size') +
      ' · labels to level ' + deepestLevel() + ' · zoom ×' + S.k.toFixed(1);
    drawPoints(); if (!N) drawBubbles(); drawLabels();
    pending = {};
    if (!ready) { ready = true; window.__explorerReady = performance.now(); document.body.dataset.ready = '1'; }
  }

  // interaction
  let drag = null, moved = false;
  canvas.addEventListener('pointerdown', (e) => {
    drag = { x: e.clientX, y: e.clientY, cx: S.cx, cy: S.cy }; moved = false;
    canvas.setPointerCapture(e.pointerId); canvas.classList.add('dragging');
  });
  canvas.addEventListener('pointermove', (e) => {
    if (drag) {
      const dx = e.clientX - drag.x, dy = e.clientY - drag.y;
      if (Math.abs(dx) + Math.abs(dy) > 3) moved = true;
      if (moved) { S.cx = drag.cx - dx / (s0 * S.k); S.cy = drag.cy + dy / (s0 * S.k); hideTip(); changed({}); return; }
    }
    hover(e);
  });
  canvas.addEventListener('pointerup', (e) => {
    canvas.classList.remove('dragging');
    const wasDrag = moved; drag = null;
    if (!wasDrag) clickAt(e);
  });
  canvas.addEventListener('pointerleave', hideTip);
  canvas.addEventListener('wheel', (e) => {
    e.preventDefault();
    const r = canvas.getBoundingClientRect();
    zoomAt(e.clientX - r.left, e.clientY - r.top, Math.exp(-e.deltaY * (e.deltaMode === 1 ? 0.05 : 0.0015)));
  }, { passive: false });
  function zoomAt(sx, sy, f) {
    const [wx, wy] = toWorld(sx, sy);
    const k = clamp(S.k * f, 0.3, 4000);
    S.k = k; S.cx = wx - (sx - cssW / 2) / (s0 * k); S.cy = wy + (sy - cssH / 2) / (s0 * k);
    changed({});
  }
  $('zoom-in').addEventListener('click', () => zoomAt(cssW / 2, cssH / 2, 1.6));
  $('zoom-out').addEventListener('click', () => zoomAt(cssW / 2, cssH / 2, 1 / 1.6));
  $('zoom-reset').addEventListener('click', () => { const h = home(); S.k = 1; S.cx = h.cx; S.cy = h.cy; changed({}); });
  canvas.addEventListener('keydown', (e) => {
    const step = 60 / (s0 * S.k); let ok = true;
    if (e.key === 'ArrowLeft') S.cx -= step; else if (e.key === 'ArrowRight') S.cx += step;
    else if (e.key === 'ArrowUp') S.cy += step; else if (e.key === 'ArrowDown') S.cy -= step;
    else if (e.key === '+' || e.key === '=') { zoomAt(cssW / 2, cssH / 2, 1.4); return e.preventDefault(); }
    else if (e.key === '-' || e.key === '_') { zoomAt(cssW / 2, cssH / 2, 1 / 1.4); return e.preventDefault(); }
    else if (e.key === '0') { const h = home(); S.k = 1; S.cx = h.cx; S.cy = h.cy; }
    else if (e.key === 'Escape') { select(-1); return; }
    else ok = false;
    if (ok) { e.preventDefault(); changed({}); }
  });

  function pick(sx, sy) {
    // a label, else the nearest point's cluster at the deepest visible level, else nearest centroid
    for (let j = labels.length - 1; j >= 0; j--) { const b = labels[j].box; if (sx >= b[0] && sx <= b[2] && sy >= b[1] && sy <= b[3]) return labels[j].i; }
    const [wx, wy] = toWorld(sx, sy), rw = 7 / (s0 * S.k);
    const p = nearestPoint(wx, wy, rw);
    if (p >= 0) {
      for (let l = deepestLevel(); l >= 0; l--) if (LV[l][p] >= 0) return LV[l][p];
      return -2; // a withheld conversation: no published cluster
    }
    return -1;
  }
  const tip = $('tooltip');
  function hideTip() { tip.hidden = true; }
  function hover(e) {
    const r = canvas.getBoundingClientRect(), sx = e.clientX - r.left, sy = e.clientY - r.top;
    const i = pick(sx, sy);
    if (i === -1) { hideTip(); canvas.style.cursor = ''; return; }
    canvas.style.cursor = 'pointer';
    if (i === -2) tip.replaceChildren(el('b', { text: 'Withheld' }), 'cluster too small to publish');
    else {
      const c = C[i];
      tip.replaceChildren(el('b', { text: c.name }), fmtInt(c.size) + ' conversations · ' + fmtPct(c.share) + ' · level ' + c.level);
      if (S.colour !== 'top') tip.append(el('div', { text: ($('colour').selectedOptions[0] || {}).textContent + ': ' + fmtMode(S.colour, i) }));
    }
    tip.hidden = false;
    const tw = tip.offsetWidth, th = tip.offsetHeight;
    tip.style.left = Math.min(cssW - tw - 6, sx + 14) + 'px'; tip.style.top = Math.min(cssH - th - 6, sy + 14) + 'px';
    window.__explorerHoverAt = performance.now();  // when the page last answered a hover (benchmarks/explorer.py)
  }
  function clickAt(e) {
    const r = canvas.getBoundingClientRect(), i = pick(e.clientX - r.left, e.clientY - r.top);
    if (i >= 0) select(i, { reveal: true }); else if (i === -1) select(-1);
  }

  // Run-wide warnings (e.g. "no account ids"), shown as plain text above everything else.
  function renderBanner() {
    const warnings = Array.isArray(D.warnings) ? D.warnings : [];
    const box = $('banner');
    box.replaceChildren(...warnings.map((w) => el('p', { text: String(w) })));
    box.hidden = warnings.length === 0;
  }

  // ---------------------------------------------------------------- boot
  async function boot() {
    try {
      performance.mark('explorer:start');
      const data = await loadData();
      performance.mark('explorer:data');  // parsed (the benchmark prints these steps)
      HIER = Array.isArray(data.hierarchies) && data.hierarchies.length ? data.hierarchies : [data];
      bindControls();
      readHash();  // picks the hierarchy (h=NAME) and prepares it
      performance.mark('explorer:prepared');
      syncControls();
      runSearch();
      if (S.sel >= 0) for (const a of ancestors(S.sel)) expanded.add(a);
      renderTree(); renderPanel();
      performance.mark('explorer:panes');
      resize();
      new ResizeObserver(() => resize()).observe(canvas);
      pending.colours = true;
      if (S.sel >= 0) { const li = treeEl.querySelector('li[data-idx="' + S.sel + '"]'); if (li) li.scrollIntoView({ block: 'nearest' }); }
    } catch (err) {
      const box = $('error'); box.hidden = false; box.textContent = 'The explorer could not start: ' + (err && err.message ? err.message : err);
      window.__explorerError = String(err && err.stack || err);
      throw err;
    }
  }
  window.__explorer = {  // a small hook for tests and the screenshot tool
    state: S,
    select: (id) => select(byId.has(id) ? byId.get(id) : -1, { reveal: true, center: true }),
    screenOf: (id) => { const i = byId.get(id); return i === undefined || !centroid[i] ? null : toScreen(centroid[i][0], centroid[i][1]); },
    labelsShown: () => labels.map((l) => C[l.i].id),
    labelBoxes: () => labels.map((l) => ({ id: C[l.i].id, box: l.box, text: l.text, font: l.font })),
    mapSize: () => [cssW, cssH],
    onScreenShare: () => { let k = 0; for (let i = 0; i < N; i++) { const [x, y] = toScreen(PX[i], PY[i]); if (x >= 0 && y >= 0 && x <= cssW && y <= cssH) k++; } return N ? k / N : 0; },
    hierarchy: () => hierName(D),
    // back to a just-opened page's state with `hash` (tests share one page load between them)
    reset: (hash) => { clearTimeout(hashTimer); expanded.clear(); legendChoice = null; focusIdx = -1;
      history.replaceState(null, '', location.href.split('#')[0] + (hash ? '#' + hash : '')); applyHash(); },
    guarantee: () => guarantee(),
    clusters: () => C.map((c) => ({ id: c.id, level: c.level, name: c.name })),
    timeDraw: (k) => { if (k) S.k = k; const t = performance.now(); drawPoints(); if (!N) drawBubbles(); drawLabels(); return performance.now() - t; },
  };
  boot();
})();
