"""`ferrocast url push|play`, black-box: the binary's address generator run against a data dir whose domains and keys
were set through the management API (official Python SDK). The printed push URL must be accepted by the real
server (and refused once tampered with); the play URL's signature is recomputed here with hashlib."""

from __future__ import annotations

import hashlib
import re
import time

import pytest
import requests

from conftest import ferrocast_bin, publish, run, wait_until
from test_api import SECRET_ID, SECRET_KEY, call, client

PUSH = "push.url.test.com"
PLAY = "play.url.test.com"
PUSH_KEY = "pushmasterkey"
PLAY_KEY = "playmasterkey"


@pytest.fixture(scope="module")
def server(server_factory):
    s = server_factory({
        "FERROCAST_API_SECRET_ID": SECRET_ID,
        "FERROCAST_API_SECRET_KEY": SECRET_KEY,
        "FERROCAST_SERVER_DEFAULT_DOMAIN": PUSH,
    })
    c = client(s)
    call(c, "AddLiveDomain", {"DomainName": PUSH, "DomainType": 0})
    call(c, "AddLiveDomain", {"DomainName": PLAY, "DomainType": 1})
    call(c, "ModifyLivePushAuthKey", {"DomainName": PUSH, "Enable": 1, "MasterAuthKey": PUSH_KEY, "AuthDelta": 0})
    call(c, "ModifyLivePlayAuthKey", {"DomainName": PLAY, "Enable": 1, "AuthKey": PLAY_KEY, "AuthDelta": 0})
    return s


def url_cmd(server, *args: str, ok: bool = True):
    """Runs `ferrocast url ...` with the server's configuration; returns {label: value} (or the Result if not ok)."""
    r = run([ferrocast_bin(), "url", *args], limit=30, env=server.env, cwd=server.workdir)
    if not ok:
        return r
    assert r.rc == 0, f"ferrocast url {' '.join(args)} failed ({r.rc}):\n{r.stderr}"
    rows = {}
    for line in r.stdout.splitlines():
        m = re.match(r"^(\S.*?)\s{2,}(.*)$", line)
        assert m, f"unexpected line {line!r}"
        rows[m.group(1)] = m.group(2)
    return rows


def query(url: str) -> dict[str, str]:
    return dict(p.split("=", 1) for p in url.split("?", 1)[1].split("&"))


def localize(url: str, domain: str, port: int) -> str:
    prefix = f"://{domain}:{port}/"
    assert prefix in url, url
    return url.replace(prefix, f"://127.0.0.1:{port}/")


def tamper(secret: str) -> str:
    return ("0" if secret[0] != "0" else "1") + secret[1:]


def test_push_url_is_accepted_and_a_tampered_one_refused(server):
    rows = url_cmd(server, "push", "--domain", PUSH, "--app", "live", "--stream", "urlgood", "--expire", "1h")
    rtmp = rows["RTMP URL"]
    assert rtmp.startswith(f"rtmp://{PUSH}:{server.rtmp_port}/live/urlgood?txSecret="), rtmp
    assert rows["OBS server"] == f"rtmp://{PUSH}:{server.rtmp_port}/live/"
    assert rows["OBS server"] + rows["OBS stream key"] == rtmp
    q = query(rtmp)
    assert rows["WebRTC URL"] == f"webrtc://{PUSH}/live/urlgood?txSecret={q['txSecret']}&txTime={q['txTime']}"
    assert rows["WHIP endpoint"].startswith(f"http://{PUSH}:{server.http_port}/whip/live/urlgood?txSecret=")
    assert rows["SRT URL"] == (f"srt://{PUSH}:{server.srt_port}?streamid=#!::h={PUSH},r=live/urlgood,"
                               f"txSecret={q['txSecret']},txTime={q['txTime']}")
    assert hashlib.md5(f"{PUSH_KEY}urlgood{q['txTime']}".encode()).hexdigest() == q["txSecret"]

    # The default domain is the push domain, so 127.0.0.1 stands for it. With a play domain configured, viewers
    # play through it (txHost) with its key: the generated play URL is how the push is seen to be accepted.
    good = publish(localize(rtmp, PUSH, server.rtmp_port), 12, name="pub-url-good")
    local_flv = play_url(server, "urlgood")
    wait_until(lambda: status(local_flv) == 200, 15, 0.1, "the pushed stream to play at the generated FLV URL")
    flv_secret = query(local_flv)["txSecret"]
    assert status(local_flv.replace(flv_secret, tamper(flv_secret))) == 403
    good.kill()

    # One changed digit of txSecret: refused.
    rows = url_cmd(server, "push", "--domain", PUSH, "--stream", "urlbad", "--expire", "1h")
    secret = query(rows["RTMP URL"])["txSecret"]
    bad = localize(rows["RTMP URL"], PUSH, server.rtmp_port).replace(secret, tamper(secret))
    proc = publish(bad, 6, name="pub-url-tampered")
    rc = proc.wait(20)
    assert rc is not None and rc != 0, f"ffmpeg should have been refused: rc={rc}\n{proc.tail()}"
    assert status(play_url(server, "urlbad")) == 404
    assert "publish refused: bad signature" in server.text()


def play_url(server, stream: str) -> str:
    """The generated FLV play URL of `stream`, pointed at 127.0.0.1 with the play domain as txHost."""
    flv = url_cmd(server, "play", "--domain", PLAY, "--stream", stream, "--expire", "10m")["FLV URL"]
    return localize(flv, PLAY, server.http_port) + f"&txHost={PLAY}"


def status(url: str) -> int:
    try:
        with requests.get(url, stream=True, timeout=(2, 5)) as r:
            return r.status_code
    except requests.RequestException:
        return 0


def test_play_urls_signature_and_expire(server):
    before = int(time.time())
    rows = url_cmd(server, "play", "--domain", PLAY, "--app", "live", "--stream", "cam1", "--expire", "24h")
    after = int(time.time())
    flv = rows["FLV URL"]
    assert flv.startswith(f"http://{PLAY}:{server.http_port}/live/cam1.flv?txSecret="), flv
    q = query(flv)
    tx_time = q["txTime"]
    assert re.fullmatch(r"[0-9A-F]{8}", tx_time), tx_time
    assert before + 86400 <= int(tx_time, 16) <= after + 86400
    assert rows["txTime"] == tx_time
    assert q["txSecret"] == hashlib.md5(f"{PLAY_KEY}cam1{tx_time}".encode()).hexdigest()
    suffix = f"?txSecret={q['txSecret']}&txTime={tx_time}"
    assert rows["RTMP URL"] == f"rtmp://{PLAY}:{server.rtmp_port}/live/cam1{suffix}"
    assert rows["HLS URL"] == f"http://{PLAY}:{server.http_port}/live/cam1.m3u8{suffix}"
    assert rows["WebRTC URL"] == f"webrtc://{PLAY}/live/cam1{suffix}"
    assert rows["WHEP endpoint"] == f"http://{PLAY}:{server.http_port}/whep/live/cam1{suffix}"
    assert ",r=live/cam1,m=request," in rows["SRT URL"]
    assert "OBS server" not in rows

    rows = url_cmd(server, "play", "--domain", PLAY, "--stream", "cam1", "--expire", "90m")
    t = int(query(rows["FLV URL"])["txTime"], 16)
    assert abs(t - (int(time.time()) + 5400)) <= 5


def test_sha256_and_template(server):
    rows = url_cmd(server, "play", "--domain", PLAY, "--stream", "cam2", "--sha256")
    q = query(rows["FLV URL"])
    assert len(q["txSecret"]) == 64
    assert q["txSecret"] == hashlib.sha256(f"{PLAY_KEY}cam2{q['txTime']}".encode()).hexdigest()

    rows = url_cmd(server, "play", "--domain", PLAY, "--stream", "cam2", "--template", "hd")
    flv = rows["FLV URL"]
    assert "/live/cam2_hd.flv?" in flv, flv
    q = query(flv)
    assert len(q["txSecret"]) == 32
    assert q["txSecret"] == hashlib.md5(f"{PLAY_KEY}cam2_hd{q['txTime']}".encode()).hexdigest()

    rows = url_cmd(server, "push", "--domain", PUSH, "--stream", "cam3", "--sha256")
    q = query(rows["RTMP URL"])
    assert q["txSecret"] == hashlib.sha256(f"{PUSH_KEY}cam3{q['txTime']}".encode()).hexdigest()


def test_errors(server):
    for args, needle in [
        (["push", "--domain", PUSH, "--stream", "s", "--template", "hd"], "play addresses only"),
        (["push", "--domain", "nope.example.com", "--stream", "s"], "not a configured domain"),
        (["play", "--domain", PUSH, "--stream", "s"], "push domain"),
        (["push", "--domain", PUSH, "--stream", "a/b"], "invalid stream"),
        (["push", "--domain", PUSH, "--stream", "s", "--expire", "soon"], "invalid duration"),
    ]:
        r = url_cmd(server, *args, ok=False)
        assert r.rc != 0 and needle in r.stderr, (args, r.rc, r.stderr)
