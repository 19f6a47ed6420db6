// WHEP playback or WHIP publishing in headless Chromium (playwright-core, /usr/bin/chromium); prints one JSON line.
//
//   node tests/browser/webrtc.mjs '{"mode":"whep","url":"http://198.18.0.1:8080/whep/live/a","seconds":6}'
//   node tests/browser/webrtc.mjs '{"mode":"whip","url":"http://198.18.0.1:8080/whip/live/b","seconds":10}'
//
// Chromium gathers no loopback ICE candidates: run it in a network namespace that reaches the server over a veth
// pair (tests/test_webrtc_browser.py does). WHIP publishes the fake camera and microphone (H.264 + Opus).
import { chromium } from "playwright-core";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const args = JSON.parse(process.argv[2] || "{}");
const seconds = Number(args.seconds ?? 6);
const lines = [];
const note = (s) => { lines.push(String(s).slice(0, 400)); if (lines.length > 40) lines.shift(); };

async function main() {
  const media = new URL(args.url);
  const pageUrl = `${media.origin}/__ferrocast_webrtc_harness__`;
  const profile = mkdtempSync(join(tmpdir(), "ferrocast-chromium-"));
  let context;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: args.chromium || process.env.CHROMIUM || "/usr/bin/chromium",
      headless: true,
      timeout: 20000,
      args: [
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--autoplay-policy=no-user-gesture-required",
        "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
        `--unsafely-treat-insecure-origin-as-secure=${media.origin}`,
      ],
    });
    const page = context.pages()[0] || (await context.newPage());
    page.on("console", (m) => note(`[${m.type()}] ${m.text()}`));
    page.on("pageerror", (e) => note(`[pageerror] ${e.message}`));
    await page.route(pageUrl, (r) => r.fulfill({ status: 200, contentType: "text/html", body: "<html><body></body></html>" }));
    await page.goto(pageUrl, { timeout: 10000 });
    const result = await page.evaluate(async ([mode, url, secs]) => {
      const pc = new RTCPeerConnection();
      if (mode === "whep") {
        pc.addTransceiver("video", { direction: "recvonly" });
        pc.addTransceiver("audio", { direction: "recvonly" });
      } else {
        const stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 360 }, audio: true });
        for (const track of stream.getTracks()) {
          const t = pc.addTransceiver(track, { direction: "sendonly" });
          if (track.kind === "video") {
            const h264 = RTCRtpSender.getCapabilities("video").codecs.filter((c) => c.mimeType === "video/H264");
            t.setCodecPreferences(h264);
          }
        }
      }
      await pc.setLocalDescription(await pc.createOffer());
      const r = await fetch(url, { method: "POST", headers: { "Content-Type": "application/sdp" }, body: pc.localDescription.sdp });
      const answer = await r.text();
      if (r.status !== 201) return { status: r.status, body: answer };
      const location = r.headers.get("Location");
      await pc.setRemoteDescription({ type: "answer", sdp: answer });
      await new Promise((res) => setTimeout(res, secs * 1000));
      const out = { status: 201, location, state: pc.connectionState };
      (await pc.getStats()).forEach((s) => {
        if (s.type === "inbound-rtp" && s.kind === "video") Object.assign(out, { framesDecoded: s.framesDecoded, frameWidth: s.frameWidth, frameHeight: s.frameHeight, keyFramesDecoded: s.keyFramesDecoded });
        if (s.type === "inbound-rtp" && s.kind === "audio") Object.assign(out, { audioPackets: s.packetsReceived, audioBytes: s.bytesReceived, audioSamples: s.totalSamplesReceived });
        if (s.type === "outbound-rtp" && s.kind === "video") Object.assign(out, { framesEncoded: s.framesEncoded, encoder: s.encoderImplementation });
        if (s.type === "outbound-rtp" && s.kind === "audio") out.audioPacketsSent = s.packetsSent;
        if (s.type === "codec") (out.codecs ||= []).push(s.mimeType);
      });
      const del = await fetch(new URL(location, url), { method: "DELETE" });
      out.deleted = del.status;
      pc.close();
      return out;
    }, [args.mode || "whep", args.url, seconds]);
    process.stdout.write(JSON.stringify({ ok: true, ...result, console: lines }) + "\n");
  } finally {
    if (context) await context.close().catch(() => {});
    rmSync(profile, { recursive: true, force: true });
  }
}

main().then(() => process.exit(0), (e) => {
  process.stdout.write(JSON.stringify({ ok: false, error: String(e && e.stack || e), console: lines }) + "\n");
  process.exit(2);
});
