// The web player (/watch/{stream}) on a paywalled (entitled) stream, in
// headless Chromium:
//   1. with a play link (?token=): plays over WebRTC (WHEP);
//   2. with a play link, forced to LL-HLS (?hls=1): hls.js plays, and every
//      request after the multivariant playlist carries the media token
//      (hls_token) and never the play token;
//   3. without a ticket, forced to LL-HLS: refused, says so, never plays;
//   4. without a ticket over WebRTC: refused, says so.
//
// Usage: node entitled_watch.mjs BASE_URL STREAM PLAY_TOKEN
// Prints one line `RESULT {json}`; exit code 0 when all four hold.

import process from 'node:process';
import { closeBrowser, launchBrowser, parseBaseUrl } from './lib.mjs';

const log = (...a) => console.error('[entitled_watch]', ...a);
const base = parseBaseUrl(process.argv[2] ?? '');
const stream = process.argv[3];
const token = process.argv[4];
if (!base || !stream || !token) {
  console.error('usage: node entitled_watch.mjs BASE_URL STREAM PLAY_TOKEN');
  process.exit(2);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const watch = (query) => `${base}/watch/${encodeURIComponent(stream)}${query}`;

async function until(fn, ms) {
  const t0 = Date.now();
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() - t0 > ms) return null;
    await sleep(250);
  }
}

const look = (page) =>
  page.evaluate(() => {
    const v = document.getElementById('video');
    return {
      t: v.currentTime,
      w: v.videoWidth,
      mode: window.relaycastPlayer?.mode ?? null,
      state: window.relaycastPlayer?.state ?? null,
      error: document.getElementById('error')?.textContent ?? '',
    };
  });

// Playing: a picture, and media time that moves on by 1.5 s.
async function playing(page, ms) {
  let first = null;
  let last = null;
  const ok = await until(async () => {
    last = await look(page);
    if (!(last.w > 0 && last.t > 0)) return false;
    first ??= last;
    return last.t - first.t >= 1.5;
  }, ms);
  return { ok: !!ok, ...last };
}

const result = {};
const browser = await launchBrowser();
let failed = false;
try {
  const context = await browser.newContext();

  const webrtc = await context.newPage();
  await webrtc.goto(watch(`?token=${encodeURIComponent(token)}`), { waitUntil: 'load' });
  result.webrtc = await playing(webrtc, 45_000);
  await webrtc.close();

  const hlsPage = await context.newPage();
  const requests = [];
  hlsPage.on('request', (r) => {
    const u = new URL(r.url());
    if (u.pathname.startsWith('/hls/')) requests.push(u.pathname + u.search);
  });
  await hlsPage.goto(watch(`?hls=1&token=${encodeURIComponent(token)}`), { waitUntil: 'load' });
  result.hls = await playing(hlsPage, 60_000);
  const media = requests.filter((r) => !r.startsWith(`/hls/${stream}/index.m3u8`));
  result.hls.requests = requests.length;
  result.hls.unsigned = media.filter((r) => !r.includes('hls_token=')).slice(0, 5);
  result.hls.leaked = requests.filter((r) => r.includes(token)).filter((r) => !r.startsWith(`/hls/${stream}/index.m3u8`)).length;
  result.hls.media = media.length;
  await hlsPage.close();

  for (const [name, query] of [['anonymous_hls', '?hls=1'], ['anonymous_webrtc', '']]) {
    const page = await context.newPage();
    await page.goto(watch(query), { waitUntil: 'load' });
    const refused = await until(async () => {
      const s = await look(page);
      return s.state === 'error' && /not allowed/i.test(s.error) ? s : null;
    }, 30_000);
    // It must never play, not even later.
    await sleep(2_000);
    const after = await look(page);
    result[name] = { refused: !!refused, ...after };
    await page.close();
  }
} catch (e) {
  log('error:', e?.stack ?? e);
  result.exception = String(e?.message ?? e);
  failed = true;
} finally {
  await closeBrowser(browser, log);
}

const ok =
  !failed &&
  result.webrtc?.ok && result.webrtc.mode === 'webrtc' &&
  result.hls?.ok && result.hls.mode === 'hls' && result.hls.media > 0 &&
  result.hls.unsigned.length === 0 && result.hls.leaked === 0 &&
  result.anonymous_hls?.refused && !(result.anonymous_hls.t > 0) &&
  result.anonymous_webrtc?.refused && !(result.anonymous_webrtc.t > 0);
console.log(`RESULT ${JSON.stringify(result)}`);
process.exit(ok ? 0 : 1);
