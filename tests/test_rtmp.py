"""RTMP publish, RTMP and HTTP-FLV play: what a viewer actually gets, checked with ffprobe and a decoder."""

from __future__ import annotations

import signal
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import FPS, GOP, check_media, decoded_video_frames, probe_packets, publish, record, wait_until

PUSH = 8.0  # seconds of media per push in the main session
GRACE_MS = 3000


def wait_exit(proc, timeout: float, what: str) -> int:
    rc = proc.wait(timeout)
    assert rc is not None, f"{what} did not end within {timeout:.1f}s ({proc!r}):\n{proc.tail(15)}"
    return rc


def sleep_until(t: float) -> None:
    time.sleep(max(0.0, t - time.monotonic()))


@pytest.fixture(scope="module")
def server(server_factory):
    """Default configuration except a short publisher grace (the main session ends faster)."""
    return server_factory({"FERROCAST_HUB_PUBLISHER_GRACE_MS": "1000"})


@pytest.fixture(scope="module")
def grace_server(server_factory):
    return server_factory({"FERROCAST_HUB_PUBLISHER_GRACE_MS": str(GRACE_MS)})


@pytest.fixture(scope="module")
def session(server, tmp_path_factory):
    """Two streams pushed at once for 8 s: `main` (x264 default preset, B-frames) and `zl` (-tune zerolatency).
    For each, an RTMP viewer and an HTTP-FLV viewer join ~1.5 s in and record until the stream ends."""
    out = tmp_path_factory.mktemp("session")
    pubs = {
        "main": publish(server.rtmp("main"), PUSH, name="pub-main"),
        "zl": publish(server.rtmp("zl"), PUSH, tune="zerolatency", name="pub-zl"),
    }
    with ThreadPoolExecutor(len(pubs)) as ex:  # each stream's own media start (x264 look-ahead differs)
        live = dict(zip(pubs, ex.map(server.wait_media, pubs)))
    viewers = {}
    for name in sorted(pubs, key=live.get):
        sleep_until(live[name] + 1.5)
        viewers[(name, "rtmp")] = record(server.rtmp(name), out / f"{name}-rtmp.flv", name=f"rtmp-{name}")
        viewers[(name, "flv")] = record(server.flv(name), out / f"{name}-flv.flv", name=f"flv-{name}")
    result = {"out": out, "pub_rc": {}, "viewer_rc": {}}
    for name, p in pubs.items():
        result["pub_rc"][name] = p.wait(PUSH + 25)
    for key, v in viewers.items():
        result["viewer_rc"][key] = v.wait(1.0 + 8)  # grace 1 s + a few s
    result["viewers"] = viewers
    result["pubs"] = pubs
    return result


@pytest.mark.parametrize("protocol", ["rtmp", "flv"])
@pytest.mark.parametrize("variant", ["main", "zl"])
def test_viewer_gets_the_whole_stream(session, variant, protocol):
    assert session["pub_rc"][variant] == 0, f"publisher {variant} failed:\n{session['pubs'][variant].tail(20)}"
    rc = session["viewer_rc"][(variant, protocol)]
    viewer = session["viewers"][(variant, protocol)]
    assert rc is not None, f"{protocol} viewer did not end within grace + 8 s after the push ended"
    assert rc == 0, f"{protocol} viewer exited with {rc}:\n{viewer.tail(20)}"
    m = check_media(session["out"] / f"{variant}-{protocol}.flv", min_seconds=PUSH - 2.5)
    first, last = m.video[0].dts, m.video[-1].dts
    # Joined 1.5 s in: the GOP cache starts it at the keyframe at 0 s; it must then see the push to its end.
    assert first < 0.5, f"first video frame at {first:.3f}s; joining at ~1.5s should start at the cached keyframe at 0s"
    assert last >= PUSH - 0.5, f"last video frame at {last:.3f}s; the push lasted {PUSH}s: {m.summary()}"
    assert m.audio[-1].dts >= PUSH - 0.6, f"audio ends at {m.audio[-1].dts:.3f}s of a {PUSH}s push: {m.summary()}"
    keys = [round(p.dts, 2) for p in m.video if p.key]
    assert len(keys) >= int((last - first) * FPS / GOP), f"keyframes at {keys}, -g {GOP}: {m.summary()}"


def test_b_frames_survive(session):
    m = probe_packets(session["out"] / "main-rtmp.flv")
    reordered = [p for p in m.video if p.pts is not None and p.dts is not None and abs(p.pts - p.dts) > 1e-6]
    assert len(reordered) > len(m.video) // 4, \
        f"only {len(reordered)} of {len(m.video)} video packets have pts != dts; x264's default preset makes B-frames"
    packets, frames = decoded_video_frames(m.path)
    assert frames == packets, f"{packets} video packets but {frames} decoded frames"
    m_flv = probe_packets(session["out"] / "main-flv.flv")
    assert sum(1 for p in m_flv.video if abs(p.pts - p.dts) > 1e-6) > len(m_flv.video) // 4, "HTTP-FLV lost B-frame pts"


def test_zerolatency_has_no_reordering(session):
    m = probe_packets(session["out"] / "zl-rtmp.flv")
    assert all(abs(p.pts - p.dts) < 1e-6 for p in m.video), "-tune zerolatency has no B-frames, yet pts != dts"


def test_viewer_joining_mid_gop_starts_on_the_cached_keyframe(server, tmp_path):
    pub = publish(server.rtmp("midgop"), 6, name="pub-midgop")
    t0 = server.wait_media("midgop")
    sleep_until(t0 + 3.0)  # -g 60 at 30 fps: keyframes at 0, 2, 4 s; this is 1 s after one
    viewer = record(server.rtmp("midgop"), tmp_path / "midgop.flv")
    assert wait_exit(pub, 30, "publisher") == 0
    wait_exit(viewer, 10, "viewer after the push ended")
    m = check_media(tmp_path / "midgop.flv", min_seconds=2.5)
    assert abs(m.video[0].dts - 2.0) < 0.1, \
        f"joined ~3 s in, expected to start at the keyframe at 2.0 s, started at {m.video[0].dts:.3f}s"
    packets, frames = decoded_video_frames(m.path)
    assert frames == packets, f"{packets} video packets but {frames} decoded frames: not decodable from the first"
    assert m.video[-1].dts >= 5.5


def test_without_gop_cache_viewer_waits_for_the_next_keyframe(server_factory, tmp_path):
    srv = server_factory({"FERROCAST_HUB_GOP_CACHE": "false", "FERROCAST_HUB_PUBLISHER_GRACE_MS": "500"})
    pub = publish(srv.rtmp("nocache"), 6, name="pub-nocache")
    # No probe viewer here (it would itself wait for a keyframe): media time 0 is when frames start coming in.
    t0 = wait_until(lambda: srv.metrics().get("ferrocast_frames_in_total") > 0 and time.monotonic(), 20, 0.02,
                    "the first frames to come in")
    sleep_until(t0 + 1.0)
    rtmp_viewer = record(srv.rtmp("nocache"), tmp_path / "nocache-rtmp.flv", name="rtmp-nocache")
    flv_viewer = record(srv.flv("nocache"), tmp_path / "nocache-flv.flv", name="flv-nocache")
    assert wait_exit(pub, 30, "publisher") == 0
    for v, name in ((rtmp_viewer, "rtmp"), (flv_viewer, "flv")):
        wait_exit(v, 10, f"{name} viewer after the push ended")
        m = check_media(tmp_path / f"nocache-{name}.flv", min_seconds=2.5)
        assert m.video[0].key
        assert m.video[0].dts >= 1.0, \
            f"{name}: gop_cache=false, joined ~1 s in, but got the cached keyframe at {m.video[0].dts:.3f}s"


def test_second_publisher_is_refused_while_the_first_keeps_going(server, tmp_path):
    pub1 = publish(server.rtmp("dup"), 10, name="pub-first")
    server.wait_media("dup")
    viewer = record(server.rtmp("dup"), tmp_path / "dup.flv")
    time.sleep(2.0)
    pub2 = publish(server.rtmp("dup"), 5, name="pub-second")
    rc2 = wait_exit(pub2, 15, "the second (duplicate) publisher")
    assert rc2 != 0, f"the second publisher to a live stream was accepted (exit 0):\n{pub2.tail(20)}"
    assert pub1.running(), f"the first publisher stopped when a second one tried:\n{pub1.tail(20)}"
    assert viewer.running(), "the viewer ended when a second publisher tried"
    assert wait_exit(pub1, 25, "the first publisher") == 0, pub1.tail(20)
    wait_exit(viewer, 10, "viewer after the push ended")
    m = check_media(tmp_path / "dup.flv", min_seconds=8.0)
    assert m.video[-1].dts >= 9.5, m.summary()


def test_killed_publisher_ends_viewers_after_grace(grace_server, tmp_path):
    srv = grace_server
    pub = publish(srv.rtmp("killed"), 30, name="pub-killed")
    srv.wait_media("killed")
    rtmp_viewer = record(srv.rtmp("killed"), tmp_path / "killed-rtmp.flv", name="rtmp-killed")
    flv_viewer = record(srv.flv("killed"), tmp_path / "killed-flv.flv", name="flv-killed")
    time.sleep(3.0)
    pub.signal(signal.SIGKILL)
    killed_at = time.monotonic()
    limit = GRACE_MS / 1000 + 4
    for v, name in ((rtmp_viewer, "rtmp"), (flv_viewer, "flv")):
        rc = v.wait(max(0.0, killed_at + limit - time.monotonic()))
        assert rc is not None, f"{name} viewer still running {limit:.0f}s after the publisher was killed (grace {GRACE_MS} ms)"
        assert rc == 0, f"{name} viewer exited with {rc}:\n{v.tail(15)}"
        ended = v.ended - killed_at
        assert ended >= GRACE_MS / 1000 - 0.5, f"{name} viewer ended {ended:.2f}s after the kill, before the grace period"
        check_media(tmp_path / f"killed-{name}.flv", min_seconds=2.0)
    assert not srv.is_live("killed"), "stream still live after the grace period"


def test_publisher_reconnecting_within_grace_continues_the_stream(grace_server, tmp_path):
    srv = grace_server
    pub1 = publish(srv.rtmp("resume"), 30, name="pub-resume-1")
    srv.wait_media("resume")
    rtmp_viewer = record(srv.rtmp("resume"), tmp_path / "resume-rtmp.flv", name="rtmp-resume")
    flv_viewer = record(srv.flv("resume"), tmp_path / "resume-flv.flv", name="flv-resume")
    time.sleep(3.0)
    pub1.signal(signal.SIGKILL)
    time.sleep(0.5)
    pub2 = publish(srv.rtmp("resume"), 5, name="pub-resume-2")
    time.sleep(2.0)
    for v, name in ((rtmp_viewer, "rtmp"), (flv_viewer, "flv")):
        assert v.running(), f"{name} viewer ended when the publisher dropped and came back within the grace period"
    assert wait_exit(pub2, 25, "the returning publisher") == 0, pub2.tail(20)
    for v, name in ((rtmp_viewer, "rtmp"), (flv_viewer, "flv")):
        wait_exit(v, GRACE_MS / 1000 + 4, f"{name} viewer after the second push ended")
        # One continuous stream: strictly increasing DTS, no hole, both pushes (~3 s + 5 s) in it.
        m = probe_packets(tmp_path / f"resume-{name}.flv")
        # Presentation never goes back: every frame before a keyframe (x264 makes closed GOPs) is shown before it.
        # A returning publisher's frames must not be timed before the B-frame-reordered tail of the first one.
        shown = -1.0
        for i, p in enumerate(m.video):
            assert not (p.key and p.pts <= shown), \
                f"{name}: keyframe #{i} at pts {p.pts:.3f}s is presented before earlier frames (up to {shown:.3f}s)"
            shown = max(shown, p.pts)
        m = check_media(tmp_path / f"resume-{name}.flv", min_seconds=7.0)
        keys = [round(p.dts, 2) for p in m.video if p.key]
        assert len(keys) >= 4, f"{name}: keyframes at {keys}; expected both publishers' GOPs"


def test_stream_key_with_auth_query_plays_at_plain_name(server, tmp_path):
    pub = publish(server.rtmp("authq?txSecret=abc&txTime=5F000000"), 6, name="pub-authq")
    server.wait_live("authq")
    rtmp_viewer = record(server.rtmp("authq"), tmp_path / "authq-rtmp.flv", name="rtmp-authq")
    flv_viewer = record(server.flv("authq"), tmp_path / "authq-flv.flv", name="flv-authq")
    assert wait_exit(pub, 30, "publisher") == 0, pub.tail(20)
    for v, name in ((rtmp_viewer, "rtmp"), (flv_viewer, "flv")):
        wait_exit(v, 10, f"{name} viewer after the push ended")
        check_media(tmp_path / f"authq-{name}.flv", min_seconds=4.0)
