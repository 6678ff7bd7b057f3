// Plays a relaycast stream's LL-HLS in headless Chromium with hls.js
// (lowLatencyMode) and reports what the player saw: whether video time
// advanced, whether an audio track and audio buffer exist, and the latency
// hls.js computes (hls.latency: seconds behind the live edge, from
// EXT-X-PROGRAM-DATE-TIME).
//
// Usage: node hls_play.mjs BASE_URL STREAM [SECONDS]
// Prints one line `RESULT {json}`; exit code 0 when playback advanced with
// an audio track, 1 otherwise, 2 on usage errors.

import path from 'node:path';
import process from 'node:process';
import { fileURLToPath } from 'node:url';
import { closeBrowser, launchBrowser, openPage, parseBaseUrl } from './lib.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const log = (...a) => console.error('[hls_play]', ...a);

const base = parseBaseUrl(process.argv[2] ?? '');
const stream = process.argv[3];
const seconds = Number(process.argv[4] ?? 8);
if (!base || !stream || !(seconds > 0)) {
  console.error('usage: node hls_play.mjs BASE_URL STREAM [SECONDS]');
  process.exit(2);
}

// In the page: start hls.js on the stream and watch it for `seconds`.
async function play({ src, seconds }) {
  const video = document.createElement('video');
  video.muted = true;
  video.autoplay = true;
  video.playsInline = true;
  video.width = 320;
  document.body.append(video);
  const out = { errors: [], buffers: [], latency: [], levels: null, audioTracks: 0 };
  // eslint-disable-next-line no-undef
  if (!Hls.isSupported()) return { ...out, unsupported: true };
  // eslint-disable-next-line no-undef
  const hls = new Hls({ lowLatencyMode: true, debug: false });
  // eslint-disable-next-line no-undef
  const E = Hls.Events;
  hls.on(E.ERROR, (_, d) => out.errors.push(`${d.type}/${d.details}${d.fatal ? ' (fatal)' : ''}`));
  hls.on(E.BUFFER_CREATED, (_, d) => {
    out.buffers = Object.entries(d.tracks).map(([k, t]) => `${k}:${t.codec ?? ''}`);
  });
  hls.on(E.MANIFEST_PARSED, (_, d) => {
    out.levels = d.levels.map((l) => `${l.width}x${l.height} ${l.videoCodec ?? ''} ${l.audioCodec ?? ''}`);
  });
  hls.loadSource(src);
  hls.attachMedia(video);
  video.play().catch(() => {});
  const t0 = performance.now();
  let firstTime = null;
  while (performance.now() - t0 < (seconds + 20) * 1000) {
    await new Promise((r) => setTimeout(r, 500));
    if (video.currentTime > 0 && firstTime === null) {
      firstTime = { wall: performance.now(), media: video.currentTime };
    }
    if (Number.isFinite(hls.latency) && hls.latency > 0) out.latency.push(hls.latency);
    if (firstTime && performance.now() - firstTime.wall > seconds * 1000) break;
  }
  out.audioTracks = hls.audioTracks.length;
  out.currentTime = video.currentTime;
  out.advanced = firstTime ? video.currentTime - firstTime.media : 0;
  out.startupMs = firstTime ? Math.round(firstTime.wall - t0) : null;
  out.targetLatency = hls.targetLatency;
  out.finalLatency = hls.latency;
  out.readyState = video.readyState;
  hls.destroy();
  return out;
}

let browser;
let code = 1;
try {
  browser = await launchBrowser();
  const page = await openPage(browser, base, 'hls', log);
  await page.addScriptTag({ path: path.join(here, 'node_modules', 'hls.js', 'dist', 'hls.min.js') });
  const result = await page.evaluate(play, { src: `${base}/hls/${stream}/index.m3u8`, seconds });
  const lat = result.latency;
  result.latencyMedian = lat.length ? [...lat].sort((a, b) => a - b)[Math.floor(lat.length / 2)] : null;
  delete result.latency;
  console.log(`RESULT ${JSON.stringify(result)}`);
  const hasAudio = result.audioTracks > 0 && result.buffers.some((b) => b.startsWith('audio'));
  code = result.advanced > seconds * 0.5 && hasAudio ? 0 : 1;
} catch (e) {
  log('failed:', e?.stack ?? e);
  code = 1;
} finally {
  await closeBrowser(browser, log);
}
process.exit(code);
