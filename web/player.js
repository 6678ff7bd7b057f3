// The relaycast player (/watch/{stream} and, with minimal chrome,
// /embed/{stream}). WebRTC over WHEP first; LL-HLS through hls.js when
// WebRTC is missing or blocked (no connection within ICE_TIMEOUT_MS), when
// the server is at capacity (WHEP 503), or when the URL says ?hls=1.
//
// The page's state is mirrored on <body data-mode data-state> and in
// window.relaycastPlayer so embedding pages and tests can read it.

import {
  api,
  fmtBitrate,
  iceServersFromLinks,
  session,
  streamSocket,
  waitConnected,
  waitGathering,
} from './common.js';

const ICE_TIMEOUT_MS = 5000;
const GATHER_MS = 1000;
const OFFLINE_RETRY_MS = 5000;

const $ = (id) => document.getElementById(id);
const video = $('video');
const params = new URLSearchParams(location.search);
const parts = location.pathname.split('/').filter(Boolean);
const embed = parts[0] === 'embed';
const stream = decodeURIComponent(parts[1] || '');
const playToken = params.get('token');

const state = {
  stream,
  mode: null, // 'webrtc' | 'hls'
  state: 'starting',
  whepResource: null,
  fallbackReason: null,
  startedAt: performance.now(),
  firstFrameMs: null,
  rebufferMs: 0,
  hlsRequested: false,
};
window.relaycastPlayer = state;

let pc = null;
let hls = null;
let stopped = false;

function setState(s, text, kind = '') {
  state.state = s;
  document.body.dataset.state = s;
  const node = $('status');
  node.textContent = text;
  node.dataset.kind = kind;
}

function setMode(m) {
  state.mode = m;
  document.body.dataset.mode = m;
  $('st-mode').textContent = m === 'webrtc' ? 'WebRTC (WHEP)' : 'LL-HLS';
}

function showError(message) {
  $('error').textContent = message;
}

// ---------------------------------------------------------------------------
// Startup and rebuffering, for the QoE beacon.

let waitingSince = null;
video.addEventListener('playing', () => {
  if (state.firstFrameMs === null) state.firstFrameMs = Math.round(performance.now() - state.startedAt);
  if (waitingSince !== null) {
    state.rebufferMs += performance.now() - waitingSince;
    waitingSince = null;
  }
});
video.addEventListener('waiting', () => {
  if (state.firstFrameMs !== null && waitingSince === null) waitingSince = performance.now();
});

let beaconSent = false;
function sendQoe() {
  if (beaconSent || !stream) return;
  beaconSent = true;
  const body = JSON.stringify({
    stream,
    startup_ms: state.firstFrameMs,
    rebuffer_ms: Math.round(state.rebufferMs + (waitingSince ? performance.now() - waitingSince : 0)),
    exited_before_start: state.firstFrameMs === null,
  });
  // The endpoint may not exist on this server; a lost beacon is harmless.
  try {
    if (!navigator.sendBeacon?.('/api/qoe', new Blob([body], { type: 'application/json' }))) {
      fetch('/api/qoe', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body, keepalive: true }).catch(() => {});
    }
  } catch {
    // Ignored: see above.
  }
}

addEventListener('pagehide', () => {
  sendQoe();
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
    throw new Fallback('the WebRTC server is at capacity');
  }
  if (res.status === 404) {
    conn.close();
    throw new Offline('stream offline');
  }
  if (res.status !== 201) {
    conn.close();
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
    throw new Fallback('WebRTC could not connect (blocked network?)');
  }
  setMode('webrtc');
  setState('live', 'Live');
  $('layer').disabled = false;
  video.play().catch(() => {});
  conn.addEventListener('connectionstatechange', () => {
    if (stopped || pc !== conn) return;
    if (conn.connectionState === 'failed' || conn.connectionState === 'closed') {
      setState('reconnecting', 'Reconnecting…', 'warn');
      endWhep().then(() => setTimeout(start, 500));
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
      setState('offline', 'Stream ended');
      endWhep().then(() => setTimeout(start, OFFLINE_RETRY_MS));
    }
  }, 1000);
}

async function endWhep() {
  const resource = state.whepResource;
  state.whepResource = null;
  // DELETE first: a closed connection may already have ended the session.
  if (resource) await fetch(resource, { method: 'DELETE' }).catch(() => {});
  if (pc) pc.close();
  pc = null;
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

async function playHls(reason) {
  state.fallbackReason = reason;
  setMode('hls');
  setState('connecting', 'Connecting (LL-HLS)…');
  const src = `/hls/${encodeURIComponent(stream)}/index.m3u8${playToken ? `?token=${encodeURIComponent(playToken)}` : ''}`;
  video.srcObject = null;
  const Hls = await loadHlsJs().catch(() => null);
  state.hlsRequested = true;
  if (Hls && Hls.isSupported()) {
    hls = new Hls({ lowLatencyMode: true, liveSyncDurationCount: 2, backBufferLength: 30 });
    hls.on(Hls.Events.MANIFEST_PARSED, () => {
      setState('live', 'Live (LL-HLS)');
      $('layer').disabled = hls.levels.length < 2;
      video.play().catch(() => {});
    });
    hls.on(Hls.Events.ERROR, (_e, data) => {
      if (!data.fatal) return;
      const code = data.response?.code;
      hls.destroy();
      hls = null;
      if (code === 404) {
        setState('offline', 'Offline — waiting for the stream', 'warn');
        showError('');
      } else {
        setState('error', 'Playback error', 'error');
        showError(`LL-HLS playback failed: ${data.details}${code ? ` (HTTP ${code})` : ''}. Retrying…`);
      }
      if (!stopped) setTimeout(() => playHls(reason), OFFLINE_RETRY_MS);
    });
    hls.loadSource(src);
    hls.attachMedia(video);
  } else if (video.canPlayType('application/vnd.apple.mpegurl')) {
    video.src = src;
    video.addEventListener('loadedmetadata', () => setState('live', 'Live (HLS)'), { once: true });
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

async function start() {
  if (stopped) return;
  showError('');
  if (params.get('hls') === '1') return playHls('forced by ?hls=1');
  try {
    await playWhep();
  } catch (e) {
    if (e instanceof Offline) {
      setState('offline', 'Offline — waiting for the stream', 'warn');
      setTimeout(start, OFFLINE_RETRY_MS);
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
  const out = { latency: '—', bitrate: '—', resolution: '—', fps: '—', lost: '—' };
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
    const q = video.getVideoPlaybackQuality?.();
    out.lost = q ? `${q.droppedVideoFrames} frames dropped` : '—';
  }
  if (out.resolution === '—' && video.videoWidth) out.resolution = `${video.videoWidth}×${video.videoHeight}`;
  $('st-latency').textContent = out.latency;
  $('st-bitrate').textContent = out.bitrate;
  $('st-resolution').textContent = out.resolution;
  $('st-fps').textContent = out.fps;
  $('st-lost').textContent = out.lost;
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
// Viewer count: from the chat socket when it reports one, else (signed in)
// from GET /api/streams/live.

function setViewers(n) {
  $('viewer-count').textContent = Number.isFinite(n) ? String(n) : '—';
}

async function pollViewers() {
  if (!session()) return;
  try {
    const live = await api('GET', '/api/streams/live');
    const s = live.streams.find((x) => x.name === stream);
    setViewers(s ? s.viewers : 0);
  } catch {
    // Not allowed or unreachable: keep the last count.
  }
}

// ---------------------------------------------------------------------------
// Chat and integrator events.

function showEvent(msg) {
  const text = msg.text ?? msg.message ?? msg.title ?? msg.name ?? msg.event ?? '';
  if (!text) return;
  const node = document.createElement('div');
  node.className = 'event';
  node.textContent = String(text);
  $('overlay').append(node);
  setTimeout(() => node.remove(), (msg.duration_ms ?? 6000));
}

function addChat(msg) {
  const li = document.createElement('li');
  const who = document.createElement('b');
  who.textContent = `${msg.user?.username ?? msg.username ?? msg.user ?? msg.from ?? 'someone'}: `;
  li.append(who, String(msg.text ?? msg.message ?? ''));
  const log = $('chat-log');
  log.append(li);
  while (log.children.length > 200) log.firstElementChild.remove();
  log.scrollTop = log.scrollHeight;
}

function startChat() {
  const input = $('chat-input');
  const send = $('chat-form').querySelector('button');
  const socket = streamSocket(stream, {
    onMessage(msg) {
      if (msg.type === 'chat') addChat(msg);
      else if (msg.type === 'event') showEvent(msg);
      else if (msg.type === 'viewers' && Number.isFinite(msg.count)) setViewers(msg.count);
      if (Number.isFinite(msg.viewers)) setViewers(msg.viewers);
    },
    onState(s) {
      const signedIn = !!session();
      const stateNode = $('chat-state');
      if (s === 'open') {
        stateNode.textContent = signedIn ? '' : 'Sign in (Studio) to chat.';
        input.disabled = send.disabled = !signedIn;
      } else {
        input.disabled = send.disabled = true;
        stateNode.textContent = s === 'unavailable' ? 'Chat is not available for this stream.' : 'Chat disconnected, retrying…';
      }
    },
  });
  $('chat-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const text = input.value.trim();
    if (!text) return;
    if (socket.send({ type: 'chat', text })) input.value = '';
    else $('chat-state').textContent = 'Message not sent: chat is disconnected.';
  });
}

// ---------------------------------------------------------------------------

if (embed) document.body.classList.add('embed');
if (!stream) {
  setState('error', 'No stream', 'error');
  showError('The address names no stream: use /watch/<stream>.');
} else {
  document.title = `${stream} — relaycast`;
  $('title').textContent = stream;
  start();
  startChat(); // In the embed the chat panel is hidden; events still show.
  pollViewers();
  setInterval(pollViewers, 5000);
}
