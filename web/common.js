// Shared pieces of the relaycast pages: the signed-in session, JSON API
// calls with readable errors, WHIP/WHEP helpers, the chat/events socket and
// a small line chart.

const SESSION_KEY = 'relaycast.session';

// The signed-in session ({token, user}) kept by the studio, or null.
export function session() {
  try {
    const s = JSON.parse(localStorage.getItem(SESSION_KEY) || 'null');
    if (s && s.token && (!s.expires_at || s.expires_at * 1000 > Date.now())) return s;
  } catch {
    // A corrupt entry is the same as none.
  }
  return null;
}

export function saveSession(s) {
  if (s) localStorage.setItem(SESSION_KEY, JSON.stringify(s));
  else localStorage.removeItem(SESSION_KEY);
}

// An error whose message is fit to show to the user; `status` is the HTTP
// status (0 for network errors).
export class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

// Calls the JSON API. Returns the parsed body (null for 204); throws
// ApiError with the server's `error` text on failure.
export async function api(method, path, body, token = session()?.token) {
  const headers = {};
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (token) headers.Authorization = `Bearer ${token}`;
  let res;
  try {
    res = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    throw new ApiError(`Cannot reach the server (${e.message})`, 0);
  }
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!res.ok) {
    const why = (data && (data.error || data.message)) || text.slice(0, 200) || res.statusText;
    throw new ApiError(`${why} (HTTP ${res.status})`, res.status);
  }
  return data;
}

// Shorthand for document.createElement with properties and children.
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === 'class') node.className = v;
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else if (k in node && typeof v !== 'string') node[k] = v;
    else node.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c !== null && c !== undefined) node.append(c instanceof Node ? c : String(c));
  }
  return node;
}

// Shows `message` in the element `node` (role=status/alert is set in the
// HTML); `kind` is '', 'ok' or 'error'.
export function say(node, message, kind = '') {
  node.textContent = message;
  node.dataset.kind = kind;
}

// Parses WHIP/WHEP `Link: <url>; rel="ice-server"; username=…; credential=…`
// headers into RTCIceServer objects.
export function iceServersFromLinks(linkHeader) {
  if (!linkHeader) return [];
  const out = [];
  // Links are comma separated; URLs are in <…> so split on "," before "<".
  for (const part of linkHeader.split(/,\s*(?=<)/)) {
    const m = part.match(/^\s*<([^>]+)>(.*)$/);
    if (!m || !/rel="?ice-server"?/.test(m[2])) continue;
    const server = { urls: m[1] };
    const user = m[2].match(/username="([^"]*)"/);
    const cred = m[2].match(/credential="([^"]*)"/);
    if (user) server.username = user[1];
    if (cred) server.credential = cred[1];
    out.push(server);
  }
  return out;
}

// Resolves when ICE gathering completes or after maxMs (non-trickle
// WHIP/WHEP: the offer carries the candidates gathered by then).
export function waitGathering(pc, maxMs) {
  return new Promise((resolve) => {
    if (pc.iceGatheringState === 'complete') return resolve(true);
    const t = setTimeout(() => resolve(false), maxMs);
    pc.addEventListener('icegatheringstatechange', () => {
      if (pc.iceGatheringState === 'complete') {
        clearTimeout(t);
        resolve(true);
      }
    });
  });
}

// Resolves true when `pc` connects within maxMs, false when it fails,
// closes or times out.
export function waitConnected(pc, maxMs) {
  return new Promise((resolve) => {
    const done = (v) => {
      clearTimeout(t);
      pc.removeEventListener('connectionstatechange', check);
      resolve(v);
    };
    const check = () => {
      if (pc.connectionState === 'connected') done(true);
      else if (pc.connectionState === 'failed' || pc.connectionState === 'closed') done(false);
    };
    const t = setTimeout(() => done(false), maxMs);
    pc.addEventListener('connectionstatechange', check);
    check();
  });
}

// The chat/events socket of a stream (`/api/streams/{id}/ws`; message
// shapes in api/src/realtime/ws.rs). `token` (default: the signed-in
// session's) authorizes reading private streams and writing chat. Calls
// onMessage(obj) for each JSON message and onState('open'|'closed'|
// 'unavailable'). Pings every 25 s so idle proxies keep it open.
// Reconnects with back-off; gives up quietly after three failed opens in a
// row (the page works without it). Returns {send(obj) -> bool, close()}.
export function streamSocket(stream, { token = session()?.token, onMessage, onState }) {
  let ws = null;
  let closed = false;
  let failures = 0;
  let timer = null;
  const connect = () => {
    if (closed || !('WebSocket' in window)) {
      onState('unavailable');
      return;
    }
    const url = new URL(`/api/streams/${encodeURIComponent(stream)}/ws`, location.href);
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    if (token) url.searchParams.set('token', token);
    let opened = false;
    try {
      ws = new WebSocket(url);
    } catch {
      onState('unavailable');
      return;
    }
    ws.addEventListener('open', () => {
      opened = true;
      failures = 0;
      onState('open');
    });
    ws.addEventListener('message', (ev) => {
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch {
        return;
      }
      if (msg && typeof msg === 'object') onMessage(msg);
    });
    ws.addEventListener('close', () => {
      ws = null;
      if (closed) return;
      failures = opened ? 0 : failures + 1;
      // Never opened three times in a row: the server has no chat.
      if (failures >= 3) {
        onState('unavailable');
        return;
      }
      onState('closed');
      timer = setTimeout(connect, 2000 * (failures + 1));
    });
  };
  connect();
  const ping = setInterval(() => {
    if (ws && ws.readyState === WebSocket.OPEN) ws.send('{"type":"ping"}');
  }, 25_000);
  return {
    send(obj) {
      if (!ws || ws.readyState !== WebSocket.OPEN) return false;
      ws.send(JSON.stringify(obj));
      return true;
    },
    close() {
      closed = true;
      clearTimeout(timer);
      clearInterval(ping);
      if (ws) ws.close();
    },
  };
}

// Formats bits per second for people.
export function fmtBitrate(bps) {
  if (!Number.isFinite(bps) || bps <= 0) return '—';
  if (bps >= 1e6) return `${(bps / 1e6).toFixed(2)} Mbit/s`;
  return `${Math.round(bps / 1e3)} kbit/s`;
}

// Draws series ({label, color, values: number[]}) on a canvas as lines,
// scaled to the largest value; `fmt` labels the top of the scale.
export function drawChart(canvas, series, fmt = String) {
  const ctx = canvas.getContext('2d');
  const w = (canvas.width = canvas.clientWidth * devicePixelRatio || 300);
  const h = (canvas.height = canvas.clientHeight * devicePixelRatio || 120);
  ctx.clearRect(0, 0, w, h);
  const max = Math.max(1, ...series.flatMap((s) => s.values.filter(Number.isFinite)));
  ctx.lineWidth = 2 * devicePixelRatio;
  for (const s of series) {
    const n = s.values.length;
    if (n < 2) continue;
    ctx.strokeStyle = s.color;
    ctx.beginPath();
    s.values.forEach((v, i) => {
      const x = (i / (n - 1)) * w;
      const y = h - (Number.isFinite(v) ? v / max : 0) * (h - 16 * devicePixelRatio);
      if (i === 0) ctx.moveTo(x, y);
      else ctx.lineTo(x, y);
    });
    ctx.stroke();
  }
  ctx.fillStyle = '#aab';
  ctx.font = `${11 * devicePixelRatio}px sans-serif`;
  ctx.fillText(fmt(max), 4, 12 * devicePixelRatio);
}

// Shows who is signed in on the page's "Account" link (id account-link).
export function showAccountLink() {
  const link = document.getElementById('account-link');
  if (!link) return;
  const s = session();
  link.textContent = s ? `Account (${s.user?.username ?? 'signed in'})` : 'Sign in';
}

// A date and time for people, from Unix milliseconds.
export function fmtWhen(ms) {
  if (!Number.isFinite(ms)) return '';
  return new Date(ms).toLocaleString([], { dateStyle: 'medium', timeStyle: 'short' });
}

// What a stream's visibility means to a viewer ('' for public).
export function visibilityLabel(v) {
  return { authenticated: 'Members', entitled: 'Ticket or subscription' }[v] ?? '';
}
