"""HLS (TS and fMP4), LL-HLS, DASH, the audio-only/video-only outputs and AES-128 HLS, played by ffmpeg, by a
plain HTTP client at the protocol level, and by hls.js / dash.js in headless Chromium."""

from __future__ import annotations

import hashlib
import re
import time

import pytest
import requests

from browser import play_dash, play_hls, summary
from conftest import FlvReader, check_media, decode_errors, ffmpeg9, has_encoder, probe_packets, publish, run, tool, wait_until
from test_api import PLAY, PUSH, SECRET_ID, SECRET_KEY, call, client

SEGMENT_MS = 1000
PART_MS = 300
ENV = {
    "FERROCAST_HLS_SEGMENT_MS": str(SEGMENT_MS),
    "FERROCAST_HLS_PART_MS": str(PART_MS),
    "FERROCAST_HLS_LINGER_MS": "20000",
    "FERROCAST_HUB_PUBLISHER_GRACE_MS": "500",
}


@pytest.fixture(scope="module")
def server(server_factory):
    return server_factory(ENV)


@pytest.fixture(scope="module")
def live(server):
    """One publisher for the module: 25 fps, a keyframe every second, AAC."""
    pub = publish(server.rtmp("hls"), 90, rate=25, gop=25, name="pub-hls")
    server.wait_live("hls")
    wait_until(lambda: len(segments(playlist(server, "hls"))) >= 3, 20, what="three HLS segments")
    yield pub
    pub.kill()


def playlist(server, stream: str, query: str = "") -> str:
    r = requests.get(server.http(f"/live/{stream}.m3u8{query}"), timeout=10)
    return r.text if r.status_code == 200 else ""


def segments(text: str) -> list[tuple[float, str]]:
    """(EXTINF duration, URI) of every segment of a playlist."""
    lines = text.splitlines()
    return [(float(line[8:].split(",")[0]), lines[i + 1]) for i, line in enumerate(lines)
            if line.startswith("#EXTINF:") and i + 1 < len(lines)]


def tag_values(text: str, tag: str) -> list[str]:
    return [line[len(tag) + 1:] for line in text.splitlines() if line.startswith(tag + ":")]


def attr(tag_value: str, name: str) -> str | None:
    m = re.search(rf'(?:^|,){name}=("([^"]*)"|[^,]*)', tag_value)
    return None if not m else (m.group(2) if m.group(2) is not None else m.group(1))


def grab(url: str, out, seconds: float, limit: float = 40, ffmpeg: str | None = None) -> None:
    """ffmpeg reads `seconds` of `url` and copies it, untouched, into `out`."""
    r = run([ffmpeg or tool("ffmpeg"), "-nostdin", "-v", "error", "-i", url, "-map", "0:v?", "-map", "0:a?", "-c", "copy",
             "-t", str(seconds), "-y", str(out)], limit=limit)
    assert r.rc == 0, f"ffmpeg could not read {url}: {r.stderr[-2000:]}"


@pytest.mark.parametrize("kind", ["ts", "fmp4", "dash"])
def test_ffmpeg_decodes_every_frame(server, live, tmp_path, kind):
    url = {"ts": server.http("/live/hls.m3u8"), "fmp4": server.http("/live/hls.m3u8?format=fmp4"),
           "dash": server.http("/live/hls.mpd")}[kind]
    out = tmp_path / f"{kind}.flv"
    grab(url, out, 4)
    check_media(out, min_seconds=3.0, fps=25)


def test_segments_start_on_keyframes_and_match_their_durations(server, live, tmp_path):
    text = playlist(server, "hls")
    assert "#EXT-X-TARGETDURATION:1\n" in text, text
    assert tag_values(text, "#EXT-X-MEDIA-SEQUENCE"), text
    segs = segments(text)
    assert len(segs) >= 3, text
    for i, (duration, uri) in enumerate(segs[-3:]):
        r = requests.get(server.http(f"/live/{uri}"), timeout=10)
        assert r.status_code == 200 and r.headers["Content-Type"] == "video/mp2t", (uri, r.status_code)
        assert r.content[0] == 0x47 and len(r.content) % 188 == 0, "not whole 188-byte TS packets"
        path = tmp_path / f"seg{i}.ts"
        path.write_bytes(r.content)
        m = probe_packets(path)
        assert m.video and m.video[0].key, f"segment {uri} does not start with a keyframe: {m.summary()}"
        assert sum(p.key for p in m.video) == 1, f"one GOP per segment: {m.summary()}"
        assert abs(duration - 1.0) < 0.05, (uri, duration)
        assert abs(len(m.video) - 25) <= 1 and len(m.audio) > 30, m.summary()


def test_audio_only_and_video_only_outputs(server, live, tmp_path):
    for query, want in [("?only=audio", {"aac"}), ("?only=video", {"h264"}), ("?only=audio&format=fmp4", {"aac"}),
                        ("?only=video&format=fmp4", {"h264"})]:
        out = tmp_path / f"only{len(query)}.mkv"
        grab(server.http(f"/live/hls.m3u8{query}"), out, 2)
        m = probe_packets(out)
        assert {s["codec_name"] for s in m.streams} == want, (query, m.summary())
    assert requests.get(server.http("/live/hls.m3u8?only=subtitles"), timeout=5).status_code == 400
    mpd = requests.get(server.http("/live/hls.mpd?only=audio"), timeout=10).text
    assert mpd.count("<AdaptationSet") == 1 and 'contentType="audio"' in mpd, mpd
    # HTTP-FLV: the FLV header announces only the kept track, and only its tags follow.
    with requests.get(server.flv("hls") + "?only=audio", stream=True, timeout=10) as r:
        assert r.status_code == 200
        reader = FlvReader(r.raw.read)
        assert reader.header[4] == 0x04, f"FLV header flags {reader.header[4]:#x}: audio only"
        types = {reader.tag().type for _ in range(60)}
        assert types <= {8, 18} and 8 in types, types


def test_ll_hls_blocking_reload_parts_and_preload_hint(server, live):
    text = playlist(server, "hls", "?format=fmp4")
    assert "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES" in text, text
    assert f"#EXT-X-PART-INF:PART-TARGET={PART_MS / 1000:.3f}" in text, text
    hint = attr(tag_values(text, "#EXT-X-PRELOAD-HINT")[-1], "URI")
    msn, part = (int(x) for x in re.search(r"/(\d+)\.(\d+)\.m4s", hint).groups())

    # The hinted part does not exist yet: the request waits for it and then gets it.
    t0 = time.monotonic()
    r = requests.get(server.http(f"/live/{hint}"), timeout=10)
    waited = time.monotonic() - t0
    assert r.status_code == 200 and r.headers["Content-Type"] == "video/iso.segment", r.status_code
    assert r.content[4:8] == b"moof", r.content[:16]
    assert waited <= PART_MS / 1000 + 0.5, f"preload hint answered after {waited:.2f}s"

    # Blocking reloads for each next part return as soon as it exists, at the part cadence.
    arrivals, durations = [], []
    for _ in range(8):
        part += 1
        t0 = time.monotonic()
        r = requests.get(server.http(f"/live/hls.m3u8?format=fmp4&_HLS_msn={msn}&_HLS_part={part}"), timeout=10)
        assert r.status_code == 200, r.text
        arrivals.append(time.monotonic())
        parts = [(attr(v, "URI"), float(attr(v, "DURATION"))) for v in tag_values(r.text, "#EXT-X-PART")]
        names = {re.search(r"(\d+\.\d+)\.m4s", u).group(1): d for u, d in parts}
        if f"{msn}.{part}" not in names:
            # The segment ended before that part: the next segment's first part comes instead.
            msn, part = msn + 1, 0
            assert f"{msn}.0" in names or any(n.startswith(f"{msn - 1}.") for n in names), r.text
        durations.extend(d for u, d in parts)
        assert all(d <= PART_MS / 1000 + 1e-9 for d in durations), durations
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:])]
    assert sum(gaps) / len(gaps) <= PART_MS / 1000 + 0.15, f"parts arrived every {gaps}"

    # Far-future requests are refused (RFC 8216bis: more than two segments ahead).
    r = requests.get(server.http(f"/live/hls.m3u8?format=fmp4&_HLS_msn={msn + 10}"), timeout=10)
    assert r.status_code == 400, r.status_code


def test_reconnect_continues_the_playlist_after_a_discontinuity(server, tmp_path):
    """A publisher that returns after its stream ended continues the same playlist: sequence numbers go on, an
    EXT-X-DISCONTINUITY marks the new timeline, and the fMP4 playlist switches to a new init segment."""
    first = publish(server.rtmp("again"), 4, rate=25, gop=25, name="pub-again-1")
    assert first.wait(30) == 0, first.tail(20)
    # Past the hub's grace period: the stream ended, and the next publisher starts a new timeline (a publisher
    # back within the grace period continues the old one seamlessly, without a discontinuity).
    wait_until(lambda: not server.is_live("again"), 10, what="the first push to end")
    before = playlist(server, "again")
    assert before, "the playlist lingers after the publisher left"
    last_before = int(re.search(r"/(\d+)\.ts", segments(before)[-1][1]).group(1))
    second = publish(server.rtmp("again"), 8, rate=25, gop=25, name="pub-again-2")
    try:
        def last_number() -> int:
            segs = segments(playlist(server, "again"))
            return int(re.search(r"/(\d+)\.ts", segs[-1][1]).group(1)) if segs else -1
        wait_until(lambda: last_number() >= last_before + 3, 20, what="new segments")
        text = playlist(server, "again")
        uris = [u for _, u in segments(text)]
        numbers = [int(re.search(r"/(\d+)\.ts", u).group(1)) for u in uris]
        assert numbers == list(range(numbers[0], numbers[0] + len(numbers))), numbers
        lines = text.splitlines()
        cut = lines.index("#EXT-X-DISCONTINUITY")
        after = next(line for line in lines[cut:] if line.endswith(".ts"))
        assert int(re.search(r"/(\d+)\.ts", after).group(1)) == last_before + 1, text
        out = tmp_path / "again.flv"
        grab(server.http("/live/again.m3u8"), out, 3)
        assert not run([tool("ffmpeg"), "-v", "error", "-i", str(out), "-f", "null", "-"]).stderr.strip()
        fmp4 = playlist(server, "again", "?format=fmp4")
        maps = {attr(v, "URI") for v in tag_values(fmp4, "#EXT-X-MAP")}
        assert any("init-1.mp4" in m for m in maps), fmp4
    finally:
        second.kill()


@pytest.mark.parametrize("codec,audio,formats", [("hevc", "aac", ["ts", "fmp4"]), ("av1", "opus", ["fmp4"])])
def test_hevc_av1_and_opus(server, tmp_path, codec, audio, formats):
    """Enhanced RTMP HEVC and AV1/Opus pushes (ffmpeg 9) play over HLS: HEVC in TS and fMP4, AV1 and Opus in fMP4
    (MPEG-TS has no AV1 mapping: refused with a clear error)."""
    ff9 = ffmpeg9()
    if codec == "av1" and not (has_encoder(ff9, "libsvtav1") or has_encoder(ff9, "libaom-av1")):
        pytest.skip("no AV1 encoder in ffmpeg 9")
    stream = f"x{codec}"
    pub = publish(server.rtmp(stream), 12, codec=codec, audio=audio, size="320x240", rate=25, gop=25, ffmpeg=ff9,
                  name=f"pub-{stream}")
    try:
        server.wait_live(stream)
        wait_until(lambda: len(segments(playlist(server, stream, "?format=fmp4"))) >= 2, 20, what="segments")
        want = {"hevc": "hevc", "av1": "av1"}[codec]
        for fmt in formats:
            out = tmp_path / f"{stream}-{fmt}.mkv"
            grab(server.http(f"/live/{stream}.m3u8?format={fmt}"), out, 2, ffmpeg=ff9)
            m = probe_packets(out)
            assert {s["codec_name"] for s in m.streams} == {want, audio}, (fmt, m.summary())
            assert m.video and m.video[0].key and len(m.video) >= 40, (fmt, m.summary())
            errors = decode_errors(out)
            assert not errors, f"{fmt}: " + "\n".join(errors[:10])
        if "ts" not in formats:
            r = requests.get(server.http(f"/live/{stream}.m3u8?format=ts"), timeout=10)
            assert r.status_code == 400 and "MPEG-TS" in r.text and "fmp4" in r.text, (r.status_code, r.text)
    finally:
        pub.kill()


def test_not_live_and_bad_requests(server):
    assert requests.get(server.http("/live/nosuch.m3u8"), timeout=5).status_code == 404
    assert requests.get(server.http("/live/nosuch.mpd"), timeout=5).status_code == 404
    assert requests.get(server.http("/live/nosuch/hls/av/1.ts"), timeout=5).status_code == 404
    assert requests.get(server.http("/live/nosuch/hls/xx/1.ts"), timeout=5).status_code == 404


def test_hls_js_plays_low_latency_in_chromium(server, live):
    # From a page of another origin: ferrocast's CORS headers are what lets it play.
    r = play_hls(server.http("/live/hls.m3u8?format=fmp4"), seconds=8, low_latency=True, cross_origin=True)
    assert not r["fatal"] and r["frames_decoded"] > 120, summary(r)
    assert r["low_latency_mode"] and r["parts_loaded"] > 5, summary(r)
    assert r["latency"] is not None and r["latency"] < 3.0, summary(r)
    assert (r["width"], r["height"]) == (640, 360), summary(r)


def test_hls_js_plays_ts_and_dash_js_plays_the_mpd(server, live):
    r = play_hls(server.http("/live/hls.m3u8"), seconds=6)
    assert not r["fatal"] and r["frames_decoded"] > 80, summary(r)
    r = play_dash(server.http("/live/hls.mpd"), seconds=8)
    assert not r["fatal"] and r["frames_decoded"] > 80, summary(r)


def test_aes128_hls_with_protected_keys(server_factory, tmp_path):
    server = server_factory({**ENV, "FERROCAST_API_SECRET_ID": SECRET_ID, "FERROCAST_API_SECRET_KEY": SECRET_KEY,
                             "FERROCAST_SERVER_DEFAULT_DOMAIN": PUSH, "FERROCAST_HLS_ENCRYPT_DOMAINS": f'["{PUSH}"]',
                             "FERROCAST_HLS_KEY_ROTATION_SEGMENTS": "2", "FERROCAST_HLS_SEGMENT_NAME": "{stream}-{seq}"})
    c = client(server)
    call(c, "AddLiveDomain", {"DomainName": PUSH, "DomainType": 0})
    call(c, "AddLiveDomain", {"DomainName": PLAY, "DomainType": 1})
    call(c, "ModifyLivePushAuthKey", {"DomainName": PUSH, "Enable": 0})
    call(c, "ModifyLivePlayAuthKey", {"DomainName": PLAY, "Enable": 1, "AuthKey": "playkey", "AuthDelta": 0})
    pub = publish(server.rtmp("enc"), 30, rate=25, gop=25, name="pub-enc")
    try:
        tx_time = f"{int(time.time()) + 3600:08X}"
        signed = f"txHost={PLAY}&txSecret={hashlib.md5(f'playkeyenc{tx_time}'.encode()).hexdigest()}&txTime={tx_time}"
        url = server.http(f"/live/enc.m3u8?{signed}")
        wait_until(lambda: len(segments(requests.get(url, timeout=5).text)) >= 3, 25, what="encrypted segments")
        text = requests.get(url, timeout=5).text
        assert all(re.search(r"/hls/av/enc-\d+\.ts\?", u) for _, u in segments(text)), "segment_name template"
        keys = tag_values(text, "#EXT-X-KEY")
        assert keys and all(attr(k, "METHOD") == "AES-128" for k in keys), text
        assert len({attr(k, "URI") for k in keys}) >= 2, f"keys rotate every 2 segments: {keys}"
        key_uri = attr(keys[-1], "URI")
        assert "txSecret=" in key_uri, key_uri
        seg = requests.get(server.http(f"/live/{segments(text)[-1][1]}"), timeout=5).content
        assert seg[0] != 0x47 or seg[188] != 0x47, "the segment is not encrypted"
        k = requests.get(server.http(f"/live/{key_uri}"), timeout=5)
        assert k.status_code == 200 and len(k.content) == 16
        # Without the token, neither the playlist nor the key.
        assert requests.get(server.http(f"/live/{key_uri.split('?')[0]}?txHost={PLAY}"), timeout=5).status_code == 403
        assert requests.get(server.http(f"/live/enc.m3u8?txHost={PLAY}"), timeout=5).status_code == 403
        # fMP4 and DASH would bypass the encryption: refused.
        assert requests.get(server.http(f"/live/enc.m3u8?{signed}&format=fmp4"), timeout=5).status_code == 400
        out = tmp_path / "enc.flv"
        grab(url, out, 3)
        check_media(out, min_seconds=2.0, fps=25)
    finally:
        pub.kill()


def test_hls_and_dash_players_are_counted_as_viewers(server, live):
    for ua in ("player-one", "player-two"):
        assert requests.get(server.http("/live/hls.m3u8"), headers={"User-Agent": ua}, timeout=10).status_code == 200
    assert requests.get(server.http("/live/hls.mpd"), headers={"User-Agent": "dash"}, timeout=10).status_code == 200

    def counted() -> bool:
        m = server.metrics()
        return m.get("ferrocast_viewers", protocol="hls") >= 2 and m.get("ferrocast_viewers", protocol="dash") >= 1
    wait_until(counted, 5, what="HLS and DASH players in the viewers gauge")
