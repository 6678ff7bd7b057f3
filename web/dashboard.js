// The relaycast dashboard (/dashboard): server throughput from /metrics,
// live streams with viewer counts, per-stream layer health through a
// monitoring WHEP session (GET {session}/layer), past sessions, and
// recordings where the server has them (/vod/{stream}; 404 tolerated).

import { api, drawChart, el, fmtBitrate, say, session, waitGathering } from './common.js';

const $ = (id) => document.getElementById(id);
const POINTS = 60;
const COLORS = ['#4f8cff', '#30a46c', '#f5a524', '#e5484d', '#b68cff'];

function notify(text, kind = '') {
  $('message').hidden = !text;
  say($('message'), text, kind);
}

// ---------------------------------------------------------------------------
// Server throughput (/metrics counters turned into rates).

const server = { last: null, inBps: [], outBps: [] };

function metric(text, name) {
  const m = text.match(new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.eE+-]+)$`, 'm'));
  return m ? Number(m[1]) : NaN;
}

async function pollMetrics() {
  let text;
  try {
    const res = await fetch('/metrics');
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    text = await res.text();
  } catch (e) {
    $('server-summary').textContent = `/metrics unavailable (${e.message}).`;
    return;
  }
  const now = performance.now();
  const bytesIn = metric(text, 'relaycast_udp_bytes_in_total');
  const bytesOut = metric(text, 'relaycast_udp_bytes_out_total');
  if (server.last) {
    const dt = (now - server.last.at) / 1000;
    server.inBps.push(((bytesIn - server.last.bytesIn) * 8) / dt);
    server.outBps.push(((bytesOut - server.last.bytesOut) * 8) / dt);
    server.inBps.splice(0, server.inBps.length - POINTS);
    server.outBps.splice(0, server.outBps.length - POINTS);
  }
  server.last = { at: now, bytesIn, bytesOut };
  $('server-summary').textContent =
    `${metric(text, 'relaycast_publishers')} publishing · ${metric(text, 'relaycast_viewers')} viewing · ` +
    `in ${fmtBitrate(server.inBps.at(-1))} · out ${fmtBitrate(server.outBps.at(-1))}`;
  drawChart(
    $('server-chart'),
    [
      { color: COLORS[0], values: server.inBps },
      { color: COLORS[1], values: server.outBps },
    ],
    fmtBitrate,
  );
}

// ---------------------------------------------------------------------------
// Live streams.

async function pollLive() {
  if (!session()) {
    notify('Sign in in the Studio to see live streams.', 'warn');
    return;
  }
  try {
    const { streams } = await api('GET', '/api/streams/live');
    notify('');
    const rows = $('live-rows');
    rows.replaceChildren(
      ...streams.map((s) =>
        el(
          'tr',
          {},
          el('td', {}, el('a', { href: `/watch/${encodeURIComponent(s.name)}` }, s.name)),
          el('td', {}, s.title || ''),
          el('td', {}, String(s.viewers)),
          el('td', {}, el('button', { type: 'button', onclick: () => monitor(s.name) }, 'Health')),
        ),
      ),
    );
    if (!streams.length) rows.append(el('tr', {}, el('td', { colspan: '4', class: 'hint' }, 'Nothing is live.')));
  } catch (e) {
    notify(`Could not list live streams: ${e.message}`, 'error');
  }
}

// ---------------------------------------------------------------------------
// Stream health through a monitoring viewer.

const mon = { stream: null, pc: null, resource: null, timer: null, series: new Map() };

async function stopMonitor() {
  clearInterval(mon.timer);
  if (mon.resource) await fetch(mon.resource, { method: 'DELETE' }).catch(() => {});
  if (mon.pc) mon.pc.close();
  Object.assign(mon, { stream: null, pc: null, resource: null, timer: null, series: new Map() });
}
$('stop-monitor').addEventListener('click', async () => {
  await stopMonitor();
  $('health').hidden = true;
});

async function monitor(stream) {
  await stopMonitor();
  mon.stream = stream;
  $('health').hidden = false;
  $('health-title').textContent = `Health of “${stream}”`;
  say($('health-status'), 'Opening a monitoring session…');
  try {
    const pc = new RTCPeerConnection({ iceServers: [] });
    mon.pc = pc;
    pc.addTransceiver('video', { direction: 'recvonly' });
    await pc.setLocalDescription(await pc.createOffer());
    await waitGathering(pc, 1000);
    const res = await fetch(`/whep/${encodeURIComponent(stream)}?layer=low`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/sdp' },
      body: pc.localDescription.sdp,
    });
    const body = await res.text();
    if (res.status !== 201) throw new Error(`${body.slice(0, 200)} (HTTP ${res.status})`);
    mon.resource = new URL(res.headers.get('Location'), location.href).toString();
    await pc.setRemoteDescription({ type: 'answer', sdp: body });
    say($('health-status'), '');
    mon.timer = setInterval(pollLayers, 2000);
    pollLayers();
  } catch (e) {
    say($('health-status'), `Could not monitor ${stream}: ${e.message}`, 'error');
  }
  loadHistory(stream);
}

async function pollLayers() {
  if (!mon.resource) return;
  let layers;
  try {
    const res = await fetch(`${mon.resource}/layer`);
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    ({ layers } = await res.json());
  } catch (e) {
    say($('health-status'), `Layer statistics unavailable (${e.message}); the stream may have ended.`, 'warn');
    return;
  }
  for (const l of layers) {
    const id = l.encodingId || 'single';
    if (!mon.series.has(id)) mon.series.set(id, []);
  }
  for (const [id, values] of mon.series) {
    const l = layers.find((x) => (x.encodingId || 'single') === id);
    values.push(l && l.active ? l.bitrate : 0);
    values.splice(0, values.length - POINTS);
  }
  const ids = [...mon.series.keys()];
  drawChart(
    $('health-chart'),
    ids.map((id, i) => ({ color: COLORS[i % COLORS.length], values: mon.series.get(id) })),
    fmtBitrate,
  );
  $('health-legend').replaceChildren(...ids.map((id, i) => el('span', { style: `color:${COLORS[i % COLORS.length]}` }, `■ ${id}`)));
  $('layer-rows').replaceChildren(
    ...layers.map((l) =>
      el(
        'tr',
        {},
        el('td', {}, l.encodingId || '(single)'),
        el('td', {}, fmtBitrate(l.bitrate)),
        el('td', {}, l.fps ? String(Math.round(l.fps)) : '—'),
        el('td', {}, l.width ? `${l.width}×${l.height}` : '—'),
        el('td', {}, l.active ? 'yes' : 'no'),
      ),
    ),
  );
}

// ---------------------------------------------------------------------------
// Past sessions and recordings.

async function loadHistory(stream) {
  $('history').hidden = false;
  $('history-title').textContent = `Sessions and recordings of “${stream}”`;
  const rows = $('session-rows');
  loadStats(stream);
  try {
    const { sessions } = await api('GET', `/api/streams/${encodeURIComponent(stream)}/sessions?limit=20`);
    const when = (ms) => (ms ? new Date(ms).toLocaleString() : 'live now');
    rows.replaceChildren(
      ...sessions.map((s) =>
        el('tr', {}, el('td', {}, when(s.started_at_ms)), el('td', {}, when(s.ended_at_ms)), el('td', {}, `peak ${s.peak_viewers} viewers, ${s.stalls} stalls`)),
      ),
    );
  } catch (e) {
    rows.replaceChildren(el('tr', {}, el('td', { colspan: '3', class: 'hint' }, `Sessions unavailable: ${e.message}`)));
  }
  try {
    // A stream that is not public keeps its recordings behind the same
    // door as its live media: the owner asks for a play token first.
    let res = await fetch(`/vod/${encodeURIComponent(stream)}`);
    let ticket = '';
    if (res.status === 401 || res.status === 403) {
      const { token } = await api('POST', `/api/streams/${encodeURIComponent(stream)}/play-token`, {});
      ticket = `&token=${encodeURIComponent(token)}`;
      res = await fetch(`/vod/${encodeURIComponent(stream)}?token=${encodeURIComponent(token)}`);
    }
    const vod = $('vod');
    if (res.status === 404) vod.textContent = 'No recordings on this server.';
    else if (!res.ok) vod.textContent = `Recordings unavailable (HTTP ${res.status}).`;
    else {
      const type = res.headers.get('Content-Type') || '';
      if (type.includes('json')) {
        const data = await res.json();
        // {recordings: [{run, url}]}: one per publisher run, oldest first.
        const list = data.recordings ?? [];
        vod.replaceChildren(
          ...list.flatMap((r) => [
            el('a', { href: `/watch/${encodeURIComponent(stream)}?vod=${encodeURIComponent(r.run)}${ticket}` }, `Recording ${r.run}`),
            ' (',
            el('a', { href: r.url }, 'HLS playlist'),
            ') ',
          ]),
        );
        if (!list.length) vod.textContent = 'No recordings yet.';
      } else {
        vod.replaceChildren(el('a', { href: `/vod/${encodeURIComponent(stream)}` }, 'Recordings'));
      }
    }
  } catch {
    $('vod').textContent = 'Recordings unavailable.';
  }
}

const plural = (n, noun) => `${n} ${noun}${n === 1 ? '' : 's'}`;

// Viewer experience over the last 24 h (GET /api/streams/{id}/stats: the
// players' QoE beacons and the server's viewer sessions).
async function loadStats(stream) {
  const node = $('qoe');
  try {
    const { stats: s } = await api('GET', `/api/streams/${encodeURIComponent(stream)}/stats`);
    const parts = [
      `Last 24 h: ${plural(s.sessions, 'ended viewer session')} (average ${Math.round(s.watch_ms_avg / 1000)} s)`,
      `peak ${plural(s.peak_viewers, 'viewer')}`,
      plural(s.qoe_beacons, 'player report'),
    ];
    if (s.startup_ms_avg !== null) parts.push(`startup ${s.startup_ms_avg} ms on average`);
    if (s.rebuffer_ratio !== null) parts.push(`rebuffering ${(s.rebuffer_ratio * 100).toFixed(1)} %`);
    parts.push(`${s.exits_before_start} left before the first frame`);
    parts.push(`${s.stalled_seconds} s stalled`);
    say(node, `${parts.join(' · ')}.`);
  } catch (e) {
    say(node, `Viewer statistics unavailable: ${e.message}`, 'warn');
  }
}

addEventListener('pagehide', () => {
  if (mon.resource) fetch(mon.resource, { method: 'DELETE', keepalive: true }).catch(() => {});
});

pollMetrics();
setInterval(pollMetrics, 2000);
pollLive();
setInterval(pollLive, 3000);
