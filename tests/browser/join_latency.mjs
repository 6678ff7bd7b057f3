#!/usr/bin/env node
// WHEP join latency, measured in headless Debian Chromium.
//
//   node join_latency.mjs <base_url> <stream> <stream_key> [--joins 20] [--json] [--gap-ms 300]
//
// One publisher page sends Chromium's fake camera (640x480) + microphone to
// <base_url>/whip/<stream>. Once it is connected and ~2 s of media has
// flowed, a viewer page (its own browser context) joins <base_url>/whep/<stream>
// N times in a row. Each join uses a fresh recvonly (video + audio)
// RTCPeerConnection and a fresh muted autoplay <video>, and is timed in the
// page with performance.now():
//
//   t0       just before the WHEP POST (after the offer's ICE gathering)
//   answer   the POST's 201 has arrived (fetch resolved)
//   ice      iceConnectionState reached "connected"
//   connect  connectionState reached "connected" (ICE + DTLS done)
//   unmute   the remote video track unmuted (first video RTP arrived)
//   frame    first video frame presented (requestVideoFrameCallback)
//
// all reported in ms since t0. Then the session is DELETEd (its Location),
// the PeerConnection closed, and after 300 ms (--gap-ms) the next join
// starts. A join without a presented frame within 10 s of t0 (or with a
// non-201 answer) counts as a failure; it is reported, not fatal.
//
// The gap matters: the server throttles keyframe requests to a publisher
// (sfu KEYFRAME_REQUEST_INTERVAL, 1 s), so with joins less than ~1 s apart
// a viewer's request is deferred and its first frame comes later.
//
// Summary: min / median / p90 / max of frame and answer over the joins that
// have the value (median: mean of the two middle values for even n; p90:
// nearest rank, the ceil(0.9 n)-th smallest). Also per join: how many PLIs
// and key frames the publisher saw meanwhile (pub_pli / pub_kf), which shows
// whether the server asked the publisher for a key frame for the new viewer.
//
// Output: a human table on stdout, or one JSON object with --json;
// progress and diagnostics on stderr. Exit 0 = at most half the joins failed,
// 1 = more than half failed (or the publisher could not publish),
// 2 = usage / environment error, 3 = hard timeout (180 s; the joins done so
// far are still reported), 130 / 143 = SIGINT / SIGTERM (also reported).

import process from 'node:process';
import {
  CHROMIUM,
  chromiumExists,
  closeBrowser as closeBrowserSafely,
  deleteResource,
  launchBrowser,
  openPage,
  parseBaseUrl,
  pcDiagnostics,
  publish,
  waitConnected,
} from './lib.mjs';

const HARD_TIMEOUT_MS = 180_000;
const FRAME_DEADLINE_MS = 10_000; // from t0 to the first presented frame
const POST_TIMEOUT_MS = 8_000;
const ICE_GATHER_MAX_MS = 2_000;
const PUBLISHER_CONNECT_MS = 10_000;
const PUBLISHER_FIRST_PACKET_MS = 5_000;
const WARMUP_MS = 2_000; // media flowing before the first join
const DEFAULT_GAP_MS = 300; // between one join's DELETE and the next join
const DEFAULT_JOINS = 20;

const log = (...a) => console.error('[join_latency]', ...a);

function usage(msg) {
  if (msg) console.error(`join_latency: ${msg}`);
  console.error('usage: node join_latency.mjs <base_url> <stream> <stream_key> [--joins N] [--json] [--gap-ms MS]');
  process.exit(2);
}

function parseArgs(argv) {
  const pos = [];
  let joins = DEFAULT_JOINS;
  let json = false;
  let gapMs = DEFAULT_GAP_MS;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--json') json = true;
    else if (a === '--joins' || a.startsWith('--joins=')) {
      const v = a === '--joins' ? argv[++i] : a.slice('--joins='.length);
      if (v === undefined || !/^[1-9][0-9]*$/.test(v)) usage(`--joins needs a positive integer, got ${v}`);
      joins = Number(v);
    } else if (a === '--gap-ms' || a.startsWith('--gap-ms=')) {
      const v = a === '--gap-ms' ? argv[++i] : a.slice('--gap-ms='.length);
      if (v === undefined || !/^[0-9]+$/.test(v)) usage(`--gap-ms needs a non-negative integer, got ${v}`);
      gapMs = Number(v);
    } else if (a === '-h' || a === '--help') usage();
    else if (a.startsWith('--')) usage(`unknown option ${a}`);
    else pos.push(a);
  }
  if (pos.length !== 3) usage(pos.length < 3 ? 'missing arguments' : 'too many arguments');
  return { pos, joins, json, gapMs };
}

const { pos: [baseArg, stream, streamKey], joins: JOINS, json: JSON_OUT, gapMs: GAP_MS } = parseArgs(process.argv.slice(2));
const baseUrl = parseBaseUrl(baseArg);
if (baseUrl === null) usage(`bad base_url: ${baseArg}`);
if (!chromiumExists()) {
  console.error(`join_latency: FAIL: ${CHROMIUM} not found (apt-get install chromium)`);
  process.exit(2);
}

const whipUrl = `${baseUrl}/whip/${encodeURIComponent(stream)}`;
const whepUrl = `${baseUrl}/whep/${encodeURIComponent(stream)}`;

let browser = null;
let publisherPage = null;
let finished = false;
const startedAt = Date.now();
const run = { chromium: null, publisher: null, results: [] };

async function closeBrowser() {
  const b = browser;
  browser = null;
  await closeBrowserSafely(b, log);
}

// ---------------------------------------------------------------------------
// In-page functions (serialized into the pages by page.evaluate).

// Publisher page: the outbound RTP counters of window.__pc, per kind.
async function publisherStats() {
  const pc = window.__pc;
  const out = { connectionState: pc ? pc.connectionState : null, video: null, audio: null };
  if (!pc) return out;
  (await pc.getStats()).forEach((s) => {
    if (s.type !== 'outbound-rtp' || !s.kind) return;
    const o = (out[s.kind] ??= { packetsSent: 0, framesEncoded: 0, keyFramesEncoded: 0, pliCount: 0, firCount: 0, nackCount: 0 });
    for (const k of ['packetsSent', 'framesEncoded', 'keyFramesEncoded', 'pliCount', 'firCount', 'nackCount']) {
      o[k] += s[k] ?? 0;
    }
    if (s.frameWidth) o.size = `${s.frameWidth}x${s.frameHeight}`;
    if (s.framesPerSecond !== undefined) o.fps = s.framesPerSecond;
    if (s.encoderImplementation) o.encoder = s.encoderImplementation;
  });
  return out;
}

// Viewer page: one timed WHEP join. Leaves the PC in window.__pc and the
// session URL in window.__resource for deleteResource / closeViewer.
async function joinOnce({ whepUrl, gatherMs, postTimeoutMs, frameDeadlineMs }) {
  const note = window.__note;
  if (window.__pc) window.__pc.close();
  window.__pc = null;
  window.__resource = null;
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

  const pc = new RTCPeerConnection({ iceServers: [] });
  window.__pc = pc;
  window.__watch(pc);
  pc.addTransceiver('video', { direction: 'recvonly' });
  pc.addTransceiver('audio', { direction: 'recvonly' });
  // The answer may carry no a=msid: build the stream from the receivers.
  const videoTrack = pc.getReceivers().find((r) => r.track.kind === 'video').track;
  video.srcObject = new MediaStream(pc.getReceivers().map((r) => r.track));

  const at = { ice: null, connected: null, unmute: null, frame: null };
  let frameMeta = null;
  pc.addEventListener('connectionstatechange', () => {
    if (pc.connectionState === 'connected' && at.connected === null) at.connected = performance.now();
  });
  pc.addEventListener('iceconnectionstatechange', () => {
    const st = pc.iceConnectionState;
    if ((st === 'connected' || st === 'completed') && at.ice === null) at.ice = performance.now();
  });
  videoTrack.addEventListener('unmute', () => {
    if (at.unmute === null) at.unmute = performance.now();
  }, { once: true });
  let onFrame;
  const firstFrame = new Promise((resolve) => (onFrame = resolve));
  video.requestVideoFrameCallback((now, meta) => {
    at.frame = performance.now();
    frameMeta = { width: meta.width, height: meta.height, rvfcNow: now, receiveTime: meta.receiveTime ?? null };
    onFrame();
  });

  const tOffer = performance.now();
  await pc.setLocalDescription(await pc.createOffer());
  const gathered = await window.__waitGathering(pc, gatherMs);

  const t0 = performance.now();
  const rel = (t) => (t === null || t === undefined ? null : Math.round((t - t0) * 10) / 10);
  const out = { gather_ms: Math.round((t0 - tOffer) * 10) / 10, gathered };
  const ctl = new AbortController();
  const postTimer = setTimeout(() => ctl.abort(), postTimeoutMs);
  let res;
  let body;
  try {
    res = await fetch(whepUrl, {
      method: 'POST',
      headers: { 'Content-Type': 'application/sdp' },
      body: pc.localDescription.sdp,
      signal: ctl.signal,
    });
    out.answer_ms = rel(performance.now());
    body = await res.text();
  } catch (e) {
    clearTimeout(postTimer);
    return { ...out, ok: false, error: `WHEP POST failed after ${Math.round(performance.now() - t0)} ms: ${e}` };
  }
  clearTimeout(postTimer);
  out.status = res.status;
  if (res.status !== 201) {
    return { ...out, ok: false, error: `WHEP POST returned ${res.status}: ${body.slice(0, 300)}` };
  }
  window.__resource = res.headers.get('Location');
  out.location = window.__resource;
  try {
    await pc.setRemoteDescription({ type: 'answer', sdp: body });
  } catch (e) {
    return { ...out, ok: false, error: `setRemoteDescription: ${e}` };
  }
  video.play().catch((e) => note(`video.play(): ${e}`));

  const left = frameDeadlineMs - (performance.now() - t0);
  let timer;
  await Promise.race([firstFrame, new Promise((r) => (timer = setTimeout(r, Math.max(0, left))))]);
  clearTimeout(timer);

  out.ice_ms = rel(at.ice);
  out.connected_ms = rel(at.connected);
  out.unmute_ms = rel(at.unmute);
  out.frame_ms = rel(at.frame);
  if (frameMeta) {
    out.size = `${frameMeta.width}x${frameMeta.height}`;
    if (frameMeta.receiveTime !== null) out.frame_received_ms = rel(frameMeta.receiveTime);
  }
  const s = { connectionState: pc.connectionState, iceConnectionState: pc.iceConnectionState };
  (await pc.getStats()).forEach((r) => {
    if (r.type === 'inbound-rtp' && r.kind === 'video') {
      s.videoPackets = r.packetsReceived ?? 0;
      s.framesDecoded = r.framesDecoded ?? 0;
      s.keyFramesDecoded = r.keyFramesDecoded ?? 0;
      s.pliSent = r.pliCount ?? 0;
      s.firSent = r.firCount ?? 0;
    }
    if (r.type === 'inbound-rtp' && r.kind === 'audio') s.audioPackets = r.packetsReceived ?? 0;
  });
  out.viewer = s;
  if (at.frame === null) {
    return { ...out, ok: false, error: `no video frame within ${frameDeadlineMs / 1000} s`, log: window.__log.slice(-10) };
  }
  return { ...out, ok: true };
}

// Viewer page: close the PC and drop the <video> (after deleteResource).
function closeViewer() {
  if (window.__pc) window.__pc.close();
  window.__pc = null;
  window.__resource = null;
  window.__log = [];
  const v = document.querySelector('video');
  if (v) {
    v.srcObject = null;
    v.remove();
  }
}

// ---------------------------------------------------------------------------
// Statistics and output.

function summarize(values) {
  const v = values.filter((x) => typeof x === 'number').sort((a, b) => a - b);
  const n = v.length;
  if (n === 0) return { n: 0, min: null, median: null, p90: null, max: null };
  const median = n % 2 ? v[(n - 1) / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
  const p90 = v[Math.min(n - 1, Math.ceil(0.9 * n) - 1)];
  const r = (x) => Math.round(x * 10) / 10;
  return { n, min: r(v[0]), median: r(median), p90: r(p90), max: r(v[n - 1]) };
}

function report({ timedOut = false, error = null } = {}) {
  const results = run.results;
  const failures = results.filter((r) => !r.ok).length;
  const out = {
    result: timedOut || error ? 'error' : failures * 2 > JOINS ? 'fail' : 'ok',
    base_url: baseUrl,
    stream,
    joins: JOINS,
    gap_ms: GAP_MS,
    completed: results.length,
    failures,
    timed_out: timedOut,
    error,
    chromium: run.chromium,
    publisher: run.publisher,
    frame_ms: summarize(results.filter((r) => r.ok).map((r) => r.frame_ms)),
    answer_ms: summarize(results.map((r) => r.answer_ms)),
    connected_ms: summarize(results.map((r) => r.connected_ms)),
    per_join: results,
    total_ms: Date.now() - startedAt,
  };
  if (JSON_OUT) {
    process.stdout.write(`${JSON.stringify(out)}\n`);
    return out;
  }
  const f = (x) => (x === null || x === undefined ? '-' : typeof x === 'number' ? x.toFixed(1) : String(x));
  const cols = [
    ['join', 4, (r) => String(r.join)],
    ['answer', 8, (r) => f(r.answer_ms)],
    ['ice', 8, (r) => f(r.ice_ms)],
    ['connect', 8, (r) => f(r.connected_ms)],
    ['unmute', 8, (r) => f(r.unmute_ms)],
    ['frame', 8, (r) => f(r.frame_ms)],
    ['size', 8, (r) => r.size ?? '-'],
    ['pub_pli', 7, (r) => String(r.pub_pli ?? '-')],
    ['pub_kf', 6, (r) => String(r.pub_kf ?? '-')],
    ['delete', 6, (r) => String(r.delete_status ?? '-')],
    ['result', 0, (r) => (r.ok ? 'ok' : `FAIL: ${r.error}`)],
  ];
  const line = (cells) => cells.map((c, i) => (cols[i][1] ? c.padStart(cols[i][1]) : c)).join('  ');
  const lines = [];
  lines.push(`relaycast WHEP join latency: ${whepUrl}`);
  if (run.chromium) lines.push(`chromium ${run.chromium}; publisher ${run.publisher?.size ?? '?'} fake camera + audio`);
  if (results.length > 0 || !error) {
    lines.push('per join, ms since t0 = just before the WHEP POST (pub_pli/pub_kf: PLIs/key frames at the publisher during the join)');
    lines.push(line(cols.map((c) => c[0])));
    for (const r of results) lines.push(line(cols.map((c) => c[2](r))));
    lines.push('');
    lines.push('summary (ms since t0)              n      min   median      p90      max');
    for (const [name, s] of [
      ['first frame (ok joins)', out.frame_ms],
      ['answer (201)', out.answer_ms],
      ['connected', out.connected_ms],
    ]) {
      lines.push(`${name.padEnd(28)}${String(s.n).padStart(8)}${[s.min, s.median, s.p90, s.max].map((x) => f(x).padStart(9)).join('')}`);
    }
  }
  lines.push(`failures: ${failures}/${JOINS}${results.length < JOINS ? ` (${results.length} of ${JOINS} joins done)` : ''}`);
  if (timedOut) lines.push(`hard timeout after ${HARD_TIMEOUT_MS / 1000} s`);
  if (error) lines.push(`error: ${error}`);
  process.stdout.write(`${lines.join('\n')}\n`);
  return out;
}

// Reports, closes the browser and exits; the first caller wins.
async function finish(code, opts) {
  if (finished) return;
  finished = true;
  clearTimeout(hardTimer);
  setTimeout(() => process.exit(code), 10_000).unref();
  if (opts?.error) console.error(`join_latency: FAIL: ${opts.error}`);
  report(opts);
  await closeBrowser();
  process.exit(code);
}

const hardTimer = setTimeout(() => {
  log(`hard timeout after ${HARD_TIMEOUT_MS / 1000} s`);
  finish(3, { timedOut: true });
}, HARD_TIMEOUT_MS);

for (const [sig, code] of [['SIGINT', 130], ['SIGTERM', 143]]) {
  process.on(sig, () => finish(code, { error: `got ${sig}` }));
}

// ---------------------------------------------------------------------------

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function startPublisher() {
  publisherPage = await openPage(browser, baseUrl, 'publisher', log);
  const pub = await publisherPage.evaluate(publish, { whipUrl, streamKey, gatherMs: ICE_GATHER_MAX_MS });
  if (!pub.ok) throw new Error(`WHIP POST ${whipUrl} returned ${pub.status}, expected 201: ${pub.body}`);
  log(`WHIP 201 (Location: ${pub.location})`);
  const conn = await publisherPage.evaluate(waitConnected, PUBLISHER_CONNECT_MS);
  if (conn.state !== 'connected') {
    const diag = await publisherPage.evaluate(pcDiagnostics).catch((e) => String(e));
    throw new Error(`publisher PeerConnection did not connect (${JSON.stringify(conn)}); state: ${JSON.stringify(diag)}`);
  }
  log(`publisher connected after ${conn.ms} ms`);
  const t = Date.now();
  let st = await publisherPage.evaluate(publisherStats);
  while (!(st.video?.packetsSent > 0 && st.audio?.packetsSent > 0)) {
    if (Date.now() - t > PUBLISHER_FIRST_PACKET_MS) {
      throw new Error(`publisher sent no video/audio RTP within ${PUBLISHER_FIRST_PACKET_MS / 1000} s: ${JSON.stringify(st)}`);
    }
    await sleep(100);
    st = await publisherPage.evaluate(publisherStats);
  }
  await sleep(WARMUP_MS);
  st = await publisherPage.evaluate(publisherStats);
  log(`publisher warm: ${JSON.stringify(st)}`);
  run.publisher = {
    size: st.video?.size ?? null,
    encoder: st.video?.encoder ?? null,
    connected_ms: conn.ms,
  };
}

async function main() {
  browser = await launchBrowser();
  run.chromium = browser.version();
  log(`launched ${CHROMIUM} ${run.chromium}`);
  try {
    await startPublisher();
  } catch (e) {
    return finish(1, { error: e?.message ?? String(e) });
  }

  const viewer = await openPage(browser, baseUrl, 'viewer', log);
  for (let i = 1; i <= JOINS && !finished; i++) {
    const before = await publisherPage.evaluate(publisherStats);
    let r;
    try {
      r = await viewer.evaluate(joinOnce, {
        whepUrl,
        gatherMs: ICE_GATHER_MAX_MS,
        postTimeoutMs: POST_TIMEOUT_MS,
        frameDeadlineMs: FRAME_DEADLINE_MS,
      });
    } catch (e) {
      if (finished) return;
      r = { ok: false, error: `viewer page: ${e?.message ?? e}` };
    }
    if (finished) return;
    const after = await publisherPage.evaluate(publisherStats);
    r = { join: i, ...r };
    r.pub_pli = (after.video?.pliCount ?? 0) - (before.video?.pliCount ?? 0);
    r.pub_fir = (after.video?.firCount ?? 0) - (before.video?.firCount ?? 0);
    r.pub_kf = (after.video?.keyFramesEncoded ?? 0) - (before.video?.keyFramesEncoded ?? 0);
    if (after.connectionState !== 'connected') r.publisher_state = after.connectionState;
    r.delete_status = await viewer.evaluate(deleteResource, baseUrl).catch((e) => `DELETE failed: ${e?.message ?? e}`);
    await viewer.evaluate(closeViewer).catch(() => {});
    if (finished) return;
    run.results.push(r);
    log(
      `join ${i}/${JOINS}: ${r.ok ? 'ok' : `FAIL (${r.error})`} answer=${r.answer_ms ?? '-'} ` +
        `connected=${r.connected_ms ?? '-'} unmute=${r.unmute_ms ?? '-'} frame=${r.frame_ms ?? '-'} ms ` +
        `pub_pli=${r.pub_pli} pub_kf=${r.pub_kf} delete=${r.delete_status}`,
    );
    if (!r.ok) log(`join ${i} details: ${JSON.stringify(r)}`);
    if (i < JOINS) await sleep(GAP_MS);
  }
  if (finished) return;
  await publisherPage.evaluate(deleteResource, baseUrl).then((s) => log(`DELETE publisher=${s}`)).catch(() => {});
  const failures = run.results.filter((r) => !r.ok).length;
  return finish(failures * 2 > JOINS ? 1 : 0);
}

main().catch((e) => finish(1, { error: `unexpected error: ${e?.stack ?? e}` }));
