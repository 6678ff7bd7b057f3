// The studio over HTTPS on an origin that is not localhost: headless
// Chromium maps <host> to the server's loopback address
// (--host-resolver-rules), so the page's origin is https://<host>:<port>,
// where a camera is only granted to a secure context. The page must be a
// secure context, loaded over HTTP/2; the studio registers a broadcaster,
// creates a stream and goes live from the fake camera (WHIP over the same
// HTTPS), and the server's answer to the WHIP POST is 201; the stream's
// WebSocket opens over wss:// on the same origin.
//
// usage: node studio_https.mjs <base_url> <map_to_ip> <stream>
// Prints a JSON summary on stdout. Exit 0 = pass, 1 = fail, 2 = usage /
// environment error. The certificate is the test's own (signed by no
// authority Chromium knows): --ignore-certificate-errors (lib.mjs) accepts
// it; the page still counts as a secure context.

import process from 'node:process';
import { chromium } from 'playwright-core';
import { CHROMIUM, CHROMIUM_ARGS, chromiumExists, closeBrowser, parseBaseUrl } from './lib.mjs';

const HARD_TIMEOUT_MS = 110_000;
const log = (...a) => console.error('[studio_https]', ...a);

const [baseArg, mapTo, stream] = process.argv.slice(2);
const baseUrl = baseArg ? parseBaseUrl(baseArg) : null;
if (!baseUrl || !mapTo || !stream || !chromiumExists()) {
  console.error(`usage: node studio_https.mjs <base_url> <map_to_ip> <stream> (and ${CHROMIUM})`);
  process.exit(2);
}
const host = new URL(baseUrl).hostname;

let browser = null;
let studio = null;
const summary = { stream };

let finishing = false;
async function finish(code, msg) {
  if (finishing) return;
  finishing = true;
  if (msg) console.error(`studio_https: ${code === 0 ? 'PASS' : 'FAIL'}: ${msg}`);
  if (studio && !studio.isClosed()) {
    try {
      summary.live_status = await studio.locator('#live-status').textContent({ timeout: 2_000 });
    } catch {}
  }
  console.log(JSON.stringify(summary));
  await closeBrowser(browser, log);
  process.exit(code);
}
setTimeout(() => finish(1, `hard timeout after ${HARD_TIMEOUT_MS / 1000} s`), HARD_TIMEOUT_MS).unref();

async function check(cond, msg) {
  if (!cond) await finish(1, typeof msg === 'function' ? msg() : msg);
}

try {
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [...CHROMIUM_ARGS, `--host-resolver-rules=MAP ${host} ${mapTo}`],
    timeout: 30_000,
  });
  const context = await browser.newContext({ viewport: { width: 1100, height: 800 } });
  await context.grantPermissions(['camera', 'microphone'], { origin: new URL(baseUrl).origin });
  studio = await context.newPage();
  studio.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') log(`console.${m.type()}: ${m.text()}`);
  });
  studio.on('pageerror', (e) => log(`page error: ${e?.message ?? e}`));
  const whip = studio.waitForResponse((r) => r.request().method() === 'POST' && r.url().includes('/whip/'), { timeout: 60_000 });

  await studio.goto(`${baseUrl}/studio`, { waitUntil: 'load' });
  const page = await studio.evaluate(() => ({
    origin: location.origin,
    secure: window.isSecureContext,
    protocol: performance.getEntriesByType('navigation')[0]?.nextHopProtocol ?? null,
  }));
  Object.assign(summary, page);
  await check(page.secure === true, () => `the studio at ${page.origin} is not a secure context`);
  await check(page.protocol === 'h2', () => `the studio was loaded over ${page.protocol}, not HTTP/2`);

  await studio.getByRole('tab', { name: 'Create a broadcaster account' }).click();
  await studio.getByLabel('Username').nth(1).fill(`caster-${Date.now()}`);
  await studio.getByLabel('Password').nth(1).fill('correct horse battery staple');
  await studio.getByRole('button', { name: 'Create account' }).click();
  await studio.locator('#streams:not([hidden])').waitFor({ timeout: 20_000 });
  await studio.getByLabel('Name (in URLs)').fill(stream);
  await studio.getByLabel('Title', { exact: true }).fill('HTTPS test');
  await studio.getByRole('button', { name: 'Create stream' }).click();
  await studio.locator('#stream:not([hidden])').waitFor({ timeout: 20_000 });
  summary.whip_url_shown = await studio.locator('#whip-url').inputValue();
  await check(summary.whip_url_shown.startsWith(`${baseUrl}/whip/`), () => `the WHIP URL shown is ${summary.whip_url_shown}`);
  // Go live starts the fake camera itself.
  await studio.getByRole('button', { name: 'Go live' }).click();
  const answer = await whip;
  summary.whip_status = answer.status();
  await check(summary.whip_status === 201, () => `WHIP POST answered ${summary.whip_status}`);
  await studio.locator('#live-status[data-kind="ok"], #live-status[data-kind="error"]').waitFor({ timeout: 45_000 });
  const kind = await studio.locator('#live-status').getAttribute('data-kind');
  await check(kind === 'ok', () => 'the studio did not go live');
  // The stream's WebSocket over the same origin: relaycast does not offer
  // WebSockets over HTTP/2 (RFC 8441), so Chromium opens an HTTP/1.1
  // connection for it; the socket must open and carry the first message.
  summary.websocket = await studio.evaluate((name) => new Promise((resolve) => {
    const ws = new WebSocket(`wss://${location.host}/api/streams/${encodeURIComponent(name)}/ws`);
    const done = (v) => { try { ws.close(); } catch {} resolve(v); };
    setTimeout(() => done('timeout'), 15_000);
    ws.onmessage = () => done('message');
    ws.onerror = () => done('error');
  }), stream);
  await check(summary.websocket === 'message', () => `the stream WebSocket over wss:// gave ${summary.websocket}`);
  await finish(0, `the studio at ${baseUrl} (a secure context over HTTP/2) went live from the camera; its WebSocket carried a message`);
} catch (e) {
  await finish(1, `error: ${e?.stack ?? e}`);
}
