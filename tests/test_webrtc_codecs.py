"""H.265 and AV1 over WebRTC (str0m 0.25 packetizes and depacketizes both): WHEP plays an Enhanced RTMP H.265 / AV1
stream to a viewer that offers the codec, and refuses (415) a viewer that does not; WHIP takes H.265 / AV1 from a
publisher that offers no H.264 and the stream plays over HTTP-FLV as Enhanced RTMP `hvc1` / `av01`.

aiortc has neither codec, so webrtc_client registers passthrough ones: publishing sends access units encoded
beforehand by ffmpeg (RFC 7798 / AV1 RTP packetization in Python), playing depacketizes what arrives into a raw
bitstream that ffmpeg decodes; the checks are decoded frame counts. This module runs after the other WebRTC
tests (the registration is process-wide)."""
from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

from conftest import check_media, decode_errors, decoded_video_frames, ffmpeg9, has_encoder, publish, record, run, tool

webrtc_client = pytest.importorskip("webrtc_client", reason="aiortc is not installed: pip install -r tests/requirements.txt")

SECONDS = 20


@pytest.fixture(scope="module")
def server(server_factory):
    return server_factory({"FERROCAST_HUB_PUBLISHER_GRACE_MS": "300"})


def encoded_units(codec: str, out: Path) -> list[bytes]:
    """Two seconds of testsrc2 encoded by Debian's ffmpeg without B-frames, one entry per access unit."""
    import av

    if codec == "H265":
        path, size = out / "units.hevc", "640x360"
        video = ["-c:v", "libx265", "-preset", "ultrafast", "-x265-params",
                 "keyint=30:min-keyint=30:scenecut=0:bframes=0:repeat-headers=1:log-level=error", "-f", "hevc"]
    else:
        path, size = out / "units.obu", "320x240"
        video = ["-c:v", "libaom-av1", "-usage", "realtime", "-cpu-used", "8", "-g", "30", "-b:v", "300k",
                 "-f", "obu"]
    run([tool("ffmpeg"), "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=30", "-t", "2",
         "-pix_fmt", "yuv420p", *video, str(path)], limit=120, check=True)
    with av.open(str(path)) as f:
        units = [bytes(p) for p in f.demux(video=0) if p.size]
    assert len(units) >= 55, len(units)
    return units


def whep_capture(server, stream: str, codec: str, seconds: float) -> tuple[int, str]:
    return asyncio.run(asyncio.wait_for(
        webrtc_client.whep_capture(server.http(f"/whep/live/{stream}"), seconds, codec), seconds + 20))


def check_received(received: dict, codec: str, path: Path, min_frames: int) -> None:
    d = received[codec]["depacketizer"]
    assert d.frames >= min_frames and d.keyframes >= 1, (d.frames, d.keyframes)
    path.write_bytes(b"".join(received[codec]["units"]))
    packets, frames = decoded_video_frames(path)
    assert frames >= min_frames, f"{path}: {frames} frames decoded of {packets} packets"
    assert not decode_errors(path), decode_errors(path)


@pytest.mark.parametrize("codec", ["H265", "AV1"])
def test_whep_plays_enhanced_rtmp_streams(server, tmp_path, codec):
    ff9 = ffmpeg9()
    stream = codec.lower()
    if codec == "H265":
        if not has_encoder(ff9, "libx265"):
            pytest.skip("the ffmpeg 9 build has no libx265")
        video = ["-c:v", "libx265", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", "30", "-x265-params",
                 "keyint=30:min-keyint=30:scenecut=0:bframes=0:log-level=error"]
        pub = publish(server.rtmp(stream), SECONDS, ffmpeg=ff9, video_args=video, name=f"pub-{stream}")
    else:
        pub = publish(server.rtmp(stream), SECONDS, codec="av1", size="320x240", ffmpeg=ff9, name=f"pub-{stream}")
    server.wait_live(stream, timeout=25)
    time.sleep(1.5)
    # A viewer that offers only VP8 cannot get this video: refused with a message, not sent audio only.
    status, body = whep_capture(server, stream, "VP8", 1)
    want = "H.265" if codec == "H265" else "AV1"
    assert status == 415 and f"is {want} video" in body, (status, body)

    received = webrtc_client.enable_extra_codecs()
    status, answer = whep_capture(server, stream, codec, 6)
    assert status == 201, answer
    assert f"{codec}/90000" in answer.upper(), answer
    ext = "hevc" if codec == "H265" else "obu"
    # 6 s at 30 fps, starting from the GOP cache; AV1's realtime encoder may drop a few frames under load.
    check_received(received, codec, tmp_path / f"whep.{ext}", 100)
    pub.kill()


@pytest.mark.parametrize("codec", ["H265", "AV1"])
def test_whip_publish_plays_over_flv(server, tmp_path, codec):
    ff9 = ffmpeg9()
    stream = f"whip{codec.lower()}"
    webrtc_client.enable_extra_codecs({codec: encoded_units(codec, tmp_path)})
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("r", asyncio.run(asyncio.wait_for(
        webrtc_client.whip_publish(server.http(f"/whip/live/{stream}"), 12, codec=codec), 40))), daemon=True)
    t.start()
    server.wait_live(stream, timeout=20)
    # Recorded by ffmpeg 9 into containers Debian's ffprobe reads (it reads no Enhanced RTMP FLV).
    out = tmp_path / (f"{stream}.ts" if codec == "H265" else f"{stream}.mp4")
    v = record(server.flv(stream), out, ffmpeg=ff9, extra_in=["-t", "4"], limit=30, name=f"flv-{stream}")
    assert v.wait(30) == 0, v.tail()
    vcodec, size = ("hevc", "640x360") if codec == "H265" else ("av1", "320x240")
    # The Opus of the publisher arrives as AAC; the video is the publisher's, untouched.
    m = check_media(out, vcodec=vcodec, size=size, dts=False, min_seconds=2.5, max_gap=0.2)
    assert sum(p.key for p in m.video) >= 1, m.summary()
    _, frames = decoded_video_frames(out)
    assert frames >= 60, frames
    t.join(40)
    assert result.get("r", (0,))[0] == 201, result
    assert f"{codec}/90000" in result["r"][1].upper(), result["r"][1]


def test_whep_refuses_h265_with_b_frames(server):
    ff9 = ffmpeg9()
    if not has_encoder(ff9, "libx265"):
        pytest.skip("the ffmpeg 9 build has no libx265")
    # x265's default GOP has B-frames (composition offsets WebRTC cannot carry).
    pub = publish(server.rtmp("hevcbf"), SECONDS, codec="hevc", ffmpeg=ff9, name="pub-hevcbf")
    server.wait_live("hevcbf", timeout=25)
    time.sleep(2)
    before = server.metrics().get("ferrocast_webrtc_bframes_refused_total")
    webrtc_client.enable_extra_codecs()
    status, body = whep_capture(server, "hevcbf", "H265", 1)
    assert status == 422 and "H.265 with B-frames" in body and "-bf 0" in body, (status, body)
    assert server.metrics().get("ferrocast_webrtc_bframes_refused_total") == before + 1
    pub.kill()
