"""WebRTC in headless Chromium: WHEP playback of an RTMP stream (frames decoded per getStats()), of an AV1 one, and
WHIP publishing of the fake camera/microphone, played back over HTTP-FLV with AAC audio.

Chromium gathers no loopback ICE candidates, so the browser runs in its own network namespace joined to the host by
a veth pair (198.18.x.0/24, TESTING.md); the server listens on the host end. Needs root (ip netns), Chromium and
tests/browser/node_modules (scripts/test.sh installs them); skipped otherwise unless FERROCAST_REQUIRE_BROWSER."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import decode_errors, ffmpeg9, probe_packets, publish, record, run

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "browser" / "webrtc.mjs"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


def _need(ok: bool, what: str):
    if ok:
        return
    msg = f"browser WebRTC tests unavailable: {what} (apt-get install chromium iproute2; npm ci --prefix tests/browser)"
    if os.environ.get("FERROCAST_REQUIRE_BROWSER"):
        pytest.fail(msg, pytrace=False)
    pytest.skip(msg)


@pytest.fixture(scope="module")
def netns():
    _need(Path(CHROMIUM).exists(), f"no {CHROMIUM}")
    _need((HERE / "browser" / "node_modules" / "playwright-core").is_dir(), "no playwright-core")
    _need(shutil.which("node") is not None, "no node")
    # The namespace is the environment's to give (root, CAP_NET_ADMIN): without it the test is skipped even in CI.
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("browser WebRTC tests need root and `ip` (iproute2) for a network namespace")
    n = os.getpid() % 250 + 1
    ns, va, vb = f"fcrtc{os.getpid()}", f"fcr{os.getpid() % 100000}a", f"fcr{os.getpid() % 100000}b"
    host, peer = f"198.18.{n}.1", f"198.18.{n}.2"
    cmds = [["ip", "netns", "add", ns], ["ip", "link", "add", va, "type", "veth", "peer", "name", vb],
            ["ip", "link", "set", vb, "netns", ns], ["ip", "addr", "add", f"{host}/24", "dev", va],
            ["ip", "link", "set", va, "up"],
            ["ip", "netns", "exec", ns, "ip", "addr", "add", f"{peer}/24", "dev", vb],
            ["ip", "netns", "exec", ns, "ip", "link", "set", vb, "up"],
            ["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"]]
    try:
        for c in cmds:
            r = subprocess.run(c, capture_output=True, text=True, timeout=10)
            if r.returncode != 0:
                pytest.skip(f"no network namespace for the browser: {' '.join(c)}: {r.stderr.strip()}")
        yield ns, host
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)
        subprocess.run(["ip", "link", "del", va], capture_output=True, timeout=10)


@pytest.fixture(scope="module")
def server(server_factory, netns):
    _, host = netns
    s = server_factory({"FERROCAST_HUB_PUBLISHER_GRACE_MS": "300",
                        "FERROCAST_WEBRTC_UDP_LISTEN": f"{host}:0",
                        "FERROCAST_WEBRTC_TCP_LISTEN": f"{host}:0"}, start=False)
    s.env["FERROCAST_HTTP_LISTEN"] = f"0.0.0.0:{s.http_port}"
    return s.start()


def browser(netns, server, mode: str, path: str, seconds: float) -> dict:
    ns, host = netns
    arg = json.dumps({"mode": mode, "url": f"http://{host}:{server.http_port}{path}", "seconds": seconds})
    r = run(["ip", "netns", "exec", ns, "node", str(SCRIPT), arg], limit=seconds + 60)
    line = (r.stdout or "").strip().splitlines()[-1:] or ["{}"]
    out = json.loads(line[0])
    assert out.get("ok"), f"chromium harness failed: {out} {r.stderr[-2000:]}"
    return out


def test_chromium_whep_plays_an_rtmp_stream(netns, server):
    pub = publish(server.rtmp("chrome"), 25, tune="zerolatency")
    server.wait_media("chrome")
    out = browser(netns, server, "whep", "/whep/live/chrome", 6)
    print("chromium whep:", {k: v for k, v in out.items() if k != "console"})
    assert out["status"] == 201, out
    assert out.get("framesDecoded", 0) >= 90, out
    assert (out.get("frameWidth"), out.get("frameHeight")) == (640, 360), out
    # Opus packets from the AAC bridge (20 ms each); headless Chromium has no audio device to play them out to.
    assert out.get("audioPackets", 0) > 150, out
    assert "video/H264" in out.get("codecs", []) and "audio/opus" in out.get("codecs", []), out
    assert out.get("deleted") == 200, out
    pub.kill()


def test_chromium_whep_decodes_av1_from_enhanced_rtmp(netns, server):
    """An AV1 stream (Enhanced RTMP `av01` from ffmpeg 9) plays over WHEP as AV1: Chromium decodes it."""
    pub = publish(server.rtmp("chromeav1"), 25, codec="av1", size="320x240", ffmpeg=ffmpeg9(), name="pub-av1")
    server.wait_live("chromeav1", timeout=25)
    out = browser(netns, server, "whep", "/whep/live/chromeav1", 6)
    print("chromium whep av1:", {k: v for k, v in out.items() if k != "console"})
    assert out["status"] == 201, out
    assert "video/AV1" in out.get("codecs", []), out
    # 6 s at 30 fps from the GOP cache; the realtime AV1 encoder may drop frames on a loaded machine.
    assert out.get("framesDecoded", 0) >= 60 and out.get("keyFramesDecoded", 0) >= 1, out
    assert (out.get("frameWidth"), out.get("frameHeight")) == (320, 240), out
    pub.kill()


def test_chromium_whip_publish_plays_over_flv(netns, server, tmp_path):
    import threading

    res = {}
    t = threading.Thread(target=lambda: res.setdefault("out", browser(netns, server, "whip", "/whip/live/chromepub", 12)),
                         daemon=True)
    t.start()
    server.wait_media("chromepub", timeout=25)
    v = record(server.flv("chromepub"), tmp_path / "chrome.flv", extra_in=["-t", "4"], limit=30, name="flv-chrome")
    assert v.wait(30) == 0, v.tail()
    m = probe_packets(tmp_path / "chrome.flv")
    assert m.video_stream and m.video_stream["codec_name"] == "h264", m.summary()
    assert m.audio_stream and m.audio_stream["codec_name"] == "aac" and len(m.audio) > 50, m.summary()
    assert len(m.video) > 30, m.summary()
    # A camera/encoder-paced source has a variable frame rate: ffmpeg's null muxer, rounding to its guessed 1/fps
    # time base, reports two frames closer than one tick as "non monotonically increasing dts"; not a stream fault.
    errors = [e for e in decode_errors(tmp_path / "chrome.flv") if "non monotonically increasing dts to muxer" not in e]
    assert not errors, errors
    t.join(60)
    out = res.get("out", {})
    print("chromium whip:", {k: v for k, v in out.items() if k != "console"}, m.summary())
    assert out.get("status") == 201 and out.get("framesEncoded", 0) > 100, out
