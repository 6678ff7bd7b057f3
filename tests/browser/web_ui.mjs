#!/usr/bin/env node
// End-to-end test of the web front end in headless Debian Chromium.
//
//   node web_ui.mjs <base_url> <stream> <out_dir>
//
// 1. Studio (its own context, fake camera): registers a broadcaster account,
//    creates <stream>, goes live from the camera (WHIP, simulcast).
// 2. Player (second context): /watch/<stream> must play over WHEP: mode
//    webrtc, state live, decoded video advancing (>= 10 new frames in ~2 s).
// 3. Player forced to LL-HLS (third context): /watch/<stream>?hls=1 must
//    request /hls/<stream>/index.m3u8 through hls.js; whether it then played
//    is reported, not required (the server may not serve LL-HLS).
// 4. /embed/<stream> is served without X-Frame-Options.
// 5. Dashboard (signed in): the stream is listed live, its health panel
//    lists the layers measured through a monitoring viewer.
// 6. The studio ends the stream (DELETE of the WHIP session).
//
// Prints one JSON line on stdout, diagnostics on stderr, screenshots
// (studio.png, player.png, player-hls.png, dashboard.png) in <out_dir>. Exit 0 = pass,
// 1 = fail, 2 = usage / environment error.

import fs from 'node:fs';
import path from 'node:path';
import process from 'node:process';
import { chromium } from 'playwright-core';
import { CHROMIUM, CHROMIUM_ARGS, chromiumExists, closeBrowser, parseBaseUrl } from './lib.mjs';

const HARD_TIMEOUT_MS = 90_000;
const log = (...a) => console.error('[web_ui]', ...a);

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
fs.mkdirSync(outDir, { recursive: true });

let browser = null;
const pages = {};
const summary = { stream };

async function screenshots() {
  for (const [name, page] of Object.entries(pages)) {
    if (!page || page.isClosed()) continue;
    const file = path.join(outDir, `${name}.png`);
    try {
      await page.screenshot({ path: file, timeout: 5_000, fullPage: true });
      log(`screenshot: ${file}`);
    } catch (e) {
      log(`screenshot of ${name} failed:`, e?.message ?? e);
    }
  }
}

async function finish(code, msg) {
  if (msg) console.error(`web_ui: ${code === 0 ? 'PASS' : 'FAIL'}: ${msg}`);
  for (const [name, page] of Object.entries(pages)) {
    if (!page || page.isClosed()) continue;
    try {
      const text = await page.evaluate(() => ({
        status: document.getElementById('status')?.textContent ?? document.getElementById('live-status')?.textContent,
        error: document.getElementById('error')?.textContent ?? document.getElementById('message')?.textContent,
        player: window.relaycastPlayer ?? null,
      }));
      log(`${name} state: ${JSON.stringify(text)}`);
    } catch {}
  }
  await screenshots();
  console.log(JSON.stringify(summary));
  await closeBrowser(browser, log);
  process.exit(code);
}

setTimeout(() => finish(1, `hard timeout after ${HARD_TIMEOUT_MS / 1000} s`), HARD_TIMEOUT_MS).unref();

async function newPage(name, viewport = { width: 1100, height: 800 }) {
  const context = await browser.newContext({ viewport });
  await context.grantPermissions(['camera', 'microphone'], { origin: new URL(baseUrl).origin });
  const page = await context.newPage();
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') log(`${name} console.${m.type()}: ${m.text()}`);
  });
  page.on('pageerror', (e) => log(`${name} page error: ${e?.message ?? e}`));
  pages[name] = page;
  return page;
}

// Frames decoded by the page's <video> now and ~2 s later.
async function framesAdvance(page) {
  return page.evaluate(async () => {
    const v = document.getElementById('video');
    const q = () => v.getVideoPlaybackQuality?.().totalVideoFrames ?? 0;
    const a = q();
    const t0 = v.currentTime;
    await new Promise((r) => setTimeout(r, 2000));
    return { frames: q() - a, advanced_s: v.currentTime - t0, width: v.videoWidth, height: v.videoHeight };
  });
}

try {
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [...CHROMIUM_ARGS, '--autoplay-policy=no-user-gesture-required'],
    timeout: 20_000,
  });

  // 1. Studio.
  const studio = await newPage('studio');
  await studio.goto(`${baseUrl}/studio`, { waitUntil: 'load' });
  await studio.getByRole('tab', { name: 'Create a broadcaster account' }).click();
  await studio.getByLabel('Username').nth(1).fill(`caster-${Date.now()}`);
  await studio.getByLabel('Password').nth(1).fill('correct horse battery staple');
  await studio.getByRole('button', { name: 'Create account' }).click();
  await studio.locator('#streams:not([hidden])').waitFor({ timeout: 10_000 });
  await studio.getByLabel('Name (in URLs)').fill(stream);
  await studio.getByLabel('Title').fill('Web UI test');
  await studio.getByRole('button', { name: 'Create stream' }).click();
  await studio.locator('#stream:not([hidden])').waitFor({ timeout: 10_000 });
  summary.whip_url_shown = await studio.locator('#whip-url').inputValue();
  // Go live starts the camera itself when it is not running yet.
  await studio.getByRole('button', { name: 'Go live' }).click();
  await studio.locator('#live-status[data-kind="ok"], #live-status[data-kind="error"]').waitFor({ timeout: 20_000 });
  summary.studio_status = await studio.locator('#live-status').textContent();
  summary.stream_key_shown = (await studio.locator('#stream-key').inputValue()).length > 0;
  if ((await studio.locator('#live-status').getAttribute('data-kind')) !== 'ok') {
    await finish(1, `studio did not go live: ${summary.studio_status}`);
  }

  // 2. Player over WHEP.
  const player = await newPage('player', { width: 1100, height: 800 });
  const whepPosts = [];
  player.on('request', (r) => {
    if (r.method() === 'POST' && r.url().includes('/whep/')) whepPosts.push(r.url());
  });
  await player.goto(`${baseUrl}/watch/${encodeURIComponent(stream)}`, { waitUntil: 'load' });
  await player.waitForFunction(() => window.relaycastPlayer?.state === 'live' || window.relaycastPlayer?.state === 'error', null, { timeout: 20_000 });
  summary.player_mode = await player.evaluate(() => window.relaycastPlayer.mode);
  summary.whep_posts = whepPosts.length;
  await player.waitForFunction(() => document.getElementById('video').videoWidth > 0, null, { timeout: 15_000 });
  summary.player_frames = await framesAdvance(player);
  await player.getByRole('button', { name: 'Stats' }).click();
  await player.waitForTimeout(1500);
  summary.player_stats = await player.evaluate(() => ({
    bitrate: document.getElementById('st-bitrate').textContent,
    resolution: document.getElementById('st-resolution').textContent,
    latency: document.getElementById('st-latency').textContent,
  }));
  // Layer choice: the WHEP layer endpoint answers 204.
  const layerAnswer = player.waitForResponse((r) => r.url().endsWith('/layer') && r.request().method() === 'POST', { timeout: 5_000 });
  await player.getByLabel('Quality').selectOption('low');
  summary.layer_post_status = (await layerAnswer.catch(() => null))?.status() ?? null;
  await player.getByLabel('Quality').selectOption('auto');
  if (summary.player_mode !== 'webrtc') await finish(1, `player did not play over WHEP (mode ${summary.player_mode})`);
  if (summary.player_frames.frames < 10 || summary.player_frames.width <= 0) {
    await finish(1, `player video did not advance: ${JSON.stringify(summary.player_frames)}`);
  }

  // 3. Player forced to LL-HLS.
  const hlsPage = await newPage('player-hls', { width: 390, height: 844 });
  const playlistRequests = [];
  hlsPage.on('request', (r) => {
    if (r.url().includes(`/hls/${encodeURIComponent(stream)}/index.m3u8`)) playlistRequests.push(r.url());
  });
  let hlsJsLoaded = false;
  hlsPage.on('response', (r) => {
    if (r.url().endsWith('/web/vendor/hls.min.js') && r.ok()) hlsJsLoaded = true;
  });
  await hlsPage.goto(`${baseUrl}/watch/${encodeURIComponent(stream)}?hls=1`, { waitUntil: 'load' });
  const t0 = Date.now();
  while (playlistRequests.length === 0 && Date.now() - t0 < 10_000) await hlsPage.waitForTimeout(200);
  summary.hls = {
    hls_js_loaded: hlsJsLoaded,
    playlist_requested: playlistRequests.length > 0,
    mode: await hlsPage.evaluate(() => window.relaycastPlayer.mode),
  };
  try {
    await hlsPage.waitForFunction(() => document.getElementById('video').currentTime > 0.5, null, { timeout: 12_000 });
    summary.hls.played = true;
  } catch {
    summary.hls.played = false;
  }
  summary.hls.state = await hlsPage.evaluate(() => window.relaycastPlayer.state);
  if (!summary.hls.playlist_requested || summary.hls.mode !== 'hls') {
    await finish(1, `?hls=1 did not attempt LL-HLS: ${JSON.stringify(summary.hls)}`);
  }

  // 4. Embed page may be framed anywhere.
  const embed = await hlsPage.request.get(`${baseUrl}/embed/${encodeURIComponent(stream)}`);
  summary.embed = { status: embed.status(), x_frame_options: embed.headers()['x-frame-options'] ?? null };
  if (embed.status() !== 200 || summary.embed.x_frame_options) await finish(1, `embed page: ${JSON.stringify(summary.embed)}`);

  // 5. Dashboard (in the studio's context: signed in): the live stream is
  // listed with its viewers, and its health shows the simulcast layers.
  const dash = await studio.context().newPage();
  pages.dashboard = dash;
  dash.on('pageerror', (e) => log(`dashboard page error: ${e?.message ?? e}`));
  await dash.goto(`${baseUrl}/dashboard`, { waitUntil: 'load' });
  const row = dash.locator('#live-rows tr', { hasText: stream });
  await row.waitFor({ timeout: 10_000 });
  summary.dashboard_row = (await row.innerText()).replace(/\s+/g, ' ').trim();
  await row.getByRole('button', { name: 'Health' }).click();
  await dash.locator('#layer-rows tr').first().waitFor({ timeout: 10_000 });
  summary.dashboard_layers = await dash.locator('#layer-rows tr').count();

  // Screenshots while live.
  await screenshots();

  // 6. End the stream from the studio.
  const del = studio.waitForResponse((r) => r.request().method() === 'DELETE' && r.url().includes('/whip/'), { timeout: 5_000 });
  await studio.getByRole('button', { name: 'End stream' }).click();
  summary.end_stream_status = (await del.catch(() => null))?.status() ?? null;
  if (summary.end_stream_status === null || summary.end_stream_status >= 300) {
    await finish(1, `ending the stream: DELETE answered ${summary.end_stream_status}`);
  }
  delete pages.dashboard;
  delete pages['player-hls'];
  delete pages.player;
  delete pages.studio;
  await finish(0, 'studio went live, WHEP player played, ?hls=1 attempted LL-HLS');
} catch (e) {
  await finish(1, e?.stack ?? String(e));
}
