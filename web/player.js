// The relaycast player (/watch/{stream} and, with minimal chrome,
// /embed/{stream}). WebRTC over WHEP first; LL-HLS through hls.js when
// WebRTC is missing or blocked (not connected within ICE_TIMEOUT_MS), when
// the server is at capacity (WHEP 503), or when the URL says ?hls=1.
//
// Chat, viewer count, stream status and integrator events come over the
// stream's WebSocket (api/src/realtime/ws.rs); integrator events also come
// over a WebRTC data channel "events" when the server opens it, and are
// shown once (by `seq`), in sync with the video: on arrival over WebRTC
// (sub-second latency), and over LL-HLS when the playback position's
// program date time reaches the event's media stamp.
//
// Before playing, the page asks GET /api/directory/{stream} (stream_page.js)
// whether the stream is live and whether this visitor may watch: an
// offline stream waits without knocking on WHEP, a stream that needs a
// ticket shows its gate (sign in / buy / subscribe) and is looked at again
// every GATE_POLL_MS while the visitor is signed in, so a purchase
// confirmed by the payment webhook starts playback without a reload; a
// signed-in viewer of a non-public stream plays with a play token from
// POST /api/streams/{stream}/play-token. A play link (?token=) skips all
// that: the token is the ticket.
//
// The page's state is mirrored on <body data-mode data-state> and in
// window.relaycastPlayer (plain data) so embedding pages and tests can
// read it.

import {
  fmtBitrate,
  iceServersFromLinks,
  session,
  showAccountLink,
  streamSocket,
  waitConnected,
  waitGathering,
} from './common.js';
import { fetchPage, fetchPlayToken, hideGate, offlineText, renderPage, showGate } from './stream_page.js';

// How long WebRTC may take to connect before LL-HLS is tried instead.
const ICE_TIMEOUT_MS = 6000;
const GATHER_MS = 1000;
const OFFLINE_RETRY_MS = 5000;
// How often a gated page looks again for an entitlement (faster once a
// checkout was opened).
const GATE_POLL_MS = 5000;
const CHECKOUT_POLL_MS = 2000;
// How often the title, state and recordings are refreshed.
const PAGE_REFRESH_MS = 10_000;
// An LL-HLS event is held until its media time plays; without program
// date times it is shown after this hold, and never held longer than
// EVENT_MAX_HOLD_MS.
const EVENT_HOLD_WITHOUT_PDT_MS = 3000;
const EVENT_MAX_HOLD_MS = 60_000;
const EVENT_SHOW_MS = 8000;

const $ = (id) => document.getElementById(id);
const video = $('video');
const params = new URLSearchParams(location.search);
const parts = location.pathname.split('/').filter(Boolean);
const embed = parts[0] === 'embed';
const stream = decodeURIComponent(parts[1] || '');
// A play link's token, or one fetched for the signed-in viewer.
let playToken = params.get('token');
const playLink = playToken !== null;
// ?vod=RUN plays the recording RUN of the stream (/vod/{stream}/{run}/).
const vodRun = params.get('vod');

const state = {
  stream,
  mode: null, // 'webrtc' | 'hls'
  state: 'starting',
  whepResource: null,
  fallbackReason: null,
  firstFrameMs: null,
  hlsRequested: false,
  hlsAuthRetried: false,
  viewers: null,
  // From GET /api/directory/{stream}: {state, live, can_watch, needs}.
  page: null,
  gated: false,
  dataChannel: null, // state of the "events" data channel, if any
  chat: { connected: false, user: null, can_chat: false, moderator: false, slow_mode: 0 },
  // Integrator events shown or pending: {seq, id, source, text,
  // received_ms, stamp_ms, shown_ms, playing_ms} (wall clocks, Unix ms).
  events: [],
};
window.relaycastPlayer = state;

let pc = null;
let hls = null;
let stopped = false;
let retryTimer = null;

function setState(s, text, kind = '') {
  state.state = s;
  document.body.dataset.state = s;
  const node = $('status');
  node.textContent = text;
  node.dataset.kind = kind;
  // Offline and ended say so across the picture too.
  const note = $('stage-note');
  note.hidden = s !== 'offline';
  note.textContent = s === 'offline' ? text : '';
}

function setMode(m) {
  state.mode = m;
  document.body.dataset.mode = m;
  $('st-mode').textContent =
    m === 'webrtc' ? 'WebRTC (WHEP)' : `LL-HLS${state.fallbackReason ? ` (${state.fallbackReason})` : ''}`;
}

function showError(message) {
  $('error').textContent = message;
}

// Starts playback again after `ms` (one pending restart at a time).
function scheduleStart(ms) {
  clearTimeout(retryTimer);
  retryTimer = setTimeout(start, ms);
}

// ---------------------------------------------------------------------------
// QoE beacons (POST /api/qoe): startup time, rebuffering and watch time,
// sent when the page is hidden or left. Each beacon covers the time since
// the previous one.

const qoe = { startedAt: performance.now(), startupSent: false, watchedMs: 0, rebufferMs: 0, playingSince: null, waitingSince: null };

function closeSpans(now) {
  if (qoe.playingSince !== null) {
    qoe.watchedMs += now - qoe.playingSince;
    qoe.playingSince = now;
  }
  if (qoe.waitingSince !== null) {
    qoe.rebufferMs += now - qoe.waitingSince;
    qoe.waitingSince = now;
  }
}

video.addEventListener('playing', () => {
  const now = performance.now();
  if (state.firstFrameMs === null) state.firstFrameMs = Math.round(now - qoe.startedAt);
  closeSpans(now);
  qoe.waitingSince = null;
  qoe.playingSince = now;
});
for (const type of ['waiting', 'pause', 'emptied']) {
  video.addEventListener(type, () => {
    const now = performance.now();
    closeSpans(now);
    qoe.playingSince = null;
    if (type === 'waiting' && state.firstFrameMs !== null) qoe.waitingSince = now;
  });
}

function sendQoe(leaving) {
  if (!stream) return;
  closeSpans(performance.now());
  const hour = 3_600_000;
  const beacon = {
    stream,
    startup_ms: null,
    rebuffer_ms: Math.min(hour, Math.round(qoe.rebufferMs)),
    watched_ms: Math.min(hour, Math.round(qoe.watchedMs)),
    exited_before_start: leaving && state.firstFrameMs === null,
  };
  if (state.firstFrameMs !== null && !qoe.startupSent && state.firstFrameMs <= 120_000) {
    beacon.startup_ms = state.firstFrameMs;
  }
  if (beacon.startup_ms === null && !beacon.exited_before_start && !beacon.watched_ms && !beacon.rebuffer_ms) return;
  if (beacon.startup_ms !== null || state.firstFrameMs !== null) qoe.startupSent = true;
  qoe.watchedMs = 0;
  qoe.rebufferMs = 0;
  const body = JSON.stringify(beacon);
  // A lost beacon is harmless: no retry.
  try {
    if (!navigator.sendBeacon?.('/api/qoe', new Blob([body], { type: 'application/json' }))) {
      fetch('/api/qoe', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body, keepalive: true }).catch(() => {});
    }
  } catch {
    // See above.
  }
}

document.addEventListener('visibilitychange', () => {
  if (document.visibilityState === 'hidden') sendQoe(false);
});
addEventListener('pagehide', () => {
  sendQoe(true);
  stopped = true;
  if (state.whepResource) {
    fetch(state.whepResource, { method: 'DELETE', keepalive: true }).catch(() => {});
  }
});

// ---------------------------------------------------------------------------
// WebRTC (WHEP).

// Why WebRTC was abandoned for LL-HLS.
class Fallback extends Error {}
// The stream is not being published (WHEP 404).
class Offline extends Error {}

async function playWhep() {
  if (!('RTCPeerConnection' in window)) throw new Fallback('this browser has no WebRTC');
  setState('connecting', 'Connecting…');
  const conn = new RTCPeerConnection({ iceServers: [] });
  pc = conn;
  conn.addTransceiver('video', { direction: 'recvonly' });
  conn.addTransceiver('audio', { direction: 'recvonly' });
  // Integrator events, where the server sends them on a data channel (the
  // same JSON as the REST answer of POST /api/streams/{id}/events). Made
  // before the offer so that the offer carries it.
  const channel = conn.createDataChannel('events');
  state.dataChannel = 'connecting';
  channel.addEventListener('open', () => {
    if (pc === conn) state.dataChannel = 'open';
  });
  channel.addEventListener('close', () => {
    if (pc === conn) state.dataChannel = 'closed';
  });
  channel.addEventListener('message', (ev) => {
    if (typeof ev.data !== 'string') return;
    try {
      acceptEvent(JSON.parse(ev.data), 'datachannel');
    } catch {
      // Not JSON: not an event.
    }
  });
  // Build the stream from the receivers: answers may carry no a=msid.
  video.srcObject = new MediaStream(conn.getReceivers().map((r) => r.track));
  await conn.setLocalDescription(await conn.createOffer());
  await waitGathering(conn, GATHER_MS);

  const url = `/whep/${encodeURIComponent(stream)}${params.get('layer') ? `?layer=${encodeURIComponent(params.get('layer'))}` : ''}`;
  const headers = { 'Content-Type': 'application/sdp' };
  if (playToken) headers.Authorization = `Bearer ${playToken}`;
  let res;
  try {
    res = await fetch(url, { method: 'POST', headers, body: conn.localDescription.sdp });
  } catch (e) {
    conn.close();
    throw new Fallback(`WHEP request failed (${e.message})`);
  }
  const body = await res.text();
  if (res.status === 503) {
    conn.close();
    throw new Fallback('WebRTC at capacity');
  }
  if (res.status === 404) {
    conn.close();
    throw new Offline('stream offline');
  }
  if (res.status !== 201) {
    conn.close();
    video.srcObject = null;
    let why = body.slice(0, 200);
    try {
      why = JSON.parse(body).error || why;
    } catch {
      // Plain-text error body.
    }
    const e = new Error(res.status === 401 || res.status === 403 ? `Not allowed to watch: ${why}` : `Playback refused: ${why} (HTTP ${res.status})`);
    e.fatal = true;
    throw e;
  }
  state.whepResource = new URL(res.headers.get('Location'), location.href).toString();
  const ice = iceServersFromLinks(res.headers.get('Link'));
  if (ice.length) {
    try {
      // Used by later ICE restarts; the offer's candidates are already sent.
      conn.setConfiguration({ ...conn.getConfiguration(), iceServers: ice });
    } catch {
      // Some browsers refuse changes they consider unsupported.
    }
  }
  await conn.setRemoteDescription({ type: 'answer', sdp: body });
  if (!(await waitConnected(conn, ICE_TIMEOUT_MS))) {
    await endWhep();
    throw new Fallback('WebRTC could not connect');
  }
  setMode('webrtc');
  setState('live', 'Live');
  $('layer').disabled = false;
  video.play().catch(() => {});
  conn.addEventListener('connectionstatechange', () => {
    if (stopped || pc !== conn) return;
    if (conn.connectionState === 'failed' || conn.connectionState === 'closed') {
      setState('reconnecting', 'Reconnecting…', 'warn');
      endWhep().then(() => scheduleStart(500));
    } else if (conn.connectionState === 'disconnected') {
      setState('reconnecting', 'Connection interrupted…', 'warn');
    } else if (conn.connectionState === 'connected') {
      setState('live', 'Live');
    }
  });
  // The publisher ending its stream closes the tracks: poll for it.
  const ended = setInterval(() => {
    if (pc !== conn) return clearInterval(ended);
    const tracks = conn.getReceivers().map((r) => r.track);
    if (tracks.length && tracks.every((t) => t.readyState === 'ended')) {
      clearInterval(ended);
      // Not the last picture frozen: the stage says it ended.
      video.srcObject = null;
      setState('offline', 'Stream ended');
      endWhep().then(() => scheduleStart(OFFLINE_RETRY_MS));
    }
  }, 1000);
}

async function endWhep() {
  const resource = state.whepResource;
  state.whepResource = null;
  const conn = pc;
  pc = null;
  state.dataChannel = null;
  // DELETE first: a closed connection may already have ended the session.
  if (resource) await fetch(resource, { method: 'DELETE' }).catch(() => {});
  if (conn) conn.close();
}

// ---------------------------------------------------------------------------
// LL-HLS (hls.js, or the browser's own HLS where there is no MSE).

function loadHlsJs() {
  if (window.Hls) return Promise.resolve(window.Hls);
  return new Promise((resolve, reject) => {
    const s = document.createElement('script');
    s.src = '/web/vendor/hls.min.js';
    s.onload = () => (window.Hls ? resolve(window.Hls) : reject(new Error('hls.js did not load')));
    s.onerror = () => reject(new Error('hls.js could not be fetched'));
    document.head.append(s);
  });
}

function stopHls() {
  if (hls) hls.destroy();
  hls = null;
}

async function playHls(reason) {
  state.fallbackReason = reason;
  setMode('hls');
  setState('connecting', 'Connecting (LL-HLS)…');
  const query = playToken ? `?token=${encodeURIComponent(playToken)}` : '';
  const src = vodRun
    ? `/vod/${encodeURIComponent(stream)}/${encodeURIComponent(vodRun)}/index.m3u8${query}`
    : `/hls/${encodeURIComponent(stream)}/index.m3u8${query}`;
  const playingText = vodRun ? 'Recording' : 'Live (LL-HLS)';
  video.srcObject = null;
  const Hls = await loadHlsJs().catch(() => null);
  if (stopped) return;
  state.hlsRequested = true;
  stopHls();
  if (Hls && Hls.isSupported()) {
    const h = new Hls(vodRun ? {} : { lowLatencyMode: true, backBufferLength: 30 });
    hls = h;
    h.on(Hls.Events.MANIFEST_PARSED, () => {
      setState('live', playingText);
      showError('');
      $('layer').disabled = h.levels.length < 2;
      video.play().catch(() => {});
    });
    h.on(Hls.Events.FRAG_LOADED, () => {
      state.hlsAuthRetried = false;
    });
    h.on(Hls.Events.ERROR, (_e, data) => {
      if (!data.fatal || hls !== h) return;
      const code = data.response?.code;
      stopHls();
      if (code === 401 || code === 403) {
        // A paywalled stream: the media token the playlists carry may have
        // run out (it lasts hours); one fresh start from the multivariant
        // playlist with the play token gets a new one. Refused again: this
        // viewer may not watch, and retrying will not change that.
        if (!state.hlsAuthRetried) {
          state.hlsAuthRetried = true;
          playHls(reason);
          return;
        }
        setState('error', 'Cannot play', 'error');
        showError(playToken
          ? `Not allowed to watch: the play link was refused (HTTP ${code}).`
          : 'Not allowed to watch: this stream needs a ticket (a play link with ?token=).');
        return;
      }
      if (code === 404 || code === 503) {
        // 404: not live (or not H.264); 503: no keyframe yet.
        setState('offline', vodRun ? 'No such recording' : 'Offline — waiting for the stream', 'warn');
        showError('');
        if (vodRun) return;
      } else {
        setState('error', 'Playback error', 'error');
        showError(`LL-HLS playback failed: ${data.details}${code ? ` (HTTP ${code})` : ''}. Retrying…`);
      }
      if (!stopped) {
        clearTimeout(retryTimer);
        retryTimer = setTimeout(() => playHls(reason), OFFLINE_RETRY_MS);
      }
    });
    h.loadSource(src);
    h.attachMedia(video);
  } else if (video.canPlayType('application/vnd.apple.mpegurl')) {
    video.src = src;
    video.addEventListener('loadedmetadata', () => setState('live', vodRun ? 'Recording' : 'Live (HLS)'), { once: true });
    video.addEventListener('error', () => {
      setState('error', 'Playback error', 'error');
      showError('This stream cannot be played over HLS right now.');
    }, { once: true });
    video.play().catch(() => {});
  } else {
    setState('error', 'Cannot play', 'error');
    showError('This browser supports neither WebRTC nor HLS playback.');
  }
}

// ---------------------------------------------------------------------------

// The latest stream page data (null: the server has none).
let page = null;

async function refreshPage() {
  const p = await fetchPage(stream);
  if (p) {
    page = p;
    renderPage(p, { stream, vodRun });
    state.page = { state: p.state, live: p.live, can_watch: p.access.can_watch, needs: p.access.needs };
  }
  return p;
}

let gateTimer = null;

// The visitor may not watch: show what would let them, and look again
// (signed in: an entitlement may arrive from the payment webhook).
function gateUp(p) {
  state.gated = true;
  const text = showGate(p, {
    stream,
    onCheckout() {
      clearTimeout(gateTimer);
      gateTimer = setTimeout(gateCheck, CHECKOUT_POLL_MS);
      state.checkoutOpened = true;
    },
  });
  setState('error', 'Cannot play', 'error');
  showError(`Not allowed to watch: ${text}`);
  $('stage-note').hidden = false;
  $('stage-note').textContent = $('gate-title').textContent;
  $('chat-state').textContent = 'The chat opens once you may watch.';
  if (session()) {
    clearTimeout(gateTimer);
    gateTimer = setTimeout(gateCheck, state.checkoutOpened ? CHECKOUT_POLL_MS : GATE_POLL_MS);
  }
}

async function gateCheck() {
  if (stopped) return;
  const p = await refreshPage();
  if (p?.access.can_watch) {
    state.gated = false;
    hideGate();
    start();
  } else if (p) {
    gateUp(p);
  } else {
    gateTimer = setTimeout(gateCheck, GATE_POLL_MS);
  }
}

async function start() {
  clearTimeout(retryTimer);
  if (stopped) return;
  showError('');
  const p = playLink ? null : await refreshPage();
  if (stopped) return;
  if (p && !p.access.can_watch) return gateUp(p);
  if (p && p.visibility !== 'public' && !playToken) {
    try {
      playToken = await fetchPlayToken(stream);
    } catch (e) {
      setState('error', 'Cannot play', 'error');
      showError(`Not allowed to watch: ${e.message}`);
      return;
    }
  }
  // The socket follows the play rules: opened once the visitor may watch
  // (with the play token of a non-public stream).
  if (!socket) startChat();
  if (vodRun) return playHls('recording');
  if (p && !p.live) {
    setState('offline', offlineText(p), 'warn');
    scheduleStart(OFFLINE_RETRY_MS);
    return;
  }
  if (params.get('hls') === '1') return playHls('forced by ?hls=1');
  try {
    await playWhep();
  } catch (e) {
    if (e instanceof Offline) {
      setState('offline', 'Offline — waiting for the stream', 'warn');
      scheduleStart(OFFLINE_RETRY_MS);
    } else if (e instanceof Fallback) {
      playHls(e.message);
    } else if (e.fatal) {
      setState('error', 'Cannot play', 'error');
      showError(e.message);
    } else {
      // Anything unexpected in the WebRTC path: LL-HLS may still work.
      playHls(e.message || String(e));
    }
  }
}

// The publisher went live again: start now rather than at the next retry.
function restartIfIdle() {
  if (stopped || vodRun || state.gated || !['offline', 'error'].includes(state.state)) return;
  stopHls();
  start();
}

// ---------------------------------------------------------------------------
// Layer choice.

$('layer').disabled = true;
$('layer').addEventListener('change', async (ev) => {
  const layer = ev.target.value;
  showError('');
  if (state.mode === 'hls' && hls) {
    const n = hls.levels.length;
    hls.currentLevel = { auto: -1, low: 0, mid: Math.floor((n - 1) / 2), high: n - 1 }[layer];
    return;
  }
  if (!state.whepResource) return;
  try {
    const res = await fetch(`${state.whepResource}/layer`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ layer }),
    });
    if (res.status !== 204 && !res.ok) {
      const t = await res.text();
      showError(`Could not change quality: ${t.slice(0, 200)} (HTTP ${res.status})`);
    }
  } catch (e) {
    showError(`Could not change quality: ${e.message}`);
  }
});

// ---------------------------------------------------------------------------
// Stats panel.

let last = null;
async function updateStats() {
  const out = { latency: '—', bitrate: '—', resolution: '—', fps: '—', lost: '—', codec: '—' };
  if (state.mode === 'webrtc' && pc) {
    try {
      const stats = await pc.getStats();
      let v = null;
      let rtt = null;
      stats.forEach((s) => {
        if (s.type === 'inbound-rtp' && s.kind === 'video') v = s;
        if (s.type === 'candidate-pair' && s.nominated && s.currentRoundTripTime !== undefined) rtt = s.currentRoundTripTime;
      });
      if (v) {
        if (last && v.timestamp > last.timestamp) {
          out.bitrate = fmtBitrate(((v.bytesReceived - last.bytes) * 8 * 1000) / (v.timestamp - last.timestamp));
        }
        last = { bytes: v.bytesReceived, timestamp: v.timestamp };
        if (v.frameWidth) out.resolution = `${v.frameWidth}×${v.frameHeight}`;
        if (v.framesPerSecond) out.fps = `${Math.round(v.framesPerSecond)}`;
        out.lost = String(v.packetsLost ?? 0);
        const codec = v.codecId && stats.get(v.codecId);
        if (codec?.mimeType) out.codec = codec.mimeType.replace(/^video\//, '');
        // Network half round trip plus the jitter buffer's hold time.
        const jb = v.jitterBufferEmittedCount ? v.jitterBufferDelay / v.jitterBufferEmittedCount : null;
        if (jb !== null || rtt !== null) out.latency = `≈${Math.round(((rtt ?? 0) / 2 + (jb ?? 0)) * 1000)} ms`;
      }
    } catch {
      // The connection went away between two polls.
    }
  } else if (state.mode === 'hls' && hls) {
    if (Number.isFinite(hls.latency) && hls.latency > 0) out.latency = `${hls.latency.toFixed(2)} s`;
    const level = hls.levels?.[hls.currentLevel];
    out.bitrate = fmtBitrate(level?.bitrate || hls.bandwidthEstimate);
    if (level?.width) out.resolution = `${level.width}×${level.height}`;
    if (level?.videoCodec) out.codec = level.videoCodec;
    const q = video.getVideoPlaybackQuality?.();
    out.lost = q ? `${q.droppedVideoFrames} frames dropped` : '—';
  }
  if (out.resolution === '—' && video.videoWidth) out.resolution = `${video.videoWidth}×${video.videoHeight}`;
  $('st-latency').textContent = out.latency;
  $('st-bitrate').textContent = out.bitrate;
  $('st-resolution').textContent = out.resolution;
  $('st-fps').textContent = out.fps;
  $('st-lost').textContent = out.lost;
  $('st-codec').textContent = out.codec;
}
setInterval(updateStats, 1000);

$('stats-toggle').addEventListener('click', (ev) => {
  const stats = $('stats');
  stats.hidden = !stats.hidden;
  ev.target.setAttribute('aria-expanded', String(!stats.hidden));
});
$('fullscreen').addEventListener('click', () => {
  const stage = document.querySelector('.stage');
  if (document.fullscreenElement) document.exitFullscreen();
  else stage.requestFullscreen?.().catch(() => {});
});
$('unmute').addEventListener('click', () => {
  video.muted = !video.muted;
  $('unmute').textContent = video.muted ? 'Unmute' : 'Mute';
});

// ---------------------------------------------------------------------------
// Integrator events: from the WebSocket and the data channel, once each.

const seenEvents = new Set();
const pendingEvents = [];

function eventText(payload) {
  if (payload && typeof payload === 'object') {
    const t = payload.text ?? payload.message ?? payload.title ?? payload.label;
    if (typeof t === 'string' || typeof t === 'number') return String(t);
  }
  if (typeof payload === 'string') return payload;
  const json = JSON.stringify(payload);
  return json.length > 160 ? `${json.slice(0, 157)}…` : json;
}

// `ev`: an IntegratorEvent ({stream, seq, id, at_ms, media, payload}),
// with `type: "event"` when it came over the WebSocket.
function acceptEvent(ev, source) {
  if (!ev || typeof ev !== 'object' || (ev.type !== undefined && ev.type !== 'event')) return;
  if (ev.stream !== undefined && ev.stream !== stream) return;
  const key = Number.isFinite(ev.seq) ? `seq:${ev.seq}` : typeof ev.id === 'string' ? `id:${ev.id}` : null;
  if (key === null || seenEvents.has(key)) return;
  seenEvents.add(key);
  if (seenEvents.size > 1000) seenEvents.delete(seenEvents.values().next().value);
  const stamp = ev.media?.capture_ms ?? ev.at_ms;
  const rec = {
    seq: ev.seq ?? null,
    id: ev.id ?? null,
    source,
    text: eventText(ev.payload),
    received_ms: Date.now(),
    stamp_ms: Number.isFinite(stamp) ? stamp : null,
    shown_ms: null,
    playing_ms: null,
  };
  state.events.push(rec);
  if (state.events.length > 100) state.events.shift();
  pendingEvents.push(rec);
  pumpEvents();
}

// Shows the pending events whose time has come.
function pumpEvents() {
  if (!pendingEvents.length) return;
  const now = Date.now();
  const onHls = state.mode === 'hls' && hls;
  const playing = onHls ? hls.playingDate?.getTime() : null;
  for (let i = 0; i < pendingEvents.length; ) {
    const rec = pendingEvents[i];
    let due;
    if (!onHls || rec.stamp_ms === null) due = true;
    else if (Number.isFinite(playing)) due = playing >= rec.stamp_ms;
    else due = now - rec.received_ms >= EVENT_HOLD_WITHOUT_PDT_MS;
    if (due || now - rec.received_ms >= EVENT_MAX_HOLD_MS) {
      pendingEvents.splice(i, 1);
      rec.shown_ms = now;
      rec.playing_ms = Number.isFinite(playing) ? playing : null;
      showEvent(rec);
    } else {
      i += 1;
    }
  }
}
setInterval(pumpEvents, 100);

function showEvent(rec) {
  const node = document.createElement('div');
  node.className = 'event';
  if (rec.seq !== null) node.dataset.seq = String(rec.seq);
  node.textContent = rec.text;
  $('overlay').append(node);
  while ($('overlay').children.length > 3) $('overlay').firstElementChild.remove();
  setTimeout(() => node.remove(), EVENT_SHOW_MS);
}

// ---------------------------------------------------------------------------
// Chat, viewer count and stream status (the stream's WebSocket).

function setViewers(n) {
  state.viewers = Number.isFinite(n) ? n : null;
  $('viewer-count').textContent = Number.isFinite(n) ? String(n) : '—';
}

let socket = null;

function chatError(text) {
  $('chat-error').textContent = text;
}

function moderate(obj) {
  if (!socket?.send(obj)) chatError('Not applied: chat is disconnected.');
}

function chatLine(m) {
  const li = document.createElement('li');
  li.dataset.id = m.id;
  const who = document.createElement('b');
  who.textContent = `${m.user}: `;
  li.append(who, String(m.text));
  if (Number.isFinite(m.at_ms)) li.title = new Date(m.at_ms).toLocaleTimeString();
  if (state.chat.moderator) {
    const del = document.createElement('button');
    del.type = 'button';
    del.textContent = 'Delete';
    del.setAttribute('aria-label', `Delete the message of ${m.user}`);
    del.addEventListener('click', () => moderate({ type: 'delete', id: m.id }));
    li.append(del);
    if (m.user !== state.chat.user) {
      const ban = document.createElement('button');
      ban.type = 'button';
      ban.textContent = 'Ban 10 min';
      ban.setAttribute('aria-label', `Ban ${m.user} from the chat for 10 minutes`);
      ban.addEventListener('click', () => moderate({ type: 'ban', user: m.user, seconds: 600 }));
      li.append(ban);
    }
  }
  return li;
}

function appendChat(li) {
  const log = $('chat-log');
  log.append(li);
  while (log.children.length > 200) log.firstElementChild.remove();
  log.scrollTop = log.scrollHeight;
}

function systemLine(text) {
  const li = document.createElement('li');
  li.className = 'system';
  li.textContent = text;
  appendChat(li);
}

function setSlowMode(seconds) {
  state.chat.slow_mode = seconds;
  const node = $('slow-mode');
  node.hidden = !seconds;
  node.textContent = seconds ? `Slow mode: one message every ${seconds} s.` : '';
  const select = $('slow-mode-select');
  if (![...select.options].some((o) => o.value === String(seconds))) select.append(new Option(`${seconds} s`, String(seconds)));
  select.value = String(seconds);
}

function chatErrorText(msg) {
  const wait = Number.isFinite(msg.retry_after_ms) ? Math.max(1, Math.ceil(msg.retry_after_ms / 1000)) : null;
  switch (msg.code) {
    case 'rate_limited':
      return `Not sent: you are sending too fast. Try again in ${wait ?? 'a few'} s.`;
    case 'slow_mode':
      return `Not sent: slow mode is on. You can send again in ${wait ?? 'a few'} s.`;
    case 'banned':
      return 'Not sent: you are banned from this chat.';
    case 'bad_message':
      return `Not sent: ${msg.error}.`;
    case 'forbidden':
      return `Not allowed: ${msg.error}.`;
    default:
      return `Chat: ${msg.error ?? 'request refused'}.`;
  }
}

let unsent = null; // text of the last message sent, restored if refused

function onSocketMessage(msg) {
  switch (msg.type) {
    case 'hello': {
      Object.assign(state.chat, {
        connected: true,
        user: msg.user ?? null,
        can_chat: !!msg.can_chat,
        moderator: !!msg.moderator,
      });
      setSlowMode(msg.slow_mode ?? 0);
      setViewers(msg.viewers);
      $('moderation').hidden = !state.chat.moderator;
      $('chat-log').replaceChildren(...(msg.history ?? []).map(chatLine));
      const input = $('chat-input');
      input.disabled = $('chat-send').disabled = !state.chat.can_chat;
      $('chat-state').textContent = state.chat.can_chat
        ? `Chatting as ${state.chat.user}${state.chat.moderator ? ' (moderator)' : ''}.`
        : 'Sign in (Account) to chat.';
      break;
    }
    case 'chat':
      appendChat(chatLine(msg));
      if (msg.user === state.chat.user) unsent = null;
      break;
    case 'deleted':
      $('chat-log').querySelector(`li[data-id="${CSS.escape(String(msg.id))}"]`)?.remove();
      break;
    case 'banned':
      if (msg.user === state.chat.user) {
        const until = Number.isFinite(msg.until_ms) ? ` until ${new Date(msg.until_ms).toLocaleTimeString()}` : '';
        chatError(`A moderator banned you from this chat${until}.`);
      } else {
        systemLine(`${msg.user} was banned from the chat.`);
      }
      break;
    case 'slow_mode':
      setSlowMode(msg.seconds);
      systemLine(msg.seconds ? `Slow mode on: one message every ${msg.seconds} s.` : 'Slow mode off.');
      break;
    case 'viewers':
      setViewers(msg.count);
      break;
    case 'status':
      if (msg.status === 'live' || msg.status === 'resumed') {
        if (state.state === 'stalled') setState('live', state.mode === 'hls' ? 'Live (LL-HLS)' : 'Live');
        restartIfIdle();
      } else if (msg.status === 'stalled') {
        if (state.state === 'live') setState('stalled', 'Stalled — waiting for the broadcaster', 'warn');
      } else if (msg.status === 'ended') {
        setState('offline', 'Stream ended');
        if (state.mode === 'webrtc' && state.whepResource) {
          // Leave the session now: the next start makes a new one.
          video.srcObject = null;
          endWhep();
        }
        if (!playLink) refreshPage();
      }
      break;
    case 'event':
      acceptEvent(msg, 'websocket');
      break;
    case 'error':
      chatError(chatErrorText(msg));
      if (unsent !== null && ['rate_limited', 'slow_mode', 'bad_message'].includes(msg.code) && !$('chat-input').value) {
        $('chat-input').value = unsent;
      }
      unsent = null;
      break;
    default:
      // pong, lagged and future types.
      break;
  }
}

function startChat() {
  const input = $('chat-input');
  socket = streamSocket(stream, {
    // A play link's token, or the one fetched for a non-public stream (the
    // socket follows the play rules, which take play tokens); otherwise
    // the account's session.
    token: playToken ?? session()?.token,
    onMessage: onSocketMessage,
    onState(s) {
      if (s === 'open') return; // the hello message says what this client may do
      state.chat.connected = false;
      input.disabled = $('chat-send').disabled = true;
      $('chat-state').textContent = s === 'unavailable' ? 'Chat is not available for this stream.' : 'Chat disconnected, retrying…';
    },
  });
  $('chat-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const text = input.value.trim();
    if (!text) return;
    chatError('');
    if (socket.send({ type: 'chat', text })) {
      unsent = text;
      input.value = '';
    } else {
      chatError('Not sent: chat is disconnected.');
    }
  });
  $('slow-mode-select').addEventListener('change', (ev) => moderate({ type: 'slow_mode', seconds: Number(ev.target.value) }));
}

// ---------------------------------------------------------------------------

if (embed) document.body.classList.add('embed');
showAccountLink();
if (!stream) {
  setState('error', 'No stream', 'error');
  showError('The address names no stream: use /watch/<stream>.');
} else {
  $('title').textContent = stream;
  // start() opens the chat (hidden in the embed; events still show) once
  // the visitor may watch.
  start();
  // Title, state and recordings (a recording appears after the stream
  // ends); the gate looks for itself.
  setInterval(() => {
    if (!stopped && !state.gated && !playLink && document.visibilityState === 'visible') refreshPage();
  }, PAGE_REFRESH_MS);
}
