// Plays one HLS or DASH URL in headless Chromium (playwright-core, /usr/bin/chromium) with hls.js or dash.js from
// node_modules, and prints one JSON line with what the viewer got (see tests/browser.py).
//
//   node tests/browser/play.mjs '{"url":"http://127.0.0.1:8080/live/a.m3u8","kind":"hls","seconds":8,"lowLatency":true}'
//
// Optional args: "crossOrigin": true serves the page from another loopback origin (http://localhost:9, or
// http://127.0.0.1:9 when the media is on localhost), so the media requests need the server's CORS headers. (A
// non-loopback page origin would also trip Chromium's Private Network Access block, which is not what we test.)
// "chromium": path of the browser (default $CHROMIUM or /usr/bin/chromium).
import { chromium } from "playwright-core";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const HERE = dirname(fileURLToPath(import.meta.url));
const LIBS = {
  hls: join(HERE, "node_modules/hls.js/dist/hls.min.js"),
  dash: join(HERE, "node_modules/dashjs/dist/modern/umd/dash.all.min.js"),
};

const args = JSON.parse(process.argv[2] || "{}");
const kind = args.kind || "hls";
const seconds = Number(args.seconds ?? 8);
const consoleLines = [];
const note = (s) => { consoleLines.push(String(s).slice(0, 500)); if (consoleLines.length > 60) consoleLines.shift(); };

function emit(obj) {
  process.stdout.write(JSON.stringify({ ...obj, console: consoleLines.slice(-40) }) + "\n");
}

async function main() {
  if (!args.url) throw new Error("missing url");
  if (!LIBS[kind]) throw new Error(`kind must be hls or dash, not ${kind}`);
  const media = new URL(args.url);
  const other = media.hostname === "localhost" ? "http://127.0.0.1:9" : "http://localhost:9";
  const origin = args.crossOrigin ? other : media.origin;
  const pageUrl = `${origin}/__ferrocast_browser_harness__/player.html`;
  const html = readFileSync(join(HERE, "player.html"), "utf8");
  const profile = mkdtempSync(join(tmpdir(), "ferrocast-chromium-"));
  let context;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: args.chromium || process.env.CHROMIUM || "/usr/bin/chromium",
      headless: true,
      timeout: 20000,
      // Chromium 14x+ asks the user before a page talks to a loopback/local address from another origin (Local
      // Network Access); a real viewer would click "allow", so grant it and let CORS decide.
      permissions: ["local-network-access"],
      args: [
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--autoplay-policy=no-user-gesture-required",
      ],
    });
    const page = context.pages()[0] || (await context.newPage());
    page.on("console", (m) => note(`[${m.type()}] ${m.text()}`));
    page.on("pageerror", (e) => note(`[pageerror] ${e.message}`));
    page.on("requestfailed", (r) => note(`[requestfailed] ${r.url()} ${r.failure()?.errorText || ""}`));
    page.on("response", (r) => { if (r.status() >= 400) note(`[http ${r.status()}] ${r.url()}`); });
    // The page itself never touches the network: it is served by this route on the chosen origin.
    await page.route(pageUrl, (route) => route.fulfill({ status: 200, contentType: "text/html", body: html }));
    await page.goto(pageUrl, { timeout: 10000 });
    await page.addScriptTag({ path: LIBS[kind] });
    const support = await page.evaluate(() => ({
      h264: typeof MediaSource !== "undefined" && MediaSource.isTypeSupported('video/mp4; codecs="avc1.64001f"'),
      aac: typeof MediaSource !== "undefined" && MediaSource.isTypeSupported('audio/mp4; codecs="mp4a.40.2"'),
      userAgent: navigator.userAgent,
    }));
    note(`[harness] ${support.userAgent} MSE h264=${support.h264} aac=${support.aac}`);
    await page.evaluate(([k, u, o]) => window.harness.start(k, u, o), [kind, args.url, { lowLatency: !!args.lowLatency }]);
    await page.waitForTimeout(seconds * 1000);
    const stats = await page.evaluate(() => window.harness.stats());
    emit({ ok: true, kind, url: args.url, seconds, mse_h264: support.h264, mse_aac: support.aac, ...stats });
  } finally {
    if (context) await context.close().catch(() => {});
    rmSync(profile, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (e) => {
    emit({ ok: false, harness_error: String(e && e.stack || e), frames_decoded: 0, dropped: 0, errors: [String(e)],
           fatal: true, latency: null, low_latency_mode: false, parts_loaded: 0, current_time: 0, width: 0, height: 0 });
    process.exit(2);
  },
);
