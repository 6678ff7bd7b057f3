// The stream page's surroundings of the player (/watch/{stream}): title,
// broadcaster, state (live / offline with the next scheduled start /
// ended), recordings, and the gate of a stream the visitor may not watch
// yet (sign in, buy a ticket, subscribe: a hand-off to the payment
// provider's checkout; the provider's signed webhook grants the
// entitlement and the page notices on its next look). Data from
// GET /api/directory/{stream}; player.js decides when to play.

import { ApiError, api, fmtWhen, session, visibilityLabel } from './common.js';

const $ = (id) => document.getElementById(id);

// The stream page's data, or null when the server has none (an unknown
// stream: the player then behaves as it always did).
export async function fetchPage(stream) {
  const path = `/api/directory/${encodeURIComponent(stream)}`;
  try {
    return await api('GET', path);
  } catch (e) {
    // A session that ran out: look again as a visitor.
    if (e instanceof ApiError && e.status === 401 && session()) {
      try {
        return await api('GET', path, undefined, null);
      } catch {
        return null;
      }
    }
    return null;
  }
}

// A play token for the signed-in viewer (entitlement checked by the
// server); throws ApiError.
export async function fetchPlayToken(stream) {
  const t = await api('POST', `/api/streams/${encodeURIComponent(stream)}/play-token`, {});
  return t.token;
}

export function offlineText(page) {
  if (page.state === 'ended') return 'Stream ended';
  if (Number.isFinite(page.scheduled_at)) return `Offline — starts ${fmtWhen(page.scheduled_at * 1000)}`;
  return 'Offline — waiting for the stream';
}

// Fills the title, byline, state, schedule and recordings.
export function renderPage(page, { stream, vodRun }) {
  const title = page.title || stream;
  document.title = `${vodRun ? 'Recording: ' : ''}${title} — relaycast`;
  $('title').textContent = title;
  const label = visibilityLabel(page.visibility);
  $('broadcaster').textContent = [page.broadcaster ? `by ${page.broadcaster}` : '', label].filter(Boolean).join(' · ');
  const st = vodRun ? 'Recording' : page.live ? 'LIVE' : page.state === 'ended' ? 'Ended' : 'Offline';
  $('page-state').textContent = st;
  $('page-state').dataset.state = vodRun ? 'recording' : page.state;
  const sched = $('schedule');
  sched.hidden = !Number.isFinite(page.scheduled_at) || page.live;
  sched.textContent = sched.hidden ? '' : `Next live: ${fmtWhen(page.scheduled_at * 1000)}`;
  // Offline or ended: the last picture anyone may see, as the poster.
  const video = document.getElementById('video');
  if (!page.live && !vodRun && page.thumbnail) video.poster = page.thumbnail;
  else if (page.live) video.removeAttribute('poster');
  const recs = page.recordings ?? [];
  $('recordings-box').hidden = recs.length === 0;
  $('recordings').replaceChildren(...recs.slice(0, 10).map((r) => {
    const li = document.createElement('li');
    const a = document.createElement('a');
    a.href = `/watch/${encodeURIComponent(stream)}?vod=${encodeURIComponent(r.run)}`;
    a.className = 'recording';
    a.textContent = `Recording${Number.isFinite(r.started_at_ms) ? ` of ${fmtWhen(r.started_at_ms)}` : ''}`;
    if (r.run === vodRun) a.setAttribute('aria-current', 'page');
    li.append(a);
    return li;
  }));
}

// Shows what would let the visitor watch; returns the reason for the
// player's error line. `onCheckout` is called when a checkout opens.
export function showGate(page, { stream, onCheckout }) {
  const gate = $('gate');
  gate.hidden = false;
  const signIn = $('gate-signin');
  const buy = $('gate-buy');
  const sub = $('gate-subscribe');
  signIn.hidden = buy.hidden = sub.hidden = true;
  let text;
  if (page.access.needs === 'sign_in') {
    signIn.hidden = false;
    signIn.href = `/account?return_to=${encodeURIComponent(`/watch/${stream}`)}`;
    $('gate-title').textContent = page.visibility === 'authenticated' ? 'Sign in to watch' : 'This stream needs a ticket';
    text = page.visibility === 'authenticated'
      ? 'This stream is for signed-in viewers.'
      : 'This stream needs a ticket or a subscription: sign in first.';
  } else {
    $('gate-title').textContent = 'This stream needs a ticket';
    const c = page.access.checkout;
    if (c?.ppv) {
      buy.hidden = false;
      buy.href = c.ppv;
    }
    if (c?.subscription) {
      sub.hidden = false;
      sub.href = c.subscription;
      sub.textContent = page.broadcaster ? `Subscribe to ${page.broadcaster}` : 'Subscribe';
    }
    text = c
      ? 'Buy a ticket for this stream, or subscribe for all of the broadcaster’s streams. It plays here as soon as the payment is confirmed.'
      : 'This stream needs a ticket or a subscription, which this site does not sell online: ask the broadcaster.';
  }
  $('gate-text').textContent = text;
  const reason = page.access.needs === 'sign_in'
    ? 'sign in first.'
    : 'this stream needs a ticket or a subscription.';
  for (const a of [buy, sub]) {
    a.onclick = () => {
      $('gate-wait').textContent = 'Waiting for the payment to be confirmed…';
      onCheckout();
    };
  }
  return reason;
}

export function hideGate() {
  $('gate').hidden = true;
  $('gate-wait').textContent = '';
}
