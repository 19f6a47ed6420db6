"""Browser playback for the black-box tests: headless Chromium (Debian's /usr/bin/chromium) driven by Node and
playwright-core, playing HLS with hls.js or DASH with dash.js (both from npm, tests/browser/node_modules).

    from browser import play_hls, play_dash
    r = play_hls(url, seconds=8, low_latency=True)
    assert r["frames_decoded"] > 100 and not r["fatal"], r

Each call starts a fresh browser (fresh profile in a temp dir), loads a test page on the media's own origin (so no
CORS is needed; `cross_origin=True` serves the page from another origin, so the server's CORS headers are tested
too), plays for `seconds`, and returns a dict:

    frames_decoded  int    video.getVideoPlaybackQuality().totalVideoFrames
    dropped         int    droppedVideoFrames
    errors          [str]  every hls.js ERROR event (fatal or not, with type/details/HTTP status/fragment URL), every
                           dash.js ERROR/PLAYBACK_ERROR, <video> MediaErrors
    fatal           bool   a fatal hls.js error, any dash.js ERROR, or a <video> MediaError
    latency         float|None  seconds behind the live edge (hls.latency / dash getCurrentLiveLatency); None for VOD
    low_latency_mode bool  hls: config.lowLatencyMode and the playlist is LL-HLS (parts or CAN-BLOCK-RELOAD);
                           dash: dash.js' low-latency mode is on (dash.js 5 turns it on by itself when the MPD asks
                           for it: ServiceDescription/availabilityTimeOffset; `low_latency` has no effect on dash)
    low_latency_config, low_latency_playlist  bool  the two halves of low_latency_mode
    parts_loaded    int    hls.js FRAG_LOADED events for LL-HLS parts
    fragments_loaded int   whole segments loaded
    current_time    float  video.currentTime at the end
    width, height   int    video.videoWidth/videoHeight
    live            bool   the playlist/manifest is live
    mse_h264, mse_aac bool MediaSource.isTypeSupported for avc1.64001f / mp4a.40.2
    console         [str]  last lines of the page console, HTTP >= 400 responses, failed requests

If Chromium or tests/browser/node_modules is missing, the test is skipped with the install command, unless the
environment variable FERROCAST_REQUIRE_BROWSER is set (CI), in which case it fails.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

BROWSER_DIR = Path(__file__).resolve().parent / "browser"
PLAY_SCRIPT = BROWSER_DIR / "play.mjs"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
INSTALL_HINT = (
    "install it with `apt-get install -y chromium` and `npm ci --prefix tests/browser` "
    "(Node 20 with npm; scripts/test.sh does both)"
)
# Beyond the playing time: browser start, page load, shutdown.
OVERHEAD_S = 40


def _missing(what: str) -> None:
    msg = f"browser playback unavailable: {what}; {INSTALL_HINT}"
    if os.environ.get("FERROCAST_REQUIRE_BROWSER"):
        pytest.fail(msg, pytrace=False)
    pytest.skip(msg)


def _check_installed(kind: str) -> str:
    node = shutil.which("node")
    if not node:
        _missing("`node` is not on PATH")
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        _missing(f"{CHROMIUM} is missing")
    lib = {"hls": "hls.js", "dash": "dashjs"}[kind]
    for pkg in ("playwright-core", lib):
        if not (BROWSER_DIR / "node_modules" / pkg / "package.json").is_file():
            _missing(f"tests/browser/node_modules/{pkg} is missing")
    return node


def play(url: str, kind: str, seconds: float = 8, low_latency: bool = False, cross_origin: bool = False) -> dict:
    """Plays `url` (kind "hls" or "dash") in headless Chromium for `seconds`; returns the result dict above.

    Raises AssertionError if the harness itself breaks (browser does not start, no result line, time limit)."""
    node = _check_installed(kind)
    args = {
        "url": url,
        "kind": kind,
        "seconds": seconds,
        "lowLatency": bool(low_latency),
        "crossOrigin": bool(cross_origin),
        "chromium": CHROMIUM,
    }
    limit = int(seconds + OVERHEAD_S)
    argv = ["timeout", "-s", "KILL", str(limit), node, str(PLAY_SCRIPT), json.dumps(args)]
    # Own process group: on the time limit `timeout` kills node only, so Chromium's processes are killed by group.
    p = subprocess.Popen(
        argv,
        cwd=BROWSER_DIR,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
        start_new_session=True,
    )
    try:
        out, err = p.communicate(timeout=limit + 10)
    except subprocess.TimeoutExpired:
        out, err = "", "python-side time limit"
    finally:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait()
    if p.returncode in (137, -9):
        raise AssertionError(f"browser playback killed after its {limit}s limit: {url}\n{err[-3000:]}")
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    if not lines:
        raise AssertionError(f"browser harness printed no result (exit {p.returncode}) for {url}\n{err[-3000:]}")
    result = json.loads(lines[-1])
    if not result.get("ok"):
        raise AssertionError(f"browser harness failed for {url}: {result.get('harness_error')}\n{err[-3000:]}")
    return result


def play_hls(url: str, seconds: float = 8, low_latency: bool = False, cross_origin: bool = False) -> dict:
    """Plays an HLS playlist with hls.js (lowLatencyMode = `low_latency`)."""
    return play(url, "hls", seconds=seconds, low_latency=low_latency, cross_origin=cross_origin)


def play_dash(url: str, seconds: float = 8, low_latency: bool = False, cross_origin: bool = False) -> dict:
    """Plays a DASH manifest with dash.js (which picks low-latency mode from the MPD itself)."""
    return play(url, "dash", seconds=seconds, low_latency=low_latency, cross_origin=cross_origin)


def summary(r: dict) -> str:
    """A short text of a result, for assertion messages."""
    keys = ("frames_decoded", "dropped", "fatal", "errors", "latency", "low_latency_mode", "parts_loaded",
            "fragments_loaded", "current_time", "width", "height", "console")
    return json.dumps({k: r.get(k) for k in keys}, indent=1)
