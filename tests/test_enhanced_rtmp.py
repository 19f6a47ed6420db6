"""Enhanced RTMP (FourCC codecs: HEVC `hvc1`, AV1 `av01`, Opus) passed through to RTMP and HTTP-FLV viewers.

Published and played with ffmpeg 9.0.2 (the imageio-ffmpeg==0.8.1 wheel), recorded with -c copy to Matroska, and
checked with Debian's ffprobe/ffmpeg (which cannot read Enhanced-RTMP FLV itself, but reads the .mkv)."""

from __future__ import annotations

import pytest
import requests

from conftest import FlvReader, check_media, ffmpeg9, has_encoder, publish, record

PUSH = 6.0


@pytest.fixture(scope="module")
def ff9():
    return ffmpeg9()


@pytest.fixture(scope="module")
def server(server_factory):
    return server_factory({"FERROCAST_HUB_PUBLISHER_GRACE_MS": "500"})


def first_tags(server, stream: str, count: int = 8):
    """The first tags of an HTTP-FLV response (script, sequence headers, first frames)."""
    with requests.get(server.flv(stream), stream=True, timeout=(5, 10)) as r:
        assert r.status_code == 200, f"HTTP-FLV of {stream}: {r.status_code}"
        flv = FlvReader(r.raw.read)
        return [flv.tag() for _ in range(count)]


def describe(tags) -> str:
    return ", ".join(f"{t.type}:{t.data[:5].hex()}" for t in tags)


def push_and_watch(server, ff9, tmp_path, stream, *, codec, audio, size, vcodec, acodec, video_fourcc,
                   audio_fourcc=None):
    pub = publish(server.rtmp(stream), PUSH, codec=codec, audio=audio, size=size, ffmpeg=ff9, name=f"pub-{stream}")
    server.wait_live(stream)
    viewers = {
        "rtmp": record(server.rtmp(stream), tmp_path / f"{stream}-rtmp.mkv", ffmpeg=ff9, name=f"rtmp-{stream}"),
        "flv": record(server.flv(stream), tmp_path / f"{stream}-flv.mkv", ffmpeg=ff9, name=f"flv-{stream}"),
    }
    # What goes over the wire: the Enhanced RTMP sequence start with the publisher's FourCC, then a keyframe.
    tags = first_tags(server, stream)
    assert tags[0].type == 18, f"first tag is not script data: {describe(tags)}"
    vcfg = [t for t in tags if t.is_video_config]
    assert vcfg and vcfg[0].fourcc == video_fourcc, \
        f"expected an Enhanced RTMP video SequenceStart with FourCC {video_fourcc!r}: {describe(tags)}"
    coded = [t for t in tags if t.type == 9 and t.data and (t.data[0] & 0x0F) in (1, 3) and t.data[0] & 0x80]
    assert coded and coded[0].is_video_keyframe, f"first coded video frame is not a keyframe: {describe(tags)}"
    if audio_fourcc:
        acfg = [t for t in tags if t.is_audio_config]
        assert acfg and acfg[0].fourcc == audio_fourcc, \
            f"expected an Enhanced RTMP audio SequenceStart with FourCC {audio_fourcc!r}: {describe(tags)}"

    assert pub.wait(PUSH + 40) == 0, f"publisher failed:\n{pub.tail(25)}"
    for name, v in viewers.items():
        rc = v.wait(10)
        assert rc == 0, f"{name} viewer (ffmpeg 9) exit {rc}:\n{v.tail(25)}"
        m = check_media(tmp_path / f"{stream}-{name}.mkv", vcodec=vcodec, acodec=acodec, size=size, dts=False,
                        min_seconds=PUSH - 2.5)
        assert max(p.pts for p in m.video) >= PUSH - 0.6, m.summary()


def test_hevc_over_enhanced_rtmp(server, ff9, tmp_path):
    if not has_encoder(ff9, "libx265"):
        pytest.skip("the imageio-ffmpeg ffmpeg 9.0.2 build has no libx265 encoder: HEVC not tested")
    push_and_watch(server, ff9, tmp_path, "hevc", codec="hevc", audio="aac", size="640x360", vcodec="hevc",
                   acodec="aac", video_fourcc=b"hvc1")


def test_av1_over_enhanced_rtmp(server, ff9, tmp_path):
    if not (has_encoder(ff9, "libsvtav1") or has_encoder(ff9, "libaom-av1")):
        pytest.skip("the imageio-ffmpeg ffmpeg 9.0.2 build has no AV1 encoder (libsvtav1/libaom-av1): AV1 not tested")
    push_and_watch(server, ff9, tmp_path, "av1", codec="av1", audio="aac", size="320x240", vcodec="av1",
                   acodec="aac", video_fourcc=b"av01")


def test_opus_audio_over_enhanced_rtmp(server, ff9, tmp_path):
    if not has_encoder(ff9, "libopus"):
        pytest.skip("the imageio-ffmpeg ffmpeg 9.0.2 build has no libopus encoder: Opus not tested")
    push_and_watch(server, ff9, tmp_path, "opus", codec="hevc", audio="opus", size="640x360", vcodec="hevc",
                   acodec="opus", video_fourcc=b"hvc1", audio_fourcc=b"Opus")

