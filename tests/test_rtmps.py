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


def _make_cert(d, name):
    cert, key = d / f"{name}.pem", d / f"{name}.key"
    run([tool("openssl"), "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
         "-days", "2", "-subj", f"/CN={name}", "-addext", f"subjectAltName=DNS:{name}"], limit=60, check=True)
    return cert, key


def _served_subject(port: int, servername: str | None) -> str:
    argv = [tool("openssl"), "s_client", "-connect", f"127.0.0.1:{port}"]
    if servername:
        argv += ["-servername", servername]
    r = run(argv, limit=20)
    for line in (r.stdout + r.stderr).splitlines():
        if line.startswith("subject="):
            return line
    raise AssertionError(f"no certificate subject from openssl s_client:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")


def test_certificates_are_chosen_by_sni(server_factory, cert, tmp_path):
    push_cert, push_key = _make_cert(tmp_path, "push.example.com")
    wild_cert, wild_key = _make_cert(tmp_path, "wild.example.org")
    certificates = (f'[{{domains=["push.example.com"], cert_file="{push_cert}", key_file="{push_key}"}},'
                    f' {{domains=["*.example.org"], cert_file="{wild_cert}", key_file="{wild_key}"}}]')
    srv = server_factory({"FERROCAST_RTMPS_CERTIFICATES": certificates}, rtmps=cert)
    assert "push.example.com" in _served_subject(srv.rtmps_port, "push.example.com")
    assert "wild.example.org" in _served_subject(srv.rtmps_port, "a.example.org")
    assert "localhost" in _served_subject(srv.rtmps_port, "other.example.net"), "unknown names get the default"
    assert "localhost" in _served_subject(srv.rtmps_port, None)
