#!/usr/bin/env node
// The viewer site end to end in headless Debian Chromium.
//
//   node viewer_site.mjs <base_url> <out_dir>
//
// Environment (set by api/tests/viewer_site_in_chromium.rs):
//   SITE_OPEN, SITE_OPEN_KEY      a public stream and its stream key
//   SITE_PAID, SITE_PAID_KEY      an entitled (paywalled) stream and its key
//   SITE_SESSION                  a viewer's session (JSON of POST
//                                 /api/auth/login), without a ticket
//   SITE_WEBHOOK_SECRET           the payment webhook's signing secret
//   SITE_BROADCASTER_SESSION      the streams' owner's session; a stream of
//                                 theirs named "nextweek" is not scheduled
//
// 0. Studio (the owner): schedules "nextweek" with a title and a start.
// 1. Two publisher pages go live from the fake camera (WHIP, H.264).
// 2. Home (desktop, anonymous): lists the open stream live, with its
//    viewer count and a thumbnail that loads; clicking its title plays it
//    (WebRTC). A second home page (390 px phone) then counts 1 viewer;
//    searching by title there keeps only the paid stream.
// 3. The paid stream, signed in as the viewer: the gate shows the buy
//    button; clicking it opens the checkout hand-off (a new tab on the
//    configured checkout URL); the test, standing in for the payment
//    provider, sends the signed webhook; the same page (no reload) plays.
// 4. The open stream's publisher stops: the watching page says it ended
//    and lists the recording; the home page lists it under recent streams
//    with the recording; following that link plays the recording (LL-HLS
//    VOD through hls.js).
// 5. Account page (phone): the purchase is listed. A missing page answers
//    the HTML 404 page.
// Every page: no console errors, page errors, failed requests or HTTP
// errors (but the 404 page's own answer). Screenshots of every step at
// desktop and phone sizes in <out_dir>/site-*.png. Prints one RESULT line.

import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import process from 'node:process';
import { chromiumExists, closeBrowser, launchBrowser, openPage, parseBaseUrl, publish, waitConnected } from './lib.mjs';

const HARD_TIMEOUT_MS = 280_000;
const log = (...a) => console.error('[viewer_site]', ...a);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const [baseArg, outDir] = process.argv.slice(2);
const base = parseBaseUrl(baseArg ?? '');
const env = process.env;
const need = ['SITE_OPEN', 'SITE_OPEN_KEY', 'SITE_PAID', 'SITE_PAID_KEY', 'SITE_SESSION', 'SITE_WEBHOOK_SECRET', 'SITE_BROADCASTER_SESSION'];
if (!base || !outDir || need.some((k) => !env[k]) || !chromiumExists()) {
  console.error(`usage: node viewer_site.mjs <base_url> <out_dir> with ${need.join(', ')} set, and Chromium`);
  process.exit(2);
}
const open = env.SITE_OPEN;
const paid = env.SITE_PAID;
const viewerSession = JSON.parse(env.SITE_SESSION);
const ownerSession = JSON.parse(env.SITE_BROADCASTER_SESSION);
fs.mkdirSync(outDir, { recursive: true });

const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };

const result = { problems: [], screenshots: [] };
const problems = result.problems;

async function until(what, fn, ms) {
  const t0 = Date.now();
  for (;;) {
    const v = await fn().catch((e) => {
      log(`${what}: ${e?.message ?? e}`);
      return null;
    });
    if (v) return v;
    if (Date.now() - t0 > ms) throw new Error(`timed out after ${ms} ms: ${what}`);
    await sleep(300);
  }
}

// Watches a page for console errors, page errors, failed requests and
// HTTP errors; `allow(url, status)` lets an expected one through.
function guard(page, name, allow = () => false) {
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    const url = m.location()?.url ?? '';
    // Chromium logs every HTTP error as a console error: an expected one
    // is let through here as well.
    const http = m.text().match(/^Failed to load resource: the server responded with a status of (\d+)/);
    if (http && allow(url, Number(http[1]))) return;
    problems.push(`${name}: console.error: ${m.text()} @ ${url}`);
  });
  page.on('pageerror', (e) => problems.push(`${name}: page error: ${e?.message ?? e}`));
  page.on('requestfailed', (r) => {
    const why = r.failure()?.errorText ?? '';
    // Requests cut short by leaving the page are not failures.
    if (/ERR_ABORTED/.test(why)) return;
    problems.push(`${name}: request failed: ${r.method()} ${r.url()} ${why}`);
  });
  page.on('response', (r) => {
    if (r.status() >= 400 && !allow(r.url(), r.status())) problems.push(`${name}: HTTP ${r.status()} for ${r.request().method()} ${r.url()}`);
  });
  return page;
}

async function viewerPage(browser, name, viewport, { signedIn = false, as = viewerSession, allow } = {}) {
  const context = await browser.newContext({ viewport });
  if (signedIn) {
    await context.addInitScript((s) => {
      // Pages of other documents (the checkout stand-in) may not have
      // storage; only the site's pages need it.
      try {
        localStorage.setItem('relaycast.session', JSON.stringify(s));
      } catch {
        // See above.
      }
    }, as);
  }
  const page = guard(await context.newPage(), name, allow);
  return { context, page };
}

async function shot(page, name) {
  const file = path.join(outDir, `site-${name}.png`);
  try {
    await page.screenshot({ path: file, timeout: 15_000, fullPage: true });
    result.screenshots.push(path.basename(file));
  } catch (e) {
    problems.push(`screenshot ${name}: ${e?.message ?? e}`);
  }
}

// Playing: a picture, and media time that moves on by 1.5 s.
async function playing(page, what, ms) {
  let first = null;
  return until(`${what} plays`, async () => {
    const s = await page.evaluate(() => {
      const v = document.getElementById('video');
      return { t: v.currentTime, w: v.videoWidth, mode: window.relaycastPlayer?.mode, state: window.relaycastPlayer?.state };
    });
    if (!(s.w > 0 && s.t > 0)) return null;
    first ??= s;
    return s.t - first.t >= 1.5 ? s : null;
  }, ms);
}

function signWebhook(body) {
  const t = Math.floor(Date.now() / 1000);
  const mac = crypto.createHmac('sha256', env.SITE_WEBHOOK_SECRET).update(`${t}.${body}`).digest('hex');
  return `t=${t},v1=${mac}`;
}

async function run(browser) {
  // 0. The studio schedules a stream.
  const studio = await viewerPage(browser, 'studio', DESKTOP, { signedIn: true, as: ownerSession });
  await studio.page.goto(`${base}/studio`, { waitUntil: 'load' });
  await studio.page.locator('tr', { hasText: 'nextweek' }).getByRole('button', { name: 'Open' }).click();
  await studio.page.waitForSelector('#schedule-form', { state: 'visible' });
  await until('the studio shows the schedule', () => studio.page.$eval('#schedule-status', (e) => e.textContent), 10_000);
  const when = new Date(Date.now() + 7 * 86400_000);
  const pad = (n) => String(n).padStart(2, '0');
  await studio.page.getByLabel('Show title').fill("Next week's derby");
  await studio.page.getByLabel('Starts').fill(`${when.getFullYear()}-${pad(when.getMonth() + 1)}-${pad(when.getDate())}T20:00`);
  await studio.page.getByRole('button', { name: 'Schedule', exact: true }).click();
  result.scheduled = await until('the studio says it is scheduled', () =>
    studio.page.$eval('#schedule-status', (e) => (/^Scheduled for /.test(e.textContent) ? e.textContent : null)), 15_000);
  await shot(studio.page, 'studio-schedule-desktop');
  await studio.context.close();

  // 1. Publishers.
  const pubs = {};
  for (const [stream, key] of [[open, env.SITE_OPEN_KEY], [paid, env.SITE_PAID_KEY]]) {
    const page = await openPage(browser, base, `publisher ${stream}`, log);
    const r = await page.evaluate(publish, { whipUrl: `${base}/whip/${stream}`, streamKey: key, gatherMs: 1500, codec: 'H264', codecOnly: true });
    if (!r.ok) throw new Error(`publishing ${stream}: ${JSON.stringify(r)}`);
    const c = await page.evaluate(waitConnected, 30_000);
    if (c.state !== 'connected') throw new Error(`publisher ${stream}: ${JSON.stringify(c)}`);
    pubs[stream] = page;
  }

  // 2. Home: the live stream, its viewer count and thumbnail; click plays.
  const home = await viewerPage(browser, 'home', DESKTOP);
  await home.page.goto(`${base}/`, { waitUntil: 'load' });
  const card = `#live li[data-stream="${open}"]`;
  result.home = await until('the home page lists the live stream with its thumbnail', async () => {
    await home.page.reload({ waitUntil: 'load' });
    await home.page.waitForSelector(card, { timeout: 5_000 });
    return home.page.evaluate((sel) => {
      const c = document.querySelector(sel);
      const img = c.querySelector('img.thumb');
      const v = c.querySelector('.viewers');
      if (!img || !img.complete || !(img.naturalWidth > 0) || !v) return null;
      return { viewers: Number(v.dataset.viewers), thumb: [img.naturalWidth, img.naturalHeight], title: c.querySelector('h3').textContent };
    }, card);
  }, 60_000);
  result.upcoming = await home.page.$$eval('#upcoming li.card', (cs) => cs.map((c) => [c.dataset.stream, c.querySelector('h3').textContent]));
  const paidCard = await home.page.$(`#live li[data-stream="${paid}"]`);
  result.home.paid_listed = !!paidCard;
  result.home.paid_thumbnail = paidCard ? !!(await paidCard.$('img')) : null;
  await shot(home.page, 'home-desktop');
  await home.page.click(`${card} h3 a`);
  await home.page.waitForURL(`**/watch/${open}`);
  result.open_play = await playing(home.page, 'the open stream', 45_000);
  result.open_title = await home.page.title();
  await shot(home.page, 'watch-desktop');

  const phoneHome = await viewerPage(browser, 'home (phone)', PHONE);
  await phoneHome.page.goto(`${base}/`, { waitUntil: 'load' });
  result.home_viewers = await until('the home page counts the viewer', async () => {
    await phoneHome.page.reload({ waitUntil: 'load' });
    await phoneHome.page.waitForSelector(card, { timeout: 5_000 });
    const n = await phoneHome.page.$eval(`${card} .viewers`, (v) => Number(v.dataset.viewers));
    return n >= 1 ? n : null;
  }, 45_000);
  result.home_phone_overflow = await phoneHome.page.evaluate(() => document.documentElement.scrollWidth - innerWidth);
  await shot(phoneHome.page, 'home-phone');
  // Search by title, from the keyboard.
  await phoneHome.page.focus('#q');
  await phoneHome.page.keyboard.type('TITLE FIGHT');
  await phoneHome.page.keyboard.press('Enter');
  result.search = await until('the search keeps only the matching stream', () =>
    phoneHome.page.evaluate(() => {
      const live = [...document.querySelectorAll('#live li.card')].map((c) => c.dataset.stream);
      const upcoming = document.querySelectorAll('#upcoming li.card').length;
      return live.length === 1 && upcoming === 0 && new URL(location.href).searchParams.get('q') === 'TITLE FIGHT' ? live : null;
    }), 20_000);

  // 3. The paid stream: gate, checkout hand-off, webhook, plays.
  const buyer = await viewerPage(browser, 'paid watch', DESKTOP, { signedIn: true });
  await buyer.page.goto(`${base}/watch/${paid}`, { waitUntil: 'load' });
  await buyer.page.waitForSelector('#gate-buy:not([hidden])', { timeout: 30_000 });
  await buyer.page.evaluate(() => { window.__sameDocument = true; });
  result.gate = await buyer.page.evaluate(() => ({
    title: document.getElementById('gate-title').textContent,
    buy: document.getElementById('gate-buy').href,
    state: window.relaycastPlayer.state,
    error: document.getElementById('error').textContent,
  }));
  await shot(buyer.page, 'gate-desktop');
  const popupPromise = buyer.context.waitForEvent('page', { timeout: 15_000 });
  // Keyboard: the buy link is reachable and opens with Enter.
  await buyer.page.focus('#gate-buy');
  await buyer.page.keyboard.press('Enter');
  const popup = guard(await popupPromise, 'checkout');
  await popup.waitForLoadState('load').catch(() => {});
  result.checkout_url = popup.url();
  await popup.close();
  const event = JSON.stringify({
    id: `evt_site_${Date.now()}`,
    type: 'checkout.session.completed',
    data: { object: { id: `cs_site_${Date.now()}`, metadata: { user_id: viewerSession.user.id, stream: paid } } },
  });
  const hook = await fetch(`${base}/api/payments/webhook`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'stripe-signature': signWebhook(event) },
    body: event,
  });
  result.webhook = hook.status;
  result.paid_play = await playing(buyer.page, 'the paid stream after the purchase', 60_000);
  result.paid_same_document = await buyer.page.evaluate(() => window.__sameDocument === true);
  result.paid_gate_hidden = await buyer.page.$eval('#gate', (g) => g.hidden);
  result.paid_chat = await until('the ticket holder chats under their name', () =>
    buyer.page.$eval('#chat-state', (e) => (/^Chatting as /.test(e.textContent) ? e.textContent : null)), 20_000);
  await shot(buyer.page, 'paid-playing-desktop');
  const phoneBuyer = await buyer.context.newPage();
  guard(phoneBuyer, 'paid watch (phone)');
  await phoneBuyer.setViewportSize(PHONE);
  await phoneBuyer.goto(`${base}/watch/${paid}`, { waitUntil: 'load' });
  result.paid_phone_play = await playing(phoneBuyer, 'the paid stream on a phone', 45_000);
  result.watch_phone_overflow = await phoneBuyer.evaluate(() => document.documentElement.scrollWidth - innerWidth);
  await shot(phoneBuyer, 'paid-playing-phone');
  await phoneBuyer.close();

  // 4. The open stream ends; its recording appears and plays.
  await pubs[open].evaluate(async () => {
    window.__pc?.close();
  });
  await pubs[open].evaluate((b) => fetch(new URL(window.__resource, b), { method: 'DELETE' }).then((r) => r.status), base);
  result.ended = await until('the watch page says the stream ended and lists its recording', async () => {
    const s = await home.page.evaluate(() => ({
      state: window.relaycastPlayer.state,
      page: window.relaycastPlayer.page?.state,
      recordings: document.querySelectorAll('#recordings a.recording').length,
    }));
    return s.state === 'offline' && s.recordings > 0 ? s : null;
  }, 90_000);
  await shot(home.page, 'ended-desktop');
  const later = await viewerPage(browser, 'home after the end', DESKTOP);
  await later.page.goto(`${base}/`, { waitUntil: 'load' });
  const recent = `#recent li[data-stream="${open}"] a.recording`;
  await until('the home page lists the recording', async () => {
    await later.page.reload({ waitUntil: 'load' });
    return later.page.$(recent);
  }, 30_000);
  await shot(later.page, 'home-recent-desktop');
  await later.page.click(recent);
  await later.page.waitForURL(/\?vod=/);
  result.recording_play = await playing(later.page, 'the recording', 60_000);
  await shot(later.page, 'recording-desktop');

  // 5. Account page; the 404 page.
  const account = await viewerPage(browser, 'account', PHONE, { signedIn: true });
  await account.page.goto(`${base}/account`, { waitUntil: 'load' });
  result.account = await until('the account lists the purchase', () =>
    account.page.evaluate((s) => {
      const rows = [...document.querySelectorAll('#entitlements tr')].map((r) => r.textContent);
      return rows.some((r) => r.includes(s)) ? rows : null;
    }, paid), 20_000);
  result.account_overflow = await account.page.evaluate(() => document.documentElement.scrollWidth - innerWidth);
  await shot(account.page, 'account-phone');
  const missing = await viewerPage(browser, '404', PHONE, { allow: (url, status) => status === 404 && url.endsWith('/no-such-page') });
  const r404 = await missing.page.goto(`${base}/no-such-page`, { waitUntil: 'load' });
  result.not_found = { status: r404?.status(), heading: await missing.page.$eval('h1', (h) => h.textContent) };
  await shot(missing.page, '404-phone');

  await pubs[paid].evaluate(() => window.__pc?.close());
}

let failed = false;
const browser = await launchBrowser();
const timer = setTimeout(() => {
  log('hard timeout');
  console.log(`RESULT ${JSON.stringify({ ...result, timeout: true })}`);
  process.exit(1);
}, HARD_TIMEOUT_MS);
try {
  await run(browser);
} catch (e) {
  log('error:', e?.stack ?? e);
  result.exception = String(e?.message ?? e);
  failed = true;
} finally {
  clearTimeout(timer);
  await closeBrowser(browser, log);
}

const ok =
  !failed &&
  problems.length === 0 &&
  result.home?.viewers >= 0 && result.home.thumb[0] > 0 &&
  result.home.paid_listed && result.home.paid_thumbnail === false &&
  result.open_play?.mode === 'webrtc' &&
  result.home_viewers >= 1 &&
  !!result.scheduled && JSON.stringify(result.upcoming) === JSON.stringify([['nextweek', "Next week's derby"]]) &&
  result.search?.[0] === paid &&
  result.home_phone_overflow <= 0 && result.watch_phone_overflow <= 0 && result.account_overflow <= 0 &&
  /needs a ticket/.test(result.gate?.title ?? '') && result.gate.state === 'error' && /not allowed/i.test(result.gate.error) &&
  result.checkout_url?.includes('kind=ppv') &&
  result.webhook === 200 &&
  result.paid_play && result.paid_same_document && result.paid_gate_hidden &&
  result.paid_chat === `Chatting as ${viewerSession.user.username}.` &&
  result.paid_phone_play &&
  result.ended && result.recording_play?.mode === 'hls' &&
  result.not_found?.status === 404;
console.log(`RESULT ${JSON.stringify(result)}`);
process.exit(ok ? 0 : 1);
