// promoter status page. Plain script, no dependencies, no build step.
//
// Everything shown comes from webhooks and registries (repository names, refs, tags,
// failure messages) and is untrusted: the DOM is built with createElement and
// textContent only, never from HTML strings.
'use strict';

(function () {
  const PAGE_SIZE = 50;
  // The phases of internal/types, in flow order; the API refuses any other.
  const PHASES = ['building', 'waiting', 'merged', 'signed', 'promoted', 'failed', 'conflicted'];
  const TOKEN_KEY = 'promoter.statusToken';

  const $ = (id) => document.getElementById(id);

  // el builds an element: attrs sets properties (className, title, href, dataset entries
  // as data-*), children are nodes or strings (text nodes, never parsed).
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith('data-')) e.dataset[k.slice(5).replace(/-([a-z])/g, (_, c) => c.toUpperCase())] = String(v);
      else if (k === 'onclick') e.addEventListener('click', v);
      else e[k] = v;
    }
    for (const c of children.flat()) {
      if (c === undefined || c === null || c === false) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  // --- time -----------------------------------------------------------------------

  // t parses a Go time; the zero time (a step not reached, or state written before the
  // timeline was recorded) is null.
  function t(s) {
    if (!s) return null;
    const d = new Date(s);
    return isNaN(d) || d.getUTCFullYear() < 2 ? null : d;
  }
  const pad = (n, w) => String(n).padStart(w || 2, '0');
  function clock(d) {
    return d ? `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}` : '—';
  }
  function ago(d) {
    if (!d) return '—';
    const s = Math.round((Date.now() - d.getTime()) / 1000);
    if (s < 5) return 'just now';
    if (s < 90) return `${s}s ago`;
    if (s < 5400) return `${Math.round(s / 60)}m ago`;
    if (s < 129600) return `${Math.round(s / 3600)}h ago`;
    return `${Math.round(s / 86400)}d ago`;
  }
  function span(ms) {
    if (ms === null || ms === undefined || isNaN(ms)) return '';
    if (ms < 1000) return `${Math.round(ms)} ms`;
    if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
    return `${Math.floor(ms / 60000)} m ${Math.round((ms % 60000) / 1000)} s`;
  }
  const nsToMs = (ns) => (ns ? ns / 1e6 : null);
  function when(d) {
    return el('span', { className: 'when', title: d ? d.toISOString() : '' }, ago(d));
  }

  // --- pieces ---------------------------------------------------------------------

  function copyText(text, button) {
    const done = () => { button.textContent = 'copied'; button.classList.add('done'); setTimeout(() => { button.textContent = 'copy'; button.classList.remove('done'); }, 1200); };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, () => fallbackCopy(text) && done());
    } else if (fallbackCopy(text)) {
      done();
    }
  }
  function fallbackCopy(text) {
    const ta = el('textarea', { value: text, readOnly: true });
    ta.style.position = 'fixed'; ta.style.opacity = '0';
    document.body.append(ta);
    ta.select();
    let ok = false;
    try { ok = document.execCommand('copy'); } catch (e) { ok = false; }
    ta.remove();
    return ok;
  }
  function digest(d) {
    if (!d) return el('span', { className: 'muted' }, '—');
    const short = d.replace(/^(sha256:)?([0-9a-f]{12})[0-9a-f]*$/, (_, p, h) => (p || '') + h + '…');
    const b = el('button', { type: 'button', className: 'copy', title: 'copy ' + d }, 'copy');
    b.addEventListener('click', (ev) => { ev.stopPropagation(); copyText(d, b); });
    return el('span', { className: 'digest mono', title: d, 'data-digest': d }, short, b);
  }
  function shorten(s, n) {
    return s.length > n ? s.slice(0, n - 1) + '…' : s;
  }
  function phase(p) {
    return el('span', { className: 'phase ' + (PHASES.includes(p) ? p : 'unknown') }, p || 'new');
  }
  const key = (r) => r.pipeline + '.' + r.revision;
  const revHref = (p, r) => '#/r/' + encodeURIComponent(p) + '/' + encodeURIComponent(r);

  // promotion summarizes one destination's state.
  function promotionState(pr) {
    if (!pr) return ['pending', 'muted'];
    if (pr.conflicted) return ['conflicted', 'flag'];
    if (pr.done) return ['promoted', 'ok'];
    if (pr.retry && pr.retry.failures) return [`retrying (${pr.retry.failures} failed)`, 'warn'];
    return ['pending', 'muted'];
  }

  // evidenceText is why a platform's image was accepted into the merge, as
  // types.Evidence.String() in internal/types/evidence.go says it (keep the two alike).
  function evidenceText(e) {
    let s;
    if (e.kind === 'build') s = `built by promoter (job ${e.job || ''})`;
    else if (e.kind === 'signature') s = 'signed by ' + (e.signer || '');
    else if (e.kind === 'unverified') s = 'unverified';
    else s = String(e.kind || '');
    if (e.detail) s += '; ' + e.detail;
    return s;
  }

  // evidence shows a merged platform's evidence, an unverified image as a warning; nothing
  // before the revision is merged.
  function evidence(r, ps) {
    const e = ps.evidence;
    if (!r.index || !e) return null;
    const cls = e.kind === 'build' || e.kind === 'signature' ? 'ok' : 'warn';
    return el('div', { className: 'evidence ' + cls, 'data-evidence': e.kind || '', title: e.digest ? 'evidence for ' + e.digest : undefined },
      evidenceText(e));
  }

  function platformCell(r) {
    const keys = Object.keys(r.platforms || {}).sort();
    if (!keys.length) return el('span', { className: 'muted' }, '—');
    return keys.map((k) => {
      const ps = r.platforms[k];
      let build;
      if (ps.build === 'succeeded') build = el('span', { className: 'ok' }, 'built');
      else if (ps.build === 'failed') build = el('span', { className: 'bad' }, 'build failed');
      else if (ps.digest) build = el('span', { className: 'ok' }, 'pushed');
      else build = el('span', { className: 'muted' }, r.phase === 'building' ? 'building…' : 'waiting');
      const facts = [];
      if (ps.attempts) facts.push(`attempt ${ps.attempts}`);
      if (ps.buildDuration) facts.push(span(nsToMs(ps.buildDuration)));
      // The revision's reason already quotes a final failure's.
      const reason = ps.buildReason && !(r.reason || '').includes(ps.buildReason) ? ps.buildReason : '';
      const ev = evidence(r, ps);
      // Evidence of a build names its job already.
      const job = ps.job && !(ev && ps.evidence.kind === 'build' && ps.evidence.job === ps.job);
      return el('div', { className: 'item platform', 'data-platform': k },
        el('strong', {}, k), ' ', build,
        facts.length ? el('span', { className: 'tag' }, ' · ' + facts.join(' · ')) : null,
        job ? el('div', { className: 'tag job', title: ps.job }, 'job ' + shorten(ps.job, 40)) : null,
        reason ? el('div', { className: 'reason bad' }, reason) : null,
        ps.digest ? el('div', {}, digest(ps.digest)) : null,
        ev);
    });
  }

  function destinations(r) {
    const pipe = state.pipelines.get(r.pipeline);
    const names = new Set(pipe ? pipe.destinations : []);
    for (const d of Object.keys(r.promotions || {})) names.add(d);
    return [...names];
  }

  function promotionCell(r) {
    const dests = destinations(r);
    if (!dests.length) return el('span', { className: 'muted' }, '—');
    return dests.map((d) => {
      const pr = (r.promotions || {})[d];
      const [label, cls] = promotionState(pr);
      return el('div', { className: 'item promotion', 'data-destination': d },
        el('span', { className: 'mono' }, d), ' ', el('span', { className: cls }, label),
        pr && pr.duration ? el('span', { className: 'tag' }, ' · ' + span(nsToMs(pr.duration))) : null,
        pr && pr.digest ? el('div', {}, digest(pr.digest)) : null,
        pr && pr.error ? el('div', { className: 'reason ' + (pr.conflicted ? 'bad' : 'warn') }, pr.error) : null);
    });
  }

  function conflicted(r) {
    return r.phase === 'conflicted' || Object.values(r.promotions || {}).some((p) => p.conflicted) ||
      Object.values(r.releases || {}).some((rel) => Object.values(rel.promotions || {}).some((p) => p.conflicted));
  }

  function row(r) {
    const tr = el('tr', { className: 'rev ' + (r.phase || ''), 'data-key': key(r), 'data-phase': r.phase || '' },
      el('td', {}, el('a', { className: 'mono revlink', href: revHref(r.pipeline, r.revision) }, r.revision),
        conflicted(r) ? el('div', { className: 'flag' }, '⚠ conflict') : null),
      el('td', {}, phase(r.phase),
        r.reason ? el('div', { className: 'reason' }, r.reason) : null,
        r.mergeRetry && r.mergeRetry.failures ? el('div', { className: 'reason warn' }, `merge retrying (${r.mergeRetry.failures} failed): ${r.mergeRetry.error || ''}`) : null,
        r.signRetry && r.signRetry.failures ? el('div', { className: 'reason warn' }, `signing retrying (${r.signRetry.failures} failed): ${r.signRetry.error || ''}`) : null),
      el('td', {}, platformCell(r)),
      el('td', { className: 'index' }, digest(r.index)),
      el('td', { className: 'signed' }, r.signed ? el('span', { className: 'ok', title: clock(t(r.signedAt)) }, '✓ signed') : el('span', { className: 'muted' }, '—')),
      el('td', {}, promotionCell(r)),
      el('td', {}, when(t(r.received))),
      el('td', {}, when(t(r.updated))));
    return tr;
  }

  // --- API ------------------------------------------------------------------------

  const state = {
    token: sessionStorage.getItem(TOKEN_KEY) || '',
    pipelines: new Map(), // name → PipelineInfo
    view: null, // {kind:'list', pipeline, phase, after} | {kind:'detail', pipeline, revision}
    rows: new Map(), // key → revision, of the list shown
    next: '',
    back: [], // the cursors of the pages before this one
    detail: null,
    stream: null, // AbortController of the watch
    streamPipeline: null,
  };

  class Unauthorized extends Error {}

  async function api(path, init) {
    const headers = {};
    if (state.token) headers.Authorization = 'Bearer ' + state.token;
    const resp = await fetch(path, Object.assign({ headers, cache: 'no-store' }, init || {}));
    if (resp.status === 401) throw new Unauthorized('the status token is missing or wrong');
    if (!resp.ok) {
      let msg = resp.status + ' ' + resp.statusText;
      try { msg += ': ' + (await resp.json()).error; } catch (e) { /* not JSON */ }
      throw new Error(msg);
    }
    return resp;
  }

  function showError(err) {
    if (err instanceof Unauthorized) return askToken(state.token ? 'The daemon refused this token.' : '');
    const e = $('error');
    e.hidden = !err;
    e.textContent = err ? String(err.message || err) : '';
  }

  function askToken(message) {
    stopStream();
    $('login').hidden = false;
    $('list').hidden = true;
    $('detail').hidden = true;
    $('login-error').hidden = !message;
    $('login-error').textContent = message || '';
    setLive('off', 'needs the status token');
    $('token').focus();
  }

  // --- live updates: server-sent events over fetch, so that the token can be sent as a
  // header (EventSource cannot send one) ----------------------------------------------

  function setLive(cls, text) {
    const l = $('live');
    l.className = 'live ' + cls;
    l.textContent = text;
  }

  function stopStream() {
    if (state.stream) state.stream.abort();
    state.stream = null;
  }

  function watchPipeline() {
    const v = state.view;
    return v ? v.pipeline || '' : '';
  }

  async function startStream(delay) {
    stopStream();
    const ctl = new AbortController();
    state.stream = ctl;
    state.streamPipeline = watchPipeline();
    if (delay) await new Promise((res) => setTimeout(res, delay));
    if (ctl.signal.aborted) return;
    setLive('off', delay ? 'reconnecting…' : 'connecting…');
    let resp;
    try {
      const q = state.streamPipeline ? '?pipeline=' + encodeURIComponent(state.streamPipeline) : '';
      resp = await api('/v1/watch' + q, { signal: ctl.signal, headers: Object.assign({ Accept: 'text/event-stream' }, state.token ? { Authorization: 'Bearer ' + state.token } : {}) });
    } catch (err) {
      if (ctl.signal.aborted) return;
      if (err instanceof Unauthorized) return showError(err);
      return startStream(Math.min((delay || 500) * 2, 10000));
    }
    const reader = resp.body.getReader();
    const dec = new TextDecoder();
    let buf = '';
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          let event = 'message';
          const data = [];
          for (const line of block.split('\n')) {
            if (line.startsWith(':')) continue;
            const c = line.indexOf(':');
            const field = c < 0 ? line : line.slice(0, c);
            const val = c < 0 ? '' : line.slice(c + 1).replace(/^ /, '');
            if (field === 'event') event = val;
            else if (field === 'data') data.push(val);
          }
          onEvent(event, data.join('\n'));
        }
      }
    } catch (err) {
      if (ctl.signal.aborted) return;
    }
    if (ctl.signal.aborted) return;
    startStream(1000); // the daemon restarted or the stream broke: connect and read again
  }

  function onEvent(event, data) {
    if (event === 'ready') {
      setLive('on', 'live');
      load(); // read the state now that no write can fall between it and the stream
      return;
    }
    if (event !== 'revision') return;
    let r;
    try { r = JSON.parse(data); } catch (e) { return; }
    const v = state.view;
    if (!v) return;
    if (v.kind === 'detail') {
      if (r.pipeline === v.pipeline && r.revision === v.revision) renderDetail(r);
      return;
    }
    applyToList(r);
  }

  // applyToList shows a revision just written. The list is the last written first, so
  // on the first page it goes to the top (added, or moved up); on a later page, where it
  // no longer belongs, a row already shown is updated in place and nothing is added. One
  // that no longer matches the phase filter is dropped.
  function applyToList(r) {
    const v = state.view;
    const k = key(r);
    const matches = (!v.pipeline || r.pipeline === v.pipeline) && (!v.phase || r.phase === v.phase);
    if (!matches) {
      if (state.rows.delete(k)) renderRows();
      return;
    }
    if (!v.after) {
      state.rows = new Map([[k, r], ...[...state.rows].filter(([other]) => other !== k)]);
    } else if (state.rows.has(k)) {
      state.rows.set(k, r);
    } else {
      return;
    }
    renderRows(k);
  }

  // --- views ----------------------------------------------------------------------

  function parseHash() {
    const h = location.hash.replace(/^#/, '');
    const m = h.match(/^\/r\/([^/]+)\/([^/?]+)$/);
    if (m) return { kind: 'detail', pipeline: decodeURIComponent(m[1]), revision: decodeURIComponent(m[2]) };
    const q = new URLSearchParams(h.replace(/^\/?\??/, ''));
    return { kind: 'list', pipeline: q.get('pipeline') || '', phase: q.get('phase') || '', after: q.get('after') || '' };
  }

  function listHash(pipeline, phase, after) {
    const q = new URLSearchParams();
    if (pipeline) q.set('pipeline', pipeline);
    if (phase) q.set('phase', phase);
    if (after) q.set('after', after);
    const s = q.toString();
    return '#/' + (s ? '?' + s : '');
  }

  async function load() {
    const v = state.view;
    showError(null);
    try {
      if (v.kind === 'detail') {
        const r = await (await api('/v1/revisions/' + encodeURIComponent(v.pipeline) + '/' + encodeURIComponent(v.revision))).json();
        if (state.view === v) renderDetail(r);
        return;
      }
      const q = new URLSearchParams({ order: 'recent', limit: String(PAGE_SIZE) });
      if (v.pipeline) q.set('pipeline', v.pipeline);
      if (v.phase) q.set('phase', v.phase);
      if (v.after) q.set('after', v.after);
      const page = await (await api('/v1/revisions?' + q)).json();
      if (state.view !== v) return;
      state.rows = new Map(page.revisions.map((r) => [key(r), r]));
      state.next = page.next || '';
      renderRows();
    } catch (err) {
      showError(err);
    }
  }

  // renderRows shows the page's revisions by pipeline, each pipeline's in the order the
  // API listed them: the last written first.
  function renderRows(flash) {
    const body = $('rows');
    const keys = [...state.rows.keys()];
    const groups = new Map();
    for (const k of keys) {
      const r = state.rows.get(k);
      if (!groups.has(r.pipeline)) groups.set(r.pipeline, []);
      groups.get(r.pipeline).push(r);
    }
    const out = [];
    for (const group of [...groups.keys()].sort()) {
      const info = state.pipelines.get(group);
      out.push(el('tr', { className: 'group', 'data-pipeline': group }, el('td', { colSpan: 8 }, group,
        info ? el('span', { className: 'muted' }, '  ' + info.staging + ' · ' + info.platforms.join(', ') + (info.sign ? ' · signed' : '') + (info.destinations.length ? ' → ' + info.destinations.join(', ') : '')) : null)));
      for (const r of groups.get(group)) {
        const tr = row(r);
        if (key(r) === flash) tr.classList.add('flash');
        out.push(tr);
      }
    }
    body.replaceChildren(...out);
    $('list').hidden = false;
    $('detail').hidden = true;
    $('login').hidden = true;
    $('empty').hidden = keys.length > 0;
    $('prev').disabled = state.back.length === 0 && !state.view.after;
    $('next').disabled = !state.next;
    $('pageinfo').textContent = `${keys.length} revision${keys.length === 1 ? '' : 's'} on this page` + (state.view.phase && state.next && keys.length < PAGE_SIZE ? ' (more may follow)' : '');
  }

  // timeline lists each recorded step of r by time: what happened, when, since the
  // revision was received, and how long the step took.
  function timeline(r) {
    const steps = [];
    const add = (at, what, opts) => steps.push(Object.assign({ at, what }, opts || {}));
    add(t(r.received), 'received: source webhook or poll, or first arch tag seen', { kind: 'received' });
    for (const k of Object.keys(r.platforms || {}).sort()) {
      const ps = r.platforms[k];
      const built = t(ps.built);
      const took = nsToMs(ps.buildDuration);
      if (built && took) add(new Date(built.getTime() - took), `build of ${k} started` + (ps.job ? ` (job ${ps.job})` : ''), { kind: 'build-start' });
      if (ps.build) {
        add(built, `build of ${k} ${ps.build}` + (ps.attempts ? ` after ${ps.attempts} attempt${ps.attempts === 1 ? '' : 's'}` : '') + (ps.buildReason ? ': ' + ps.buildReason : ''),
          { kind: 'build', took, fail: ps.build === 'failed' });
      }
      if (ps.digest) add(t(ps.pushed), `${k} pushed as ${ps.tag}`, { kind: 'push', digest: ps.digest });
      else add(null, `${k} not pushed yet (${ps.tag})`, { kind: 'push', pending: true });
    }
    if (r.index) add(t(r.merged), 'merged into an index', { kind: 'merge', digest: r.index });
    else if (r.mergeRetry && r.mergeRetry.failures) add(null, `merge retrying (${r.mergeRetry.failures} failed): ${r.mergeRetry.error || ''}`, { kind: 'merge', fail: true, pending: true });
    const pipe = state.pipelines.get(r.pipeline);
    if (r.signed) add(t(r.signedAt), 'signed the index and its children', { kind: 'sign' });
    else if (r.signRetry && r.signRetry.failures) add(null, `signing retrying (${r.signRetry.failures} failed): ${r.signRetry.error || ''}`, { kind: 'sign', fail: true, pending: true });
    else if (pipe && pipe.sign) add(null, 'not signed yet', { kind: 'sign', pending: true });
    for (const d of destinations(r)) {
      const pr = (r.promotions || {})[d];
      const at = pr ? t(pr.at) : null;
      const took = pr ? nsToMs(pr.duration) : null;
      if (at && took) add(new Date(at.getTime() - took), `promotion to ${d} started`, { kind: 'promote-start' });
      const [label] = promotionState(pr);
      add(at, `${label} to ${d}` + (pr && pr.error ? ': ' + pr.error : ''), { kind: 'promote', took, digest: pr && pr.digest, fail: pr && (pr.conflicted || !!pr.error), pending: !pr || (!pr.done && !pr.conflicted) });
    }
    for (const tag of Object.keys(r.releases || {}).sort()) {
      const rel = r.releases[tag];
      add(t(rel.requested), `release tag ${tag} pushed` + (rel.reason ? ': ' + rel.reason : ''), { kind: 'release' });
      for (const [d, pr] of Object.entries(rel.promotions || {})) {
        add(t(pr.at), `release ${tag} ${promotionState(pr)[0]} to ${d}` + (pr.error ? ': ' + pr.error : ''), { kind: 'release-promote', digest: pr.digest, fail: pr.conflicted });
      }
    }
    if (t(r.finished)) add(t(r.finished), `${r.phase}` + (r.reason ? ': ' + r.reason : ''), { kind: 'finished', fail: r.phase !== 'promoted' });
    // Recorded steps by time; those not reached (or recorded before timestamps were) last.
    steps.sort((a, b) => (a.at ? a.at.getTime() : Infinity) - (b.at ? b.at.getTime() : Infinity));
    return steps;
  }

  // bar is a duration's share of the longest step (set through CSSOM: the page's CSP
  // allows no inline style attribute).
  function bar(share) {
    const b = el('span', { className: 'bar' });
    b.style.width = Math.round(60 * share) + 'px';
    return b;
  }

  function renderDetail(r) {
    const steps = timeline(r);
    const t0 = t(r.received) || (steps[0] && steps[0].at);
    const longest = Math.max(1, ...steps.map((s) => s.took || 0));
    const sec = $('detail');
    sec.replaceChildren(...[
      el('p', {}, el('a', { href: '#/', id: 'back' }, '← all revisions')),
      el('h2', {}, el('span', { className: 'mono' }, r.pipeline + ' / ' + r.revision), ' ', phase(r.phase),
        conflicted(r) ? el('span', { className: 'flag' }, ' ⚠ conflict') : null),
      r.reason ? el('p', { className: 'reason error', id: 'detail-reason' }, r.reason) : null,
      el('dl', { className: 'facts' },
        el('dt', {}, 'index'), el('dd', {}, digest(r.index)),
        Object.keys(r.platforms || {}).sort().flatMap((k) => {
          const ev = evidence(r, r.platforms[k]);
          return ev ? [el('dt', {}, k), el('dd', { 'data-platform': k }, ev)] : [];
        }),
        el('dt', {}, 'signed'), el('dd', {}, r.signed ? 'yes' : 'no'),
        el('dt', {}, 'received'), el('dd', {}, clock(t(r.received))),
        el('dt', {}, 'updated'), el('dd', {}, clock(t(r.updated))),
        el('dt', {}, 'total'), el('dd', {}, t(r.finished) && t0 ? span(t(r.finished) - t0) : 'not finished')),
      el('h3', {}, 'Timeline'),
      el('ol', { className: 'timeline', id: 'timeline' }, steps.map((s) => el('li', {
        className: (s.fail ? 'fail ' : '') + (s.pending ? 'pending' : ''), 'data-kind': s.kind,
      },
      el('span', { className: 'when', title: s.at ? s.at.toISOString() : '' }, s.at ? clock(s.at) : 'not yet'),
      el('span', { className: 'offset' }, s.at && t0 ? '+' + span(s.at - t0) : ''),
      el('span', { className: 'took' }, s.took ? span(s.took) : '', s.took ? bar(s.took / longest) : null),
      el('span', { className: 'what' }, s.what, s.digest ? [' ', digest(s.digest)] : null)))),
    ].filter(Boolean));
    sec.hidden = false;
    $('list').hidden = true;
    $('login').hidden = true;
  }

  async function route() {
    const prev = state.view;
    const v = parseHash();
    if (prev && prev.kind === 'list' && v.kind === 'list' && (v.pipeline !== prev.pipeline || v.phase !== prev.phase)) state.back = [];
    state.view = v;
    $('f-pipeline').value = v.kind === 'list' ? v.pipeline : '';
    $('f-phase').value = v.kind === 'list' ? v.phase : '';
    if (!state.stream || state.streamPipeline !== watchPipeline()) {
      startStream(0); // its "ready" loads the view
    } else {
      load();
    }
  }

  async function start() {
    showError(null);
    $('logout').hidden = !state.token;
    try {
      const ps = await (await api('/v1/pipelines')).json();
      state.pipelines = new Map(ps.map((p) => [p.name, p]));
      const sel = $('f-pipeline');
      sel.replaceChildren(el('option', { value: '' }, 'all'), ...ps.map((p) => el('option', { value: p.name }, p.name)));
    } catch (err) {
      return showError(err);
    }
    $('login').hidden = true;
    state.view = null;
    route();
  }

  function init() {
    $('f-phase').append(...PHASES.map((p) => el('option', { value: p }, p)));
    const refilter = () => { location.hash = listHash($('f-pipeline').value, $('f-phase').value, ''); };
    $('f-pipeline').addEventListener('change', refilter);
    $('f-phase').addEventListener('change', refilter);
    $('next').addEventListener('click', () => {
      const v = state.view;
      state.back.push(v.after || '');
      location.hash = listHash(v.pipeline, v.phase, state.next);
    });
    $('prev').addEventListener('click', () => {
      const v = state.view;
      const after = state.back.pop() || '';
      location.hash = listHash(v.pipeline, v.phase, after);
      if (!state.back.length && !after) $('prev').disabled = true;
    });
    $('login-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      state.token = $('token').value.trim();
      $('token').value = '';
      sessionStorage.setItem(TOKEN_KEY, state.token);
      start();
    });
    $('logout').addEventListener('click', () => {
      sessionStorage.removeItem(TOKEN_KEY);
      state.token = '';
      askToken('');
    });
    window.addEventListener('hashchange', route);
    // Relative times ("3m ago") age without a reload.
    setInterval(() => {
      for (const w of document.querySelectorAll('td .when')) {
        if (w.title) w.textContent = ago(new Date(w.title));
      }
    }, 15000);
    start();
  }

  init();
})();
