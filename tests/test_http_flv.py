"""HTTP-FLV at the byte level (a plain HTTP client), /healthz and /metrics."""

from __future__ import annotations

import time

import pytest
import requests

from conftest import FlvReader, publish, wait_until

GRACE_MS = 500


@pytest.fixture(scope="module")
def server(server_factory):
    return server_factory({"FERROCAST_HUB_PUBLISHER_GRACE_MS": str(GRACE_MS)})


def test_healthz(server):
    r = requests.get(server.http("/healthz"), timeout=5)
    assert r.status_code == 200


def test_not_live_is_404(server):
    r = requests.get(server.flv("nosuchstream"), timeout=5)
    assert r.status_code == 404, f"GET of a stream that is not live answered {r.status_code}"
    r = requests.get(server.flv("nosuchstream", app="otherapp"), timeout=5)
    assert r.status_code == 404


def test_flv_headers_and_first_tags(server):
    pub = publish(server.rtmp("raw"), 8, name="pub-raw")
    try:
        server.wait_live("raw")
        with requests.get(server.flv("raw"), stream=True, timeout=(5, 10),
                          headers={"Origin": "http://player.example"}) as r:
            assert r.status_code == 200
            assert r.headers.get("Content-Type", "").startswith("video/x-flv"), r.headers
            assert r.headers.get("Access-Control-Allow-Origin") == "*", r.headers
            assert r.headers.get("Transfer-Encoding", "").lower() == "chunked", r.headers
            assert "Content-Length" not in r.headers, r.headers
            flv = FlvReader(r.raw.read)
            assert flv.header[4] & 0x05 == 0x05, f"FLV header flags {flv.header[4]:#x}: audio and video expected"
            tags = [flv.tag() for _ in range(3)]
            assert tags[0].type == 18 and b"onMetaData" in tags[0].data[:20], \
                f"first tag should be the onMetaData script tag, got type {tags[0].type} {tags[0].data[:20]!r}"
            configs = tags[1:3]
            assert any(t.is_video_config for t in configs), \
                f"tags 2-3 should be the AVC and AAC sequence headers: {[(t.type, t.data[:2].hex()) for t in configs]}"
            assert any(t.is_audio_config for t in configs), \
                f"tags 2-3 should be the AVC and AAC sequence headers: {[(t.type, t.data[:2].hex()) for t in configs]}"
            video_cfg = next(t for t in configs if t.is_video_config)
            assert video_cfg.data[0] == 0x17 and video_cfg.data[5] == 1, "AVCDecoderConfigurationRecord expected"
            # Then media: the first video frame is a keyframe, timestamps per track never go back, ~2 s arrive.
            last = {8: -1, 9: -1}
            first_video = None
            counts = {8: 0, 9: 0}
            deadline = time.monotonic() + 10
            while counts[9] < 60 and time.monotonic() < deadline:
                t = flv.tag()
                if t.type not in (8, 9):
                    continue
                if t.type == 9 and first_video is None:
                    first_video = t
                    assert t.is_video_keyframe and t.data[1] == 1, \
                        f"first video tag after the config is not an AVC keyframe: {t.data[:5].hex()}"
                assert t.timestamp >= last[t.type], f"type-{t.type} timestamp {t.timestamp} after {last[t.type]}"
                last[t.type] = t.timestamp
                counts[t.type] += 1
            assert counts[9] >= 60 and counts[8] >= 40, f"tags received in 10 s: {counts}"
    finally:
        pub.kill()


def test_metrics_move(server):
    m = server.metrics()
    for name in ("ferrocast_streams", "ferrocast_viewers", "ferrocast_publishers", "ferrocast_bytes_in_total",
                 "ferrocast_bytes_out_total", "ferrocast_connections_rejected_total",
                 "ferrocast_frames_dropped_slow_viewer_total", "ferrocast_viewers_disconnected_stalled_total",
                 "ferrocast_frames_in_total", "process_resident_memory_bytes"):
        assert m.has(name), f"/metrics lacks {name}:\n{m.text}"
    assert m.get("process_resident_memory_bytes") > 1_000_000
    wait_until(lambda: server.metrics().get("ferrocast_viewers", protocol="http-flv") == 0, 10, what="no viewers")
    before = server.metrics()

    pub = publish(server.rtmp("counted"), 8, name="pub-counted")
    try:
        server.wait_live("counted")
        wait_until(lambda: server.metrics().get("ferrocast_viewers", protocol="http-flv") == 0, 5,
                   what="the liveness probe viewer to be gone")
        with requests.get(server.flv("counted"), stream=True, timeout=(5, 10)) as r:
            assert r.status_code == 200
            got = 0
            while got < 300_000:
                chunk = r.raw.read(65536)
                assert chunk, "HTTP-FLV response ended early"
                got += len(chunk)
            m = server.metrics()
            assert m.get("ferrocast_viewers", protocol="http-flv") == 1, \
                f"viewers{{protocol=\"http-flv\"}} while one client watches:\n{m.text}"
            assert m.get("ferrocast_publishers", protocol="rtmp") == 1, m.text
            assert m.get("ferrocast_streams") >= 1, m.text
            assert m.get("ferrocast_bytes_in_total") > before.get("ferrocast_bytes_in_total"), m.text
            assert m.get("ferrocast_bytes_out_total") >= before.get("ferrocast_bytes_out_total") + 200_000, \
                f"{got} bytes read by the client, bytes_out moved by " \
                f"{m.get('ferrocast_bytes_out_total') - before.get('ferrocast_bytes_out_total')}:\n{m.text}"
            assert m.get("ferrocast_frames_in_total") > before.get("ferrocast_frames_in_total") + 30, m.text
        wait_until(lambda: server.metrics().get("ferrocast_viewers", protocol="http-flv") == 0, 5,
                   what="viewers{protocol=\"http-flv\"} back to 0 after the client closed")
        assert pub.wait(30) == 0, pub.tail(20)
        wait_until(lambda: server.metrics().get("ferrocast_streams") == 0, GRACE_MS / 1000 + 5,
                   what="ferrocast_streams back to 0 after the push and the grace period")
        m = server.metrics()
        assert m.get("ferrocast_publishers") == 0, m.text
        assert requests.get(server.flv("counted"), timeout=5).status_code == 404, "ended stream still served"
    finally:
        pub.kill()


def test_flv_response_ends_when_stream_ends(server):
    pub = publish(server.rtmp("ending"), 4, name="pub-ending")
    try:
        server.wait_live("ending")
        with requests.get(server.flv("ending"), stream=True, timeout=(5, 15)) as r:
            assert r.status_code == 200
            t0 = time.monotonic()
            total = 0
            for chunk in r.iter_content(65536):  # raises on a broken chunked encoding
                total += len(chunk)
            took = time.monotonic() - t0
        assert total > 50_000
        assert took < 4 + GRACE_MS / 1000 + 5, f"response ended {took:.1f}s after it began"
        assert pub.wait(10) == 0
    finally:
        pub.kill()
