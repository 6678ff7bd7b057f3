// The relaycast studio (/studio): sign in or register as a broadcaster,
// create streams, see the WHIP settings for OBS, or go live from the
// camera (WHIP with simulcast layers q/h/f), and end the stream.

import { api, el, saveSession, say, session, waitConnected, waitGathering } from './common.js';

const $ = (id) => document.getElementById(id);
const message = $('message');

let current = null; // the selected stream's name
const keys = new Map(); // stream name -> secret made in this page
let media = null;
let pc = null;
let whipResource = null;

function notify(text, kind = '') {
  message.hidden = !text;
  say(message, text, kind);
}

// Runs an async UI action, turning failures into a visible message.
async function attempt(what, fn) {
  try {
    return await fn();
  } catch (e) {
    notify(`${what}: ${e.message}`, 'error');
    return undefined;
  }
}

// ---------------------------------------------------------------------------
// Account.

function showSignedIn() {
  const s = session();
  $('auth').hidden = !!s;
  $('streams').hidden = !s;
  $('logout').hidden = !s;
  $('who').textContent = s ? `${s.user?.username ?? ''} (${s.user?.role ?? ''})` : '';
  if (!s) $('stream').hidden = true;
  if (s) loadStreams();
}

function selectTab(login) {
  $('tab-login').setAttribute('aria-selected', String(login));
  $('tab-register').setAttribute('aria-selected', String(!login));
  $('login-form').hidden = !login;
  $('register-form').hidden = login;
  $('auth-title').textContent = login ? 'Sign in' : 'Create a broadcaster account';
}
$('tab-login').addEventListener('click', () => selectTab(true));
$('tab-register').addEventListener('click', () => selectTab(false));

$('login-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const f = new FormData(ev.target);
  attempt('Sign-in failed', async () => {
    const s = await api('POST', '/api/auth/login', { username: f.get('username'), password: f.get('password') }, null);
    saveSession(s);
    notify('');
    showSignedIn();
  });
});

$('register-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const f = new FormData(ev.target);
  attempt('Could not create the account', async () => {
    const s = await api(
      'POST',
      '/api/auth/register',
      { username: f.get('username'), password: f.get('password'), role: 'broadcaster' },
      null,
    );
    saveSession(s);
    notify('Account created. You are signed in.', 'ok');
    showSignedIn();
  });
});

$('logout').addEventListener('click', async () => {
  await api('POST', '/api/auth/logout').catch(() => {});
  saveSession(null);
  showSignedIn();
});

// ---------------------------------------------------------------------------
// Streams.

async function loadStreams() {
  await attempt('Could not list your streams', async () => {
    const { streams } = await api('GET', '/api/streams');
    const rows = $('stream-rows');
    rows.replaceChildren(
      ...streams.map((s) =>
        el(
          'tr',
          {},
          el('td', {}, s.name),
          el('td', {}, s.title || ''),
          el('td', {}, s.live
            ? el('span', { class: 'live-dot' }, `Live · ${s.viewers} watching`)
            : Number.isFinite(s.scheduled_at) ? `Scheduled for ${new Date(s.scheduled_at * 1000).toLocaleString()}` : 'Offline'),
          el('td', {}, el('button', { type: 'button', onclick: () => selectStream(s.name) }, 'Open')),
        ),
      ),
    );
    if (!streams.length) rows.append(el('tr', {}, el('td', { colspan: '4', class: 'hint' }, 'No streams yet: create one below.')));
  });
}

$('create-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const f = new FormData(ev.target);
  attempt('Could not create the stream', async () => {
    const s = await api('POST', '/api/streams', {
      name: f.get('name'),
      title: f.get('title') || '',
      visibility: f.get('visibility'),
    });
    ev.target.reset();
    notify(`Stream “${s.name}” created.`, 'ok');
    await loadStreams();
    selectStream(s.name);
  });
});

function selectStream(name) {
  current = name;
  const base = location.origin;
  $('stream').hidden = false;
  $('stream-title').textContent = `Stream “${name}”`;
  $('whip-url').value = `${base}/whip/${encodeURIComponent(name)}`;
  $('stream-key').value = keys.get(name) ?? '';
  const watch = `${base}/watch/${encodeURIComponent(name)}`;
  $('watch-link').href = watch;
  $('watch-link').textContent = watch;
  $('embed-code').textContent = `<iframe src="${base}/embed/${encodeURIComponent(name)}" allow="autoplay; fullscreen" width="640" height="360"></iframe>`;
  $('stream').scrollIntoView?.({ behavior: 'smooth', block: 'start' });
  attempt('Could not load the schedule', () => loadSchedule(name));
}

// A datetime-local value (local time) from Unix seconds, and back.
function toLocalInput(secs) {
  const d = new Date(secs * 1000);
  const pad = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

function showSchedule(s) {
  $('schedule-title').value = s.title || '';
  $('schedule-start').value = Number.isFinite(s.scheduled_at) ? toLocalInput(s.scheduled_at) : '';
  say($('schedule-status'), Number.isFinite(s.scheduled_at)
    ? `Scheduled for ${new Date(s.scheduled_at * 1000).toLocaleString()}.`
    : 'Not scheduled.');
}

async function loadSchedule(name) {
  const s = await api('GET', `/api/streams/${encodeURIComponent(name)}`);
  if (current === name) showSchedule(s);
}

$('schedule-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const f = new FormData(ev.target);
  const start = new Date(String(f.get('start'))).getTime();
  if (!Number.isFinite(start)) {
    say($('schedule-status'), 'Choose a start date and time.', 'error');
    return;
  }
  const name = current;
  attempt('Could not schedule the stream', async () => {
    const s = await api('PATCH', `/api/streams/${encodeURIComponent(name)}`, {
      title: String(f.get('title') ?? ''),
      scheduled_at: Math.floor(start / 1000),
    });
    showSchedule(s);
    await loadStreams();
  });
});

$('schedule-clear').addEventListener('click', () => {
  const name = current;
  attempt('Could not clear the schedule', async () => {
    showSchedule(await api('PATCH', `/api/streams/${encodeURIComponent(name)}`, { scheduled_at: null }));
  });
});

async function newKey() {
  const name = current;
  const { secret } = await api('POST', `/api/streams/${encodeURIComponent(name)}/keys`);
  keys.set(name, secret);
  if (current === name) $('stream-key').value = secret;
  return secret;
}
$('new-key').addEventListener('click', () => attempt('Could not make a stream key', newKey));

for (const b of document.querySelectorAll('[data-copy]')) {
  b.addEventListener('click', async () => {
    const input = $(b.dataset.copy);
    try {
      await navigator.clipboard.writeText(input.value);
      notify('Copied.', 'ok');
    } catch {
      input.select();
      notify('Select-and-copy: the clipboard is not available here.', 'warn');
    }
  });
}

// ---------------------------------------------------------------------------
// Camera and WHIP.

async function startCamera() {
  const simulcast = $('simulcast').checked;
  try {
    media = await navigator.mediaDevices.getUserMedia({
      video: simulcast ? { width: { ideal: 1280 }, height: { ideal: 720 } } : { width: { ideal: 640 }, height: { ideal: 480 } },
      audio: true,
    });
  } catch (e) {
    say($('live-status'), `Camera not available: ${e.message}`, 'error');
    return false;
  }
  $('preview').srcObject = media;
  $('preview').play().catch(() => {});
  $('go-live').disabled = false;
  $('camera').disabled = true;
  say($('live-status'), 'Camera ready. Not live.');
  return true;
}
$('camera').addEventListener('click', startCamera);

// Offers only `codec` on the transceiver when the browser can send it.
// H.264 is the default: LL-HLS (the fallback of viewers WebRTC cannot
// reach) is packaged from H.264 only.
function preferCodec(transceiver, codec) {
  if (!transceiver.setCodecPreferences || !window.RTCRtpReceiver?.getCapabilities) return;
  // Preferences are chosen among the receive capabilities (Chromium
  // refuses others); the codec must be sendable too.
  const mime = `video/${codec.toLowerCase()}`;
  const all = RTCRtpReceiver.getCapabilities('video')?.codecs ?? [];
  const wanted = all.filter((c) => c.mimeType.toLowerCase() === mime);
  const sendable = RTCRtpSender.getCapabilities?.('video')?.codecs?.some((c) => c.mimeType.toLowerCase() === mime) ?? true;
  if (!wanted.length || !sendable) {
    say($('live-status'), `This browser cannot send ${codec}; using its default codec.`, 'warn');
    return;
  }
  try {
    // Only that codec (and its retransmission/FEC helpers): a server
    // answering in its own order would otherwise be free to pick another.
    const helpers = all.filter((c) => /\/(rtx|red|ulpfec|flexfec)/i.test(c.mimeType));
    transceiver.setCodecPreferences([...wanted, ...helpers]);
  } catch {
    // Preferences the browser refuses: its default order stays.
  }
}

async function goLive() {
  const status = $('live-status');
  const name = current;
  if (!media && !(await startCamera())) return;
  $('go-live').disabled = true;
  say(status, 'Connecting…');
  try {
    const key = keys.get(name) ?? (await newKey());
    pc = new RTCPeerConnection({ iceServers: [] });
    const simulcast = $('simulcast').checked;
    for (const track of media.getTracks()) {
      const init = { direction: 'sendonly', streams: [media] };
      if (simulcast && track.kind === 'video') {
        init.sendEncodings = [
          { rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 150_000 },
          { rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 500_000 },
          { rid: 'f', scaleResolutionDownBy: 1, maxBitrate: 1_500_000 },
        ];
      }
      const tr = pc.addTransceiver(track, init);
      if (track.kind === 'video') preferCodec(tr, $('codec').value);
    }
    await pc.setLocalDescription(await pc.createOffer());
    await waitGathering(pc, 1000);
    const res = await fetch(`/whip/${encodeURIComponent(name)}`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/sdp', Authorization: `Bearer ${key}` },
      body: pc.localDescription.sdp,
    });
    const body = await res.text();
    if (res.status !== 201) {
      let why = body.slice(0, 200);
      try {
        why = JSON.parse(body).error || why;
      } catch {
        // Plain-text body.
      }
      throw new Error(`${why} (HTTP ${res.status})`);
    }
    whipResource = new URL(res.headers.get('Location'), location.href).toString();
    await pc.setRemoteDescription({ type: 'answer', sdp: body });
    if (!(await waitConnected(pc, 10_000))) throw new Error(`media did not connect (${pc.connectionState})`);
    document.body.dataset.live = 'true';
    say(status, `Live on ${name}${simulcast ? ' (simulcast)' : ''}.`, 'ok');
    $('end').disabled = false;
    pc.addEventListener('connectionstatechange', () => {
      if (pc && (pc.connectionState === 'failed' || pc.connectionState === 'disconnected')) {
        say(status, `Connection ${pc.connectionState}. End the stream and go live again.`, 'error');
      }
    });
    loadStreams();
  } catch (e) {
    say(status, `Could not go live: ${e.message}`, 'error');
    await endStream(false);
  }
}
$('go-live').addEventListener('click', goLive);

async function endStream(report = true) {
  const resource = whipResource;
  whipResource = null;
  $('end').disabled = true;
  // DELETE before closing the connection: the server drops a session whose
  // DTLS closes, and the DELETE would then find nothing (404).
  if (resource) {
    try {
      const res = await fetch(resource, { method: 'DELETE' });
      const ended = res.ok || res.status === 404;
      if (report) say($('live-status'), ended ? 'Stream ended.' : `Stream ended (server answered HTTP ${res.status}).`, ended ? '' : 'warn');
    } catch (e) {
      if (report) say($('live-status'), `Stream ended locally; the server could not be told (${e.message}).`, 'warn');
    }
  }
  if (pc) pc.close();
  pc = null;
  document.body.dataset.live = 'false';
  $('go-live').disabled = false;
  loadStreams();
}
$('end').addEventListener('click', () => endStream(true));
addEventListener('pagehide', () => {
  if (whipResource) fetch(whipResource, { method: 'DELETE', keepalive: true }).catch(() => {});
});

showSignedIn();
// Keep the viewer counts in the stream list current.
setInterval(() => {
  if (session() && !document.hidden) loadStreams();
}, 10_000);
