// The account page (/account): sign in or create a viewer account, see
// subscriptions and purchases (GET /api/entitlements), sign out. With
// ?return_to=/watch/NAME it goes back to that page once signed in.

import { api, el, fmtWhen, saveSession, say, session, showAccountLink } from './common.js';

const $ = (id) => document.getElementById(id);

// Only paths of this site: never another origin.
function returnTo() {
  const r = new URLSearchParams(location.search).get('return_to');
  return r && r.startsWith('/') && !r.startsWith('//') && !r.includes('\\') ? r : null;
}

function notify(text, kind = '') {
  $('message').hidden = !text;
  say($('message'), text, kind);
}

async function attempt(what, fn) {
  try {
    return await fn();
  } catch (e) {
    notify(`${what}: ${e.message}`, 'error');
    return undefined;
  }
}

function selectTab(login) {
  $('tab-login').setAttribute('aria-selected', String(login));
  $('tab-register').setAttribute('aria-selected', String(!login));
  $('login-form').hidden = !login;
  $('register-form').hidden = login;
  $('auth-title').textContent = login ? 'Sign in' : 'Create an account';
}
$('tab-login').addEventListener('click', () => selectTab(true));
$('tab-register').addEventListener('click', () => selectTab(false));

function signedIn(s) {
  saveSession(s);
  const back = returnTo();
  if (back) {
    location.assign(back);
    return;
  }
  notify('');
  show();
}

$('login-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const f = new FormData(ev.target);
  attempt('Sign-in failed', async () => {
    signedIn(await api('POST', '/api/auth/login', { username: f.get('username'), password: f.get('password') }, null));
  });
});

$('register-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const f = new FormData(ev.target);
  attempt('Could not create the account', async () => {
    signedIn(await api('POST', '/api/auth/register', { username: f.get('username'), password: f.get('password'), role: 'viewer' }, null));
  });
});

$('logout').addEventListener('click', async () => {
  // Revoke the token on the server; forget it here whatever happens.
  await api('POST', '/api/auth/logout').catch(() => {});
  saveSession(null);
  notify('You are signed out.', 'ok');
  show();
});

function what(e) {
  if (e.kind === 'ppv') {
    return el('a', { href: `/watch/${encodeURIComponent(e.stream)}` }, `Ticket: ${e.stream}`);
  }
  return `Subscription: ${e.broadcaster_name ?? e.broadcaster_id}`;
}

async function loadEntitlements() {
  const list = await api('GET', '/api/entitlements');
  const rows = (list.entitlements ?? []).filter((e) => !e.revoked_at);
  $('entitlements').replaceChildren(...rows.map((e) => el('tr', {},
    el('td', {}, what(e)),
    el('td', {}, fmtWhen(e.created_at * 1000)),
    el('td', {}, e.expires_at ? fmtWhen(e.expires_at * 1000) : 'until cancelled'),
  )));
  $('entitlements-empty').hidden = rows.length > 0;
}

function show() {
  const s = session();
  showAccountLink();
  $('auth').hidden = !!s;
  $('me').hidden = !s;
  if (!s) return;
  $('me-name').textContent = s.user?.username ?? '';
  $('me-role').textContent = s.user?.role ?? '';
  attempt('Could not load your purchases', async () => {
    try {
      await loadEntitlements();
    } catch (e) {
      if (e.status === 401) {
        // The session ran out or was revoked elsewhere.
        saveSession(null);
        show();
        notify('Your session has ended: please sign in again.', 'warn');
        return;
      }
      throw e;
    }
  });
}

show();
