"""SRT ingest and playback: Debian ffmpeg publishes MPEG-TS over SRT with every streamid form; ffmpeg plays the
streams back over RTMP, HTTP-FLV and SRT (m=request) and a decoder checks what arrived; H.265 over SRT; an AES
passphrase per domain with srt-live-transmit and ffmpeg; a bad signature and a wrong or missing passphrase are
refused in the handshake.

Publishers send a TS file made by ffmpeg at test time with `-re -c copy` (no encoding while the test runs). Every
SRT client runs under `timeout -s KILL` (conftest.Proc): ffmpeg's SRT input ignores SIGTERM while blocked."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from urllib.parse import quote

import pytest

from conftest import FPS, GOP, VIDEO_SIZE, Proc, check_media, ffmpeg9, free_port, record, run, tool, wait_until

DOMAIN = "srt.test.com"
SECRET_ID = "AKIDferrocastTEST00000000000000000000"
SECRET_KEY = "ferrocastSecretKeyTEST0000000000"
SECONDS = 12  # length of the published file


def ts_file(out: Path, codec: str = "h264", seconds: int = SECONDS) -> Path:
    """A TS file like an encoder sends: testsrc2 + sine, 640x360 at 30 fps, a keyframe every 2 s."""
    path = out / f"src-{codec}.ts"
    if path.exists():
        return path
    ff = tool("ffmpeg")
    argv = [ff, "-hide_banner", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i",
            f"testsrc2=size={VIDEO_SIZE}:rate={FPS}", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
            "-t", str(seconds), "-map", "0:v", "-map", "1:a"]
    if codec == "h264":
        argv += ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-g", str(GOP), "-keyint_min",
                 str(GOP), "-sc_threshold", "0", "-bf", "2"]
    else:
        argv += ["-c:v", "libx265", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
                 "-x265-params", f"keyint={GOP}:min-keyint={GOP}:scenecut=0:log-level=error"]
    argv += ["-c:a", "aac", "-b:a", "96k", "-f", "mpegts", "-y", str(path)]
    run(argv, limit=120, check=True)
    return path


def srt_publish(url: str, src: Path, name: str, limit: float = SECONDS + 20) -> Proc:
    ff = tool("ffmpeg")
    argv = [ff, "-hide_banner", "-nostdin", "-nostats", "-loglevel", "info", "-re", "-i", str(src), "-map", "0",
            "-c", "copy", "-f", "mpegts", url]
    return Proc(name, argv, limit)


def record_for(url: str, out: Path, seconds: float, *, ffmpeg: str | None = None, name: str = "viewer") -> Proc:
    """Plays `url` for `seconds` of media, copying what arrives into `out`."""
    ff = ffmpeg or tool("ffmpeg")
    argv = [ff, "-hide_banner", "-nostdin", "-nostats", "-loglevel", "info", "-i", url, "-map", "0:v?", "-map",
            "0:a?", "-c", "copy", "-t", str(seconds), "-y", str(out)]
    return Proc(name, argv, seconds + 20)


def wait_ok(proc: Proc, timeout: float, what: str) -> None:
    rc = proc.wait(timeout)
    assert rc == 0, f"{what}: rc={rc}\n{proc.tail(20)}"


def refused(proc: Proc, server, stream: str, timeout: float = 15) -> None:
    rc = proc.wait(timeout)
    if rc is None:
        proc.kill()
    assert rc != 0, f"the SRT caller should have been refused: rc={rc}\n{proc.tail()}"
    assert not server.is_live(stream), f"{stream} went live although refused"


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("srt-media")


@pytest.fixture(scope="module")
def server(server_factory):
    # API credentials for the statistics test; no domain is configured, so the server stays open.
    return server_factory({"FERROCAST_SERVER_DEFAULT_DOMAIN": DOMAIN, "FERROCAST_HUB_PUBLISHER_GRACE_MS": "1000",
                           "FERROCAST_API_SECRET_ID": SECRET_ID, "FERROCAST_API_SECRET_KEY": SECRET_KEY})


def test_streamid_forms_and_playback_over_rtmp_flv_and_srt(server, media, tmp_path):
    src = ts_file(media)
    forms = {
        # The service's form (signature ignored: no domain is configured, the server is open).
        "svc": f"#!::h={DOMAIN},r=live/svc,txSecret=0123456789abcdef,txTime=7FFFFFFF",
        # A garbled variant from the docs: `#!;` prefix and `;` separators.
        "semi": f"#!;h={DOMAIN};r=live/semi;txSecret=0123456789abcdef;txTime=7FFFFFFF",
        # The SRT access-control syntax without `h` (the default domain).
        "acl": "#!::r=live/acl,m=publish",
    }
    pubs = {name: srt_publish(server.srt(sid), src, f"pub-{name}") for name, sid in forms.items()}
    # A plain `app/stream?query` streamid, percent-encoded in the URL as a player would send it.
    plain = "live/plain?txSecret=0123456789abcdef&txTime=7FFFFFFF"
    pubs["plain"] = srt_publish(f"srt://127.0.0.1:{server.srt_port}?streamid={quote(plain, safe='')}", src,
                                "pub-plain")
    for name in pubs:
        server.wait_media(name, timeout=20)
    viewers = {
        "rtmp": record_for(server.rtmp("svc"), tmp_path / "svc-rtmp.flv", 5, name="rtmp-svc"),
        "flv": record_for(server.flv("svc"), tmp_path / "svc-flv.flv", 5, name="flv-svc"),
        "srt": record_for(server.srt("#!::r=live/svc,m=request"), tmp_path / "svc-srt.flv", 5, name="srt-svc"),
        "srt-semi": record_for(server.srt(f"#!::h={DOMAIN},r=live/semi,m=request"), tmp_path / "semi-srt.flv", 4,
                               name="srt-semi"),
        "flv-acl": record_for(server.flv("acl"), tmp_path / "acl-flv.flv", 4, name="flv-acl"),
        "rtmp-plain": record_for(server.rtmp("plain"), tmp_path / "plain-rtmp.flv", 4, name="rtmp-plain"),
    }
    m = server.metrics()
    assert m.get("ferrocast_publishers", protocol="srt") == 4
    for name, v in viewers.items():
        wait_ok(v, 25, f"viewer {name}")
    for name, v in viewers.items():
        out = Path(v.argv[-1])
        # SRT viewers start at the next keyframe (up to one GOP later), the others from the GOP cache.
        check_media(out, min_seconds=3.0)
    for name, p in pubs.items():
        wait_ok(p, SECONDS + 15, f"publisher {name}")
    m = server.metrics()
    assert m.get("ferrocast_bytes_in_total", protocol="srt") > 4 * 1_000_000
    assert m.get("ferrocast_bytes_out_total", protocol="srt") > 200_000
    for name in ["ferrocast_srt_packets_lost_total", "ferrocast_srt_packets_retransmitted_total",
                 "ferrocast_srt_packets_dropped_total"]:
        assert m.has(name), name
    assert m.get("ferrocast_srt_rtt_microseconds") > 0, "SRT statistics reach /metrics"
    log = server.text()
    assert "srt listening on" in log
    assert "srt publish started" in log and "srt play started" in log


def test_bad_streamids_are_refused(server, media):
    src = ts_file(media)
    before = server.metrics().get("ferrocast_connections_rejected_total", protocol="srt")
    refused(srt_publish(server.srt("#!::h=x.com"), src, "pub-no-resource"), server, "x")
    refused(srt_publish(server.srt("#!::r=live/bidi,m=bidirectional"), src, "pub-bad-mode"), server, "bidi")
    # Playing a stream that is not live is refused in the handshake (404), not left hanging.
    start = time.monotonic()
    viewer = record_for(server.srt("#!::r=live/nothing,m=request"), Path("/dev/null"), 2, name="srt-not-live")
    rc = viewer.wait(15)
    assert rc not in (None, 0), f"rc={rc}\n{viewer.tail()}"
    assert time.monotonic() - start < 10
    after = server.metrics().get("ferrocast_connections_rejected_total", protocol="srt")
    assert after - before >= 3
    log = server.text()
    assert "srt caller refused: bad streamid" in log
    assert "srt caller refused: play refused: stream srt.test.com/live/nothing is not live" in log


def test_publisher_statistics_in_metrics_and_push_info_list(server, media):
    from test_api import client  # noqa: PLC0415

    pub = srt_publish(server.srt("#!::r=live/stats"), ts_file(media), "pub-stats")
    server.wait_media("stats", timeout=20)
    stream = {"protocol": "srt", "stream": f"{DOMAIN}/live/stats"}

    def reported() -> bool:
        m = server.metrics()
        return m.has("ferrocast_publisher_packets_received_total") and \
            m.get("ferrocast_publisher_packets_received_total", **stream) > 500
    # srt-tokio reports statistics once a second.
    wait_until(reported, 10, what="SRT statistics of the publisher in /metrics")
    m = server.metrics()
    rtt_us = m.get("ferrocast_publisher_rtt_microseconds", **stream)
    assert 0 < rtt_us < 100_000, rtt_us
    assert m.get("ferrocast_publisher_latency_microseconds", **stream) >= 120_000  # [srt] latency_ms
    assert m.get("ferrocast_publisher_receive_rate_bits_per_second", **stream) > 100_000
    for name in ["ferrocast_publisher_packets_lost_total", "ferrocast_publisher_packets_retransmitted_total",
                 "ferrocast_publisher_packets_dropped_total"]:
        assert any(n == name and ls == stream for n, ls, _ in m.series), name

    # The API: the SDK model has no field for them, so they come as a `TransportStats` extension object.
    raw = client(server).call_json("DescribeLiveStreamPushInfoList", {"PushDomain": DOMAIN})
    info = [i for i in raw["Response"]["DataInfoList"] if i["StreamName"] == "stats"]
    assert len(info) == 1, raw
    t = info[0]["TransportStats"]
    assert t["Protocol"] == "SRT" and t["LatencyMs"] >= 120, t
    assert 0 < t["RttMs"] < 100 and t["ReceivedPackets"] > 500 and t["ReceiveSpeed"] > 100_000, t
    assert {"LostPackets", "RetransmittedPackets", "DroppedPackets"} <= t.keys(), t
    pub.kill()
    # Gone with the publisher.
    wait_until(lambda: f'stream="{DOMAIN}/live/stats"' not in server.metrics_text(), 10,
               what="the publisher's statistics to leave /metrics")


def test_h265_over_srt(server, media, tmp_path):
    src = ts_file(media, "hevc", 8)
    pub = srt_publish(server.srt("#!::r=live/hevc"), src, "pub-hevc", limit=30)
    server.wait_media("hevc", timeout=20)
    ff9 = ffmpeg9()
    # Enhanced RTMP / FLV HEVC needs ffmpeg >= 6 to read; recorded (as TS, which Debian's ffprobe reads) until the
    # stream ends.
    flv = record(server.flv("hevc"), tmp_path / "hevc-flv.ts", ffmpeg=ff9, limit=30, name="flv-hevc-ff9")
    rtmp = record(server.rtmp("hevc"), tmp_path / "hevc-rtmp.ts", ffmpeg=ff9, limit=30, name="rtmp-hevc-ff9")
    srt = record_for(server.srt("#!::r=live/hevc,m=request"), tmp_path / "hevc-srt.ts", 3, name="srt-hevc")
    wait_ok(srt, 25, srt.name)
    check_media(tmp_path / "hevc-srt.ts", vcodec="hevc", min_seconds=2.0)
    for v in (flv, rtmp):
        wait_ok(v, 25, v.name)
        check_media(Path(v.argv[-1]), vcodec="hevc", min_seconds=2.0)
    wait_ok(pub, 30, "hevc publisher")


SECURE = "secure.srt.test.com"  # has its own passphrase
OPEN = "open.srt.test.com"  # explicitly unencrypted
SECURE_PASS = "correct-horse-battery"
DEFAULT_PASS = "server-wide-secret"  # every other domain (here: the default domain, localhost)


@pytest.fixture(scope="module")
def secure_server(server_factory):
    return server_factory({
        "FERROCAST_SRT_PASSPHRASE": DEFAULT_PASS,
        "FERROCAST_SRT_PASSPHRASES": f'{{ "{SECURE}" = "{SECURE_PASS}", "{OPEN}" = "" }}',
        "FERROCAST_SRT_PBKEYLEN": "16",
    })


def test_passphrase_per_domain(secure_server, media, tmp_path):
    slt = tool("srt-live-transmit")
    src = ts_file(media)
    s = secure_server

    def transmit(domain: str, stream: str, passphrase: str | None, name: str) -> tuple[Proc, Proc]:
        """ffmpeg paces the file into UDP; srt-live-transmit carries it to the server over SRT."""
        port = free_port()
        target = f"srt://127.0.0.1:{s.srt_port}?streamid=%23!::h={domain},r=live/{stream}"
        if passphrase:
            target += f"&passphrase={passphrase}"
        relay = Proc(f"slt-{name}", [slt, "-a:no", f"udp://127.0.0.1:{port}", target], SECONDS + 15)
        time.sleep(0.3)
        feed = Proc(f"feed-{name}", [tool("ffmpeg"), "-hide_banner", "-nostdin", "-loglevel", "error", "-re", "-i",
                                     str(src), "-c", "copy", "-f", "mpegts",
                                     f"udp://127.0.0.1:{port}?pkt_size=1316"], SECONDS + 15)
        return relay, feed

    def on(domain: str, stream: str) -> str:
        """A stream name for the conftest FLV helpers that plays `stream` of `domain` (they append `.flv`, which
        then lands in an ignored parameter)."""
        return f"{stream}.flv?txHost={domain}&_="

    def live(domain: str, stream: str) -> bool:
        return s.is_live(on(domain, stream))

    # srt-live-transmit with the domain's passphrase; played back over SRT with the passphrase (both directions
    # encrypted) and over HTTP-FLV.
    relay, feed = transmit(SECURE, "slt", SECURE_PASS, "good")
    s.wait_media(on(SECURE, "slt"), timeout=20)
    srt_view = record_for(s.srt(f"#!::h={SECURE},r=live/slt,m=request", passphrase=SECURE_PASS),
                          tmp_path / "slt-srt.ts", 3, name="srt-slt")
    flv_view = record_for(s.flv(on(SECURE, "slt")), tmp_path / "slt.flv", 4, name="flv-slt")
    wait_ok(srt_view, 25, "encrypted SRT viewer of the encrypted push")
    wait_ok(flv_view, 20, "FLV viewer of the encrypted push")
    check_media(tmp_path / "slt-srt.ts", min_seconds=2.0)
    check_media(tmp_path / "slt.flv", min_seconds=3.0)
    # An SRT viewer without the passphrase is refused like a publisher.
    no_pass_view = record_for(s.srt(f"#!::h={SECURE},r=live/slt,m=request"), Path("/dev/null"), 2, name="srt-nopass")
    rc = no_pass_view.wait(15)
    assert rc not in (None, 0), f"rc={rc}\n{no_pass_view.tail()}"
    feed.kill()
    relay.kill()

    # ffmpeg (libsrt) with `passphrase=` publishes too.
    pub = srt_publish(s.srt(f"#!::h={SECURE},r=live/ff", passphrase=SECURE_PASS, pbkeylen=16), src, "pub-ff-enc")
    s.wait_media(on(SECURE, "ff"), timeout=20)
    pub.kill()

    # A wrong passphrase fails the key exchange; no passphrase is refused as unsecure.
    relay, feed = transmit(SECURE, "wrong", "not-the-passphrase", "wrong")
    time.sleep(4)
    assert not live(SECURE, "wrong")
    feed.kill()
    relay.kill()
    refused(srt_publish(s.srt(f"#!::h={SECURE},r=live/missing"), src, "pub-missing"), s, on(SECURE, "missing"))
    # The server-wide passphrase is not the domain's.
    refused(srt_publish(s.srt(f"#!::h={SECURE},r=live/other", passphrase=DEFAULT_PASS), src, "pub-other-pass"), s,
            on(SECURE, "other"))

    # Other domains are unaffected: the open domain takes unencrypted callers and, as libsrt's default
    # enforced encryption does, refuses encrypting ones; the default domain uses the server-wide passphrase.
    plain = srt_publish(s.srt(f"#!::h={OPEN},r=live/plain"), src, "pub-open")
    s.wait_media(on(OPEN, "plain"), timeout=20)
    plain.kill()
    refused(srt_publish(s.srt(f"#!::h={OPEN},r=live/enc", passphrase=SECURE_PASS), src, "pub-open-enc"), s,
            on(OPEN, "enc"))
    default = srt_publish(s.srt("#!::r=live/dflt", passphrase=DEFAULT_PASS), src, "pub-default")
    s.wait_media("dflt", timeout=20)
    default.kill()
    refused(srt_publish(s.srt("#!::r=live/dflt-plain"), src, "pub-default-plain"), s, "dflt-plain")

    refusals = [line for line in s.text().splitlines() if "srt caller refused: handshake failed" in line]
    for stream in ["wrong", "missing", "other"]:
        assert any(f"stream={SECURE}/live/{stream}" in line and "client=127.0.0.1:" in line
                   and "wrong passphrase or no encryption" in line for line in refusals), (stream, refusals)
    assert any(f"stream={OPEN}/live/enc" in line and "encryption offered to a domain without a passphrase" in line
               for line in refusals), refusals
    assert any("stream=localhost/live/dflt-plain" in line for line in refusals), refusals
    assert s.metrics().get("ferrocast_connections_rejected_total", protocol="srt") >= 6


# -- hotlink protection -------------------------------------------------------------------------------------------

PUSH = "push.srt.test.com"


@pytest.fixture(scope="module")
def auth_server(server_factory):
    return server_factory({"FERROCAST_API_SECRET_ID": SECRET_ID, "FERROCAST_API_SECRET_KEY": SECRET_KEY,
                           "FERROCAST_SERVER_DEFAULT_DOMAIN": PUSH})


def test_signature_is_checked(auth_server, media):
    from tencentcloud.common import credential  # noqa: PLC0415
    from tencentcloud.common.profile.client_profile import ClientProfile  # noqa: PLC0415
    from tencentcloud.common.profile.http_profile import HttpProfile  # noqa: PLC0415
    from tencentcloud.live.v20180801 import live_client, models  # noqa: PLC0415

    s = auth_server
    http = HttpProfile(endpoint=f"127.0.0.1:{s.http_port}", protocol="http", reqTimeout=10)
    c = live_client.LiveClient(credential.Credential(SECRET_ID, SECRET_KEY), "ap-guangzhou",
                               ClientProfile(httpProfile=http))

    def call(action: str, params: dict):
        req = getattr(models, f"{action}Request")()
        req.from_json_string(json.dumps(params))
        return getattr(c, action)(req)

    call("AddLiveDomain", {"DomainName": PUSH, "DomainType": 0})
    call("ModifyLivePushAuthKey", {"DomainName": PUSH, "Enable": 1, "MasterAuthKey": "srtmasterkey", "AuthDelta": 0})
    src = ts_file(media)
    tx_time = f"{int(time.time()) + 3600:08X}"

    def sid(stream: str, key: str) -> str:
        secret = hashlib.md5(f"{key}{stream}{tx_time}".encode()).hexdigest()
        return f"#!::h={PUSH},r=live/{stream},txSecret={secret},txTime={tx_time}"

    good = srt_publish(s.srt(sid("good", "srtmasterkey")), src, "pub-signed")
    s.wait_live("good", timeout=20)
    good.kill()
    before = s.metrics().get("ferrocast_connections_rejected_total", protocol="srt")
    refused(srt_publish(s.srt(sid("bad", "otherkey")), src, "pub-bad-signature"), s, "bad")
    refused(srt_publish(s.srt(f"#!::h={PUSH},r=live/unsigned"), src, "pub-unsigned"), s, "unsigned")
    wait_until(lambda: s.metrics().get("ferrocast_connections_rejected_total", protocol="srt") >= before + 2, 5,
               what="rejections counted")
    log = s.text()
    assert "srt caller refused: publish refused: bad signature" in log
    assert "srt caller refused: publish refused: missing txSecret" in log
    assert f"stream={PUSH}/live/bad" in log
