"""Proves that the browser playback harness (tests/browser.py) can fail: on files ffmpeg writes at test time,
served by Python's http.server, a playlist with missing segments, a missing manifest and a cross-origin page
without CORS headers are all reported as broken. That hls.js and dash.js play good streams is shown by test_hls
against the real server."""

from __future__ import annotations

import functools
import http.server
import threading
from pathlib import Path

import pytest

from browser import play_dash, play_hls, summary
from conftest import free_port, run, tool

FFMPEG_SOURCE = [
    "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25",
    "-f", "lavfi", "-i", "sine",
    "-t", "10", "-c:v", "libx264", "-g", "25", "-c:a", "aac",
]  # fmt: skip


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # noqa: D102 - keep pytest output clean
        pass


def _serve(root: Path, handler_cls) -> tuple[str, http.server.ThreadingHTTPServer]:
    port = free_port()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), functools.partial(handler_cls, directory=str(root)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{port}", httpd


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory) -> Path:
    """A directory with HLS-TS, HLS-fMP4 and DASH renditions of the same 10 s clip."""
    root: Path = tmp_path_factory.mktemp("browser-media")
    ffmpeg = tool("ffmpeg")
    (root / "ts").mkdir()
    (root / "fmp4").mkdir()
    (root / "dash").mkdir()
    run([ffmpeg, "-hide_banner", "-loglevel", "error", *FFMPEG_SOURCE,
         "-f", "hls", "-hls_time", "1", "-hls_playlist_type", "vod", root / "ts" / "index.m3u8"],
        limit=60, check=True)  # fmt: skip
    run([ffmpeg, "-hide_banner", "-loglevel", "error", *FFMPEG_SOURCE,
         "-f", "hls", "-hls_time", "1", "-hls_playlist_type", "vod", "-hls_segment_type", "fmp4",
         "-hls_fmp4_init_filename", "init.mp4", "-hls_segment_filename", str(root / "fmp4" / "seg%d.m4s"),
         root / "fmp4" / "index.m3u8"],
        limit=60, check=True)  # fmt: skip
    run([ffmpeg, "-hide_banner", "-loglevel", "error", *FFMPEG_SOURCE,
         "-f", "dash", "-seg_duration", "1", root / "dash" / "manifest.mpd"],
        limit=60, check=True)  # fmt: skip
    # A playlist whose segments do not exist.
    good = (root / "ts" / "index.m3u8").read_text()
    (root / "ts" / "missing.m3u8").write_text(good.replace("index", "gone"))
    assert "gone0.ts" in (root / "ts" / "missing.m3u8").read_text()
    return root


@pytest.fixture(scope="module")
def media(media_dir):
    """media_dir over HTTP (Python's http.server: no CORS headers)."""
    url, httpd = _serve(media_dir, _QuietHandler)
    try:
        yield url
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.mark.timeout(60)
def test_missing_segments_are_reported(media):
    r = play_hls(f"{media}/ts/missing.m3u8", seconds=6)
    assert r["frames_decoded"] == 0, summary(r)
    assert any("fragLoadError" in e and "404" in e for e in r["errors"]), summary(r)


@pytest.mark.timeout(60)
def test_missing_manifest_is_fatal_for_dash(media):
    r = play_dash(f"{media}/dash/nothere.mpd", seconds=4)
    assert r["fatal"] and r["errors"] and r["frames_decoded"] == 0, summary(r)


@pytest.mark.timeout(60)
def test_cross_origin_page_needs_cors(media):
    # cross_origin=True puts the page on http://localhost:9 while the media is on 127.0.0.1: the server's CORS
    # headers decide. Plain http.server sends none, so the browser must refuse (test_hls plays ferrocast's
    # streams this way, so its CORS headers are what makes them play).
    r = play_hls(f"{media}/ts/index.m3u8", seconds=3, cross_origin=True)
    assert r["frames_decoded"] == 0 and r["fatal"], summary(r)
    assert any("Access-Control-Allow-Origin" in line for line in r["console"]), summary(r)
