#!/usr/bin/env python3
"""End-to-end latency of WebRTC playback: WHIP -> WHEP and RTMP -> WHEP.

Method: this script draws each video frame itself with its index in 16 black/white 32x64 blocks, writes it as raw
video to ffmpeg's stdin at 30 fps (recording the moment each frame is handed over), and ffmpeg encodes it with
libx264 `-tune zerolatency -bf 0` and publishes it either over WHIP (ffmpeg 9.0.2 `-f whip`) or over RTMP (Debian
ffmpeg); `--audio` adds a tone (Opus on WHIP, AAC on RTMP, so the AAC -> Opus bridge runs), at the price of
ffmpeg's own interleaving delay on the publisher side. An aiortc 1.16 WHEP viewer in the same
process decodes every frame, reads the index back from the blocks and takes `arrival - handed_over`. The figure is
capture-to-decoded: x264 encode, the network hop, ferrocast, str0m, aiortc's jitter buffer and H.264 decode. The
first 3 s (the GOP-cache start of an RTMP stream) are left out.

    FERROCAST_BIN=target/debug/ferrocast .venv/bin/python scripts/webrtc_latency.py [seconds] [--audio]
"""
from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import aiohttp  # noqa: E402
import numpy as np  # noqa: E402
import webrtc_client  # noqa: E402,F401  (loopback ICE candidates for aiortc)
from aiortc import RTCPeerConnection, RTCSessionDescription  # noqa: E402
from conftest import Server, ffmpeg9, tool  # noqa: E402

W, H, FPS, BITS = 640, 360, 30, 16
X0, Y0, BW, BH = 64, 148, 32, 64


def draw(i: int) -> bytes:
    img = np.full((H, W, 3), 40, dtype=np.uint8)
    for b in range(BITS):
        v = 255 if (i >> b) & 1 else 0
        img[Y0:Y0 + BH, X0 + b * BW:X0 + (b + 1) * BW] = v
    return img.tobytes()


def read_index(rgb: np.ndarray) -> int:
    y = Y0 + BH // 2
    return sum(1 << b for b in range(BITS) if rgb[y, X0 + b * BW + BW // 2].mean() > 128)


class Feeder(threading.Thread):
    def __init__(self, argv: list[str], seconds: float):
        super().__init__(daemon=True)
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.sent: dict[int, float] = {}
        self.seconds = seconds

    def run(self):
        t0 = time.monotonic()
        i = 0
        try:
            while time.monotonic() - t0 < self.seconds:
                due = t0 + i / FPS
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                frame = draw(i)
                self.sent[i] = time.monotonic()
                self.proc.stdin.write(frame)
                self.proc.stdin.flush()
                i += 1
        except (BrokenPipeError, OSError):
            pass
        finally:
            try:
                self.proc.stdin.close()
            except OSError:
                pass


WITH_AUDIO = "--audio" in sys.argv


def encoder(ffmpeg: str, audio: list[str], out: list[str]) -> list[str]:
    # Video only by default: with a second (lavfi, -re) input, ffmpeg's muxer interleaving holds video back by the
    # start-up offset between the two inputs (several hundred ms), which is the publisher's latency, not ours.
    inputs = ["-re", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"] if WITH_AUDIO else []
    maps = ["-map", "0:v"] + (["-map", "1:a", *audio] if WITH_AUDIO else [])
    return [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error",
            "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{W}x{H}", "-r", str(FPS), "-i", "-", *inputs,
            *maps, "-c:v", "libx264", "-tune", "zerolatency", "-bf", "0", "-g", "60",
            "-profile:v", "baseline", "-pix_fmt", "yuv420p", *out]


async def watch(url: str, feeder: Feeder, seconds: float) -> list[float]:
    pc = RTCPeerConnection()
    pc.addTransceiver("video", direction="recvonly")
    pc.addTransceiver("audio", direction="recvonly")
    got: list = []
    pc.on("track", lambda t: got.append(t) if t.kind == "video" else None)
    await pc.setLocalDescription(await pc.createOffer())
    async with aiohttp.ClientSession() as http:
        async with http.post(url, data=pc.localDescription.sdp, headers={"Content-Type": "application/sdp"}) as r:
            assert r.status == 201, await r.text()
            answer = await r.text()
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    start = time.monotonic()
    while not got:
        await asyncio.sleep(0.01)
    lat = []
    while time.monotonic() - start < seconds:
        try:
            frame = await asyncio.wait_for(got[0].recv(), 2)
        except asyncio.TimeoutError:
            break
        now = time.monotonic()
        idx = read_index(frame.to_ndarray(format="rgb24"))
        if idx in feeder.sent and now - start > 3:
            lat.append((now - feeder.sent[idx]) * 1000)
    await pc.close()
    return lat


def report(name: str, lat: list[float]):
    if not lat:
        print(f"{name}: no frames measured")
        return
    lat.sort()
    p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]  # noqa: E731
    print(f"{name}: {len(lat)} frames, median {statistics.median(lat):.0f} ms, p10 {p(0.1):.0f} ms, "
          f"p90 {p(0.9):.0f} ms, max {lat[-1]:.0f} ms")


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    seconds = float(args[0]) if args else 15
    s = Server(Path(tempfile.mkdtemp(prefix="rtc-latency-"))).start()
    try:
        # WHIP -> WHEP
        f = Feeder(encoder(ffmpeg9(), ["-c:a", "libopus", "-ar", "48000", "-ac", "2"],
                           ["-f", "whip", s.http("/whip/live/lat")]), seconds + 8)
        f.start()
        s.wait_media("lat", timeout=20)
        report("WHIP -> WHEP (capture to decoded)", asyncio.run(watch(s.http("/whep/live/lat"), f, seconds)))
        f.proc.kill()
        # RTMP -> WHEP
        g = Feeder(encoder(tool("ffmpeg"), ["-c:a", "aac", "-ar", "44100"], ["-f", "flv", s.rtmp("lat2")]),
                   seconds + 8)
        g.start()
        s.wait_media("lat2", timeout=20)
        report("RTMP -> WHEP (capture to decoded)", asyncio.run(watch(s.http("/whep/live/lat2"), g, seconds)))
        g.proc.kill()
    finally:
        s.stop()


if __name__ == "__main__":
    main()
