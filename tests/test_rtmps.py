"""RTMPS: publish and play over TLS with Debian's ffmpeg (GnuTLS), against a self-signed certificate made here."""

from __future__ import annotations

import pytest

from conftest import check_media, publish, record, run, tool, wait_until

PUSH = 6.0


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    d = tmp_path_factory.mktemp("cert")
    cert, key = d / "cert.pem", d / "key.pem"
    run([tool("openssl"), "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
         "-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        limit=60, check=True)
    return cert, key


@pytest.fixture(scope="module")
def server(server_factory, cert):
    return server_factory({"FERROCAST_HUB_PUBLISHER_GRACE_MS": "500"}, rtmps=cert)


def test_publish_and_play_over_rtmps(server, tmp_path):
    pub = publish(server.rtmps("s"), PUSH, name="pub-rtmps")
    server.wait_live("s")
    tls_viewer = record(server.rtmps("s"), tmp_path / "rtmps.flv", name="rtmps-viewer")
    plain_viewer = record(server.rtmp("s"), tmp_path / "rtmp.flv", name="rtmp-viewer")
    flv_viewer = record(server.flv("s"), tmp_path / "flv.flv", name="flv-viewer")

    def counted():
        m = server.metrics()
        return (m.get("ferrocast_publishers", protocol="rtmps") == 1
                and m.get("ferrocast_viewers", protocol="rtmps") == 1) and m
    m = wait_until(counted, 8, what='publishers{protocol="rtmps"} == 1 and viewers{protocol="rtmps"} == 1')
    assert m.get("ferrocast_viewers", protocol="rtmp") == 1, m.text
    assert m.get("ferrocast_bytes_in_total", protocol="rtmps") > 0, m.text

    assert pub.wait(PUSH + 25) == 0, f"RTMPS publisher failed:\n{pub.tail(20)}"
    for v, name in ((tls_viewer, "rtmps"), (plain_viewer, "rtmp"), (flv_viewer, "flv")):
        rc = v.wait(10)
        assert rc == 0, f"{name} viewer: exit {rc}:\n{v.tail(20)}"
        m = check_media(tmp_path / f"{name}.flv", min_seconds=PUSH - 2)
        assert m.video[-1].dts >= PUSH - 0.5, m.summary()
