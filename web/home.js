// The home page (/): what is live now (thumbnail, title, broadcaster,
// viewer count), what is scheduled, and recent streams with their
// recordings, from GET /api/directory; search by title. Works signed out.
// Refreshes every REFRESH_MS; thumbnails of live streams refresh with it.

import { api, el, fmtWhen, say, showAccountLink, visibilityLabel } from './common.js';

const REFRESH_MS = 10_000;
const $ = (id) => document.getElementById(id);

const state = { query: new URLSearchParams(location.search).get('q') ?? '', loaded: 0, data: null };
window.relaycastHome = state;

function badge(text, cls = '') {
  return el('span', { class: `badge ${cls}` }, text);
}

function thumb(c) {
  if (c.thumbnail) {
    // A live thumbnail is cached for a few seconds: a new URL per refresh
    // gets the next picture. A recording's poster never changes.
    const src = c.live ? `${c.thumbnail}?t=${Math.floor(Date.now() / REFRESH_MS)}` : c.thumbnail;
    return el('img', { class: 'thumb', src, alt: '', width: 320, height: 180, loading: 'lazy' });
  }
  const text = c.live ? (visibilityLabel(c.visibility) ? 'Sign in or buy to watch' : 'Live') : c.scheduled_at ? 'Scheduled' : 'Offline';
  return el('div', { class: 'thumb placeholder', 'aria-hidden': 'true' }, text);
}

function card(c, kind) {
  const title = c.title || c.name;
  const href = `/watch/${encodeURIComponent(c.name)}`;
  const meta = [];
  if (c.live) {
    meta.push(badge('LIVE', 'live'));
    meta.push(el('span', { class: 'viewers', 'data-viewers': String(c.viewers) }, `${c.viewers} watching`));
  }
  const label = visibilityLabel(c.visibility);
  if (label) meta.push(badge(label, 'paid'));
  const lines = [el('h3', {}, el('a', { href, class: 'card-link' }, title))];
  lines.push(el('p', { class: 'by' }, c.broadcaster ? `by ${c.broadcaster}` : c.name));
  if (kind === 'upcoming' && Number.isFinite(c.scheduled_at)) {
    lines.push(el('p', { class: 'when' }, `Starts ${fmtWhen(c.scheduled_at * 1000)}`));
  }
  if (kind === 'recent') {
    const ended = c.last_ended_at_ms ?? c.recordings[0]?.started_at_ms;
    if (Number.isFinite(ended)) lines.push(el('p', { class: 'when' }, `Last live ${fmtWhen(ended)}`));
  }
  const recs = (c.recordings ?? []).slice(0, 3).map((r) =>
    el('li', {}, el('a', { href: `${href}?vod=${encodeURIComponent(r.run)}`, class: 'recording' },
      `Recording${Number.isFinite(r.started_at_ms) ? ` of ${fmtWhen(r.started_at_ms)}` : ''}`)),
  );
  return el('li', { class: 'card', 'data-stream': c.name },
    el('a', { href, tabindex: '-1', 'aria-hidden': 'true' }, thumb(c)),
    el('div', { class: 'card-body' }, meta.length ? el('p', { class: 'meta' }, meta) : null, lines,
      recs.length ? el('ul', { class: 'recordings', 'aria-label': `Recordings of ${title}` }, recs) : null),
  );
}

function fill(id, cards, kind) {
  $(id).replaceChildren(...cards.map((c) => card(c, kind)));
  $(`${id}-empty`).hidden = cards.length > 0;
}

async function load() {
  const q = state.query.trim();
  try {
    const data = await api('GET', `/api/directory${q ? `?q=${encodeURIComponent(q)}` : ''}`, undefined, null);
    state.data = data;
    state.loaded += 1;
    say($('message'), '');
    fill('live', data.live, 'live');
    fill('upcoming', data.upcoming, 'upcoming');
    fill('recent', data.recent, 'recent');
    document.body.dataset.loaded = String(state.loaded);
  } catch (e) {
    say($('message'), `Could not load the streams: ${e.message}`, 'error');
  }
}

$('q').value = state.query;
$('search').addEventListener('submit', (ev) => {
  ev.preventDefault();
  state.query = $('q').value;
  const url = new URL(location.href);
  if (state.query.trim()) url.searchParams.set('q', state.query.trim());
  else url.searchParams.delete('q');
  history.replaceState(null, '', url);
  load();
});
let typing = null;
$('q').addEventListener('input', () => {
  clearTimeout(typing);
  typing = setTimeout(() => {
    state.query = $('q').value;
    load();
  }, 300);
});

showAccountLink();
load();
setInterval(() => {
  if (document.visibilityState === 'visible') load();
}, REFRESH_MS);
