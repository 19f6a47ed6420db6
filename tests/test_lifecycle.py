"""Configuration (env, --config), clean shutdown, and a viewer that stops reading."""

from __future__ import annotations

import signal
import socket
import time

import pytest
import requests

from conftest import Server, check_media, publish, record, wait_until


def tcp_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def push_and_check(srv: Server, tmp_path, stream: str, seconds: float = 5.0) -> None:
    """A short push with an RTMP and an HTTP-FLV viewer; both must get a clean, complete stream."""
    pub = publish(srv.rtmp(stream), seconds, tune="zerolatency", name=f"pub-{stream}")
    srv.wait_live(stream)
    viewers = {"rtmp": record(srv.rtmp(stream), tmp_path / f"{stream}-rtmp.flv", name=f"rtmp-{stream}"),
               "flv": record(srv.flv(stream), tmp_path / f"{stream}-flv.flv", name=f"flv-{stream}")}
    assert pub.wait(seconds + 25) == 0, pub.tail(20)
    for name, v in viewers.items():
        rc = v.wait(10)
        assert rc == 0, f"{name} viewer: exit {rc}:\n{v.tail(20)}"
        m = check_media(tmp_path / f"{stream}-{name}.flv", min_seconds=seconds - 2)
        assert m.video[-1].dts >= seconds - 0.5, m.summary()


def test_env_overrides(server_factory, tmp_path):
    srv = server_factory({"FERROCAST_HUB_PUBLISHER_GRACE_MS": "300", "FERROCAST_PLAY_MERGE_WINDOW_MS": "350",
                          "FERROCAST_LOG_LEVEL": "debug"})
    assert srv.data_dir.is_dir(), "FERROCAST_STORAGE_DATA_DIR was not created"
    assert tcp_open(srv.rtmp_port), f"nothing listens on FERROCAST_RTMP_LISTEN port {srv.rtmp_port}"
    log = srv.text()
    assert f"127.0.0.1:{srv.rtmp_port}" in log and f"127.0.0.1:{srv.http_port}" in log, \
        "the log does not say where it listens"
    assert "DEBUG" in log or "debug" in log.lower(), "FERROCAST_LOG_LEVEL=debug did not turn on debug logs"
    # Merged writes (350 ms) change when bytes leave, never what the viewer gets.
    push_and_check(srv, tmp_path, "envpush")


def test_default_domain_and_txhost(server_factory, tmp_path):
    srv = server_factory({"FERROCAST_SERVER_DEFAULT_DOMAIN": "push.example.test",
                          "FERROCAST_HUB_PUBLISHER_GRACE_MS": "300"})
    pub = publish(srv.rtmp("dom"), 6, tune="zerolatency", name="pub-dom")
    try:
        srv.wait_live("dom")
        r = requests.get(srv.flv("dom") + "?txHost=push.example.test", stream=True, timeout=5)
        assert r.status_code == 200, "an RTMP push to 127.0.0.1 should be on default_domain (txHost=default_domain)"
        r.close()
        r = requests.get(srv.flv("dom") + "?txHost=other.example.test", stream=True, timeout=5)
        assert r.status_code == 404, "a stream of another domain answered 200"
        r.close()
    finally:
        pub.kill()


def config_server(tmp_path, grace_ms=300, extra_env=None) -> tuple[Server, str]:
    srv = Server(tmp_path / "srv", env=extra_env, args=[], ports_from_env=False)
    cfg = tmp_path / "ferrocast.toml"
    cfg.write_text(f"""
[rtmp]
listen = "127.0.0.1:{srv.rtmp_port}"

[http]
listen = "127.0.0.1:{srv.http_port}"

[srt]
listen = "127.0.0.1:{srv.srt_port}"

[storage]
data_dir = "{srv.data_dir}"

[hub]
publisher_grace_ms = {grace_ms}

[log]
level = "info"
""")
    srv.args = ["--config", str(cfg)]
    return srv, str(cfg)


def test_config_file(tmp_path):
    srv, _ = config_server(tmp_path)
    try:
        srv.start()
        assert srv.data_dir.is_dir(), "data_dir from the config file was not created"
        push_and_check(srv, tmp_path, "cfgpush")
    finally:
        srv.stop()


def test_env_overrides_config_file(tmp_path):
    from conftest import free_port  # noqa: PLC0415

    env_http = free_port()
    srv, _ = config_server(tmp_path, extra_env={"FERROCAST_HTTP_LISTEN": f"127.0.0.1:{env_http}"})
    config_http = srv.http_port
    srv.http_port = env_http
    try:
        srv.start()
        assert not tcp_open(config_http), "the config file's http.listen is used although FERROCAST_HTTP_LISTEN is set"
        assert tcp_open(srv.rtmp_port), "rtmp.listen from the config file is not used"
    finally:
        srv.stop()


def test_bad_config_fails_fast(tmp_path):
    srv = Server(tmp_path / "bad", env={"FERROCAST_NOSUCHSECTION_KEY": "1"})
    srv.start(wait=False)
    try:
        rc = srv.proc.wait(timeout=10)
    except Exception:  # noqa: BLE001
        rc = None
    finally:
        srv.kill()
    assert rc not in (0, None), "an unknown FERROCAST_ section was accepted"
    assert "nosuchsection" in srv.text().lower(), f"the error does not name the bad variable:\n{srv.tail(10)}"


def test_sigterm_with_publisher_and_viewers(server_factory, tmp_path):
    srv = server_factory({"FERROCAST_HUB_PUBLISHER_GRACE_MS": "3000"})
    pub = publish(srv.rtmp("term"), 30, name="pub-term")
    srv.wait_media("term")
    viewers = {"rtmp": record(srv.rtmp("term"), tmp_path / "term-rtmp.flv", name="rtmp-term"),
               "flv": record(srv.flv("term"), tmp_path / "term-flv.flv", name="flv-term")}
    wait_until(lambda: srv.metrics().get("ferrocast_viewers") >= 2, 10, what="both viewers to be counted")
    time.sleep(2.5)
    rc, took = srv.terminate(signal.SIGTERM, timeout=8)
    assert rc is not None, "ferrocast did not exit within 8 s of SIGTERM"
    assert rc == 0, f"ferrocast exited with {rc} on SIGTERM"
    assert took <= 5.0, f"ferrocast took {took:.2f}s to exit on SIGTERM (limit 5 s)"
    for name, v in viewers.items():
        vrc = v.wait(5)
        assert vrc is not None, f"{name} viewer still running 5 s after the server exited"
        assert vrc == 0, f"{name} viewer: exit {vrc}:\n{v.tail(20)}"
        check_media(tmp_path / f"term-{name}.flv", min_seconds=2.0)
    assert pub.wait(10) is not None, "the publisher is still connected 10 s after the server exited"


def test_sigint_exits_cleanly(server_factory):
    srv = server_factory()
    rc, took = srv.terminate(signal.SIGINT, timeout=8)
    assert rc == 0 and took <= 5.0, f"SIGINT: exit {rc} after {took:.2f}s"


STALL_MS = 2000


@pytest.mark.timeout(120)
def test_stuck_viewer_is_disconnected_without_hurting_others(server_factory, tmp_path):
    srv = server_factory({"FERROCAST_PLAY_STALL_TIMEOUT_MS": str(STALL_MS), "FERROCAST_HUB_PUBLISHER_GRACE_MS": "500"})
    push = 14.0
    # ~16 Mbit/s: lossless 720p, so a viewer that reads nothing fills the socket buffers in a second or two.
    pub = publish(srv.rtmp("stuck"), push, size="1280x720", name="pub-stuck",
                  video_args=["-c:v", "libx264", "-preset", "ultrafast", "-qp", "0", "-g", "60",
                              "-pix_fmt", "yuv420p"])
    t_pub = time.monotonic()
    srv.wait_media("stuck")
    flv_viewer = record(srv.flv("stuck"), tmp_path / "ok-flv.flv", name="flv-normal")
    rtmp_viewer = record(srv.rtmp("stuck"), tmp_path / "ok-rtmp.flv", name="rtmp-normal")
    wait_until(lambda: srv.metrics().get("ferrocast_viewers", protocol="http-flv") == 1, 10,
               what="the normal HTTP-FLV viewer to be counted")

    stuck = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stuck.connect(("127.0.0.1", srv.http_port))
        stuck.sendall(f"GET /live/stuck.flv HTTP/1.1\r\nHost: 127.0.0.1:{srv.http_port}\r\n\r\n".encode())
        # ... and never reads.
        wait_until(lambda: srv.metrics().get("ferrocast_viewers", protocol="http-flv") == 2, 5,
                   what="the stuck viewer to be counted")
        t_stuck = time.monotonic()

        def slow_viewer_handled():
            m = srv.metrics()
            return (m.get("ferrocast_viewers_disconnected_stalled_total") >= 1
                    or m.get("ferrocast_frames_dropped_slow_viewer_total") > 0)
        wait_until(slow_viewer_handled, 10, what="stalled_total >= 1 or frames_dropped_slow_viewer_total > 0")
        wait_until(lambda: srv.metrics().get("ferrocast_viewers", protocol="http-flv") == 1, 10,
                   what=f"the stuck viewer to be disconnected (stall timeout {STALL_MS} ms)")
        dropped_after = time.monotonic() - t_stuck
        assert pub.running(), "the push ended before the stuck viewer was disconnected"
        m = srv.metrics()
        assert m.get("ferrocast_viewers_disconnected_stalled_total") >= 1, \
            f"a viewer was dropped {dropped_after:.1f}s after it stopped reading, but not counted as stalled:\n{m.text}"
    finally:
        stuck.close()

    assert pub.wait(push + 25) == 0, pub.tail(20)
    took = pub.ended - t_pub
    assert took <= push + 6, f"the {push:.0f}s real-time push took {took:.1f}s: the stuck viewer slowed the publisher"
    for v, name in ((flv_viewer, "flv"), (rtmp_viewer, "rtmp")):
        rc = v.wait(10)
        assert rc == 0, f"normal {name} viewer: exit {rc}:\n{v.tail(20)}"
        m = check_media(tmp_path / f"ok-{name}.flv", size="1280x720", acodec="aac", min_seconds=push - 3)
        assert m.video[-1].dts >= push - 0.5, m.summary()
