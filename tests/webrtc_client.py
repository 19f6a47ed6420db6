"""aiortc WHEP viewer / WHIP publisher used by tests/test_webrtc.py (aiortc 1.16).

aiortc gathers no loopback candidates by default; the server listens on 127.0.0.1, so host candidates are forced
to 127.0.0.1 (TESTING.md)."""
from __future__ import annotations

import asyncio
import fractions
import time
from dataclasses import dataclass, field

import aiohttp
import aioice.ice
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]


@dataclass
class WhepResult:
    status: int
    body: str = ""
    location: str | None = None
    video_frames: int = 0
    audio_frames: int = 0
    width: int = 0
    height: int = 0
    audio_rate: int = 0
    audio_channels: int = 0
    first_video_at: float | None = None
    connected_at: float | None = None
    # (arrival monotonic, frame pts seconds) of each decoded video frame, for latency estimates.
    video_times: list[tuple[float, float]] = field(default_factory=list)
    video_samples: list = field(default_factory=list)
    deleted: int | None = None


async def _consume(track, res: WhepResult, kind: str, until: float, keep: int):
    while time.monotonic() < until:
        try:
            frame = await asyncio.wait_for(track.recv(), timeout=max(0.05, until - time.monotonic()))
        except (asyncio.TimeoutError, MediaStreamError):
            return
        now = time.monotonic()
        if kind == "video":
            res.video_frames += 1
            res.width, res.height = frame.width, frame.height
            if res.first_video_at is None:
                res.first_video_at = now
            pts = float(frame.pts * frame.time_base) if frame.pts is not None else 0.0
            res.video_times.append((now, pts))
            if len(res.video_samples) < keep:
                res.video_samples.append((now, frame.to_ndarray(format="rgb24")))
        else:
            res.audio_frames += 1
            res.audio_rate = frame.sample_rate
            res.audio_channels = len(frame.layout.channels)


async def whep_play(url: str, seconds: float, token: str | None = None, keep_samples: int = 0) -> WhepResult:
    """Plays `url` over WHEP (recvonly H.264 + Opus) for `seconds` after the POST; counts decoded frames."""
    pc = RTCPeerConnection()
    pc.addTransceiver("video", direction="recvonly")
    pc.addTransceiver("audio", direction="recvonly")
    tracks = []
    pc.on("track", lambda t: tracks.append(t))
    await pc.setLocalDescription(await pc.createOffer())
    headers = {"Content-Type": "application/sdp"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    async with aiohttp.ClientSession() as http:
        async with http.post(url, data=pc.localDescription.sdp, headers=headers) as r:
            res = WhepResult(r.status, await r.text(), r.headers.get("Location"))
        if res.status != 201:
            await pc.close()
            return res
        await pc.setRemoteDescription(RTCSessionDescription(sdp=res.body, type="answer"))
        until = time.monotonic() + seconds
        while not tracks or len(tracks) < 2:
            if time.monotonic() > until:
                break
            await asyncio.sleep(0.02)
        await asyncio.gather(*[_consume(t, res, t.kind, until, keep_samples) for t in tracks])
        if res.location:
            base = url.split("/whep/")[0]
            async with http.delete(base + res.location) as d:
                res.deleted = d.status
    await pc.close()
    return res


def play(url: str, seconds: float, **kw) -> WhepResult:
    return asyncio.run(asyncio.wait_for(whep_play(url, seconds, **kw), seconds + 20))


async def whip_publish(url: str, seconds: float, token: str | None = None, codec: str = "H264") -> tuple[int, str]:
    """Publishes a synthetic picture (`codec`: H264 or VP8 only in the offer) + a tone for `seconds` over WHIP."""
    import numpy as np
    from aiortc import AudioStreamTrack, VideoStreamTrack
    from av import AudioFrame, VideoFrame

    class Video(VideoStreamTrack):
        async def recv(self):
            pts, tb = await self.next_timestamp()
            img = np.zeros((360, 640, 3), dtype=np.uint8)
            img[:, :, 1] = (pts // 3000) % 255
            f = VideoFrame.from_ndarray(img, format="rgb24")
            f.pts, f.time_base = pts, tb
            return f

    class Tone(AudioStreamTrack):
        n = 0

        async def recv(self):
            await super().recv()  # paces at 20 ms
            t = (np.arange(960) + self.n) / 48000
            self.n += 960
            s = (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16)
            f = AudioFrame.from_ndarray(np.stack([s, s]).reshape(1, -1), format="s16", layout="stereo")
            f.sample_rate, f.pts, f.time_base = 48000, self.n - 960, fractions.Fraction(1, 48000)
            return f

    pc = RTCPeerConnection()
    vt = pc.addTransceiver(Video(), direction="sendonly")
    from aiortc.rtcrtpsender import RTCRtpSender
    caps = RTCRtpSender.getCapabilities("video")
    vt.setCodecPreferences([c for c in caps.codecs if c.mimeType == f"video/{codec}"])
    pc.addTransceiver(Tone(), direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    headers = {"Content-Type": "application/sdp"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    async with aiohttp.ClientSession() as http:
        async with http.post(url, data=pc.localDescription.sdp, headers=headers) as r:
            status, body = r.status, await r.text()
        if status == 201:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))
            await asyncio.sleep(seconds)
    await pc.close()
    return status, body
