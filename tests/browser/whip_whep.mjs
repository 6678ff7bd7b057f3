#!/usr/bin/env node
// End-to-end WHIP/WHEP test in headless Debian Chromium.
//
//   node whip_whep.mjs <base_url> <stream> <stream_key> <out_dir>
//
// Page 1 (publisher) sends Chromium's fake camera + microphone to
// <base_url>/whip/<stream>; page 2 (viewer, its own browser context) plays
// <base_url>/whep/<stream> in a muted <video>. Passes when, within 20 s of the
// viewer's POST, the viewer shows decoded video (size > 0, >= 15 new frames in
// ~2 s) and has received audio RTP. Prints a one-line JSON summary on stdout,
// diagnostics on stderr, screenshots in <out_dir>. Exit 0 = pass, 1 = fail,
// 2 = usage / environment error, 3 = hard timeout (45 s).
//
// Optional env: WHEP_ICE_SERVERS (JSON RTCIceServer[] for the viewer) and
// WHEP_ICE_TRANSPORT_POLICY (`relay` forces the viewer through TURN); the
// summary reports the viewer's selected local candidate type.

import fs from 'node:fs';
import path from 'node:path';
import process from 'node:process';
import {
  CHROMIUM,
  chromiumExists,
  closeBrowser as closeBrowserSafely,
  deleteResource,
  launchBrowser,
  openPage as openPageOn,
  parseBaseUrl,
  pcDiagnostics,
  publish,
  waitConnected,
} from './lib.mjs';

const HARD_TIMEOUT_MS = 45_000;
const PLAY_DEADLINE_MS = 20_000; // from viewer POST to "video + audio flowing"
const FRAME_WINDOW_MS = 2_000;
const MIN_NEW_FRAMES = 15;
const ICE_GATHER_MAX_MS = 2_000;
const PUBLISHER_CONNECT_MS = 10_000;
const WHEP_RETRY_MS = 5_000;

const log = (...a) => console.error('[whip_whep]', ...a);

function usage(msg) {
  if (msg) console.error(`whip_whep: ${msg}`);
  console.error('usage: node whip_whep.mjs <base_url> <stream> <stream_key> <out_dir>');
  process.exit(2);
}

const [baseArg, stream, streamKey, outDir] = process.argv.slice(2);
if (!baseArg || !stream || streamKey === undefined || !outDir) usage('missing arguments');
const baseUrl = parseBaseUrl(baseArg);
if (baseUrl === null) usage(`bad base_url: ${baseArg}`);
if (!chromiumExists()) {
  console.error(`whip_whep: FAIL: ${CHROMIUM} not found (apt-get install chromium)`);
  process.exit(2);
}
fs.mkdirSync(outDir, { recursive: true });

const viewerIceServers = process.env.WHEP_ICE_SERVERS ? JSON.parse(process.env.WHEP_ICE_SERVERS) : [];
const viewerIcePolicy = process.env.WHEP_ICE_TRANSPORT_POLICY || 'all';

const whipUrl = `${baseUrl}/whip/${encodeURIComponent(stream)}`;
const whepUrl = `${baseUrl}/whep/${encodeURIComponent(stream)}`;

let browser = null;
let publisher = null;
let viewer = null;
let finished = false;

async function closeBrowser() {
  const b = browser;
  browser = null;
  await closeBrowserSafely(b, log);
}

async function screenshots() {
  for (const [name, page] of [
    ['publisher', publisher],
    ['viewer', viewer],
  ]) {
    if (!page || page.isClosed()) continue;
    const file = path.join(outDir, `${name}.png`);
    try {
      await page.screenshot({ path: file, timeout: 5_000 });
      log(`screenshot: ${file}`);
    } catch (e) {
      log(`screenshot of ${name} failed:`, e?.message ?? e);
    }
  }
}

// Collects what each page knows about its peer connection, for failure reports.
async function diagnostics() {
  const out = {};
  for (const [name, page] of [
    ['publisher', publisher],
    ['viewer', viewer],
  ]) {
    if (!page || page.isClosed()) continue;
    try {
      out[name] = await page.evaluate(pcDiagnostics);
    } catch (e) {
      out[name] = { error: e?.message ?? String(e) };
    }
  }
  return out;
}

async function fail(msg, extra) {
  if (finished) return;
  finished = true;
  console.error(`whip_whep: FAIL: ${msg}`);
  if (extra !== undefined) console.error(`whip_whep: details: ${JSON.stringify(extra)}`);
  try {
    console.error(`whip_whep: state: ${JSON.stringify(await diagnostics())}`);
  } catch {}
  await screenshots();
  await closeBrowser();
  process.exit(1);
}

const hardTimer = setTimeout(async () => {
  if (finished) return;
  finished = true;
  console.error(`whip_whep: FAIL: hard timeout after ${HARD_TIMEOUT_MS / 1000} s`);
  // Leave the hard deadline even if diagnostics hang.
  setTimeout(() => process.exit(3), 8_000).unref();
  try {
    console.error(`whip_whep: state: ${JSON.stringify(await Promise.race([
      diagnostics(),
      new Promise((r) => setTimeout(() => r('diagnostics timed out'), 3_000)),
    ]))}`);
  } catch {}
  await closeBrowser();
  process.exit(3);
}, HARD_TIMEOUT_MS);

for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, async () => {
    console.error(`whip_whep: FAIL: got ${sig}`);
    finished = true;
    await closeBrowser();
    process.exit(1);
  });
}

// ---------------------------------------------------------------------------
// In-page helpers (serialized into the pages by page.evaluate); pageInit,
// publish, waitConnected and deleteResource live in lib.mjs.

async function view({ whepUrl, gatherMs, iceServers, iceTransportPolicy }) {
  const note = window.__note;
  // Called again on a retry: start from a clean page.
  if (window.__pc) window.__pc.close();
  document.body.innerHTML = '';
  const label = document.createElement('div');
  label.textContent = `viewer <- ${whepUrl}`;
  const video = document.createElement('video');
  video.muted = true;
  video.autoplay = true;
  video.playsInline = true;
  video.setAttribute('muted', '');
  video.setAttribute('autoplay', '');
  video.setAttribute('playsinline', '');
  video.width = 640;
  video.height = 480;
  document.body.append(label, video);

  const pc = new RTCPeerConnection({ iceServers, iceTransportPolicy });
  window.__pc = pc;
  window.__watch(pc);
  pc.addTransceiver('video', { direction: 'recvonly' });
  pc.addTransceiver('audio', { direction: 'recvonly' });
  // The answer may carry no a=msid, so build the stream from the receivers
  // rather than relying on ontrack's event.streams.
  const remote = new MediaStream(pc.getReceivers().map((r) => r.track));
  video.srcObject = remote;

  window.__rvfcFrames = 0;
  window.__firstFrameAt = null;
  if ('requestVideoFrameCallback' in HTMLVideoElement.prototype) {
    const onFrame = (now) => {
      window.__rvfcFrames += 1;
      if (window.__firstFrameAt === null) window.__firstFrameAt = now;
      video.requestVideoFrameCallback(onFrame);
    };
    video.requestVideoFrameCallback(onFrame);
  }

  await pc.setLocalDescription(await pc.createOffer());
  const gathered = await window.__waitGathering(pc, gatherMs);
  note(`ICE gathering ${gathered ? 'complete' : 'timed out'}`);

  window.__postAt = performance.now();
  const res = await fetch(whepUrl, {
    method: 'POST',
    headers: { 'Content-Type': 'application/sdp' },
    body: pc.localDescription.sdp,
  });
  const body = await res.text();
  if (res.status !== 201) {
    return { ok: false, status: res.status, body: body.slice(0, 500) };
  }
  window.__resource = res.headers.get('Location');
  await pc.setRemoteDescription({ type: 'answer', sdp: body });
  video.play().catch((e) => note(`video.play(): ${e}`));
  return { ok: true, status: res.status, location: window.__resource, gathered };
}

// One sample of the viewer's playback state.
async function sample() {
  const video = document.querySelector('video');
  let audioPackets = 0;
  let videoPackets = 0;
  let framesDecoded = 0;
  let rtpBytes = 0;
  (await window.__pc.getStats()).forEach((s) => {
    if (s.type !== 'inbound-rtp') return;
    rtpBytes += s.bytesReceived ?? 0;
    if (s.kind === 'audio') audioPackets += s.packetsReceived ?? 0;
    if (s.kind === 'video') {
      videoPackets += s.packetsReceived ?? 0;
      framesDecoded += s.framesDecoded ?? 0;
    }
  });
  let localCandidateType = null;
  const all = await window.__pc.getStats();
  all.forEach((s) => {
    if (s.type !== 'transport' || !s.selectedCandidatePairId) return;
    const pair = all.get(s.selectedCandidatePairId);
    const local = pair && all.get(pair.localCandidateId);
    if (local) localCandidateType = local.candidateType;
  });
  const now = performance.now();
  // Playback of a live stream can start paused if autoplay was refused.
  if (video.paused) video.play().catch(() => {});
  if (window.__firstFrameAt === null && video.videoWidth > 0) window.__firstFrameAt = now;
  return {
    now,
    width: video.videoWidth,
    height: video.videoHeight,
    totalVideoFrames: video.getVideoPlaybackQuality ? video.getVideoPlaybackQuality().totalVideoFrames : 0,
    rvfcFrames: window.__rvfcFrames,
    audioPackets,
    videoPackets,
    rtpBytes,
    framesDecoded,
    localCandidateType,
    firstFrameMs: window.__firstFrameAt === null ? null : Math.round(window.__firstFrameAt - window.__postAt),
    sincePostMs: Math.round(now - window.__postAt),
  };
}

// ---------------------------------------------------------------------------

function openPage(name) {
  return openPageOn(browser, baseUrl, name, log);
}

async function main() {
  const t0 = Date.now();
  browser = await launchBrowser();
  log(`launched ${CHROMIUM} ${browser.version()}`);

  publisher = await openPage('publisher');
  const pub = await publisher.evaluate(publish, { whipUrl, streamKey, gatherMs: ICE_GATHER_MAX_MS });
  if (!pub.ok) return fail(`WHIP POST ${whipUrl} returned ${pub.status}, expected 201`, pub);
  log(`WHIP 201 (Location: ${pub.location})`);

  const conn = await publisher.evaluate(waitConnected, PUBLISHER_CONNECT_MS);
  if (conn.state !== 'connected') return fail(`publisher PeerConnection did not connect (${conn.state})`, conn);
  log(`publisher connected after ${conn.ms} ms`);

  viewer = await openPage('viewer');
  // The server may learn of the publisher's tracks only from its first RTP
  // packets: allow a few seconds of "not live yet" answers before failing.
  let sub;
  const whepStart = Date.now();
  for (;;) {
    sub = await viewer.evaluate(view, {
      whepUrl,
      gatherMs: ICE_GATHER_MAX_MS,
      iceServers: viewerIceServers,
      iceTransportPolicy: viewerIcePolicy,
    });
    if (sub.ok || ![404, 409, 425, 503].includes(sub.status) || Date.now() - whepStart > WHEP_RETRY_MS) break;
    log(`WHEP POST returned ${sub.status} (${sub.body}), retrying`);
    await new Promise((r) => setTimeout(r, 500));
  }
  if (!sub.ok) return fail(`WHEP POST ${whepUrl} returned ${sub.status}, expected 201`, sub);
  log(`WHEP 201 (Location: ${sub.location})`);

  // Poll until the video has a size and audio RTP arrived, then require the
  // frame counters to advance by MIN_NEW_FRAMES over FRAME_WINDOW_MS.
  let s = await viewer.evaluate(sample);
  let base = null;
  let last = s;
  while (s.sincePostMs < PLAY_DEADLINE_MS) {
    if (base === null && s.width > 0 && s.height > 0 && s.audioPackets > 0) base = s;
    if (base !== null && s.now - base.now >= FRAME_WINDOW_MS) {
      const dTotal = s.totalVideoFrames - base.totalVideoFrames;
      const dRvfc = s.rvfcFrames - base.rvfcFrames;
      const frames = Math.max(dTotal, dRvfc);
      if (frames >= MIN_NEW_FRAMES) {
        await screenshots();
        const summary = {
          result: 'pass',
          width: s.width,
          height: s.height,
          frames,
          frames_window_ms: Math.round(s.now - base.now),
          total_video_frames: s.totalVideoFrames,
          frames_decoded: s.framesDecoded,
          local_candidate_type: s.localCandidateType,
          audio_packets: s.audioPackets,
          video_packets: s.videoPackets,
          rtp_bytes: s.rtpBytes,
          first_frame_ms: s.firstFrameMs,
          total_ms: Date.now() - t0,
        };
        finished = true;
        await Promise.all([publisher.evaluate(deleteResource, baseUrl), viewer.evaluate(deleteResource, baseUrl)])
          .then(([p, v]) => log(`DELETE publisher=${p} viewer=${v}`))
          .catch(() => {});
        clearTimeout(hardTimer);
        await closeBrowser();
        process.stdout.write(`${JSON.stringify(summary)}\n`);
        process.exit(0);
      }
      // Not enough frames in this window: slide it and keep trying.
      base = s;
    }
    await new Promise((r) => setTimeout(r, 250));
    last = s;
    s = await viewer.evaluate(sample);
  }
  const why = [];
  if (!(s.width > 0 && s.height > 0)) why.push(`no video size (${s.width}x${s.height})`);
  if (!(s.audioPackets > 0)) why.push('no audio packets received');
  if (why.length === 0) why.push(`video frames did not advance by ${MIN_NEW_FRAMES} in ${FRAME_WINDOW_MS} ms`);
  return fail(`viewer not playing ${PLAY_DEADLINE_MS / 1000} s after WHEP POST: ${why.join('; ')}`, { last: s, prev: last });
}

main().catch((e) => fail(`unexpected error: ${e?.stack ?? e}`));
