#!/usr/bin/env node
// End-to-end test of the web front end in headless Debian Chromium.
//
//   node web_ui.mjs <base_url> <stream> <out_dir>
//
// Environment (set by api/tests/web_front_end_in_chromium.rs):
//   WEBUI_INTEGRATOR_TOKEN  integrator token for <stream> (POST …/events)
//   WEBUI_CHAT_TOKEN        play token for <stream> whose subject chats
//   WEBUI_FULL_BASE, WEBUI_FULL_STREAM, WEBUI_FULL_KEY
//                           a second server started with --max-sessions 1,
//                           a stream on it and its stream key (optional:
//                           without them the capacity scenario is skipped)
//
// 1. Studio (own context, fake camera): registers a broadcaster, creates
//    <stream>, goes live from the camera (WHIP, H.264 simulcast).
// 2. Player A (anonymous): /watch/<stream> plays over WHEP (frames
//    advance), stats panel, layer choice (POST …/layer 204).
// 3. Player B (?token=<play token>, a chatter): WHEP as well; A's viewer
//    count, pushed over the WebSocket, reaches 2.
// 4. Player C (?hls=1, signed in as the stream's owner, i.e. moderator):
//    plays LL-HLS through hls.js (currentTime advances, videoWidth > 0).
// 5. Player D (phone viewport): the WHEP answer's candidates are rewritten
//    to an unreachable address in the page; after the ICE timeout it falls
//    back to LL-HLS and plays.
// 6. Chat: A (anonymous) may read only; C chats under the owner's
//    username, B under its token's subject. B's message appears on A and
//    C; C turns slow mode on; B's next message is refused and B shows the
//    slow-mode error.
// 7. Integrator event (REST, integrator token): shown once on A (WebRTC, on
//    arrival) and on C (LL-HLS) only once C's playback position (program
//    date time) reached the event's media stamp.
// 8. /embed/<stream> may be framed; dashboard lists the stream live with
//    its simulcast layers; A leaving sends a QoE beacon that the stream's
//    stats count; the studio ends the stream (DELETE of the WHIP session);
//    the recording it leaves plays in the player (?vod=RUN).
// 9. At capacity (second server): a publisher takes the only session; a
//    watcher's WHEP POST answers 503 and the player plays LL-HLS.
//
// Prints one JSON line on stdout, diagnostics on stderr, screenshots
// (studio, player, player-hls, player-phone, dashboard, player-capacity
// .png) in <out_dir>. Exit 0 = pass, 1 = fail, 2 = usage / environment
// error. Waits poll for conditions with generous limits (a loaded 2-core
// machine); nothing asserts on speed.

import fs from 'node:fs';
import path from 'node:path';
import process from 'node:process';
import { chromium } from 'playwright-core';
import { CHROMIUM, CHROMIUM_ARGS, chromiumExists, closeBrowser, parseBaseUrl, pageInit, publish, waitConnected } from './lib.mjs';

const HARD_TIMEOUT_MS = 280_000;
const log = (...a) => console.error('[web_ui]', ...a);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const [baseArg, stream, outDir] = process.argv.slice(2);
if (!baseArg || !stream || !outDir) {
  console.error('usage: node web_ui.mjs <base_url> <stream> <out_dir>');
  process.exit(2);
}
const baseUrl = parseBaseUrl(baseArg);
if (baseUrl === null || !chromiumExists()) {
  console.error(`web_ui: bad base_url (${baseArg}) or no ${CHROMIUM}`);
  process.exit(2);
}
const env = process.env;
const integratorToken = env.WEBUI_INTEGRATOR_TOKEN;
const chatToken = env.WEBUI_CHAT_TOKEN;
if (!integratorToken || !chatToken) {
  console.error('web_ui: WEBUI_INTEGRATOR_TOKEN and WEBUI_CHAT_TOKEN must be set');
  process.exit(2);
}
const full = env.WEBUI_FULL_BASE
  ? { base: parseBaseUrl(env.WEBUI_FULL_BASE), stream: env.WEBUI_FULL_STREAM, key: env.WEBUI_FULL_KEY }
  : null;
if (full && (!full.base || !full.stream || !full.key)) {
  console.error('web_ui: WEBUI_FULL_BASE needs WEBUI_FULL_STREAM and WEBUI_FULL_KEY');
  process.exit(2);
}
fs.mkdirSync(outDir, { recursive: true });

let browser = null;
const pages = {};
const summary = { stream };
const watchUrl = (query = '') => `${baseUrl}/watch/${encodeURIComponent(stream)}${query}`;

async function screenshot(name) {
  const page = pages[name];
  if (!page || page.isClosed()) return;
  const file = path.join(outDir, `${name}.png`);
  try {
    await page.screenshot({ path: file, timeout: 10_000, fullPage: true });
    log(`screenshot: ${file}`);
  } catch (e) {
    log(`screenshot of ${name} failed:`, e?.message ?? e);
  }
}

let finishing = false;
async function finish(code, msg) {
  if (finishing) return;
  finishing = true;
  if (msg) console.error(`web_ui: ${code === 0 ? 'PASS' : 'FAIL'}: ${msg}`);
  for (const [name, page] of Object.entries(pages)) {
    if (!page || page.isClosed()) continue;
    try {
      const text = await page.evaluate(() => ({
        status: document.getElementById('status')?.textContent ?? document.getElementById('live-status')?.textContent,
        error: document.getElementById('error')?.textContent ?? document.getElementById('message')?.textContent,
        chat_error: document.getElementById('chat-error')?.textContent,
        player: window.relaycastPlayer ?? null,
      }));
      log(`${name} state: ${JSON.stringify(text)}`);
    } catch {}
    if (code !== 0) await screenshot(name);
  }
  console.log(JSON.stringify(summary));
  await closeBrowser(browser, log);
  process.exit(code);
}

setTimeout(() => finish(1, `hard timeout after ${HARD_TIMEOUT_MS / 1000} s`), HARD_TIMEOUT_MS).unref();

async function check(cond, msg) {
  if (!cond) await finish(1, typeof msg === 'function' ? msg() : msg);
}

async function newPage(name, { viewport = { width: 1100, height: 800 }, storageState, initScript } = {}) {
  const context = await browser.newContext({ viewport, storageState });
  await context.grantPermissions(['camera', 'microphone'], { origin: new URL(baseUrl).origin });
  const page = await context.newPage();
  if (initScript) await page.addInitScript(initScript);
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') log(`${name} console.${m.type()}: ${m.text()}`);
  });
  page.on('pageerror', (e) => log(`${name} page error: ${e?.message ?? e}`));
  pages[name] = page;
  return page;
}

// Polls `fn` (in node) until it returns a truthy value; the value, or null
// after `timeoutMs`.
async function until(fn, timeoutMs, everyMs = 250) {
  const t0 = Date.now();
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() - t0 > timeoutMs) return null;
    await sleep(everyMs);
  }
}

// The page's <video> as seen now.
const videoNow = (page) =>
  page.evaluate(() => {
    const v = document.getElementById('video');
    return {
      t: v.currentTime,
      w: v.videoWidth,
      h: v.videoHeight,
      frames: v.getVideoPlaybackQuality?.().totalVideoFrames ?? 0,
      mode: window.relaycastPlayer?.mode ?? null,
      state: window.relaycastPlayer?.state ?? null,
    };
  });

// Waits until the page's video has a size and its currentTime advanced by
// at least `seconds` since it was first seen moving. Returns what was seen,
// or null after timeoutMs.
async function waitPlaying(page, timeoutMs, seconds = 1.5) {
  let first = null;
  let last = null;
  const ok = await until(async () => {
    last = await videoNow(page);
    if (!(last.w > 0 && last.t > 0)) return false;
    if (!first) first = last;
    return last.t - first.t >= seconds && last.frames > first.frames;
  }, timeoutMs);
  return ok ? { width: last.w, height: last.h, advanced_s: +(last.t - first.t).toFixed(2), frames: last.frames - first.frames, mode: last.mode } : { played: false, last };
}

const player = (page) => page.evaluate(() => window.relaycastPlayer);

try {
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [...CHROMIUM_ARGS, '--autoplay-policy=no-user-gesture-required'],
    timeout: 30_000,
  });

  // 1. Studio.
  const studio = await newPage('studio');
  await studio.goto(`${baseUrl}/studio`, { waitUntil: 'load' });
  await studio.getByRole('tab', { name: 'Create a broadcaster account' }).click();
  const caster = `caster-${Date.now()}`;
  await studio.getByLabel('Username').nth(1).fill(caster);
  await studio.getByLabel('Password').nth(1).fill('correct horse battery staple');
  await studio.getByRole('button', { name: 'Create account' }).click();
  await studio.locator('#streams:not([hidden])').waitFor({ timeout: 15_000 });
  await studio.getByLabel('Name (in URLs)').fill(stream);
  await studio.getByLabel('Title', { exact: true }).fill('Web UI test');
  await studio.getByRole('button', { name: 'Create stream' }).click();
  await studio.locator('#stream:not([hidden])').waitFor({ timeout: 15_000 });
  summary.whip_url_shown = await studio.locator('#whip-url').inputValue();
  summary.studio_codec = await studio.getByLabel('Video codec').inputValue();
  // Go live starts the camera itself when it is not running yet.
  await studio.getByRole('button', { name: 'Go live' }).click();
  await studio.locator('#live-status[data-kind="ok"], #live-status[data-kind="error"]').waitFor({ timeout: 30_000 });
  summary.studio_status = await studio.locator('#live-status').textContent();
  summary.stream_key_shown = (await studio.locator('#stream-key').inputValue()).length > 0;
  await check((await studio.locator('#live-status').getAttribute('data-kind')) === 'ok', () => `studio did not go live: ${summary.studio_status}`);
  const ownerToken = await studio.evaluate(() => JSON.parse(localStorage.getItem('relaycast.session')).token);

  // 2. Player A over WHEP (anonymous).
  const a = await newPage('player');
  const whepPosts = [];
  a.on('response', (r) => {
    if (r.request().method() === 'POST' && new URL(r.url()).pathname.startsWith('/whep/')) whepPosts.push(r.status());
  });
  await a.goto(watchUrl(), { waitUntil: 'load' });
  await a.waitForFunction(() => ['live', 'error'].includes(window.relaycastPlayer?.state), null, { timeout: 30_000 });
  summary.player_mode = (await player(a)).mode;
  summary.whep_posts = whepPosts;
  await check(summary.player_mode === 'webrtc', () => `player did not play over WHEP (mode ${summary.player_mode})`);
  summary.player_play = await waitPlaying(a, 30_000);
  await check(summary.player_play.width > 0, () => `player video did not advance: ${JSON.stringify(summary.player_play)}`);
  await a.getByRole('button', { name: 'Stats' }).click();
  await until(async () => (await a.locator('#st-bitrate').textContent()) !== '—', 10_000);
  summary.player_stats = await a.evaluate(() => ({
    transport: document.getElementById('st-mode').textContent,
    bitrate: document.getElementById('st-bitrate').textContent,
    resolution: document.getElementById('st-resolution').textContent,
    codec: document.getElementById('st-codec').textContent,
    latency: document.getElementById('st-latency').textContent,
  }));
  // Layer choice: the WHEP layer endpoint answers 204.
  const layerAnswer = a.waitForResponse((r) => r.url().endsWith('/layer') && r.request().method() === 'POST', { timeout: 10_000 });
  await a.getByLabel('Quality').selectOption('low');
  summary.layer_post_status = (await layerAnswer.catch(() => null))?.status() ?? null;
  await a.getByLabel('Quality').selectOption('auto');
  await check(summary.layer_post_status === 204, () => `layer choice answered ${summary.layer_post_status}`);

  // 3. Player B over WHEP with a play token (it may chat); A counts 2.
  const b = await newPage('player-chatter', { viewport: { width: 800, height: 700 } });
  await b.goto(watchUrl(`?token=${encodeURIComponent(chatToken)}`), { waitUntil: 'load' });
  await b.waitForFunction(() => window.relaycastPlayer?.state === 'live', null, { timeout: 30_000 });
  summary.chatter_mode = (await player(b)).mode;
  const counted = await until(async () => {
    const p = await player(a);
    return p.viewers >= 2 && (await a.locator('#viewer-count').textContent()) === String(p.viewers) ? p.viewers : null;
  }, 20_000);
  summary.viewer_count_on_a = counted ?? (await player(a)).viewers;
  await check(counted >= 2, () => `viewer count on the anonymous player stayed ${summary.viewer_count_on_a} with two WHEP viewers`);

  // 4. Player C forced to LL-HLS, signed in as the owner (moderator).
  const c = await newPage('player-hls', { storageState: await studio.context().storageState() });
  const playlistRequests = [];
  c.on('request', (r) => {
    if (r.url().includes(`/hls/${encodeURIComponent(stream)}/`)) playlistRequests.push(r.url());
  });
  await c.goto(watchUrl('?hls=1'), { waitUntil: 'load' });
  summary.hls = { play: await waitPlaying(c, 60_000) };
  summary.hls.mode = (await player(c)).mode;
  summary.hls.requests = playlistRequests.length;
  if (!(summary.hls.play.width > 0)) {
    const res = await fetch(`${baseUrl}/hls/${encodeURIComponent(stream)}/index.m3u8`);
    summary.hls.multivariant = `${res.status} ${(await res.text()).slice(0, 300)}`;
  }
  await check(summary.hls.mode === 'hls' && summary.hls.play.width > 0, () => `?hls=1 did not play LL-HLS: ${JSON.stringify(summary.hls)}`);

  // 5. Player D (phone): the WHEP answer's candidates cannot be reached.
  const d = await newPage('player-phone', {
    viewport: { width: 390, height: 844 },
    initScript: () => {
      window.__rewrittenCandidates = 0;
      const set = RTCPeerConnection.prototype.setRemoteDescription;
      RTCPeerConnection.prototype.setRemoteDescription = function (desc, ...rest) {
        if (desc && desc.type === 'answer' && typeof desc.sdp === 'string') {
          // TEST-NET-1 (RFC 5737): routed nowhere.
          const sdp = desc.sdp.replace(/^(a=candidate:\S+ \d+ \S+ \d+ )(\S+)( \d+ typ )/gm, (_m, pre, _addr, post) => {
            window.__rewrittenCandidates += 1;
            return `${pre}192.0.2.1${post}`;
          });
          desc = { type: 'answer', sdp };
        }
        return set.call(this, desc, ...rest);
      };
    },
  });
  const dWhep = [];
  d.on('response', (r) => {
    const p = new URL(r.url()).pathname;
    if (p.startsWith('/whep/')) dWhep.push(`${r.request().method()} ${r.status()}`);
  });
  const dStart = Date.now();
  await d.goto(watchUrl(), { waitUntil: 'load' });
  await d.waitForFunction(() => window.relaycastPlayer?.mode === 'hls', null, { timeout: 40_000 });
  summary.ice_fallback = {
    after_ms: Date.now() - dStart,
    reason: (await player(d)).fallbackReason,
    rewritten_candidates: await d.evaluate(() => window.__rewrittenCandidates),
    whep: dWhep,
  };
  summary.ice_fallback.play = await waitPlaying(d, 60_000);
  await check(
    summary.ice_fallback.rewritten_candidates > 0 && summary.ice_fallback.play.width > 0 && dWhep.includes('POST 201') && dWhep.some((x) => x.startsWith('DELETE 2')),
    () => `ICE failure did not fall back to a playing LL-HLS (after a WHEP session it deleted): ${JSON.stringify(summary.ice_fallback)}`,
  );

  // 6. Chat: B writes, A and C read; C (moderator) sets slow mode; B is refused.
  await b.waitForFunction(() => window.relaycastPlayer.chat.can_chat, null, { timeout: 15_000 });
  await c.waitForFunction(() => window.relaycastPlayer.chat.moderator, null, { timeout: 15_000 });
  summary.chat = { b: (await player(b)).chat, c: (await player(c)).chat, a_can_chat: (await player(a)).chat.can_chat };
  await check(summary.chat.c.user === caster && summary.chat.b.user === 'chatter' && !summary.chat.a_can_chat, () => `chat identities: ${JSON.stringify(summary.chat)}`);
  await b.getByLabel('Message').fill('hello from the chatter');
  await b.getByRole('button', { name: 'Send' }).click();
  for (const [name, page] of [['player', a], ['player-hls', c]]) {
    const seen = await page
      .locator('#chat-log li', { hasText: 'hello from the chatter' })
      .waitFor({ timeout: 15_000 })
      .then(() => true, () => false);
    await check(seen, `the chat message did not appear on ${name}`);
  }
  await c.getByLabel('Slow mode').selectOption('30');
  await b.locator('#slow-mode:not([hidden])').waitFor({ timeout: 15_000 });
  summary.chat.slow_mode_hint = await b.locator('#slow-mode').textContent();
  await b.getByLabel('Message').fill('second message');
  await b.getByRole('button', { name: 'Send' }).click();
  await until(async () => (await b.locator('#chat-error').textContent()).length > 0, 15_000);
  summary.chat.refusal = await b.locator('#chat-error').textContent();
  summary.chat.restored_input = await b.getByLabel('Message').inputValue();
  await check(/slow mode/i.test(summary.chat.refusal), () => `the slow-mode refusal was not shown: ${JSON.stringify(summary.chat)}`);
  await c.getByLabel('Slow mode').selectOption('0');

  // 7. An integrator event.
  const posted = await fetch(`${baseUrl}/api/streams/${encodeURIComponent(stream)}/events`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${integratorToken}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ text: 'Goal! 1-0', kind: 'score' }),
  });
  const event = await posted.json();
  summary.event = { status: posted.status, seq: event.seq, media: event.media, at_ms: event.at_ms };
  await check(posted.status === 201 && Number.isFinite(event.seq), () => `posting the event: ${JSON.stringify(event)}`);
  const shownOn = async (page) =>
    until(async () => {
      const rec = (await player(page)).events.find((e) => e.seq === event.seq);
      return rec?.shown_ms ? rec : null;
    }, 45_000);
  summary.event.on_webrtc = await shownOn(a);
  summary.event.on_hls = await shownOn(c);
  const overlayCount = await a.locator(`#overlay .event[data-seq="${event.seq}"]`).count();
  summary.event.overlays_on_webrtc = overlayCount;
  summary.event.data_channel_on_webrtc = (await player(a)).dataChannel;
  await check(summary.event.on_webrtc && overlayCount <= 1, () => `the event was not shown (once) on the WebRTC player: ${JSON.stringify(summary.event)}`);
  const h = summary.event.on_hls;
  await check(
    h && h.playing_ms !== null && h.stamp_ms !== null && h.playing_ms >= h.stamp_ms,
    () => `the LL-HLS player did not hold the event until its media time: ${JSON.stringify(summary.event)}`,
  );
  summary.event.hls_held_ms = h.shown_ms - h.received_ms;

  // 8. Embed, screenshots, dashboard, QoE, end.
  const embed = await a.request.get(`${baseUrl}/embed/${encodeURIComponent(stream)}`);
  summary.embed = { status: embed.status(), x_frame_options: embed.headers()['x-frame-options'] ?? null };
  await check(embed.status() === 200 && !summary.embed.x_frame_options, () => `embed page: ${JSON.stringify(summary.embed)}`);

  for (const name of ['studio', 'player', 'player-hls', 'player-phone']) await screenshot(name);

  const dash = await studio.context().newPage();
  pages.dashboard = dash;
  dash.on('pageerror', (e) => log(`dashboard page error: ${e?.message ?? e}`));
  await dash.goto(`${baseUrl}/dashboard`, { waitUntil: 'load' });
  const row = dash.locator('#live-rows tr', { hasText: stream });
  await row.waitFor({ timeout: 15_000 });
  summary.dashboard_row = (await row.innerText()).replace(/\s+/g, ' ').trim();
  await row.getByRole('button', { name: 'Health' }).click();
  await dash.locator('#layer-rows tr').first().waitFor({ timeout: 15_000 });
  summary.dashboard_layers = await dash.locator('#layer-rows tr').count();
  // For the screenshot: wait (without asserting) for the throughput chart's
  // first rates and the viewer statistics.
  await until(async () => /in \d/.test(await dash.locator('#server-summary').textContent()) && (await dash.locator('#qoe').textContent()).length > 0, 15_000);
  await screenshot('dashboard');

  // A leaves: its pagehide beacon reaches /api/qoe and the stats count it.
  await a.goto('about:blank');
  const stats = await until(async () => {
    const res = await fetch(`${baseUrl}/api/streams/${encodeURIComponent(stream)}/stats`, { headers: { Authorization: `Bearer ${ownerToken}` } });
    const { stats: s } = await res.json();
    return s?.qoe_beacons >= 1 ? s : null;
  }, 20_000, 500);
  summary.qoe = stats && { beacons: stats.qoe_beacons, startup_ms_avg: stats.startup_ms_avg };
  await check(stats, 'no QoE beacon was counted after a viewer left');

  const del = studio.waitForResponse((r) => r.request().method() === 'DELETE' && r.url().includes('/whip/'), { timeout: 10_000 });
  await studio.getByRole('button', { name: 'End stream' }).click();
  summary.end_stream_status = (await del.catch(() => null))?.status() ?? null;
  await check(summary.end_stream_status !== null && summary.end_stream_status < 300, () => `ending the stream: DELETE answered ${summary.end_stream_status}`);
  for (const name of ['dashboard', 'player', 'player-chatter', 'player-hls', 'player-phone']) {
    const page = pages[name];
    delete pages[name];
    await page?.context().close().catch(() => {});
  }

  // The recording of the run just ended plays in the player (?vod=RUN, as
  // the dashboard links it).
  const recordings = await until(async () => {
    const res = await fetch(`${baseUrl}/vod/${encodeURIComponent(stream)}`);
    const list = res.ok ? (await res.json()).recordings : [];
    return list?.length ? list : null;
  }, 30_000, 500);
  await check(recordings, 'no recording was listed after the stream ended');
  const vod = await newPage('player-vod');
  await vod.goto(watchUrl(`?vod=${encodeURIComponent(recordings[0].run)}`), { waitUntil: 'load' });
  summary.vod = { run: recordings[0].run, play: await waitPlaying(vod, 30_000, 1.0) };
  await check(summary.vod.play.width > 0, () => `the recording did not play: ${JSON.stringify(summary.vod)}`);
  for (const name of ['player-vod', 'studio']) {
    const page = pages[name];
    delete pages[name];
    await page?.context().close().catch(() => {});
  }

  // 9. At capacity: a publisher takes the second server's only session.
  if (full) {
    const pubCtx = await browser.newContext({ viewport: { width: 680, height: 540 } });
    await pubCtx.grantPermissions(['camera', 'microphone'], { origin: new URL(full.base).origin });
    const pub = await pubCtx.newPage();
    await pub.goto(`${full.base}/healthz`);
    await pub.evaluate(pageInit);
    const published = await pub.evaluate(publish, { whipUrl: `${full.base}/whip/${encodeURIComponent(full.stream)}`, streamKey: full.key, gatherMs: 1000, codec: 'H264', codecOnly: true });
    const connected = await pub.evaluate(waitConnected, 20_000);
    summary.capacity = { publish: published.status, connected: connected.state };
    await check(published.ok && connected.state === 'connected', () => `publishing to the full server: ${JSON.stringify(summary.capacity)}`);
    const w = await newPage('player-capacity');
    const posts = [];
    w.on('response', (r) => {
      if (r.request().method() === 'POST' && new URL(r.url()).pathname.startsWith('/whep/')) posts.push(r.status());
    });
    await w.goto(`${full.base}/watch/${encodeURIComponent(full.stream)}`, { waitUntil: 'load' });
    await w.waitForFunction(() => window.relaycastPlayer?.mode === 'hls', null, { timeout: 30_000 });
    summary.capacity.whep_posts = posts;
    summary.capacity.reason = (await player(w)).fallbackReason;
    summary.capacity.play = await waitPlaying(w, 60_000);
    await check(
      posts.includes(503) && summary.capacity.play.width > 0,
      () => `the player at capacity did not fall back to a playing LL-HLS: ${JSON.stringify(summary.capacity)}`,
    );
    await screenshot('player-capacity');
    await pubCtx.close().catch(() => {});
  } else {
    summary.capacity = 'skipped: no WEBUI_FULL_BASE';
  }

  delete pages['player-capacity'];
  await finish(0, 'studio went live; WHEP, forced LL-HLS, ICE-failure and capacity fallbacks played; chat, viewers, events and QoE reached the pages');
} catch (e) {
  await finish(1, e?.stack ?? String(e));
}
