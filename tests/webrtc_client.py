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
    # Trickle ICE PATCH statuses: the client's own candidates, and an ICE restart (another ufrag).
    trickle: int | None = None
    restart: int | None = None


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


def _trickle_fragment(sdp: str, ufrag: str | None = None) -> str:
    """An RFC 8840 SDP fragment with the offer's ICE credentials (or another ufrag) and its candidates."""
    lines = [l for l in sdp.splitlines() if l.startswith(("a=ice-ufrag:", "a=ice-pwd:", "a=candidate:"))]
    if ufrag:
        lines = [f"a=ice-ufrag:{ufrag}" if l.startswith("a=ice-ufrag:") else l for l in lines]
    return "\r\n".join(dict.fromkeys(lines)) + "\r\na=end-of-candidates\r\n"


async def whep_play(url: str, seconds: float, token: str | None = None, keep_samples: int = 0,
                    trickle: bool = False) -> WhepResult:
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
        if trickle and res.location:
            base = url.split("/whep/")[0]
            frag = {"Content-Type": "application/trickle-ice-sdpfrag"}
            async with http.patch(base + res.location, data=_trickle_fragment(pc.localDescription.sdp),
                                  headers=frag) as p:
                res.trickle = p.status
            async with http.patch(base + res.location, data=_trickle_fragment(pc.localDescription.sdp, "RESTART1"),
                                  headers=frag) as p:
                res.restart = p.status
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


# -- H.265 and AV1: aiortc has no codec for them, so these tests add passthrough ones ---------------------------
# Publishing sends access units encoded beforehand by ffmpeg, packetized here (H.265 RFC 7798: single NAL units and
# FUs; AV1 RTP spec: one OBU element per packet, fragmented with Z/Y). Playing depacketizes what arrives back into
# an Annex B / low-overhead OBU file that ffmpeg then decodes: the check is the decoded frame count.

MTU = 1100


def _annexb_nals(data: bytes) -> list[bytes]:
    import re
    return [n.rstrip(b"\0") for n in re.split(b"\x00\x00\x01", data) if n.rstrip(b"\0")]


def h265_packetize(access_unit: bytes) -> list[bytes]:
    out = []
    for nal in _annexb_nals(access_unit):
        if len(nal) <= MTU:
            out.append(nal)
            continue
        t = (nal[0] >> 1) & 0x3F
        head = bytes([(nal[0] & 0x81) | (49 << 1), nal[1]])
        rest = nal[2:]
        for i in range(0, len(rest), MTU):
            fu = t | (0x80 if i == 0 else 0) | (0x40 if i + MTU >= len(rest) else 0)
            out.append(head + bytes([fu]) + rest[i:i + MTU])
    return out


def _leb128(data: bytes, pos: int) -> tuple[int, int]:
    value = 0
    for i in range(8):
        b = data[pos + i]
        value |= (b & 0x7F) << (7 * i)
        if not b & 0x80:
            return value, i + 1
    raise ValueError("bad leb128")


def _leb128_bytes(v: int) -> bytes:
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def _obus(tu: bytes) -> list[tuple[int, bytes, bytes]]:
    """(type, header bytes without the size flag, payload) of each OBU of a low-overhead temporal unit."""
    out, pos = [], 0
    while pos < len(tu):
        h = tu[pos]
        hlen = 2 if h & 0x04 else 1
        header = bytes([h & ~0x02]) + tu[pos + 1:pos + hlen]
        pos += hlen
        if h & 0x02:
            size, n = _leb128(tu, pos)
            pos += n
        else:
            size = len(tu) - pos
        out.append(((h >> 3) & 0x0F, header, tu[pos:pos + size]))
        pos += size
    return out


def av1_packetize(tu: bytes) -> list[bytes]:
    obus = [o for o in _obus(tu) if o[0] not in (2, 8)]  # no temporal delimiters or tile lists over RTP
    new_sequence = any(t == 1 for t, _, _ in obus)
    out = []
    for t, header, payload in obus:
        element = header + payload
        chunks = [element[i:i + MTU] for i in range(0, len(element), MTU)]
        for i, c in enumerate(chunks):
            agg = (0x80 if i > 0 else 0) | (0x40 if i < len(chunks) - 1 else 0) | 0x10
            if new_sequence and not out:
                agg |= 0x08
            out.append(bytes([agg]) + c)
    return out


class _Depacketizer:
    """Reassembles received payloads (each prefixed with its length by `_tag`) into a bitstream file."""

    def __init__(self, codec: str, sink: list):
        self.codec, self.sink, self.frames, self.keyframes = codec, sink, 0, 0
        self.fu = bytearray()
        self.obu = bytearray()

    def decode(self, encoded_frame) -> list:
        data, pos, packets = encoded_frame.data, 0, []
        while pos + 4 <= len(data):
            n = int.from_bytes(data[pos:pos + 4], "big")
            packets.append(data[pos + 4:pos + 4 + n])
            pos += 4 + n
        au = self._h265(packets) if self.codec == "H265" else self._av1(packets)
        if au:
            self.frames += 1
            self.sink.append(au)
        return []

    def _h265(self, packets) -> bytes:
        out = bytearray()
        for p in packets:
            t = (p[0] >> 1) & 0x3F
            if t == 48:  # aggregation packet
                pos = 2
                while pos + 2 <= len(p):
                    n = int.from_bytes(p[pos:pos + 2], "big")
                    out += b"\0\0\0\1" + p[pos + 2:pos + 2 + n]
                    pos += 2 + n
            elif t == 49:  # fragmentation unit
                fu = p[2]
                if fu & 0x80:
                    self.fu = bytearray([(p[0] & 0x81) | ((fu & 0x3F) << 1), p[1]])
                self.fu += p[3:]
                if fu & 0x40:
                    out += b"\0\0\0\1" + self.fu
            else:
                out += b"\0\0\0\1" + p
        if any(((n[0] >> 1) & 0x3F) in range(16, 24) for n in _annexb_nals(bytes(out))):
            self.keyframes += 1
        return bytes(out)

    def _av1(self, packets) -> bytes:
        out = bytearray(b"\x12\x00")  # a temporal delimiter starts each temporal unit of an .obu file
        for p in packets:
            agg, pos = p[0], 1
            z, y, w = agg & 0x80, agg & 0x40, (agg >> 4) & 3
            if agg & 0x08:
                self.keyframes += 1
            elements = []
            i = 0
            while pos < len(p):
                i += 1
                if w and i == w:
                    elements.append(p[pos:])
                    break
                n, k = _leb128(p, pos)
                elements.append(p[pos + k:pos + k + n])
                pos += k + n
            for j, e in enumerate(elements):
                if j == 0 and z:
                    self.obu += e
                else:
                    self.obu = bytearray(e)
                if j == len(elements) - 1 and y:
                    continue
                h = self.obu[0]
                hlen = 2 if h & 0x04 else 1
                if h & 0x02:  # already sized
                    out += self.obu
                else:
                    out += bytes([h | 0x02]) + self.obu[1:hlen] + _leb128_bytes(len(self.obu) - hlen) + self.obu[hlen:]
                self.obu = bytearray()
        return bytes(out) if len(out) > 2 else b""


class _PassthroughEncoder:
    """Sends pre-encoded access units in order (looping), one per frame the track produces."""

    def __init__(self, codec: str, units: list[bytes]):
        self.codec, self.units, self.n = codec, units, 0

    def encode(self, frame, force_keyframe: bool = False):
        from aiortc.mediastreams import convert_timebase  # noqa: PLC0415
        unit = self.units[self.n % len(self.units)]
        self.n += 1
        packetize = h265_packetize if self.codec == "H265" else av1_packetize
        return packetize(unit), convert_timebase(frame.pts, frame.time_base, fractions.Fraction(1, 90000))


_EXTRA: dict = {}


def enable_extra_codecs(units: dict[str, list[bytes]] | None = None) -> dict:
    """Registers video/H265 and video/AV1 with aiortc (once), with `units` as what a publisher sends. Returns the
    per-codec depacketizers of received streams (filled while playing)."""
    import aiortc.codecs as codecs
    import aiortc.rtcrtpreceiver as receiver
    import aiortc.rtcrtpsender as sender
    from aiortc.rtcrtpparameters import RTCRtcpFeedback, RTCRtpCodecParameters

    if units:
        _EXTRA.setdefault("units", {}).update(units)
    if _EXTRA.get("installed"):
        return _EXTRA["received"]
    _EXTRA["installed"] = True
    _EXTRA["received"] = {}
    fb = [RTCRtcpFeedback(type="nack"), RTCRtcpFeedback(type="nack", parameter="pli")]
    codecs.CODECS["video"] += [
        RTCRtpCodecParameters(mimeType="video/H265", clockRate=90000, payloadType=120, rtcpFeedback=fb),
        RTCRtpCodecParameters(mimeType="video/AV1", clockRate=90000, payloadType=121, rtcpFeedback=fb),
    ]
    get_decoder, get_encoder, depayload = receiver.get_decoder, sender.get_encoder, receiver.depayload

    def extra_name(codec) -> str | None:
        name = codec.mimeType.split("/")[1].upper()
        return name if name in ("H265", "AV1") else None

    def _decoder(codec):
        name = extra_name(codec)
        if name is None:
            return get_decoder(codec)
        d = _Depacketizer(name, _EXTRA["received"].setdefault(name, {"units": []})["units"])
        _EXTRA["received"][name]["depacketizer"] = d
        return d

    def _encoder(codec):
        name = extra_name(codec)
        return get_encoder(codec) if name is None else _PassthroughEncoder(name, _EXTRA["units"][name])

    def _tag(codec, payload: bytes) -> bytes:
        # Keeps packet boundaries through aiortc's jitter buffer, which concatenates a frame's payloads.
        if extra_name(codec) is None:
            return depayload(codec, payload)
        return len(payload).to_bytes(4, "big") + payload

    receiver.get_decoder, sender.get_encoder, receiver.depayload = _decoder, _encoder, _tag
    return _EXTRA["received"]


async def whep_capture(url: str, seconds: float, codec: str) -> tuple[int, str]:
    """Plays `url` over WHEP offering only `codec` (H265 or AV1) for video; what arrives is collected by the
    depacketizer (see enable_extra_codecs)."""
    from aiortc.rtcrtpreceiver import RTCRtpReceiver

    enable_extra_codecs()
    pc = RTCPeerConnection()
    vt = pc.addTransceiver("video", direction="recvonly")
    vt.setCodecPreferences([c for c in RTCRtpReceiver.getCapabilities("video").codecs
                            if c.mimeType == f"video/{codec}"])
    pc.addTransceiver("audio", direction="recvonly")
    tracks = []
    pc.on("track", lambda t: tracks.append(t))
    await pc.setLocalDescription(await pc.createOffer())
    async with aiohttp.ClientSession() as http:
        async with http.post(url, data=pc.localDescription.sdp, headers={"Content-Type": "application/sdp"}) as r:
            status, body = r.status, await r.text()
        if status == 201:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))
            until = time.monotonic() + seconds

            async def drain(t):
                # The passthrough "decoder" yields no frames; keep the receivers running until the deadline.
                while time.monotonic() < until:
                    try:
                        await asyncio.wait_for(t.recv(), timeout=max(0.05, until - time.monotonic()))
                    except (asyncio.TimeoutError, MediaStreamError):
                        return
            while len(tracks) < 2 and time.monotonic() < until:
                await asyncio.sleep(0.02)
            await asyncio.gather(*[drain(t) for t in tracks])
    await pc.close()
    return status, body
