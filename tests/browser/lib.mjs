// Shared pieces of the headless-Chromium WHIP/WHEP tools in this directory
// (whip_whep.mjs, join_latency.mjs): browser launch, page setup, and the
// in-page functions they hand to page.evaluate.
//
// Functions in the "in-page" section run inside the browser: page.evaluate
// serializes them as source text, so they must not use anything from this
// module's scope (only their argument and the page's globals).

import fs from 'node:fs';
import process from 'node:process';
import { chromium } from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';

export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--allow-loopback-in-peer-connection',
  '--use-fake-device-for-media-stream',
  '--use-fake-ui-for-media-stream',
  // Never hide host candidates behind mDNS names (the viewer page has no
  // getUserMedia stream of its own); the server could not resolve them.
  '--disable-features=WebRtcHideLocalIpsWithMdns',
  // The TURN-over-TLS test serves a self-signed certificate for 127.0.0.1.
  '--ignore-certificate-errors',
];

export const chromiumExists = () => fs.existsSync(CHROMIUM);

// Strips trailing slashes; returns null if the result is not an absolute URL.
export function parseBaseUrl(arg) {
  const base = String(arg).replace(/\/+$/, '');
  try {
    new URL(base);
  } catch {
    return null;
  }
  return base;
}

export function launchBrowser() {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    timeout: 20_000,
  });
}

// Closes the browser, giving up after 5 s; never throws.
export async function closeBrowser(browser, log) {
  if (!browser) return;
  try {
    await Promise.race([browser.close(), new Promise((r) => setTimeout(r, 5_000))]);
  } catch (e) {
    log('browser.close failed:', e?.message ?? e);
  }
}

// Opens a page in its own context (like a separate browser), on the server's
// origin (GET /healthz) so fetch() to WHIP/WHEP is same-origin, and installs
// pageInit. Console errors/warnings and page errors go to `log`.
export async function openPage(browser, baseUrl, name, log) {
  const context = await browser.newContext({
    permissions: ['camera', 'microphone'],
    viewport: { width: 680, height: 540 },
  });
  await context.grantPermissions(['camera', 'microphone'], { origin: new URL(baseUrl).origin });
  const page = await context.newPage();
  page.on('console', (m) => {
    if (m.type() !== 'error' && m.type() !== 'warning') return;
    if (/\/favicon\.ico$/.test(m.location()?.url ?? '')) return;
    log(`${name} console.${m.type()}: ${m.text()}`);
  });
  page.on('pageerror', (e) => log(`${name} page error: ${e?.message ?? e}`));
  const res = await page.goto(`${baseUrl}/healthz`, { waitUntil: 'load', timeout: 10_000 });
  if (!res) throw new Error(`${name}: no response for ${baseUrl}/healthz`);
  if (!res.ok()) log(`${name}: warning: GET /healthz returned ${res.status()}`);
  await page.evaluate(pageInit);
  return page;
}

// ---------------------------------------------------------------------------
// In-page functions (serialized into the pages by page.evaluate).

// Installed in every page: a tiny log buffer and the ICE-gathering waiter.
export function pageInit() {
  window.__log = [];
  window.__note = (m) => window.__log.push(`${Math.round(performance.now())}ms ${m}`);
  window.__waitGathering = (pc, maxMs) =>
    new Promise((resolve) => {
      if (pc.iceGatheringState === 'complete') return resolve(true);
      const t = setTimeout(() => resolve(false), maxMs);
      pc.addEventListener('icegatheringstatechange', () => {
        if (pc.iceGatheringState === 'complete') {
          clearTimeout(t);
          resolve(true);
        }
      });
    });
  window.__watch = (pc) => {
    pc.addEventListener('connectionstatechange', () => window.__note(`connectionState=${pc.connectionState}`));
    pc.addEventListener('iceconnectionstatechange', () => window.__note(`iceConnectionState=${pc.iceConnectionState}`));
  };
  document.title = 'relaycast';
  document.body.innerHTML = '';
  document.body.style.margin = '0';
  document.body.style.background = '#222';
  document.body.style.color = '#eee';
  document.body.style.font = '14px sans-serif';
}

// Publishes the fake camera (640x480, or 1280x720 in three simulcast layers
// q/h/f when `simulcast`) + microphone over WHIP; `codec` (e.g. 'VP8',
// 'H264') is put first when given (relaycast answers in its own order, so
// that alone may not get it), and is the only video codec offered (with
// rtx/red/fec) when `codecOnly`. The PC is window.__pc, the session URL
// window.__resource.
export async function publish({ whipUrl, streamKey, gatherMs, simulcast = false, codec = null, codecOnly = false }) {
  const note = window.__note;
  const media = await navigator.mediaDevices.getUserMedia({
    video: simulcast ? { width: 1280, height: 720 } : { width: 640, height: 480 },
    audio: true,
  });
  note(`getUserMedia: ${media.getTracks().map((t) => `${t.kind}:${t.label}`).join(', ')}`);

  const label = document.createElement('div');
  label.textContent = `publisher -> ${whipUrl}`;
  const video = document.createElement('video');
  video.muted = true;
  video.autoplay = true;
  video.playsInline = true;
  video.width = 640;
  video.height = 480;
  video.srcObject = media;
  document.body.append(label, video);
  video.play().catch(() => {});

  const pc = new RTCPeerConnection({ iceServers: [] });
  window.__pc = pc;
  window.__watch(pc);
  for (const track of media.getTracks()) {
    const init = { direction: 'sendonly', streams: [media] };
    if (simulcast && track.kind === 'video') {
      init.sendEncodings = [
        { rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 150_000 },
        { rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 500_000 },
        { rid: 'f', maxBitrate: 1_500_000 },
      ];
    }
    const tr = pc.addTransceiver(track, init);
    if (codec && track.kind === 'video' && tr.setCodecPreferences) {
      const all = RTCRtpReceiver.getCapabilities('video').codecs;
      const wanted = all.filter((c) => c.mimeType.toLowerCase() === `video/${codec.toLowerCase()}`);
      const rest = all.filter((c) => !wanted.includes(c) && (!codecOnly || /\/(rtx|red|ulpfec|flexfec)/i.test(c.mimeType)));
      if (wanted.length) tr.setCodecPreferences([...wanted, ...rest]);
    }
  }
  await pc.setLocalDescription(await pc.createOffer());
  const gathered = await window.__waitGathering(pc, gatherMs);
  note(`ICE gathering ${gathered ? 'complete' : 'timed out'}`);

  const res = await fetch(whipUrl, {
    method: 'POST',
    headers: { 'Content-Type': 'application/sdp', Authorization: `Bearer ${streamKey}` },
    body: pc.localDescription.sdp,
  });
  const body = await res.text();
  if (res.status !== 201) {
    return { ok: false, status: res.status, body: body.slice(0, 500) };
  }
  window.__resource = res.headers.get('Location');
  await pc.setRemoteDescription({ type: 'answer', sdp: body });
  return { ok: true, status: res.status, location: window.__resource, gathered };
}

// Waits up to maxMs for window.__pc to reach connectionState "connected".
export async function waitConnected(maxMs) {
  const pc = window.__pc;
  const t0 = performance.now();
  while (performance.now() - t0 < maxMs) {
    if (pc.connectionState === 'connected') return { state: 'connected', ms: Math.round(performance.now() - t0) };
    if (pc.connectionState === 'failed' || pc.connectionState === 'closed') break;
    await new Promise((r) => setTimeout(r, 50));
  }
  return { state: pc.connectionState, ice: pc.iceConnectionState, ms: Math.round(performance.now() - t0) };
}

// DELETEs window.__resource (resolved against `base`); returns the HTTP
// status, an error string, or null when there is no session.
export async function deleteResource(base) {
  if (!window.__resource) return null;
  try {
    const url = new URL(window.__resource, base).toString();
    const ctl = new AbortController();
    const t = setTimeout(() => ctl.abort(), 2_000);
    const res = await fetch(url, { method: 'DELETE', signal: ctl.signal });
    clearTimeout(t);
    return res.status;
  } catch (e) {
    return String(e);
  }
}

// What the page knows about window.__pc and its <video>, for failure reports.
export async function pcDiagnostics() {
  const pc = window.__pc;
  if (!pc) return { pc: null, log: window.__log ?? [] };
  const stats = [];
  try {
    (await pc.getStats()).forEach((s) => {
      if (['inbound-rtp', 'outbound-rtp', 'candidate-pair', 'transport'].includes(s.type)) {
        const keep = {};
        for (const k of [
          'type', 'kind', 'state', 'nominated', 'packetsReceived', 'packetsSent', 'bytesReceived',
          'bytesSent', 'framesDecoded', 'framesEncoded', 'framesReceived', 'keyFramesDecoded',
          'pliCount', 'nackCount', 'firCount', 'frameWidth', 'frameHeight', 'codecId',
          'dtlsState', 'iceState', 'selectedCandidatePairId', 'packetsLost',
        ]) if (s[k] !== undefined) keep[k] = s[k];
        stats.push(keep);
      }
    });
  } catch (e) {
    stats.push({ error: String(e) });
  }
  const v = document.querySelector('video');
  return {
    connectionState: pc.connectionState,
    iceConnectionState: pc.iceConnectionState,
    iceGatheringState: pc.iceGatheringState,
    signalingState: pc.signalingState,
    video: v && {
      videoWidth: v.videoWidth,
      videoHeight: v.videoHeight,
      readyState: v.readyState,
      paused: v.paused,
      totalVideoFrames: v.getVideoPlaybackQuality?.().totalVideoFrames,
      rvfcFrames: window.__rvfcFrames,
    },
    stats,
    log: window.__log ?? [],
  };
}
